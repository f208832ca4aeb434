/*-------------------------------------------------------------------------
 *
 * ingest.c
 *	  datastreams.ingest(): many frames of one stream in one call.
 *
 * The batch is checked here for shape (an array of objects with known,
 * well-typed fields), then inserted with a single INSERT ... SELECT so
 * that the frames trigger applies every rule exactly as for any other
 * insert, the latest-frame pointer is written once for the whole batch,
 * and one failing element rolls the whole batch back.  When the trigger or
 * a constraint rejects an element, the error's DETAIL says which one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "datastreams.h"

/* -1 outside ingest(); otherwise the element the trigger is on, from 0 */
int64		ds_ingest_element = -1;

static SPIPlanPtr insert_plan = NULL;

static void
element_error(int index, const char *key, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("frame field \"%s\" must be %s", key, expected),
			 errdetail("The error is in element %d of the frames array (counting from 0).", index)));
}

static void
check_integer_field(int index, const char *key, JsonbValue *v, int64 min, int64 max)
{
	Numeric		n;

	if (v->type == jbvNull)
		return;
	if (v->type != jbvNumeric)
		element_error(index, key, "a number");
	n = v->val.numeric;
	if (numeric_is_nan(n) || numeric_is_inf(n) ||
		!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(n),
										  DirectFunctionCall2(numeric_trunc, NumericGetDatum(n),
															  Int32GetDatum(0)))))
		element_error(index, key, "a whole number");
	if (DatumGetBool(DirectFunctionCall2(numeric_lt, NumericGetDatum(n),
										 NumericGetDatum(int64_to_numeric(min)))) ||
		DatumGetBool(DirectFunctionCall2(numeric_gt, NumericGetDatum(n),
										 NumericGetDatum(int64_to_numeric(max)))))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("frame field \"%s\" is out of range", key),
				 errdetail("The error is in element %d of the frames array (counting from 0).", index)));
}

static void
check_element(int index, JsonbValue *element)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;

	if (element->type != jbvBinary || !JsonContainerIsObject(element->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("each frame must be a JSON object"),
				 errdetail("The error is in element %d of the frames array (counting from 0).", index)));

	it = JsonbIteratorInit(element->val.binary.data);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;

		if (token != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		token = JsonbIteratorNext(&it, &v, true);

		if (strcmp(key, "sequence") == 0)
			check_integer_field(index, key, &v, PG_INT64_MIN, PG_INT64_MAX);
		else if (strcmp(key, "latency_ms") == 0)
			check_integer_field(index, key, &v, PG_INT32_MIN, PG_INT32_MAX);
		else if (strcmp(key, "status") == 0)
		{
			if (v.type != jbvString && v.type != jbvNull)
				element_error(index, key, "a string");
		}
		else if (strcmp(key, "payload") == 0 || strcmp(key, "metadata") == 0)
		{
			if (v.type != jbvNull &&
				!(v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data)))
				element_error(index, key, "a JSON object");
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown frame field \"%s\"", ds_clip_for_message(key)),
					 errdetail("The error is in element %d of the frames array (counting from 0).", index),
					 errhint("A frame has the fields sequence, payload, latency_ms, status and metadata.")));
	}
}

/* Every name and operator is qualified: the caller's search_path is not ours */
static const char *const insert_query =
"INSERT INTO datastreams.frames "
"(stream_id, sequence, payload, latency_ms, status, metadata) "
"SELECT $1, "
" (e OPERATOR(pg_catalog.->>) 'sequence')::pg_catalog.numeric::pg_catalog.int8, "
" e OPERATOR(pg_catalog.->) 'payload', "
" (e OPERATOR(pg_catalog.->>) 'latency_ms')::pg_catalog.numeric::pg_catalog.int4, "
" e OPERATOR(pg_catalog.->>) 'status', "
" e OPERATOR(pg_catalog.->) 'metadata' "
"FROM pg_catalog.jsonb_array_elements($2) WITH ORDINALITY AS t(e, i) "
"ORDER BY i";

static void
prepare_insert(void)
{
	Oid			argtypes[2] = {UUIDOID, JSONBOID};
	SPIPlanPtr	plan;

	plan = SPI_prepare(insert_query, 2, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	insert_plan = plan;
}

PG_FUNCTION_INFO_V1(datastreams_ingest);
Datum
datastreams_ingest(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *stream_id;
	Jsonb	   *frames;
	char	   *account;
	CachedStream *stream;
	int			count;
	int			i;
	Datum		values[2];
	uint64		inserted;
	MemoryContext caller_context = CurrentMemoryContext;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("stream_id is required")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("frames must be a JSON array")));
	stream_id = PG_GETARG_UUID_P(0);
	frames = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_ARRAY(frames) || JB_ROOT_IS_SCALAR(frames))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("frames must be a JSON array")));

	/* One tenant check for the whole batch */
	account = ds_require_account();
	stream = ds_lookup_stream(stream_id);
	if (stream == NULL || strcmp(stream->account_id, account) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("stream %s not found", ds_uuid_to_cstring(stream_id))));

	count = JB_ROOT_COUNT(frames);
	for (i = 0; i < count; i++)
	{
		JsonbValue *element = getIthJsonbValueFromContainer(&frames->root, i);

		check_element(i, element);
		pfree(element);
	}
	if (count == 0)
		PG_RETURN_INT64(0);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (insert_plan == NULL)
		prepare_insert();

	values[0] = UUIDPGetDatum(stream_id);
	values[1] = JsonbPGetDatum(frames);
	ds_ingest_element = 0;
	PG_TRY();
	{
		int			rc = SPI_execute_plan(insert_plan, values, NULL, false, 0);

		if (rc != SPI_OK_INSERT)
			elog(ERROR, "ingest failed: %s", SPI_result_code_string(rc));
		inserted = SPI_processed;
	}
	PG_CATCH();
	{
		int64		element = ds_ingest_element - 1;
		ErrorData  *edata;

		ds_ingest_element = -1;
		MemoryContextSwitchTo(caller_context);
		edata = CopyErrorData();
		FlushErrorState();
		ds_strip_internal_query(edata, insert_query);
		if (element >= 0)
		{
			const char *where = psprintf("The error is in element " INT64_FORMAT " of the frames array (counting from 0).",
										 element);

			edata->detail = edata->detail ? psprintf("%s %s", where, edata->detail) : pstrdup(where);
		}
		ReThrowError(edata);
	}
	PG_END_TRY();
	ds_ingest_element = -1;

	SPI_finish();
	PG_RETURN_INT64((int64) inserted);
}
