/*-------------------------------------------------------------------------
 *
 * stream_state.h
 *	  The stream lock, the latest sequence and the stream_state counters.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DS_STREAM_STATE_H
#define DS_STREAM_STATE_H

#include "storage/lock.h"

#include "ledger.h"

/* The lock class (last field of the advisory lock tag) of the writers' lock */
#define STREAM_LOCK_WRITERS 0x4453	/* writers, and a stream's deletion */

extern void ds_stream_locktag(LOCKTAG *tag, const pg_uuid_t *stream_id, uint16 lock_class);
extern void ds_lock_stream(const pg_uuid_t *stream_id, int streams_locked);
extern int64 ds_read_latest_sequence(const pg_uuid_t *stream_id, int64 guess);
extern bool ds_sequence_stored(const pg_uuid_t *stream_id, int64 sequence);
extern void ds_fold_stream_states(LedgerStream **streams, int count);
extern bool ds_fold_stream_state(const pg_uuid_t *stream_id, bool wait);
extern void ds_stream_state_init(void);

#endif							/* DS_STREAM_STATE_H */
