/*-------------------------------------------------------------------------
 *
 * notify.c
 *	  Publishing frames with NOTIFY on channel datastreams_<stream id>.
 *
 * The bus must never make an insert fail.  Two things could: a payload
 * over NOTIFY's limit (the frame is then announced without its payload and
 * with "truncated": true), and a full notification queue at commit (when
 * the queue is fuller than datastreams.notify_queue_limit the transaction's
 * notifications are skipped with one WARNING; consumers recover the frames
 * with frames_since()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/json.h"

#include "datastreams.h"

/* NOTIFY rejects payloads of 8000 bytes or more (async.c) */
#define MAX_NOTIFY_PAYLOAD 7999

/* How often a long transaction looks at the queue again */
#define QUEUE_RECHECK_INTERVAL 1024

static bool queue_checked = false;
static bool skipping = false;
static uint32 since_check = 0;

static bool
queue_too_full(void)
{
	double		usage;

	if (queue_checked && since_check < QUEUE_RECHECK_INTERVAL)
		return skipping;
	if (skipping)
		return true;

	usage = DatumGetFloat8(OidFunctionCall0(F_PG_NOTIFICATION_QUEUE_USAGE));
	queue_checked = true;
	since_check = 0;
	if (usage >= ds_notify_queue_limit)
	{
		skipping = true;
		ereport(WARNING,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("datastreams notification queue is %.0f%% full; frames of this transaction are stored but not announced",
						usage * 100.0),
				 errdetail("The queue usage limit datastreams.notify_queue_limit is %g.",
						   ds_notify_queue_limit),
				 errhint("Listeners recover skipped frames with datastreams.frames_since().")));
	}
	return skipping;
}

static void
append_head(StringInfo buf, const char *id, const char *stream, int64 sequence,
			FrameStatus status)
{
	appendStringInfo(buf, "{\"id\": \"%s\", \"stream_id\": \"%s\", \"sequence\": " INT64_FORMAT ", \"status\": \"%s\"",
					 id, stream, sequence, frame_status_names[status]);
}

static char *
frame_notice(const pg_uuid_t *frame_id, const pg_uuid_t *stream_id,
			 int64 sequence, FrameStatus status, int32 latency_ms,
			 TimestampTz created_at, Jsonb *payload)
{
	StringInfoData buf;
	char		timestamp[MAXDATELEN + 1];
	int			head_len;

	initStringInfo(&buf);
	append_head(&buf, ds_uuid_to_cstring(frame_id), ds_uuid_to_cstring(stream_id),
				sequence, status);
	if (ds_notify_payload == NOTIFY_PAYLOAD_IDS)
	{
		appendStringInfoChar(&buf, '}');
		return buf.data;
	}

	JsonEncodeDateTime(timestamp, TimestampTzGetDatum(created_at), TIMESTAMPTZOID, NULL);
	appendStringInfo(&buf, ", \"latency_ms\": %d, \"created_at\": \"%s\"", latency_ms, timestamp);
	head_len = buf.len;

	appendStringInfoString(&buf, ", \"payload\": ");
	(void) JsonbToCString(&buf, &payload->root, VARSIZE(payload));
	appendStringInfoChar(&buf, '}');

	if (buf.len > MAX_NOTIFY_PAYLOAD)
	{
		buf.len = head_len;
		buf.data[buf.len] = '\0';
		appendStringInfoString(&buf, ", \"truncated\": true}");
	}
	return buf.data;
}

/*
 * Called for each frame.  The notices of a statement are kept until it
 * ends: a statement that writes few frames to a stream announces each of
 * them, one that writes more than datastreams.notify_frames_per_statement
 * announces them all at once, so bulk loads cost one notification per
 * stream instead of one per frame (and the memory held stays bounded).
 */
void
ds_notify_frame(StreamProgress *progress, const pg_uuid_t *frame_id,
				int64 sequence, FrameStatus status, int32 latency_ms,
				TimestampTz created_at, Jsonb *payload)
{
	MemoryContext old;

	if (progress->announced++ == 0)
		progress->first_sequence = sequence;
	if (progress->announced > ds_notify_frames_per_statement || ds_notify_worker_usable())
	{
		if (progress->notices != NIL)
		{
			list_free_deep(progress->notices);
			progress->notices = NIL;
		}
		return;
	}

	old = MemoryContextSwitchTo(TopTransactionContext);
	progress->notices = lappend(progress->notices,
								frame_notice(frame_id, &progress->stream_id, sequence,
											 status, latency_ms, created_at, payload));
	MemoryContextSwitchTo(old);
}

/*
 * At the end of the statement: send what the statement collected.
 */
void
ds_notify_flush(StreamProgress *progress)
{
	char		channel[NAMEDATALEN];
	char	   *stream;
	ListCell   *lc;

	if (progress->announced == 0)
		return;

	if (ds_notify_worker_usable())
		ds_notify_worker_defer(&progress->stream_id, progress->first_sequence,
							   progress->latest, progress->announced);
	else if (queue_too_full())
	{
		since_check++;
		ds_metrics_notification_skipped();
	}
	else
	{
		stream = ds_uuid_to_cstring(&progress->stream_id);
		snprintf(channel, sizeof(channel), "datastreams_%s", stream);

		if (progress->notices != NIL)
		{
			foreach(lc, progress->notices)
				Async_Notify(channel, (char *) lfirst(lc));
			since_check += list_length(progress->notices);
		}
		else
		{
			char	   *batch = psprintf("{\"stream_id\": \"%s\", \"sequence\": " INT64_FORMAT
										 ", \"first_sequence\": " INT64_FORMAT
										 ", \"count\": " INT64_FORMAT ", \"batch\": true}",
										 stream, progress->latest, progress->first_sequence,
										 progress->announced);

			Async_Notify(channel, batch);
			since_check++;
		}
	}

	if (progress->notices != NIL)
		list_free_deep(progress->notices);
	progress->notices = NIL;
	progress->announced = 0;
}

static void
notify_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			queue_checked = false;
			skipping = false;
			since_check = 0;
			break;
		default:
			break;
	}
}

void
ds_notify_init(void)
{
	RegisterXactCallback(notify_xact_callback, NULL);
}
