/*-------------------------------------------------------------------------
 *
 * ledger.h
 *	  What a transaction accumulates for the bus, the stream state and the
 *	  metrics, and the order in which it is handed on.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DS_LEDGER_H
#define DS_LEDGER_H

#include "datastreams.h"

/*
 * The part of a stream's entry that a rolled-back subtransaction restores.
 * saved_at must stay the first field (see ledger.c).
 */
typedef struct StreamTally
{
	SubTransactionId saved_at;
	bool		locked;			/* the stream lock is held */
	bool		latest_known;
	int64		latest;			/* highest sequence, when latest_known */
	int64		latest_before;	/* the latest sequence before this transaction */
	int64		count;			/* frames this transaction wrote */
	int64		first_sequence; /* the first of them */
	pg_uuid_t	last_id;		/* the last of them */
	TimestampTz last_created_at;
	FrameStatus last_status;
	int64		frames[FRAME_STATUS_COUNT];
	int64		buckets[DS_LATENCY_BUCKETS + 1];	/* per bucket, not cumulative */
	int64		latency_sum_ms;
} StreamTally;

typedef struct LedgerStream
{
	pg_uuid_t	stream_id;		/* hash key */
	bool		in_use;			/* entered by the current transaction */
	char	   *account_id;
	int64		seen_latest;	/* the latest sequence an earlier
								 * transaction knew, 0 for none: a guess */
	StreamTally t;
} LedgerStream;

/* Per account: streams created and updated (metrics) */
typedef struct AccountTally
{
	SubTransactionId saved_at;
	int64		created;
	int64		updated;
} AccountTally;

typedef struct LedgerAccount
{
	char		account_id[DS_ACCOUNT_KEY_LEN]; /* hash key */
	AccountTally t;
} LedgerAccount;

/* A stream change to log at commit */
typedef struct LedgerChange
{
	pg_uuid_t	stream_id;
	char	   *account_id;
	bool		created;
} LedgerChange;

extern LedgerStream *ds_ledger_stream(const pg_uuid_t *stream_id, const char *account_id,
									   bool *locked_now);
extern int64 ds_ledger_latest(LedgerStream *entry);
extern void ds_ledger_record_frame(LedgerStream *entry, const pg_uuid_t *frame_id,
								   int64 sequence, FrameStatus status, int32 latency_ms,
								   TimestampTz created_at);
extern void ds_ledger_stream_changed(const pg_uuid_t *stream_id, const char *account_id,
									 bool created);

/* For the consumers called at commit */
extern LedgerStream **ds_ledger_streams(int *count);
extern LedgerAccount **ds_ledger_accounts(int *count);
extern LedgerChange *ds_ledger_changes(int *count, int64 *not_listed);
extern int64 ds_ledger_untracked_changes(void);
extern bool ds_ledger_in_use(void);
extern void ds_ledger_reset(void);

extern void ds_ledger_init(void);

/* commit.c: hands the ledger on when its transaction ends */
extern void ds_commit_init(void);

#endif							/* DS_LEDGER_H */
