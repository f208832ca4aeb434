/*-------------------------------------------------------------------------
 *
 * pool.c
 *	  The pool of database connections that serves the API requests.
 *
 * Each worker thread owns one libpq connection and takes parked requests
 * from a queue.  A request is one implicit transaction sent as a pipeline
 * (one round trip): the authentication statement, which resolves the
 * bearer token with datastreams.resolve_api_token() and, only when the
 * token belongs to the account named in the path, sets
 * datastreams.account_id for this transaction (set_config(..., true), the
 * function form of SET LOCAL); then the API call; then Sync, which commits
 * or, after an error, rolls back.  When the token is bad or belongs to
 * another account the call runs without an account and fails in
 * require_account(), so nothing is ever done for the wrong account; the
 * gateway then answers 401 or 403 from the first statement's result.
 *
 * All statements are prepared once per connection and schema-qualify every
 * name and operator, like the extension's own SQL.
 *
 * IDENTIFICATION
 *	  src/bin/http/pool.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"

/*
 * A request that waited this long for a connection is answered 503 rather
 * than run: its client has most likely given up, and under overload the
 * queue must not grow stale.
 */
#define QUEUE_DEADLINE_MS	10000

/* Wait at least this long between two connection attempts of a worker. */
#define RECONNECT_DELAY_MS	500

typedef struct Statement
{
	const char *name;
	const char *sql;
} Statement;

const char *auth_statement_name = "ds_http_auth";

/*
 * The token's account, and the account setting only when it equals the
 * path's account.  OFFSET 0 keeps the token resolved once.
 */
#define AUTH_SQL \
	"SELECT a.account," \
	"       CASE WHEN a.account OPERATOR(pg_catalog.=) $2::pg_catalog.text" \
	"            THEN pg_catalog.set_config('datastreams.account_id', $2::pg_catalog.text, true) END" \
	"  FROM (SELECT datastreams.resolve_api_token($1::pg_catalog.text) AS account OFFSET 0) AS a"

/* indexed by Op */
static const Statement op_statements[NUM_OPS] = {
	[OP_HEALTH] = {"ds_http_health", "SELECT 1"},
	[OP_LIST_STREAMS] = {"ds_http_list_streams",
		"SELECT pg_catalog.row_to_json(s)::pg_catalog.text"
		"  FROM datastreams.list_streams() AS s"},
	[OP_CREATE_STREAM] = {"ds_http_create_stream",
		"SELECT pg_catalog.row_to_json(s)::pg_catalog.text, s.id::pg_catalog.text"
		"  FROM datastreams.create_stream("
		"         name => $1::pg_catalog.text,"
		"         symbol => $2::pg_catalog.text,"
		"         description => $3::pg_catalog.text,"
		"         frequency => $4::pg_catalog.interval,"
		"         sla_ms => $5::pg_catalog.int4,"
		"         status => $6::pg_catalog.text,"
		"         metadata => $7::pg_catalog.jsonb,"
		"         retention => $8::pg_catalog.interval) AS s"},
	[OP_GET_STREAM] = {"ds_http_get_stream",
		"SELECT pg_catalog.row_to_json(s)::pg_catalog.text"
		"  FROM datastreams.get_stream($1::pg_catalog.uuid) AS s"},
	[OP_UPDATE_STREAM] = {"ds_http_update_stream",
		"SELECT pg_catalog.row_to_json(s)::pg_catalog.text"
		"  FROM datastreams.update_stream($1::pg_catalog.uuid, $2::pg_catalog.jsonb) AS s"},
	[OP_LIST_FRAMES] = {"ds_http_list_frames",
		"SELECT pg_catalog.row_to_json(f)::pg_catalog.text, f.sequence::pg_catalog.text"
		"  FROM datastreams.list_frames($1::pg_catalog.uuid, $2::pg_catalog.int4,"
		"                               $3::pg_catalog.int8) AS f"},
	[OP_CREATE_FRAME] = {"ds_http_create_frame",
		"SELECT pg_catalog.row_to_json(f)::pg_catalog.text, f.sequence::pg_catalog.text"
		"  FROM datastreams.create_frame("
		"         stream_id => $1::pg_catalog.uuid,"
		"         sequence => $2::pg_catalog.int8,"
		"         payload => $3::pg_catalog.jsonb,"
		"         latency_ms => $4::pg_catalog.int4,"
		"         status => $5::pg_catalog.text,"
		"         metadata => $6::pg_catalog.jsonb) AS f"},
	[OP_LATEST_FRAME] = {"ds_http_latest_frame",
		"SELECT pg_catalog.row_to_json(f)::pg_catalog.text, f.sequence::pg_catalog.text"
		"  FROM datastreams.latest_frame($1::pg_catalog.uuid) AS f"
		" WHERE f.id IS NOT NULL"},
};

typedef struct Worker
{
	pthread_t	thread;
	PGconn	   *conn;
	int64_t		next_attempt_ms;	/* no connection attempt before this */
	char	   *setup_error;	/* why the last connection was unusable */
	char	   *setup_sqlstate;
} Worker;

static const char *pool_conninfo;
static Worker *workers;
static int	nworkers;
static volatile int nconnected;

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cond = PTHREAD_COND_INITIALIZER;
static Request *queue_head;
static Request *queue_tail;
static int	queue_len;
static bool queue_stopping;

static char *
flatten(const char *msg)
{
	char	   *s = xstrdup(msg ? msg : "");
	size_t		n = strlen(s);

	for (size_t i = 0; i < n; i++)
		if (s[i] == '\n' || s[i] == '\r' || s[i] == '\t')
			s[i] = ' ';
	while (n > 0 && s[n - 1] == ' ')
		s[--n] = '\0';
	return s;
}

static void
notice_processor(void *arg, const char *message)
{
	char	   *flat = flatten(message);

	log_msg("server notice (%s): %s", (const char *) arg, flat);
	free(flat);
}

/*
 * Connect with the user's connection string; client_encoding is forced to
 * UTF8 because request and response bodies are UTF-8 JSON.  Returns NULL
 * (after logging why) when the server cannot be reached.
 */
PGconn *
db_connect(const char *conninfo, const char *purpose)
{
	const char *keywords[] = {"dbname", "fallback_application_name", "client_encoding", NULL};
	const char *values[] = {conninfo, PROGNAME, "UTF8", NULL};
	PGconn	   *conn = PQconnectdbParams(keywords, values, 1);

	if (conn == NULL)
		return NULL;
	if (PQstatus(conn) != CONNECTION_OK)
	{
		char	   *msg = flatten(PQerrorMessage(conn));

		log_msg("could not connect (%s): %s", purpose, msg);
		free(msg);
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, notice_processor, (void *) purpose);
	return conn;
}

static bool
prepare(PGconn *conn, const char *name, const char *sql, char **error, char **sqlstate)
{
	PGresult   *res = PQprepare(conn, name, sql, 0, NULL);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		*error = flatten(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
						 PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) :
						 PQerrorMessage(conn));
		*sqlstate = xstrdup(state ? state : "08006");
		log_msg("could not prepare %s: %s (SQLSTATE %s)", name, *error, *sqlstate);
	}
	PQclear(res);
	return ok;
}

/* The authentication statement, on any connection that serves requests. */
bool
db_prepare_auth(PGconn *conn)
{
	char	   *error = NULL;
	char	   *sqlstate = NULL;
	bool		ok = prepare(conn, auth_statement_name, AUTH_SQL, &error, &sqlstate);

	free(error);
	free(sqlstate);
	return ok;
}

/*
 * Make sure the worker has a usable connection: connected, and every
 * statement prepared (which fails, e.g., when the extension or its 1.2
 * functions are missing: the error is kept for the 503 responses).
 */
static bool
worker_connection(Worker *w)
{
	int64_t		now = now_ms();

	if (w->conn != NULL && PQstatus(w->conn) == CONNECTION_OK)
		return true;
	if (w->conn != NULL)
	{
		PQfinish(w->conn);
		w->conn = NULL;
		__atomic_sub_fetch(&nconnected, 1, __ATOMIC_RELAXED);
	}
	if (now < w->next_attempt_ms)
		return false;
	w->next_attempt_ms = now + RECONNECT_DELAY_MS;
	free(w->setup_error);
	free(w->setup_sqlstate);
	w->setup_error = w->setup_sqlstate = NULL;

	w->conn = db_connect(pool_conninfo, "request pool");
	if (w->conn == NULL)
		return false;
	if (!prepare(w->conn, auth_statement_name, AUTH_SQL, &w->setup_error, &w->setup_sqlstate))
		goto unusable;
	for (int i = 0; i < NUM_OPS; i++)
		if (!prepare(w->conn, op_statements[i].name, op_statements[i].sql,
					 &w->setup_error, &w->setup_sqlstate))
			goto unusable;
	__atomic_add_fetch(&nconnected, 1, __ATOMIC_RELAXED);
	return true;

unusable:
	PQfinish(w->conn);
	w->conn = NULL;
	return false;
}

/*
 * Send the statements as one pipeline and collect one result per
 * statement.  Returns false when the connection failed (the results are
 * then cleared); an SQL error is a result like any other.
 */
bool
pipeline_run(PGconn *conn, int nstmts, const char *const *names, const int *nparams,
			 const char *const *const *params, PGresult **results)
{
	bool		ok = true;
	PGresult   *res;

	for (int i = 0; i < nstmts; i++)
		results[i] = NULL;
	if (!PQenterPipelineMode(conn))
		return false;
	for (int i = 0; i < nstmts && ok; i++)
		ok = PQsendQueryPrepared(conn, names[i], nparams[i], params[i], NULL, NULL, 0) == 1;
	ok = ok && PQpipelineSync(conn) == 1;

	for (int i = 0; i < nstmts && ok; i++)
	{
		results[i] = PQgetResult(conn);
		if (results[i] == NULL)
		{
			ok = false;
			break;
		}
		/* each statement's results end with a NULL */
		while ((res = PQgetResult(conn)) != NULL)
		{
			if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
			{
				PQclear(res);
				ok = false;
				break;
			}
			PQclear(res);
		}
	}
	if (ok)
	{
		res = PQgetResult(conn);
		ok = res != NULL && PQresultStatus(res) == PGRES_PIPELINE_SYNC;
		PQclear(res);
	}
	if (ok)
		ok = PQexitPipelineMode(conn) == 1;
	if (!ok || PQstatus(conn) != CONNECTION_OK)
	{
		for (int i = 0; i < nstmts; i++)
		{
			PQclear(results[i]);
			results[i] = NULL;
		}
		return false;
	}
	return true;
}

/*
 * The HTTP status that tells the truth about a SQLSTATE (docs/http.md has
 * the table).  A paused stream (55000) is 409 Conflict: the request is
 * valid but the resource's state refuses it, as for a duplicate sequence;
 * the body's code tells the two apart.
 */
int
status_for_sqlstate(const char *s)
{
	if (s == NULL || strlen(s) != 5)
		return 500;
	if (strcmp(s, "P0002") == 0)
		return 404;
	if (strcmp(s, "23505") == 0 || strcmp(s, "55000") == 0)
		return 409;
	if (strcmp(s, "54000") == 0)
		return 413;
	if (strcmp(s, "42501") == 0)
		return 403;
	if (strncmp(s, "22", 2) == 0 || strncmp(s, "23", 2) == 0 || strcmp(s, "54001") == 0)
		return 400;
	/* the database is unreachable, overloaded, shutting down or read-only */
	if (strncmp(s, "08", 2) == 0 || strncmp(s, "53", 2) == 0 || strncmp(s, "57", 2) == 0 ||
		strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 || strcmp(s, "25006") == 0)
		return 503;
	return 500;
}

void
error_from_result(Request *req, const PGresult *res)
{
	const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	int			status;

	if (sqlstate == NULL)
		sqlstate = "XX000";
	if (message == NULL)
		message = PQresultErrorMessage(res);
	status = status_for_sqlstate(sqlstate);
	if (status == 500)
		log_msg("unexpected error for %s %s: %s (SQLSTATE %s)", req->method, req->path,
				message, sqlstate);
	request_set_error(req, status, sqlstate, message,
					  PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL),
					  PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
	req->retry_after = status == 503;
}

/*
 * 503 for a request the database could not serve.  The libpq message goes
 * to the log only: it names hosts and sockets, which clients need not see.
 */
void
error_unavailable(Request *req, PGconn *conn)
{
	if (conn != NULL && PQerrorMessage(conn)[0] != '\0')
	{
		char	   *msg = flatten(PQerrorMessage(conn));

		log_msg("database error for %s %s: %s", req->method, req->path, msg);
		free(msg);
	}
	request_set_error(req, 503, "08006", "the database is unavailable", NULL,
					  "Retry later; GET /healthz tells when the database is reachable again.");
	req->retry_after = true;
}

/*
 * Interpret the authentication statement's result: true when the token
 * belongs to the path's account; otherwise the request has its 401, 403 or
 * error response.
 */
bool
auth_check(Request *req, PGresult *auth)
{
	if (PQresultStatus(auth) != PGRES_TUPLES_OK)
	{
		error_from_result(req, auth);
		/* EXECUTE not granted, function missing: the operator's problem */
		if (req->status < 500)
			req->status = 500;
		return false;
	}
	if (PQntuples(auth) != 1 || PQgetisnull(auth, 0, 0))
	{
		request_set_error(req, 401, "28000", "invalid or revoked token", NULL,
						  "Send a token made by datastreams.create_api_token() as \"Authorization: Bearer <token>\".");
		return false;
	}
	free(req->log_account);
	req->log_account = xstrdup(PQgetvalue(auth, 0, 0));
	if (PQgetisnull(auth, 0, 1))
	{
		request_set_error(req, 403, "42501", "the token does not belong to this account", NULL,
						  "Use the account the token was made for in the path.");
		return false;
	}
	return true;
}

/*
 * A frame as the SQL API returns it (row_to_json of the frames row) plus
 * "sequence_text", the sequence as a string: sequences are Unix
 * nanoseconds, above 2^53, which JavaScript's JSON.parse rounds.
 */
void
append_frame_json(StrBuf *sb, const char *row_json, const char *sequence_text)
{
	size_t		n = strlen(row_json);

	if (n == 0 || row_json[n - 1] != '}')
	{
		sb_append(sb, row_json);	/* cannot happen: row_to_json is an object */
		return;
	}
	sb_append_len(sb, row_json, n - 1);
	sb_append(sb, ",\"sequence_text\":");
	sb_append_json_string(sb, sequence_text, strlen(sequence_text));
	sb_append(sb, "}");
}

/* The response of a successful API call. */
static void
shape_response(Request *req, PGresult *res)
{
	int			rows = PQntuples(res);

	req->status = 200;
	sb_reset(&req->response);
	switch (req->op)
	{
		case OP_HEALTH:
			sb_append(&req->response, "{\"status\":\"ok\"}");
			break;
		case OP_LIST_STREAMS:
			sb_append(&req->response, "[");
			for (int i = 0; i < rows; i++)
			{
				if (i > 0)
					sb_append(&req->response, ",");
				sb_append(&req->response, PQgetvalue(res, i, 0));
			}
			sb_append(&req->response, "]");
			break;
		case OP_CREATE_STREAM:
			req->status = 201;
			sb_append(&req->response, PQgetvalue(res, 0, 0));
			{
				StrBuf		loc;

				sb_init(&loc);
				sb_append(&loc, req->path);
				sb_append(&loc, "/");
				sb_append(&loc, PQgetvalue(res, 0, 1));
				free(req->location);
				req->location = sb_detach(&loc);
			}
			break;
		case OP_GET_STREAM:
		case OP_UPDATE_STREAM:
			sb_append(&req->response, PQgetvalue(res, 0, 0));
			break;
		case OP_LIST_FRAMES:
			sb_append(&req->response, "[");
			for (int i = 0; i < rows; i++)
			{
				if (i > 0)
					sb_append(&req->response, ",");
				append_frame_json(&req->response, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
			}
			sb_append(&req->response, "]");
			break;
		case OP_CREATE_FRAME:
			req->status = 201;
			append_frame_json(&req->response, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
			break;
		case OP_LATEST_FRAME:
			if (rows == 0)
			{
				request_set_error(req, 404, "P0002", "the stream has no frame yet", NULL, NULL);
				return;
			}
			append_frame_json(&req->response, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
			break;
		default:
			request_set_error(req, 500, "XX000", "unexpected operation", NULL, NULL);
			break;
	}
}

static void
serve(Worker *w, Request *req)
{
	const char *names[2];
	int			nparams[2];
	const char *const *params[2];
	const char *auth_params[2] = {req->token, req->account};
	PGresult   *results[2];
	int			n = 0;
	bool		authenticated = req->op != OP_HEALTH;

	if (!worker_connection(w))
	{
		if (w->setup_error != NULL)
		{
			request_set_error(req, 503, w->setup_sqlstate, "the database is not ready for the gateway",
							  w->setup_error,
							  "Check that the extension datastreams 1.2 is installed and that the gateway's role may execute datastreams.resolve_api_token().");
			req->retry_after = true;
		}
		else
			error_unavailable(req, NULL);
		return;
	}
	if (authenticated)
	{
		names[n] = auth_statement_name;
		nparams[n] = 2;
		params[n++] = auth_params;
	}
	names[n] = op_statements[req->op].name;
	nparams[n] = req->nparams;
	params[n++] = (const char *const *) req->params;

	if (!pipeline_run(w->conn, n, names, nparams, params, results))
	{
		error_unavailable(req, w->conn);
		return;
	}
	if (!authenticated || auth_check(req, results[0]))
	{
		PGresult   *res = results[n - 1];

		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			shape_response(req, res);
		else
			error_from_result(req, res);
	}
	for (int i = 0; i < n; i++)
		PQclear(results[i]);
}

static void *
worker_main(void *arg)
{
	Worker	   *w = arg;

	for (;;)
	{
		Request    *req;

		pthread_mutex_lock(&queue_lock);
		while (queue_head == NULL && !queue_stopping)
			pthread_cond_wait(&queue_cond, &queue_lock);
		req = queue_head;
		if (req == NULL)
		{
			pthread_mutex_unlock(&queue_lock);
			break;
		}
		queue_head = req->next_in_queue;
		if (queue_head == NULL)
			queue_tail = NULL;
		queue_len--;
		pthread_mutex_unlock(&queue_lock);

		if (seconds_since(&req->queued) * 1000 > QUEUE_DEADLINE_MS)
		{
			request_set_error(req, 503, "53300", "the gateway is overloaded", NULL,
							  "The request waited too long for a database connection; retry later or raise --pool.");
			req->retry_after = true;
		}
		else
			serve(w, req);
		request_finish_parked(req);
	}
	if (w->conn)
		PQfinish(w->conn);
	w->conn = NULL;
	return NULL;
}

bool
pool_start(const char *conninfo, int size)
{
	pool_conninfo = conninfo;
	nworkers = size;
	workers = xcalloc(size, sizeof(Worker));
	for (int i = 0; i < size; i++)
	{
		int			rc = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);

		if (rc != 0)
		{
			log_msg("could not start a pool thread: %s", strerror(rc));
			return false;
		}
	}
	return true;
}

/* Hand a parked request to the next free worker. */
void
pool_submit(Request *req)
{
	clock_gettime(CLOCK_MONOTONIC, &req->queued);
	req->next_in_queue = NULL;
	pthread_mutex_lock(&queue_lock);
	if (queue_tail)
		queue_tail->next_in_queue = req;
	else
		queue_head = req;
	queue_tail = req;
	queue_len++;
	pthread_cond_signal(&queue_cond);
	pthread_mutex_unlock(&queue_lock);
}

/* Serve what is queued, then end the workers. */
void
pool_stop(void)
{
	pthread_mutex_lock(&queue_lock);
	queue_stopping = true;
	pthread_cond_broadcast(&queue_cond);
	pthread_mutex_unlock(&queue_lock);
	for (int i = 0; i < nworkers; i++)
		pthread_join(workers[i].thread, NULL);
	for (int i = 0; i < nworkers; i++)
	{
		free(workers[i].setup_error);
		free(workers[i].setup_sqlstate);
	}
	free(workers);
	workers = NULL;
	nworkers = 0;
}

int
pool_queue_length(void)
{
	int			n;

	pthread_mutex_lock(&queue_lock);
	n = queue_len;
	pthread_mutex_unlock(&queue_lock);
	return n;
}

int
pool_connected(void)
{
	return __atomic_load_n(&nconnected, __ATOMIC_RELAXED);
}
