/*-------------------------------------------------------------------------
 *
 * ledger.c
 *	  The one owner of what a transaction accumulates: per stream the lock
 *	  held, the latest sequence and the tallies of the frames written; per
 *	  account the streams created and updated; the stream changes to log.
 *
 * Everything here is handed on only when the transaction's outcome is
 * known, in one fixed order, by commit.c:
 *
 *	PRE_COMMIT	the bus chooses its path (publisher or NOTIFY at commit) and
 *				queues what it must before the commit; the stream state is
 *				folded when no publisher will do it
 *	COMMIT		the publisher hand-over, then the metrics, then the log lines
 *	PREPARE		refused for a transaction that wrote frames: they are
 *				announced when their transaction commits, and a prepared
 *				transaction commits in another session
 *	ABORT		everything is forgotten
 *
 * One rule for subtransactions: the first time a subtransaction changes an
 * entry, the entry's tally is copied to an undo stack.  Rolling the
 * subtransaction back copies it back (the stream lock it took is released
 * by PostgreSQL at the same moment, and the restored tally says so);
 * committing it hands the copy to the parent unless the parent has one of
 * its own.  Transactions without savepoints never copy anything.
 *
 * The stream table outlives transactions so that single-frame
 * transactions do not build a hash table each time, and so that the next
 * transaction's read of a stream's latest sequence starts from the one
 * this backend saw last (a guess, checked by the read); it is rebuilt when
 * a transaction has made it large.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "ledger.h"
#include "stream_state.h"

#define LEDGER_KEEP_ENTRIES 64

/* Stream changes listed one by one for the log; more are only counted */
#define MAX_LISTED_CHANGES 10000

typedef struct UndoRecord
{
	SubTransactionId subid;
	void	   *target;
	Size		size;
	char		copy[FLEXIBLE_ARRAY_MEMBER];	/* starts with saved_at */
} UndoRecord;

typedef struct ChangesTally
{
	SubTransactionId saved_at;
	int			listed;
	int64		not_listed;
	int64		untracked;		/* of accounts too long for the metrics' keys */
} ChangesTally;

static MemoryContext ledger_context = NULL;
static HTAB *streams = NULL;
static HTAB *accounts = NULL;	/* in TopTransactionContext */
static bool ledger_used = false;
static int	streams_in_use = 0;

static LedgerChange *changes = NULL;	/* in TopTransactionContext */

static int	changes_allocated = 0;
static ChangesTally changes_tally;

/* The undo stack, innermost subtransaction on top, in TopTransactionContext */
static UndoRecord **undo = NULL;
static int	undo_depth = 0;
static int	undo_allocated = 0;

/*
 * Before a change to a tally: keep a copy for the current subtransaction
 * if it has none yet.  saved_at is the first field of every tally.
 */
static void
remember(void *tally, Size size)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	SubTransactionId *saved_at = (SubTransactionId *) tally;
	UndoRecord *record;
	MemoryContext old;

	if (subid == TopSubTransactionId || *saved_at == subid)
		return;
	old = MemoryContextSwitchTo(TopTransactionContext);
	if (undo_depth == undo_allocated)
	{
		undo_allocated = Max(16, undo_allocated * 2);
		undo = undo ? repalloc(undo, undo_allocated * sizeof(UndoRecord *)) :
			palloc(undo_allocated * sizeof(UndoRecord *));
	}
	record = palloc(offsetof(UndoRecord, copy) + size);
	record->subid = subid;
	record->target = tally;
	record->size = size;
	memcpy(record->copy, tally, size);
	undo[undo_depth++] = record;
	MemoryContextSwitchTo(old);
	*saved_at = subid;
}

static void
ledger_begin(void)
{
	if (ledger_used)
		return;
	ledger_used = true;
	memset(&changes_tally, 0, sizeof(changes_tally));
}

/*
 * The transaction's entry for a stream, with the stream lock held.
 * *locked_now tells whether the lock was taken by this call.
 */
LedgerStream *
ds_ledger_stream(const pg_uuid_t *stream_id, const char *account_id, bool *locked_now)
{
	LedgerStream *entry;
	bool		found;

	if (streams == NULL)
	{
		HASHCTL		ctl;

		if (ledger_context == NULL)
			ledger_context = AllocSetContextCreate(TopMemoryContext,
												   "datastreams ledger",
												   ALLOCSET_SMALL_SIZES);
		ctl.keysize = sizeof(pg_uuid_t);
		ctl.entrysize = sizeof(LedgerStream);
		ctl.hcxt = ledger_context;
		streams = hash_create("datastreams ledger streams", 16, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	ledger_begin();

	entry = hash_search(streams, stream_id, HASH_ENTER, &found);
	if (!found || !entry->in_use)
	{
		if (found && entry->account_id)
			pfree(entry->account_id);
		entry->seen_latest = found && entry->t.latest_known ? entry->t.latest : 0;
		entry->in_use = true;
		entry->account_id = MemoryContextStrdup(ledger_context, account_id);
		memset(&entry->t, 0, sizeof(StreamTally));
		streams_in_use++;
	}
	*locked_now = false;
	if (!entry->t.locked)
	{
		remember(&entry->t, sizeof(StreamTally));
		ds_lock_stream(stream_id, streams_in_use);
		entry->t.locked = true;
		*locked_now = true;
	}
	return entry;
}

/*
 * The highest sequence the stream has, 0 when it has none.  Read once per
 * transaction (and again after a rollback to a savepoint): with the stream
 * lock held nobody else adds frames, so memory stays right afterwards.
 */
int64
ds_ledger_latest(LedgerStream *entry)
{
	if (!entry->t.latest_known)
	{
		remember(&entry->t, sizeof(StreamTally));
		entry->t.latest = ds_read_latest_sequence(&entry->stream_id, entry->seen_latest);
		entry->t.latest_known = true;
		if (entry->t.count == 0)
			entry->t.latest_before = entry->t.latest;
	}
	return entry->t.latest;
}

void
ds_ledger_record_frame(LedgerStream *entry, const pg_uuid_t *frame_id, int64 sequence,
					   FrameStatus status, int32 latency_ms, TimestampTz created_at)
{
	StreamTally *t = &entry->t;

	remember(t, sizeof(StreamTally));
	if (t->count++ == 0)
		t->first_sequence = sequence;
	memcpy(&t->last_id, frame_id, sizeof(pg_uuid_t));
	t->last_created_at = created_at;
	t->last_status = status;
	t->latest = sequence;
	t->latest_known = true;
	t->frames[status]++;
	t->buckets[ds_latency_bucket(latency_ms)]++;
	t->latency_sum_ms += latency_ms;
}

void
ds_ledger_stream_changed(const pg_uuid_t *stream_id, const char *account_id,
						 bool created)
{
	LedgerAccount *entry;
	bool		found;

	ledger_begin();
	if (accounts == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = DS_ACCOUNT_KEY_LEN;
		ctl.entrysize = sizeof(LedgerAccount);
		ctl.hcxt = TopTransactionContext;
		accounts = hash_create("datastreams ledger accounts", 4, &ctl,
							   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	remember(&changes_tally, sizeof(ChangesTally));
	if (strlen(account_id) >= DS_ACCOUNT_KEY_LEN)
		changes_tally.untracked++;
	else
	{
		entry = hash_search(accounts, account_id, HASH_ENTER, &found);
		if (!found)
			memset(&entry->t, 0, sizeof(AccountTally));
		remember(&entry->t, sizeof(AccountTally));
		if (created)
			entry->t.created++;
		else
			entry->t.updated++;
	}

	if (changes_tally.listed >= MAX_LISTED_CHANGES)
	{
		changes_tally.not_listed++;
		return;
	}
	if (changes_tally.listed >= changes_allocated)
	{
		int			n = Max(16, changes_allocated * 2);

		if (changes == NULL)
			changes = MemoryContextAlloc(TopTransactionContext, n * sizeof(LedgerChange));
		else
			changes = repalloc(changes, n * sizeof(LedgerChange));
		changes_allocated = n;
	}
	memcpy(&changes[changes_tally.listed].stream_id, stream_id, sizeof(pg_uuid_t));
	changes[changes_tally.listed].account_id = MemoryContextStrdup(TopTransactionContext, account_id);
	changes[changes_tally.listed].created = created;
	changes_tally.listed++;
}

/*
 * The streams the transaction wrote frames to, in an array that lasts as
 * long as the transaction.
 */
LedgerStream **
ds_ledger_streams(int *count)
{
	LedgerStream **result;
	LedgerStream *entry;
	HASH_SEQ_STATUS seq;
	int			n = 0;

	*count = 0;
	if (!ledger_used || streams == NULL)
		return NULL;
	result = MemoryContextAlloc(TopTransactionContext,
								sizeof(LedgerStream *) * Max(streams_in_use, 1));
	hash_seq_init(&seq, streams);
	while ((entry = hash_seq_search(&seq)) != NULL)
		if (entry->in_use && entry->t.count > 0)
			result[n++] = entry;
	*count = n;
	return result;
}

LedgerAccount **
ds_ledger_accounts(int *count)
{
	LedgerAccount **result;
	LedgerAccount *entry;
	HASH_SEQ_STATUS seq;
	int			n = 0;

	*count = 0;
	if (!ledger_used || accounts == NULL)
		return NULL;
	result = palloc(sizeof(LedgerAccount *) * hash_get_num_entries(accounts));
	hash_seq_init(&seq, accounts);
	while ((entry = hash_seq_search(&seq)) != NULL)
		if (entry->t.created + entry->t.updated > 0)
			result[n++] = entry;
	*count = n;
	return result;
}

/* Stream changes of accounts whose ids are too long to be tracked */
int64
ds_ledger_untracked_changes(void)
{
	return ledger_used ? changes_tally.untracked : 0;
}

LedgerChange *
ds_ledger_changes(int *count, int64 *not_listed)
{
	*count = ledger_used ? changes_tally.listed : 0;
	*not_listed = ledger_used ? changes_tally.not_listed : 0;
	return changes;
}

/* Did the current transaction record anything? */
bool
ds_ledger_in_use(void)
{
	return ledger_used;
}

/* Forget the transaction that ended (commit.c calls this last) */
void
ds_ledger_reset(void)
{
	HASH_SEQ_STATUS seq;
	LedgerStream *entry;

	/* the rest lived in TopTransactionContext */
	undo = NULL;
	undo_depth = undo_allocated = 0;
	accounts = NULL;
	changes = NULL;
	changes_allocated = 0;
	if (!ledger_used)
		return;
	ledger_used = false;
	streams_in_use = 0;
	if (streams == NULL)
		return;
	if (hash_get_num_entries(streams) > LEDGER_KEEP_ENTRIES)
	{
		MemoryContextReset(ledger_context);
		streams = NULL;
		return;
	}
	hash_seq_init(&seq, streams);
	while ((entry = hash_seq_search(&seq)) != NULL)
		entry->in_use = false;
}

static void
ledger_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	int			base = undo_depth;
	int			kept;
	int			i;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;

	/* the ending level's records are on top: inner levels settled theirs */
	while (base > 0 && undo[base - 1]->subid == mySubid)
		base--;

	kept = base;
	for (i = base; i < undo_depth; i++)
	{
		UndoRecord *record = undo[i];
		SubTransactionId *saved_at = (SubTransactionId *) record->target;

		if (event == SUBXACT_EVENT_ABORT_SUB)
			memcpy(record->target, record->copy, record->size);
		else if (*(SubTransactionId *) record->copy != parentSubid &&
				 parentSubid != TopSubTransactionId)
		{
			/* the copy now undoes the parent, which had none of its own */
			record->subid = parentSubid;
			*saved_at = parentSubid;
			undo[kept++] = record;
			continue;
		}
		else
			*saved_at = parentSubid;
		pfree(record);
	}
	undo_depth = kept;
}

void
ds_ledger_init(void)
{
	RegisterSubXactCallback(ledger_subxact_callback, NULL);
}
