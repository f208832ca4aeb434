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

#define LIST_STREAMS_SQL \
	"SELECT s.id::pg_catalog.text FROM datastreams.list_streams() AS s"

#define CHANNELS_SQL \
	"SELECT datastreams.channel(u.id)" \
	"  FROM pg_catalog.unnest($1::pg_catalog.uuid[])" \
	"       WITH ORDINALITY AS u(id, n)" \
	" ORDER BY u.n"

/*
 * Each stream's latest sequence and, at the client's position, the id of
 * the frame the server has there (if any).
 */
#define POSITIONS_SQL \
	"SELECT (SELECT f.sequence FROM datastreams.latest_frame(u.id) AS f)," \
	"       (SELECT f.id::pg_catalog.text" \
	"          FROM datastreams.frames_since(u.id, u.pos OPERATOR(pg_catalog.-) 1, 1) AS f" \
	"         WHERE f.sequence OPERATOR(pg_catalog.=) u.pos)" \
	"  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[])," \
	"                  pg_catalog.unnest($2::pg_catalog.int8[]))" \
	"       WITH ORDINALITY AS u(id, pos, n)" \
	" ORDER BY u.n"

/*
 * The frame's JSON is exactly row_to_json() of frames_since()'s row; the
 * ordinal, the sequence and the id ride along for the client's bookkeeping.
 */
#define FETCH_SQL \
	"SELECT u.n, f.sequence, pg_catalog.row_to_json(f)::pg_catalog.text," \
	"       f.id::pg_catalog.text" \
	"  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[])," \
	"                  pg_catalog.unnest($2::pg_catalog.int8[]))" \
	"       WITH ORDINALITY AS u(stream_id, after_sequence, n)," \
	"       LATERAL datastreams.frames_since(u.stream_id, u.after_sequence, " \
	FETCH_LIMIT_STR ") AS f" \
	" ORDER BY u.n, f.sequence"

typedef struct Stream
{
	char		id[UUID_TEXT_LEN + 1];	/* canonical lower-case text form */
	char	   *channel;		/* NOTIFY channel, from datastreams.channel() */
	int64		last;			/* last sequence printed or skipped */
	char		last_id[UUID_TEXT_LEN + 1]; /* id of the frame printed at
											 * "last"; empty if none */
	bool		from_server;	/* "last" is a sequence the server had, not
								 * one from --from */
	bool		dirty;			/* already in dirty_list */
} Stream;

/* the streams followed, sorted by id */
static Stream *streams = NULL;
static int	nstreams = 0;
static int *channel_order = NULL;	/* stream indexes sorted by channel */
static bool streams_resolved = false;	/* list and channels known */
static bool positions_known = false;	/* every stream's "last" is valid */
static int *dirty_list = NULL;
static int	ndirty = 0;
static int64 next_poll = 0;		/* monotonic time of the next catch-up */

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

/* "{a,b,...}" for the given streams (all if idx is NULL), as an array. */
static void
append_id_array(PQExpBuffer buf, const int *idx, int n)
{
	appendPQExpBufferChar(buf, '{');
	for (int i = 0; i < n; i++)
		appendPQExpBuffer(buf, "%s%s", i > 0 ? "," : "",
						  streams[idx != NULL ? idx[i] : i].id);
	appendPQExpBufferChar(buf, '}');
}

/* The same for the streams' positions. */
static void
append_position_array(PQExpBuffer buf, const int *idx, int n)
{
	appendPQExpBufferChar(buf, '{');
	for (int i = 0; i < n; i++)
		appendPQExpBuffer(buf, "%s" INT64_FORMAT, i > 0 ? "," : "",
						  streams[idx != NULL ? idx[i] : i].last);
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

	res = run_query(conn, "listing the streams", LIST_STREAMS_SQL, 0, NULL, &step);
	if (res == NULL)
		return step;
	for (int i = 0; i < PQntuples(res); i++)
	{
		const char *val = PQgetvalue(res, i, 0);
		char		id[UUID_TEXT_LEN + 1];

		if (PQgetisnull(res, i, 0) || !normalize_uuid(val, id))
		{
			pg_log_error("datastreams.list_streams() returned an invalid stream id \"%s\"", val);
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
 * Run a query with the array of all stream ids (and, if with_positions, of
 * their positions) as parameters, expecting one row per stream in order.
 */
static PGresult *
query_per_stream(PGconn *conn, const char *what, const char *sql,
				 bool with_positions, StepResult *step)
{
	PQExpBuffer ids = createPQExpBuffer();
	PQExpBuffer positions = createPQExpBuffer();
	const char *params[2];
	PGresult   *res;

	append_id_array(ids, NULL, nstreams);
	append_position_array(positions, NULL, nstreams);
	if (PQExpBufferBroken(ids) || PQExpBufferBroken(positions))
		pg_fatal("out of memory");
	params[0] = ids->data;
	params[1] = positions->data;
	res = run_query(conn, what, sql, with_positions ? 2 : 1, params, step);
	destroyPQExpBuffer(ids);
	destroyPQExpBuffer(positions);
	if (res != NULL && PQntuples(res) != nstreams)
	{
		pg_log_error("%s: %d rows for %d streams", what, PQntuples(res), nstreams);
		PQclear(res);
		*step = STEP_FATAL;
		return NULL;
	}
	return res;
}

/* Ask the server for each stream's NOTIFY channel, rather than guessing. */
static StepResult
fetch_channels(PGconn *conn)
{
	StepResult	step;
	PGresult   *res;

	res = query_per_stream(conn, "looking up the notification channels",
						   CHANNELS_SQL, false, &step);
	if (res == NULL)
		return step;
	for (int i = 0; i < nstreams; i++)
	{
		if (PQgetisnull(res, i, 0))
		{
			pg_log_error("datastreams.channel() returned NULL for stream %s", streams[i].id);
			PQclear(res);
			return STEP_FATAL;
		}
		pg_free(streams[i].channel);
		streams[i].channel = pg_strdup(PQgetvalue(res, i, 0));
	}
	PQclear(res);

	channel_order = pg_realloc(channel_order, sizeof(int) * nstreams);
	for (int i = 0; i < nstreams; i++)
		channel_order[i] = i;
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

static StepResult
listen_all(PGconn *conn)
{
	char	  **channels = pg_malloc(sizeof(char *) * nstreams);
	StepResult	step;

	for (int i = 0; i < nstreams; i++)
		channels[i] = streams[i].channel;
	step = listen_channels(conn, channels, nstreams);
	pg_free(channels);
	return step;
}

/*
 * Compare every stream's position with what this server has, or, on the
 * first connection without --from, take the server's latest frames as
 * the positions.  This runs after LISTEN, so any frame committed after it
 * is announced by a notification.
 */
static StepResult
check_positions(PGconn *conn)
{
	StepResult	step;
	PGresult   *res;

	res = query_per_stream(conn, "reading the latest frames", POSITIONS_SQL,
						   true, &step);
	if (res == NULL)
		return step;
	for (int i = 0; i < nstreams; i++)
	{
		Stream	   *s = &streams[i];
		const char *val = PQgetvalue(res, i, 0);
		int64		latest = 0;

		if (!PQgetisnull(res, i, 0) && !parse_sequence(val, &latest))
		{
			pg_log_error("datastreams.latest_frame() returned invalid sequence \"%s\" for stream %s",
						 val, s->id);
			PQclear(res);
			return STEP_FATAL;
		}
		if (!positions_known)
		{
			s->last = latest;
			s->from_server = true;
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
	positions_known = true;
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
		pg_log_error("unexpected row from datastreams.frames_since()");
		return STEP_FATAL;
	}
	s = &streams[idx[ord - 1]];
	if (PQgetisnull(res, row, 1) || !parse_sequence(seqval, &seq))
	{
		pg_log_error("datastreams.frames_since() returned a frame of stream %s with invalid sequence \"%s\"",
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

	if (!PQsendQueryParams(conn, FETCH_SQL, 2, NULL, params, NULL, NULL, 0))
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

static StepResult
fetch_all_streams(PGconn *conn)
{
	int		   *all = pg_malloc(sizeof(int) * Max(nstreams, 1));
	StepResult	step;

	for (int i = 0; i < nstreams; i++)
	{
		all[i] = i;
		streams[i].dirty = false;
	}
	ndirty = 0;
	step = fetch_streams(conn, all, nstreams);
	pg_free(all);
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
		positions_known = options.from_given;
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

	if (!options.once && (step = listen_all(conn)) != STEP_OK)
		return step;
	if ((step = check_positions(conn)) != STEP_OK)
		return step;
	if ((step = fetch_all_streams(conn)) != STEP_OK)
		return step;
	next_poll = monotonic_ms() + options.poll_ms;
	return STEP_OK;
}

/*
 * Notifications.
 */

static void
mark_dirty(Stream *s, const NotifyInfo *info)
{
	/* frames up to s->last are printed already */
	if (info->has_sequence && info->sequence <= s->last)
		return;
	if (!s->dirty)
	{
		s->dirty = true;
		dirty_list[ndirty++] = (int) (s - streams);
	}
}

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
			mark_dirty(s, &info);
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
				mark_dirty(&streams[channel_order[mid]], &info);
			return;
		}
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
}

static StepResult
fetch_dirty(PGconn *conn)
{
	int			n = ndirty;
	int		   *list = pg_malloc(sizeof(int) * Max(n, 1));
	StepResult	step;

	/*
	 * Clear the marks first: a notification that arrives during the fetch
	 * must be able to queue the stream again.
	 */
	memcpy(list, dirty_list, sizeof(int) * n);
	for (int i = 0; i < n; i++)
		streams[list[i]].dirty = false;
	ndirty = 0;
	step = fetch_streams(conn, list, n);
	pg_free(list);
	return step;
}

/* One round of waiting for and handling notifications. */
static StepResult
follow_step(PGconn *conn)
{
	PGnotify   *notify;

	while ((notify = PQnotifies(conn)) != NULL)
	{
		handle_notification(notify);
		PQfreemem(notify);
	}
	if (monotonic_ms() >= next_poll)
	{
		static const NotifyInfo no_info;

		/* the safety net, for notifications lost whatever the reason */
		for (int i = 0; i < nstreams; i++)
			mark_dirty(&streams[i], &no_info);
		next_poll = monotonic_ms() + options.poll_ms;
	}
	if (ndirty > 0)
		return fetch_dirty(conn);
	return wait_for_input(conn, next_poll);
}

const ListenMode follow_mode = {
	.setup = follow_setup,
	.step = follow_step,
};
