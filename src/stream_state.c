/*-------------------------------------------------------------------------
 *
 * stream_state.c
 *	  The stream lock, the latest sequence, and the per-stream counters of
 *	  datastreams.stream_state.
 *
 * Sequences of a stream must be strictly increasing even with concurrent
 * writers, so the first frame a transaction writes to a stream takes the
 * stream lock, held until the transaction ends, then reads the stream's
 * highest sequence through the (stream_id, sequence) index with a dirty
 * snapshot: with the lock held no other writer is in progress, and the
 * dirty snapshot also sees frames committed after our own snapshot was
 * taken, as a unique index check would.
 *
 * A transaction writing to very many streams would exhaust the lock table
 * with one lock per stream; past datastreams.max_stream_locks streams it
 * locks the whole frames table against other writers instead.
 *
 * The counters in stream_state cover exactly the frames with sequence up
 * to counted_through; readers (stream_health) add the frames above it,
 * through the index.  Folding frames into the counters is deferred work:
 * the publisher does it for many transactions at once, and writers do it
 * at commit only when no publisher runs for their database.  So no frame
 * costs a second heap write, the counters are exact for committed frames
 * in any snapshot, and everything is in tables, safe across a crash.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "stream_state.h"

#define MAX_STREAM_LOCKS_DEFAULT 1000

static int	max_stream_locks = MAX_STREAM_LOCKS_DEFAULT;
static SPIPlanPtr fold_plan = NULL;
static SPIPlanPtr add_plan = NULL;
static SPIPlanPtr legacy_plan = NULL;

/*
 * An advisory lock tag for a stream.  The key is a hash of the stream id,
 * so that pg_locks, which every role can read, shows no part of the id.
 */
void
ds_stream_locktag(LOCKTAG *tag, const pg_uuid_t *stream_id, uint16 lock_class)
{
	uint64		key = hash_bytes_extended(stream_id->data, UUID_LEN, 0);

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key, lock_class);
}

/*
 * Take the writers' lock of a stream; streams_locked is how many streams
 * the transaction has locked so far.
 */
void
ds_lock_stream(const pg_uuid_t *stream_id, int streams_locked)
{
	LOCKTAG		tag;

	if (streams_locked > max_stream_locks)
	{
		Oid			frames = ds_relations()->frames;

		SET_LOCKTAG_RELATION(tag, MyDatabaseId, frames);
		if (!LockHeldByMe(&tag, ShareRowExclusiveLock))
			LockRelationOid(frames, ShareRowExclusiveLock);
		return;
	}
	ds_stream_locktag(&tag, stream_id, STREAM_LOCK_WRITERS);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

typedef enum ProbeRange
{
	PROBE_STREAM,				/* every frame of the stream */
	PROBE_FROM,					/* frames with sequence >= the one given */
	PROBE_EXACT					/* the frame with the sequence given */
} ProbeRange;

/*
 * Scan a stream's frames through the (stream_id, sequence) index with a
 * dirty snapshot, from the highest sequence in the range down.
 */
static bool
probe_frames(const pg_uuid_t *stream_id, ProbeRange range, int64 sequence, int64 *found_sequence)
{
	const DsRelations *rels = ds_relations();
	SnapshotData dirty;
	Relation	heap;
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData keys[2];
	int			nkeys = range == PROBE_STREAM ? 1 : 2;
	TupleTableSlot *slot;
	bool		found = false;

	InitDirtySnapshot(dirty);
	heap = table_open(rels->frames, AccessShareLock);
	index = index_open(rels->frames_stream_sequence_index, AccessShareLock);
	slot = table_slot_create(heap, NULL);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(stream_id));
	if (range == PROBE_EXACT)
		ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(sequence));
	else
		ScanKeyInit(&keys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(sequence));
	scan = index_beginscan(heap, index, &dirty, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		found = true;
		if (found_sequence)
		{
			bool		isnull;
			static AttrNumber sequence_att = InvalidAttrNumber;
			static Oid	sequence_att_rel = InvalidOid;

			if (sequence_att_rel != rels->frames)
			{
				sequence_att = ds_column_index(RelationGetDescr(heap), "frames", "sequence", true) + 1;
				sequence_att_rel = rels->frames;
			}
			*found_sequence = DatumGetInt64(slot_getattr(slot, sequence_att, &isnull));
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	return found;
}

/*
 * The highest sequence the stream has, 0 when it has no frames.
 *
 * A backward index scan reads every matching item of the leaf page it
 * starts on before it returns the first, which for a stream of many frames
 * is a page of them.  A guess of the answer (the latest sequence this
 * backend saw in the stream; 0 for none) bounds the scan from below, so
 * that usually it reads one item.  The guess may be wrong either way: when
 * nothing is at or above it, the whole stream is scanned; the answer is
 * exact in every case.
 */
int64
ds_read_latest_sequence(const pg_uuid_t *stream_id, int64 guess)
{
	int64		latest = 0;

	if (guess > 0 && probe_frames(stream_id, PROBE_FROM, guess, &latest))
		return latest;
	(void) probe_frames(stream_id, PROBE_STREAM, 0, &latest);
	return latest;
}

bool
ds_sequence_stored(const pg_uuid_t *stream_id, int64 sequence)
{
	return probe_frames(stream_id, PROBE_EXACT, sequence, NULL);
}

/*
 * Fold a stream's frames above counted_through into its counters, as the
 * bootstrap superuser (tenants read stream_state but never write it; the
 * rows written are fully determined by the fold).  Without wait, a stream
 * whose row another session is folding is left alone (false).
 */
bool
ds_fold_stream_state(const pg_uuid_t *stream_id, bool wait)
{
	Datum		values[2];
	Oid			save_userid;
	int			save_sec_context;
	bool		folded;

	ds_become_superuser(&save_userid, &save_sec_context);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (fold_plan == NULL)
	{
		Oid			argtypes[2] = {UUIDOID, BOOLOID};
		fold_plan = ds_prepare_kept("SELECT datastreams.fold_stream_state($1, $2)", 2, argtypes);
	}
	values[0] = UUIDPGetDatum(stream_id);
	values[1] = BoolGetDatum(wait);
	if (SPI_execute_plan(fold_plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not fold the state of stream %s", ds_uuid_to_cstring(stream_id));
	folded = SPI_processed == 1;
	SPI_finish();
	ds_restore_user(save_userid, save_sec_context);
	return folded;
}

/*
 * A writer's own frames, when the counters already count every frame
 * before them (as when every writer adds its own): one UPDATE.  False when
 * they do not, or the stream has no row yet.
 */
static bool
add_own_frames(LedgerStream *entry)
{
	StreamTally *t = &entry->t;
	Datum		values[10];

	if (add_plan == NULL)
	{
		Oid			argtypes[10] = {UUIDOID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
		UUIDOID, INT8OID, TIMESTAMPTZOID, INT8OID};
		add_plan = ds_prepare_kept("UPDATE datastreams.stream_state AS st SET "
									   " frames_ok = st.frames_ok OPERATOR(pg_catalog.+) $2, "
									   " frames_late = st.frames_late OPERATOR(pg_catalog.+) $3, "
									   " frames_error = st.frames_error OPERATOR(pg_catalog.+) $4, "
									   " latency_ms_total = st.latency_ms_total OPERATOR(pg_catalog.+) $5, "
									   " counted_through = $6, latest_frame_id = $7, latest_sequence = $8, "
									   " latest_created_at = $9, updated_at = pg_catalog.now() "
									   " WHERE st.stream_id OPERATOR(pg_catalog.=) $1 "
									   "   AND st.counted_through OPERATOR(pg_catalog.=) $10",
									   10, argtypes);
	}
	values[0] = UUIDPGetDatum(&entry->stream_id);
	values[1] = Int64GetDatum(t->frames[FRAME_OK]);
	values[2] = Int64GetDatum(t->frames[FRAME_LATE]);
	values[3] = Int64GetDatum(t->frames[FRAME_ERROR]);
	values[4] = Int64GetDatum(t->latency_sum_ms);
	values[5] = Int64GetDatum(t->latest);
	values[6] = UUIDPGetDatum(&t->last_id);
	values[7] = Int64GetDatum(t->latest);
	values[8] = TimestampTzGetDatum(t->last_created_at);
	values[9] = Int64GetDatum(t->latest_before);
	if (SPI_execute_plan(add_plan, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update the state of stream %s", ds_uuid_to_cstring(&entry->stream_id));
	return SPI_processed == 1;
}

/*
 * The SQL before 1.2 has no counted_through and reads the latest frame
 * through the pointer: write both with every commit, as 1.1 did.
 */
static void
write_legacy_state(LedgerStream *entry)
{
	StreamTally *t = &entry->t;
	Datum		values[9];

	if (legacy_plan == NULL)
	{
		Oid			argtypes[9] = {UUIDOID, TEXTOID, UUIDOID, INT8OID, TIMESTAMPTZOID,
		INT8OID, INT8OID, INT8OID, INT8OID};
		legacy_plan = ds_prepare_kept("INSERT INTO datastreams.stream_state AS s "
									   "(stream_id, account_id, latest_frame_id, latest_sequence, latest_created_at, "
									   " frames_ok, frames_late, frames_error, latency_ms_total, updated_at) "
									   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, pg_catalog.now()) "
									   "ON CONFLICT (stream_id) DO UPDATE SET "
									   " latest_frame_id = excluded.latest_frame_id, "
									   " latest_sequence = excluded.latest_sequence, "
									   " latest_created_at = excluded.latest_created_at, "
									   " frames_ok = s.frames_ok OPERATOR(pg_catalog.+) excluded.frames_ok, "
									   " frames_late = s.frames_late OPERATOR(pg_catalog.+) excluded.frames_late, "
									   " frames_error = s.frames_error OPERATOR(pg_catalog.+) excluded.frames_error, "
									   " latency_ms_total = s.latency_ms_total OPERATOR(pg_catalog.+) excluded.latency_ms_total, "
									   " updated_at = excluded.updated_at",
									   9, argtypes);
	}
	values[0] = UUIDPGetDatum(&entry->stream_id);
	values[1] = CStringGetTextDatum(entry->account_id);
	values[2] = UUIDPGetDatum(&t->last_id);
	values[3] = Int64GetDatum(t->latest);
	values[4] = TimestampTzGetDatum(t->last_created_at);
	values[5] = Int64GetDatum(t->frames[FRAME_OK]);
	values[6] = Int64GetDatum(t->frames[FRAME_LATE]);
	values[7] = Int64GetDatum(t->frames[FRAME_ERROR]);
	values[8] = Int64GetDatum(t->latency_sum_ms);
	if (SPI_execute_plan(legacy_plan, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write the state of stream %s", ds_uuid_to_cstring(&entry->stream_id));
}

/*
 * At commit, when no publisher will fold them.  The writer holds the stream
 * locks, so no other writer adds frames meanwhile.
 */
void
ds_fold_stream_states(LedgerStream **streams, int count)
{
	Oid			save_userid;
	int			save_sec_context;
	bool	   *added = palloc0(sizeof(bool) * count);
	int			i;

	/* at pre-commit no statement runs, so there is no snapshot to use */
	PushActiveSnapshot(GetTransactionSnapshot());
	ds_become_superuser(&save_userid, &save_sec_context);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (i = 0; i < count; i++)
	{
		if (ds_relations()->before_1_2)
		{
			write_legacy_state(streams[i]);
			added[i] = true;
		}
		else
			added[i] = add_own_frames(streams[i]);
	}
	SPI_finish();
	ds_restore_user(save_userid, save_sec_context);
	for (i = 0; i < count; i++)
		if (!added[i])
			(void) ds_fold_stream_state(&streams[i]->stream_id, true);
	PopActiveSnapshot();
	pfree(added);
}

void
ds_stream_state_init(void)
{
	DefineCustomIntVariable("datastreams.max_stream_locks",
							"Sets how many streams a transaction locks one by one before it locks the frames table instead.",
							"Past this many streams a transaction blocks every other writer until it ends, rather than fill the lock table.",
							&max_stream_locks,
							MAX_STREAM_LOCKS_DEFAULT,
							1, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
}
