/*-------------------------------------------------------------------------
 *
 * health.c
 *	  Stream health: its settings and the latency percentiles behind the
 *	  datastreams.stream_health view.
 *
 * The view itself is SQL (datastreams--1.0--1.1.sql): counters and the
 * latest frame come from datastreams.stream_state, the percentiles from
 * datastreams.stream_latency() below, which estimates them from the
 * shared memory latency histograms the way Prometheus' histogram_quantile()
 * does (linear interpolation inside the bucket holding the rank).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "datastreams.h"

static double health_frequency_tolerance = 3.0;
static double health_late_ratio_threshold = 0.05;

void
ds_health_init(void)
{
	DefineCustomRealVariable("datastreams.health_frequency_tolerance",
							 "Sets how many times its frequency an active stream may go without a frame before stream_health calls it unhealthy.",
							 NULL,
							 &health_frequency_tolerance,
							 3.0,
							 1.0, 1000000.0,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("datastreams.health_late_ratio_threshold",
							 "Sets the share of late frames above which stream_health calls an active stream unhealthy.",
							 NULL,
							 &health_late_ratio_threshold,
							 0.05,
							 0.0, 1.0,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
}

/*
 * The q-quantile of a latency histogram, in milliseconds.  As Prometheus'
 * histogram_quantile(): the bucket holding rank q * count is found, and
 * the value interpolated linearly between its bounds (the first bucket
 * starts at 0); a rank in the +Inf bucket gives the highest finite bound.
 */
double
ds_latency_quantile(const int64 *buckets, double q, bool *isnull)
{
	int64		count = 0;
	double		rank;
	int64		below = 0;
	int			i;

	for (i = 0; i <= DS_LATENCY_BUCKETS; i++)
		count += buckets[i];
	*isnull = (count == 0);
	if (count == 0)
		return 0.0;

	rank = q * (double) count;
	for (i = 0; i < DS_LATENCY_BUCKETS; i++)
	{
		if ((double) (below + buckets[i]) >= rank && buckets[i] > 0)
		{
			double		start = (i == 0) ? 0.0 : (double) ds_latency_bounds_ms[i - 1];
			double		end = (double) ds_latency_bounds_ms[i];

			return start + (end - start) * ((rank - (double) below) / (double) buckets[i]);
		}
		below += buckets[i];
	}
	return (double) ds_latency_bounds_ms[DS_LATENCY_BUCKETS - 1];
}

/*
 * datastreams.stream_latency(): per tracked stream visible to the caller,
 * the number of frames in its histogram, their total latency and the
 * estimated 50th, 95th and 99th percentiles.  Returns no rows when the
 * library was not preloaded, so that stream_health keeps working.
 */
PG_FUNCTION_INFO_V1(datastreams_stream_latency);
Datum
datastreams_stream_latency(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	static const double quantiles[3] = {0.50, 0.95, 0.99};
	DsStreamCounters *streams;
	const char *account;
	bool		all;
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (!ds_metrics_available())
		return (Datum) 0;

	account = ds_metrics_viewer(&all);
	streams = ds_metrics_streams(account, all, &n);
	for (i = 0; i < n; i++)
	{
		Datum		values[7];
		bool		nulls[7] = {false};
		int64		frames = 0;
		int			k;
		int			q;

		for (k = 0; k <= DS_LATENCY_BUCKETS; k++)
			frames += streams[i].buckets[k];
		values[0] = UUIDPGetDatum(&streams[i].stream_id);
		values[1] = CStringGetTextDatum(streams[i].account_id);
		values[2] = Int64GetDatum(frames);
		values[3] = Int64GetDatum(streams[i].latency_sum_ms);
		for (q = 0; q < 3; q++)
			values[4 + q] = Float8GetDatum(ds_latency_quantile(streams[i].buckets, quantiles[q],
															   &nulls[4 + q]));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
