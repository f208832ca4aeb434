/*-------------------------------------------------------------------------
 *
 * notify_worker.c
 *	  Publishing frames from a background worker instead of the writers.
 *
 * PostgreSQL serialises the commits of all transactions that sent a
 * notification (a database-wide lock is held from queueing the
 * notifications until the commit record is flushed), so with many
 * concurrent writers a NOTIFY per transaction caps ingest throughput.
 *
 * With datastreams.notify_via_worker on (and the library preloaded), a
 * writer does not notify.  At commit it hands the streams it wrote to
 * shared memory: per stream, the highest sequence and how many frames.  The
 * notify worker, woken through its latch, publishes everything pending in
 * one transaction: one wake-up per stream,
 *	  {"stream_id": ..., "sequence": <highest>, "first_sequence": ...,
 *	   "count": ..., "batch": true}
 * Only committed frames are announced (the hand-over happens after the
 * commit is visible), per-stream order is kept (a later hand-over of a
 * stream carries a higher sequence), and clients read the frames with
 * frames_since(), as datastreams-listen does.
 *
 * When the shared table is full, or the worker is not running, or the
 * writer is in another database than the worker, the writer notifies
 * itself, exactly as without the worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "datastreams.h"

/* Streams with a hand-over pending between two runs of the worker */
#define WAKEUP_SLOTS 4096

typedef struct WakeUp
{
	pg_uuid_t	stream_id;
	int64		first_sequence;
	int64		last_sequence;
	int64		count;
} WakeUp;

typedef struct NotifyShared
{
	LWLock	   *lock;
	Latch	   *worker_latch;	/* NULL while no worker runs */
	Oid			worker_database;
	int			used;			/* slots[0..used-1] are pending */
	int			reserved;		/* promised at pre-commit, not yet handed over */
	uint64		published;		/* notifications the worker sent */
	uint64		fallbacks;		/* transactions that had to notify themselves */
	WakeUp		slots[WAKEUP_SLOTS];
} NotifyShared;

bool		ds_notify_via_worker = false;

static NotifyShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This transaction's wake-ups, in TopTransactionContext */
static List *pending = NIL;
static int	reserved_here = 0;

static void
notify_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(NotifyShared)));
	RequestNamedLWLockTranche("datastreams notify", 1);
}

static void
notify_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("datastreams notify", sizeof(NotifyShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(NotifyShared));
		shared->lock = &(GetNamedLWLockTranche("datastreams notify"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Can this transaction hand its notifications to the worker?
 */
bool
ds_notify_worker_usable(void)
{
	return ds_notify_via_worker && shared != NULL &&
		shared->worker_latch != NULL && shared->worker_database == MyDatabaseId;
}

/*
 * Called at statement end instead of sending a notification.
 */
void
ds_notify_worker_defer(const pg_uuid_t *stream_id, int64 first_sequence,
					   int64 last_sequence, int64 count)
{
	ListCell   *lc;
	WakeUp	   *w;
	MemoryContext old;

	foreach(lc, pending)
	{
		w = (WakeUp *) lfirst(lc);
		if (memcmp(&w->stream_id, stream_id, sizeof(pg_uuid_t)) == 0)
		{
			w->last_sequence = Max(w->last_sequence, last_sequence);
			w->first_sequence = Min(w->first_sequence, first_sequence);
			w->count += count;
			return;
		}
	}

	old = MemoryContextSwitchTo(TopTransactionContext);
	w = palloc(sizeof(WakeUp));
	memcpy(&w->stream_id, stream_id, sizeof(pg_uuid_t));
	w->first_sequence = first_sequence;
	w->last_sequence = last_sequence;
	w->count = count;
	pending = lappend(pending, w);
	MemoryContextSwitchTo(old);
}

static char *
wakeup_payload(const WakeUp *w)
{
	return psprintf("{\"stream_id\": \"%s\", \"sequence\": " INT64_FORMAT
					", \"first_sequence\": " INT64_FORMAT
					", \"count\": " INT64_FORMAT ", \"batch\": true}",
					ds_uuid_to_cstring(&w->stream_id), w->last_sequence,
					w->first_sequence, w->count);
}

static void
notify_wakeup(const WakeUp *w)
{
	char		channel[NAMEDATALEN];

	snprintf(channel, sizeof(channel), "datastreams_%s", ds_uuid_to_cstring(&w->stream_id));
	Async_Notify(channel, wakeup_payload(w));
}

/*
 * Before commit: make sure the hand-over will fit, or notify ourselves while
 * we still can (notifications must be queued before the commit).
 */
static void
reserve_or_notify(void)
{
	int			n = list_length(pending);
	bool		fits;
	ListCell   *lc;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	fits = shared->worker_latch != NULL &&
		shared->used + shared->reserved + n <= WAKEUP_SLOTS;
	if (fits)
		shared->reserved += n;
	else
		shared->fallbacks++;
	LWLockRelease(shared->lock);

	if (fits)
	{
		reserved_here = n;
		return;
	}
	foreach(lc, pending)
		notify_wakeup((WakeUp *) lfirst(lc));
	pending = NIL;
}

/*
 * After commit: the frames are visible, hand them over and wake the worker.
 */
static void
hand_over(void)
{
	ListCell   *lc;
	Latch	   *latch;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->reserved -= reserved_here;
	foreach(lc, pending)
	{
		WakeUp	   *w = (WakeUp *) lfirst(lc);
		int			i;

		for (i = 0; i < shared->used; i++)
			if (memcmp(&shared->slots[i].stream_id, &w->stream_id, sizeof(pg_uuid_t)) == 0)
				break;
		if (i < shared->used)
		{
			shared->slots[i].last_sequence = Max(shared->slots[i].last_sequence, w->last_sequence);
			shared->slots[i].first_sequence = Min(shared->slots[i].first_sequence, w->first_sequence);
			shared->slots[i].count += w->count;
		}
		else
			shared->slots[shared->used++] = *w;
	}
	latch = shared->worker_latch;
	LWLockRelease(shared->lock);

	if (latch)
		SetLatch(latch);
}

static void
notify_worker_xact_callback(XactEvent event, void *arg)
{
	if (pending == NIL)
		return;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			reserve_or_notify();
			break;
		case XACT_EVENT_COMMIT:
			hand_over();
			pending = NIL;
			reserved_here = 0;
			break;
		case XACT_EVENT_ABORT:
			if (reserved_here > 0)
			{
				LWLockAcquire(shared->lock, LW_EXCLUSIVE);
				shared->reserved -= reserved_here;
				LWLockRelease(shared->lock);
			}
			pending = NIL;
			reserved_here = 0;
			break;
		default:
			break;
	}
}

static void
worker_detach(int code, Datum arg)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->worker_latch = NULL;
	LWLockRelease(shared->lock);
}

/*
 * Publish what is pending, in one transaction.  Returns how many.
 */
static int
publish_pending(WakeUp *batch)
{
	int			n;
	int			i;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	n = shared->used;
	memcpy(batch, shared->slots, sizeof(WakeUp) * n);
	shared->used = 0;
	LWLockRelease(shared->lock);

	if (n == 0)
		return 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "publishing datastreams notifications");

	if (DatumGetFloat8(OidFunctionCall0(F_PG_NOTIFICATION_QUEUE_USAGE)) >= ds_notify_queue_limit)
	{
		ereport(WARNING,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("datastreams notification queue is full; %d stream wake-ups are not sent", n),
				 errhint("Listeners recover skipped frames with datastreams.frames_since().")));
		for (i = 0; i < n; i++)
			ds_metrics_notification_skipped();
	}
	else
		for (i = 0; i < n; i++)
			notify_wakeup(&batch[i]);

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->published += n;
	LWLockRelease(shared->lock);
	return n;
}

PGDLLEXPORT void datastreams_notify_worker_main(Datum main_arg);

void
datastreams_notify_worker_main(Datum main_arg)
{
	const char *database = GetConfigOption("datastreams.database", true, false);
	WakeUp	   *batch;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(database ? database : "postgres", NULL, 0);

	batch = MemoryContextAlloc(TopMemoryContext, sizeof(WakeUp) * WAKEUP_SLOTS);

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->worker_database = MyDatabaseId;
	shared->worker_latch = MyLatch;
	LWLockRelease(shared->lock);
	before_shmem_exit(worker_detach, (Datum) 0);

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();

		if (publish_pending(batch) == 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

void
ds_notify_worker_init(void)
{
	BackgroundWorker worker;

	DefineCustomBoolVariable("datastreams.notify_via_worker",
							 "Hand frame notifications to the notify worker instead of notifying at commit.",
							 "Needs datastreams in shared_preload_libraries. Listeners then get one wake-up per stream and batch.",
							 &ds_notify_via_worker,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	RegisterXactCallback(notify_worker_xact_callback, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = notify_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = notify_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "datastreams");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "datastreams_notify_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "datastreams notify worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "datastreams notify worker");
	RegisterBackgroundWorker(&worker);
}
