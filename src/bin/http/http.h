/*-------------------------------------------------------------------------
 *
 * http.h
 *	  Declarations shared by the files of datastreams-http, the HTTP gateway
 *	  to the datastreams SQL API.
 *
 * The gateway is a thin shell: libmicrohttpd parses HTTP in a few threads
 * that never wait for the database (server.c); requests that need it are
 * parked (MHD_suspend_connection) and handed to a pool of worker threads,
 * each owning one libpq connection (pool.c); Server-Sent Events are fed by
 * one thread that LISTENs and reads frames with frames_since() (events.c).
 *
 * IDENTIFICATION
 *	  src/bin/http/http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DATASTREAMS_HTTP_H
#define DATASTREAMS_HTTP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <microhttpd.h>

#include "libpq-fe.h"

#define PROGNAME			"datastreams-http"
#define VERSION_STRING		PROGNAME " (datastreams) " DS_VERSION

/* Request bodies above this are refused with 413 (the contract). */
#define MAX_BODY_BYTES		(10 * 1024 * 1024)

/* Longest bearer token looked up in the database; longer ones are bad. */
#define MAX_TOKEN_LEN		256

#define UUID_TEXT_LEN		36

/* ----------------------------------------------------------------
 * Growable strings (json.c)
 * ----------------------------------------------------------------
 */
typedef struct StrBuf
{
	char	   *data;			/* always NUL-terminated once used */
	size_t		len;
	size_t		cap;
} StrBuf;

extern void sb_init(StrBuf *sb);
extern void sb_free(StrBuf *sb);
extern void sb_reset(StrBuf *sb);
extern void sb_append_len(StrBuf *sb, const char *s, size_t n);
extern void sb_append(StrBuf *sb, const char *s);
extern void sb_printf(StrBuf *sb, const char *fmt,...) __attribute__((format(printf, 2, 3)));
extern void sb_append_json_string(StrBuf *sb, const char *s, size_t n);
extern void sb_append_clipped(StrBuf *sb, const char *s, size_t n, size_t max);
extern char *sb_detach(StrBuf *sb);

extern void *xmalloc(size_t size);
extern void *xcalloc(size_t n, size_t size);
extern void *xrealloc(void *p, size_t size);
extern char *xstrdup(const char *s);
extern char *xstrndup(const char *s, size_t n);

/* ----------------------------------------------------------------
 * JSON request bodies (json.c)
 * ----------------------------------------------------------------
 */
typedef enum JsonType
{
	JSON_OBJECT,
	JSON_ARRAY,
	JSON_STRING,
	JSON_NUMBER,
	JSON_BOOL,
	JSON_NULL
} JsonType;

/* One member of the top-level object: its key and where its value is. */
typedef struct JsonField
{
	char	   *key;			/* decoded */
	size_t		key_len;
	JsonType	type;
	const char *value;			/* raw JSON text of the value, in the body */
	size_t		value_len;
} JsonField;

typedef struct JsonBody
{
	JsonType	type;			/* of the whole document */
	JsonField  *fields;			/* top-level members when an object */
	int			nfields;
} JsonBody;

extern bool json_parse_body(const char *text, size_t len, JsonBody *body,
							char *err, size_t errlen);
extern void json_body_free(JsonBody *body);
extern const JsonField *json_body_field(const JsonBody *body, const char *key);
extern char *json_string_value(const JsonField *field);
extern const char *json_type_name(JsonType type);

/* ----------------------------------------------------------------
 * Requests (server.c) and the work the pool does for them (pool.c)
 * ----------------------------------------------------------------
 */
typedef enum Route
{
	ROUTE_PAGE,
	ROUTE_HEALTHZ,
	ROUTE_STREAMS,				/* .../streams */
	ROUTE_STREAM,				/* .../streams/{id} */
	ROUTE_FRAMES,				/* .../streams/{id}/frames */
	ROUTE_LATEST,				/* .../streams/{id}/latest */
	ROUTE_EVENTS,				/* .../streams/{id}/events */
	ROUTE_METRICS,				/* on the metrics listener */
	ROUTE_UNKNOWN,
	NUM_ROUTES
} Route;

/* What a request asks of the database; one prepared statement each. */
typedef enum Op
{
	OP_NONE = -1,
	OP_HEALTH = 0,
	OP_LIST_STREAMS,
	OP_CREATE_STREAM,
	OP_GET_STREAM,
	OP_UPDATE_STREAM,
	OP_LIST_FRAMES,
	OP_CREATE_FRAME,
	OP_LATEST_FRAME,
	NUM_OPS
} Op;

#define MAX_OP_PARAMS		9

typedef struct Subscriber Subscriber;

typedef struct Request
{
	struct MHD_Connection *conn;
	struct timespec started;
	char		method[16];
	char	   *path;			/* as received, without the query string */
	Route		route;
	char	   *account;		/* decoded {accountID} of the path */
	char	   *stream;			/* decoded {id} of the path */
	char	   *token;			/* bearer token, NULL when none */
	StrBuf		body;
	size_t		body_seen;		/* bytes received, kept or not */
	bool		body_too_large;
	bool		parked;			/* suspended, waiting for a worker or the hub */
	bool		done;			/* the response below is ready */

	/* for the pool: the statement and its parameters */
	Op			op;
	int			nparams;
	char	   *params[MAX_OP_PARAMS];
	struct timespec queued;
	struct Request *next_in_queue;

	/* the response */
	int			status;
	StrBuf		response;
	char	   *location;		/* Location header of a 201, if any */
	bool		retry_after;	/* add Retry-After (503) */
	char	   *log_account;	/* account the token resolved to, for the log */

	Subscriber *subscriber;		/* events route */
	int			log_status;		/* status actually queued, 0 if none */
} Request;

/* request.c */
extern void request_set_error(Request *req, int status, const char *sqlstate,
							  const char *message, const char *detail,
							  const char *hint);
extern void request_parked(void);
extern void request_unparked(void);
extern void request_finish_parked(Request *req);
extern int	parked_requests(void);

/* server.c */
extern struct MHD_Daemon *start_http_daemon(int listen_fd, int threads,
											unsigned max_connections,
											unsigned idle_timeout);
extern struct MHD_Daemon *start_metrics_daemon(int listen_fd);
extern volatile bool shutting_down;

/* pool.c */
extern bool pool_start(const char *conninfo, int size);
extern void pool_submit(Request *req);
extern void pool_stop(void);
extern int	pool_queue_length(void);
extern int	pool_connected(void);
extern PGconn *db_connect(const char *conninfo, const char *purpose);
extern bool db_prepare_auth(PGconn *conn);
extern int	status_for_sqlstate(const char *sqlstate);
extern void error_from_result(Request *req, const PGresult *res);
extern void error_unavailable(Request *req, PGconn *conn);
extern bool pipeline_run(PGconn *conn, int nstmts, const char *const *names,
						 const int *nparams, const char *const *const *params,
						 PGresult **results);
extern void append_frame_json(StrBuf *sb, const char *row_json, const char *sequence_text);
extern bool auth_check(Request *req, PGresult *auth);
extern const char *auth_statement_name;

/* events.c */
extern bool events_start(const char *conninfo);
extern void events_stop(void);
extern void events_end_all(void);
extern int	events_clients(void);
extern int	events_suspended(void);
extern bool events_begin(Request *req, const char *last_event_id, const char *from);
extern enum MHD_Result events_respond(Request *req);
extern void events_request_gone(Request *req);

/* metrics.c */
extern void metrics_count_request(Route route, int status, double seconds);
extern void metrics_append(StrBuf *sb, bool database_up);
extern bool metrics_db_start(const char *conninfo);
extern bool metrics_db_scrape(StrBuf *out, char *err, size_t errlen);
extern const char *route_name(Route route);

/* log.c */
extern void log_msg(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern double seconds_since(const struct timespec *start);
extern int64_t now_ms(void);

#endif							/* DATASTREAMS_HTTP_H */
