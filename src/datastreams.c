/*-------------------------------------------------------------------------
 *
 * datastreams.c
 *	  Module entry point: settings and the start-up of each subsystem.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "utils/guc.h"

#include "datastreams.h"

PG_MODULE_MAGIC;

char	   *ds_account_id_setting = NULL;
int			ds_max_payload_bytes = 1024 * 1024;
int			ds_notify_payload = NOTIFY_PAYLOAD_FULL;
double		ds_notify_queue_limit = 0.9;
int			ds_notify_frames_per_statement = 100;

static const struct config_enum_entry notify_payload_options[] = {
	{"full", NOTIFY_PAYLOAD_FULL, false},
	{"ids", NOTIFY_PAYLOAD_IDS, false},
	{NULL, 0, false}
};

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomStringVariable("datastreams.account_id",
							   "Account the session acts for.",
							   "Honoured for trusted application roles and administrators; "
							   "a role bound to an account always acts for that account.",
							   &ds_account_id_setting,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("datastreams.max_payload_bytes",
							"Largest frame payload accepted, in bytes.",
							NULL,
							&ds_max_payload_bytes,
							1024 * 1024,
							0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("datastreams.notify_payload",
							 "What frame notifications carry: the frame (full) or only its identity (ids).",
							 "Any role may LISTEN on any channel; ids keeps payloads behind row-level security.",
							 &ds_notify_payload,
							 NOTIFY_PAYLOAD_FULL,
							 notify_payload_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("datastreams.notify_queue_limit",
							 "Notification queue usage above which frame notifications are skipped.",
							 "Skipping keeps ingestion running when listeners fall behind; consumers catch up with frames_since().",
							 &ds_notify_queue_limit,
							 0.9,
							 0.0, 1.0,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("datastreams.notify_frames_per_statement",
							"Frames of one stream a statement announces one by one.",
							"A statement writing more frames than this to a stream sends one batch notification for them instead.",
							&ds_notify_frames_per_statement,
							100,
							0, INT_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	ds_normalize_settings();
	ds_retention_init();
	ds_metrics_settings();		/* before the prefix is reserved */
	ds_notify_worker_init();
	MarkGUCPrefixReserved("datastreams");

	ds_relations_init();
	ds_tenancy_init();
	ds_stream_cache_init();
	ds_stream_state_init();
	ds_notify_init();
	ds_metrics_init();
}
