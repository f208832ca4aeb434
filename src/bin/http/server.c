/*-------------------------------------------------------------------------
 *
 * server.c
 *	  The HTTP side: routing, request bodies, responses, the access log.
 *
 * libmicrohttpd runs a few threads that multiplex every connection with
 * epoll; they must never wait, or every client sharing the thread would
 * wait too.  So a request that needs the database is parked with
 * MHD_suspend_connection() and queued for the pool (pool.c) or the events
 * thread (events.c), which resume it once its response is ready; idle and
 * slow clients only cost a socket and a little memory.
 *
 * libmicrohttpd would percent-decode the whole path before we see it, so
 * that an account id containing "%2F" would split into two segments.  Its
 * unescape callback is replaced by one that leaves the text alone, and the
 * path is split first and each segment decoded afterwards; query values
 * are decoded the same way.
 *
 * IDENTIFICATION
 *	  src/bin/http/server.c
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "http.h"

/* the page of GET /, generated from page.html by the Makefile */
#include "page.inc"

/*
 * Bodies of all requests in flight together stay under this, whatever the
 * number of connections; beyond it requests get 503 instead of memory.
 */
#define MAX_BUFFERED_BODY_BYTES ((size_t) 256 * 1024 * 1024)

volatile bool shutting_down = false;

static size_t buffered_body_bytes;	/* atomic */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const stream_fields[] = {
	"name", "symbol", "description", "frequency", "sla_ms", "status", "metadata", "retention", NULL
};
static const char *const frame_fields[] = {
	"sequence", "payload", "latency_ms", "status", "metadata", NULL
};

static const char *
allowed_methods(Route route)
{
	switch (route)
	{
		case ROUTE_STREAMS:
		case ROUTE_FRAMES:
			return "GET, HEAD, POST";
		case ROUTE_STREAM:
			return "GET, HEAD, PATCH";
		case ROUTE_EVENTS:
			return "GET";
		default:
			return "GET, HEAD";
	}
}

static enum MHD_Result
queue_buffer(Request *req, int status, const char *content_type, char *data, size_t len)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL)
	{
		free(data);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (req->route != ROUTE_PAGE || status != 200)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (req->location && status == 201)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, req->location);
	if (req->retry_after)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	if (status == 401)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	if (status == 405)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allowed_methods(req->route));
	if (status == 413 || shutting_down)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	if (req->route == ROUTE_PAGE && status == 200)
		MHD_add_response_header(resp, "Content-Security-Policy",
								"default-src 'none'; script-src 'unsafe-inline'; "
								"style-src 'unsafe-inline'; connect-src 'self'; "
								"base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
	ret = MHD_queue_response(req->conn, status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		req->log_status = status;
	return ret;
}

static enum MHD_Result
queue_request_response(Request *req)
{
	size_t		len = req->response.len;

	if (req->route == ROUTE_EVENTS && req->status == 200)
		return events_respond(req);
	return queue_buffer(req, req->status, "application/json; charset=utf-8",
						sb_detach(&req->response), len);
}

/* ----------------------------------------------------------------
 * Paths and query strings
 * ----------------------------------------------------------------
 */

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decode n bytes of s; plus_is_space for query values.  NULL when
 * the encoding is broken or decodes to a NUL byte, which no name contains.
 */
static char *
percent_decode(const char *s, size_t n, bool plus_is_space)
{
	char	   *out = xmalloc(n + 1);
	size_t		j = 0;

	for (size_t i = 0; i < n; i++)
	{
		if (s[i] == '%')
		{
			int			hi,
						lo;

			if (i + 2 >= n)
				goto bad;
			hi = hex_digit(s[i + 1]);
			lo = hex_digit(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				goto bad;
			out[j++] = (char) (hi * 16 + lo);
			i += 2;
		}
		else if (s[i] == '+' && plus_is_space)
			out[j++] = ' ';
		else if (s[i] == '\0')
			goto bad;
		else
			out[j++] = s[i];
	}
	out[j] = '\0';
	return out;

bad:
	free(out);
	return NULL;
}

/*
 * Route a raw path: "/", "/healthz", or
 * /accounts/{accountID}/datastreams/streams[/{id}[/frames|latest|events]].
 * Empty, "." and ".." segments name nothing (there are no files behind the
 * gateway, but a path that a client or proxy would normalise must not
 * reach an account called "..").
 */
static Route
route_path(const char *path, char **account, char **stream)
{
	const char *seg[7];
	size_t		len[7];
	int			n = 0;
	const char *p;
	char	   *decoded[2] = {NULL, NULL};
	Route		route;

	*account = *stream = NULL;
	if (strcmp(path, "/") == 0)
		return ROUTE_PAGE;
	if (strcmp(path, "/healthz") == 0)
		return ROUTE_HEALTHZ;
	if (path[0] != '/')
		return ROUTE_UNKNOWN;
	p = path + 1;
	for (;;)
	{
		const char *slash = strchr(p, '/');
		size_t		l = slash ? (size_t) (slash - p) : strlen(p);

		if (n == 7 || l == 0)
			return ROUTE_UNKNOWN;
		seg[n] = p;
		len[n++] = l;
		if (!slash)
			break;
		p = slash + 1;
	}
#define SEG_IS(i, word) (len[i] == strlen(word) && memcmp(seg[i], word, len[i]) == 0)
	if (n < 4 || n > 6 || !SEG_IS(0, "accounts") || !SEG_IS(2, "datastreams") || !SEG_IS(3, "streams"))
		return ROUTE_UNKNOWN;
	if (n == 4)
		route = ROUTE_STREAMS;
	else if (n == 5)
		route = ROUTE_STREAM;
	else if (SEG_IS(5, "frames"))
		route = ROUTE_FRAMES;
	else if (SEG_IS(5, "latest"))
		route = ROUTE_LATEST;
	else if (SEG_IS(5, "events"))
		route = ROUTE_EVENTS;
	else
		return ROUTE_UNKNOWN;
#undef SEG_IS

	decoded[0] = percent_decode(seg[1], len[1], false);
	if (n >= 5)
		decoded[1] = percent_decode(seg[4], len[4], false);
	for (int i = 0; i < 2; i++)
	{
		bool		needed = i == 0 || n >= 5;

		if (needed && (decoded[i] == NULL || decoded[i][0] == '\0' ||
					   strcmp(decoded[i], ".") == 0 || strcmp(decoded[i], "..") == 0))
		{
			free(decoded[0]);
			free(decoded[1]);
			return ROUTE_UNKNOWN;
		}
	}
	*account = decoded[0];
	*stream = decoded[1];
	return route;
}

/* A query parameter, decoded (malloc'd); NULL when absent or undecodable. */
static char *
query_value(Request *req, const char *name, bool *bad)
{
	const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
	char	   *v;

	if (raw == NULL)
		return NULL;
	v = percent_decode(raw, strlen(raw), true);
	if (v == NULL && bad)
		*bad = true;
	return v;
}

/* libmicrohttpd's unescaping is replaced by ours (see the file header). */
static size_t
keep_escapes(void *cls, struct MHD_Connection *conn, char *s)
{
	(void) cls;
	(void) conn;
	return strlen(s);
}

/* A decimal integer, optionally signed, without anything around it. */
static bool
parse_int64(const char *s, int64_t *out)
{
	char	   *end;
	long long	v;

	if (s == NULL || *s == '\0' || isspace((unsigned char) *s))
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
}

/*
 * The bearer token: "Authorization: Bearer <token>", or, on the events
 * route only (EventSource cannot send headers), ?access_token=.  A token
 * is 1-256 visible ASCII characters; anything else cannot be one and is
 * refused without asking the database.
 */
static const char *
find_token(Request *req, bool *malformed)
{
	const char *h = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	char	   *token = NULL;

	*malformed = false;
	if (h != NULL)
	{
		if (strncasecmp(h, "Bearer ", 7) != 0)
		{
			*malformed = true;
			return NULL;
		}
		h += 7;
		while (*h == ' ')
			h++;
		token = xstrdup(h);
		for (size_t n = strlen(token); n > 0 && token[n - 1] == ' '; n--)
			token[n - 1] = '\0';
	}
	else if (req->route == ROUTE_EVENTS)
		token = query_value(req, "access_token", malformed);
	if (token == NULL)
		return NULL;
	if (token[0] == '\0' || strlen(token) > MAX_TOKEN_LEN)
		*malformed = true;
	for (const char *c = token; *c && !*malformed; c++)
		if (*c < 0x21 || *c > 0x7E)
			*malformed = true;
	if (*malformed)
	{
		free(token);
		return NULL;
	}
	req->token = token;
	return token;
}

/* ----------------------------------------------------------------
 * Request bodies to statement parameters
 * ----------------------------------------------------------------
 */
static bool
known_field(const char *const *fields, const char *key)
{
	for (int i = 0; fields[i]; i++)
		if (strcmp(fields[i], key) == 0)
			return true;
	return false;
}

static void
field_type_error(Request *req, const char *what, const JsonField *f, const char *expected)
{
	StrBuf		msg;

	sb_init(&msg);
	sb_printf(&msg, "%s field \"%s\" must be %s", what, f->key, expected);
	request_set_error(req, 400, "22023", msg.data, NULL, NULL);
	sb_free(&msg);
}

/*
 * Parse the body as a JSON object whose members are all among fields.  On
 * failure the request has its 400 (or 413) and false is returned.
 */
static bool
parse_object_body(Request *req, JsonBody *body, const char *what, const char *const *fields,
				  const char *field_list)
{
	char		err[200];

	if (req->body.len == 0)
	{
		request_set_error(req, 400, "22023", "the request body must be a JSON object", "The body is empty.", NULL);
		return false;
	}
	if (!json_parse_body(req->body.data, req->body.len, body, err, sizeof(err)))
	{
		request_set_error(req, 400, "22P02", "the request body is not valid JSON", err, NULL);
		return false;
	}
	if (body->type != JSON_OBJECT)
	{
		StrBuf		detail;

		sb_init(&detail);
		sb_printf(&detail, "The body is a JSON %s.", json_type_name(body->type));
		request_set_error(req, 400, "22023", "the request body must be a JSON object", detail.data, NULL);
		sb_free(&detail);
		json_body_free(body);
		return false;
	}
	if (fields == NULL)
		return true;
	for (int i = 0; i < body->nfields; i++)
	{
		if (!known_field(fields, body->fields[i].key))
		{
			StrBuf		msg,
						hint;

			sb_init(&msg);
			sb_init(&hint);
			sb_printf(&msg, "unknown %s field \"", what);
			sb_append_clipped(&msg, body->fields[i].key, body->fields[i].key_len, 100);
			sb_append(&msg, "\"");
			sb_printf(&hint, "The fields of a %s are %s.", what, field_list);
			request_set_error(req, 400, "22023", msg.data, NULL, hint.data);
			sb_free(&msg);
			sb_free(&hint);
			json_body_free(body);
			return false;
		}
	}
	return true;
}

typedef enum ParamKind
{
	PARAM_TEXT,					/* a JSON string, decoded */
	PARAM_INTEGER,				/* a JSON number, as written */
	PARAM_SEQUENCE,				/* a JSON number or a string of digits */
	PARAM_JSON					/* any JSON value, as written */
} ParamKind;

/*
 * The statement parameter for one member: NULL when absent or null (the
 * extension's default applies), else its text.  False (with a 400) when
 * the member's JSON type cannot be that parameter.
 */
static bool
body_param(Request *req, const JsonBody *body, const char *what, const char *key,
		   ParamKind kind, char **param)
{
	const JsonField *f = json_body_field(body, key);

	*param = NULL;
	if (f == NULL || f->type == JSON_NULL)
		return true;
	switch (kind)
	{
		case PARAM_TEXT:
			if (f->type != JSON_STRING)
			{
				field_type_error(req, what, f, "a string");
				return false;
			}
			*param = json_string_value(f);
			return true;
		case PARAM_INTEGER:
			if (f->type != JSON_NUMBER)
			{
				field_type_error(req, what, f, "a number");
				return false;
			}
			*param = xstrndup(f->value, f->value_len);
			return true;
		case PARAM_SEQUENCE:
			if (f->type == JSON_STRING)
				*param = json_string_value(f);
			else if (f->type == JSON_NUMBER)
				*param = xstrndup(f->value, f->value_len);
			else
			{
				field_type_error(req, what, f, "a number or a string of digits");
				return false;
			}
			return true;
		case PARAM_JSON:
			*param = xstrndup(f->value, f->value_len);
			return true;
	}
	return false;
}

static void
free_params(Request *req)
{
	for (int i = 0; i < req->nparams; i++)
	{
		free(req->params[i]);
		req->params[i] = NULL;
	}
	req->nparams = 0;
}

static bool
build_create_stream(Request *req)
{
	JsonBody	body;
	static const struct
	{
		const char *key;
		ParamKind	kind;
	}			order[] = {
		{"name", PARAM_TEXT}, {"symbol", PARAM_TEXT}, {"description", PARAM_TEXT},
		{"frequency", PARAM_TEXT}, {"sla_ms", PARAM_INTEGER}, {"status", PARAM_TEXT},
		{"metadata", PARAM_JSON}, {"retention", PARAM_TEXT}
	};

	if (!parse_object_body(req, &body, "stream", stream_fields,
						   "name, symbol, description, frequency, sla_ms, status, metadata and retention"))
		return false;
	req->nparams = 8;
	for (int i = 0; i < 8; i++)
		if (!body_param(req, &body, "stream", order[i].key, order[i].kind, &req->params[i]))
		{
			json_body_free(&body);
			return false;
		}
	json_body_free(&body);
	return true;
}

static bool
build_create_frame(Request *req)
{
	JsonBody	body;
	static const struct
	{
		const char *key;
		ParamKind	kind;
	}			order[] = {
		{"sequence", PARAM_SEQUENCE}, {"payload", PARAM_JSON}, {"latency_ms", PARAM_INTEGER},
		{"status", PARAM_TEXT}, {"metadata", PARAM_JSON}
	};

	if (!parse_object_body(req, &body, "frame", frame_fields,
						   "sequence, payload, latency_ms, status and metadata"))
		return false;
	req->nparams = 6;
	req->params[0] = xstrdup(req->stream);
	for (int i = 0; i < 5; i++)
		if (!body_param(req, &body, "frame", order[i].key, order[i].kind, &req->params[i + 1]))
		{
			json_body_free(&body);
			return false;
		}
	json_body_free(&body);
	return true;
}

/* ----------------------------------------------------------------
 * Dispatch
 * ----------------------------------------------------------------
 */
static bool
method_is(const Request *req, const char *m)
{
	return strcmp(req->method, m) == 0;
}

static void
park(Request *req)
{
	request_parked();
	req->parked = true;
	MHD_suspend_connection(req->conn);
	pool_submit(req);
}

/*
 * The whole request is in: answer it now (req->done) or park it for the
 * pool or the events thread.
 */
static void
dispatch(Request *req)
{
	bool		get = method_is(req, "GET") || method_is(req, "HEAD");
	bool		malformed;
	bool		bad_query = false;

	if (req->body_too_large)
	{
		StrBuf		detail;

		sb_init(&detail);
		sb_printf(&detail, "Request bodies are limited to %d bytes.", MAX_BODY_BYTES);
		request_set_error(req, 413, "54000", "the request body is too large", detail.data, NULL);
		sb_free(&detail);
		return;
	}
	if (shutting_down)
	{
		request_set_error(req, 503, "57P01", "the gateway is shutting down", NULL, NULL);
		req->retry_after = true;
		return;
	}

	switch (req->route)
	{
		case ROUTE_PAGE:
			if (!get)
				break;
			req->status = 200;
			req->done = true;
			return;
		case ROUTE_HEALTHZ:
			if (!get)
				break;
			req->op = OP_HEALTH;
			park(req);
			return;
		case ROUTE_UNKNOWN:
		case ROUTE_METRICS:
		case NUM_ROUTES:
			request_set_error(req, 404, "42704", "no such route", NULL,
							  "The routes are under /accounts/{accountID}/datastreams/streams; see docs/http.md.");
			return;
		default:
			break;
	}

	/* API routes: the method first (405 needs no credentials), then the token */
	if ((req->route == ROUTE_STREAMS && !get && !method_is(req, "POST")) ||
		(req->route == ROUTE_STREAM && !get && !method_is(req, "PATCH")) ||
		(req->route == ROUTE_FRAMES && !get && !method_is(req, "POST")) ||
		(req->route == ROUTE_LATEST && !get) ||
		(req->route == ROUTE_EVENTS && !method_is(req, "GET")) ||
		req->route == ROUTE_PAGE || req->route == ROUTE_HEALTHZ)
	{
		StrBuf		msg;

		sb_init(&msg);
		sb_printf(&msg, "method %s is not allowed here", req->method);
		request_set_error(req, 405, "0A000", msg.data, NULL, NULL);
		sb_free(&msg);
		return;
	}

	if (find_token(req, &malformed) == NULL)
	{
		request_set_error(req, 401, "28000",
						  malformed ? "invalid token" : "a bearer token is required",
						  NULL,
						  req->route == ROUTE_EVENTS ?
						  "Send \"Authorization: Bearer <token>\", or ?access_token=<token> on this route." :
						  "Send \"Authorization: Bearer <token>\".");
		return;
	}

	switch (req->route)
	{
		case ROUTE_STREAMS:
			if (get)
				req->op = OP_LIST_STREAMS;
			else
			{
				req->op = OP_CREATE_STREAM;
				if (!build_create_stream(req))
					return;
			}
			break;
		case ROUTE_STREAM:
			if (get)
			{
				req->op = OP_GET_STREAM;
				req->nparams = 1;
				req->params[0] = xstrdup(req->stream);
			}
			else
			{
				JsonBody	body;

				/* update_stream() judges the members itself */
				if (!parse_object_body(req, &body, "stream", NULL, NULL))
					return;
				json_body_free(&body);
				req->op = OP_UPDATE_STREAM;
				req->nparams = 2;
				req->params[0] = xstrdup(req->stream);
				req->params[1] = xstrndup(req->body.data, req->body.len);
			}
			break;
		case ROUTE_FRAMES:
			if (get)
			{
				char	   *limit = query_value(req, "limit", &bad_query);
				char	   *before = query_value(req, "before_sequence", &bad_query);
				int64_t		v;

				req->op = OP_LIST_FRAMES;
				req->nparams = 3;
				req->params[0] = xstrdup(req->stream);
				req->params[1] = limit;
				req->params[2] = before;
				if (bad_query || (limit && !parse_int64(limit, &v)))
				{
					request_set_error(req, 400, "22P02", "invalid limit", NULL,
									  "limit is a whole number; at most 500 frames are returned, 25 when it is 0 or less.");
					return;
				}
				/* clamp as list_frames() does, before it could overflow int4 */
				if (limit && (v <= 0 || v > 500))
				{
					free(req->params[1]);
					req->params[1] = xstrdup(v <= 0 ? "25" : "500");
				}
				if (before && !parse_int64(before, &v))
				{
					request_set_error(req, 400, "22P02", "invalid before_sequence", NULL,
									  "before_sequence is a sequence number: frames below it are returned.");
					return;
				}
			}
			else
			{
				req->op = OP_CREATE_FRAME;
				if (!build_create_frame(req))
					return;
			}
			break;
		case ROUTE_LATEST:
			req->op = OP_LATEST_FRAME;
			req->nparams = 1;
			req->params[0] = xstrdup(req->stream);
			break;
		case ROUTE_EVENTS:
			{
				char	   *from = query_value(req, "from", &bad_query);
				const char *last_id = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
																  "Last-Event-ID");

				if (bad_query)
				{
					free(from);
					request_set_error(req, 400, "22P02", "invalid query string", NULL, NULL);
					return;
				}
				/*
				 * parks the request for the events thread (counted first: the
				 * thread may finish it at once), or answers it
				 */
				request_parked();
				if (!events_begin(req, last_id, from))
					request_unparked();
				free(from);
				return;
			}
		default:
			break;
	}
	park(req);
}

/* ----------------------------------------------------------------
 * The libmicrohttpd callbacks
 * ----------------------------------------------------------------
 */
static void
release_body(Request *req)
{
	if (req->body.cap > 0)
		__atomic_sub_fetch(&buffered_body_bytes, req->body.cap, __ATOMIC_RELAXED);
	sb_free(&req->body);
}

static bool
take_body(Request *req, const char *data, size_t size)
{
	size_t		before = req->body.cap;

	req->body_seen += size;
	if (req->body_too_large)
		return true;
	if (req->body_seen > MAX_BODY_BYTES)
	{
		req->body_too_large = true;
		release_body(req);
		return true;
	}
	sb_append_len(&req->body, data, size);
	if (req->body.cap > before &&
		__atomic_add_fetch(&buffered_body_bytes, req->body.cap - before, __ATOMIC_RELAXED) >
		MAX_BUFFERED_BODY_BYTES)
		return false;
	return true;
}

static enum MHD_Result
access_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			   const char *version, const char *upload_data, size_t *upload_data_size,
			   void **con_cls)
{
	Request    *req = *con_cls;

	(void) cls;
	(void) version;
	if (req == NULL)
	{
		const char *cl;

		req = xcalloc(1, sizeof(Request));
		req->conn = conn;
		req->op = OP_NONE;
		clock_gettime(CLOCK_MONOTONIC, &req->started);
		snprintf(req->method, sizeof(req->method), "%s", method);
		req->path = xstrdup(url);
		req->route = route_path(url, &req->account, &req->stream);
		*con_cls = req;

		/* refuse an announced oversized body before it is sent */
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl != NULL)
		{
			int64_t		n;

			if (parse_int64(cl, &n) && n > MAX_BODY_BYTES)
			{
				req->body_too_large = true;
				dispatch(req);
				return queue_request_response(req);
			}
		}
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		bool		ok = take_body(req, upload_data, *upload_data_size);

		*upload_data_size = 0;
		if (!ok)
		{
			log_msg("request bodies in flight exceed %zu bytes; closing a connection",
					MAX_BUFFERED_BODY_BYTES);
			return MHD_NO;
		}
		return MHD_YES;
	}
	if (!req->done && !req->parked)
		dispatch(req);
	if (!req->done)
		return MHD_YES;			/* parked: resumed when the answer is ready */
	release_body(req);
	if (req->route == ROUTE_PAGE && req->status == 200)
		return queue_buffer(req, 200, "text/html; charset=utf-8",
							xstrndup(page_html, sizeof(page_html) - 1), sizeof(page_html) - 1);
	return queue_request_response(req);
}

/* Log values: bare when safe, else double-quoted with escapes (as logs.c). */
static void
append_log_value(StrBuf *sb, const char *v)
{
	bool		plain = *v != '\0';

	for (const unsigned char *c = (const unsigned char *) v; *c && plain; c++)
		if (*c <= 0x20 || *c >= 0x7F || *c == '"' || *c == '=' || *c == '\\')
			plain = false;
	if (plain)
	{
		sb_append(sb, v);
		return;
	}
	sb_append(sb, "\"");
	for (const unsigned char *c = (const unsigned char *) v; *c; c++)
	{
		if (*c == '"' || *c == '\\')
			sb_printf(sb, "\\%c", *c);
		else if (*c == '\n')
			sb_append(sb, "\\n");
		else if (*c < 0x20 || *c >= 0x7F)
			sb_printf(sb, "\\x%02x", *c);
		else
			sb_append_len(sb, (const char *) c, 1);
	}
	sb_append(sb, "\"");
}

static void
access_log(Request *req, double seconds)
{
	StrBuf		line;
	struct timeval tv;
	struct tm	tm;
	char		stamp[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	sb_init(&line);
	sb_printf(&line, "%s.%03dZ method=", stamp, (int) (tv.tv_usec / 1000));
	append_log_value(&line, req->method);
	sb_append(&line, " path=");
	append_log_value(&line, req->path);
	if (req->log_status)
		sb_printf(&line, " status=%d", req->log_status);
	else
		sb_append(&line, " status=-");
	sb_printf(&line, " duration_ms=%.3f account=", seconds * 1000);
	append_log_value(&line, req->log_account ? req->log_account : "-");
	sb_append(&line, "\n");
	pthread_mutex_lock(&log_lock);
	fwrite(line.data, 1, line.len, stdout);
	fflush(stdout);
	pthread_mutex_unlock(&log_lock);
	sb_free(&line);
}

static void
request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
				  enum MHD_RequestTerminationCode toe)
{
	Request    *req = *con_cls;
	double		seconds;

	(void) cls;
	(void) conn;
	(void) toe;
	if (req == NULL)
		return;
	seconds = seconds_since(&req->started);
	access_log(req, seconds);
	metrics_count_request(req->route, req->log_status, seconds);
	events_request_gone(req);
	free_params(req);
	release_body(req);
	sb_free(&req->response);
	free(req->path);
	free(req->account);
	free(req->stream);
	free(req->token);
	free(req->location);
	free(req->log_account);
	free(req);
	*con_cls = NULL;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/*
 * libmicrohttpd's messages, mostly about clients that misbehave (closed
 * early, oversized headers): at most one per second, so that a hostile
 * client cannot flood the log; the number left out is said.
 */
static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static int64_t last_ms;
	static long suppressed;
	char		buf[512];
	size_t		n;
	int64_t		now = now_ms();

	(void) cls;
	pthread_mutex_lock(&lock);
	if (last_ms != 0 && now - last_ms < 1000)
	{
		suppressed++;
		pthread_mutex_unlock(&lock);
		return;
	}
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	if (suppressed > 0)
		log_msg("libmicrohttpd: %s (%ld earlier messages left out)", buf, suppressed);
	else
		log_msg("libmicrohttpd: %s", buf);
	last_ms = now;
	suppressed = 0;
	pthread_mutex_unlock(&lock);
}

struct MHD_Daemon *
start_http_daemon(int listen_fd, int threads, unsigned max_connections, unsigned idle_timeout)
{
	return MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
							MHD_USE_ERROR_LOG,
							0, NULL, NULL, access_handler, NULL,
							MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
							MHD_OPTION_LISTEN_SOCKET, listen_fd,
							MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) threads,
							MHD_OPTION_CONNECTION_LIMIT, max_connections,
							MHD_OPTION_CONNECTION_TIMEOUT, idle_timeout,
							MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
							MHD_OPTION_UNESCAPE_CALLBACK, keep_escapes, NULL,
							MHD_OPTION_END);
}

/* ----------------------------------------------------------------
 * The metrics listener: GET /metrics and GET /healthz, nothing else
 * ----------------------------------------------------------------
 */
static enum MHD_Result
metrics_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				const char *version, const char *upload_data, size_t *upload_data_size,
				void **con_cls)
{
	static int	first_call_marker;
	Request		req;
	StrBuf		out;
	char		err[512];
	enum MHD_Result ret;
	int			status = 200;
	const char *type = "text/plain; version=0.0.4; charset=utf-8";

	(void) cls;
	(void) version;
	(void) upload_data;
	if (*con_cls == NULL)
	{
		*con_cls = &first_call_marker;
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		*upload_data_size = 0;	/* no route takes a body */
		return MHD_YES;
	}
	memset(&req, 0, sizeof(req));
	req.conn = conn;
	req.route = strcmp(url, "/metrics") == 0 ? ROUTE_METRICS :
		strcmp(url, "/healthz") == 0 ? ROUTE_HEALTHZ : ROUTE_UNKNOWN;
	snprintf(req.method, sizeof(req.method), "%s", method);
	req.path = (char *) url;
	sb_init(&out);
	if (req.route == ROUTE_UNKNOWN)
	{
		request_set_error(&req, 404, "42704", "no such route", NULL,
						  "The metrics listener serves GET /metrics and GET /healthz.");
		status = 404;
	}
	else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
	{
		request_set_error(&req, 405, "0A000", "method not allowed", NULL, NULL);
		status = 405;
	}
	else if (req.route == ROUTE_METRICS)
	{
		/* the gateway's series are served even when the database is not */
		bool		up = metrics_db_scrape(&out, err, sizeof(err));

		if (!up)
		{
			static int64_t last_logged;

			if (now_ms() - last_logged > 60000)
			{
				log_msg("metrics: datastreams.metrics() failed: %s", err);
				last_logged = now_ms();
			}
		}
		metrics_append(&out, up);
	}
	else if (!metrics_db_scrape(NULL, err, sizeof(err)))
	{
		request_set_error(&req, 503, "08006", "the database is unavailable", err, NULL);
		status = 503;
	}
	else
		sb_append(&out, "{\"status\":\"ok\"}");
	if (status != 200)
	{
		sb_free(&out);
		out = req.response;
		sb_init(&req.response);
		type = "application/json; charset=utf-8";
	}
	if (status == 200 && req.route == ROUTE_HEALTHZ)
		type = "application/json; charset=utf-8";
	{
		size_t		len = out.len;
		struct MHD_Response *resp = MHD_create_response_from_buffer(len, sb_detach(&out),
																	MHD_RESPMEM_MUST_FREE);

		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
		if (status == 405)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
		ret = MHD_queue_response(conn, status, resp);
		MHD_destroy_response(resp);
	}
	return ret;
}

struct MHD_Daemon *
start_metrics_daemon(int listen_fd)
{
	/* scrapes are rare and may wait for the database: a thread each */
	return MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
							MHD_USE_ERROR_LOG,
							0, NULL, NULL, metrics_handler, NULL,
							MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
							MHD_OPTION_LISTEN_SOCKET, listen_fd,
							MHD_OPTION_CONNECTION_LIMIT, 64u,
							MHD_OPTION_CONNECTION_TIMEOUT, 30u,
							MHD_OPTION_END);
}
