/*-------------------------------------------------------------------------
 *
 * prometheus.c
 *	  datastreams.metrics(): the shared memory counters in the Prometheus
 *	  text exposition format (version 0.0.4).
 *
 * Every family has its HELP and TYPE lines even when it has no series.
 * Series are sorted by account and stream so the output is stable.  A
 * tenant gets the series labelled with its own account or streams;
 * administrators get every series plus the global ones, which sum over all
 * tenants.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "datastreams.h"

/* ds_latency_bounds_ms in seconds, as "le" label values */
static const char *const bucket_labels[DS_LATENCY_BUCKETS] = {
	"0.001", "0.002", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
	"1", "2.5", "5", "10", "30", "60"
};

static void
stream_labels(StringInfo buf, const DsStreamCounters *s)
{
	ds_prometheus_label(buf, "account_id", s->account_id, true);
	ds_prometheus_label(buf, "stream_id", ds_uuid_to_cstring(&s->stream_id), false);
}

/* Milliseconds as seconds, exactly */
static void
append_seconds(StringInfo buf, int64 ms)
{
	appendStringInfo(buf, INT64_FORMAT ".%03d", ms / 1000, (int) (ms % 1000));
}

PG_FUNCTION_INFO_V1(datastreams_metrics);
Datum
datastreams_metrics(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	const char *account;
	bool		all;
	DsAccountCounters *accounts;
	DsStreamCounters *streams;
	int			naccounts;
	int			nstreams;
	int			i;
	int			k;

	ds_metrics_require();
	account = ds_metrics_viewer(&all);
	accounts = ds_metrics_accounts(account, all, &naccounts);
	streams = ds_metrics_streams(account, all, &nstreams);

	initStringInfo(&buf);

	ds_prometheus_family(&buf, "datastreams_streams_created_total", "counter",
		   "Streams created, per account (committed transactions only).");
	for (i = 0; i < naccounts; i++)
	{
		appendStringInfoString(&buf, "datastreams_streams_created_total{");
		ds_prometheus_label(&buf, "account_id", accounts[i].account_id, true);
		appendStringInfo(&buf, "} " INT64_FORMAT "\n", accounts[i].created);
	}

	ds_prometheus_family(&buf, "datastreams_streams_updated_total", "counter",
		   "Stream updates, per account (committed transactions only).");
	for (i = 0; i < naccounts; i++)
	{
		appendStringInfoString(&buf, "datastreams_streams_updated_total{");
		ds_prometheus_label(&buf, "account_id", accounts[i].account_id, true);
		appendStringInfo(&buf, "} " INT64_FORMAT "\n", accounts[i].updated);
	}

	ds_prometheus_family(&buf, "datastreams_account_tracked_streams", "gauge",
		   "Streams of the account with an entry in shared memory (at most datastreams.max_tracked_streams_per_account).");
	for (i = 0; i < naccounts; i++)
	{
		appendStringInfoString(&buf, "datastreams_account_tracked_streams{");
		ds_prometheus_label(&buf, "account_id", accounts[i].account_id, true);
		appendStringInfo(&buf, "} " INT64_FORMAT "\n", accounts[i].tracked_streams);
	}

	ds_prometheus_family(&buf, "datastreams_account_untracked_frames_total", "counter",
		   "Frames of the account's streams not counted per stream because the account's share of the stream table or the table was full (committed transactions only).");
	for (i = 0; i < naccounts; i++)
	{
		appendStringInfoString(&buf, "datastreams_account_untracked_frames_total{");
		ds_prometheus_label(&buf, "account_id", accounts[i].account_id, true);
		appendStringInfo(&buf, "} " INT64_FORMAT "\n", accounts[i].untracked_frames);
	}

	ds_prometheus_family(&buf, "datastreams_frames_created_total", "counter",
		   "Frames stored, per stream and status (committed transactions only).");
	for (i = 0; i < nstreams; i++)
		for (k = 0; k < FRAME_STATUS_COUNT; k++)
		{
			appendStringInfoString(&buf, "datastreams_frames_created_total{");
			stream_labels(&buf, &streams[i]);
			ds_prometheus_label(&buf, "status", frame_status_names[k], false);
			appendStringInfo(&buf, "} " INT64_FORMAT "\n", streams[i].frames[k]);
		}

	ds_prometheus_family(&buf, "datastreams_frame_latency_seconds", "histogram",
		   "Latency of stored frames (their latency_ms), per stream (committed transactions only).");
	for (i = 0; i < nstreams; i++)
	{
		int64		cumulative = 0;

		for (k = 0; k <= DS_LATENCY_BUCKETS; k++)
		{
			cumulative += streams[i].buckets[k];
			appendStringInfoString(&buf, "datastreams_frame_latency_seconds_bucket{");
			stream_labels(&buf, &streams[i]);
			ds_prometheus_label(&buf, "le", k < DS_LATENCY_BUCKETS ? bucket_labels[k] : "+Inf", false);
			appendStringInfo(&buf, "} " INT64_FORMAT "\n", cumulative);
		}
		appendStringInfoString(&buf, "datastreams_frame_latency_seconds_sum{");
		stream_labels(&buf, &streams[i]);
		appendStringInfoString(&buf, "} ");
		append_seconds(&buf, streams[i].latency_sum_ms);
		appendStringInfoString(&buf, "\ndatastreams_frame_latency_seconds_count{");
		stream_labels(&buf, &streams[i]);
		appendStringInfo(&buf, "} " INT64_FORMAT "\n", cumulative);
	}

	ds_consumer_metrics(&buf, account, all);

	/* Server-wide series: administrators only */
	if (all)
	{
		DsGlobalCounters g;

		ds_metrics_globals(&g);
		ds_prometheus_family(&buf, "datastreams_notifications_skipped_total", "counter",
			   "Per-stream statement notifications not sent because the notification queue was fuller than datastreams.notify_queue_limit.");
		appendStringInfo(&buf, "datastreams_notifications_skipped_total " INT64_FORMAT "\n",
						 g.notifications_skipped);
		ds_prometheus_family(&buf, "datastreams_untracked_frames_total", "counter",
			   "Frames not counted per stream because the stream table (datastreams.max_tracked_streams) or the account's share of it (datastreams.max_tracked_streams_per_account) was full.");
		appendStringInfo(&buf, "datastreams_untracked_frames_total " INT64_FORMAT "\n",
						 g.untracked_frames);
		ds_prometheus_family(&buf, "datastreams_untracked_stream_changes_total", "counter",
			   "Stream creations and updates not counted per account because the account table was full or the account id too long.");
		appendStringInfo(&buf, "datastreams_untracked_stream_changes_total " INT64_FORMAT "\n",
						 g.untracked_stream_changes);
		ds_prometheus_family(&buf, "datastreams_tracked_streams", "gauge",
			   "Streams with an entry in shared memory.");
		appendStringInfo(&buf, "datastreams_tracked_streams " INT64_FORMAT "\n",
						 g.tracked_streams);
		ds_prometheus_family(&buf, "datastreams_max_tracked_streams", "gauge",
			   "The datastreams.max_tracked_streams setting.");
		appendStringInfo(&buf, "datastreams_max_tracked_streams " INT64_FORMAT "\n",
						 g.max_tracked_streams);
		ds_prometheus_family(&buf, "datastreams_max_tracked_streams_per_account", "gauge",
			   "The datastreams.max_tracked_streams_per_account setting.");
		appendStringInfo(&buf, "datastreams_max_tracked_streams_per_account " INT64_FORMAT "\n",
						 g.max_tracked_streams_per_account);
		ds_prometheus_family(&buf, "datastreams_metrics_reset_time_seconds", "gauge",
			   "When the counters were last reset (server start or reset_metrics()), in seconds since the Unix epoch.");
		appendStringInfo(&buf, "datastreams_metrics_reset_time_seconds %.3f\n",
						 (double) (g.reset_at - SetEpochTimestamp()) / USECS_PER_SEC);
	}

	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
