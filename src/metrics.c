/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  Live counters for operators (placeholder until shared memory metrics).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "datastreams.h"

void
ds_metrics_stream_created(const pg_uuid_t *stream_id, const char *account_id)
{
}

void
ds_metrics_stream_updated(const pg_uuid_t *stream_id, const char *account_id)
{
}

void
ds_metrics_frame(const pg_uuid_t *stream_id, FrameStatus status, int32 latency_ms)
{
}

void
ds_metrics_notification_skipped(void)
{
}

void
ds_metrics_init(void)
{
}
