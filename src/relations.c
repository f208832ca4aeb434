/*-------------------------------------------------------------------------
 *
 * relations.c
 *	  OIDs of the extension's tables and indexes, looked up once per backend.
 *
 * The triggers and caches read the extension's tables directly through
 * their indexes.  Looking the OIDs up by name on every row would cost a
 * catalog search each time, so they are kept here and forgotten whenever a
 * relcache invalidation names one of them (DROP/CREATE EXTENSION, ALTER).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "datastreams.h"

static DsRelations relations;
static bool relations_valid = false;

static Oid
lookup_relation(const char *name)
{
	Oid			relid = get_relname_relid(name, relations.namespace);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("relation \"datastreams.%s\" does not exist", name),
				 errhint("Run CREATE EXTENSION datastreams in this database.")));
	return relid;
}

const DsRelations *
ds_relations(void)
{
	if (relations_valid)
		return &relations;

	relations.namespace = get_namespace_oid("datastreams", true);
	if (!OidIsValid(relations.namespace))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_SCHEMA),
				 errmsg("schema \"datastreams\" does not exist"),
				 errhint("Run CREATE EXTENSION datastreams in this database.")));

	relations.accounts = lookup_relation("accounts");
	relations.accounts_pkey = lookup_relation("accounts_pkey");
	relations.accounts_role_index = lookup_relation("accounts_role_key");
	relations.trusted_roles = lookup_relation("trusted_roles");
	relations.streams = lookup_relation("streams");
	relations.streams_pkey = lookup_relation("streams_pkey");
	relations.frames = lookup_relation("frames");
	relations.frames_stream_sequence_index = lookup_relation("frames_stream_sequence_key");
	relations.stream_state = lookup_relation("stream_state");
	relations.stream_state_pkey = lookup_relation("stream_state_pkey");

	/*
	 * Between installing this library and ALTER EXTENSION UPDATE the older
	 * SQL runs with it: a latest-frame pointer written with every commit,
	 * created_at with a default of its own.
	 */
	relations.before_1_2 = get_attnum(relations.stream_state, "counted_through") == InvalidAttrNumber;
	relations_valid = true;
	return &relations;
}

/*
 * Does a relcache invalidation for relid concern the extension's tables?
 * Callable from invalidation callbacks: no catalog access.
 */
bool
ds_is_extension_relation(Oid relid)
{
	if (!relations_valid || !OidIsValid(relid))
		return true;
	return relid == relations.accounts ||
		relid == relations.accounts_pkey ||
		relid == relations.accounts_role_index ||
		relid == relations.trusted_roles ||
		relid == relations.streams ||
		relid == relations.streams_pkey ||
		relid == relations.frames ||
		relid == relations.frames_stream_sequence_index ||
		relid == relations.stream_state ||
		relid == relations.stream_state_pkey;
}

static void
relations_invalidate(Datum arg, Oid relid)
{
	if (relations_valid && ds_is_extension_relation(relid))
		relations_valid = false;
}

/*
 * Index (from 0) of a column in a tuple descriptor of one of the
 * extension's tables; -1 when missing and not required.
 */
int
ds_column_index(TupleDesc desc, const char *table, const char *name, bool required)
{
	int			attnum = SPI_fnumber(desc, name);

	if (attnum > 0)
		return attnum - 1;
	if (required)
		elog(ERROR, "datastreams.%s has no column \"%s\"", table, name);
	return -1;
}

/*
 * The snapshot the caches read the extension's tables with: the latest
 * committed state, so that a cached answer stays right after the
 * transaction that computed it.  A parallel query may not take a new
 * snapshot (current_account() runs in parallel workers, through the
 * row-level security policies), so there the query's own snapshot is
 * used, and callers must not keep the answer past the transaction.
 */
Snapshot
ds_cache_snapshot(void)
{
	if (IsInParallelMode())
		return RegisterSnapshot(GetActiveSnapshot());
	return RegisterSnapshot(GetLatestSnapshot());
}

void
ds_relations_init(void)
{
	CacheRegisterRelcacheCallback(relations_invalidate, (Datum) 0);
}
