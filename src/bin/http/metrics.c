/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  What GET /metrics on the metrics listener serves: datastreams.metrics()
 *	  followed by the gateway's own counters.
 *
 * The metrics listener (--metrics-listen) is a separate address, meant for
 * the monitoring network, so it needs no token.  datastreams.metrics() runs
 * on its own connection (--metrics-dbname, by default the gateway's), whose
 * role decides what it returns: an administrator or a BYPASSRLS role gets
 * every account's series, the gateway's trusted role only the HELP and TYPE
 * lines.  When the database cannot be asked, the gateway's own counters are
 * still served, with datastreams_http_database_up 0.
 *
 * IDENTIFICATION
 *	  src/bin/http/metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

/* statuses with a series of their own; the rest count as "other" */
static const int counted_statuses[] = {200, 201, 400, 401, 403, 404, 405, 409, 413, 500, 503};
#define NSTATUS		((int) (sizeof(counted_statuses) / sizeof(counted_statuses[0])))
#define OTHER_STATUS NSTATUS	/* another status, or none sent */

static const double duration_bounds[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};
#define NBOUNDS		((int) (sizeof(duration_bounds) / sizeof(duration_bounds[0])))

/* all updated with atomic additions */
static uint64_t requests[NUM_ROUTES][NSTATUS + 1];
static uint64_t duration_buckets[NBOUNDS];	/* not cumulative */
static uint64_t duration_count;
static uint64_t duration_sum_us;

static pthread_mutex_t db_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *db_conninfo;
static PGconn *db_conn;

const char *
route_name(Route route)
{
	switch (route)
	{
		case ROUTE_PAGE:
			return "page";
		case ROUTE_HEALTHZ:
			return "healthz";
		case ROUTE_STREAMS:
			return "streams";
		case ROUTE_STREAM:
			return "stream";
		case ROUTE_FRAMES:
			return "frames";
		case ROUTE_LATEST:
			return "latest";
		case ROUTE_EVENTS:
			return "events";
		case ROUTE_METRICS:
			return "metrics";
		case ROUTE_UNKNOWN:
		case NUM_ROUTES:
			break;
	}
	return "unknown";
}

/*
 * Count a finished request.  The events route is left out of the duration
 * histogram: its requests last as long as the client listens.
 */
void
metrics_count_request(Route route, int status, double seconds)
{
	int			s = OTHER_STATUS;

	for (int i = 0; i < NSTATUS; i++)
		if (counted_statuses[i] == status)
			s = i;
	__atomic_add_fetch(&requests[route][s], 1, __ATOMIC_RELAXED);
	if (route == ROUTE_EVENTS)
		return;
	for (int i = 0; i < NBOUNDS; i++)
		if (seconds <= duration_bounds[i])
		{
			__atomic_add_fetch(&duration_buckets[i], 1, __ATOMIC_RELAXED);
			break;
		}
	__atomic_add_fetch(&duration_count, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&duration_sum_us, (uint64_t) (seconds * 1e6), __ATOMIC_RELAXED);
}

/* The gateway's own series, in the Prometheus text format. */
void
metrics_append(StrBuf *sb, bool database_up)
{
	uint64_t	cumulative = 0;
	uint64_t	count = __atomic_load_n(&duration_count, __ATOMIC_RELAXED);

	sb_append(sb,
			  "# HELP datastreams_http_requests_total HTTP requests answered by datastreams-http, per route and status.\n"
			  "# TYPE datastreams_http_requests_total counter\n");
	for (int r = 0; r < NUM_ROUTES; r++)
		for (int s = 0; s <= NSTATUS; s++)
		{
			uint64_t	n = __atomic_load_n(&requests[r][s], __ATOMIC_RELAXED);
			char		status[8];

			if (n == 0)
				continue;
			if (s == OTHER_STATUS)
				snprintf(status, sizeof(status), "other");
			else
				snprintf(status, sizeof(status), "%d", counted_statuses[s]);
			sb_printf(sb, "datastreams_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
					  route_name((Route) r), status, (unsigned long long) n);
		}

	sb_append(sb,
			  "# HELP datastreams_http_request_duration_seconds Time from a request's arrival to the end of its response (the events route excluded).\n"
			  "# TYPE datastreams_http_request_duration_seconds histogram\n");
	for (int i = 0; i < NBOUNDS; i++)
	{
		cumulative += __atomic_load_n(&duration_buckets[i], __ATOMIC_RELAXED);
		/* a request counted between the loads must not break monotonicity */
		if (cumulative > count)
			count = cumulative;
		sb_printf(sb, "datastreams_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
				  duration_bounds[i], (unsigned long long) cumulative);
	}
	sb_printf(sb, "datastreams_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
			  (unsigned long long) count);
	sb_printf(sb, "datastreams_http_request_duration_seconds_sum %.6f\n",
			  __atomic_load_n(&duration_sum_us, __ATOMIC_RELAXED) / 1e6);
	sb_printf(sb, "datastreams_http_request_duration_seconds_count %llu\n",
			  (unsigned long long) count);

	sb_printf(sb,
			  "# HELP datastreams_http_events_clients Open event streams (GET .../events).\n"
			  "# TYPE datastreams_http_events_clients gauge\n"
			  "datastreams_http_events_clients %d\n"
			  "# HELP datastreams_http_pool_connections Database connections of the request pool that are up.\n"
			  "# TYPE datastreams_http_pool_connections gauge\n"
			  "datastreams_http_pool_connections %d\n"
			  "# HELP datastreams_http_pool_queue Requests waiting for a database connection.\n"
			  "# TYPE datastreams_http_pool_queue gauge\n"
			  "datastreams_http_pool_queue %d\n"
			  "# HELP datastreams_http_database_up Whether this scrape could run datastreams.metrics().\n"
			  "# TYPE datastreams_http_database_up gauge\n"
			  "datastreams_http_database_up %d\n",
			  events_clients(), pool_connected(), pool_queue_length(), database_up ? 1 : 0);
}

bool
metrics_db_start(const char *conninfo)
{
	db_conninfo = conninfo;
	return true;
}

/*
 * datastreams.metrics() into out, or, with out NULL, only check that the
 * database answers.  False (err says why) when it could not.
 */
bool
metrics_db_scrape(StrBuf *out, char *err, size_t errlen)
{
	PGresult   *res;
	bool		ok;

	pthread_mutex_lock(&db_lock);
	if (db_conn && PQstatus(db_conn) != CONNECTION_OK)
	{
		PQfinish(db_conn);
		db_conn = NULL;
	}
	if (db_conn == NULL)
		db_conn = db_connect(db_conninfo, "metrics");
	if (db_conn == NULL)
	{
		snprintf(err, errlen, "could not connect to the database");
		pthread_mutex_unlock(&db_lock);
		return false;
	}
	res = PQexec(db_conn, out ? "SELECT datastreams.metrics()" : "SELECT 1");
	ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	if (ok && out)
	{
		const char *text = PQgetvalue(res, 0, 0);
		size_t		n = strlen(text);

		sb_append_len(out, text, n);
		if (n > 0 && text[n - 1] != '\n')
			sb_append(out, "\n");
	}
	else if (!ok)
	{
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		snprintf(err, errlen, "%s", msg ? msg : "the database did not answer");
	}
	PQclear(res);
	pthread_mutex_unlock(&db_lock);
	return ok;
}
