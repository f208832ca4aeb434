/*-------------------------------------------------------------------------
 *
 * module.c
 *	  The module's entry point: each subsystem defines its settings and
 *	  hooks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "bus.h"
#include "notify.h"
#include "publisher.h"
#include "datastreams.h"
#include "frame_rules.h"
#include "ledger.h"
#include "stream_state.h"
#include "workers.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	ds_tenancy_init();
	ds_frame_rules_init();
	ds_normalize_init();
	ds_stream_state_init();
	ds_ledger_init();
	ds_commit_init();
	ds_notify_init();
	ds_bus_init();
	ds_publisher_init();
	ds_metrics_init();
	ds_health_init();
	ds_consumers_init();
	ds_logs_init();
	ds_retention_init();
	ds_prune_worker_init();
	ds_database_slots_init();
	ds_launcher_init();
	ds_routing_init();
	MarkGUCPrefixReserved("datastreams");

	ds_relations_init();
	ds_stream_cache_init();
}
