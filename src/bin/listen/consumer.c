/*-------------------------------------------------------------------------
 *
 * consumer.c
 *	  Durable consumer mode of datastreams-listen (--consumer NAME).
 *
 * The position lives in the server (datastreams.consumer_positions), so
 * the client keeps none: each batch is one transaction that polls, prints,
 * flushes the output, acknowledges what it printed and commits.  A client
 * killed after printing and before the commit prints those frames again
 * when it (or another member) polls next: delivery is at least once, and
 * the only duplicates are frames printed but not acknowledged.  On SIGINT
 * or SIGTERM a batch that is printed is still acknowledged before exiting.
 *
 * poll() locks the streams it returns for the transaction, skipping those
 * another member holds, so several processes with the same consumer share
 * its streams; each prints every frame of a stream it got in order.
 *
 * Notifications only wake the client: it LISTENs on the channels of the
 * consumer's streams (every stream of the account for a consumer of all
 * streams, looked up again every poll interval to catch new streams) and
 * polls until a batch comes back short, on every wake-up and every poll
 * interval.
 *
 * With --proxy the same calls go to datastreams_proxy, which runs them on
 * the shards, and the LISTEN connections go to the shards that hold the
 * consumer's streams (shards.c), looked up again every poll interval so
 * that moved streams are heard on their new shard.
 *
 * IDENTIFICATION
 *	  src/bin/listen/consumer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/logging.h"
#include "datastreams_listen.h"
#include "pqexpbuffer.h"

/* The channels of the consumer's streams, sorted. */
#define CHANNELS_SQL \
	"SELECT DISTINCT datastreams.channel(s.id) COLLATE \"C\"" \
	"  FROM datastreams.get_consumer($1) AS c," \
	"       LATERAL (SELECT u.id FROM pg_catalog.unnest(c.streams) AS u(id)" \
	"                UNION ALL" \
	"                SELECT l.id FROM datastreams.list_streams() AS l" \
	"                 WHERE c.streams IS NULL) AS s" \
	" ORDER BY 1"

/* The same behind a proxy, with the shard of each, sorted by shard. */
#define PROXY_CHANNELS_SQL \
	"SELECT DISTINCT datastreams_proxy.shard_of(s.id) COLLATE \"C\"," \
	"       datastreams_proxy.channel(s.id) COLLATE \"C\"" \
	"  FROM datastreams_proxy.get_consumer($1) AS c," \
	"       LATERAL (SELECT u.id FROM pg_catalog.unnest(c.streams) AS u(id)" \
	"                UNION ALL" \
	"                SELECT l.id FROM datastreams_proxy.list_streams() AS l" \
	"                 WHERE c.streams IS NULL) AS s" \
	" ORDER BY 1, 2"

/*
 * The frames of one batch, in poll()'s order (stream by stream, ascending
 * sequence within each), with the frame's JSON exactly as in follow mode.
 */
#define POLL_SQL(schema) \
	"SELECT f.stream_id::pg_catalog.text, f.sequence," \
	"       pg_catalog.row_to_json(f)::pg_catalog.text" \
	"  FROM " schema ".poll($1, $2) AS f"

#define ACK_SQL(schema) \
	"SELECT " schema ".ack($1, u.stream_id, u.sequence)" \
	"  FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.uuid[])," \
	"                  pg_catalog.unnest($3::pg_catalog.int8[]))" \
	"       AS u(stream_id, sequence)"

static char **channels = NULL;	/* LISTENed to, sorted */
static int	nchannels = 0;
static int64 next_poll = 0;

static int
channel_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * LISTEN on the channels of the consumer's streams that are not listened
 * to yet.  A new connection listens to none, so it starts from scratch.
 */
static StepResult
listen_consumer_streams(PGconn *conn, bool fresh)
{
	const char *params[1] = {options.consumer};
	char	  **fresh_channels;
	int			nfresh = 0;
	StepResult	step;
	PGresult   *res;

	if (fresh)
	{
		for (int i = 0; i < nchannels; i++)
			pg_free(channels[i]);
		nchannels = 0;
	}
	res = run_query(conn, "looking up the consumer's streams", CHANNELS_SQL,
					1, params, &step);
	if (res == NULL)
		return step;

	fresh_channels = pg_malloc(sizeof(char *) * Max(PQntuples(res), 1));
	for (int i = 0; i < PQntuples(res); i++)
	{
		char	   *channel = PQgetvalue(res, i, 0);

		if (nchannels == 0 ||
			bsearch(&channel, channels, nchannels, sizeof(char *), channel_cmp) == NULL)
			fresh_channels[nfresh++] = channel;
	}
	step = nfresh > 0 ? listen_channels(conn, fresh_channels, nfresh) : STEP_OK;
	if (step == STEP_OK && nfresh > 0)
	{
		channels = pg_realloc(channels, sizeof(char *) * (nchannels + nfresh));
		for (int i = 0; i < nfresh; i++)
			channels[nchannels++] = pg_strdup(fresh_channels[i]);
		qsort(channels, nchannels, sizeof(char *), channel_cmp);
	}
	pg_free(fresh_channels);
	PQclear(res);
	return step;
}

/*
 * --proxy: LISTEN on the shards of the consumer's streams.  A shard that
 * is (re)connected gets all its channels; a synced one only those it has
 * not been given yet (a new stream, or one moved there).  A shard that
 * cannot be reached is left to the next poll interval: polling goes on
 * through the proxy meanwhile.
 */
static StepResult
listen_consumer_shards(PGconn *conn)
{
	const char *params[1] = {options.consumer};
	StepResult	step;
	PGresult   *res;
	int			rows;

	res = run_query(conn, "looking up the consumer's streams", PROXY_CHANNELS_SQL,
					1, params, &step);
	if (res == NULL)
		return step;
	rows = PQntuples(res);
	for (int i = 0; i < nshards; i++)
		shards[i].has_streams = false;
	for (int start = 0, end; start < rows; start = end)
	{
		const char *conninfo = PQgetvalue(res, start, 0);
		int			shard = shard_lookup(conninfo);
		char	  **fresh = pg_malloc(sizeof(char *) * (rows - start));
		int			nfresh = 0;

		for (end = start; end < rows && strcmp(PQgetvalue(res, end, 0), conninfo) == 0; end++)
		{
			char	   *key = psprintf("%s\n%s", conninfo, PQgetvalue(res, end, 1));

			if (!shards[shard].synced || nchannels == 0 ||
				bsearch(&key, channels, nchannels, sizeof(char *), channel_cmp) == NULL)
				fresh[nfresh++] = PQgetvalue(res, end, 1);
			pg_free(key);
		}
		shards[shard].has_streams = true;
		step = nfresh > 0 ? shard_connect(shard) : STEP_OK;
		if (step == STEP_OK && nfresh > 0)
		{
			step = listen_channels(shards[shard].conn, fresh, nfresh);
			if (step == STEP_OK)
			{
				int			known = nchannels;

				shards[shard].synced = true;
				shards[shard].backoff = 0;
				/* a resynced shard's channels may be known already */
				channels = pg_realloc(channels, sizeof(char *) * (nchannels + nfresh));
				for (int i = 0; i < nfresh; i++)
				{
					char	   *key = psprintf("%s\n%s", conninfo, fresh[i]);

					if (known > 0 &&
						bsearch(&key, channels, known, sizeof(char *), channel_cmp) != NULL)
						pg_free(key);
					else
						channels[nchannels++] = key;
				}
				qsort(channels, nchannels, sizeof(char *), channel_cmp);
			}
			else if (step == STEP_RETRY)
				shard_lost(shard);
		}
		pg_free(fresh);
		if (step == STEP_STOP || step == STEP_FATAL)
		{
			PQclear(res);
			return step;
		}
	}
	PQclear(res);
	return STEP_OK;
}

static StepResult
run_command(PGconn *conn, const char *what, const char *sql)
{
	StepResult	step;

	PQclear(run_query(conn, what, sql, 0, NULL, &step));
	return step;
}

/*
 * Acknowledge, per stream, the last frame printed.  res holds the batch;
 * the frames of a stream are consecutive in it.
 */
static StepResult
acknowledge(PGconn *conn, const PGresult *res)
{
	PQExpBuffer stream_ids = createPQExpBuffer();
	PQExpBuffer sequences = createPQExpBuffer();
	const char *params[3];
	StepResult	step;
	int			rows = PQntuples(res);

	appendPQExpBufferChar(stream_ids, '{');
	appendPQExpBufferChar(sequences, '{');
	for (int i = 0; i < rows; i++)
	{
		bool		last_of_stream = i == rows - 1 ||
			strcmp(PQgetvalue(res, i, 0), PQgetvalue(res, i + 1, 0)) != 0;

		if (!last_of_stream)
			continue;
		appendPQExpBuffer(stream_ids, "%s%s", stream_ids->len > 1 ? "," : "",
						  PQgetvalue(res, i, 0));
		appendPQExpBuffer(sequences, "%s%s", sequences->len > 1 ? "," : "",
						  PQgetvalue(res, i, 1));
	}
	appendPQExpBufferChar(stream_ids, '}');
	appendPQExpBufferChar(sequences, '}');
	if (PQExpBufferBroken(stream_ids) || PQExpBufferBroken(sequences))
		pg_fatal("out of memory");

	params[0] = options.consumer;
	params[1] = stream_ids->data;
	params[2] = sequences->data;
	PQclear(run_query(conn, "acknowledging frames",
					  options.proxy ? ACK_SQL("datastreams_proxy") : ACK_SQL("datastreams"),
					  3, params, &step));
	destroyPQExpBuffer(stream_ids);
	destroyPQExpBuffer(sequences);
	return step;
}

/*
 * Print a batch.  poll() gives each stream's frames in ascending order;
 * should it ever not, nothing is printed (and so nothing acknowledged)
 * rather than frames out of order.
 */
static StepResult
print_batch(const PGresult *res)
{
	for (int i = 0; i < PQntuples(res); i++)
	{
		int64		seq;
		int64		prev;

		if (PQgetisnull(res, i, 1) || !parse_sequence(PQgetvalue(res, i, 1), &seq) ||
			(i > 0 && strcmp(PQgetvalue(res, i, 0), PQgetvalue(res, i - 1, 0)) == 0 &&
			 parse_sequence(PQgetvalue(res, i - 1, 1), &prev) && seq <= prev))
		{
			pg_log_error("datastreams.poll() returned frames of stream %s out of order",
						 PQgetvalue(res, i, 0));
			return STEP_FATAL;
		}
	}
	for (int i = 0; i < PQntuples(res); i++)
		if (!print_frame(PQgetvalue(res, i, 2), PQgetvalue(res, i, 1)))
			return STEP_FATAL;
	return flush_output() ? STEP_OK : STEP_FATAL;
}

/*
 * One batch in one transaction: poll, print, flush, acknowledge, commit.
 * *nrows is the number of frames polled.
 */
static StepResult
poll_batch(PGconn *conn, int *nrows)
{
	char		limit[16];
	const char *params[2];
	StepResult	step;
	PGresult   *res;

	*nrows = 0;
	if ((step = run_command(conn, "starting a transaction", "BEGIN")) != STEP_OK)
		return step;
	snprintf(limit, sizeof(limit), "%d", options.batch_size);
	params[0] = options.consumer;
	params[1] = limit;
	res = run_query(conn, "polling",
					options.proxy ? POLL_SQL("datastreams_proxy") : POLL_SQL("datastreams"),
					2, params, &step);
	if (res == NULL)
		return step;
	*nrows = PQntuples(res);

	if (*nrows > 0)
	{
		step = print_batch(res);

		/*
		 * What is printed is acknowledged even if a stop was asked for
		 * meanwhile, so that a stopped client leaves no duplicates.
		 */
		if (step == STEP_OK)
		{
			defer_stop(true);
			step = acknowledge(conn, res);
		}
	}
	PQclear(res);
	if (step == STEP_OK)
		step = run_command(conn, "acknowledging frames", "COMMIT");
	defer_stop(false);
	return step;
}

/* Poll until a batch comes back short: nothing left that no one holds. */
static StepResult
drain(PGconn *conn)
{
	for (;;)
	{
		int			nrows;
		StepResult	step = poll_batch(conn, &nrows);

		if (step != STEP_OK || nrows < options.batch_size)
			return step;
	}
}

static StepResult
consumer_setup(PGconn *conn)
{
	StepResult	step;

	if ((step = set_account(conn)) != STEP_OK)
		return step;
	if (!options.once &&
		(step = options.proxy ? listen_consumer_shards(conn) :
		 listen_consumer_streams(conn, true)) != STEP_OK)
		return step;
	if ((step = drain(conn)) != STEP_OK)
		return step;
	next_poll = monotonic_ms() + options.poll_ms;
	return STEP_OK;
}

static StepResult
consumer_step(PGconn *conn)
{
	PGnotify   *notify;
	bool		woken = false;
	int64		shard_retry;

	for (int i = -1; i < nshards; i++)
	{
		PGconn	   *lconn = i < 0 ? conn : shards[i].conn;

		while (lconn != NULL && (notify = PQnotifies(lconn)) != NULL)
		{
			woken = true;
			PQfreemem(notify);
		}
	}
	/* with --proxy, a shard that lost its connection is listened to again */
	shard_retry = options.proxy ? shards_next_retry() : -1;
	if (monotonic_ms() >= next_poll ||
		(shard_retry >= 0 && monotonic_ms() >= shard_retry))
	{
		StepResult	step = options.proxy ? listen_consumer_shards(conn) :
			listen_consumer_streams(conn, false);

		if (step != STEP_OK)
			return step;
		woken = true;
		if (monotonic_ms() >= next_poll)
			next_poll = monotonic_ms() + options.poll_ms;
	}
	if (woken)
		return drain(conn);
	if (options.proxy)
		return wait_for_shards(shard_retry >= 0 ? Min(next_poll, shard_retry) : next_poll);
	return wait_for_input(conn, next_poll);
}

const ListenMode consumer_mode = {
	.setup = consumer_setup,
	.step = consumer_step,
};
