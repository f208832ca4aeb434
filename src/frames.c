/*-------------------------------------------------------------------------
 *
 * frames.c
 *	  The frames triggers: validation, ordering, SLA classification and
 *	  publication of every frame, however it is inserted.
 *
 * This is the ingest hot path.  Per row it does no catalog lookups and no
 * SPI: the stream comes from the per-backend stream cache, the latest
 * sequence from per-transaction memory (see stream_state.c), and the
 * latest-frame pointer is written once per statement by the AFTER
 * STATEMENT trigger.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "datastreams.h"

const char *const frame_status_names[FRAME_STATUS_COUNT] = {"ok", "late", "error"};

typedef struct FrameColumns
{
	Oid			relid;
	int			natts;
	int			id;
	int			account_id;
	int			stream_id;
	int			sequence;
	int			payload;
	int			latency_ms;
	int			status;
	int			metadata;
	int			created_at;
} FrameColumns;

static FrameColumns columns;
static Datum empty_object = (Datum) 0;

/* Attribute numbers never change for a given table, so look them up once */
static const FrameColumns *
frame_columns(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (columns.relid == RelationGetRelid(rel) && columns.natts == desc->natts)
		return &columns;
	columns.id = ds_column_index(desc, "frames", "id", true);
	columns.account_id = ds_column_index(desc, "frames", "account_id", true);
	columns.stream_id = ds_column_index(desc, "frames", "stream_id", true);
	columns.sequence = ds_column_index(desc, "frames", "sequence", true);
	columns.payload = ds_column_index(desc, "frames", "payload", true);
	columns.latency_ms = ds_column_index(desc, "frames", "latency_ms", true);
	columns.status = ds_column_index(desc, "frames", "status", true);
	columns.metadata = ds_column_index(desc, "frames", "metadata", true);
	columns.created_at = ds_column_index(desc, "frames", "created_at", true);
	columns.natts = desc->natts;
	columns.relid = RelationGetRelid(rel);
	return &columns;
}

static Datum
empty_jsonb_object(void)
{
	if (empty_object == (Datum) 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		empty_object = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
		MemoryContextSwitchTo(old);
	}
	return empty_object;
}

static FrameStatus
parse_frame_status(const pg_uuid_t *stream_id, Datum value, bool isnull)
{
	text	   *t;
	char	   *s;
	char	   *word;
	int			i;

	if (isnull)
		return FRAME_OK;
	t = DatumGetTextPP(value);
	/* the common case costs one comparison */
	if (VARSIZE_ANY_EXHDR(t) == 2 && memcmp(VARDATA_ANY(t), "ok", 2) == 0)
		return FRAME_OK;

	s = text_to_cstring(t);
	if (ds_is_blank(s))
		return FRAME_OK;
	word = ds_status_word(s);
	for (i = 0; word != NULL && i < FRAME_STATUS_COUNT; i++)
		if (strcmp(word, frame_status_names[i]) == 0)
			return (FrameStatus) i;
	ds_reject_frame(stream_id, "invalid_status",
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid frame status \"%s\"", ds_clip_for_message(word ? word : ds_trim(s))),
					 errhint("A frame's status is one of ok, late or error.")));
	pg_unreachable();
}

static Jsonb *
check_payload(const pg_uuid_t *stream_id, Datum value, bool isnull)
{
	Size		size;
	Jsonb	   *payload;

	if (isnull)
		return DatumGetJsonbP(empty_jsonb_object());

	size = toast_raw_datum_size(value) - VARHDRSZ;
	if (size > (Size) ds_max_payload_bytes)
		ds_reject_frame(stream_id, "payload_too_large",
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("frame payload is too large"),
						 errdetail("The payload takes %zu bytes; datastreams.max_payload_bytes is %d.",
								   size, ds_max_payload_bytes)));

	payload = DatumGetJsonbP(value);
	if (!JB_ROOT_IS_OBJECT(payload) || JB_ROOT_IS_SCALAR(payload))
		ds_reject_frame(stream_id, "payload_not_object",
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("frame payload must be a JSON object")));
	return payload;
}

static int64
unix_nanoseconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64) ts.tv_sec * INT64CONST(1000000000) + ts.tv_nsec;
}

/*
 * Whose stream is it?  A role subject to row-level security must not learn
 * that a stream it cannot see exists, so for it such a stream is simply not
 * found; a role that bypasses RLS but acts for an account is told.
 */
static char *
check_stream_account(const pg_uuid_t *stream_id, const char *stream_account,
					 Datum frame_account, bool frame_account_null)
{
	char	   *acting = ds_current_account();
	bool		foreign = acting == NULL || strcmp(acting, stream_account) != 0;

	if (foreign && !ds_bypasses_rls())
		ds_reject_frame(stream_id, "stream_not_visible",
						(errcode(ERRCODE_NO_DATA_FOUND),
						 errmsg("stream %s not found", ds_uuid_to_cstring(stream_id))));
	if (foreign && acting != NULL)
		ds_reject_frame(stream_id, "stream_of_other_account",
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("stream %s belongs to another account", ds_uuid_to_cstring(stream_id)),
						 errdetail("This session acts for account \"%s\".", ds_clip_for_message(acting))));

	if (!frame_account_null)
	{
		char	   *given = TextDatumGetCString(frame_account);

		if (strcmp(given, stream_account) != 0)
			ds_reject_frame(stream_id, "account_mismatch",
							(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
							 errmsg("frame account \"%s\" does not match the account of stream %s",
									ds_clip_for_message(given), ds_uuid_to_cstring(stream_id)),
							 errhint("Leave account_id out: a frame belongs to its stream's account.")));
	}
	return pstrdup(stream_account);
}

PG_FUNCTION_INFO_V1(datastreams_frames_trigger);
Datum
datastreams_frames_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const FrameColumns *c;
	TupleDesc	desc;
	HeapTuple	tuple;
	Datum	   *values;
	bool	   *nulls;
	bool	   *replace;
	pg_uuid_t	stream_id;
	CachedStream *stream;
	char	   *account;
	StreamStatus stream_status;
	int32		sla_ms;
	int64		sequence = 0;
	bool		sequence_given;
	int32		latency_ms;
	FrameStatus status;
	Jsonb	   *payload;
	StreamProgress *progress;
	int64		latest;
	pg_uuid_t  *frame_id;
	TimestampTz created_at;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("datastreams_frames_trigger: not called by trigger manager")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("datastreams_frames_trigger: must be fired before each row")));
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("frames are immutable"),
				 errhint("Insert a new frame with a higher sequence instead.")));
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("datastreams_frames_trigger: must be fired for INSERT or UPDATE")));

	if (ds_ingest_element >= 0)
		ds_ingest_element++;

	c = frame_columns(trigdata->tg_relation);
	desc = RelationGetDescr(trigdata->tg_relation);
	tuple = trigdata->tg_trigtuple;
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	replace = palloc0(sizeof(bool) * desc->natts);
	heap_deform_tuple(tuple, desc, values, nulls);

	/* The stream: it must exist, be visible to the caller and not paused */
	if (nulls[c->stream_id])
		ds_reject_frame(NULL, "stream_id_missing",
						(errcode(ERRCODE_NOT_NULL_VIOLATION),
						 errmsg("stream_id is required")));
	memcpy(&stream_id, DatumGetUUIDP(values[c->stream_id]), sizeof(pg_uuid_t));
	stream = ds_lookup_stream(&stream_id);
	if (stream == NULL)
		ds_reject_frame(&stream_id, "stream_not_found",
						(errcode(ERRCODE_NO_DATA_FOUND),
						 errmsg("stream %s not found", ds_uuid_to_cstring(&stream_id))));
	stream_status = stream->status;
	sla_ms = stream->sla_ms;
	account = check_stream_account(&stream_id, stream->account_id,
								   values[c->account_id], nulls[c->account_id]);
	if (stream_status == STREAM_PAUSED)
		ds_reject_frame(&stream_id, "stream_paused",
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("stream %s is paused", ds_uuid_to_cstring(&stream_id)),
						 errhint("Set the stream's status to active to accept frames again.")));

	/* The frame's own fields */
	sequence_given = !nulls[c->sequence];
	if (sequence_given)
	{
		sequence = DatumGetInt64(values[c->sequence]);
		if (sequence <= 0)
			ds_reject_frame(&stream_id, "sequence_not_positive",
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("sequence must be positive"),
							 errdetail("The sequence given is " INT64_FORMAT ".", sequence)));
	}

	payload = check_payload(&stream_id, values[c->payload], nulls[c->payload]);

	latency_ms = nulls[c->latency_ms] ? 0 : DatumGetInt32(values[c->latency_ms]);
	if (latency_ms < 0)
		latency_ms = 0;

	status = parse_frame_status(&stream_id, values[c->status], nulls[c->status]);
	if (status == FRAME_OK && sla_ms > 0 && latency_ms > sla_ms)
		status = FRAME_LATE;

	if (nulls[c->metadata])
		values[c->metadata] = empty_jsonb_object();
	else
	{
		Jsonb	   *metadata = DatumGetJsonbP(values[c->metadata]);

		/* an empty object is already normal */
		if (!(JB_ROOT_IS_OBJECT(metadata) && JB_ROOT_COUNT(metadata) == 0))
			values[c->metadata] = JsonbPGetDatum(ds_normalize_metadata(metadata));
	}

	/* Ordering: under the stream's lock, against the latest sequence */
	progress = ds_progress_for(&stream_id, account);
	latest = ds_progress_latest(progress);
	if (!sequence_given)
	{
		sequence = unix_nanoseconds();
		if (sequence <= latest)
		{
			if (latest == PG_INT64_MAX)
				ds_reject_frame(&stream_id, "sequence_exhausted",
								(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
								 errmsg("stream %s has no sequence left after " INT64_FORMAT,
										ds_uuid_to_cstring(&stream_id), latest)));
			sequence = latest + 1;
		}
	}
	else if (sequence == latest)
		ds_reject_frame(&stream_id, "duplicate_sequence",
						(errcode(ERRCODE_UNIQUE_VIOLATION),
						 errmsg("stream %s already has a frame with sequence " INT64_FORMAT,
								ds_uuid_to_cstring(&stream_id), sequence)));
	else if (sequence < latest)
		ds_reject_frame(&stream_id, "sequence_out_of_order",
						(errcode(ERRCODE_CHECK_VIOLATION),
						 errmsg("sequence " INT64_FORMAT " is lower than the latest sequence of stream %s",
								sequence, ds_uuid_to_cstring(&stream_id)),
						 errdetail("The latest sequence is " INT64_FORMAT ".", latest),
						 errhint("Sequences of a stream must be strictly increasing.")));

	/* as for streams: a chosen id could reveal another account's frame */
	if (!nulls[c->id] && !ds_bypasses_rls())
		ds_reject_frame(&stream_id, "id_given",
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("a frame's id is chosen by datastreams"),
						 errhint("Leave id out; only roles that bypass row-level security may give one.")));
	if (nulls[c->id])
	{
		frame_id = palloc(sizeof(pg_uuid_t));
		ds_generate_uuid_v7(frame_id);
	}
	else
		frame_id = DatumGetUUIDP(values[c->id]);
	created_at = nulls[c->created_at] ? GetCurrentTransactionStartTimestamp() :
		DatumGetTimestampTz(values[c->created_at]);

	values[c->id] = UUIDPGetDatum(frame_id);
	values[c->account_id] = CStringGetTextDatum(account);
	values[c->sequence] = Int64GetDatum(sequence);
	values[c->payload] = JsonbPGetDatum(payload);
	values[c->latency_ms] = Int32GetDatum(latency_ms);
	values[c->status] = CStringGetTextDatum(frame_status_names[status]);
	values[c->created_at] = TimestampTzGetDatum(created_at);
	nulls[c->id] = nulls[c->account_id] = nulls[c->sequence] = false;
	nulls[c->payload] = nulls[c->latency_ms] = nulls[c->status] = false;
	nulls[c->metadata] = nulls[c->created_at] = false;
	replace[c->id] = replace[c->account_id] = replace[c->sequence] = true;
	replace[c->payload] = replace[c->latency_ms] = replace[c->status] = true;
	replace[c->metadata] = replace[c->created_at] = true;
	tuple = heap_modify_tuple(tuple, desc, values, nulls, replace);

	ds_progress_record(progress, sequence, status, latency_ms);
	ds_notify_frame(progress, frame_id, sequence, status, latency_ms, created_at, payload);
	ds_metrics_frame(&stream_id, status, latency_ms);

	return PointerGetDatum(tuple);
}

/*
 * AFTER STATEMENT: write the latest-frame pointers of the streams the
 * statement wrote to.
 */
PG_FUNCTION_INFO_V1(datastreams_frames_statement_trigger);
Datum
datastreams_frames_statement_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("datastreams_frames_statement_trigger: not called by trigger manager")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("datastreams_frames_statement_trigger: must be fired after each statement")));

	ds_progress_flush();
	return PointerGetDatum(NULL);
}
