/*-------------------------------------------------------------------------
 *
 * connection.c
 *	  Connecting, waiting and running queries for datastreams-listen, and
 *	  telling the failures that a new connection may cure from those it
 *	  cannot.
 *
 * All waiting is done in pselect() with SIGINT and SIGTERM blocked
 * everywhere else, so a termination signal can never slip in between
 * checking the flag and going to sleep.  Connections are opened without
 * blocking in libpq for the same reason.
 *
 * Failures are classified by SQLSTATE, never by message text.  A
 * connection that fails gives no SQLSTATE through libpq's API, so there
 * the rule is by situation: once a connection has succeeded every failure
 * is retried (the server restarts, fails over, or lets us in again); a
 * first connection is retried only while the servers do not answer, are
 * starting up (libpq's PQping() says which, from the SQLSTATE) or are not
 * of the kind target_session_attrs asks for.  It is not retried when libpq
 * could not even try a host (invalid settings, no resolvable host name) or
 * a server refused us (authentication, unknown role or database).
 *
 * IDENTIFICATION
 *	  src/bin/listen/connection.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <signal.h>
#include <sys/select.h>
#include <time.h>

#include "common/logging.h"
#include "common/string.h"
#include "datastreams_listen.h"

/* Keywords passed to libpq besides the user's connection string. */
#define MAX_CONN_PARAMS		6

char		last_sqlstate[6];

static volatile sig_atomic_t stop_requested = 0;
static bool stop_deferred = false;
static sigset_t wait_sigmask;	/* mask in effect while in pselect() */

static void
handle_stop_signal(SIGNAL_ARGS)
{
	stop_requested = 1;
}

void
setup_signals(void)
{
	sigset_t	stop_signals;

	/*
	 * Block the signals except inside pselect(): the handler then only ever
	 * runs while we wait, so a signal can never arrive just after the flag
	 * was checked and leave us sleeping.  pselect() is never restarted after
	 * a handler, whatever the handler's flags.
	 */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	sigprocmask(SIG_BLOCK, &stop_signals, &wait_sigmask);
	sigdelset(&wait_sigmask, SIGINT);
	sigdelset(&wait_sigmask, SIGTERM);

	pqsignal(SIGINT, handle_stop_signal);
	pqsignal(SIGTERM, handle_stop_signal);
}

/*
 * While deferred, a stop request does not interrupt waiting: the work in
 * progress finishes first (and the stop takes effect at the next wait).
 */
void
defer_stop(bool defer)
{
	stop_deferred = defer;
}

int64
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Wait until one of socks is readable (or writable), until the monotonic
 * deadline (in ms; -1 for none) passes, or until a stop signal arrives.
 * With n == 0 this just sleeps.  Returns 1 when a socket is ready, 0 on
 * timeout and -1 when a stop was requested.
 */
int
wait_for_sockets(const int *socks, int n, bool for_write, int64 deadline)
{
	int			maxsock = -1;

	for (int i = 0; i < n; i++)
	{
		if (socks[i] >= FD_SETSIZE)
			pg_fatal("socket number %d too large for select()", socks[i]);
		maxsock = Max(maxsock, socks[i]);
	}

	for (;;)
	{
		fd_set		fds;
		struct timespec ts;
		struct timespec *tsp = NULL;
		int			rc;

		if (stop_requested && !stop_deferred)
			return -1;

		FD_ZERO(&fds);
		for (int i = 0; i < n; i++)
			FD_SET(socks[i], &fds);
		if (deadline >= 0)
		{
			int64		left = deadline - monotonic_ms();

			if (left <= 0)
				return 0;
			ts.tv_sec = left / 1000;
			ts.tv_nsec = (left % 1000) * 1000000;
			tsp = &ts;
		}

		rc = pselect(maxsock + 1,
					 (n > 0 && !for_write) ? &fds : NULL,
					 (n > 0 && for_write) ? &fds : NULL,
					 NULL, tsp, &wait_sigmask);
		if (rc > 0)
			return 1;
		if (rc == 0)
			return 0;
		if (errno != EINTR)
			pg_fatal("select() failed: %m");
	}
}

/* The same for one socket, or none when sock is -1. */
int
wait_for_socket(int sock, bool for_write, int64 deadline)
{
	return wait_for_sockets(&sock, sock >= 0 ? 1 : 0, for_write, deadline);
}

/* Returns false when a stop was requested. */
bool
sleep_ms(long ms)
{
	return wait_for_socket(-1, false, monotonic_ms() + ms) == 0;
}

/* Server NOTICEs and WARNINGs would otherwise reach stderr unprefixed. */
static void
notice_processor(void *arg, const char *message)
{
	pg_log_info("%s", message);
}

/* The connection the loop in main.c keeps: the user's. */
const ConnTarget main_target = {NULL, NULL, NULL};

/*
 * The keywords for libpq: the target's connection string is the "dbname"
 * and overrides whatever comes before it; its overrides come next, and
 * what comes after them is ours.  The arrays are pg_malloc'd.
 *
 * LISTEN needs a primary, so unless the user chose otherwise (in the
 * connection string or PGTARGETSESSIONATTRS) a list of hosts is searched
 * for one rather than settling on the first that answers.  Frames are
 * printed as JSON, which is UTF-8 whatever the locale.
 */
static void
connection_params(const ConnTarget *target, const char ***keywords_out,
				  const char ***values_out, const char *session_attrs_override)
{
	const char *conninfo = target->conninfo != NULL ? target->conninfo :
		options.conninfo;
	int			noverrides = 0;
	const char **keywords;
	const char **values;
	int			n = 0;

	for (const PQconninfoOption *o = target->overrides; o && o->keyword; o++)
		noverrides++;
	keywords = pg_malloc(sizeof(char *) * (MAX_CONN_PARAMS + noverrides + 1));
	values = pg_malloc(sizeof(char *) * (MAX_CONN_PARAMS + noverrides + 1));

	if (!options.once && getenv("PGTARGETSESSIONATTRS") == NULL)
	{
		keywords[n] = "target_session_attrs";
		values[n++] = "primary";
	}
	if (target->default_connect_timeout != NULL)
	{
		keywords[n] = "connect_timeout";
		values[n++] = target->default_connect_timeout;
	}
	if (conninfo != NULL)
	{
		keywords[n] = "dbname";
		values[n++] = conninfo;
	}
	for (const PQconninfoOption *o = target->overrides; o && o->keyword; o++)
	{
		if (o->val == NULL)
			continue;
		keywords[n] = o->keyword;
		values[n++] = o->val;
	}
	keywords[n] = "fallback_application_name";
	values[n++] = PROGRAM_NAME;
	keywords[n] = "client_encoding";
	values[n++] = "UTF8";
	if (session_attrs_override != NULL)
	{
		keywords[n] = "target_session_attrs";
		values[n++] = session_attrs_override;
	}
	Assert(n <= MAX_CONN_PARAMS + noverrides);
	keywords[n] = NULL;
	values[n] = NULL;
	*keywords_out = keywords;
	*values_out = values;
}

/* The value of one of a connection's settings, pg_malloc'd; NULL if unset. */
static char *
conn_setting(PGconn *conn, const char *keyword)
{
	PQconninfoOption *settings = PQconninfo(conn);
	char	   *value = NULL;

	if (settings == NULL)
		return NULL;
	for (PQconninfoOption *o = settings; o->keyword != NULL; o++)
	{
		if (strcmp(o->keyword, keyword) == 0 && o->val != NULL)
		{
			value = pg_strdup(o->val);
			break;
		}
	}
	PQconninfoFree(settings);
	return value;
}

/*
 * libpq enforces connect_timeout only in its blocking connect, so we apply
 * it ourselves (to the whole attempt rather than per host), with libpq's
 * rule that values of 1 mean 2.
 */
static int64
connect_deadline(PGconn *conn)
{
	char	   *setting = conn_setting(conn, "connect_timeout");
	int64		deadline = -1;

	if (setting != NULL)
	{
		char	   *end;
		int			secs;

		errno = 0;
		secs = strtoint(setting, &end, 10);
		if (errno == 0 && *end == '\0' && secs > 0)
			deadline = monotonic_ms() + (int64) Max(secs, 2) * 1000;
		pg_free(setting);
	}
	return deadline;
}

/*
 * Start a connection and drive it to success or failure without blocking,
 * so that a stop signal is honoured even while a host does not answer.
 * Returns NULL only when a stop was requested; otherwise the connection,
 * bad or not, with *timed_out telling whether connect_timeout expired and
 * *unusable whether it failed before any host could even be tried (an
 * invalid setting, no host name that resolves).
 */
static PGconn *
connect_nonblocking(const ConnTarget *target,
					const char *session_attrs_override, bool *timed_out,
					bool *unusable)
{
	const char **keywords;
	const char **values;
	PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
	PGconn	   *conn;
	int64		deadline;

	*timed_out = false;
	connection_params(target, &keywords, &values, session_attrs_override);
	conn = PQconnectStartParams(keywords, values, 1);
	pg_free(keywords);
	pg_free(values);
	if (conn == NULL)
		pg_fatal("out of memory");
	PQsetNoticeProcessor(conn, notice_processor, NULL);
	*unusable = PQstatus(conn) == CONNECTION_BAD;
	if (*unusable)
		return conn;

	deadline = connect_deadline(conn);
	while (poll != PGRES_POLLING_OK && poll != PGRES_POLLING_FAILED)
	{
		int			sock = PQsocket(conn);
		int			rc;

		if (sock < 0)
			break;
		rc = wait_for_socket(sock, poll == PGRES_POLLING_WRITING, deadline);
		if (rc < 0)
		{
			PQfinish(conn);
			return NULL;
		}
		if (rc == 0)
		{
			*timed_out = true;
			break;
		}
		poll = PQconnectPoll(conn);
	}
	return conn;
}

/*
 * Is it worth trying again after the very first connection failed?  Yes if
 * the servers answer but none is of the kind target_session_attrs asks for
 * (a failover in progress, a primary not yet promoted): seen by connecting
 * once more with any server accepted.  Yes if no server answers or none
 * accepts connections yet (PQping() goes by SQLSTATE 57P03).  No if a
 * server refused us: authentication, an unknown role or database.
 */
static bool
first_failure_is_transient(const ConnTarget *target, PGconn *failed)
{
	const char **keywords;
	const char **values;
	char	   *session_attrs;
	PGPing		ping;

	if (PQconnectionNeedsPassword(failed))
		return false;

	session_attrs = conn_setting(failed, "target_session_attrs");
	if (session_attrs != NULL && strcmp(session_attrs, "any") != 0)
	{
		bool		timed_out;
		bool		unusable;
		PGconn	   *probe = connect_nonblocking(target, "any", &timed_out,
													&unusable);
		bool		answered = probe == NULL ||
			(!timed_out && PQstatus(probe) == CONNECTION_OK);

		PQfinish(probe);
		if (answered)
		{
			pg_free(session_attrs);
			return true;
		}
	}
	pg_free(session_attrs);

	/*
	 * PQpingParams() blocks (a stop signal waits for it); it runs only after
	 * a first connection failed, and connect_timeout bounds it too.
	 */
	connection_params(target, &keywords, &values, "any");
	ping = PQpingParams(keywords, values, 1);
	pg_free(keywords);
	pg_free(values);
	return ping == PQPING_NO_RESPONSE || ping == PQPING_REJECT;
}

/*
 * Open a connection to target.  On failure returns NULL with *step saying
 * whether to retry, and *errmsg (pg_malloc'd) what libpq said.
 */
PGconn *
open_connection(const ConnTarget *target, bool ever_connected,
				StepResult *step, char **errmsg)
{
	bool		timed_out;
	bool		unusable;
	PGconn	   *conn = connect_nonblocking(target, NULL, &timed_out,
										   &unusable);

	*errmsg = NULL;
	if (conn == NULL)
	{
		*step = STEP_STOP;
		return NULL;
	}
	if (!timed_out && PQstatus(conn) == CONNECTION_OK)
	{
		*step = STEP_OK;
		return conn;
	}

	*errmsg = pg_strdup(timed_out ? "timeout expired" :
						*PQerrorMessage(conn) ? PQerrorMessage(conn) :
						"connection failed");
	if (options.once)
		*step = STEP_FATAL;
	else if (ever_connected)
		*step = STEP_RETRY;
	else if (unusable)
		*step = STEP_FATAL;
	else if (timed_out || first_failure_is_transient(target, conn))
		*step = STEP_RETRY;
	else
		*step = STEP_FATAL;
	PQfinish(conn);
	return NULL;
}

/*
 * Errors that a new connection may well not repeat: no SQLSTATE at all
 * (libpq's own errors, such as a lost connection), connection exceptions,
 * rollbacks, lack of resources, operator intervention (shutdown, cancel,
 * timeouts), system errors, a lock not available, and a standby's refusal
 * to do what only a primary can (25006: the primary is elsewhere after a
 * failover).  Everything else, notably 42501 (no permission or no account)
 * and P0002 (unknown stream or consumer), is permanent.
 */
static bool
sqlstate_is_transient(const char *sqlstate)
{
	return sqlstate == NULL ||
		strncmp(sqlstate, "08", 2) == 0 ||
		strncmp(sqlstate, "40", 2) == 0 ||
		strncmp(sqlstate, "53", 2) == 0 ||
		strncmp(sqlstate, "57", 2) == 0 ||
		strncmp(sqlstate, "58", 2) == 0 ||
		strcmp(sqlstate, "55P03") == 0 ||
		strcmp(sqlstate, "25006") == 0;
}

/* Report a failed query (res may be NULL) and say what to do about it. */
StepResult
query_failure(PGconn *conn, const PGresult *res, const char *what)
{
	const char *sqlstate = NULL;
	const char *severity = NULL;
	const char *primary = NULL;
	const char *detail;
	const char *hint;

	last_sqlstate[0] = '\0';
	if (res != NULL)
	{
		sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		strlcpy(last_sqlstate, sqlstate != NULL ? sqlstate : "",
				sizeof(last_sqlstate));
		severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
		primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	}
	if (primary == NULL)
		primary = *PQerrorMessage(conn) ? PQerrorMessage(conn) : "connection lost";

	/*
	 * Behind a proxy, a stream's partition that is moving (40001) or has
	 * moved (P0002 from a shard that no longer holds it) is looked up again
	 * rather than failing: follow.c decides.
	 */
	if (options.proxy && !options.once && options.consumer == NULL &&
		PQstatus(conn) != CONNECTION_BAD && sqlstate != NULL &&
		(strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "P0002") == 0))
	{
		pg_log_info("%s failed, looking up the shard again: %s", what, primary);
		return STEP_RETRY;
	}

	if (PQstatus(conn) == CONNECTION_BAD || sqlstate_is_transient(sqlstate) ||
		(severity != NULL &&
		 (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0)))
	{
		if (options.once)
			pg_log_error("%s failed: %s", what, primary);
		else if (sqlstate != NULL && strcmp(sqlstate, "25006") == 0)
			pg_log_info("%s failed on a standby, looking for the primary: %s",
						what, primary);
		else
			pg_log_info("%s failed, reconnecting: %s", what, primary);
		return STEP_RETRY;
	}

	detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	pg_log_error("%s failed: %s (SQLSTATE %s)", what, primary, sqlstate);
	if (detail != NULL)
		pg_log_error_detail("%s", detail);
	if (hint != NULL)
		pg_log_error_hint("%s", hint);
	return STEP_FATAL;
}

/*
 * Wait for the next result of the query in progress, staying responsive to
 * stop signals.  Returns the result, or NULL with *step == STEP_OK at the
 * end of the query's results, or NULL with another *step on failure.
 */
PGresult *
await_result(PGconn *conn, const char *what, StepResult *step)
{
	*step = STEP_OK;
	while (PQisBusy(conn))
	{
		int			sock = PQsocket(conn);
		int			rc;

		if (sock < 0)
		{
			*step = query_failure(conn, NULL, what);
			return NULL;
		}
		rc = wait_for_socket(sock, false, -1);
		if (rc < 0)
		{
			*step = STEP_STOP;
			return NULL;
		}
		if (!PQconsumeInput(conn))
		{
			*step = query_failure(conn, NULL, what);
			return NULL;
		}
	}
	return PQgetResult(conn);
}

/*
 * Read and drop what remains of a failed query's results, so that the
 * connection can take the next query.
 */
StepResult
discard_results(PGconn *conn)
{
	StepResult	step;
	PGresult   *res;

	while ((res = await_result(conn, "reading the rest of an error", &step)) != NULL)
		PQclear(res);
	return step;
}

/*
 * Run a query (parameterised when nparams > 0; several statements are
 * allowed only without parameters) and return its last result, which the
 * caller must PQclear().  Returns NULL with *step set on failure; the
 * connection is then dropped or the program exits, so the remaining
 * results need not be read.
 */
PGresult *
run_query(PGconn *conn, const char *what, const char *sql,
		  int nparams, const char *const *params, StepResult *step)
{
	PGresult   *keep = NULL;
	int			sent;

	last_sqlstate[0] = '\0';
	if (nparams > 0)
		sent = PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	else
		sent = PQsendQuery(conn, sql);
	if (!sent)
	{
		*step = query_failure(conn, NULL, what);
		return NULL;
	}

	for (;;)
	{
		PGresult   *res = await_result(conn, what, step);

		if (res == NULL)
		{
			if (*step != STEP_OK)
			{
				PQclear(keep);
				return NULL;
			}
			break;
		}
		if (PQresultStatus(res) != PGRES_TUPLES_OK &&
			PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			*step = query_failure(conn, res, what);
			PQclear(res);
			PQclear(keep);
			return NULL;
		}
		PQclear(keep);
		keep = res;
	}

	if (keep == NULL)
	{
		pg_log_info("%s failed: no result from server", what);
		*step = STEP_RETRY;
	}
	return keep;
}

/*
 * Wait for input on an idle connection (notifications) until the deadline,
 * and read what came.  The caller takes the notifications with PQnotifies.
 */
StepResult
wait_for_input(PGconn *conn, int64 deadline)
{
	int			sock = PQsocket(conn);
	int			rc;

	if (PQstatus(conn) == CONNECTION_BAD || sock < 0)
		return query_failure(conn, NULL, "waiting for notifications");
	rc = wait_for_socket(sock, false, deadline);
	if (rc < 0)
		return STEP_STOP;
	if (rc > 0 && !PQconsumeInput(conn))
		return query_failure(conn, NULL, "waiting for notifications");
	return STEP_OK;
}
