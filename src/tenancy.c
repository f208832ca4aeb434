/*-------------------------------------------------------------------------
 *
 * tenancy.c
 *	  Which account the current role acts for.
 *
 * current_account() is evaluated by every row-level security policy, so it
 * must be cheap: what it learns about a role (bound account, trusted or
 * not, administrator or not) is cached per backend and forgotten when the
 * accounts or trusted_roles tables change (their statement triggers send a
 * relcache invalidation) or when role membership changes.
 *
 * The tables are read with the latest committed state rather than the
 * transaction snapshot, so a cached answer stays right after the
 * transaction that computed it ends.
 *
 * The tables name roles by OID.  When a role is dropped its OID could one
 * day be given to a new role, which would then inherit the binding or the
 * trust; so an object access hook removes the role's rows when the role is
 * dropped, and rows carrying the OID of a role being created (necessarily
 * stale), in the database where that happens.  Elsewhere, or without the
 * library loaded, datastreams.forget_dropped_roles() does it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "datastreams.h"

/* Attribute numbers in datastreams.accounts and datastreams.trusted_roles */
#define Anum_accounts_id		1
#define Anum_accounts_role		2
#define Anum_trusted_roles_role	1

typedef struct RoleTenancy
{
	bool		valid;
	Oid			roleid;
	char	   *bound_account;	/* NULL when the role is not bound */
	bool		admin;
	bool		trusted;		/* trusted application role (or admin) */
	bool		bypass_rls;
	char	   *verified_account;	/* last account found to exist */
	bool		from_parallel;	/* read with a query snapshot: forget at xact end */
} RoleTenancy;

static RoleTenancy tenancy;
static char *account_id_setting = NULL;

static void
tenancy_reset(void)
{
	if (tenancy.bound_account)
		pfree(tenancy.bound_account);
	if (tenancy.verified_account)
		pfree(tenancy.verified_account);
	memset(&tenancy, 0, sizeof(tenancy));
}

static void
tenancy_relcache_callback(Datum arg, Oid relid)
{
	/* accounts and trusted_roles send one on every change */
	if (tenancy.valid && ds_is_extension_relation(relid))
		tenancy.valid = false;
}

static void
tenancy_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	tenancy.valid = false;
}

static char *
lookup_bound_account(Oid roleid)
{
	const DsRelations *rels = ds_relations();
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;
	Snapshot	snapshot;
	char	   *account = NULL;

	snapshot = ds_cache_snapshot();
	rel = table_open(rels->accounts, AccessShareLock);
	ScanKeyInit(&key, Anum_accounts_role, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(roleid));
	scan = systable_beginscan(rel, rels->accounts_role_index, true, snapshot, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		id = heap_getattr(tuple, Anum_accounts_id, RelationGetDescr(rel), &isnull);

		if (!isnull)
			account = MemoryContextStrdup(TopMemoryContext, TextDatumGetCString(id));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snapshot);
	return account;
}

static bool
lookup_trusted(Oid roleid)
{
	const DsRelations *rels = ds_relations();
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tuple;
	Snapshot	snapshot;
	bool		trusted = false;

	snapshot = ds_cache_snapshot();
	rel = table_open(rels->trusted_roles, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, snapshot, 0, NULL);
	while (!trusted && HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		role = heap_getattr(tuple, Anum_trusted_roles_role,
										RelationGetDescr(rel), &isnull);

		if (!isnull && has_privs_of_role(roleid, DatumGetObjectId(role)))
			trusted = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snapshot);
	return trusted;
}

/*
 * Administrators are superusers and members of the role that owns the
 * extension (which owns its schema).
 */
static bool
lookup_admin(Oid roleid)
{
	HeapTuple	tuple;
	Oid			owner;

	if (superuser_arg(roleid))
		return true;
	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(ds_relations()->namespace));
	if (!HeapTupleIsValid(tuple))
		return false;
	owner = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	ReleaseSysCache(tuple);
	return has_privs_of_role(roleid, owner);
}

static RoleTenancy *
current_tenancy(void)
{
	Oid			roleid = GetUserId();

	if (tenancy.valid && tenancy.roleid == roleid)
		return &tenancy;

	tenancy_reset();
	tenancy.roleid = roleid;
	tenancy.bound_account = lookup_bound_account(roleid);
	tenancy.admin = lookup_admin(roleid);
	tenancy.trusted = tenancy.admin || lookup_trusted(roleid);
	tenancy.bypass_rls = has_bypassrls_privilege(roleid);
	tenancy.from_parallel = IsInParallelMode();
	tenancy.valid = true;
	return &tenancy;
}

static const char *
setting_account(void)
{
	if (account_id_setting == NULL || account_id_setting[0] == '\0')
		return NULL;
	return account_id_setting;
}

/*
 * The one place datastreams switches identity.  Its triggers and workers
 * write rows that tenants may read but never write (the stream state,
 * pruned frames, the frames of a deleted stream, the bindings of a dropped
 * role); those rows are fully
 * determined by the extension's code, so it writes them as the bootstrap
 * superuser, which row-level security does not filter, and switches back
 * at once.
 */
void
ds_become_superuser(Oid *save_userid, int *save_sec_context)
{
	GetUserIdAndSecContext(save_userid, save_sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   *save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

void
ds_restore_user(Oid save_userid, int save_sec_context)
{
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/*
 * The account the current role acts for, or NULL.  The returned string must
 * not be modified or kept past the next call.
 */
char *
ds_current_account(void)
{
	RoleTenancy *t = current_tenancy();

	if (t->bound_account)
		return t->bound_account;
	if (t->trusted)
		return (char *) setting_account();
	return NULL;
}

bool
ds_is_admin(void)
{
	return current_tenancy()->admin;
}

bool
ds_bypasses_rls(void)
{
	return current_tenancy()->bypass_rls;
}

static bool
account_exists(const char *account)
{
	const DsRelations *rels = ds_relations();
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	Snapshot	snapshot;
	bool		found;

	snapshot = ds_cache_snapshot();
	rel = table_open(rels->accounts, AccessShareLock);
	ScanKeyInit(&key, Anum_accounts_id, BTEqualStrategyNumber, F_TEXTEQ,
				CStringGetTextDatum(account));
	scan = systable_beginscan(rel, rels->accounts_pkey, true, snapshot, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snapshot);
	return found;
}

/*
 * The account an API call acts for; raises the documented errors when there
 * is none, when a bound role tries to act for another account, or when the
 * account does not exist.
 */
char *
ds_require_account(void)
{
	RoleTenancy *t = current_tenancy();
	const char *setting = setting_account();
	char	   *account;

	if (t->bound_account && setting && strcmp(setting, t->bound_account) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" is bound to account \"%s\" and cannot act for account \"%s\"",
						GetUserNameFromId(t->roleid, false), ds_clip_for_message(t->bound_account),
						ds_clip_for_message(setting)),
				 errhint("Reset datastreams.account_id, or connect as a trusted application role.")));

	account = ds_current_account();
	if (account == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("no datastreams account for role \"%s\"",
						GetUserNameFromId(t->roleid, false)),
				 t->trusted ?
				 errhint("Set datastreams.account_id to the account this session acts for.") :
				 errhint("An administrator must bind the role to an account with datastreams.bind_role() or trust it with datastreams.trust_role().")));
	account = pstrdup(account);

	if (t->verified_account == NULL || strcmp(t->verified_account, account) != 0)
	{
		if (!account_exists(account))
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("account \"%s\" not found", ds_clip_for_message(account))));
		if (t->verified_account)
			pfree(t->verified_account);
		t->verified_account = MemoryContextStrdup(TopMemoryContext, account);
	}
	return account;
}

PG_FUNCTION_INFO_V1(datastreams_current_account);
Datum
datastreams_current_account(PG_FUNCTION_ARGS)
{
	char	   *account = ds_current_account();

	if (account == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(account));
}

PG_FUNCTION_INFO_V1(datastreams_require_account);
Datum
datastreams_require_account(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(ds_require_account()));
}

PG_FUNCTION_INFO_V1(datastreams_is_admin);
Datum
datastreams_is_admin(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(ds_is_admin());
}

PG_FUNCTION_INFO_V1(datastreams_require_admin);
Datum
datastreams_require_admin(PG_FUNCTION_ARGS)
{
	if (!ds_is_admin())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied: only datastreams administrators may do this"),
				 errhint("Administrators are superusers and members of the extension's owner role.")));
	PG_RETURN_VOID();
}

/*
 * Statement trigger on accounts and trusted_roles: every change reaches the
 * tenancy caches of all backends through a relcache invalidation.
 */
PG_FUNCTION_INFO_V1(datastreams_tenancy_changed);
Datum
datastreams_tenancy_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("datastreams_tenancy_changed: not called by trigger manager")));

	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}

/*
 * Remove the rows that name a role by its OID: unbind it from its account
 * (the account and its data stay) and withdraw its trust.  Runs as the
 * superuser (ds_become_superuser): whoever drops or creates roles need not
 * be a datastreams administrator, and row-level security is forced.
 */
static void
forget_role(Oid roleid, bool dropped)
{
	static const char *const unbind_query =
		"UPDATE datastreams.accounts AS a SET role = NULL "
		"WHERE a.role OPERATOR(pg_catalog.=) $1 RETURNING a.id";
	static const char *const untrust_query =
		"DELETE FROM datastreams.trusted_roles AS t "
		"WHERE t.role OPERATOR(pg_catalog.=) $1";
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(roleid)};
	Oid			save_userid;
	int			save_sec_context;
	uint64		i;
	char	   *what;

	if (!OidIsValid(get_extension_oid("datastreams", true)))
		return;
	/* (a role being created may not be visible yet: no name for it) */
	what = dropped ?
		psprintf("role \"%s\" dropped", GetUserNameFromId(roleid, false)) :
		psprintf("role %u created with the OID of a dropped role", roleid);

	ds_become_superuser(&save_userid, &save_sec_context);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (SPI_execute_with_args(unbind_query, 1, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not unbind role %u", roleid);
	for (i = 0; i < SPI_processed; i++)
		ereport(LOG,
				(errmsg("datastreams: %s, unbound from account \"%s\"", what,
						ds_clip_for_message(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1))),
				 errhidestmt(true)));
	if (SPI_execute_with_args(untrust_query, 1, argtypes, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not untrust role %u", roleid);
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("datastreams: %s, no longer trusted", what),
				 errhidestmt(true)));

	SPI_finish();
	ds_restore_user(save_userid, save_sec_context);
}

static object_access_hook_type prev_object_access_hook = NULL;

static void
tenancy_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					  int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (classId == AuthIdRelationId && (access == OAT_DROP || access == OAT_POST_CREATE))
		forget_role(objectId, access == OAT_DROP);
}

static void
tenancy_xact_callback(XactEvent event, void *arg)
{
	if (tenancy.from_parallel)
		tenancy.valid = false;
}

void
ds_tenancy_init(void)
{
	DefineCustomStringVariable("datastreams.account_id",
							   "Sets the account the session acts for.",
							   "Honoured for trusted application roles and administrators; "
							   "a role bound to an account always acts for that account.",
							   &account_id_setting,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	RegisterXactCallback(tenancy_xact_callback, NULL);
	CacheRegisterRelcacheCallback(tenancy_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, tenancy_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, tenancy_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, tenancy_syscache_callback, (Datum) 0);
	prev_object_access_hook = object_access_hook;
	object_access_hook = tenancy_object_access;
}
