/*-------------------------------------------------------------------------
 *
 * prune_worker.c
 *	  Background worker running datastreams.prune() on a schedule.
 *
 * One per database with the extension, started by the launcher
 * (launcher.c) when the library is preloaded.  It connects as
 * datastreams.prune_role or else the bootstrap superuser, and every
 * datastreams.prune_interval runs datastreams.prune() until a step deletes
 * less than a full batch (datastreams.prune_batch_size), one transaction
 * per step, so that each step commits before the next starts.  Such a step
 * has found every stream caught up, and the worker rests until the next
 * run even though frames keep expiring meanwhile: waiting for a step that
 * deletes nothing kept it busy for as long as frames arrived.  A database
 * without the extension (or with a version that has no prune()) is skipped
 * quietly; a LOG line is written only for runs that removed frames.
 *
 * SIGHUP rereads the configuration (prune_interval 0 pauses the worker);
 * SIGTERM ends it, also in the middle of a run, through the standard
 * interrupt handling.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "datastreams.h"
#include "workers.h"

#define PRUNE_INTERVAL_DEFAULT 60	/* seconds */

static int	ds_prune_interval = PRUNE_INTERVAL_DEFAULT;

typedef enum StepResult
{
	STEP_FULL,					/* a full batch removed: more may be waiting */
	STEP_CAUGHT_UP,				/* less than that: every stream is done */
	STEP_NOT_INSTALLED			/* no datastreams.prune() in this database */
} StepResult;

/* Does this database have datastreams.prune()?  In a transaction, under SPI. */
static bool
prune_installed(void)
{
	bool		isnull;

	if (!OidIsValid(get_extension_oid("datastreams", true)))
		return false;
	if (SPI_execute("SELECT pg_catalog.to_regprocedure('datastreams.prune()') IS NOT NULL",
					true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not look up datastreams.prune()");
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * One transaction: SELECT datastreams.prune(); *removed is what it
 * removed.  Errors propagate.
 */
static StepResult
worker_step(int64 *removed)
{
	StepResult	result = STEP_CAUGHT_UP;

	*removed = 0;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (!prune_installed())
		result = STEP_NOT_INSTALLED;
	else
	{
		bool		isnull;
		int64		n;

		pgstat_report_activity(STATE_RUNNING, "SELECT datastreams.prune()");
		if (SPI_execute("SELECT datastreams.prune()", false, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "SELECT datastreams.prune() failed");
		n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										&isnull));
		if (!isnull)
		{
			*removed = n;
			if (n >= ds_prune_batch_size())
				result = STEP_FULL;
		}
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	return result;
}

/*
 * One scheduled run: prune until every stream has caught up, the worker is
 * paused or an error ends the run (the next run tries again).
 */
static void
prune_run(void)
{
	MemoryContext context = CurrentMemoryContext;
	TimestampTz start = GetCurrentTimestamp();
	int64		pruned = 0;
	int			steps = 0;

	PG_TRY();
	{
		for (;;)
		{
			StepResult	r;
			int64		removed;

			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
				if (ds_prune_interval == 0)
					break;
			}
			r = worker_step(&removed);
			if (r == STEP_NOT_INSTALLED)
				elog(DEBUG1, "datastreams prune worker: extension datastreams (1.1 or later) is not installed in this database");
			if (removed > 0)
			{
				pruned += removed;
				steps++;
			}
			if (r != STEP_FULL)
				break;
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		EmitErrorReport();
		AbortCurrentTransaction();
		FlushErrorState();
	}
	PG_END_TRY();

	/* the deletions must reach the statistics autovacuum works from */
	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (pruned > 0)
	{
		long		secs;
		int			usecs;

		TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
		ereport(LOG,
				(errmsg("datastreams prune worker removed " INT64_FORMAT " frames", pruned),
				 errdetail_plural("%d step in %ld.%03d s.", "%d steps in %ld.%03d s.",
								  steps, steps, secs, usecs / 1000)));
	}
}

void
datastreams_prune_worker_main(Datum main_arg)
{
	int			slot = DatumGetInt32(main_arg);
	Oid			role;
	TimestampTz last_run;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	memcpy(&role, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	BackgroundWorkerInitializeConnectionByOid(ds_database_slot(slot)->dbid, role, 0);
	ds_worker_attach(slot, false);
	pgstat_report_appname("datastreams prune worker");
	last_run = GetCurrentTimestamp();

	for (;;)
	{
		int			events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH;
		long		timeout = -1;

		if (ds_prune_interval > 0)
		{
			TimestampTz next = TimestampTzPlusMilliseconds(last_run,
														   (int64) ds_prune_interval * 1000);
			TimestampTz now = GetCurrentTimestamp();

			if (now >= next)
			{
				prune_run();
				last_run = GetCurrentTimestamp();
				continue;
			}
			timeout = (long) ((next - now + 999) / 1000);
			events |= WL_TIMEOUT;
		}

		(void) WaitLatch(MyLatch, events, timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

int
ds_prune_interval_seconds(void)
{
	return ds_prune_interval;
}

void
ds_prune_worker_init(void)
{
	DefineCustomIntVariable("datastreams.prune_interval",
							"Sets the time between two runs of the prune workers; 0 turns them off.",
							"Needs the library in shared_preload_libraries.",
							&ds_prune_interval,
							PRUNE_INTERVAL_DEFAULT,
							0, INT_MAX / 1000,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}
