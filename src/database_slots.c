/*-------------------------------------------------------------------------
 *
 * database_slots.c
 *	  The registry of the databases the background workers serve: one slot
 *	  per database in shared memory (datastreams.max_databases of them),
 *	  with the pids of its publisher and pruner, under one LWLock that also
 *	  protects the publishers' hand-over rings (publisher.c).
 *
 * The launcher enters databases and starts their workers; the workers
 * attach to their slot; DROP DATABASE and CREATE EXTENSION change a slot's
 * state and wake the launcher.  Slot numbers never change while a database
 * has one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "workers.h"

#define MAX_DATABASES_DEFAULT 16

typedef struct SlotRegistry
{
	LWLock	   *lock;
	Latch	   *launcher_latch;
	bool		rescan;			/* list the databases again */
	DatabaseSlot slots[FLEXIBLE_ARRAY_MEMBER];
} SlotRegistry;

static int	max_databases = MAX_DATABASES_DEFAULT;
static SlotRegistry *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
registry_shmem_size(void)
{
	return add_size(offsetof(SlotRegistry, slots),
					mul_size(max_databases, sizeof(DatabaseSlot)));
}

static void
registry_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(registry_shmem_size()));
	RequestNamedLWLockTranche("datastreams workers", 1);
}

static void
registry_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("datastreams workers", registry_shmem_size(), &found);
	if (!found)
	{
		memset(shared, 0, registry_shmem_size());
		shared->lock = &(GetNamedLWLockTranche("datastreams workers"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

int
ds_database_slots(void)
{
	return max_databases;
}

DatabaseSlot *
ds_database_slot(int slot)
{
	return &shared->slots[slot];
}

LWLock *
ds_workers_lock(void)
{
	return shared->lock;
}

/* The database's slot, or -1; the caller need not hold the lock */
int
ds_find_database_slot(Oid dbid)
{
	int			i;

	if (shared == NULL)
		return -1;
	for (i = 0; i < max_databases; i++)
		if (shared->slots[i].dbid == dbid)
			return i;
	return -1;
}

/* The database's slot, entered if new, or -1 if none is free; the caller
 * holds the lock exclusively */
int
ds_enter_database_slot(Oid dbid)
{
	int			i = ds_find_database_slot(dbid);

	if (i >= 0)
		return i;
	for (i = 0; i < max_databases; i++)
		if (!OidIsValid(shared->slots[i].dbid))
		{
			memset(&shared->slots[i], 0, sizeof(DatabaseSlot));
			shared->slots[i].dbid = dbid;
			shared->slots[i].state = DATABASE_UNKNOWN;
			shared->slots[i].state_since = GetCurrentTimestamp();
			return i;
		}
	return -1;
}

void
ds_worker_set_state(int slot, DatabaseState state)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->slots[slot].state = state;
	shared->slots[slot].state_since = GetCurrentTimestamp();
	LWLockRelease(shared->lock);
}

static void
worker_detach(int code, Datum arg)
{
	int			slot = DatumGetInt32(arg) >> 1;
	bool		publisher = DatumGetInt32(arg) & 1;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (publisher)
		shared->slots[slot].publisher_pid = 0;
	else
		shared->slots[slot].pruner_pid = 0;
	LWLockRelease(shared->lock);
}

/* A worker says it runs (its pid, for DROP DATABASE) */
void
ds_worker_attach(int slot, bool publisher)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (publisher)
		shared->slots[slot].publisher_pid = MyProcPid;
	else
		shared->slots[slot].pruner_pid = MyProcPid;
	LWLockRelease(shared->lock);
	before_shmem_exit(worker_detach, Int32GetDatum((slot << 1) | (publisher ? 1 : 0)));
}

/* Wake the launcher, asking it to list the databases again if rescan */
void
ds_wake_launcher(bool rescan)
{
	Latch	   *latch;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (rescan)
		shared->rescan = true;
	latch = shared->launcher_latch;
	LWLockRelease(shared->lock);
	if (latch)
		SetLatch(latch);
}

/* Is the registry there (the library was preloaded)? */
bool
ds_database_slots_ready(void)
{
	return shared != NULL;
}

/* The launcher's latch, for the others to wake it */
void
ds_set_launcher_latch(Latch *latch)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->launcher_latch = latch;
	LWLockRelease(shared->lock);
}

/* Whether someone asked the launcher to list the databases again */
bool
ds_take_rescan(void)
{
	bool		rescan;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	rescan = shared->rescan;
	shared->rescan = false;
	LWLockRelease(shared->lock);
	return rescan;
}

void
ds_database_slots_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("datastreams.max_databases",
							"Sets how many databases the background workers can serve.",
							NULL,
							&max_databases,
							MAX_DATABASES_DEFAULT,
							1, 1024,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = registry_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = registry_shmem_startup;
}
