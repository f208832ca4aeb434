/*-------------------------------------------------------------------------
 *
 * workers.h
 *	  The per-database background workers (a publisher and a pruner for
 *	  every database with the extension) and their launcher.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DS_WORKERS_H
#define DS_WORKERS_H

#include "storage/lwlock.h"
#include "storage/latch.h"

typedef enum DatabaseState
{
	DATABASE_UNKNOWN,			/* a worker will look for the extension */
	DATABASE_PRESENT,			/* the extension is installed */
	DATABASE_ABSENT,			/* it is not; nothing runs there */
	DATABASE_DROPPING			/* DROP DATABASE is waiting for the workers */
} DatabaseState;

/* One database's entry in shared memory; slot numbers never change */
typedef struct DatabaseSlot
{
	Oid			dbid;			/* InvalidOid when the slot is free */
	DatabaseState state;
	TimestampTz state_since;
	pid_t		publisher_pid;
	pid_t		pruner_pid;
} DatabaseSlot;

/* database_slots.c */
extern int	ds_database_slots(void);
extern DatabaseSlot *ds_database_slot(int slot);
extern LWLock *ds_workers_lock(void);
extern int	ds_find_database_slot(Oid dbid);
extern int	ds_enter_database_slot(Oid dbid);
extern void ds_worker_attach(int slot, bool publisher);
extern void ds_worker_set_state(int slot, DatabaseState state);
extern bool ds_database_slots_ready(void);
extern void ds_wake_launcher(bool rescan);
extern void ds_set_launcher_latch(Latch *latch);
extern bool ds_take_rescan(void);
extern void ds_database_slots_init(void);

/* launcher.c */
extern void ds_launcher_init(void);
extern PGDLLEXPORT void datastreams_launcher_main(Datum main_arg);

/* prune_worker.c: one per database, started by the launcher */
extern PGDLLEXPORT void datastreams_prune_worker_main(Datum main_arg);
extern int	ds_prune_interval_seconds(void);

#endif							/* DS_WORKERS_H */
