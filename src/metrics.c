/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  Live counters for operators, in shared memory.
 *
 * When the library is in shared_preload_libraries, a fixed-size area of
 * shared memory (sized by datastreams.max_tracked_streams) holds:
 *
 *	- per stream: frames per status and a latency histogram;
 *	- per account: streams created and updated;
 *	- globals: skipped notifications and the work that could not be
 *	  tracked because the tables were full.
 *
 * Only committed work counts.  What a transaction wrote is tallied in its
 * ledger (ledger.c, which also undoes what rolled-back subtransactions
 * wrote), and the ledger's commit calls ds_metrics_commit(), which adds
 * it to shared memory: once per stream and transaction.
 *
 * When the tables are full nothing is evicted: frames of streams that get
 * no entry are counted in datastreams_untracked_frames_total, stream
 * changes of accounts that get none in
 * datastreams_untracked_stream_changes_total.  reset_metrics() empties
 * the tables.  Counters live in memory only and restart from zero when
 * the server restarts.
 *
 * The stream table is shared by all tenants, so one account may take at
 * most datastreams.max_tracked_streams_per_account of its entries: a
 * tenant creating streams by the thousand cannot leave the others without
 * metrics.  The frames of an account's streams that got no entry are also
 * counted per account (datastreams_account_untracked_frames_total), so
 * each tenant sees what it is missing.
 *
 * On a hot standby nothing is committed, so nothing is counted: metrics()
 * says so with an error rather than show counters that look like a reset,
 * and stream_latency() returns no rows, as without preloading.
 *
 * Locking follows pg_stat_statements: the hash tables are protected by one
 * LWLock (shared to find entries and update them under the entry's
 * spinlock, exclusive to create or remove entries).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "datastreams.h"
#include "ledger.h"

#define MAX_TRACKED_STREAMS_DEFAULT 10000
#define MAX_TRACKED_STREAMS_PER_ACCOUNT_DEFAULT 1000

static int	max_tracked_streams = MAX_TRACKED_STREAMS_DEFAULT;
static int	max_tracked_streams_per_account = MAX_TRACKED_STREAMS_PER_ACCOUNT_DEFAULT;

/*
 * Shared memory
 */
typedef struct SharedState
{
	LWLock	   *lock;			/* protects the hash tables */
	slock_t		mutex;			/* protects the fields below */
	int64		notifications_skipped;
	int64		untracked_frames;
	int64		untracked_stream_changes;
	TimestampTz reset_at;
} SharedState;

/*
 * Accounts are per database: the same account id in two databases is two
 * tenants, and each database's metrics() shows only its own series.
 */
typedef struct AccountKey
{
	Oid			dbid;
	char		account_id[DS_ACCOUNT_KEY_LEN];
} AccountKey;

typedef struct SharedAccount
{
	AccountKey	key;			/* hash key */
	int64		streams;		/* its stream entries; under the exclusive lock */
	slock_t		mutex;
	int64		created;
	int64		updated;
	int64		untracked_frames;
} SharedAccount;

typedef struct StreamKey
{
	Oid			dbid;
	pg_uuid_t	stream_id;
} StreamKey;

typedef struct SharedStream
{
	StreamKey	key;			/* hash key */
	SharedAccount *account;		/* removed only together with this entry */
	slock_t		mutex;
	int64		frames[FRAME_STATUS_COUNT];
	int64		buckets[DS_LATENCY_BUCKETS + 1];
	int64		latency_sum_ms;
} SharedStream;

static SharedState *shared = NULL;
static HTAB *shared_streams = NULL;
static HTAB *shared_accounts = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * Shared memory set-up
 */
static Size
metrics_memsize(void)
{
	Size		size;

	size = MAXALIGN(sizeof(SharedState));
	size = add_size(size, hash_estimate_size(max_tracked_streams, sizeof(SharedStream)));
	size = add_size(size, hash_estimate_size(max_tracked_streams, sizeof(SharedAccount)));
	return size;
}

static void
metrics_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(metrics_memsize());
	RequestNamedLWLockTranche("datastreams", 1);
}

static void
metrics_shmem_startup(void)
{
	bool		found;
	HASHCTL		info;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("datastreams metrics", sizeof(SharedState), &found);
	if (!found)
	{
		shared->lock = &(GetNamedLWLockTranche("datastreams"))->lock;
		SpinLockInit(&shared->mutex);
		shared->notifications_skipped = 0;
		shared->untracked_frames = 0;
		shared->untracked_stream_changes = 0;
		shared->reset_at = GetCurrentTimestamp();
	}

	info.keysize = sizeof(StreamKey);
	info.entrysize = sizeof(SharedStream);
	shared_streams = ShmemInitHash("datastreams metrics streams",
								   max_tracked_streams, max_tracked_streams,
								   &info, HASH_ELEM | HASH_BLOBS);
	info.keysize = sizeof(AccountKey);
	info.entrysize = sizeof(SharedAccount);
	shared_accounts = ShmemInitHash("datastreams metrics accounts",
									max_tracked_streams, max_tracked_streams,
									&info, HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Shared entries.  The caller holds the lock exclusively.
 */
static void
account_key(const char *account_id, AccountKey *key)
{
	memset(key, 0, sizeof(AccountKey));
	key->dbid = MyDatabaseId;
	strlcpy(key->account_id, account_id, DS_ACCOUNT_KEY_LEN);
}

static SharedAccount *
enter_account(const char *account_id)
{
	SharedAccount *entry;
	AccountKey	key;
	bool		found;

	if (account_id == NULL || strlen(account_id) >= DS_ACCOUNT_KEY_LEN)
		return NULL;
	account_key(account_id, &key);
	entry = hash_search(shared_accounts, &key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;
	if (hash_get_num_entries(shared_accounts) >= max_tracked_streams)
		return NULL;
	entry = hash_search(shared_accounts, &key, HASH_ENTER_NULL, &found);
	if (entry != NULL && !found)
	{
		entry->streams = 0;
		SpinLockInit(&entry->mutex);
		entry->created = 0;
		entry->updated = 0;
		entry->untracked_frames = 0;
	}
	return entry;
}

/*
 * The stream's entry, created if there is room in the table and in the
 * account's share of it; NULL otherwise.  *account is set to the account's
 * entry when there is one, so that untracked frames can be counted there.
 */
static SharedStream *
enter_stream(const pg_uuid_t *stream_id, const char *account_id, SharedAccount **account)
{
	StreamKey	key;
	SharedStream *entry;
	bool		found;

	*account = NULL;
	memset(&key, 0, sizeof(key));
	key.dbid = MyDatabaseId;
	key.stream_id = *stream_id;
	entry = hash_search(shared_streams, &key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;
	*account = enter_account(account_id);
	if (*account == NULL ||
		(*account)->streams >= max_tracked_streams_per_account ||
		hash_get_num_entries(shared_streams) >= max_tracked_streams)
		return NULL;
	entry = hash_search(shared_streams, &key, HASH_ENTER_NULL, &found);
	if (entry != NULL && !found)
	{
		entry->account = *account;
		(*account)->streams++;
		SpinLockInit(&entry->mutex);
		memset(entry->frames, 0, sizeof(entry->frames));
		memset(entry->buckets, 0, sizeof(entry->buckets));
		entry->latency_sum_ms = 0;
	}
	return entry;
}

static void
add_stream(SharedStream *to, const StreamTally *from)
{
	int			i;

	SpinLockAcquire(&to->mutex);
	for (i = 0; i < FRAME_STATUS_COUNT; i++)
		to->frames[i] += from->frames[i];
	for (i = 0; i <= DS_LATENCY_BUCKETS; i++)
		to->buckets[i] += from->buckets[i];
	to->latency_sum_ms += from->latency_sum_ms;
	SpinLockRelease(&to->mutex);
}

static void
add_account(SharedAccount *to, const AccountTally *from)
{
	SpinLockAcquire(&to->mutex);
	to->created += from->created;
	to->updated += from->updated;
	SpinLockRelease(&to->mutex);
}

static void
add_globals(int64 skipped, int64 untracked_frames, int64 untracked_changes)
{
	if (skipped == 0 && untracked_frames == 0 && untracked_changes == 0)
		return;
	SpinLockAcquire(&shared->mutex);
	shared->notifications_skipped += skipped;
	shared->untracked_frames += untracked_frames;
	shared->untracked_stream_changes += untracked_changes;
	SpinLockRelease(&shared->mutex);
}

/*
 * At commit: add the transaction's ledger to shared memory.  The
 * transaction is already committed, so this must not fail: entries are
 * created with HASH_ENTER_NULL, and the ones that find no room are counted
 * as untracked.  Existing entries are updated under the shared lock; the
 * exclusive lock is taken only when an entry must be created.
 */
void
ds_metrics_commit(void)
{
	int			nstreams;
	int			naccounts;
	LedgerStream **streams;
	LedgerAccount **accounts;
	int64		untracked_frames = 0;
	int64		untracked_changes = ds_ledger_untracked_changes();
	bool		missing = false;
	int			i;
	int			j;

	if (shared == NULL)
		return;
	streams = ds_ledger_streams(&nstreams);
	accounts = ds_ledger_accounts(&naccounts);
	if (nstreams == 0 && naccounts == 0)
	{
		add_globals(0, 0, untracked_changes);
		return;
	}

	LWLockAcquire(shared->lock, LW_SHARED);
	for (i = 0; i < nstreams; i++)
	{
		StreamKey	key;
		SharedStream *entry;

		memset(&key, 0, sizeof(key));
		key.dbid = MyDatabaseId;
		key.stream_id = streams[i]->stream_id;
		if ((entry = hash_search(shared_streams, &key, HASH_FIND, NULL)) != NULL)
		{
			add_stream(entry, &streams[i]->t);
			streams[i] = NULL;
		}
		else
			missing = true;
	}
	for (i = 0; i < naccounts; i++)
	{
		AccountKey	key;
		SharedAccount *entry;

		account_key(accounts[i]->account_id, &key);
		if ((entry = hash_search(shared_accounts, &key, HASH_FIND, NULL)) != NULL)
		{
			add_account(entry, &accounts[i]->t);
			accounts[i] = NULL;
		}
		else
			missing = true;
	}
	LWLockRelease(shared->lock);

	if (missing)
	{
		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		for (i = 0; i < naccounts; i++)
		{
			SharedAccount *entry;

			if (accounts[i] == NULL)
				continue;
			if ((entry = enter_account(accounts[i]->account_id)) != NULL)
				add_account(entry, &accounts[i]->t);
			else
				untracked_changes += accounts[i]->t.created + accounts[i]->t.updated;
		}
		for (i = 0; i < nstreams; i++)
		{
			SharedStream *entry;
			SharedAccount *account;
			int64		frames = 0;

			if (streams[i] == NULL)
				continue;
			if ((entry = enter_stream(&streams[i]->stream_id, streams[i]->account_id, &account)) != NULL)
			{
				add_stream(entry, &streams[i]->t);
				continue;
			}
			for (j = 0; j < FRAME_STATUS_COUNT; j++)
				frames += streams[i]->t.frames[j];
			untracked_frames += frames;
			if (account != NULL)
			{
				SpinLockAcquire(&account->mutex);
				account->untracked_frames += frames;
				SpinLockRelease(&account->mutex);
			}
		}
		LWLockRelease(shared->lock);
	}
	add_globals(0, untracked_frames, untracked_changes);
}

/* Notifications skipped because the queue was too full */
void
ds_metrics_notifications_skipped(int64 count)
{
	if (shared != NULL)
		add_globals(count, 0, 0);
}

/*
 * The settings and shared memory of the metrics.  The shared memory
 * setting exists only when the library is preloaded (PostgreSQL refuses to
 * create such a setting later).
 */
void
ds_metrics_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomIntVariable("datastreams.max_tracked_streams",
							"Sets how many streams (and accounts) the shared memory metrics can track.",
							"When full, new streams are not tracked and their frames are counted in datastreams_untracked_frames_total.",
							&max_tracked_streams,
							MAX_TRACKED_STREAMS_DEFAULT,
							1, 10000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("datastreams.max_tracked_streams_per_account",
							"Sets how many of the tracked streams one account may take.",
							"Streams of an account that has this many tracked get no entry; their frames are counted in datastreams_account_untracked_frames_total.",
							&max_tracked_streams_per_account,
							MAX_TRACKED_STREAMS_PER_ACCOUNT_DEFAULT,
							1, 10000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = metrics_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = metrics_shmem_startup;
}

/*
 * Reading the counters
 */
bool
ds_metrics_available(void)
{
	return shared != NULL && !RecoveryInProgress();
}

void
ds_metrics_require(void)
{
	if (shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("datastreams metrics are not enabled"),
				 errdetail("The datastreams library was not loaded through shared_preload_libraries."),
				 errhint("Add datastreams to shared_preload_libraries in postgresql.conf and restart the server.")));
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("datastreams metrics are not collected on a standby"),
				 errdetail("Frames and stream changes are counted by the server that commits them, the primary."),
				 errhint("Read datastreams.metrics() on the primary; datastreams.stream_health works on a standby too.")));
}

/*
 * Whose series the current role may see: every series for administrators
 * and roles that bypass row-level security (they can read every stream's
 * frames anyway), else those of the account it acts for (NULL: none).
 */
const char *
ds_metrics_viewer(bool *all)
{
	*all = ds_is_admin() || ds_bypasses_rls();
	return *all ? NULL : ds_current_account();
}

static bool
visible(const AccountKey *entry, const char *account, bool all)
{
	if (entry->dbid != MyDatabaseId)
		return false;
	return all || (account != NULL && strcmp(entry->account_id, account) == 0);
}

static int
compare_streams(const void *a, const void *b)
{
	const DsStreamCounters *x = (const DsStreamCounters *) a;
	const DsStreamCounters *y = (const DsStreamCounters *) b;
	int			c = strcmp(x->account_id, y->account_id);

	return c != 0 ? c : memcmp(&x->stream_id, &y->stream_id, sizeof(pg_uuid_t));
}

static int
compare_accounts(const void *a, const void *b)
{
	return strcmp(((const DsAccountCounters *) a)->account_id,
				  ((const DsAccountCounters *) b)->account_id);
}

/*
 * Copies of the visible stream entries, sorted by account and stream.
 */
DsStreamCounters *
ds_metrics_streams(const char *account, bool all, int *count)
{
	DsStreamCounters *result;
	HASH_SEQ_STATUS seq;
	SharedStream *entry;
	int			n = 0;

	ds_metrics_require();
	LWLockAcquire(shared->lock, LW_SHARED);
	result = palloc(sizeof(DsStreamCounters) * Max(hash_get_num_entries(shared_streams), 1));
	hash_seq_init(&seq, shared_streams);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		DsStreamCounters *c;

		if (!visible(&entry->account->key, account, all))
			continue;
		c = &result[n++];
		memcpy(&c->stream_id, &entry->key.stream_id, sizeof(pg_uuid_t));
		strlcpy(c->account_id, entry->account->key.account_id, DS_ACCOUNT_KEY_LEN);
		SpinLockAcquire(&entry->mutex);
		memcpy(c->frames, entry->frames, sizeof(c->frames));
		memcpy(c->buckets, entry->buckets, sizeof(c->buckets));
		c->latency_sum_ms = entry->latency_sum_ms;
		SpinLockRelease(&entry->mutex);
	}
	LWLockRelease(shared->lock);

	qsort(result, n, sizeof(DsStreamCounters), compare_streams);
	*count = n;
	return result;
}

/*
 * Copies of the visible account entries, sorted by account.
 */
DsAccountCounters *
ds_metrics_accounts(const char *account, bool all, int *count)
{
	DsAccountCounters *result;
	HASH_SEQ_STATUS seq;
	SharedAccount *entry;
	int			n = 0;

	ds_metrics_require();
	LWLockAcquire(shared->lock, LW_SHARED);
	result = palloc(sizeof(DsAccountCounters) * Max(hash_get_num_entries(shared_accounts), 1));
	hash_seq_init(&seq, shared_accounts);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		DsAccountCounters *c;

		if (!visible(&entry->key, account, all))
			continue;
		c = &result[n++];
		strlcpy(c->account_id, entry->key.account_id, DS_ACCOUNT_KEY_LEN);
		c->tracked_streams = entry->streams;
		SpinLockAcquire(&entry->mutex);
		c->created = entry->created;
		c->updated = entry->updated;
		c->untracked_frames = entry->untracked_frames;
		SpinLockRelease(&entry->mutex);
	}
	LWLockRelease(shared->lock);

	qsort(result, n, sizeof(DsAccountCounters), compare_accounts);
	*count = n;
	return result;
}

void
ds_metrics_globals(DsGlobalCounters *out)
{
	ds_metrics_require();
	LWLockAcquire(shared->lock, LW_SHARED);
	out->tracked_streams = hash_get_num_entries(shared_streams);
	LWLockRelease(shared->lock);
	out->max_tracked_streams = max_tracked_streams;
	out->max_tracked_streams_per_account = max_tracked_streams_per_account;
	SpinLockAcquire(&shared->mutex);
	out->notifications_skipped = shared->notifications_skipped;
	out->untracked_frames = shared->untracked_frames;
	out->untracked_stream_changes = shared->untracked_stream_changes;
	out->reset_at = shared->reset_at;
	SpinLockRelease(&shared->mutex);
}

/*
 * datastreams.reset_metrics(): empty the tables and zero the counters
 * (administrators).
 */
PG_FUNCTION_INFO_V1(datastreams_reset_metrics);
Datum
datastreams_reset_metrics(PG_FUNCTION_ARGS)
{
	HASH_SEQ_STATUS seq;
	SharedStream *stream;
	SharedAccount *account;

	ds_metrics_require();
	if (!ds_is_admin())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied: only datastreams administrators may reset metrics"),
				 errhint("Administrators are superusers and members of the extension's owner role.")));

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, shared_streams);
	while ((stream = hash_seq_search(&seq)) != NULL)
		(void) hash_search(shared_streams, &stream->key, HASH_REMOVE, NULL);
	hash_seq_init(&seq, shared_accounts);
	while ((account = hash_seq_search(&seq)) != NULL)
		(void) hash_search(shared_accounts, &account->key, HASH_REMOVE, NULL);
	SpinLockAcquire(&shared->mutex);
	shared->notifications_skipped = 0;
	shared->untracked_frames = 0;
	shared->untracked_stream_changes = 0;
	shared->reset_at = GetCurrentTimestamp();
	SpinLockRelease(&shared->mutex);
	LWLockRelease(shared->lock);

	PG_RETURN_VOID();
}
