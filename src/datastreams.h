/*-------------------------------------------------------------------------
 *
 * datastreams.h
 *	  Declarations shared by the datastreams extension's C files.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DATASTREAMS_H
#define DATASTREAMS_H

#include "access/tupdesc.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "storage/lock.h"
#include "utils/jsonb.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* Stream and frame statuses, as stored */
typedef enum StreamStatus
{
	STREAM_INACTIVE,
	STREAM_ACTIVE,
	STREAM_PAUSED
} StreamStatus;

typedef enum FrameStatus
{
	FRAME_OK,
	FRAME_LATE,
	FRAME_ERROR,
	FRAME_STATUS_COUNT
} FrameStatus;

extern const char *const frame_status_names[FRAME_STATUS_COUNT];

/* ids.c */
extern void ds_generate_uuid_v4(pg_uuid_t *out);
extern void ds_generate_uuid_v7(pg_uuid_t *out);

/* routing.c: the routing hash of sharded deployments */
extern void ds_generate_stream_id(pg_uuid_t *out);
extern void ds_routing_init(void);

/* relations.c: the extension's tables and indexes, looked up once */
typedef struct DsRelations
{
	Oid			namespace;
	Oid			accounts;
	Oid			accounts_pkey;
	Oid			accounts_role_index;
	Oid			trusted_roles;
	Oid			streams;
	Oid			streams_pkey;
	Oid			frames;
	Oid			frames_stream_sequence_index;
	Oid			stream_state;
	Oid			stream_state_pkey;
	bool		before_1_2;		/* the SQL is older than the library's 1.2 */
} DsRelations;

extern const DsRelations *ds_relations(void);
extern void ds_relations_init(void);
extern Snapshot ds_cache_snapshot(void);
extern struct _SPI_plan *ds_prepare_kept(const char *query, int nargs, Oid *argtypes);
extern bool ds_is_extension_relation(Oid relid);
extern int	ds_column_index(TupleDesc desc, const char *table, const char *name,
							bool required);

/* normalize.c: text and metadata normalisation shared by the triggers */
extern char *ds_trim(const char *s);
extern bool ds_is_blank(const char *s);
extern Jsonb *ds_normalize_metadata(Jsonb *metadata);
extern char *ds_clip_for_message(const char *s);
extern char *ds_status_word(const char *s);
extern void ds_normalize_init(void);

/* tenancy.c */
extern char *ds_current_account(void);
extern char *ds_require_account(void);
extern bool ds_is_admin(void);
extern bool ds_bypasses_rls(void);
extern void ds_become_superuser(Oid *save_userid, int *save_sec_context);
extern void ds_restore_user(Oid save_userid, int save_sec_context);
extern void ds_tenancy_init(void);

/* stream_cache.c: per-backend cache of the stream columns frames depend on */
typedef struct CachedStream
{
	pg_uuid_t	id;				/* hash key */
	char	   *account_id;
	StreamStatus status;
	int32		sla_ms;
} CachedStream;

extern CachedStream *ds_lookup_stream(const pg_uuid_t *stream_id);
extern void ds_stream_changed(const pg_uuid_t *stream_id);
extern void ds_stream_cache_init(void);

/* api.c: errors of our SPI statements without the statement as context */
extern void ds_strip_internal_query(ErrorData *edata, const char *query);

/* latency_buckets.c: the latency histogram's buckets */
#define DS_LATENCY_BUCKETS 15	/* finite bucket bounds; one more bucket is +Inf */

extern const int32 ds_latency_bounds_ms[DS_LATENCY_BUCKETS];
extern int	ds_latency_bucket(int32 latency_ms);

/* metrics.c */
extern void ds_metrics_commit(void);
extern void ds_metrics_notifications_skipped(int64 count);
extern void ds_metrics_init(void);

/* metrics.c: copies of the shared counters, for metrics() and stream_latency() */
#define DS_ACCOUNT_KEY_LEN 256	/* longest tracked account id, in bytes, + 1 */

typedef struct DsStreamCounters
{
	pg_uuid_t	stream_id;
	char		account_id[DS_ACCOUNT_KEY_LEN];
	int64		frames[FRAME_STATUS_COUNT];
	int64		buckets[DS_LATENCY_BUCKETS + 1];	/* per bucket, not cumulative */
	int64		latency_sum_ms;
} DsStreamCounters;

typedef struct DsAccountCounters
{
	char		account_id[DS_ACCOUNT_KEY_LEN];
	int64		created;
	int64		updated;
	int64		tracked_streams;
	int64		untracked_frames;	/* of its streams that got no entry */
} DsAccountCounters;

typedef struct DsGlobalCounters
{
	int64		notifications_skipped;
	int64		untracked_frames;
	int64		untracked_stream_changes;
	int64		tracked_streams;
	int64		max_tracked_streams;
	int64		max_tracked_streams_per_account;
	TimestampTz reset_at;
} DsGlobalCounters;

extern void ds_metrics_require(void);
extern bool ds_metrics_available(void);
extern const char *ds_metrics_viewer(bool *all);
extern DsStreamCounters *ds_metrics_streams(const char *account, bool all, int *count);
extern DsAccountCounters *ds_metrics_accounts(const char *account, bool all, int *count);
extern void ds_metrics_globals(DsGlobalCounters *out);

/* health.c */
extern double ds_latency_quantile(const int64 *buckets, double q, bool *isnull);
extern void ds_health_init(void);

/* exposition.c: the Prometheus text format, for metrics() and the consumers */
extern void ds_prometheus_family(StringInfo buf, const char *name, const char *type,
								 const char *help);
extern void ds_prometheus_label(StringInfo buf, const char *name, const char *value,
								bool first);

/* consumers.c: the consumer lag setting and series */
extern void ds_consumers_init(void);
extern void ds_consumer_metrics(StringInfo buf, const char *account, bool all);

/* logs.c: structured server log lines */
extern void ds_log_changes(void);
extern void ds_log_rejected_frame(const pg_uuid_t *stream_id, const char *reason);
extern void ds_logs_init(void);

/*
 * For the frames trigger: log the rejection (datastreams.log_rejected_frames),
 * then raise the error; reason is a short token such as "stream_paused".
 * ds_reject_frame(&stream_id, "stream_paused", (errcode(...), errmsg(...)));
 */
#define ds_reject_frame(stream_id, reason, rest) \
	do { \
		ds_log_rejected_frame((stream_id), (reason)); \
		ereport(ERROR, rest); \
		pg_unreachable(); \
	} while (0)

/* retention.c, prune_worker.c: prune() and its per-database worker */
extern int	ds_prune_batch_size(void);
extern void ds_retention_init(void);
extern void ds_prune_worker_init(void);

/* Helpers */
extern char *ds_uuid_to_cstring(const pg_uuid_t *uuid);

#endif							/* DATASTREAMS_H */
