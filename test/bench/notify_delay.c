/*-------------------------------------------------------------------------
 *
 * notify_delay.c
 *	  Benchmark listener: LISTEN on some channels for a while and report
 *	  how long frames took from their INSERT to this client.
 *
 *	  notify_delay CONNINFO SECONDS CHANNEL...
 *
 * The delay of a notification is measured from the INSERT of the oldest
 * frame it announces:
 *   - a per-frame notification carries the frame's payload, in which the
 *     benchmark puts "t": the writer's clock_timestamp() in Unix
 *     microseconds, taken while the INSERT ran (the commit comes after it);
 *   - a notification without it (a batched wake-up of the notify worker)
 *     is measured from its "first_sequence", else its "sequence": the
 *     benchmark leaves sequences to the trigger, which makes them the Unix
 *     time of the INSERT in nanoseconds.
 * On exit the program prints one line:
 *
 *	  received=N timed=N p50_ms=X p99_ms=X max_ms=X
 *
 * It stops after SECONDS, on SIGTERM/SIGINT, or when the connection is
 * lost; it never blocks longer than 100 ms at a time.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include "libpq-fe.h"

static volatile sig_atomic_t stop = 0;

static void
on_signal(int signo)
{
	(void) signo;
	stop = 1;
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a;
	int64_t		y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

/* the number after "key": in s, or -1 */
static int64_t
number_after(const char *s, const char *key)
{
	const char *p = strstr(s, key);

	if (p == NULL)
		return -1;
	p += strlen(key);
	while (*p == ' ')
		p++;
	return strtoll(p, NULL, 10);
}

/* when the oldest frame a notification announces was inserted (Unix us), or -1 */
static int64_t
inserted_at(const char *extra)
{
	const char *payload = strstr(extra, "\"payload\"");
	int64_t		v;

	if (payload != NULL && (v = number_after(payload, "\"t\":")) > 0)
		return v;
	if ((v = number_after(extra, "\"first_sequence\":")) > 0)
		return v / 1000;
	if ((v = number_after(extra, "\"sequence\":")) > 0)
		return v / 1000;
	return -1;
}

static double
percentile_ms(const int64_t *sorted, size_t n, double q)
{
	size_t		i;

	if (n == 0)
		return 0.0;
	i = (size_t) (q * (double) (n - 1) + 0.5);
	return (double) sorted[i] / 1000.0;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	double		seconds;
	int64_t		deadline;
	int64_t    *delays = NULL;
	size_t		ndelays = 0;
	size_t		capacity = 0;
	long		received = 0;
	int			i;

	if (argc < 4)
	{
		fprintf(stderr, "usage: %s CONNINFO SECONDS CHANNEL...\n", argv[0]);
		return 2;
	}
	seconds = atof(argv[2]);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "notify_delay: %s", PQerrorMessage(conn));
		return 1;
	}
	for (i = 3; i < argc; i++)
	{
		char	   *ident = PQescapeIdentifier(conn, argv[i], strlen(argv[i]));
		char		sql[256];
		PGresult   *res;

		snprintf(sql, sizeof(sql), "LISTEN %s", ident);
		PQfreemem(ident);
		res = PQexec(conn, sql);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			fprintf(stderr, "notify_delay: %s", PQerrorMessage(conn));
			return 1;
		}
		PQclear(res);
	}
	printf("listening\n");
	fflush(stdout);

	deadline = now_us() + (int64_t) (seconds * 1e6);
	while (!stop && now_us() < deadline)
	{
		int			sock = PQsocket(conn);
		fd_set		fds;
		struct timeval tv = {0, 100000};
		PGnotify   *n;

		FD_ZERO(&fds);
		FD_SET(sock, &fds);
		if (select(sock + 1, &fds, NULL, NULL, &tv) < 0)
		{
			if (errno == EINTR)
				continue;
			perror("notify_delay: select");
			break;
		}
		if (!PQconsumeInput(conn))
		{
			fprintf(stderr, "notify_delay: %s", PQerrorMessage(conn));
			break;
		}
		while ((n = PQnotifies(conn)) != NULL)
		{
			int64_t		t = inserted_at(n->extra);
			int64_t		arrived = now_us();

			received++;
			if (t > 0)
			{
				if (ndelays == capacity)
				{
					capacity = capacity ? capacity * 2 : 65536;
					delays = realloc(delays, capacity * sizeof(int64_t));
					if (delays == NULL)
					{
						fprintf(stderr, "notify_delay: out of memory\n");
						return 1;
					}
				}
				delays[ndelays++] = arrived - t;
			}
			PQfreemem(n);
		}
	}

	qsort(delays, ndelays, sizeof(int64_t), cmp_i64);
	printf("received=%ld timed=%zu p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
		   received, ndelays,
		   percentile_ms(delays, ndelays, 0.50),
		   percentile_ms(delays, ndelays, 0.99),
		   ndelays ? (double) delays[ndelays - 1] / 1000.0 : 0.0);
	PQfinish(conn);
	free(delays);
	return 0;
}
