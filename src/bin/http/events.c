/*-------------------------------------------------------------------------
 *
 * events.c
 *	  GET .../streams/{id}/events: the frames of a stream as Server-Sent
 *	  Events, as they commit.
 *
 * One thread (the hub) owns one database connection.  It LISTENs on the
 * channel of every stream that has subscribers and uses notifications only
 * as wake-ups: the frames themselves are read with frames_since(), in the
 * account's context, after the last sequence each subscriber was sent.
 * So, as with datastreams-listen, nothing depends on one notification per
 * frame or on what a notification carries, and the event ids (the
 * sequences) let a client that reconnects with Last-Event-ID resume
 * without gaps or duplicates.  A subscriber starts after Last-Event-ID,
 * else after ?from=, else after the stream's latest frame; the hub LISTENs
 * before it reads that position, so a frame committed in between is not
 * missed, and it re-reads every stream every few seconds in case a
 * notification was lost (a full queue, a reconnection).
 *
 * Subscribers at the same position share one query: with a hundred
 * browsers on one stream a new frame costs one frames_since() call.  A
 * subscriber whose client reads slowly stops receiving once a megabyte is
 * waiting for it, and catches up with its own queries once drained, so it
 * neither holds memory without bound nor delays the others.
 *
 * Each subscriber's bytes go through a buffer under its own lock.  The
 * content reader (a libmicrohttpd thread) suspends the connection when the
 * buffer is empty and the hub resumes it after appending; both happen
 * under the lock, so a wake-up cannot be lost between the two.  The
 * buffer's memory belongs to libmicrohttpd's response until its free
 * callback, which tells the hub to forget the subscriber.
 *
 * Tokens are checked when a subscriber connects and every few seconds
 * after: a revoked token ends its streams.
 *
 * IDENTIFICATION
 *	  src/bin/http/events.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "http.h"

#define FETCH_BATCH			500
#define FETCH_BATCH_STR		"500"
#define FETCH_BYTES_STR		"1048576"
#define HIGH_WATER_BYTES	(1024 * 1024)
#define LOW_WATER_BYTES		(256 * 1024)
#define KEEPALIVE_MS		15000
#define CATCHUP_MS			5000
#define TOKEN_RECHECK_MS	5000
#define INITIAL_BACKOFF_MS	100
#define MAX_BACKOFF_MS		5000
/* what the browser waits before it reconnects (the SSE "retry" field) */
#define CLIENT_RETRY_MS		"2000"

#define STREAM_SQL \
	"SELECT s.id::pg_catalog.text FROM datastreams.get_stream($1::pg_catalog.uuid) AS s"
#define ACCOUNT_SQL \
	"SELECT pg_catalog.set_config('datastreams.account_id', $1::pg_catalog.text, true)"
#define LATEST_SQL \
	"SELECT f.sequence::pg_catalog.text FROM datastreams.latest_frame($1::pg_catalog.uuid) AS f" \
	" WHERE f.id IS NOT NULL"
/*
 * Up to FETCH_BATCH frames, cut after FETCH_BYTES of JSON (at least one
 * frame), with the number frames_since() returned: a batch of large
 * frames must not land in the gateway's memory at once.
 */
#define FETCH_SQL \
	"SELECT b.sequence, b.json, b.fetched" \
	"  FROM (SELECT f.sequence::pg_catalog.text AS sequence, j.json," \
	"               pg_catalog.sum(pg_catalog.octet_length(j.json))" \
	"                 OVER (ORDER BY f.sequence ROWS UNBOUNDED PRECEDING)" \
	"                 OPERATOR(pg_catalog.-) pg_catalog.octet_length(j.json) AS bytes_before," \
	"               pg_catalog.count(*) OVER () AS fetched," \
	"               f.sequence AS n" \
	"          FROM datastreams.frames_since($1::pg_catalog.uuid, $2::pg_catalog.int8, " \
	FETCH_BATCH_STR ") AS f," \
	"               LATERAL (SELECT pg_catalog.row_to_json(f)::pg_catalog.text AS json) AS j) AS b" \
	" WHERE b.bytes_before OPERATOR(pg_catalog.<) " FETCH_BYTES_STR \
	" ORDER BY b.n"
#define TOKEN_SQL \
	"SELECT datastreams.resolve_api_token($1::pg_catalog.text)"

typedef struct Topic Topic;

struct Subscriber
{
	pthread_mutex_t lock;
	/* under lock: shared with the content reader */
	StrBuf		out;
	size_t		out_pos;
	bool		suspended;		/* the reader suspended the connection */
	bool		gone;			/* libmicrohttpd freed the response */
	bool		ending;			/* end the stream once out is sent */
	bool		throttled;		/* out is over the high-water mark */
	struct MHD_Connection *conn;

	/* the hub's */
	Topic	   *topic;
	Subscriber *next;			/* in topic->subs */
	int64_t		last;			/* last sequence appended */
	bool		behind;			/* frames may be waiting for it */
	int64_t		last_write_ms;
	char	   *token;
	char	   *account;
	char	   *stream;			/* as given in the path */
	bool		has_start;
	int64_t		start;
	Request    *req;			/* until accepted or refused */
	bool		accepted;		/* linked into a topic */
};

struct Topic
{
	char		stream[UUID_TEXT_LEN + 1];	/* canonical */
	char	   *account;
	bool		listening;		/* LISTEN done on the current connection */
	Subscriber *subs;
	Topic	   *next;
};

typedef enum CommandKind
{
	CMD_SUBSCRIBE,
	CMD_DRAINED,
	CMD_GONE,
	CMD_END_ALL
} CommandKind;

typedef struct Command
{
	CommandKind kind;
	Subscriber *sub;
	struct Command *next;
} Command;

static const char *hub_conninfo;
static pthread_t hub_thread;
static bool hub_running;
static int	wake_fd = -1;
static pthread_mutex_t cmd_lock = PTHREAD_MUTEX_INITIALIZER;
static Command *cmd_head;
static Command *cmd_tail;
static bool hub_stop;			/* under cmd_lock */

/* the hub's own state */
static PGconn *conn;
static Topic *topics;
static bool ending_all;
static int64_t next_connect_ms;
static int	backoff_ms = INITIAL_BACKOFF_MS;

static int	nclients;			/* atomic: accepted subscribers */
static int	nsuspended;			/* atomic: SSE connections suspended */

/* ----------------------------------------------------------------
 * Commands from other threads
 * ----------------------------------------------------------------
 */
static void
post(CommandKind kind, Subscriber *sub)
{
	Command    *c = xmalloc(sizeof(Command));
	uint64_t	one = 1;

	c->kind = kind;
	c->sub = sub;
	c->next = NULL;
	pthread_mutex_lock(&cmd_lock);
	if (cmd_tail)
		cmd_tail->next = c;
	else
		cmd_head = c;
	cmd_tail = c;
	pthread_mutex_unlock(&cmd_lock);
	if (write(wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_msg("could not wake the events thread: %s", strerror(errno));
}

static void
subscriber_free(Subscriber *s)
{
	pthread_mutex_destroy(&s->lock);
	sb_free(&s->out);
	free(s->token);
	free(s->account);
	free(s->stream);
	free(s);
}

/* ----------------------------------------------------------------
 * Writing to subscribers (the hub)
 * ----------------------------------------------------------------
 */

/* Append bytes for a subscriber and wake its connection. */
static void
deliver(Subscriber *s, const char *data, size_t len, bool end)
{
	pthread_mutex_lock(&s->lock);
	if (!s->gone)
	{
		if (len > 0)
			sb_append_len(&s->out, data, len);
		if (end)
			s->ending = true;
		if (s->out.len - s->out_pos > HIGH_WATER_BYTES)
			s->throttled = true;
		if (s->suspended)
		{
			s->suspended = false;
			__atomic_sub_fetch(&nsuspended, 1, __ATOMIC_RELAXED);
			MHD_resume_connection(s->conn);
		}
	}
	pthread_mutex_unlock(&s->lock);
	s->last_write_ms = now_ms();
}

static void
end_subscriber(Subscriber *s)
{
	deliver(s, NULL, 0, true);
}

static bool
is_throttled(Subscriber *s)
{
	bool		t;

	pthread_mutex_lock(&s->lock);
	t = s->throttled;
	pthread_mutex_unlock(&s->lock);
	return t;
}

/* ----------------------------------------------------------------
 * The database side (the hub)
 * ----------------------------------------------------------------
 */
static void
connection_lost(void)
{
	if (conn)
	{
		log_msg("events: lost the database connection; reconnecting");
		PQfinish(conn);
	}
	conn = NULL;
	for (Topic *t = topics; t; t = t->next)
		t->listening = false;
	next_connect_ms = now_ms() + backoff_ms;
	backoff_ms = backoff_ms * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : backoff_ms * 2;
}

static bool
exec_ok(const char *sql)
{
	PGresult   *res = PQexec(conn, sql);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		log_msg("events: %s failed: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
	return ok;
}

static bool
listen_topic(Topic *t)
{
	char		sql[128];

	if (t->listening)
		return true;
	snprintf(sql, sizeof(sql), "LISTEN \"datastreams_%s\"", t->stream);
	t->listening = exec_ok(sql);
	return t->listening;
}

static bool
ensure_connection(void)
{
	static const char *const names[] = {"ds_http_ev_stream", "ds_http_ev_account",
	"ds_http_ev_latest", "ds_http_ev_fetch", "ds_http_ev_token"};
	static const char *const sqls[] = {STREAM_SQL, ACCOUNT_SQL, LATEST_SQL, FETCH_SQL, TOKEN_SQL};

	if (conn && PQstatus(conn) == CONNECTION_OK)
		return true;
	if (conn)
		connection_lost();
	if (now_ms() < next_connect_ms)
		return false;
	conn = db_connect(hub_conninfo, "events");
	if (conn == NULL || !db_prepare_auth(conn))
	{
		connection_lost();
		return false;
	}
	for (int i = 0; i < 5; i++)
	{
		PGresult   *res = PQprepare(conn, names[i], sqls[i], 0, NULL);
		bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

		if (!ok)
			log_msg("events: could not prepare %s: %s", names[i], PQresultErrorMessage(res));
		PQclear(res);
		if (!ok)
		{
			connection_lost();
			return false;
		}
	}
	backoff_ms = INITIAL_BACKOFF_MS;
	/* whatever was missed while disconnected is read now */
	for (Topic *t = topics; t; t = t->next)
	{
		if (!listen_topic(t))
		{
			connection_lost();
			return false;
		}
		for (Subscriber *s = t->subs; s; s = s->next)
			s->behind = true;
	}
	return true;
}

/* Run one statement in the account's context: a pipeline of two. */
static PGresult *
run_as(const char *account, const char *name, int nparams, const char *const *params)
{
	const char *names[2] = {"ds_http_ev_account", name};
	int			counts[2] = {1, nparams};
	const char *account_params[1] = {account};
	const char *const *all[2] = {account_params, params};
	PGresult   *results[2];

	if (!pipeline_run(conn, 2, names, counts, all, results))
	{
		connection_lost();
		return NULL;
	}
	PQclear(results[0]);
	return results[1];
}

static Topic *
find_topic(const char *stream)
{
	for (Topic *t = topics; t; t = t->next)
		if (strcmp(t->stream, stream) == 0)
			return t;
	return NULL;
}

static void
drop_topic(Topic *t)
{
	Topic	  **p = &topics;

	while (*p != t)
		p = &(*p)->next;
	*p = t->next;
	if (t->listening && conn && PQstatus(conn) == CONNECTION_OK)
	{
		char		sql[128];

		snprintf(sql, sizeof(sql), "UNLISTEN \"datastreams_%s\"", t->stream);
		if (!exec_ok(sql))
			connection_lost();
	}
	free(t->account);
	free(t);
}

/* Answer a waiting subscription with an error (the request has it). */
static void
refuse(Subscriber *s)
{
	Request    *req = s->req;

	s->req = NULL;
	request_finish_parked(req);
}

/*
 * A new subscription: check the token and the stream, LISTEN, find the
 * starting position, then let the request answer 200.
 */
static void
subscribe(Subscriber *s)
{
	Request    *req = s->req;
	const char *auth_params[2] = {s->token, s->account};
	const char *stream_params[1] = {s->stream};
	const char *names[2] = {auth_statement_name, "ds_http_ev_stream"};
	int			counts[2] = {2, 1};
	const char *const *params[2] = {auth_params, stream_params};
	PGresult   *results[2];
	Topic	   *t;
	char		stream[UUID_TEXT_LEN + 1];

	if (ending_all)
	{
		request_set_error(req, 503, "57P01", "the gateway is shutting down", NULL, NULL);
		req->retry_after = true;
		refuse(s);
		return;
	}
	if (!ensure_connection() || !pipeline_run(conn, 2, names, counts, params, results))
	{
		if (conn)
			connection_lost();
		error_unavailable(req, NULL);
		refuse(s);
		return;
	}
	if (auth_check(req, results[0]) && PQresultStatus(results[1]) != PGRES_TUPLES_OK)
		error_from_result(req, results[1]);
	if (req->done)
	{
		/* auth_check() or error_from_result() gave the request its error */
		PQclear(results[0]);
		PQclear(results[1]);
		refuse(s);
		return;
	}
	snprintf(stream, sizeof(stream), "%s", PQgetvalue(results[1], 0, 0));
	PQclear(results[0]);
	PQclear(results[1]);

	t = find_topic(stream);
	if (t == NULL)
	{
		t = xcalloc(1, sizeof(Topic));
		memcpy(t->stream, stream, sizeof(stream));
		t->account = xstrdup(s->account);
		t->next = topics;
		topics = t;
	}
	if (!listen_topic(t))
	{
		connection_lost();
		if (t->subs == NULL)
			drop_topic(t);
		error_unavailable(req, NULL);
		refuse(s);
		return;
	}

	if (s->has_start)
		s->last = s->start;
	else
	{
		const char *latest_params[1] = {t->stream};
		PGresult   *res = run_as(t->account, "ds_http_ev_latest", 1, latest_params);

		if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			if (res)
				error_from_result(req, res);
			else
				error_unavailable(req, NULL);
			PQclear(res);
			if (t->subs == NULL)
				drop_topic(t);
			refuse(s);
			return;
		}
		s->last = PQntuples(res) > 0 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
		PQclear(res);
	}

	s->topic = t;
	s->next = t->subs;
	t->subs = s;
	s->behind = true;
	s->last_write_ms = now_ms();
	s->req = NULL;
	s->accepted = true;
	__atomic_add_fetch(&nclients, 1, __ATOMIC_RELAXED);
	req->status = 200;
	request_finish_parked(req);
}

static void
unsubscribe(Subscriber *s)
{
	Topic	   *t = s->topic;

	if (t != NULL)
	{
		Subscriber **p = &t->subs;

		while (*p && *p != s)
			p = &(*p)->next;
		if (*p)
			*p = s->next;
		__atomic_sub_fetch(&nclients, 1, __ATOMIC_RELAXED);
		if (t->subs == NULL)
			drop_topic(t);
	}
	subscriber_free(s);
}

/* One SSE event per frame: id is the sequence, data the frame's JSON. */
static void
append_event(StrBuf *ev, const char *sequence, const char *row_json)
{
	StrBuf		json;
	const char *p;

	sb_init(&json);
	append_frame_json(&json, row_json, sequence);
	sb_printf(ev, "id: %s\ndata: ", sequence);
	/* row_to_json never breaks lines, but a line break would end the event */
	for (p = json.data; *p; p++)
	{
		if (*p == '\n')
			sb_append(ev, "\ndata: ");
		else if (*p != '\r')
			sb_append_len(ev, p, 1);
	}
	sb_append(ev, "\n\n");
	sb_free(&json);
}

/*
 * Read frames for the subscribers of t that are behind, one query per
 * distinct position, the most advanced (usually everybody) first.  Returns
 * true when some are still behind (a full batch came back).
 */
static bool
fetch_topic(Topic *t)
{
	bool		more = false;
	int64_t		done_below = INT64_MAX;

	for (;;)
	{
		int64_t		pos = -1;
		char		pos_text[24];
		const char *params[2] = {t->stream, pos_text};
		PGresult   *res;
		StrBuf		events;
		int			rows;
		bool		behind;
		int64_t		new_last;

		for (Subscriber *s = t->subs; s; s = s->next)
			if (s->behind && s->last < done_below && s->last > pos && !is_throttled(s))
				pos = s->last;
		if (pos < 0)
			break;
		done_below = pos;
		snprintf(pos_text, sizeof(pos_text), "%" PRId64, pos);
		res = run_as(t->account, "ds_http_ev_fetch", 2, params);
		if (res == NULL)
			return false;		/* connection lost: everyone catches up later */
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

			/* the stream is gone or the account may no longer read it */
			log_msg("events: reading stream %s failed: %s", t->stream, PQresultErrorMessage(res));
			PQclear(res);
			if (state && status_for_sqlstate(state) == 503)
				return false;
			for (Subscriber *s = t->subs; s; s = s->next)
			{
				s->behind = false;
				end_subscriber(s);
			}
			return false;
		}
		rows = PQntuples(res);
		/* more to read: the batch was cut by size, or frames_since() was */
		behind = rows > 0 && (rows < atoi(PQgetvalue(res, 0, 2)) ||
							  atoi(PQgetvalue(res, 0, 2)) == FETCH_BATCH);
		sb_init(&events);
		for (int i = 0; i < rows; i++)
			append_event(&events, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
		new_last = rows > 0 ? strtoll(PQgetvalue(res, rows - 1, 0), NULL, 10) : pos;
		PQclear(res);

		for (Subscriber *s = t->subs; s; s = s->next)
		{
			if (!s->behind || s->last != pos || is_throttled(s))
				continue;
			if (rows > 0)
				deliver(s, events.data, events.len, false);
			s->last = new_last;
			s->behind = behind;
			more |= behind;
		}
		sb_free(&events);
	}
	return more;
}

static void
read_notifications(void)
{
	PGnotify   *n;

	if (!PQconsumeInput(conn))
	{
		connection_lost();
		return;
	}
	while ((n = PQnotifies(conn)) != NULL)
	{
		const char *prefix = "datastreams_";
		Topic	   *t = NULL;

		if (strncmp(n->relname, prefix, strlen(prefix)) == 0)
			t = find_topic(n->relname + strlen(prefix));
		if (t)
			for (Subscriber *s = t->subs; s; s = s->next)
				s->behind = true;
		PQfreemem(n);
	}
}

/* End the streams whose token was revoked (or moved to another account). */
static void
recheck_tokens(void)
{
	typedef struct
	{
		const char *token;
		const char *account;
		bool		valid;
	}			Checked;
	Checked    *checked = NULL;
	int			nchecked = 0;

	for (Topic *t = topics; t; t = t->next)
		for (Subscriber *s = t->subs; s; s = s->next)
		{
			int			i;

			for (i = 0; i < nchecked; i++)
				if (strcmp(checked[i].token, s->token) == 0 &&
					strcmp(checked[i].account, s->account) == 0)
					break;
			if (i == nchecked)
			{
				const char *params[1] = {s->token};
				PGresult   *res = PQexecPrepared(conn, "ds_http_ev_token", 1, params, NULL, NULL, 0);

				if (PQresultStatus(res) != PGRES_TUPLES_OK)
				{
					PQclear(res);
					if (PQstatus(conn) != CONNECTION_OK)
						connection_lost();
					free(checked);
					return;
				}
				checked = xrealloc(checked, sizeof(Checked) * (nchecked + 1));
				checked[nchecked].token = s->token;
				checked[nchecked].account = s->account;
				checked[nchecked].valid = !PQgetisnull(res, 0, 0) &&
					strcmp(PQgetvalue(res, 0, 0), s->account) == 0;
				nchecked++;
				PQclear(res);
			}
			if (!checked[i].valid)
				end_subscriber(s);
		}
	free(checked);
}

static void
run_command(Command *c)
{
	switch (c->kind)
	{
		case CMD_SUBSCRIBE:
			subscribe(c->sub);
			break;
		case CMD_DRAINED:
			if (c->sub->topic)
				c->sub->behind = true;
			break;
		case CMD_GONE:
			unsubscribe(c->sub);
			break;
		case CMD_END_ALL:
			ending_all = true;
			for (Topic *t = topics; t; t = t->next)
				for (Subscriber *s = t->subs; s; s = s->next)
					end_subscriber(s);
			break;
	}
}

/* Returns false when the hub must stop. */
static bool
run_commands(void)
{
	Command    *c;
	bool		stop;

	pthread_mutex_lock(&cmd_lock);
	c = cmd_head;
	cmd_head = cmd_tail = NULL;
	stop = hub_stop;
	pthread_mutex_unlock(&cmd_lock);
	while (c)
	{
		Command    *next = c->next;

		run_command(c);
		free(c);
		c = next;
	}
	return !stop;
}

static void *
hub_main(void *arg)
{
	int64_t		next_catchup = now_ms() + CATCHUP_MS;
	int64_t		next_token_check = now_ms() + TOKEN_RECHECK_MS;

	(void) arg;
	while (run_commands())
	{
		bool		more = false;
		int64_t		now;
		int			timeout;
		struct pollfd fds[2];
		int			nfds = 1;

		if (topics && ensure_connection())
		{
			read_notifications();
			for (Topic *t = topics; t && conn; t = t->next)
				more |= fetch_topic(t);
		}

		now = now_ms();
		for (Topic *t = topics; t; t = t->next)
			for (Subscriber *s = t->subs; s; s = s->next)
				if (now - s->last_write_ms >= KEEPALIVE_MS)
					deliver(s, ": keepalive\n\n", 13, false);
		if (now >= next_catchup)
		{
			for (Topic *t = topics; t; t = t->next)
				for (Subscriber *s = t->subs; s; s = s->next)
					s->behind = true;
			next_catchup = now + CATCHUP_MS;
			more = true;
		}
		if (now >= next_token_check)
		{
			if (topics && conn)
				recheck_tokens();
			next_token_check = now + TOKEN_RECHECK_MS;
		}

		timeout = more ? 0 : (int) (next_catchup - now);
		if (next_token_check - now < timeout)
			timeout = (int) (next_token_check - now);
		if (timeout > KEEPALIVE_MS)
			timeout = KEEPALIVE_MS;
		if (topics && conn == NULL && !more)
		{
			int64_t		wait = next_connect_ms - now;

			timeout = wait < 0 ? 0 : wait < timeout ? (int) wait : timeout;
		}
		if (timeout < 0)
			timeout = 0;
		fds[0].fd = wake_fd;
		fds[0].events = POLLIN;
		if (conn)
		{
			fds[1].fd = PQsocket(conn);
			fds[1].events = POLLIN;
			nfds = 2;
		}
		if (poll(fds, nfds, timeout) > 0 && (fds[0].revents & POLLIN))
		{
			uint64_t	count;

			if (read(wake_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
				log_msg("events: could not read the wake-up counter: %s", strerror(errno));
		}
	}
	return NULL;
}

/* ----------------------------------------------------------------
 * The libmicrohttpd side
 * ----------------------------------------------------------------
 */
static ssize_t
sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	Subscriber *s = cls;
	ssize_t		n;
	bool		drained = false;

	(void) pos;
	pthread_mutex_lock(&s->lock);
	if (s->out.len > s->out_pos)
	{
		size_t		avail = s->out.len - s->out_pos;

		n = (ssize_t) (avail < max ? avail : max);
		memcpy(buf, s->out.data + s->out_pos, (size_t) n);
		s->out_pos += (size_t) n;
		if (s->out_pos == s->out.len)
		{
			sb_reset(&s->out);
			s->out_pos = 0;
		}
		else if (s->out_pos > 65536 && s->out_pos > s->out.len / 2)
		{
			memmove(s->out.data, s->out.data + s->out_pos, s->out.len - s->out_pos);
			s->out.len -= s->out_pos;
			s->out_pos = 0;
		}
		if (s->throttled && s->out.len - s->out_pos < LOW_WATER_BYTES)
		{
			s->throttled = false;
			drained = true;
		}
	}
	else if (s->ending)
		n = MHD_CONTENT_READER_END_OF_STREAM;
	else
	{
		/* nothing to send: sleep until the hub appends something */
		s->suspended = true;
		__atomic_add_fetch(&nsuspended, 1, __ATOMIC_RELAXED);
		MHD_suspend_connection(s->conn);
		n = 0;
	}
	pthread_mutex_unlock(&s->lock);
	if (drained)
		post(CMD_DRAINED, s);
	return n;
}

static void
sse_free(void *cls)
{
	Subscriber *s = cls;

	pthread_mutex_lock(&s->lock);
	s->gone = true;
	pthread_mutex_unlock(&s->lock);
	post(CMD_GONE, s);
}

static bool
parse_position(const char *text, int64_t *out)
{
	char	   *end;
	long long	v;

	if (text == NULL || *text < '0' || *text > '9')
		return false;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0)
		return false;
	*out = v;
	return true;
}

/*
 * Check the request's positions and hand it to the hub, parked.  Returns
 * false when the request already has its (error) response.
 */
bool
events_begin(Request *req, const char *last_event_id, const char *from)
{
	Subscriber *s;
	int64_t		start = 0;
	bool		has_start = false;

	if (last_event_id != NULL && *last_event_id != '\0')
	{
		if (!parse_position(last_event_id, &start))
		{
			request_set_error(req, 400, "22P02", "invalid Last-Event-ID", NULL,
							  "Last-Event-ID is the sequence of the last frame received.");
			return false;
		}
		has_start = true;
	}
	else if (from != NULL)
	{
		if (!parse_position(from, &start))
		{
			request_set_error(req, 400, "22P02", "invalid from", NULL,
							  "from is a sequence: the events start after it (0: every frame).");
			return false;
		}
		has_start = true;
	}
	if (!hub_running)
	{
		request_set_error(req, 503, "57P01", "the events thread is not running", NULL, NULL);
		return false;
	}

	s = xcalloc(1, sizeof(Subscriber));
	pthread_mutex_init(&s->lock, NULL);
	sb_init(&s->out);
	sb_append(&s->out, "retry: " CLIENT_RETRY_MS "\n\n");
	s->conn = req->conn;
	s->token = xstrdup(req->token);
	s->account = xstrdup(req->account);
	s->stream = xstrdup(req->stream);
	s->has_start = has_start;
	s->start = start;
	s->req = req;
	req->subscriber = s;
	req->parked = true;
	MHD_suspend_connection(req->conn);
	post(CMD_SUBSCRIBE, s);
	return true;
}

/* The request was accepted by the hub: start the event stream. */
enum MHD_Result
events_respond(Request *req)
{
	Subscriber *s = req->subscriber;
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, s, sse_free);
	if (resp == NULL)
	{
		sse_free(s);
		req->subscriber = NULL;
		return MHD_NO;
	}
	req->subscriber = NULL;		/* the response owns it now */
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	ret = MHD_queue_response(req->conn, 200, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		req->log_status = 200;
	return ret;
}

/*
 * The request is over.  A subscriber the hub refused is ours to free; one
 * it accepted but whose response never started (the connection closed at
 * shutdown) is the hub's to unlink.
 */
void
events_request_gone(Request *req)
{
	Subscriber *s = req->subscriber;

	if (s == NULL)
		return;
	req->subscriber = NULL;
	if (s->accepted)
		post(CMD_GONE, s);
	else
		subscriber_free(s);
}

bool
events_start(const char *conninfo)
{
	int			rc;

	hub_conninfo = conninfo;
	wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (wake_fd < 0)
	{
		log_msg("could not create an eventfd: %s", strerror(errno));
		return false;
	}
	rc = pthread_create(&hub_thread, NULL, hub_main, NULL);
	if (rc != 0)
	{
		log_msg("could not start the events thread: %s", strerror(rc));
		return false;
	}
	hub_running = true;
	return true;
}

/* Shutdown, step 1: end every stream (refuse new ones). */
void
events_end_all(void)
{
	if (hub_running)
		post(CMD_END_ALL, NULL);
}

/* Event streams whose connection waits for the hub. */
int
events_suspended(void)
{
	return __atomic_load_n(&nsuspended, __ATOMIC_RELAXED);
}

int
events_clients(void)
{
	return __atomic_load_n(&nclients, __ATOMIC_RELAXED);
}

/* Shutdown, step 2 (libmicrohttpd stopped): end the thread, free it all. */
void
events_stop(void)
{
	uint64_t	one = 1;

	if (!hub_running)
		return;
	pthread_mutex_lock(&cmd_lock);
	hub_stop = true;
	pthread_mutex_unlock(&cmd_lock);
	if (write(wake_fd, &one, sizeof(one)) < 0)
		log_msg("could not wake the events thread: %s", strerror(errno));
	pthread_join(hub_thread, NULL);
	hub_running = false;
	/* the responses freed by libmicrohttpd's stop posted their last words */
	while (cmd_head)
	{
		Command    *c = cmd_head;

		cmd_head = c->next;
		if (c->kind == CMD_GONE)
			unsubscribe(c->sub);
		free(c);
	}
	cmd_tail = NULL;
	while (topics)
	{
		Topic	   *t = topics;

		while (t->subs)
		{
			Subscriber *s = t->subs;

			t->subs = s->next;
			subscriber_free(s);
		}
		topics = t->next;
		free(t->account);
		free(t);
	}
	if (conn)
		PQfinish(conn);
	conn = NULL;
	close(wake_fd);
	wake_fd = -1;
}
