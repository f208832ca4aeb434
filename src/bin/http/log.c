/*-------------------------------------------------------------------------
 *
 * log.c
 *	  The gateway's diagnostics on standard error, one line per message
 *	  from any thread, and its monotonic clock.
 *
 * IDENTIFICATION
 *	  src/bin/http/log.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "http.h"

static pthread_mutex_t stderr_lock = PTHREAD_MUTEX_INITIALIZER;

void
log_msg(const char *fmt,...)
{
	va_list		ap;

	pthread_mutex_lock(&stderr_lock);
	fputs(PROGNAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&stderr_lock);
}

double
seconds_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double) (now.tv_sec - start->tv_sec) + (now.tv_nsec - start->tv_nsec) / 1e9;
}

int64_t
now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}
