/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  Retention: removing frames older than their stream's retention.
 *
 * A stream's effective retention is its streams.retention, or else the
 * setting datastreams.default_retention (empty, the default: keep every
 * frame).  datastreams.prune() does one bounded step: it deletes at most
 * datastreams.prune_batch_size frames, stream by stream.  The caller
 * commits the step; the background worker (see prune_worker.c) and the
 * procedure datastreams.prune_all() call prune() again, one transaction
 * per step, until a step deletes less than a full batch.  Short
 * transactions let autovacuum reclaim what earlier steps deleted while
 * later steps run.
 *
 * A step costs in proportion to the frames it deletes, not to the frames a
 * stream keeps: each stream's (stream_id, sequence) index is walked from
 * its oldest frame, and the walk ends PRUNE_LOOKAHEAD frames past the last
 * expired one.  Frames of a stream are created in sequence order
 * (created_at is the writing transaction's start), so that reads a few of
 * the frames kept, however many there are.  Filtering every retained frame
 * by created_at instead made every step read a stream's whole retention
 * window.  A frame that expired behind more than PRUNE_LOOKAHEAD younger
 * ones (only a bulk load that gives created_at can make one) goes once
 * those have expired too.
 *
 * Safety:
 * - A stream's latest frame is never deleted: the stream's counters are
 *	 folded first (stream_state.c), and only frames with a sequence lower
 *	 than the highest one counted qualify, so latest_frame() and the frames
 *	 trigger's ordering check, which both rely on the highest frame, are
 *	 unaffected, and no frame leaves before the counters include it.
 * - Writers append frames above the latest sequence under their per-stream
 *	 lock; pruning deletes frames below it and takes neither that lock nor
 *	 anything an insert waits for.
 * - Two pruners never work on the same stream at once: each stream is
 *	 claimed with a transaction-level advisory lock taken without waiting,
 *	 and a stream claimed by someone else is skipped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "datastreams.h"
#include "stream_state.h"

/*
 * How many frames in a row that have not expired end a stream's walk.
 * Frames are created in sequence order, so after the first one that has
 * not expired the rest have not either; the few steps beyond it find
 * frames that expired out of that order (written by concurrent
 * transactions, or given an older created_at by a bulk load) when only a
 * few younger ones precede them.
 */
#define PRUNE_LOOKAHEAD 64

/* Distinguishes prune claims from stream locks (0x4453) and user locks */
#define PRUNE_LOCK_CLASS 0x4450

/* Settings */
#define PRUNE_BATCH_SIZE_DEFAULT 10000

static char *ds_default_retention_setting = NULL;
static int	prune_batch_size = PRUNE_BATCH_SIZE_DEFAULT;

/* datastreams.default_retention, parsed by its check hook */
typedef struct DefaultRetention
{
	bool		keep_all;
	Interval	retention;
} DefaultRetention;

static DefaultRetention default_retention = {true};

static SPIPlanPtr streams_plan = NULL;
static SPIPlanPtr counted_plan = NULL;
static SPIPlanPtr delete_plan = NULL;

/*
 * Parse an interval without raising errors (a check hook must not).
 * Returns false when the text is not an interval.
 */
static bool
parse_interval(const char *text, Interval *result)
{
	char		workbuf[256];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	int			dterr;
	struct pg_itm_in itm;
	char	   *copy = pstrdup(text);

	dterr = ParseDateTime(copy, workbuf, sizeof(workbuf), field, ftype,
						  MAXDATEFIELDS, &nf);
	if (dterr == 0)
		dterr = DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE, &dtype, &itm);
	if (dterr == DTERR_BAD_FORMAT)
		dterr = DecodeISO8601Interval(copy, &dtype, &itm);
	if (dterr != 0 || dtype != DTK_DELTA)
		return false;
	return itmin2interval(&itm, result) == 0;
}

static bool
interval_is_positive(Interval *span)
{
	Interval	zero = {0};

	return DatumGetBool(DirectFunctionCall2(interval_gt, IntervalPGetDatum(span),
											IntervalPGetDatum(&zero)));
}

static bool
check_default_retention(char **newval, void **extra, GucSource source)
{
	DefaultRetention parsed = {true};
	DefaultRetention *result;
	const char *s = *newval;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s != '\0')
	{
		Interval	zero = {0};

		if (!parse_interval(s, &parsed.retention))
		{
			GUC_check_errdetail("The retention is an interval such as '7 days', or empty to keep every frame.");
			return false;
		}
		if (!interval_is_positive(&parsed.retention))
		{
			if (!DatumGetBool(DirectFunctionCall2(interval_eq,
												  IntervalPGetDatum(&parsed.retention),
												  IntervalPGetDatum(&zero))))
			{
				GUC_check_errdetail("The retention must not be negative; empty or 0 keeps every frame.");
				return false;
			}
			/* 0, like an empty setting, keeps every frame */
		}
		else
			parsed.keep_all = false;
	}

	/* PostgreSQL 15 frees a check hook's extra with free() */
	result = malloc(sizeof(DefaultRetention));
	if (result == NULL)
		return false;
	*result = parsed;
	*extra = result;
	return true;
}

static void
assign_default_retention(const char *newval, void *extra)
{
	default_retention = *(DefaultRetention *) extra;
}

/*
 * The oldest created_at a frame kept under this retention may have, or false
 * when no frame can be that old (the retention reaches past the oldest
 * representable timestamp).
 */
static bool
retention_cutoff(Interval *retention, TimestampTz now, TimestampTz *cutoff)
{
	double		span;

	span = ((double) retention->month * DAYS_PER_MONTH + retention->day) * USECS_PER_DAY +
		retention->time;
	/* months and days vary in length: keep a year's margin */
	if (span <= 0 || span >= (double) now - (double) MIN_TIMESTAMP - 366.0 * USECS_PER_DAY)
		return false;
	*cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													  TimestampTzGetDatum(now),
													  IntervalPGetDatum(retention)));
	return true;
}

/* Claim a stream for this transaction; false when another pruner has it */
static bool
claim_stream(const pg_uuid_t *stream_id)
{
	LOCKTAG		tag;

	ds_stream_locktag(&tag, stream_id, PRUNE_LOCK_CLASS);
	return LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

static SPIPlanPtr
prepare(const char *query, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(query, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

static void
prepare_plans(void)
{
	Oid			streams_args[1] = {INTERVALOID};
	Oid			counted_args[1] = {UUIDOID};
	Oid			delete_args[1] = {TIDARRAYOID};

	/* Every name and operator is qualified: the caller's search_path is not ours */
	if (streams_plan == NULL)
		streams_plan = prepare("SELECT s.id, COALESCE(s.retention, $1) "
							   "  FROM datastreams.streams AS s "
							   " WHERE COALESCE(s.retention, $1) IS NOT NULL "
							   " ORDER BY s.id",
							   1, streams_args);

	/*
	 * The highest frame the stream's counters have counted (its
	 * latest_sequence; before 1.2, the latest frame): never above its latest
	 * frame, and frames above it stay until the counters include them.
	 */
	if (counted_plan == NULL)
		counted_plan = prepare("SELECT st.latest_sequence FROM datastreams.stream_state AS st "
							   " WHERE st.stream_id OPERATOR(pg_catalog.=) $1",
							   1, counted_args);

	/*
	 * The frames found by expired_frames(), by ctid (a TID scan), through
	 * the executor so that a trigger a DBA put on frames still fires.
	 * Frames are never updated and our snapshot keeps vacuum from reusing
	 * their slots, so the ctids stay theirs; one deleted meanwhile by
	 * someone else is skipped.
	 */
	if (delete_plan == NULL)
		delete_plan = prepare("DELETE FROM datastreams.frames AS f "
							  " WHERE f.ctid OPERATOR(pg_catalog.=) ANY ($1)",
							  1, delete_args);
}

/*
 * The ctids of the stream's oldest frames created before cutoff with a
 * sequence below `below`, in sequence order, at most max_frames of them.
 * The walk ends after PRUNE_LOOKAHEAD frames in a row that are not that
 * old.
 */
static int
expired_frames(const pg_uuid_t *stream_id, int64 below, TimestampTz cutoff,
			   int max_frames, Datum *tids)
{
	const DsRelations *rels = ds_relations();
	Relation	heap;
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData keys[2];
	TupleTableSlot *slot;
	AttrNumber	created_at_att;
	int			n = 0;
	int			kept_in_a_row = 0;

	heap = table_open(rels->frames, AccessShareLock);
	index = index_open(rels->frames_stream_sequence_index, AccessShareLock);
	created_at_att = ds_column_index(RelationGetDescr(heap), "frames", "created_at", true) + 1;
	slot = table_slot_create(heap, NULL);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(stream_id));
	ScanKeyInit(&keys[1], 2, BTLessStrategyNumber, F_INT8LT, Int64GetDatum(below));
	scan = index_beginscan(heap, index, GetActiveSnapshot(), 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	while (n < max_frames && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		created_at = slot_getattr(slot, created_at_att, &isnull);
		ItemPointer tid;

		if (isnull || DatumGetTimestampTz(created_at) >= cutoff)
		{
			if (++kept_in_a_row >= PRUNE_LOOKAHEAD)
				break;
			continue;
		}
		kept_in_a_row = 0;
		tid = palloc(sizeof(ItemPointerData));
		ItemPointerCopy(&slot->tts_tid, tid);
		tids[n++] = PointerGetDatum(tid);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	return n;
}

/*
 * Prune one stream: at most max_frames frames.  Under SPI.
 */
static int64
prune_stream(const pg_uuid_t *stream_id, TimestampTz cutoff, int64 max_frames)
{
	Datum		arg = UUIDPGetDatum(stream_id);
	Datum	   *tids;
	bool		isnull;
	int64		below;
	int			n;
	int			rc;

	rc = SPI_execute_plan(counted_plan, &arg, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read datastreams.stream_state: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return 0;				/* the stream has no frames */
	}
	below = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	if (isnull)
		return 0;

	max_frames = Min(max_frames, MaxAllocSize / sizeof(Datum));
	tids = palloc(sizeof(Datum) * max_frames);
	n = expired_frames(stream_id, below, cutoff, (int) max_frames, tids);
	if (n == 0)
		return 0;

	arg = PointerGetDatum(construct_array(tids, n, TIDOID, sizeof(ItemPointerData), false,
										  TYPALIGN_SHORT));
	rc = SPI_execute_plan(delete_plan, &arg, NULL, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "could not delete from datastreams.frames: %s", SPI_result_code_string(rc));
	return (int64) SPI_processed;
}

/*
 * One bounded step of pruning: delete at most max_frames expired frames.
 * Returns how many were deleted.  Runs as the bootstrap superuser: the
 * tables are subject to forced row-level security, which an administrator
 * who is not a superuser would otherwise be held to.
 */
static int64
prune_step(int64 max_frames)
{
	Oid			save_userid;
	int			save_sec_context;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Datum		arg;
	char		argnull;
	uint64		nstreams;
	uint64		i;
	int64		total = 0;
	int			rc;
	MemoryContext step_context;
	MemoryContext old_context;

	ds_become_superuser(&save_userid, &save_sec_context);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	prepare_plans();

	arg = IntervalPGetDatum(&default_retention.retention);
	argnull = default_retention.keep_all ? 'n' : ' ';
	rc = SPI_execute_plan(streams_plan, &arg, &argnull, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read datastreams.streams: %s", SPI_result_code_string(rc));

	/* what one stream needs is freed before the next (there may be many) */
	step_context = AllocSetContextCreate(CurrentMemoryContext, "datastreams prune step",
										 ALLOCSET_DEFAULT_SIZES);

	/* SPI keeps this result until SPI_finish, past the statements below */
	nstreams = SPI_processed;
	if (nstreams > 0)
	{
		SPITupleTable *streams = SPI_tuptable;

		for (i = 0; i < nstreams && total < max_frames; i++)
		{
			HeapTuple	tuple = streams->vals[i];
			TupleDesc	desc = streams->tupdesc;
			bool		isnull;
			pg_uuid_t	stream_id;
			Interval   *retention;
			TimestampTz cutoff;

			CHECK_FOR_INTERRUPTS();
			memcpy(&stream_id, DatumGetUUIDP(SPI_getbinval(tuple, desc, 1, &isnull)),
				   sizeof(pg_uuid_t));
			retention = DatumGetIntervalP(SPI_getbinval(tuple, desc, 2, &isnull));
			if (isnull || !retention_cutoff(retention, now, &cutoff))
				continue;
			if (!claim_stream(&stream_id))
				continue;
			/* count what is about to go; a stream being folded waits a step */
			if (!ds_relations()->before_1_2 && !ds_fold_stream_state(&stream_id, false))
				continue;

			old_context = MemoryContextSwitchTo(step_context);
			total += prune_stream(&stream_id, cutoff, max_frames - total);
			MemoryContextSwitchTo(old_context);
			MemoryContextReset(step_context);
		}
		SPI_freetuptable(streams);
	}

	MemoryContextDelete(step_context);
	SPI_finish();
	ds_restore_user(save_userid, save_sec_context);
	return total;
}

PG_FUNCTION_INFO_V1(datastreams_prune);
Datum
datastreams_prune(PG_FUNCTION_ARGS)
{
	if (!ds_is_admin())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied: only datastreams administrators may do this"),
				 errhint("Administrators are superusers and members of the extension's owner role.")));

	PG_RETURN_INT64(prune_step(prune_batch_size));
}

/* A step that deletes fewer frames than this has caught up */
int
ds_prune_batch_size(void)
{
	return prune_batch_size;
}

void
ds_retention_init(void)
{
	DefineCustomStringVariable("datastreams.default_retention",
							   "Sets how long frames of streams without a retention of their own are kept.",
							   "An interval such as '30 days'; empty or 0 keeps every frame.",
							   &ds_default_retention_setting,
							   "",
							   PGC_SUSET,
							   0,
							   check_default_retention, assign_default_retention, NULL);

	DefineCustomIntVariable("datastreams.prune_batch_size",
							"Sets the most frames one call of datastreams.prune() deletes.",
							"Each call is one short transaction's worth of work; callers repeat it until a call deletes fewer.",
							&prune_batch_size,
							PRUNE_BATCH_SIZE_DEFAULT,
							1, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
}
