/*-------------------------------------------------------------------------
 *
 * follow.c
 *	  Following streams: replay with frames_since(), then LISTEN for more.
 *
 * Notifications are treated purely as wake-ups.  The client remembers the
 * last sequence it printed for every stream and always reads the frames
 * themselves with datastreams.frames_since(), so it depends neither on one
 * notification per frame nor on what a notification's payload contains.
 *
 * Every (re)connection LISTENs before it replays from the last printed
 * sequence: whatever commits after the replay query's snapshot is then
 * announced by a notification, and a periodic catch-up fetch covers any
 * notification that is lost anyway.  Because the last printed sequence
 * survives reconnections, the output stays gap-free and duplicate-free
 * across server restarts.
 *
 * A reconnection may land on another server (a failover).  If that server
 * lost frames the client printed (an asynchronous standby promoted), new
 * frames there may reuse their sequences, and replaying "after the last
 * printed sequence" would skip them silently.  So each connection first
 * compares every position the client got from a server with that server's
 * latest frame: if the server is behind, the client says so and continues
 * from the server's latest.  (A position given with --from is the user's
 * to choose, and may well be ahead.)
 *
 * With --proxy the same queries go to a datastreams_proxy, which routes
 * each stream's to its shard, and the LISTEN connections go to the shards
 * (shards.c).  The rule above then holds per shard: a shard's streams are
 * replayed, through the proxy, after its LISTEN is in place, on its every
 * (re)connection.  A stream whose partition moves is looked up in the
 * proxy's map again (on {"moved": true}, a 40001 from the partition's
 * write gate, or a P0002 from a shard that no longer holds it) and
 * followed on its new shard: LISTEN there first, then the replay.
 *
 * IDENTIFICATION
 *	  src/bin/listen/follow.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/logging.h"
#include "datastreams_listen.h"
#include "pqexpbuffer.h"

/* Rows asked of frames_since() per call; the server caps it at this too. */
#define FETCH_LIMIT			10000
#define FETCH_LIMIT_STR		"10000"

/*
 * Streams fetched by one catch-up query.  Bounded so that the ORDER BY of a
 * single query never has to sort more than this many times FETCH_LIMIT rows.
 */
#define STREAMS_PER_QUERY	256

/*
 * Queries.  Everything built in is schema-qualified so that a hostile
 * search_path cannot redirect any of it.  Lists of streams are passed as
 * array parameters so that one round trip serves any number of streams.
 */
#define SET_ACCOUNT_SQL \
	"SELECT pg_catalog.set_config('datastreams.account_id', $1, false)"

/*
 * The follow-mode queries exist for one node (schema datastreams) and for
 * a proxy (datastreams_proxy, same functions routed to the shards).
 */
#define LIST_STREAMS_SQL(schema) \
	"SELECT s.id::pg_catalog.text FROM " schema ".list_streams() AS s"

#define CHANNELS_SQL(schema) \
	"SELECT " schema ".channel(u.id)" \
	"  FROM pg_catalog.unnest($1::pg_catalog.uuid[])" \
	"       WITH ORDINALITY AS u(id, n)" \
	" ORDER BY u.n"

/*
 * Each stream's latest sequence and, at the client's position, the id of
 * the frame the server has there (if any).
 */
#define POSITIONS_SQL(schema) \
	"SELECT (SELECT f.sequence FROM " schema ".latest_frame(u.id) AS f)," \
	"       (SELECT f.id::pg_catalog.text" \
	"          FROM " schema ".frames_since(u.id, u.pos OPERATOR(pg_catalog.-) 1, 1) AS f" \
	"         WHERE f.sequence OPERATOR(pg_catalog.=) u.pos)" \
	"  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[])," \
	"                  pg_catalog.unnest($2::pg_catalog.int8[]))" \
	"       WITH ORDINALITY AS u(id, pos, n)" \
	" ORDER BY u.n"

/*
 * The frame's JSON is exactly row_to_json() of frames_since()'s row; the
 * ordinal, the sequence and the id ride along for the client's bookkeeping.
 */
#define FETCH_SQL(schema) \
	"SELECT u.n, f.sequence, pg_catalog.row_to_json(f)::pg_catalog.text," \
	"       f.id::pg_catalog.text" \
	"  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[])," \
	"                  pg_catalog.unnest($2::pg_catalog.int8[]))" \
	"       WITH ORDINALITY AS u(stream_id, after_sequence, n)," \
	"       LATERAL " schema ".frames_since(u.stream_id, u.after_sequence, " \
	FETCH_LIMIT_STR ") AS f" \
	" ORDER BY u.n, f.sequence"

/* Proxy only: the shard each stream lives on, by the proxy's map. */
#define SHARDS_SQL \
	"SELECT datastreams_proxy.shard_of(u.id)" \
	"  FROM pg_catalog.unnest($1::pg_catalog.uuid[])" \
	"       WITH ORDINALITY AS u(id, n)" \
	" ORDER BY u.n"

typedef struct FollowQueries
{
	const char *list_streams;
	const char *channels;
	const char *positions;
	const char *fetch;
} FollowQueries;

static const FollowQueries node_queries = {
	LIST_STREAMS_SQL("datastreams"),
	CHANNELS_SQL("datastreams"),
	POSITIONS_SQL("datastreams"),
	FETCH_SQL("datastreams"),
};

static const FollowQueries proxy_queries = {
	LIST_STREAMS_SQL("datastreams_proxy"),
	CHANNELS_SQL("datastreams_proxy"),
	POSITIONS_SQL("datastreams_proxy"),
	FETCH_SQL("datastreams_proxy"),
};

#define QUERIES (options.proxy ? &proxy_queries : &node_queries)

/*
 * A moved stream is looked up again this often until the proxy's map names
 * its new shard (the map changes last in a move), for at most this long.
 */
#define RESOLVE_INTERVAL_MS		100
#define RESOLVE_WINDOW_MS		30000

/* A partition refused with 40001 (moving) is retried after this long. */
#define MOVING_RETRY_MS			100

typedef struct Stream
{
	char		id[UUID_TEXT_LEN + 1];	/* canonical lower-case text form */
	char	   *channel;		/* NOTIFY channel, from channel() */
	int64		last;			/* last sequence printed or skipped */
	char		last_id[UUID_TEXT_LEN + 1]; /* id of the frame printed at
											 * "last"; empty if none */
	bool		positioned;		/* "last" is set: by --from or the server */
	bool		from_server;	/* "last" is a sequence the server had, not
								 * one from --from */
	bool		needs_check;	/* compare "last" with the server's history
								 * before the next fetch */
	bool		dirty;			/* already in dirty_list */
	int			shard;			/* --proxy: index in shards[], -1 unknown */
	int64		resolve_until;	/* --proxy: look the shard up again until
								 * then (monotonic ms); 0 if not */
} Stream;

/* the streams followed, sorted by id */
static Stream *streams = NULL;
static int	nstreams = 0;
static int *channel_order = NULL;	/* stream indexes sorted by channel */
static bool streams_resolved = false;	/* list and channels known */
static int *dirty_list = NULL;
static int	ndirty = 0;
static int64 next_poll = 0;		/* monotonic time of the next catch-up */
static int64 next_resolve = 0;	/* of the next look-up of moved streams */
static int64 fetch_hold_until = 0;	/* no fetch before: a partition moves */

static int
stream_cmp(const void *a, const void *b)
{
	return strcmp(((const Stream *) a)->id, ((const Stream *) b)->id);
}

static void
add_stream(const char *id)
{
	streams = pg_realloc(streams, sizeof(Stream) * (nstreams + 1));
	memset(&streams[nstreams], 0, sizeof(Stream));
	strlcpy(streams[nstreams].id, id, sizeof(streams[nstreams].id));
	streams[nstreams].last = options.from;
	streams[nstreams].positioned = options.from_given;
	streams[nstreams].needs_check = true;
	streams[nstreams].shard = -1;
	nstreams++;
}

/* Sort the streams by id and drop duplicates given more than once. */
static void
sort_streams(void)
{
	int			n = 0;

	if (nstreams == 0)
		return;
	qsort(streams, nstreams, sizeof(Stream), stream_cmp);
	for (int i = 1; i < nstreams; i++)
	{
		if (strcmp(streams[i].id, streams[n].id) != 0)
			streams[++n] = streams[i];
	}
	nstreams = n + 1;
}

/*
 * Can the stream be fetched now?  With --proxy only once its shard's
 * LISTEN is in place; --once listens nowhere.
 */
static bool
stream_ready(const Stream *s)
{
	return !options.proxy || options.once ||
		(s->shard >= 0 && shards[s->shard].synced);
}

static void
mark_dirty(Stream *s)
{
	if (!s->dirty)
	{
		s->dirty = true;
		dirty_list[ndirty++] = (int) (s - streams);
	}
}

/* "{a,b,...}" for the given streams, as an array. */
static void
append_id_array(PQExpBuffer buf, const int *idx, int n)
{
	appendPQExpBufferChar(buf, '{');
	for (int i = 0; i < n; i++)
		appendPQExpBuffer(buf, "%s%s", i > 0 ? "," : "", streams[idx[i]].id);
	appendPQExpBufferChar(buf, '}');
}

/* The same for the streams' positions. */
static void
append_position_array(PQExpBuffer buf, const int *idx, int n)
{
	appendPQExpBufferChar(buf, '{');
	for (int i = 0; i < n; i++)
		appendPQExpBuffer(buf, "%s" INT64_FORMAT, i > 0 ? "," : "",
						  streams[idx[i]].last);
	appendPQExpBufferChar(buf, '}');
}

StepResult
set_account(PGconn *conn)
{
	const char *params[1] = {options.account};
	StepResult	step = STEP_OK;
	PGresult   *res;

	if (options.account == NULL)
		return STEP_OK;
	res = run_query(conn, "setting the account", SET_ACCOUNT_SQL, 1, params, &step);
	PQclear(res);
	return step;
}

/* --all: take the account's streams once, at the first connection. */
static StepResult
list_streams(PGconn *conn)
{
	StepResult	step;
	PGresult   *res;

	res = run_query(conn, "listing the streams", QUERIES->list_streams, 0, NULL, &step);
	if (res == NULL)
		return step;
	for (int i = 0; i < PQntuples(res); i++)
	{
		const char *val = PQgetvalue(res, i, 0);
		char		id[UUID_TEXT_LEN + 1];

		if (PQgetisnull(res, i, 0) || !normalize_uuid(val, id))
		{
			pg_log_error("list_streams() returned an invalid stream id \"%s\"", val);
			PQclear(res);
			return STEP_FATAL;
		}
		add_stream(id);
	}
	PQclear(res);
	sort_streams();
	return STEP_OK;
}

static int
channel_cmp(const void *a, const void *b)
{
	return strcmp(streams[*(const int *) a].channel,
				  streams[*(const int *) b].channel);
}

/*
 * Run a query with the array of the given streams' ids (and, if
 * with_positions, of their positions) as parameters, expecting one row per
 * stream in order.
 */
static PGresult *
query_per_stream(PGconn *conn, const char *what, const char *sql,
				 bool with_positions, const int *idx, int n, StepResult *step)
{
	PQExpBuffer ids = createPQExpBuffer();
	PQExpBuffer positions = createPQExpBuffer();
	const char *params[2];
	PGresult   *res;

	append_id_array(ids, idx, n);
	append_position_array(positions, idx, n);
	if (PQExpBufferBroken(ids) || PQExpBufferBroken(positions))
		pg_fatal("out of memory");
	params[0] = ids->data;
	params[1] = positions->data;
	res = run_query(conn, what, sql, with_positions ? 2 : 1, params, step);
	destroyPQExpBuffer(ids);
	destroyPQExpBuffer(positions);
	if (res != NULL && PQntuples(res) != n)
	{
		pg_log_error("%s: %d rows for %d streams", what, PQntuples(res), n);
		PQclear(res);
		*step = STEP_FATAL;
		return NULL;
	}
	return res;
}

/* All the streams' indexes, for queries about every stream. */
static int *
all_streams(void)
{
	int		   *all = pg_malloc(sizeof(int) * Max(nstreams, 1));

	for (int i = 0; i < nstreams; i++)
		all[i] = i;
	return all;
}

/* Ask the server for each stream's NOTIFY channel, rather than guessing. */
static StepResult
fetch_channels(PGconn *conn)
{
	int		   *all = all_streams();
	StepResult	step;
	PGresult   *res;

	res = query_per_stream(conn, "looking up the notification channels",
						   QUERIES->channels, false, all, nstreams, &step);
	pg_free(all);
	if (res == NULL)
		return step;
	for (int i = 0; i < nstreams; i++)
	{
		if (PQgetisnull(res, i, 0))
		{
			pg_log_error("channel() returned NULL for stream %s", streams[i].id);
			PQclear(res);
			return STEP_FATAL;
		}
		pg_free(streams[i].channel);
		streams[i].channel = pg_strdup(PQgetvalue(res, i, 0));
	}
	PQclear(res);

	channel_order = all_streams();
	qsort(channel_order, nstreams, sizeof(int), channel_cmp);
	return STEP_OK;
}

StepResult
listen_channels(PGconn *conn, char *const *channels, int n)
{
	PQExpBuffer sql = createPQExpBuffer();
	StepResult	step;
	PGresult   *res;

	for (int i = 0; i < n; i++)
	{
		char	   *ident = PQescapeIdentifier(conn, channels[i], strlen(channels[i]));

		if (ident == NULL)
		{
			pg_log_error("could not quote channel name: %s", PQerrorMessage(conn));
			destroyPQExpBuffer(sql);
			return STEP_FATAL;
		}
		appendPQExpBuffer(sql, "LISTEN %s;", ident);
		PQfreemem(ident);
	}
	if (PQExpBufferBroken(sql))
		pg_fatal("out of memory");
	res = run_query(conn, "LISTEN", sql->data, 0, NULL, &step);
	destroyPQExpBuffer(sql);
	PQclear(res);
	return step;
}

/* LISTEN on conn for the streams of shard (all of them if -1). */
static StepResult
listen_streams(PGconn *conn, int shard)
{
	char	  **channels = pg_malloc(sizeof(char *) * Max(nstreams, 1));
	int			n = 0;
	StepResult	step;

	for (int i = 0; i < nstreams; i++)
	{
		if (shard < 0 || streams[i].shard == shard)
			channels[n++] = streams[i].channel;
	}
	step = n > 0 ? listen_channels(conn, channels, n) : STEP_OK;
	pg_free(channels);
	return step;
}

/*
 * --proxy: which shards hold a followed stream.  A shard left with none
 * (its partitions moved away) is no longer listened to or retried.
 */
static void
count_shard_streams(void)
{
	for (int i = 0; i < nshards; i++)
		shards[i].has_streams = false;
	for (int i = 0; i < nstreams; i++)
	{
		if (streams[i].shard >= 0)
			shards[streams[i].shard].has_streams = true;
	}
	for (int i = 0; i < nshards; i++)
	{
		if (!shards[i].has_streams && shards[i].conn != NULL)
		{
			PQfinish(shards[i].conn);
			shards[i].conn = NULL;
			shards[i].synced = false;
		}
	}
}

/*
 * --proxy: ask the proxy's map where the given streams live.  A stream
 * found on another shard than before is LISTENed to there (if that shard
 * is connected; otherwise its connection will) and fetched, so that what
 * it committed on the new shard before this LISTEN is replayed.
 */
static StepResult
resolve_shards(PGconn *conn, const int *idx, int n)
{
	StepResult	step;
	PGresult   *res;

	res = query_per_stream(conn, "looking up the streams' shards", SHARDS_SQL,
						   false, idx, n, &step);
	if (res == NULL)
		return step;
	for (int i = 0; i < n; i++)
	{
		Stream	   *s = &streams[idx[i]];
		int			shard;

		if (PQgetisnull(res, i, 0))
		{
			pg_log_error("datastreams_proxy.shard_of() returned NULL for stream %s", s->id);
			PQclear(res);
			return STEP_FATAL;
		}
		shard = shard_lookup(PQgetvalue(res, i, 0));
		if (shard == s->shard)
			continue;
		if (s->shard >= 0)
			pg_log_info("stream %s moved to shard \"%s\"", s->id, shards[shard].conninfo);
		s->shard = shard;
		s->resolve_until = 0;
		if (shards[shard].synced)
		{
			char	   *channel[1] = {s->channel};

			step = listen_channels(shards[shard].conn, channel, 1);
			if (step == STEP_STOP || step == STEP_FATAL)
			{
				PQclear(res);
				return step;
			}
			if (step != STEP_OK)
				shard_lost(shard);
		}
		mark_dirty(s);
	}
	PQclear(res);
	count_shard_streams();
	return STEP_OK;
}

/* --proxy: look up again where every stream lives. */
static StepResult
resolve_all_shards(PGconn *conn)
{
	int		   *all = all_streams();
	StepResult	step = resolve_shards(conn, all, nstreams);

	pg_free(all);
	return step;
}

/* --proxy: look up again the streams whose partition has moved. */
static StepResult
resolve_moved(PGconn *conn)
{
	int64		now = monotonic_ms();
	int		   *moved;
	int			n = 0;
	StepResult	step = STEP_OK;

	if (now < next_resolve)
		return STEP_OK;
	moved = pg_malloc(sizeof(int) * Max(nstreams, 1));
	for (int i = 0; i < nstreams; i++)
	{
		if (streams[i].resolve_until == 0)
			continue;
		/* past the window: one last look-up, then the poll interval's */
		if (now > streams[i].resolve_until)
			streams[i].resolve_until = 0;
		moved[n++] = i;
	}
	if (n > 0)
		step = resolve_shards(conn, moved, n);
	pg_free(moved);
	next_resolve = now + RESOLVE_INTERVAL_MS;
	return step;
}

static void
expect_move(Stream *s)
{
	if (s->resolve_until == 0)
		s->resolve_until = monotonic_ms() + RESOLVE_WINDOW_MS;
}

/*
 * --proxy: a query through the proxy about streams idx of one shard failed
 * with step.  If the proxy's connection is gone, everything reconnects
 * (the caller's step).  A partition that is moving (40001) is retried
 * shortly and its streams looked up again; a shard that no longer holds a
 * stream (P0002) is the end of a move if the map names another shard now,
 * and an error otherwise.  Any other transient failure was the shard's:
 * its connection is dropped and re-established, and its streams replayed.
 */
static StepResult
shard_query_failed(PGconn *conn, int shard, const int *idx, int n,
				   StepResult step)
{
	if (step != STEP_RETRY || !options.proxy || options.once ||
		PQstatus(conn) == CONNECTION_BAD)
		return step;
	if ((step = discard_results(conn)) != STEP_OK)
		return step;

	if (strcmp(last_sqlstate, "40001") == 0)
	{
		for (int i = 0; i < n; i++)
		{
			expect_move(&streams[idx[i]]);
			mark_dirty(&streams[idx[i]]);
		}
		fetch_hold_until = monotonic_ms() + MOVING_RETRY_MS;
		next_resolve = 0;
		return STEP_OK;
	}
	if (strcmp(last_sqlstate, "P0002") == 0)
	{
		int			stayed = 0;

		if ((step = resolve_shards(conn, idx, n)) != STEP_OK)
			return step;
		for (int i = 0; i < n; i++)
		{
			stayed += streams[idx[i]].shard == shard;
			mark_dirty(&streams[idx[i]]);
		}
		if (stayed == n)
		{
			pg_log_error("a stream followed is not on the shard \"%s\" that the proxy's map names",
						 shards[shard].conninfo);
			pg_log_error_detail("It was deleted, or its partition was moved without the map being updated.");
			return STEP_FATAL;
		}
		return STEP_OK;
	}
	shard_lost(shard);
	return STEP_OK;
}

/*
 * Compare the given streams' positions with what their server has, or,
 * for a stream seen for the first time without --from, take the server's
 * latest frame as its position.  This runs after LISTEN, so any frame
 * committed after it is announced by a notification.
 */
static StepResult
check_positions(PGconn *conn, const int *idx, int n)
{
	StepResult	step;
	PGresult   *res;

	res = query_per_stream(conn, "reading the latest frames", QUERIES->positions,
						   true, idx, n, &step);
	if (res == NULL)
		return step;
	for (int i = 0; i < n; i++)
	{
		Stream	   *s = &streams[idx[i]];
		const char *val = PQgetvalue(res, i, 0);
		int64		latest = 0;

		if (!PQgetisnull(res, i, 0) && !parse_sequence(val, &latest))
		{
			pg_log_error("latest_frame() returned invalid sequence \"%s\" for stream %s",
						 val, s->id);
			PQclear(res);
			return STEP_FATAL;
		}
		s->needs_check = false;
		if (!s->positioned)
		{
			s->last = latest;
			s->from_server = true;
			s->positioned = true;
		}
		else if (!s->from_server)
			continue;
		else if (latest < s->last)
		{
			pg_log_warning("stream %s: the server's latest sequence " INT64_FORMAT
						   " is below this client's position " INT64_FORMAT,
						   s->id, latest, s->last);
			pg_log_warning_detail("Frames after sequence " INT64_FORMAT " were lost, for example by a failover to an asynchronous standby; continuing after sequence " INT64_FORMAT ".",
								  latest, latest);
			s->last = latest;
			s->last_id[0] = '\0';
		}
		else if (s->last_id[0] != '\0' && !PQgetisnull(res, i, 1) &&
				 strcmp(PQgetvalue(res, i, 1), s->last_id) != 0)
		{
			pg_log_warning("stream %s: the frame at this client's position " INT64_FORMAT
						   " is not the one it printed",
						   s->id, s->last);
			pg_log_warning_detail("The server's history diverged, for example by a failover to an asynchronous standby; frames that replaced lost ones at or below sequence " INT64_FORMAT " are not printed.",
								  s->last);
			strlcpy(s->last_id, PQgetvalue(res, i, 1), sizeof(s->last_id));
		}
	}
	PQclear(res);
	return STEP_OK;
}

/* Print one row of FETCH_SQL and advance its stream's position. */
static StepResult
emit_row(const PGresult *res, int row, const int *idx, int n,
		 int *rows, bool *advanced)
{
	const char *ordval = PQgetvalue(res, row, 0);
	const char *seqval = PQgetvalue(res, row, 1);
	int64		ord;
	int64		seq;
	Stream	   *s;

	if (PQgetisnull(res, row, 0) || PQgetisnull(res, row, 2) ||
		!parse_sequence(ordval, &ord) || ord < 1 || ord > n)
	{
		pg_log_error("unexpected row from frames_since()");
		return STEP_FATAL;
	}
	s = &streams[idx[ord - 1]];
	if (PQgetisnull(res, row, 1) || !parse_sequence(seqval, &seq))
	{
		pg_log_error("frames_since() returned a frame of stream %s with invalid sequence \"%s\"",
					 s->id, seqval);
		return STEP_FATAL;
	}
	rows[ord - 1]++;

	/* Never print a frame twice, even if the server breaks its contract. */
	if (seq <= s->last)
	{
		pg_log_warning("ignoring frame of stream %s with sequence " INT64_FORMAT
					   " not after " INT64_FORMAT, s->id, seq, s->last);
		return STEP_OK;
	}

	if (!print_frame(PQgetvalue(res, row, 2), seqval))
		return STEP_FATAL;
	s->last = seq;
	s->from_server = true;
	strlcpy(s->last_id, PQgetvalue(res, row, 3), sizeof(s->last_id));
	advanced[ord - 1] = true;
	return STEP_OK;
}
/*
 * One FETCH_SQL query for up to STREAMS_PER_QUERY streams.  Rows are taken
 * in single-row mode, so memory stays bounded by one frame however large
 * the batch, and frames already printed when a connection breaks stay
 * accounted for.  Sets full[i] when stream idx[i] may have more frames.
 */
static StepResult
fetch_chunk(PGconn *conn, const int *idx, int n, bool *full)
{
	PQExpBuffer ids = createPQExpBuffer();
	PQExpBuffer positions = createPQExpBuffer();
	const char *params[2];
	int		   *rows = pg_malloc0(sizeof(int) * n);
	bool	   *advanced = pg_malloc0(sizeof(bool) * n);
	StepResult	step = STEP_OK;

	append_id_array(ids, idx, n);
	append_position_array(positions, idx, n);
	if (PQExpBufferBroken(ids) || PQExpBufferBroken(positions))
		pg_fatal("out of memory");
	params[0] = ids->data;
	params[1] = positions->data;

	last_sqlstate[0] = '\0';
	if (!PQsendQueryParams(conn, QUERIES->fetch, 2, NULL, params, NULL, NULL, 0))
		step = query_failure(conn, NULL, "fetching frames");
	else
	{
		/* if this fails we merely get all rows at once */
		(void) PQsetSingleRowMode(conn);

		for (;;)
		{
			PGresult   *res = await_result(conn, "fetching frames", &step);
			ExecStatusType status;

			if (res == NULL)
				break;
			status = PQresultStatus(res);
			if (status != PGRES_SINGLE_TUPLE && status != PGRES_TUPLES_OK)
			{
				step = query_failure(conn, res, "fetching frames");
				PQclear(res);
				break;
			}
			for (int i = 0; i < PQntuples(res) && step == STEP_OK; i++)
				step = emit_row(res, i, idx, n, rows, advanced);
			PQclear(res);
			if (step != STEP_OK)
				break;
		}

		/* a stream that came back short has been read to its end */
		for (int i = 0; i < n; i++)
			full[i] = (rows[i] >= FETCH_LIMIT && advanced[i]);
	}

	if (!flush_output())
		step = STEP_FATAL;
	destroyPQExpBuffer(ids);
	destroyPQExpBuffer(positions);
	pg_free(rows);
	pg_free(advanced);
	return step;
}

/*
 * Print every frame after the last printed one for the given streams:
 * frames_since() in a loop until a stream returns fewer than FETCH_LIMIT
 * rows.  Several streams share each query, so a catch-up of many streams
 * costs a few round trips rather than one per stream.
 */
static StepResult
fetch_streams(PGconn *conn, const int *list, int n)
{
	int		   *pending = pg_malloc(sizeof(int) * Max(n, 1));
	bool	   *full = pg_malloc(sizeof(bool) * STREAMS_PER_QUERY);
	int			npending = n;
	StepResult	step = STEP_OK;

	memcpy(pending, list, sizeof(int) * n);
	while (npending > 0 && step == STEP_OK)
	{
		int			nfull = 0;

		for (int start = 0; start < npending && step == STEP_OK;
			 start += STREAMS_PER_QUERY)
		{
			int			chunk = Min(npending - start, STREAMS_PER_QUERY);

			step = fetch_chunk(conn, pending + start, chunk, full);
			if (step != STEP_OK)
				break;
			/* compact in place: nfull never overtakes start + i */
			for (int i = 0; i < chunk; i++)
				if (full[i])
					pending[nfull++] = pending[start + i];
		}
		npending = nfull;
	}
	pg_free(pending);
	pg_free(full);
	return step;
}

/*
 * Check and fetch the given streams (of one shard with --proxy): first the
 * positions of those that need a check, then their frames.
 */
static StepResult
fetch_group(PGconn *conn, const int *idx, int n)
{
	int		   *unchecked = pg_malloc(sizeof(int) * Max(n, 1));
	int			nunchecked = 0;
	StepResult	step = STEP_OK;

	for (int i = 0; i < n; i++)
	{
		if (streams[idx[i]].needs_check)
			unchecked[nunchecked++] = idx[i];
	}
	if (nunchecked > 0)
		step = check_positions(conn, unchecked, nunchecked);
	pg_free(unchecked);
	if (step == STEP_OK)
		step = fetch_streams(conn, idx, n);
	return step;
}

static int
shard_order_cmp(const void *a, const void *b)
{
	int			sa = streams[*(const int *) a].shard;
	int			sb = streams[*(const int *) b].shard;

	return (sa > sb) - (sa < sb);
}

/*
 * Fetch the streams marked dirty that can be fetched now; the others stay
 * marked.  The marks are cleared first: a notification that arrives
 * during the fetch must be able to queue the stream again.  With --proxy
 * each shard's streams are fetched by their own queries, so that a shard
 * that is down or a partition that is moving holds up only its streams.
 */
static StepResult
fetch_dirty(PGconn *conn)
{
	int		   *list = pg_malloc(sizeof(int) * Max(ndirty, 1));
	int			n = 0;
	int			kept = 0;
	StepResult	step = STEP_OK;

	for (int i = 0; i < ndirty; i++)
	{
		Stream	   *s = &streams[dirty_list[i]];

		if (stream_ready(s))
		{
			s->dirty = false;
			list[n++] = dirty_list[i];
		}
		else
			dirty_list[kept++] = dirty_list[i];
	}
	ndirty = kept;

	if (!options.proxy || options.once)
		step = fetch_group(conn, list, n);
	else
	{
		qsort(list, n, sizeof(int), shard_order_cmp);
		for (int start = 0, end; start < n && step == STEP_OK; start = end)
		{
			int			shard = streams[list[start]].shard;

			for (end = start; end < n && streams[list[end]].shard == shard; end++)
				;
			step = fetch_group(conn, list + start, end - start);
			step = shard_query_failed(conn, shard, list + start, end - start, step);
		}
	}
	pg_free(list);
	return step;
}

/* Is there a stream to fetch now? */
static bool
fetch_due(void)
{
	if (monotonic_ms() < fetch_hold_until)
		return false;
	for (int i = 0; i < ndirty; i++)
	{
		if (stream_ready(&streams[dirty_list[i]]))
			return true;
	}
	return false;
}

/*
 * --proxy: connect the shards that hold followed streams and are not
 * synced, LISTEN there, and queue their streams for a checked replay.  A
 * shard that cannot be reached is tried again after its backoff.
 */
static StepResult
sync_shards(PGconn *conn)
{
	for (int i = 0; i < nshards; i++)
	{
		StepResult	step;
		int		   *held;
		int			nheld = 0;

		if (shards[i].synced || !shards[i].has_streams ||
			monotonic_ms() < shards[i].retry_at)
			continue;

		/*
		 * Its streams may live elsewhere by now (a move while this shard was
		 * away, a failover to another address in the map): ask first.
		 */
		held = pg_malloc(sizeof(int) * nstreams);
		for (int j = 0; j < nstreams; j++)
		{
			if (streams[j].shard == i)
				held[nheld++] = j;
		}
		step = resolve_shards(conn, held, nheld);
		pg_free(held);
		if (step != STEP_OK)
			return step;
		if (!shards[i].has_streams)
			continue;

		step = shard_connect(i);
		if (step == STEP_RETRY)
			continue;
		if (step != STEP_OK)
			return step;
		step = listen_streams(shards[i].conn, i);
		if (step == STEP_STOP || step == STEP_FATAL)
			return step;
		if (step != STEP_OK)
		{
			shard_lost(i);
			continue;
		}
		shards[i].synced = true;
		shards[i].backoff = 0;
		for (int j = 0; j < nstreams; j++)
		{
			if (streams[j].shard == i)
			{
				streams[j].needs_check = true;
				mark_dirty(&streams[j]);
			}
		}
	}
	return STEP_OK;
}

/*
 * --proxy without --from: take each stream's starting position (its latest
 * frame) through the proxy now, shard by shard, rather than when its
 * shard's LISTEN first comes up, which may be much later.
 */
static StepResult
position_streams(PGconn *conn)
{
	int		   *list = pg_malloc(sizeof(int) * Max(nstreams, 1));
	int			n = 0;
	StepResult	step = STEP_OK;

	for (int i = 0; i < nstreams; i++)
	{
		if (!streams[i].positioned)
			list[n++] = i;
	}
	qsort(list, n, sizeof(int), shard_order_cmp);
	for (int start = 0, end; start < n && step == STEP_OK; start = end)
	{
		int			shard = streams[list[start]].shard;

		for (end = start; end < n && streams[list[end]].shard == shard; end++)
			;
		step = check_positions(conn, list + start, end - start);
		step = shard_query_failed(conn, shard, list + start, end - start, step);
	}
	pg_free(list);
	return step;
}

/*
 * Bring a fresh connection to the point where notifications can be waited
 * for: account, LISTEN, positions, and only then the replay, so that
 * nothing committed after the replay's snapshot can go unannounced.
 */
static StepResult
follow_setup(PGconn *conn)
{
	StepResult	step;

	if ((step = set_account(conn)) != STEP_OK)
		return step;

	if (!streams_resolved)
	{
		for (int i = 0; i < options.nstream_ids; i++)
			add_stream(options.stream_ids[i]);
		sort_streams();
		if (options.all && (step = list_streams(conn)) != STEP_OK)
			return step;
		if (nstreams == 0)
		{
			pg_log_info("the account has no streams to follow");
			return STEP_DONE;
		}
		if (!options.once && (step = fetch_channels(conn)) != STEP_OK)
			return step;
		dirty_list = pg_malloc(sizeof(int) * nstreams);
		streams_resolved = true;
	}
	if (options.proxy && !options.once)
	{
		if ((step = resolve_all_shards(conn)) != STEP_OK ||
			(step = position_streams(conn)) != STEP_OK)
			return step;
	}

	/* every stream is checked and replayed on a new connection */
	for (int i = 0; i < nstreams; i++)
	{
		streams[i].needs_check = true;
		mark_dirty(&streams[i]);
	}
	if (options.proxy && !options.once)
		step = sync_shards(conn);
	else if (!options.once)
		step = listen_streams(conn, -1);
	if (step != STEP_OK)
		return step;
	if (fetch_due() && (step = fetch_dirty(conn)) != STEP_OK)
		return step;
	next_poll = monotonic_ms() + options.poll_ms;
	return STEP_OK;
}

/*
 * Notifications.
 */

static void
handle_notification(PGnotify *notify)
{
	NotifyInfo	info;
	int			lo = 0,
				hi = nstreams - 1;

	parse_notify_payload(notify->extra != NULL ? notify->extra : "", &info);

	if (info.has_stream)
	{
		Stream		key;
		Stream	   *s;

		strlcpy(key.id, info.stream_id, sizeof(key.id));
		s = bsearch(&key, streams, nstreams, sizeof(Stream), stream_cmp);
		if (s != NULL)
		{
			if (info.moved && options.proxy)
			{
				expect_move(s);
				next_resolve = 0;
			}
			/* frames up to s->last are printed already */
			if (!info.has_sequence || info.sequence > s->last)
				mark_dirty(s);
			return;
		}
	}

	/*
	 * Otherwise go by the channel.  Should several streams ever share one,
	 * all of them are woken.
	 */
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			c = strcmp(notify->relname, streams[channel_order[mid]].channel);

		if (c == 0)
		{
			while (mid > 0 &&
				   strcmp(notify->relname, streams[channel_order[mid - 1]].channel) == 0)
				mid--;
			for (; mid < nstreams &&
				 strcmp(notify->relname, streams[channel_order[mid]].channel) == 0; mid++)
			{
				Stream	   *s = &streams[channel_order[mid]];

				if (info.moved && options.proxy)
				{
					expect_move(s);
					next_resolve = 0;
				}
				if (!info.has_sequence || info.sequence > s->last)
					mark_dirty(s);
			}
			return;
		}
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
}

static void
take_notifications(PGconn *conn)
{
	PGnotify   *notify;

	while ((notify = PQnotifies(conn)) != NULL)
	{
		handle_notification(notify);
		PQfreemem(notify);
	}
}

/* The earliest of the times something is due, for waiting. */
static int64
next_deadline(void)
{
	int64		deadline = next_poll;

	if (options.proxy)
	{
		int64		retry = shards_next_retry();

		if (retry >= 0)
			deadline = Min(deadline, retry);
		for (int i = 0; i < nstreams; i++)
		{
			if (streams[i].resolve_until != 0)
			{
				deadline = Min(deadline, next_resolve);
				break;
			}
		}
		if (ndirty > 0 && fetch_hold_until > monotonic_ms())
			deadline = Min(deadline, fetch_hold_until);
	}
	return deadline;
}

/* One round of waiting for and handling notifications. */
static StepResult
follow_step(PGconn *conn)
{
	StepResult	step;

	if (options.proxy)
	{
		for (int i = 0; i < nshards; i++)
		{
			if (shards[i].conn != NULL)
				take_notifications(shards[i].conn);
		}
		if ((step = resolve_moved(conn)) != STEP_OK ||
			(step = sync_shards(conn)) != STEP_OK)
			return step;
	}
	else
		take_notifications(conn);

	if (monotonic_ms() >= next_poll)
	{
		/*
		 * The safety net, for notifications lost whatever the reason, and
		 * for a map that changed without telling (a failover to another
		 * address).
		 */
		if (options.proxy && (step = resolve_all_shards(conn)) != STEP_OK)
			return step;
		for (int i = 0; i < nstreams; i++)
			mark_dirty(&streams[i]);
		next_poll = monotonic_ms() + options.poll_ms;
	}
	if (fetch_due())
		return fetch_dirty(conn);
	if (options.proxy)
		return wait_for_shards(next_deadline());
	return wait_for_input(conn, next_deadline());
}

const ListenMode follow_mode = {
	.setup = follow_setup,
	.step = follow_step,
};
