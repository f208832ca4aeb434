/*-------------------------------------------------------------------------
 *
 * publisher.c
 *	  The per-database publisher: announces committed frames so that
 *	  writers do not have to.
 *
 * PostgreSQL serialises the commits of all transactions that notified (a
 * database-wide lock is held from queueing the notifications until the
 * commit record is flushed, which defeats group commit), so with many
 * writers a NOTIFY per transaction caps ingest.  With the library preloaded
 * a writer does not notify: it reserves room in its database's hand-over
 * ring before commit and, once committed, fills it with one entry per
 * stream (first and last sequence, how many frames).  The publisher
 * announces the entries in one transaction by reading the frames back
 * (notify.c: the same notifications the writer would have sent), then
 * folds the streams' counters (stream_state.c).
 *
 * Waking the publisher costs the writer a kill() and both of them a context
 * switch, more than the rest of the hand-over, and a wake-up per commit
 * means a publisher transaction per commit.  So while entries keep coming
 * the publisher polls the ring every POLL_INTERVAL_MS and says so in the
 * ring (polling); writers set its latch only when it does not poll.  Ring
 * entries wait at most that long, and the publisher's transactions carry
 * every commit of the interval.
 *
 * Order: a stream's entries enter the ring in commit order (the writer
 * fills its entry before its stream lock is released) and leave it in ring
 * order.  A writer that cannot use the publisher (none runs, the ring is
 * full, it has shown no sign of life for datastreams.publisher_timeout)
 * first takes over what is in the ring, announcing it as batch wake-ups,
 * then announces its own frames at commit: order is kept and listeners are
 * never left in silence.  If the publisher dies, what it had taken out of
 * the ring but not committed is lost: wake-ups only, never frames
 * (clients read frames with frames_since()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "notify.h"
#include "publisher.h"
#include "stream_state.h"
#include "workers.h"

#define RING_SIZE 4096
#define PUBLISH_BATCH 1024
#define PUBLISHER_TIMEOUT_DEFAULT 1000	/* ms */
#define FOLD_INTERVAL_MS 1000
#define FOLDS_PER_ROUND 256
#define IDLE_WAIT_MS 100
#define POLL_INTERVAL_MS 1
#define POLL_IDLE_ROUNDS 20

typedef enum HandOverState
{
	HAND_OVER_RESERVED,			/* the writer has not committed yet */
	HAND_OVER_FILLED,
	HAND_OVER_VOID				/* the writer rolled back after reserving */
} HandOverState;

typedef struct HandOver
{
	pg_uuid_t	stream_id;
	int64		first_sequence;
	int64		last_sequence;
	int64		count;
	pg_uuid_t	last_id;
	FrameStatus last_status;
	HandOverState state;
} HandOver;

typedef struct PublisherRing
{
	Latch	   *latch;			/* NULL while no publisher runs */
	TimestampTz heartbeat;		/* its last sign of life */
	uint64		head;			/* next position to reserve */
	uint64		tail;			/* next position to publish */
	uint64		committed;		/* positions before this are announced */
	bool		polling;		/* the publisher looks again within
								 * POLL_INTERVAL_MS without being woken */
	HandOver	entries[RING_SIZE];
} PublisherRing;

static bool notify_via_publisher = true;
static int	publisher_timeout = PUBLISHER_TIMEOUT_DEFAULT;

static PublisherRing *rings = NULL; /* one per database slot */
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This backend's database slot, and what its transaction reserved */
static int	my_slot = -1;
static Oid	my_slot_db = InvalidOid;
static uint64 reserved_at = 0;
static int	reserved_count = 0;

static Size
rings_size(void)
{
	return mul_size(ds_database_slots(), sizeof(PublisherRing));
}

static void
publisher_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(rings_size()));
}

static void
publisher_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	rings = ShmemInitStruct("datastreams publisher rings", rings_size(), &found);
	if (!found)
		memset(rings, 0, rings_size());
	LWLockRelease(AddinShmemInitLock);
}

static PublisherRing *
my_ring(void)
{
	if (rings == NULL)
		return NULL;
	if (my_slot_db != MyDatabaseId || my_slot < 0 ||
		ds_database_slot(my_slot)->dbid != MyDatabaseId)
	{
		my_slot = ds_find_database_slot(MyDatabaseId);
		my_slot_db = MyDatabaseId;
	}
	return my_slot >= 0 ? &rings[my_slot] : NULL;
}

static bool
ring_alive(PublisherRing *ring)
{
	return ring->latch != NULL &&
		!TimestampDifferenceExceeds(ring->heartbeat, GetCurrentTimestamp(), publisher_timeout);
}

bool
ds_publisher_usable(void)
{
	PublisherRing *ring;
	bool		alive;

	if (!notify_via_publisher || (ring = my_ring()) == NULL)
		return false;
	LWLockAcquire(ds_workers_lock(), LW_SHARED);
	alive = ring_alive(ring);
	LWLockRelease(ds_workers_lock());
	return alive;
}

/*
 * Announce, as batch wake-ups, what is in the ring: the writer that calls
 * this is about to notify itself, and must not overtake earlier frames.
 * Waits (at most the publisher timeout) for a batch a live publisher is
 * announcing to commit first.
 */
static void
take_over(PublisherRing *ring)
{
	TimestampTz start = GetCurrentTimestamp();
	HandOver   *taken;
	int			n = 0;
	int			i;

	for (;;)
	{
		bool		busy;

		/* a stuck publisher's batch is not waited for: it may never commit */
		LWLockAcquire(ds_workers_lock(), LW_SHARED);
		busy = ring->committed < ring->tail && ring_alive(ring);
		LWLockRelease(ds_workers_lock());
		if (!busy || TimestampDifferenceExceeds(start, GetCurrentTimestamp(), publisher_timeout))
			break;
		CHECK_FOR_INTERRUPTS();
		pg_usleep(1000L);
	}

	taken = palloc(sizeof(HandOver) * RING_SIZE);
	LWLockAcquire(ds_workers_lock(), LW_EXCLUSIVE);
	while (ring->tail < ring->head && ring->entries[ring->tail % RING_SIZE].state != HAND_OVER_RESERVED)
	{
		HandOver   *h = &ring->entries[ring->tail % RING_SIZE];

		if (h->state == HAND_OVER_FILLED)
			taken[n++] = *h;
		ring->tail++;
	}
	ring->committed = Max(ring->committed, ring->tail);
	LWLockRelease(ds_workers_lock());

	for (i = 0; i < n; i++)
		ds_notify_batch(&taken[i].stream_id, taken[i].first_sequence,
						taken[i].last_sequence, taken[i].count);
	pfree(taken);
}

/*
 * Before commit: room for one entry per stream, or false (after taking
 * over the ring, so that the caller may notify itself).
 */
bool
ds_publisher_reserve(LedgerStream **streams, int count)
{
	PublisherRing *ring = my_ring();
	bool		fits;
	uint64		i;

	if (ring == NULL)
		return false;

	LWLockAcquire(ds_workers_lock(), LW_EXCLUSIVE);
	fits = notify_via_publisher && ring_alive(ring) &&
		ring->head - ring->tail + count <= RING_SIZE;
	if (fits)
	{
		reserved_at = ring->head;
		reserved_count = count;
		for (i = 0; i < count; i++)
			ring->entries[(reserved_at + i) % RING_SIZE].state = HAND_OVER_RESERVED;
		ring->head += count;
	}
	LWLockRelease(ds_workers_lock());

	if (!fits && ring->tail < ring->head)
		take_over(ring);
	return fits;
}

static void
settle_reservation(LedgerStream **streams, HandOverState state)
{
	PublisherRing *ring = &rings[my_slot];
	Latch	   *latch;
	int			i;

	LWLockAcquire(ds_workers_lock(), LW_EXCLUSIVE);
	for (i = 0; i < reserved_count; i++)
	{
		HandOver   *h = &ring->entries[(reserved_at + i) % RING_SIZE];

		if (state == HAND_OVER_FILLED)
		{
			memcpy(&h->stream_id, &streams[i]->stream_id, sizeof(pg_uuid_t));
			h->first_sequence = streams[i]->t.first_sequence;
			h->last_sequence = streams[i]->t.latest;
			h->count = streams[i]->t.count;
			memcpy(&h->last_id, &streams[i]->t.last_id, sizeof(pg_uuid_t));
			h->last_status = streams[i]->t.last_status;
		}
		h->state = state;
	}
	latch = ring->polling ? NULL : ring->latch;
	LWLockRelease(ds_workers_lock());
	reserved_count = 0;
	if (latch && state == HAND_OVER_FILLED)
		SetLatch(latch);
}

/* After commit: the frames are visible; fill the reservation */
void
ds_publisher_hand_over(LedgerStream **streams, int count)
{
	if (reserved_count == 0)
		return;
	Assert(count == reserved_count);
	settle_reservation(streams, HAND_OVER_FILLED);
}

/* Rolled back after reserving: the publisher skips the entries */
void
ds_publisher_release(void)
{
	if (reserved_count > 0)
		settle_reservation(NULL, HAND_OVER_VOID);
}

/*
 * The publisher itself
 */
typedef struct PendingFold
{
	pg_uuid_t	stream_id;		/* hash key */
	TimestampTz last_fold;
	bool		due;
} PendingFold;

static HTAB *folds = NULL;

/* No stream is due for a fold before this */
static TimestampTz next_fold_at = 0;

static TimestampTz
fold_time(PendingFold *f)
{
	return f->last_fold + FOLD_INTERVAL_MS * INT64CONST(1000);
}

static void
publisher_detach(int code, Datum arg)
{
	PublisherRing *ring = &rings[DatumGetInt32(arg)];

	LWLockAcquire(ds_workers_lock(), LW_EXCLUSIVE);
	ring->latch = NULL;
	ring->polling = false;
	/* what was taken out and not committed is lost (wake-ups only) */
	ring->committed = ring->tail;
	LWLockRelease(ds_workers_lock());
}

static void
heartbeat(PublisherRing *ring)
{
	LWLockAcquire(ds_workers_lock(), LW_EXCLUSIVE);
	ring->heartbeat = GetCurrentTimestamp();
	LWLockRelease(ds_workers_lock());
}

static bool
extension_installed(void)
{
	bool		installed;

	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("datastreams", true));
	CommitTransactionCommand();
	return installed;
}

/* One transaction announcing up to PUBLISH_BATCH entries; how many it took */
static int
publish_batch(PublisherRing *ring, HandOver *batch)
{
	int			n = 0;
	int			i;
	uint64		upto;

	LWLockAcquire(ds_workers_lock(), LW_EXCLUSIVE);
	while (n < PUBLISH_BATCH && ring->tail < ring->head &&
		   ring->entries[ring->tail % RING_SIZE].state != HAND_OVER_RESERVED)
	{
		HandOver   *h = &ring->entries[ring->tail % RING_SIZE];

		if (h->state == HAND_OVER_FILLED)
			batch[n++] = *h;
		ring->tail++;
	}
	upto = ring->tail;
	LWLockRelease(ds_workers_lock());

	if (n > 0)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "announcing datastreams frames");
		if (ds_notify_queue_full())
			ds_metrics_notifications_skipped(n);
		else
			for (i = 0; i < n; i++)
				(void) ds_notify_range(&batch[i].stream_id, batch[i].first_sequence,
										batch[i].last_sequence, batch[i].count,
										&batch[i].last_id, batch[i].last_status,
										GetActiveSnapshot());
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);

		for (i = 0; i < n; i++)
		{
			bool		found;
			PendingFold *f = hash_search(folds, &batch[i].stream_id, HASH_ENTER, &found);

			if (!found)
				f->last_fold = 0;
			f->due = true;
			next_fold_at = Min(next_fold_at, fold_time(f));
		}
	}

	LWLockAcquire(ds_workers_lock(), LW_EXCLUSIVE);
	ring->committed = Max(ring->committed, upto);
	ring->heartbeat = GetCurrentTimestamp();
	LWLockRelease(ds_workers_lock());
	return n;
}

/*
 * Fold the counters of streams that received frames, each at most once a
 * second, skipping a stream a writer is folding itself.  A round can be as
 * short as the poll interval, so the publisher remembers when the next
 * stream falls due and starts no transaction before.
 */
static void
fold_due_streams(void)
{
	HASH_SEQ_STATUS seq;
	PendingFold *f;
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;

	if (hash_get_num_entries(folds) == 0 || now < next_fold_at)
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "folding datastreams stream state");
	hash_seq_init(&seq, folds);
	while ((f = hash_seq_search(&seq)) != NULL)
	{
		if (!f->due || !TimestampDifferenceExceeds(f->last_fold, now, FOLD_INTERVAL_MS))
			continue;
		if (n++ >= FOLDS_PER_ROUND)
		{
			hash_seq_term(&seq);
			break;
		}
		if (ds_fold_stream_state(&f->stream_id, false))
		{
			f->due = false;
			f->last_fold = now;
		}
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	/* forget streams that went quiet, so the table stays small */
	next_fold_at = DT_NOEND;
	hash_seq_init(&seq, folds);
	while ((f = hash_seq_search(&seq)) != NULL)
	{
		if (f->due)
			next_fold_at = Min(next_fold_at, fold_time(f));
		else if (TimestampDifferenceExceeds(f->last_fold, now, 60 * 1000))
			(void) hash_search(folds, &f->stream_id, HASH_REMOVE, NULL);
	}
}

/*
 * Before sleeping: tell writers whether to wake the publisher.  When it
 * stops polling, an entry a writer filled while it still polled (and so
 * did not set the latch) must not wait for the idle timeout: false then,
 * and the caller publishes at once.
 */
static bool
wait_for_entries(PublisherRing *ring, bool polling)
{
	bool		ready;

	LWLockAcquire(ds_workers_lock(), LW_EXCLUSIVE);
	ring->polling = polling;
	ready = ring->tail < ring->head &&
		ring->entries[ring->tail % RING_SIZE].state != HAND_OVER_RESERVED;
	LWLockRelease(ds_workers_lock());
	return polling || !ready;
}

void
datastreams_publisher_main(Datum main_arg)
{
	int			slot = DatumGetInt32(main_arg);
	PublisherRing *ring = &rings[slot];
	HandOver   *batch;
	MemoryContext work;
	HASHCTL		ctl;
	TimestampTz last_check = 0;
	int			idle_rounds = POLL_IDLE_ROUNDS;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(ds_database_slot(slot)->dbid, InvalidOid, 0);
	pgstat_report_appname("datastreams publisher");

	if (!extension_installed())
	{
		ds_worker_set_state(slot, DATABASE_ABSENT);
		proc_exit(0);
	}
	ds_worker_set_state(slot, DATABASE_PRESENT);
	ds_worker_attach(slot, true);

	batch = MemoryContextAlloc(TopMemoryContext, sizeof(HandOver) * PUBLISH_BATCH);
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(PendingFold);
	folds = hash_create("datastreams publisher folds", 256, &ctl, HASH_ELEM | HASH_BLOBS);
	work = AllocSetContextCreate(TopMemoryContext, "datastreams publisher", ALLOCSET_DEFAULT_SIZES);

	LWLockAcquire(ds_workers_lock(), LW_EXCLUSIVE);
	ring->latch = MyLatch;
	ring->heartbeat = GetCurrentTimestamp();
	ring->committed = ring->tail;
	LWLockRelease(ds_workers_lock());
	before_shmem_exit(publisher_detach, Int32GetDatum(slot));

	for (;;)
	{
		MemoryContext old = MemoryContextSwitchTo(work);
		volatile int n = 0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/*
		 * An error loses at most this round's wake-ups (listeners read the
		 * frames with frames_since()) and leaves the counters to fold later;
		 * the publisher itself goes on.
		 */
		PG_TRY();
		{
			n = publish_batch(ring, batch);
			fold_due_streams();
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(work);
			EmitErrorReport();
			AbortCurrentTransaction();
			FlushErrorState();
			n = 0;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);
		MemoryContextReset(work);

		/* a dropped extension ends the publisher; the launcher knows why */
		if (TimestampDifferenceExceeds(last_check, GetCurrentTimestamp(), 1000))
		{
			if (!extension_installed())
			{
				ds_worker_set_state(slot, DATABASE_ABSENT);
				proc_exit(0);
			}
			last_check = GetCurrentTimestamp();
		}

		if (n < PUBLISH_BATCH)
		{
			/* capped: an idle publisher counts no further than it needs to */
			idle_rounds = n > 0 ? 0 : Min(idle_rounds + 1, POLL_IDLE_ROUNDS);
			if (!wait_for_entries(ring, idle_rounds < POLL_IDLE_ROUNDS))
				continue;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 idle_rounds < POLL_IDLE_ROUNDS ? POLL_INTERVAL_MS : IDLE_WAIT_MS,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			heartbeat(ring);
		}
	}
}

void
ds_publisher_init(void)
{
	DefineCustomBoolVariable("datastreams.notify_via_worker",
							 "Lets the database's publisher announce frames instead of the writers at commit.",
							 "Needs the library in shared_preload_libraries; without it writers always notify at commit.",
							 &notify_via_publisher,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("datastreams.publisher_timeout",
							"Sets how long the publisher may show no sign of life before writers notify at commit themselves.",
							NULL,
							&publisher_timeout,
							PUBLISHER_TIMEOUT_DEFAULT,
							10, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = publisher_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = publisher_shmem_startup;
}
