/*-------------------------------------------------------------------------
 *
 * request.c
 *	  What the pool and the events thread may do to a request that the
 *	  HTTP side (server.c) handed them: answer it with an error, resume
 *	  it, and the count of requests parked for them, which the shutdown
 *	  waits on.
 *
 * IDENTIFICATION
 *	  src/bin/http/request.c
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "http.h"

static int	nparked;			/* atomic */

/* {"error": ..., "code": ..., "detail": ..., "hint": ...} */
void
request_set_error(Request *req, int status, const char *sqlstate, const char *message,
				  const char *detail, const char *hint)
{
	StrBuf	   *sb = &req->response;

	req->status = status;
	sb_reset(sb);
	sb_append(sb, "{\"error\":");
	sb_append_json_string(sb, message, strlen(message));
	sb_append(sb, ",\"code\":");
	sb_append_json_string(sb, sqlstate, strlen(sqlstate));
	sb_append(sb, ",\"detail\":");
	if (detail)
		sb_append_json_string(sb, detail, strlen(detail));
	else
		sb_append(sb, "null");
	sb_append(sb, ",\"hint\":");
	if (hint)
		sb_append_json_string(sb, hint, strlen(hint));
	else
		sb_append(sb, "null");
	sb_append(sb, "}");
	req->done = true;
}

/*
 * Count a request parked for the pool or the events thread; counted before
 * it is handed over, since the other thread may finish it at once.
 */
void
request_parked(void)
{
	__atomic_add_fetch(&nparked, 1, __ATOMIC_RELAXED);
}

/* A request counted as parked was answered without parking after all. */
void
request_unparked(void)
{
	__atomic_sub_fetch(&nparked, 1, __ATOMIC_RELAXED);
}

/* A worker or the events thread is done with a parked request. */
void
request_finish_parked(Request *req)
{
	req->done = true;
	MHD_resume_connection(req->conn);
	request_unparked();
}

/* Requests waiting for the pool or the events thread. */
int
parked_requests(void)
{
	return __atomic_load_n(&nparked, __ATOMIC_RELAXED);
}
