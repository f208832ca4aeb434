/*-------------------------------------------------------------------------
 *
 * commit.c
 *	  The end of a transaction that wrote frames or changed streams: what
 *	  the ledger recorded is handed on, in one order.
 *
 * Before the commit the frames go to the bus (the publisher's hand-over
 * ring, or NOTIFY now); when no publisher takes them, the writer folds the
 * streams' counters itself.  After the commit: the bus, the metrics, the
 * logs, and only then is the ledger reset.  A transaction that wrote
 * frames cannot be prepared: its frames would be announced by whoever
 * commits it later, in another session, which the bus cannot follow.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"

#include "bus.h"
#include "datastreams.h"
#include "ledger.h"
#include "stream_state.h"

/* The streams handed to the bus before commit, handed to it again after */
static LedgerStream **committing = NULL;
static int	ncommitting = 0;

static bool
wrote_frames(void)
{
	int			n;
	LedgerStream **written = ds_ledger_streams(&n);

	if (written)
		pfree(written);
	return n > 0;
}

static void
transaction_ended(void)
{
	/* committing lived in TopTransactionContext */
	committing = NULL;
	ncommitting = 0;
	ds_ledger_reset();
}

static void
commit_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (!ds_ledger_in_use())
				break;
			committing = ds_ledger_streams(&ncommitting);
			if (ncommitting > 0 && !ds_bus_pre_commit(committing, ncommitting))
				ds_fold_stream_states(committing, ncommitting);
			break;
		case XACT_EVENT_COMMIT:
			if (ds_ledger_in_use())
			{
				ds_bus_commit(committing, ncommitting);
				ds_metrics_commit();
				ds_log_changes();
			}
			transaction_ended();
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (ds_ledger_in_use() && wrote_frames())
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that wrote datastreams frames"),
						 errdetail("Frames are announced to listeners when their transaction commits, and a prepared transaction commits in another session."),
						 errhint("Write frames in transactions that commit directly.")));
			break;
		case XACT_EVENT_ABORT:
			if (ds_ledger_in_use())
				ds_bus_abort();
			transaction_ended();
			break;
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			transaction_ended();
			break;
		default:
			break;
	}
}

void
ds_commit_init(void)
{
	RegisterXactCallback(commit_xact_callback, NULL);
}
