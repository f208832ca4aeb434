/*-------------------------------------------------------------------------
 *
 * bus.h
 *	  Publishing committed frames with NOTIFY: the payloads and the path at
 *	  commit (notify.c), the per-database publisher (publisher.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef DS_BUS_H
#define DS_BUS_H

#include "utils/snapshot.h"

#include "ledger.h"

/* notify.c */
extern int64 ds_notify_range(const pg_uuid_t *stream_id, int64 first_sequence,
							 int64 last_sequence, int64 count, const pg_uuid_t *last_id,
							 FrameStatus last_status, Snapshot snapshot);
extern void ds_notify_batch(const pg_uuid_t *stream_id, int64 first_sequence,
							int64 last_sequence, int64 count);
extern bool ds_notify_queue_full(void);
extern bool ds_bus_pre_commit(LedgerStream **streams, int count);
extern void ds_bus_commit(LedgerStream **streams, int count);
extern void ds_bus_abort(void);
extern void ds_notify_init(void);

/* publisher.c */
extern bool ds_publisher_reserve(LedgerStream **streams, int count);
extern void ds_publisher_hand_over(LedgerStream **streams, int count);
extern void ds_publisher_release(void);
extern bool ds_publisher_usable(void);
extern void ds_publisher_init(void);
extern PGDLLEXPORT void datastreams_publisher_main(Datum main_arg);

#endif							/* DS_BUS_H */
