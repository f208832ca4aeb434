/*-------------------------------------------------------------------------
 *
 * stream_state.c
 *	  Per-stream sequence ordering and the latest-frame pointer.
 *
 * Sequences of a stream must be strictly increasing even with concurrent
 * writers, so the first frame a transaction writes to a stream takes a
 * per-stream lock held until the transaction ends, then reads the stream's
 * highest sequence through the (stream_id, sequence) index with a dirty
 * snapshot: with the lock held no other writer is in progress, and the
 * dirty snapshot also sees frames committed after our own snapshot was
 * taken, just as a unique index check would.  The transaction then tracks
 * the latest sequence in memory, so later frames cost no index probe.
 *
 * The latest-frame pointer and the per-stream counters live in
 * datastreams.stream_state.  They are written once per statement and
 * stream (by the AFTER STATEMENT trigger calling ds_progress_flush), not
 * once per row: rewriting one row per frame would cost a heap update per
 * frame and grow a HOT chain inside long transactions.  The pointer is
 * taken from the index at flush time, so it is right even when a later
 * BEFORE trigger skipped a row or a subtransaction rolled some back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "datastreams.h"

/* Distinguishes our stream locks from user advisory locks (which use 1, 2) */
#define STREAM_LOCK_CLASS 0x4453


/*
 * The table outlives transactions so that single-frame transactions do not
 * pay for building it each time; entries are marked invalid at transaction
 * end, and the table is rebuilt when it has grown large.
 */
#define PROGRESS_KEEP_ENTRIES 64

static MemoryContext progress_context = NULL;
static HTAB *progress = NULL;
static bool progress_used = false;

/* ProgressSavepoints of open subtransactions, innermost first */
static List *savepoints = NIL;
static SPIPlanPtr upsert_plan = NULL;

/*
 * An advisory lock tag for a stream.  lock_class tells apart the writers'
 * lock from the pruners' claim, and both from user advisory locks (which
 * use 1 and 2 in the last field).
 */
void
ds_stream_locktag(LOCKTAG *tag, const pg_uuid_t *stream_id, uint16 lock_class)
{
	uint32		key1;
	uint32		key2;

	memcpy(&key1, stream_id->data, sizeof(key1));
	memcpy(&key2, stream_id->data + UUID_LEN - sizeof(key2), sizeof(key2));
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, key1, key2, lock_class);
}

static void
lock_stream(const pg_uuid_t *stream_id)
{
	LOCKTAG		tag;

	ds_stream_locktag(&tag, stream_id, STREAM_LOCK_CLASS);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

typedef struct LatestFrame
{
	pg_uuid_t	id;
	int64		sequence;
	TimestampTz created_at;
} LatestFrame;

/*
 * The stream's frame with the highest sequence, committed or written by this
 * transaction.  False when the stream has no frames.
 */
static bool
read_latest_frame(const pg_uuid_t *stream_id, LatestFrame *latest)
{
	const DsRelations *rels = ds_relations();
	SnapshotData dirty;
	Relation	heap;
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *slot;
	bool		found = false;

	static Oid	attnums_relid = InvalidOid;
	static AttrNumber id_att,
				sequence_att,
				created_at_att;

	if (attnums_relid != rels->frames)
	{
		id_att = get_attnum(rels->frames, "id");
		sequence_att = get_attnum(rels->frames, "sequence");
		created_at_att = get_attnum(rels->frames, "created_at");
		attnums_relid = rels->frames;
	}

	InitDirtySnapshot(dirty);
	heap = table_open(rels->frames, AccessShareLock);
	index = index_open(rels->frames_stream_sequence_index, AccessShareLock);
	slot = table_slot_create(heap, NULL);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(stream_id));
	scan = index_beginscan(heap, index, &dirty, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;

		memcpy(&latest->id, DatumGetUUIDP(slot_getattr(slot, id_att, &isnull)),
			   sizeof(pg_uuid_t));
		latest->sequence = DatumGetInt64(slot_getattr(slot, sequence_att, &isnull));
		latest->created_at = DatumGetTimestampTz(slot_getattr(slot, created_at_att, &isnull));
		found = true;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	return found;
}

StreamProgress *
ds_progress_for(const pg_uuid_t *stream_id, const char *account_id)
{
	StreamProgress *entry;
	bool		found;

	if (progress == NULL)
	{
		HASHCTL		ctl;

		if (progress_context == NULL)
			progress_context = AllocSetContextCreate(TopMemoryContext,
													 "datastreams stream progress",
													 ALLOCSET_SMALL_SIZES);
		ctl.keysize = sizeof(pg_uuid_t);
		ctl.entrysize = sizeof(StreamProgress);
		ctl.hcxt = progress_context;
		progress = hash_create("datastreams stream progress", 16, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	progress_used = true;

	entry = hash_search(progress, stream_id, HASH_ENTER, &found);
	if (!found || !entry->valid)
	{
		if (found)
			pfree(entry->account_id);
		memset(((char *) entry) + sizeof(pg_uuid_t), 0,
			   sizeof(StreamProgress) - sizeof(pg_uuid_t));
		entry->valid = true;
		entry->account_id = MemoryContextStrdup(progress_context, account_id);
	}
	if (!entry->locked)
	{
		lock_stream(stream_id);
		entry->locked = true;
	}
	return entry;
}

/*
 * The highest sequence the stream has, 0 when it has no frames.
 */
int64
ds_progress_latest(StreamProgress *entry)
{
	if (!entry->latest_known)
	{
		LatestFrame latest;

		entry->latest = read_latest_frame(&entry->stream_id, &latest) ? latest.sequence : 0;
		entry->latest_known = true;
	}
	return entry->latest;
}

void
ds_progress_record(StreamProgress *entry, int64 sequence, FrameStatus status,
				   int32 latency_ms)
{
	entry->latest = sequence;
	entry->latest_known = true;
	entry->touched = true;
	entry->counts[status]++;
	entry->latency_total += latency_ms;
}

static void
prepare_upsert(void)
{
	Oid			argtypes[9] = {UUIDOID, TEXTOID, UUIDOID, INT8OID, TIMESTAMPTZOID,
	INT8OID, INT8OID, INT8OID, INT8OID};
	SPIPlanPtr	plan;

	/* Every name and operator is qualified: the caller's search_path is not ours */
	plan = SPI_prepare("INSERT INTO datastreams.stream_state AS s "
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
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	upsert_plan = plan;
}

/*
 * The common case: the stream already has its row.  Update it in place
 * through the heap and its index, without the cost of an SPI statement per
 * flush.  With the stream lock held nobody else writes this row, and the
 * dirty snapshot finds its newest version, including our own.  False when
 * the stream has no row yet.
 */
static bool
update_stream_state(StreamProgress *entry, const LatestFrame *latest)
{
	const DsRelations *rels = ds_relations();
	Relation	rel;
	TupleDesc	desc;
	SnapshotData dirty;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	old;
	bool		found = false;

	InitDirtySnapshot(dirty);
	rel = table_open(rels->stream_state, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(&entry->stream_id));
	scan = systable_beginscan(rel, rels->stream_state_pkey, true, &dirty, 1, &key);
	old = systable_getnext(scan);
	if (HeapTupleIsValid(old))
	{
		Datum	   *values = palloc(sizeof(Datum) * desc->natts);
		bool	   *nulls = palloc(sizeof(bool) * desc->natts);
		bool	   *replace = palloc0(sizeof(bool) * desc->natts);
		HeapTuple	tuple;
		int			i;
		static const char *const counters[] = {"frames_ok", "frames_late", "frames_error"};

		heap_deform_tuple(old, desc, values, nulls);

#define SET_COLUMN(name, datum) \
		do { \
			int			att_ = ds_column_index(desc, "stream_state", (name), true); \
			values[att_] = (datum); \
			nulls[att_] = false; \
			replace[att_] = true; \
		} while (0)

		SET_COLUMN("latest_frame_id", UUIDPGetDatum(&latest->id));
		SET_COLUMN("latest_sequence", Int64GetDatum(latest->sequence));
		SET_COLUMN("latest_created_at", TimestampTzGetDatum(latest->created_at));
		for (i = 0; i < FRAME_STATUS_COUNT; i++)
		{
			int			att = ds_column_index(desc, "stream_state", counters[i], true);

			SET_COLUMN(counters[i], Int64GetDatum(DatumGetInt64(values[att]) + entry->counts[i]));
		}
		SET_COLUMN("latency_ms_total",
				   Int64GetDatum(DatumGetInt64(values[ds_column_index(desc, "stream_state", "latency_ms_total", true)]) +
								 entry->latency_total));
		SET_COLUMN("updated_at", TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()));
#undef SET_COLUMN

		tuple = heap_modify_tuple(old, desc, values, nulls, replace);
		CatalogTupleUpdate(rel, &old->t_self, tuple);
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, NoLock);
	return found;
}

static void
write_stream_state(StreamProgress *entry, const LatestFrame *latest)
{
	Datum		values[9];
	int			rc;

	values[0] = UUIDPGetDatum(&entry->stream_id);
	values[1] = CStringGetTextDatum(entry->account_id);
	values[2] = UUIDPGetDatum(&latest->id);
	values[3] = Int64GetDatum(latest->sequence);
	values[4] = TimestampTzGetDatum(latest->created_at);
	values[5] = Int64GetDatum(entry->counts[FRAME_OK]);
	values[6] = Int64GetDatum(entry->counts[FRAME_LATE]);
	values[7] = Int64GetDatum(entry->counts[FRAME_ERROR]);
	values[8] = Int64GetDatum(entry->latency_total);

	rc = SPI_execute_plan(upsert_plan, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not write datastreams.stream_state: %s", SPI_result_code_string(rc));
}

/*
 * Write the pointer and counters of every stream the statement touched.
 * Runs as the bootstrap superuser: tenants may read stream_state but not
 * write it, and the rows written are fully determined by this code.
 */
void
ds_progress_flush(void)
{
	HASH_SEQ_STATUS seq;
	StreamProgress *entry;
	Oid			save_userid;
	int			save_sec_context;
	bool		connected = false;

	if (!progress_used)
		return;

	hash_seq_init(&seq, progress);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		LatestFrame latest;

		if (!entry->valid || !entry->touched)
			continue;
		entry->touched = false;
		ds_notify_flush(entry);
		if (!read_latest_frame(&entry->stream_id, &latest))
			continue;

		if (update_stream_state(entry, &latest))
		{
			memset(entry->counts, 0, sizeof(entry->counts));
			entry->latency_total = 0;
			continue;
		}

		if (!connected)
		{
			GetUserIdAndSecContext(&save_userid, &save_sec_context);
			SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
								   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			if (upsert_plan == NULL)
				prepare_upsert();
			connected = true;
		}
		write_stream_state(entry, &latest);
		memset(entry->counts, 0, sizeof(entry->counts));
		entry->latency_total = 0;
	}

	if (connected)
	{
		SPI_finish();
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
}

static void
progress_xact_callback(XactEvent event, void *arg)
{
	HASH_SEQ_STATUS seq;
	StreamProgress *entry;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			savepoints = NIL;	/* gone with TopTransactionContext */
			if (!progress_used)
				break;
			progress_used = false;
			if (hash_get_num_entries(progress) > PROGRESS_KEEP_ENTRIES)
			{
				MemoryContextReset(progress_context);
				progress = NULL;
				break;
			}
			/* notices lived in TopTransactionContext, gone now */
			hash_seq_init(&seq, progress);
			while ((entry = hash_seq_search(&seq)) != NULL)
				entry->valid = false;
			break;
		default:
			break;
	}
}

/*
 * What a statement has collected for one stream when a subtransaction
 * starts, so that rolling the subtransaction back forgets exactly what it
 * added (a function called per row may run an exception block in the middle
 * of a statement).
 */
typedef struct SavedProgress
{
	pg_uuid_t	stream_id;
	int64		counts[FRAME_STATUS_COUNT];
	int64		latency_total;
	int64		announced;
	int64		first_sequence;
	int			notices;
} SavedProgress;

typedef struct ProgressSavepoint
{
	SubTransactionId subid;
	int			nsaved;
	SavedProgress *saved;
} ProgressSavepoint;

static void
save_progress(SubTransactionId subid)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	ProgressSavepoint *sp = palloc0(sizeof(ProgressSavepoint));
	HASH_SEQ_STATUS seq;
	StreamProgress *entry;

	sp->subid = subid;
	if (progress_used)
	{
		sp->saved = palloc(sizeof(SavedProgress) * hash_get_num_entries(progress));
		hash_seq_init(&seq, progress);
		while ((entry = hash_seq_search(&seq)) != NULL)
		{
			SavedProgress *saved;

			if (!entry->valid || (entry->announced == 0 && entry->counts[FRAME_OK] == 0 &&
								  entry->counts[FRAME_LATE] == 0 && entry->counts[FRAME_ERROR] == 0))
				continue;
			saved = &sp->saved[sp->nsaved++];
			saved->stream_id = entry->stream_id;
			memcpy(saved->counts, entry->counts, sizeof(saved->counts));
			saved->latency_total = entry->latency_total;
			saved->announced = entry->announced;
			saved->first_sequence = entry->first_sequence;
			saved->notices = list_length(entry->notices);
		}
	}
	savepoints = lcons(sp, savepoints);
	MemoryContextSwitchTo(old);
}

/*
 * A rolled-back subtransaction releases the stream locks it took and undoes
 * its frames: forget the latest sequences (they are read again) and put the
 * collected counters and notices back to what they were when it started.
 */
static void
restore_progress(ProgressSavepoint *sp)
{
	HASH_SEQ_STATUS seq;
	StreamProgress *entry;
	int			i;

	if (!progress_used)
		return;

	hash_seq_init(&seq, progress);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		SavedProgress *saved = NULL;

		entry->locked = false;
		entry->latest_known = false;
		for (i = 0; i < sp->nsaved; i++)
			if (memcmp(&sp->saved[i].stream_id, &entry->stream_id, sizeof(pg_uuid_t)) == 0)
				saved = &sp->saved[i];
		if (saved == NULL)
		{
			memset(entry->counts, 0, sizeof(entry->counts));
			entry->latency_total = 0;
			entry->announced = 0;
			entry->notices = NIL;
			continue;
		}
		memcpy(entry->counts, saved->counts, sizeof(entry->counts));
		entry->latency_total = saved->latency_total;
		entry->announced = saved->announced;
		entry->first_sequence = saved->first_sequence;
		if (saved->announced > ds_notify_frames_per_statement)
			entry->notices = NIL;
		else
			entry->notices = list_truncate(entry->notices, saved->notices);
	}
}

static void
progress_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	ProgressSavepoint *sp;

	switch (event)
	{
		case SUBXACT_EVENT_START_SUB:
			save_progress(mySubid);
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
		case SUBXACT_EVENT_ABORT_SUB:
			if (savepoints == NIL)
				break;
			sp = (ProgressSavepoint *) linitial(savepoints);
			if (sp->subid != mySubid)
				break;
			if (event == SUBXACT_EVENT_ABORT_SUB)
				restore_progress(sp);
			savepoints = list_delete_first(savepoints);
			break;
		default:
			break;
	}
}

void
ds_stream_state_init(void)
{
	RegisterXactCallback(progress_xact_callback, NULL);
	RegisterSubXactCallback(progress_subxact_callback, NULL);
}
