/*-------------------------------------------------------------------------
 *
 * notify.c
 *	  The delivery contract of the bus: what a notification on channel
 *	  datastreams_<stream id> says, and sending it at commit.
 *
 * Per stream and transaction, up to datastreams.notify_frames_per_statement
 * frames are announced one by one (their identity, or the whole frame with
 * notify_payload = full); beyond that one batch wake-up announces them all.
 * The notifications are built from the committed rows by whoever sends
 * them, the writer at commit or the publisher after it (publisher.c), with
 * the same code, so listeners cannot tell which sent them.  Only frames of
 * committed transactions are announced, never one rolled back (even to a
 * savepoint): they are read back from the table, where such frames are not.
 *
 * The bus never makes an insert fail: a payload over NOTIFY's limit is
 * announced without its payload ("truncated": true), and when the
 * notification queue is fuller than datastreams.notify_queue_limit the
 * notifications are skipped with one WARNING (listeners catch up with
 * frames_since()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "frame_rules.h"
#include "notify.h"

/* NOTIFY rejects payloads of 8000 bytes or more (async.c) */
#define MAX_NOTIFY_PAYLOAD 7999

#define NOTIFY_FRAMES_DEFAULT 100
#define NOTIFY_QUEUE_LIMIT_DEFAULT 0.9

typedef enum NotifyPayloadMode
{
	NOTIFY_PAYLOAD_FULL,
	NOTIFY_PAYLOAD_IDS
} NotifyPayloadMode;

static const struct config_enum_entry notify_payload_options[] = {
	{"full", NOTIFY_PAYLOAD_FULL, false},
	{"ids", NOTIFY_PAYLOAD_IDS, false},
	{NULL, 0, false}
};

static int	notify_payload = NOTIFY_PAYLOAD_IDS;
static int	notify_frames = NOTIFY_FRAMES_DEFAULT;
static double notify_queue_limit = NOTIFY_QUEUE_LIMIT_DEFAULT;

static void
channel_name(char *channel, const pg_uuid_t *stream_id)
{
	snprintf(channel, NAMEDATALEN, "datastreams_%s", ds_uuid_to_cstring(stream_id));
}

/*
 * Sequences are nanoseconds since 1970 by default, beyond the integers a
 * JavaScript number holds exactly, so each is also given as a string.
 */
static void
append_sequence(StringInfo buf, const char *key, int64 sequence)
{
	appendStringInfo(buf, "\"%s\": " INT64_FORMAT ", \"%s_text\": \"" INT64_FORMAT "\"",
					 key, sequence, key, sequence);
}

static char *
frame_notice(const pg_uuid_t *stream_id, TupleTableSlot *slot, const FrameColumns *c)
{
	StringInfoData buf;
	bool		isnull;
	int64		sequence = DatumGetInt64(slot_getattr(slot, c->sequence + 1, &isnull));
	Datum		status = slot_getattr(slot, c->status + 1, &isnull);
	int			head_len;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"id\": \"%s\", \"stream_id\": \"%s\", ",
					 ds_uuid_to_cstring(DatumGetUUIDP(slot_getattr(slot, c->id + 1, &isnull))),
					 ds_uuid_to_cstring(stream_id));
	append_sequence(&buf, "sequence", sequence);
	appendStringInfo(&buf, ", \"status\": \"%s\"", TextDatumGetCString(status));
	if (notify_payload == NOTIFY_PAYLOAD_IDS)
	{
		/* keep in step with identity_notice() */
		appendStringInfoChar(&buf, '}');
		return buf.data;
	}

	{
		char		timestamp[MAXDATELEN + 1];
		Jsonb	   *payload = DatumGetJsonbP(slot_getattr(slot, c->payload + 1, &isnull));
		const int	utc = 0;

		/* in UTC: the sender's TimeZone must not show (writer or publisher) */
		JsonEncodeDateTime(timestamp, slot_getattr(slot, c->created_at + 1, &isnull),
						   TIMESTAMPTZOID, &utc);
		appendStringInfo(&buf, ", \"latency_ms\": %d, \"created_at\": \"%s\"",
						 DatumGetInt32(slot_getattr(slot, c->latency_ms + 1, &isnull)), timestamp);
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
	}
	return buf.data;
}

static char *
batch_notice(const pg_uuid_t *stream_id, int64 first_sequence, int64 last_sequence,
			 int64 count)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"stream_id\": \"%s\", ", ds_uuid_to_cstring(stream_id));
	append_sequence(&buf, "sequence", last_sequence);
	appendStringInfoString(&buf, ", ");
	append_sequence(&buf, "first_sequence", first_sequence);
	appendStringInfo(&buf, ", \"count\": " INT64_FORMAT ", \"batch\": true}", count);
	return buf.data;
}

/* One wake-up for count frames of a stream */
void
ds_notify_batch(const pg_uuid_t *stream_id, int64 first_sequence, int64 last_sequence,
				int64 count)
{
	char		channel[NAMEDATALEN];

	channel_name(channel, stream_id);
	Async_Notify(channel, batch_notice(stream_id, first_sequence, last_sequence, count));
}

/* The identity of one frame, as frame_notice() says it with payload ids */
static char *
identity_notice(const pg_uuid_t *stream_id, const pg_uuid_t *frame_id, int64 sequence,
				FrameStatus status)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"id\": \"%s\", \"stream_id\": \"%s\", ",
					 ds_uuid_to_cstring(frame_id), ds_uuid_to_cstring(stream_id));
	append_sequence(&buf, "sequence", sequence);
	appendStringInfo(&buf, ", \"status\": \"%s\"}", frame_status_names[status]);
	return buf.data;
}

/*
 * Announce the frames first_sequence..last_sequence of a stream, count of
 * them, as the snapshot sees them.  The last one's id and status are known
 * already: a transaction's single frame, announced by identity, needs no
 * read (the common case of single-row writers).  Returns the
 * notifications queued.
 */
int64
ds_notify_range(const pg_uuid_t *stream_id, int64 first_sequence, int64 last_sequence,
				int64 count, const pg_uuid_t *last_id, FrameStatus last_status,
				Snapshot snapshot)
{
	const DsRelations *rels = ds_relations();
	char		channel[NAMEDATALEN];
	Relation	heap;
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData keys[3];
	TupleTableSlot *slot;
	const FrameColumns *c;
	int64		sent = 0;

	if (count > notify_frames)
	{
		ds_notify_batch(stream_id, first_sequence, last_sequence, count);
		return 1;
	}
	channel_name(channel, stream_id);
	if (count == 1 && notify_payload == NOTIFY_PAYLOAD_IDS)
	{
		Async_Notify(channel, identity_notice(stream_id, last_id, last_sequence, last_status));
		return 1;
	}

	heap = table_open(rels->frames, AccessShareLock);
	index = index_open(rels->frames_stream_sequence_index, AccessShareLock);
	c = ds_frame_columns(heap);
	slot = table_slot_create(heap, NULL);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(stream_id));
	ScanKeyInit(&keys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(first_sequence));
	ScanKeyInit(&keys[2], 2, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(last_sequence));
	scan = index_beginscan(heap, index, snapshot, 3, 0);
	index_rescan(scan, keys, 3, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		Async_Notify(channel, frame_notice(stream_id, slot, c));
		sent++;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	return sent;
}

/*
 * Is the notification queue too full to add to?  Says so once with a
 * WARNING and counts the skipped notification.
 */
bool
ds_notify_queue_full(void)
{
	double		usage = DatumGetFloat8(OidFunctionCall0(F_PG_NOTIFICATION_QUEUE_USAGE));

	if (usage < notify_queue_limit)
		return false;
	ereport(WARNING,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("datastreams notification queue is %.0f%% full; frames of this transaction are stored but not announced",
					usage * 100.0),
			 errdetail("The queue usage limit datastreams.notify_queue_limit is %g.",
					   notify_queue_limit),
			 errhint("Listeners recover skipped frames with datastreams.frames_since().")));
	return true;
}

void
ds_notify_init(void)
{
	DefineCustomEnumVariable("datastreams.notify_payload",
							 "Sets what frame notifications carry: the frame's identity (ids) or the whole frame (full).",
							 "Any role that can connect may LISTEN on any channel: full reveals payloads to roles that row-level security would not let read them.",
							 &notify_payload,
							 NOTIFY_PAYLOAD_IDS,
							 notify_payload_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("datastreams.notify_queue_limit",
							 "Sets the notification queue usage above which frame notifications are skipped.",
							 "Skipping keeps ingestion running when listeners fall behind; consumers catch up with frames_since().",
							 &notify_queue_limit,
							 NOTIFY_QUEUE_LIMIT_DEFAULT,
							 0.0, 1.0,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("datastreams.notify_frames_per_statement",
							"Sets how many frames of one stream a transaction announces one by one.",
							"A transaction writing more frames than this to a stream announces them with one batch notification.",
							&notify_frames,
							NOTIFY_FRAMES_DEFAULT,
							0, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
}
