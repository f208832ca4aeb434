/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  Starts a publisher and a pruner in every database that has the
 *	  extension, and stops them when it goes.
 *
 * As TimescaleDB's scheduler launcher does: one launcher, connected to no
 * database, lists the databases that accept connections and starts a
 * publisher in each one it knows nothing about; the publisher looks for
 * the extension and either stays (the database is PRESENT, the launcher
 * adds its pruner) or leaves at once (ABSENT, nothing runs there until
 * CREATE EXTENSION datastreams says otherwise).  CREATE EXTENSION wakes the
 * launcher at commit; a dropped extension makes the publisher leave; DROP
 * DATABASE stops the database's workers before PostgreSQL checks that
 * nobody is connected, so it works without FORCE.
 *
 * datastreams.database, when set, limits all this to the databases it
 * lists.  The databases and their workers' pids are kept in the registry
 * of database_slots.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "workers.h"

#define LAUNCHER_NAPTIME_MS 5000
#define RESTART_DELAY_MS 5000
#define PROBE_DELAY_MS 500
#define DROPPING_GRACE_MS 30000

/* The launcher's own view of the workers it started */
typedef struct WorkerHandles
{
	BackgroundWorkerHandle *publisher;
	BackgroundWorkerHandle *pruner;
	TimestampTz publisher_started;
	TimestampTz pruner_started;
	bool		warned;
} WorkerHandles;

static char *database_list = NULL;
static char *prune_role = NULL;

static ProcessUtility_hook_type prev_process_utility = NULL;

/* A CREATE EXTENSION datastreams waiting for its transaction to commit */
static bool extension_created = false;

/*
 * The launcher
 */
static bool
database_allowed(const char *name)
{
	List	   *names;
	ListCell   *lc;
	char	   *copy;
	bool		allowed = false;

	if (database_list == NULL || database_list[0] == '\0')
		return true;
	copy = pstrdup(database_list);
	if (!SplitIdentifierString(copy, ',', &names))
		return false;
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), name) == 0)
			allowed = true;
	return allowed;
}

/* Enter every database that accepts connections; forget dropped ones */
static void
list_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	bool	   *seen = palloc0(sizeof(bool) * ds_database_slots());
	int			i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);
		int			slot;

		if (!db->datallowconn || db->datistemplate || !database_allowed(NameStr(db->datname)))
			continue;
		LWLockAcquire(ds_workers_lock(), LW_EXCLUSIVE);
		slot = ds_enter_database_slot(db->oid);
		LWLockRelease(ds_workers_lock());
		if (slot >= 0)
			seen[slot] = true;
		else
			ereport(LOG,
					(errmsg("datastreams: no slot for database \"%s\"", NameStr(db->datname)),
					 errhint("Increase datastreams.max_databases (now %d) to serve more databases.",
							 ds_database_slots())));
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	LWLockAcquire(ds_workers_lock(), LW_EXCLUSIVE);
	for (i = 0; i < ds_database_slots(); i++)
		if (OidIsValid(ds_database_slot(i)->dbid) && !seen[i] &&
			ds_database_slot(i)->publisher_pid == 0 && ds_database_slot(i)->pruner_pid == 0)
			ds_database_slot(i)->dbid = InvalidOid;
	LWLockRelease(ds_workers_lock());
	pfree(seen);
}

static Oid
prune_role_oid(void)
{
	Oid			role = InvalidOid;

	if (prune_role == NULL || prune_role[0] == '\0')
		return InvalidOid;
	StartTransactionCommand();
	role = get_role_oid(prune_role, true);
	CommitTransactionCommand();
	if (!OidIsValid(role))
		ereport(LOG,
				(errmsg("datastreams: role \"%s\" of datastreams.prune_role does not exist",
						prune_role)));
	return role;
}

static bool
running(BackgroundWorkerHandle *handle)
{
	pid_t		pid;

	return handle != NULL &&
		GetBackgroundWorkerPid(handle, &pid) != BGWH_STOPPED;
}

static BackgroundWorkerHandle *
start_worker(int slot, bool publisher, WorkerHandles *h)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	Oid			role = InvalidOid;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	worker.bgw_main_arg = Int32GetDatum(slot);
	worker.bgw_notify_pid = MyProcPid;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "datastreams");
	if (publisher)
	{
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "datastreams_publisher_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "datastreams publisher");
		snprintf(worker.bgw_type, BGW_MAXLEN, "datastreams publisher");
	}
	else
	{
		role = prune_role_oid();
		memcpy(worker.bgw_extra, &role, sizeof(Oid));
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "datastreams_prune_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "datastreams prune worker");
		snprintf(worker.bgw_type, BGW_MAXLEN, "datastreams prune worker");
	}
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		if (!h->warned)
			ereport(LOG,
					(errmsg("datastreams: no background worker slot is free for the %s of database %u",
							publisher ? "publisher" : "prune worker", ds_database_slot(slot)->dbid),
					 errhint("Raise max_worker_processes: datastreams needs one launcher and, per database with the extension, a publisher and a prune worker.")));
		h->warned = true;
		return NULL;
	}
	h->warned = false;
	return handle;
}

static void
stop_worker(BackgroundWorkerHandle **handle)
{
	if (*handle)
	{
		TerminateBackgroundWorker(*handle);
		pfree(*handle);
		*handle = NULL;
	}
}

static void
tend_database(int slot, WorkerHandles *h)
{
	DatabaseSlot copy;
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(ds_workers_lock(), LW_SHARED);
	copy = *ds_database_slot(slot);
	LWLockRelease(ds_workers_lock());

	if (!OidIsValid(copy.dbid) || copy.state == DATABASE_ABSENT ||
		copy.state == DATABASE_DROPPING)
	{
		stop_worker(&h->publisher);
		stop_worker(&h->pruner);
		if (copy.state == DATABASE_DROPPING &&
			TimestampDifferenceExceeds(copy.state_since, now, DROPPING_GRACE_MS))
			ds_worker_set_state(slot, DATABASE_UNKNOWN);	/* the drop failed */
		return;
	}

	/* a database nobody has looked at yet (CREATE EXTENSION) is not kept waiting */
	if (!running(h->publisher) &&
		TimestampDifferenceExceeds(h->publisher_started, now,
								   copy.state == DATABASE_UNKNOWN ? PROBE_DELAY_MS : RESTART_DELAY_MS))
	{
		if (h->publisher)
			pfree(h->publisher);
		h->publisher = start_worker(slot, true, h);
		h->publisher_started = now;
	}

	if (copy.state != DATABASE_PRESENT || ds_prune_interval_seconds() == 0)
		stop_worker(&h->pruner);
	else if (!running(h->pruner) &&
			 TimestampDifferenceExceeds(h->pruner_started, now, RESTART_DELAY_MS))
	{
		if (h->pruner)
			pfree(h->pruner);
		h->pruner = start_worker(slot, false, h);
		h->pruner_started = now;
	}
}

void
datastreams_launcher_main(Datum main_arg)
{
	WorkerHandles *handles;
	TimestampTz last_list = 0;
	int			i;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("datastreams launcher");

	handles = MemoryContextAllocZero(TopMemoryContext, sizeof(WorkerHandles) * ds_database_slots());
	ds_set_launcher_latch(MyLatch);

	for (;;)
	{
		bool		rescan;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			last_list = 0;
		}

		rescan = ds_take_rescan();
		if (rescan || TimestampDifferenceExceeds(last_list, GetCurrentTimestamp(), LAUNCHER_NAPTIME_MS))
		{
			list_databases();
			last_list = GetCurrentTimestamp();
		}

		for (i = 0; i < ds_database_slots(); i++)
			tend_database(i, &handles[i]);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * The utility hook: CREATE EXTENSION and DROP DATABASE
 */
static bool
names_datastreams(List *objects)
{
	ListCell   *lc;

	foreach(lc, objects)
	{
		Node	   *object = lfirst(lc);

		if (IsA(object, String) && strcmp(strVal(object), "datastreams") == 0)
			return true;
	}
	return false;
}

/* Stop a database's workers so that DROP DATABASE finds nobody connected */
static void
stop_database_workers(const char *dbname)
{
	Oid			dbid = get_database_oid(dbname, true);
	int			slot = ds_find_database_slot(dbid);
	int			waited;

	if (!OidIsValid(dbid) || slot < 0)
		return;
	LWLockAcquire(ds_workers_lock(), LW_EXCLUSIVE);
	ds_database_slot(slot)->state = DATABASE_DROPPING;
	ds_database_slot(slot)->state_since = GetCurrentTimestamp();
	if (ds_database_slot(slot)->publisher_pid != 0)
		kill(ds_database_slot(slot)->publisher_pid, SIGTERM);
	if (ds_database_slot(slot)->pruner_pid != 0)
		kill(ds_database_slot(slot)->pruner_pid, SIGTERM);
	LWLockRelease(ds_workers_lock());
	ds_wake_launcher(false);

	for (waited = 0; waited < 500; waited++)
	{
		bool		gone;

		LWLockAcquire(ds_workers_lock(), LW_SHARED);
		gone = ds_database_slot(slot)->publisher_pid == 0 && ds_database_slot(slot)->pruner_pid == 0;
		LWLockRelease(ds_workers_lock());
		if (gone)
			break;
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
	}
}

static void
launcher_process_utility(PlannedStmt *pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *queryEnv,
						 DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (ds_database_slots_ready() && IsA(stmt, DropdbStmt))
		stop_database_workers(((DropdbStmt *) stmt)->dbname);

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);

	if (ds_database_slots_ready() && IsA(stmt, CreateExtensionStmt) &&
		strcmp(((CreateExtensionStmt *) stmt)->extname, "datastreams") == 0)
		extension_created = true;
	if (ds_database_slots_ready() && IsA(stmt, DropStmt) &&
		((DropStmt *) stmt)->removeType == OBJECT_EXTENSION &&
		names_datastreams(((DropStmt *) stmt)->objects))
		extension_created = false;
}

static void
launcher_xact_callback(XactEvent event, void *arg)
{
	int			slot;

	if (!extension_created)
		return;
	if (event == XACT_EVENT_COMMIT)
	{
		LWLockAcquire(ds_workers_lock(), LW_EXCLUSIVE);
		slot = ds_enter_database_slot(MyDatabaseId);
		if (slot >= 0 && ds_database_slot(slot)->state != DATABASE_PRESENT)
		{
			ds_database_slot(slot)->state = DATABASE_UNKNOWN;
			ds_database_slot(slot)->state_since = GetCurrentTimestamp();
		}
		LWLockRelease(ds_workers_lock());
		ds_wake_launcher(false);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		extension_created = false;
}

void
ds_launcher_init(void)
{
	BackgroundWorker worker;

	DefineCustomStringVariable("datastreams.database",
							   "Limits the background workers to the databases listed (comma-separated); empty serves every database with the extension.",
							   NULL,
							   &database_list,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("datastreams.prune_role",
							   "Sets the role the prune workers connect as; empty means the bootstrap superuser.",
							   "The role must be a datastreams administrator: a superuser or a member of the extension's owner.",
							   &prune_role,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = launcher_process_utility;
	RegisterXactCallback(launcher_xact_callback, NULL);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "datastreams");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "datastreams_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "datastreams launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "datastreams launcher");
	RegisterBackgroundWorker(&worker);
}
