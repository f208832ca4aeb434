/*-------------------------------------------------------------------------
 *
 * api_tokens.c
 *	  resolve_api_token(): the account of an API token of the HTTP gateway.
 *
 * The gateway's role must learn a token's account without being able to
 * read datastreams.api_token_hashes, which would show it every account's
 * token hashes and notes.  Rather than a SECURITY DEFINER function (the
 * extension has none), the lookup reads the table through its unique index
 * on token_hash, as the triggers read the extension's tables: privileges
 * and row-level security govern queries, and this is not one.  What it
 * returns is the account of an unrevoked token whose SHA-256 matches, NULL
 * for any other string, nothing more; who may ask is decided by EXECUTE,
 * which administrators grant to the gateway's role alone.
 *
 * Tokens are 256-bit random strings, so a plain SHA-256 is the right hash:
 * there is no dictionary to try, and the lookup is one index probe.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "datastreams.h"

static Oid
token_relation(const char *name)
{
	Oid			namespace = get_namespace_oid("datastreams", false);
	Oid			relid = get_relname_relid(name, namespace);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("relation \"datastreams.%s\" does not exist", name),
				 errhint("Update the extension with ALTER EXTENSION datastreams UPDATE.")));
	return relid;
}

static bytea *
sha256_of(const char *data, size_t len)
{
	bytea	   *digest = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, (uint8 *) VARDATA(digest), PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute a SHA-256 digest: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	SET_VARSIZE(digest, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	return digest;
}

PG_FUNCTION_INFO_V1(datastreams_resolve_api_token);
Datum
datastreams_resolve_api_token(PG_FUNCTION_ARGS)
{
	text	   *token = PG_GETARG_TEXT_PP(0);
	bytea	   *hash = sha256_of(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token));
	Relation	rel;
	TupleDesc	desc;
	SysScanDesc scan;
	ScanKeyData key;
	Snapshot	snapshot;
	HeapTuple	tuple;
	int			hash_col;
	int			account_col;
	int			revoked_col;
	text	   *account = NULL;

	rel = table_open(token_relation("api_token_hashes"), AccessShareLock);
	desc = RelationGetDescr(rel);
	hash_col = ds_column_index(desc, "api_token_hashes", "token_hash", true);
	account_col = ds_column_index(desc, "api_token_hashes", "account_id", true);
	revoked_col = ds_column_index(desc, "api_token_hashes", "revoked_at", true);
	/* systable_beginscan() takes table column numbers and maps them */
	ScanKeyInit(&key, hash_col + 1, BTEqualStrategyNumber, F_BYTEAEQ, PointerGetDatum(hash));
	/* the latest committed state: a revocation counts at once */
	snapshot = ds_cache_snapshot();
	scan = systable_beginscan(rel, token_relation("api_token_hashes_token_hash_key"), true,
							  snapshot, 1, &key);
	while ((tuple = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		Datum		value;

		(void) heap_getattr(tuple, revoked_col + 1, desc, &isnull);
		if (!isnull)
			continue;
		value = heap_getattr(tuple, account_col + 1, desc, &isnull);
		if (!isnull)
			account = DatumGetTextPCopy(value);
		break;
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);

	if (account == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(account);
}
