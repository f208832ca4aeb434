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
#include "nodes/pg_list.h"
#include "storage/lock.h"
#include "utils/jsonb.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* Settings (datastreams.c) */
extern char *ds_account_id_setting;
extern int	ds_max_payload_bytes;
extern int	ds_notify_payload;
extern double ds_notify_queue_limit;
extern int	ds_notify_frames_per_statement;

typedef enum NotifyPayloadMode
{
	NOTIFY_PAYLOAD_FULL,
	NOTIFY_PAYLOAD_IDS
} NotifyPayloadMode;

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
} DsRelations;

extern const DsRelations *ds_relations(void);
extern void ds_relations_init(void);
extern Snapshot ds_cache_snapshot(void);
extern bool ds_is_extension_relation(Oid relid);
extern int	ds_column_index(TupleDesc desc, const char *table, const char *name,
							bool required);

/* normalize.c: text and metadata normalisation shared by the triggers */
extern char *ds_trim(const char *s);
extern bool ds_is_blank(const char *s);
extern Jsonb *ds_normalize_metadata(Jsonb *metadata);
extern char *ds_clip_for_message(const char *s);
extern char *ds_status_word(const char *s);
extern void ds_normalize_settings(void);

/* tenancy.c */
extern char *ds_current_account(void);
extern char *ds_require_account(void);
extern bool ds_is_admin(void);
extern bool ds_bypasses_rls(void);
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
extern void ds_stream_cache_init(void);

/* stream_state.c: per-transaction sequence tracking and the latest pointer */
typedef struct StreamProgress
{
	pg_uuid_t	stream_id;		/* hash key */
	bool		valid;			/* belongs to the current transaction */
	char	   *account_id;
	bool		locked;			/* holds the stream lock in this transaction */
	bool		latest_known;
	int64		latest;			/* highest sequence, when latest_known */
	bool		touched;		/* the statement wrote frames to the stream */
	int64		counts[FRAME_STATUS_COUNT];
	int64		latency_total;
	/* notifications of the current statement (notify.c) */
	int64		announced;		/* frames written by the statement */
	int64		first_sequence;
	List	   *notices;		/* per-frame payloads, at most the limit */
} StreamProgress;

extern StreamProgress *ds_progress_for(const pg_uuid_t *stream_id,
									   const char *account_id);
extern int64 ds_progress_latest(StreamProgress *progress);
extern void ds_progress_record(StreamProgress *progress, int64 sequence,
							   FrameStatus status, int32 latency_ms);
extern void ds_progress_flush(void);
extern void ds_stream_locktag(LOCKTAG *tag, const pg_uuid_t *stream_id,
							  uint16 lock_class);
extern void ds_stream_state_init(void);

/* ingest.c: which element of an ingest() batch the frames trigger is on */
extern int64 ds_ingest_element;

/* api.c: errors of our SPI statements without the statement as context */
extern void ds_strip_internal_query(ErrorData *edata, const char *query);

/* notify.c */
extern void ds_notify_frame(StreamProgress *progress, const pg_uuid_t *frame_id,
							int64 sequence, FrameStatus status, int32 latency_ms,
							TimestampTz created_at, Jsonb *payload);
extern void ds_notify_flush(StreamProgress *progress);

/* notify_worker.c */
extern bool ds_notify_via_worker;
extern bool ds_notify_worker_usable(void);
extern void ds_notify_worker_defer(const pg_uuid_t *stream_id, int64 first_sequence,
								   int64 last_sequence, int64 count);
extern void ds_notify_worker_init(void);
extern void ds_notify_init(void);

/* metrics.c */
extern void ds_metrics_stream_created(const pg_uuid_t *stream_id,
									  const char *account_id);
extern void ds_metrics_stream_updated(const pg_uuid_t *stream_id,
									  const char *account_id);
extern void ds_metrics_frame(const pg_uuid_t *stream_id, FrameStatus status,
							 int32 latency_ms);
extern void ds_metrics_notification_skipped(void);
extern void ds_metrics_init(void);
extern void ds_metrics_settings(void);

/* metrics.c: copies of the shared counters, for metrics() and stream_latency() */
#define DS_LATENCY_BUCKETS 15	/* finite bucket bounds; one more bucket is +Inf */
#define DS_ACCOUNT_KEY_LEN 256	/* longest tracked account id, in bytes, + 1 */

extern const int32 ds_latency_bounds_ms[DS_LATENCY_BUCKETS];

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
extern void ds_health_settings(void);

/* logs.c: structured server log lines */
extern void ds_log_settings(void);
extern int	ds_log_stream_changes_level(void);
extern void ds_log_stream_change(int elevel, const char *change,
								 const pg_uuid_t *stream_id, const char *account_id);
extern void ds_log_rejected_frame(const pg_uuid_t *stream_id, const char *reason);

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

/* retention.c, prune_worker.c: retention settings, prune() and its worker */
extern char *ds_default_retention_setting;
extern int	ds_prune_batch_size;
extern int	ds_prune_interval;
extern char *ds_prune_database;
extern char *ds_prune_role;
extern void ds_retention_init(void);
extern void ds_prune_worker_init(void);

/* Helpers */
extern char *ds_uuid_to_cstring(const pg_uuid_t *uuid);

#endif							/* DATASTREAMS_H */
