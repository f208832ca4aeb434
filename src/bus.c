/*-------------------------------------------------------------------------
 *
 * bus.c
 *	  Which path announces a transaction's frames: the publisher, when this
 *	  database has one that keeps up (publisher.c), or the writer itself,
 *	  with NOTIFY at commit (notify.c).  Both send the same notifications.
 *
 * datastreams.notify_mode shows the path this session would take.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "bus.h"
#include "datastreams.h"
#include "notify.h"
#include "publisher.h"

static char *notify_mode = NULL;

/*
 * Before the commit: hand the frames to the publisher, or announce them
 * now (NOTIFY queues at commit; a rolled-back transaction sends nothing).
 * True when the publisher will announce them (and fold the stream state).
 */
bool
ds_bus_pre_commit(LedgerStream **streams, int count)
{
	int			i;

	if (!ds_relations()->before_1_2 && ds_publisher_reserve(streams, count))
		return true;
	if (ds_notify_queue_full())
	{
		ds_metrics_notifications_skipped(count);
		return false;
	}
	for (i = 0; i < count; i++)
		(void) ds_notify_range(&streams[i]->stream_id, streams[i]->t.first_sequence,
							   streams[i]->t.latest, streams[i]->t.count,
							   &streams[i]->t.last_id, streams[i]->t.last_status, SnapshotSelf);
	return false;
}

void
ds_bus_commit(LedgerStream **streams, int count)
{
	ds_publisher_hand_over(streams, count);
}

void
ds_bus_abort(void)
{
	ds_publisher_release();
}

static const char *
show_notify_mode(void)
{
	return ds_publisher_usable() ? "publisher" : "commit";
}

void
ds_bus_init(void)
{
	DefineCustomStringVariable("datastreams.notify_mode",
							   "Shows which path announces this session's frames: publisher or commit.",
							   "publisher when the library is preloaded and this database's publisher runs; otherwise writers notify at commit.",
							   &notify_mode,
							   "commit",
							   PGC_INTERNAL,
							   GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   NULL, NULL, show_notify_mode);
}
