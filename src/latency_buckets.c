/*-------------------------------------------------------------------------
 *
 * latency_buckets.c
 *	  The latency histogram's buckets, shared by the tallies of a
 *	  transaction (ledger.c), the shared counters (metrics.c), the
 *	  quantiles of stream_health (health.c) and metrics() (prometheus.c,
 *	  which has their text forms).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "datastreams.h"

/* Bucket upper bounds, in milliseconds; one more bucket is +Inf */
const int32 ds_latency_bounds_ms[DS_LATENCY_BUCKETS] = {
	1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000
};

/* The bucket a latency falls in */
int
ds_latency_bucket(int32 latency_ms)
{
	int			i;

	for (i = 0; i < DS_LATENCY_BUCKETS; i++)
		if (latency_ms <= ds_latency_bounds_ms[i])
			return i;
	return DS_LATENCY_BUCKETS;
}
