/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The write functions of the SQL API whose errors must read as the
 *	  caller's, not the extension's: create_frame() and update_stream().
 *
 * Written in PL/pgSQL, every error raised by the triggers under these
 * functions carried the function's internal statement as CONTEXT (twelve
 * lines of UPDATE for update_stream()).  Here each function runs one
 * prepared statement through SPI and removes that statement's context
 * line from whatever error comes back (ds_strip_internal_query), so the
 * caller sees the trigger's message, DETAIL and HINT and any context of
 * its own triggers, nothing of ours.  Arguments are checked here first so
 * that an error names the field or argument at fault, with the value
 * clipped (ds_clip_for_message).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "datastreams.h"

/*
 * Remove the context line SPI adds for one of our statements ("SQL
 * statement "<query>"") from an error, keeping every other line.
 */
void
ds_strip_internal_query(ErrorData *edata, const char *query)
{
	char	   *line;
	char	   *start;
	char	   *end;

	if (edata->internalquery && strcmp(edata->internalquery, query) == 0)
	{
		edata->internalquery = NULL;
		edata->internalpos = 0;
	}
	if (edata->context == NULL)
		return;
	line = psprintf("SQL statement \"%s\"", query);
	start = strstr(edata->context, line);
	if (start == NULL)
		return;
	end = start + strlen(line);
	if (*end == '\n')
		end++;
	else if (start > edata->context && start[-1] == '\n')
		start--;
	memmove(start, end, strlen(end) + 1);
	if (edata->context[0] == '\0')
		edata->context = NULL;
}

/*
 * Run a prepared statement of ours; an error leaves without the statement
 * as context, and with duplicate_hint, when given, as the HINT of a unique
 * violation.  Returns SPI's result code.
 */
static int
execute_quietly(SPIPlanPtr plan, const char *query, Datum *values, const char *nulls,
				const char *duplicate_hint)
{
	MemoryContext caller_context = CurrentMemoryContext;
	int			rc = 0;

	PG_TRY();
	{
		rc = SPI_execute_plan(plan, values, nulls, false, 0);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller_context);
		edata = CopyErrorData();
		FlushErrorState();
		ds_strip_internal_query(edata, query);
		if (duplicate_hint && edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION)
			edata->hint = pstrdup(duplicate_hint);
		ReThrowError(edata);
	}
	PG_END_TRY();
	return rc;
}

static SPIPlanPtr
prepare_kept(const char *query, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(query, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

/*
 * The whole row in the first column of the first row SPI returned (the
 * statements return "f" or "s", the table's row type, which accounts for
 * dropped columns), copied out of SPI's memory.
 */
static Datum
returned_row(void)
{
	bool		isnull;
	Datum		row = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

	return SPI_datumTransfer(row, false, -1);
}

static void
stream_not_found(const pg_uuid_t *stream_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("stream %s not found", ds_uuid_to_cstring(stream_id))));
}

/*
 * The stream of the current account, or P0002 whether it is missing or
 * another account's.  Both answers come from the per-backend stream cache,
 * which remembers missing ids too, so they cost the same.
 */
static void
require_own_stream(const pg_uuid_t *stream_id, const char *account)
{
	CachedStream *stream = ds_lookup_stream(stream_id);

	if (stream == NULL || strcmp(stream->account_id, account) != 0)
		stream_not_found(stream_id);
}

/*--------------------------------------------------------------------------
 * create_frame()
 *--------------------------------------------------------------------------
 */
#define INSERT_FRAME_QUERY \
	"INSERT INTO datastreams.frames AS f " \
	"(stream_id, sequence, payload, latency_ms, status, metadata) " \
	"VALUES ($1, $2, $3, $4, $5, $6)"
#define INSERT_FRAME_RETURNING " RETURNING f"
#define INSERT_FRAME_SKIP " ON CONFLICT (stream_id, sequence) DO NOTHING"
#define STORED_FRAME_QUERY \
	"SELECT f, f.payload, f.metadata, f.latency_ms, f.status FROM datastreams.frames AS f " \
	"WHERE f.stream_id OPERATOR(pg_catalog.=) $1 AND f.sequence OPERATOR(pg_catalog.=) $2"

static SPIPlanPtr insert_frame_plan = NULL;
static SPIPlanPtr insert_frame_skip_plan = NULL;
static SPIPlanPtr stored_frame_plan = NULL;

static const char *const insert_frame_query = INSERT_FRAME_QUERY INSERT_FRAME_RETURNING;
static const char *const insert_frame_skip_query =
INSERT_FRAME_QUERY INSERT_FRAME_SKIP INSERT_FRAME_RETURNING;

static void
prepare_frame_plans(void)
{
	Oid			argtypes[6] = {UUIDOID, INT8OID, JSONBOID, INT4OID, TEXTOID, JSONBOID};

	if (insert_frame_plan == NULL)
		insert_frame_plan = prepare_kept(insert_frame_query, 6, argtypes);
	if (insert_frame_skip_plan == NULL)
		insert_frame_skip_plan = prepare_kept(insert_frame_skip_query, 6, argtypes);
	if (stored_frame_plan == NULL)
		stored_frame_plan = prepare_kept(STORED_FRAME_QUERY, 2, argtypes);
}

typedef enum OnDuplicate
{
	ON_DUPLICATE_ERROR,
	ON_DUPLICATE_SKIP
} OnDuplicate;

static OnDuplicate
parse_on_duplicate(FunctionCallInfo fcinfo, int argno)
{
	char	   *value = "NULL";

	if (!PG_ARGISNULL(argno))
	{
		value = text_to_cstring(PG_GETARG_TEXT_PP(argno));
		if (strcmp(value, "error") == 0)
			return ON_DUPLICATE_ERROR;
		if (strcmp(value, "skip") == 0)
			return ON_DUPLICATE_SKIP;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid on_duplicate value \"%s\"", ds_clip_for_message(value)),
			 errhint("on_duplicate is \"error\" (the default: a repeated sequence is an error) or \"skip\" (a repeated identical frame returns the stored one).")));
	pg_unreachable();
}

/* The frame's status as the frames trigger would store it, before SLA */
static const char *
given_status(FunctionCallInfo fcinfo)
{
	char	   *s;
	char	   *word;

	if (PG_ARGISNULL(4))
		return "ok";
	s = text_to_cstring(PG_GETARG_TEXT_PP(4));
	if (ds_is_blank(s))
		return "ok";
	word = ds_status_word(s);
	return word ? word : ds_trim(s);
}

static bool
jsonb_equal(Jsonb *a, Jsonb *b)
{
	return DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(a), JsonbPGetDatum(b)));
}

/*
 * A repeated sequence under on_duplicate => 'skip': the stored frame is
 * returned when the frame given is the same one, sent again; a different
 * frame under a stored sequence is still the 23505 of any repeat.  "The
 * same" compares what the frames trigger would store: the payload, the
 * normalised metadata, the latency (negative means 0) and the status, where
 * an "ok" frame the SLA made "late" is the same frame.
 */
static void
check_same_frame(FunctionCallInfo fcinfo, const pg_uuid_t *stream_id, int64 sequence)
{
	HeapTuple	stored = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;
	Jsonb	   *stored_payload;
	Jsonb	   *stored_metadata;
	int32		stored_latency;
	char	   *stored_status;
	Jsonb	   *payload;
	Jsonb	   *metadata;
	int32		latency;
	const char *status;
	const char *field = NULL;

	stored_payload = DatumGetJsonbP(SPI_getbinval(stored, desc, 2, &isnull));
	stored_metadata = DatumGetJsonbP(SPI_getbinval(stored, desc, 3, &isnull));
	stored_latency = DatumGetInt32(SPI_getbinval(stored, desc, 4, &isnull));
	stored_status = SPI_getvalue(stored, desc, 5);

	payload = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	metadata = PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5);
	latency = PG_ARGISNULL(3) ? 0 : Max(PG_GETARG_INT32(3), 0);
	status = given_status(fcinfo);

	if (payload ? !jsonb_equal(payload, stored_payload) : JB_ROOT_COUNT(stored_payload) != 0)
		field = "payload";
	else if (metadata ? !jsonb_equal(ds_normalize_metadata(metadata), stored_metadata) :
			 JB_ROOT_COUNT(stored_metadata) != 0)
		field = "metadata";
	else if (latency != stored_latency)
		field = "latency_ms";
	else if (strcmp(status, stored_status) != 0 &&
			 !(strcmp(status, "ok") == 0 && strcmp(stored_status, "late") == 0))
		field = "status";

	if (field)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("stream %s already has a different frame with sequence " INT64_FORMAT,
						ds_uuid_to_cstring(stream_id), sequence),
				 errdetail("The stored frame differs in %s.", field),
				 errhint("on_duplicate => 'skip' skips only a frame identical to the stored one; give this frame a new sequence.")));
}

/*
 * datastreams.create_frame(stream_id, sequence, payload, latency_ms,
 * status, metadata, on_duplicate)
 */
PG_FUNCTION_INFO_V1(datastreams_create_frame);
Datum
datastreams_create_frame(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *stream_id;
	OnDuplicate on_duplicate;
	char	   *account;
	Datum		values[6];
	char		nulls[6];
	int			i;
	bool		sequence_given;
	Datum		result;

	/* the same error as an INSERT without a stream */
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("stream_id is required")));
	stream_id = PG_GETARG_UUID_P(0);
	on_duplicate = parse_on_duplicate(fcinfo, 6);

	account = ds_require_account();
	require_own_stream(stream_id, account);

	for (i = 0; i < 6; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	sequence_given = !PG_ARGISNULL(1);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	prepare_frame_plans();

	if (on_duplicate == ON_DUPLICATE_SKIP && sequence_given)
	{
		bool		inserted = false;

		/*
		 * Look first, so that a repeat is recognised whatever its place
		 * among the stored sequences; ON CONFLICT covers a repeat committed
		 * by another session in between.
		 */
		execute_quietly(stored_frame_plan, STORED_FRAME_QUERY, values, nulls, NULL);
		if (SPI_processed == 0)
		{
			execute_quietly(insert_frame_skip_plan, insert_frame_skip_query, values, nulls, NULL);
			inserted = SPI_processed > 0;
			if (!inserted)
				execute_quietly(stored_frame_plan, STORED_FRAME_QUERY, values, nulls, NULL);
		}
		/*
		 * A repeat committed after this transaction's snapshot was taken
		 * (REPEATABLE READ): stored, but not visible to compare with.
		 */
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("stream %s already has a frame with sequence " INT64_FORMAT,
							ds_uuid_to_cstring(stream_id), PG_GETARG_INT64(1)),
					 errdetail("A transaction this one cannot see stored it, so it cannot be compared."),
					 errhint("Retry in a new transaction.")));
		if (!inserted)
			check_same_frame(fcinfo, stream_id, PG_GETARG_INT64(1));
	}
	else
	{
		execute_quietly(insert_frame_plan, insert_frame_query, values, nulls,
						"To skip a frame that is already stored, call create_frame() with on_duplicate => 'skip'.");
		/* a BEFORE trigger of the user's may have skipped the row */
		if (SPI_processed == 0)
		{
			SPI_finish();
			PG_RETURN_NULL();
		}
	}

	result = returned_row();
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*--------------------------------------------------------------------------
 * update_stream()
 *--------------------------------------------------------------------------
 */
typedef enum PatchType
{
	PATCH_TEXT,
	PATCH_INTERVAL,
	PATCH_INTEGER,
	PATCH_OBJECT
} PatchType;

typedef struct PatchField
{
	const char *name;
	PatchType	type;
	Oid			typid;
} PatchField;

/* In the order of the UPDATE's parameters */
static const PatchField patch_fields[] = {
	{"name", PATCH_TEXT, TEXTOID},
	{"symbol", PATCH_TEXT, TEXTOID},
	{"description", PATCH_TEXT, TEXTOID},
	{"frequency", PATCH_INTERVAL, INTERVALOID},
	{"sla_ms", PATCH_INTEGER, INT4OID},
	{"status", PATCH_TEXT, TEXTOID},
	{"metadata", PATCH_OBJECT, JSONBOID},
	{"retention", PATCH_INTERVAL, INTERVALOID},
};
#define PATCH_FIELDS lengthof(patch_fields)

static const char *const immutable_fields[] = {"id", "account_id", "created_at", "updated_at"};

#define UPDATE_STREAM_QUERY \
	"UPDATE datastreams.streams AS s SET " \
	"name = CASE WHEN $3 THEN $4 ELSE s.name END, " \
	"symbol = CASE WHEN $5 THEN $6 ELSE s.symbol END, " \
	"description = CASE WHEN $7 THEN $8 ELSE s.description END, " \
	"frequency = CASE WHEN $9 THEN $10 ELSE s.frequency END, " \
	"sla_ms = CASE WHEN $11 THEN $12 ELSE s.sla_ms END, " \
	"status = CASE WHEN $13 THEN $14 ELSE s.status END, " \
	"metadata = CASE WHEN $15 THEN $16 ELSE s.metadata END, " \
	"retention = CASE WHEN $17 THEN $18 ELSE s.retention END " \
	"WHERE s.id OPERATOR(pg_catalog.=) $1 AND s.account_id OPERATOR(pg_catalog.=) $2 " \
	"RETURNING s"

static SPIPlanPtr update_stream_plan = NULL;

static const PatchField *
patch_field(const char *key)
{
	int			i;

	for (i = 0; i < lengthof(immutable_fields); i++)
		if (strcmp(key, immutable_fields[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stream field \"%s\" cannot be changed", key)));
	for (i = 0; i < PATCH_FIELDS; i++)
		if (strcmp(key, patch_fields[i].name) == 0)
			return &patch_fields[i];
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown stream field \"%s\"", ds_clip_for_message(key)),
			 errhint("The fields that can be changed are name, symbol, description, frequency, sla_ms, status, metadata and retention.")));
	pg_unreachable();
}

static char *
jsonb_value_text(JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * An interval given as text; an error names the field and quotes the value
 * clipped, where interval_in would quote all of it.
 */
static Datum
patch_interval(const char *field, const char *text)
{
	MemoryContext caller_context = CurrentMemoryContext;
	Datum		result = (Datum) 0;

	PG_TRY();
	{
		result = DirectFunctionCall3(interval_in, CStringGetDatum(text),
									 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller_context);
		edata = CopyErrorData();
		FlushErrorState();
		/* 22007 for a value that does not parse, 22008 for one out of range */
		ereport(ERROR,
				(edata->sqlerrcode == ERRCODE_INVALID_DATETIME_FORMAT ?
				 errcode(ERRCODE_INVALID_DATETIME_FORMAT) :
				 errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("stream field \"%s\" is not a valid interval", field),
				 errdetail("The value given is \"%s\".", ds_clip_for_message(text)),
				 errhint("Give an interval such as \"1s\", \"250 ms\" or \"30 days\".")));
	}
	PG_END_TRY();
	return result;
}

static Datum
patch_integer(const char *field, JsonbValue *v)
{
	Numeric		n = v->val.numeric;
	bool		overflow = false;
	int32		result;

	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(n),
										  DirectFunctionCall2(numeric_trunc, NumericGetDatum(n),
															  Int32GetDatum(0)))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream field \"%s\" must be a whole number", field)));
	result = numeric_int4_opt_error(n, &overflow);
	if (overflow)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("stream field \"%s\" is out of range", field),
				 errdetail("The value given is %s; the largest is 2147483647.",
						   ds_clip_for_message(DatumGetCString(DirectFunctionCall1(numeric_out,
																				   NumericGetDatum(n))))),
				 errhint("An SLA of 0 means none.")));
	return Int32GetDatum(result);
}

/* The value of one patch key as the UPDATE's parameter; false for null */
static bool
patch_value(const PatchField *field, JsonbValue *v, Datum *value)
{
	const char *expected = NULL;

	if (v->type == jbvNull)
		return false;
	switch (field->type)
	{
		case PATCH_TEXT:
		case PATCH_INTERVAL:
			if (v->type != jbvString)
			{
				expected = "a string";
				break;
			}
			if (field->type == PATCH_TEXT)
				*value = PointerGetDatum(cstring_to_text_with_len(v->val.string.val,
																  v->val.string.len));
			else
				*value = patch_interval(field->name, jsonb_value_text(v));
			return true;
		case PATCH_INTEGER:
			if (v->type != jbvNumeric)
			{
				expected = "a number";
				break;
			}
			*value = patch_integer(field->name, v);
			return true;
		case PATCH_OBJECT:
			if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
			{
				expected = "a JSON object";
				break;
			}
			*value = JsonbPGetDatum(JsonbValueToJsonb(v));
			return true;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("stream field \"%s\" must be %s", field->name, expected)));
	pg_unreachable();
}

/*
 * datastreams.update_stream(id, patch): change the fields present in the
 * patch; the streams trigger applies its rules to the result.
 */
PG_FUNCTION_INFO_V1(datastreams_update_stream);
Datum
datastreams_update_stream(PG_FUNCTION_ARGS)
{
	char	   *account;
	Jsonb	   *patch;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;
	Datum		values[2 + 2 * PATCH_FIELDS];
	char		nulls[2 + 2 * PATCH_FIELDS];
	int			i;
	Datum		result;

	account = ds_require_account();
	if (PG_ARGISNULL(1) || !JB_ROOT_IS_OBJECT(patch = PG_GETARG_JSONB_P(1)) ||
		JB_ROOT_IS_SCALAR(patch))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("patch must be a JSON object")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("stream id is required")));

	require_own_stream(PG_GETARG_UUID_P(0), account);

	values[0] = PG_GETARG_DATUM(0);
	nulls[0] = ' ';
	values[1] = CStringGetTextDatum(account);
	nulls[1] = ' ';
	for (i = 0; i < PATCH_FIELDS; i++)
	{
		values[2 + 2 * i] = BoolGetDatum(false);
		nulls[2 + 2 * i] = ' ';
		values[3 + 2 * i] = (Datum) 0;
		nulls[3 + 2 * i] = 'n';
	}

	it = JsonbIteratorInit(&patch->root);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		const PatchField *field;
		int			k;

		if (token != WJB_KEY)
			continue;
		field = patch_field(jsonb_value_text(&v));
		token = JsonbIteratorNext(&it, &v, true);
		Assert(token == WJB_VALUE);
		k = field - patch_fields;
		values[2 + 2 * k] = BoolGetDatum(true);
		if (patch_value(field, &v, &values[3 + 2 * k]))
			nulls[3 + 2 * k] = ' ';
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (update_stream_plan == NULL)
	{
		Oid			argtypes[2 + 2 * PATCH_FIELDS];

		argtypes[0] = UUIDOID;
		argtypes[1] = TEXTOID;
		for (i = 0; i < PATCH_FIELDS; i++)
		{
			argtypes[2 + 2 * i] = BOOLOID;
			argtypes[3 + 2 * i] = patch_fields[i].typid;
		}
		update_stream_plan = prepare_kept(UPDATE_STREAM_QUERY, lengthof(argtypes), argtypes);
	}
	execute_quietly(update_stream_plan, UPDATE_STREAM_QUERY, values, nulls, NULL);
	if (SPI_processed == 0)
		stream_not_found(PG_GETARG_UUID_P(0));

	result = returned_row();
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * datastreams.require_stream(id): the account the caller acts for, after
 * checking that the stream is that account's (P0002 otherwise, for another
 * account's stream as for a missing id, at the same cost).  The read
 * functions call it before they read anything.
 */
PG_FUNCTION_INFO_V1(datastreams_require_stream);
Datum
datastreams_require_stream(PG_FUNCTION_ARGS)
{
	char	   *account = ds_require_account();

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("stream id is required")));
	require_own_stream(PG_GETARG_UUID_P(0), account);
	PG_RETURN_TEXT_P(cstring_to_text(account));
}

/*--------------------------------------------------------------------------
 * Procedures that commit
 *--------------------------------------------------------------------------
 */

/*
 * datastreams.require_top_level(procedure): called first by procedures that
 * commit, such as prune_all(), so that a CALL inside a transaction block
 * says so instead of failing at its first COMMIT with a bare "invalid
 * transaction termination".
 */
PG_FUNCTION_INFO_V1(datastreams_require_top_level);
Datum
datastreams_require_top_level(PG_FUNCTION_ARGS)
{
	const char *procedure = PG_ARGISNULL(0) ? "this procedure" :
		text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (IsTransactionBlock())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("%s cannot run inside a transaction block", procedure),
				 errdetail("%s commits as it goes, which a transaction block does not allow.", procedure),
				 errhint("CALL it on its own, outside BEGIN ... COMMIT.")));
	PG_RETURN_VOID();
}
