/*-------------------------------------------------------------------------
 *
 * stream_cache.c
 *	  Per-backend cache of the stream columns every frame depends on.
 *
 * Each frame needs its stream's account, status and SLA.  Reading the
 * streams table for every row would dominate the cost of an insert, so the
 * answers are kept in a hash table.  Streams are read with the latest
 * committed state, not the transaction snapshot, so a cached entry stays
 * valid across transactions until its stream changes.
 *
 * Ids that name no stream are cached too (with a NULL account).  Besides
 * sparing the index probe, this makes a missing id cost what another
 * account's stream costs, for which the frames trigger and the API give
 * the same "not found": otherwise the time of a rejected insert would tell
 * a tenant which ids exist.  (Creating a stream reports its id like any
 * other change, so a cached miss does not outlive it.)  The cache is
 * emptied when it grows past STREAM_CACHE_MAX_ENTRIES, so probing random
 * ids cannot grow it forever.
 *
 * Invalidation is per stream.  PostgreSQL's invalidation messages name a
 * whole relation (or a catalog cache entry, which an extension cannot
 * send), and dropping every backend's whole cache, relcache entry and
 * cached plans whenever one tenant changes one stream halved the insert
 * rate of everybody else.  Instead, shared memory holds a generation
 * counter per partition of the stream id hash space.  Each cached entry
 * remembers the generation of its partition when it was read, and a lookup
 * that finds the partition's generation moved reads the stream again.  The
 * streams trigger reports each changed stream (ds_stream_changed); its
 * partition's generation is advanced then, so that this backend stops
 * using what it cached, and again once the transaction has committed or
 * aborted, after which every backend reads the stream's new (or restored)
 * state.  The advance at commit runs after the commit became visible to new
 * snapshots (transaction callbacks run after ProcArrayEndTransaction), and a
 * lookup reads the generation before it takes the snapshot it reads the
 * stream with, so an entry is never newer in generation than in content.
 * Other streams of the partition are read again needlessly; with
 * STREAM_CACHE_PARTITIONS partitions that is rare.
 *
 * A prepared transaction can be committed by another backend, where no
 * callback of ours runs: PREPARE TRANSACTION therefore falls back to a
 * relcache invalidation of the streams table, which PostgreSQL delivers at
 * COMMIT PREPARED and which empties every backend's cache.  So does any
 * other relcache invalidation of the table (TRUNCATE, ALTER TABLE, the
 * extension's upgrade), and so does everything when the library is not
 * preloaded and there is no shared memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "datastreams.h"

/* Partitions of the stream id hash space, each with a generation counter */
#define STREAM_CACHE_PARTITIONS 4096

#define STREAM_CACHE_MAX_ENTRIES 65536

typedef struct StreamCacheShared
{
	pg_atomic_uint64 generation[STREAM_CACHE_PARTITIONS];
} StreamCacheShared;

typedef struct StreamCacheEntry
{
	CachedStream stream;		/* first: its id is the hash key */
	uint64		generation;		/* of the partition, before the stream was read */
} StreamCacheEntry;

static StreamCacheShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static MemoryContext stream_cache_context = NULL;
static HTAB *stream_cache = NULL;
static Oid	cached_streams_relid = InvalidOid;
static bool stream_cache_stale = false;

/*
 * Streams the current transaction changed, whose partitions advance again
 * when it ends; past STREAM_CACHE_PARTITIONS of them every partition does.
 */
static pg_uuid_t *changed_streams = NULL;
static int	changed_count = 0;
static int	changed_allocated = 0;
static bool changed_overflow = false;

static void
stream_cache_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(StreamCacheShared)));
}

static void
stream_cache_shmem_startup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("datastreams stream cache", sizeof(StreamCacheShared), &found);
	if (!found)
		for (i = 0; i < STREAM_CACHE_PARTITIONS; i++)
			pg_atomic_init_u64(&shared->generation[i], 0);
	LWLockRelease(AddinShmemInitLock);
}

static inline uint32
stream_hash(const pg_uuid_t *stream_id)
{
	/* the function hash_create() picks for HASH_BLOBS keys of this size */
	return tag_hash(stream_id, sizeof(pg_uuid_t));
}

static inline pg_atomic_uint64 *
partition_generation(uint32 hash)
{
	return &shared->generation[hash % STREAM_CACHE_PARTITIONS];
}

static void
advance_changed_partitions(void)
{
	int			i;

	if (shared == NULL)
		return;
	if (changed_overflow)
		for (i = 0; i < STREAM_CACHE_PARTITIONS; i++)
			pg_atomic_fetch_add_u64(&shared->generation[i], 1);
	else
		for (i = 0; i < changed_count; i++)
			pg_atomic_fetch_add_u64(partition_generation(stream_hash(&changed_streams[i])), 1);
}

static void
forget_changed_streams(void)
{
	/* the array lived in TopTransactionContext */
	changed_streams = NULL;
	changed_count = 0;
	changed_allocated = 0;
	changed_overflow = false;
}

/*
 * The streams trigger reports every stream it changes or deletes.
 */
void
ds_stream_changed(const pg_uuid_t *stream_id)
{
	if (shared == NULL)
	{
		/* no shared memory: every backend forgets every stream at commit */
		CacheInvalidateRelcacheByRelid(ds_relations()->streams);
		return;
	}

	/* this backend may have cached the old state, or our own change */
	pg_atomic_fetch_add_u64(partition_generation(stream_hash(stream_id)), 1);

	if (changed_overflow)
		return;
	if (changed_count >= STREAM_CACHE_PARTITIONS)
	{
		changed_overflow = true;
		return;
	}
	if (changed_count == changed_allocated)
	{
		changed_allocated = changed_allocated == 0 ? 16 : changed_allocated * 2;
		changed_streams = changed_streams == NULL ?
			MemoryContextAlloc(TopTransactionContext, sizeof(pg_uuid_t) * changed_allocated) :
			repalloc(changed_streams, sizeof(pg_uuid_t) * changed_allocated);
	}
	changed_streams[changed_count++] = *stream_id;
}

static void
stream_cache_xact_callback(XactEvent event, void *arg)
{
	if (changed_count == 0 && !changed_overflow)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			/* delivered by PostgreSQL at COMMIT PREPARED, wherever it runs */
			CacheInvalidateRelcacheByRelid(ds_relations()->streams);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			advance_changed_partitions();
			forget_changed_streams();
			break;
		default:
			break;
	}
}

static void
stream_cache_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							  SubTransactionId parentSubid, void *arg)
{
	/*
	 * What this backend read inside the subtransaction may show changes now
	 * rolled back.  The streams stay in the list: advancing them once more
	 * at the end costs nothing.
	 */
	if (event == SUBXACT_EVENT_ABORT_SUB)
		advance_changed_partitions();
}

static void
stream_cache_callback(Datum arg, Oid relid)
{
	/* Only mark: a caller may still hold an entry; see ds_lookup_stream() */
	if (stream_cache && (!OidIsValid(relid) || relid == cached_streams_relid))
		stream_cache_stale = true;
}

static void
stream_cache_create(void)
{
	HASHCTL		ctl;

	if (stream_cache_context == NULL)
		stream_cache_context = AllocSetContextCreate(CacheMemoryContext,
													 "datastreams stream cache",
													 ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(stream_cache_context);

	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(StreamCacheEntry);
	ctl.hcxt = stream_cache_context;
	stream_cache = hash_create("datastreams stream cache", 256, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	stream_cache_stale = false;
}

static StreamStatus
parse_stream_status(const char *status)
{
	if (strcmp(status, "active") == 0)
		return STREAM_ACTIVE;
	if (strcmp(status, "paused") == 0)
		return STREAM_PAUSED;
	return STREAM_INACTIVE;
}

/*
 * Read one stream; false when it does not exist.  The account id is
 * allocated in the cache's context.
 */
static bool
fetch_stream(const pg_uuid_t *stream_id, CachedStream *out)
{
	const DsRelations *rels = ds_relations();
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;
	Snapshot	snapshot;
	bool		found = false;

	snapshot = ds_cache_snapshot();
	rel = table_open(rels->streams, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(stream_id));
	scan = systable_beginscan(rel, rels->streams_pkey, true, snapshot, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		AttrNumber	account_att = get_attnum(rels->streams, "account_id");
		AttrNumber	status_att = get_attnum(rels->streams, "status");
		AttrNumber	sla_att = get_attnum(rels->streams, "sla_ms");
		bool		isnull;
		Datum		value;

		value = heap_getattr(tuple, account_att, desc, &isnull);
		out->account_id = MemoryContextStrdup(stream_cache_context,
											  isnull ? "" : TextDatumGetCString(value));
		value = heap_getattr(tuple, status_att, desc, &isnull);
		out->status = isnull ? STREAM_INACTIVE : parse_stream_status(TextDatumGetCString(value));
		value = heap_getattr(tuple, sla_att, desc, &isnull);
		out->sla_ms = isnull ? 0 : DatumGetInt32(value);
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snapshot);
	cached_streams_relid = rels->streams;
	return found;
}

/*
 * The cached stream, or NULL when it does not exist.  The entry stays valid
 * until the next call.
 */
CachedStream *
ds_lookup_stream(const pg_uuid_t *stream_id)
{
	uint32		hash = stream_hash(stream_id);
	uint64		generation = 0;
	StreamCacheEntry *entry;
	CachedStream fetched;
	bool		exists;
	bool		found;

	if (stream_cache == NULL || stream_cache_stale)
		stream_cache_create();

	if (shared != NULL)
	{
		generation = pg_atomic_read_u64(partition_generation(hash));
		/* read the generation before anything the stream is read with */
		pg_read_barrier();
	}

	entry = hash_search_with_hash_value(stream_cache, stream_id, hash, HASH_FIND, NULL);
	if (entry && entry->generation == generation)
		return entry->stream.account_id ? &entry->stream : NULL;

	exists = fetch_stream(stream_id, &fetched);

	/* An invalidation during the fetch makes what was read suspect too */
	if (stream_cache_stale)
	{
		stream_cache_create();
		exists = fetch_stream(stream_id, &fetched);
	}

	/* an answer read with a parallel query's snapshot is not kept */
	if (IsInParallelMode())
	{
		static CachedStream uncached;

		if (!exists)
			return NULL;
		uncached = fetched;
		memcpy(&uncached.id, stream_id, sizeof(pg_uuid_t));
		return &uncached;
	}

	if (hash_get_num_entries(stream_cache) >= STREAM_CACHE_MAX_ENTRIES)
	{
		if (exists)
			fetched.account_id = pstrdup(fetched.account_id);
		stream_cache_create();
		if (exists)
			fetched.account_id = MemoryContextStrdup(stream_cache_context, fetched.account_id);
	}
	entry = hash_search_with_hash_value(stream_cache, stream_id, hash, HASH_ENTER, &found);
	if (found && entry->stream.account_id)
		pfree(entry->stream.account_id);
	entry->generation = generation;
	entry->stream.account_id = exists ? fetched.account_id : NULL;
	if (!exists)
		return NULL;
	entry->stream.status = fetched.status;
	entry->stream.sla_ms = fetched.sla_ms;
	return &entry->stream;
}

void
ds_stream_cache_init(void)
{
	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = stream_cache_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = stream_cache_shmem_startup;
	}
	CacheRegisterRelcacheCallback(stream_cache_callback, (Datum) 0);
	RegisterXactCallback(stream_cache_xact_callback, NULL);
	RegisterSubXactCallback(stream_cache_subxact_callback, NULL);
}
