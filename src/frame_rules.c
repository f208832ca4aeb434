/*-------------------------------------------------------------------------
 *
 * frame_rules.c
 *	  Validation, ordering and SLA classification of one frame.
 *
 * This is the ingest hot path.  Per frame it does no catalog lookup and no
 * SPI: the stream comes from the per-backend stream cache, the latest
 * sequence from the transaction's ledger (read once per stream and
 * transaction under the stream lock), and nothing else is written until
 * the transaction commits.
 *
 * The stream lock, not a foreign key, keeps frames and streams together: a
 * writer takes it before its first frame of a stream and then looks the
 * stream up again with the invalidations that arrived meanwhile, and a
 * stream's deletion takes the same lock before it deletes the frames.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <time.h>

#include "access/detoast.h"
#include "executor/executor.h"
#include "access/xact.h"
#include "nodes/plannodes.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "frame_rules.h"
#include "ledger.h"
#include "stream_state.h"

#define MAX_PAYLOAD_BYTES_DEFAULT (1024 * 1024)

const char *const frame_status_names[FRAME_STATUS_COUNT] = {"ok", "late", "error"};

static int	max_payload_bytes = MAX_PAYLOAD_BYTES_DEFAULT;

static FrameColumns columns;
static Datum empty_object = (Datum) 0;

/*
 * ON CONFLICT DO NOTHING must skip a frame whose sequence is stored, but
 * the BEFORE trigger runs before PostgreSQL looks for the conflict, and
 * the trigger is not told about the statement.  So the executor hooks keep
 * a stack of the running statements' answers; a frame is written by the
 * innermost running statement.  COPY and statements started before the
 * library was loaded are not on the stack and count as "no".
 */
#define MAX_TRACKED_STATEMENTS 64

static bool statement_skips[MAX_TRACKED_STATEMENTS];
static int	statement_depth = 0;

/* The depth when each open subtransaction started, by nesting level */
static int	depth_at_level[MAX_TRACKED_STATEMENTS];
static ExecutorStart_hook_type prev_executor_start = NULL;
static ExecutorEnd_hook_type prev_executor_end = NULL;

const FrameColumns *
ds_frame_columns(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	/* Attribute numbers never change for a given table, so look them up once */
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
	if (size > (Size) max_payload_bytes)
		ds_reject_frame(stream_id, "payload_too_large",
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("frame payload is too large"),
						 errdetail("The payload takes %zu bytes; datastreams.max_payload_bytes is %d.",
								   size, max_payload_bytes)));

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
 * Whose stream is it?  A role subject to RLS must not learn that a stream
 * it cannot see exists, so for it such a stream is simply not found; a
 * role that bypasses RLS but acts for an account is told.
 */
static const char *
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
	return stream_account;
}

/*
 * The stream, locked for this transaction.  The cache may be older than the
 * lock: a stream deleted or paused by a transaction that committed while
 * we waited for the lock is seen as such once its invalidations are read.
 */
static CachedStream *
locked_stream(const pg_uuid_t *stream_id, LedgerStream **entry)
{
	CachedStream *stream = ds_lookup_stream(stream_id);
	bool		locked_now = false;

	if (stream != NULL)
	{
		*entry = ds_ledger_stream(stream_id, stream->account_id, &locked_now);
		if (locked_now)
		{
			AcceptInvalidationMessages();
			stream = ds_lookup_stream(stream_id);
		}
	}
	if (stream == NULL)
		ds_reject_frame(stream_id, "stream_not_found",
						(errcode(ERRCODE_NO_DATA_FOUND),
						 errmsg("stream %s not found", ds_uuid_to_cstring(stream_id))));
	return stream;
}

FrameVerdict
ds_apply_frame_rules(const FrameColumns *c, Datum *values, bool *nulls,
					 bool skip_duplicates)
{
	pg_uuid_t	stream_id;
	CachedStream *stream;
	const char *account;
	StreamStatus stream_status;
	int32		sla_ms;
	int64		sequence = 0;
	bool		sequence_given;
	int32		latency_ms;
	FrameStatus status;
	Jsonb	   *payload;
	LedgerStream *entry = NULL;
	int64		latest;
	pg_uuid_t  *frame_id = NULL;

	/* The stream: it must exist, be visible to the caller and not paused */
	if (nulls[c->stream_id])
		ds_reject_frame(NULL, "stream_id_missing",
						(errcode(ERRCODE_NOT_NULL_VIOLATION),
						 errmsg("stream_id is required")));
	memcpy(&stream_id, DatumGetUUIDP(values[c->stream_id]), sizeof(pg_uuid_t));
	stream = locked_stream(&stream_id, &entry);
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

	/* as for ids: a tenant's clock is not the service's, and retention trusts it */
	if (!nulls[c->created_at] && !ds_relations()->before_1_2)
	{
		TimestampTz created_at = DatumGetTimestampTz(values[c->created_at]);

		if (!ds_bypasses_rls())
			ds_reject_frame(&stream_id, "created_at_given",
							(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
							 errmsg("a frame's created_at is set by datastreams"),
							 errhint("Leave created_at out; only roles that bypass row-level security may give one.")));
		if (TIMESTAMP_NOT_FINITE(created_at))
			ds_reject_frame(&stream_id, "created_at_not_finite",
							(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
							 errmsg("a frame's created_at must be finite")));
	}

	/* Ordering: under the stream's lock, against the latest sequence */
	latest = ds_ledger_latest(entry);
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
	else if (sequence <= latest && skip_duplicates &&
			 (sequence == latest || ds_sequence_stored(&stream_id, sequence)))
		return FRAME_ALREADY_STORED;
	else if (sequence == latest)
		ds_reject_frame(&stream_id, "duplicate_sequence",
						(errcode(ERRCODE_UNIQUE_VIOLATION),
						 errmsg("stream %s already has a frame with sequence " INT64_FORMAT,
								ds_uuid_to_cstring(&stream_id), sequence),
						 errhint("To skip frames that are already stored, use INSERT ... ON CONFLICT (stream_id, sequence) DO NOTHING.")));
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
		values[c->id] = UUIDPGetDatum(frame_id);
	}
	if (nulls[c->created_at])
		values[c->created_at] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());

	values[c->account_id] = CStringGetTextDatum(account);
	values[c->sequence] = Int64GetDatum(sequence);
	values[c->payload] = JsonbPGetDatum(payload);
	values[c->latency_ms] = Int32GetDatum(latency_ms);
	values[c->status] = CStringGetTextDatum(frame_status_names[status]);
	nulls[c->id] = nulls[c->account_id] = nulls[c->sequence] = false;
	nulls[c->payload] = nulls[c->latency_ms] = nulls[c->status] = false;
	nulls[c->metadata] = nulls[c->created_at] = false;

	ds_ledger_record_frame(entry, DatumGetUUIDP(values[c->id]), sequence, status, latency_ms,
						   DatumGetTimestampTz(values[c->created_at]));
	return FRAME_ACCEPTED;
}

/*
 * The statement stack.  Only INSERT ... ON CONFLICT DO NOTHING at the top
 * of the plan says yes; a data-modifying WITH query says no.
 */
static void
rules_executor_start(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *stmt = queryDesc->plannedstmt;
	bool		skips = false;

	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);

	if (stmt->commandType == CMD_INSERT && stmt->planTree && IsA(stmt->planTree, ModifyTable))
		skips = ((ModifyTable *) stmt->planTree)->onConflictAction == ONCONFLICT_NOTHING;
	if (statement_depth < MAX_TRACKED_STATEMENTS)
		statement_skips[statement_depth] = skips;
	statement_depth++;
}

static void
rules_executor_end(QueryDesc *queryDesc)
{
	if (statement_depth > 0)
		statement_depth--;
	if (prev_executor_end)
		prev_executor_end(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
}

bool
ds_statement_skips_conflicts(void)
{
	if (statement_depth == 0 || statement_depth > MAX_TRACKED_STATEMENTS)
		return false;
	return statement_skips[statement_depth - 1];
}

/* ExecutorEnd is not called for a statement that failed */
static void
rules_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		statement_depth = 0;
}

static void
rules_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	/* statements that failed inside an exception block left their entries */
	if (level >= MAX_TRACKED_STATEMENTS)
		return;
	if (event == SUBXACT_EVENT_START_SUB)
		depth_at_level[level] = statement_depth;
	else if (event == SUBXACT_EVENT_ABORT_SUB)
		statement_depth = depth_at_level[level];
}

void
ds_frame_rules_init(void)
{
	DefineCustomIntVariable("datastreams.max_payload_bytes",
							"Sets the largest frame payload accepted, in bytes.",
							NULL,
							&max_payload_bytes,
							MAX_PAYLOAD_BYTES_DEFAULT,
							0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = rules_executor_start;
	prev_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = rules_executor_end;
	RegisterXactCallback(rules_xact_callback, NULL);
	RegisterSubXactCallback(rules_subxact_callback, NULL);
}
