/*-------------------------------------------------------------------------
 *
 * notify.h
 *	  The notifications of committed frames: payloads and sending them
 *	  (notify.c), for the writer at commit and the publisher alike.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DS_NOTIFY_H
#define DS_NOTIFY_H

#include "utils/snapshot.h"

#include "datastreams.h"

extern int64 ds_notify_range(const pg_uuid_t *stream_id, int64 first_sequence,
							 int64 last_sequence, int64 count, const pg_uuid_t *last_id,
							 FrameStatus last_status, Snapshot snapshot);
extern void ds_notify_batch(const pg_uuid_t *stream_id, int64 first_sequence,
							int64 last_sequence, int64 count);
extern bool ds_notify_queue_full(void);
extern void ds_notify_init(void);

#endif							/* DS_NOTIFY_H */
