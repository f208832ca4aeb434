/*-------------------------------------------------------------------------
 *
 * stream_cache.c
 *	  Per-backend cache of the stream columns every frame depends on.
 *
 * Each frame needs its stream's account, status and SLA.  Reading the
 * streams table for every row would dominate the cost of an insert, so the
 * answers are kept in a hash table.  The streams trigger sends a relcache
 * invalidation for the streams table whenever a stream is created, changed
 * or deleted; the callback below then drops the whole cache in every
 * backend (stream changes are rare, frames are not).
 *
 * Streams are read with the latest committed state, not the transaction
 * snapshot, so a cached entry stays valid across transactions.
 *
 * Ids that name no stream are cached too (with a NULL account).  Besides
 * sparing the index probe, this makes a missing id cost what another
 * account's stream costs, for which the frames trigger and the API give
 * the same "not found": otherwise the time of a rejected insert would tell
 * a tenant which ids exist.  The cache is emptied when it grows past
 * STREAM_CACHE_MAX_ENTRIES, so probing random ids cannot grow it forever.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "datastreams.h"

#define STREAM_CACHE_MAX_ENTRIES 65536

static MemoryContext stream_cache_context = NULL;
static HTAB *stream_cache = NULL;
static Oid	cached_streams_relid = InvalidOid;
static bool stream_cache_stale = false;

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
	ctl.entrysize = sizeof(CachedStream);
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
 * Read one stream; false when it does not exist.
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
	CachedStream *entry;
	CachedStream fetched;
	bool		exists;
	bool		found;

	if (stream_cache == NULL || stream_cache_stale)
		stream_cache_create();

	entry = hash_search(stream_cache, stream_id, HASH_FIND, NULL);
	if (entry)
		return entry->account_id ? entry : NULL;

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
	entry = hash_search(stream_cache, stream_id, HASH_ENTER, &found);
	if (!exists)
	{
		entry->account_id = NULL;
		return NULL;
	}
	entry->account_id = fetched.account_id;
	entry->status = fetched.status;
	entry->sla_ms = fetched.sla_ms;
	return entry;
}

void
ds_stream_cache_init(void)
{
	CacheRegisterRelcacheCallback(stream_cache_callback, (Datum) 0);
}
