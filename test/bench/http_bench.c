/*-------------------------------------------------------------------------
 *
 * http_bench.c
 *	  Benchmark clients for datastreams-http (test/bench/http.sh).
 *
 *	  http_bench post HOST PORT PATH TOKEN CLIENTS SECONDS
 *	      CLIENTS threads, each on one keep-alive connection, POST a frame
 *	      ({"payload": {"price": N}}) to PATH again and again.
 *	  http_bench libpq CONNINFO ACCOUNT STREAM CLIENTS SECONDS
 *	      the baseline: CLIENTS threads, each on one libpq connection acting
 *	      for ACCOUNT, call datastreams.create_frame() (a prepared statement)
 *	      again and again.
 *	  http_bench sse HOST PORT PATH TOKEN CLIENTS CONNINFO ACCOUNT STREAM FRAMES RATE
 *	      CLIENTS event streams on PATH; once all are open, FRAMES frames
 *	      are inserted at RATE per second, each carrying in its payload
 *	      "t", the writer's clock_timestamp() in Unix microseconds, taken
 *	      while the INSERT runs; each client measures the delay to the
 *	      moment it reads the frame's event.
 *
 * post and libpq print "requests=N seconds=S rate=R p50_ms=X p99_ms=X
 * errors=N"; sse prints "clients=N frames=N events=N missing=N p50_ms=X
 * p99_ms=X max_ms=X".  The event streams are requested with HTTP/1.0, so
 * the body comes without chunked coding.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE				/* strcasestr */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "libpq-fe.h"

#define MAX_SAMPLES		(1 << 22)

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

	return x < y ? -1 : x > y;
}

static double
percentile_ms(int64_t *v, size_t n, double p)
{
	if (n == 0)
		return -1;
	return v[(size_t) (p * (n - 1))] / 1000.0;
}

static void
die(const char *msg)
{
	fprintf(stderr, "http_bench: %s\n", msg);
	exit(1);
}

static int
connect_to(const char *host, int port)
{
	struct sockaddr_in addr;
	int			fd = socket(AF_INET, SOCK_STREAM, 0);
	int			one = 1;

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t) port);
	if (fd < 0 || inet_pton(AF_INET, host, &addr.sin_addr) != 1 ||
		connect(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0)
		die("could not connect to the gateway");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* ---- shared by the throughput modes ---- */
static volatile bool stop_now;
static int64_t *latencies;
static size_t nlatencies;
static long errors;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;

static void
record(int64_t *mine, size_t n, long errs)
{
	pthread_mutex_lock(&stats_lock);
	for (size_t i = 0; i < n && nlatencies < MAX_SAMPLES; i++)
		latencies[nlatencies++] = mine[i];
	errors += errs;
	pthread_mutex_unlock(&stats_lock);
}

static void
report(double seconds)
{
	qsort(latencies, nlatencies, sizeof(int64_t), cmp_i64);
	printf("requests=%zu seconds=%.2f rate=%.1f p50_ms=%.3f p99_ms=%.3f errors=%ld\n",
		   nlatencies, seconds, nlatencies / seconds,
		   percentile_ms(latencies, nlatencies, 0.50),
		   percentile_ms(latencies, nlatencies, 0.99), errors);
}

static void
run_threads(int clients, double seconds, void *(*fn) (void *), void **args)
{
	pthread_t  *threads = calloc(clients, sizeof(pthread_t));
	int64_t		start;

	latencies = malloc(sizeof(int64_t) * MAX_SAMPLES);
	start = now_us();
	for (int i = 0; i < clients; i++)
		pthread_create(&threads[i], NULL, fn, args[i]);
	usleep((useconds_t) (seconds * 1e6));
	stop_now = true;
	for (int i = 0; i < clients; i++)
		pthread_join(threads[i], NULL);
	report((now_us() - start) / 1e6);
}

/* ---- post ---- */
typedef struct PostArgs
{
	const char *host;
	int			port;
	const char *path;
	const char *token;
} PostArgs;

static void *
post_thread(void *arg)
{
	PostArgs   *a = arg;
	int			fd = connect_to(a->host, a->port);
	int64_t    *mine = malloc(sizeof(int64_t) * 1000000);
	size_t		n = 0;
	long		errs = 0;
	char		req[2048];
	char		buf[65536];
	long		i = 0;

	while (!stop_now && n < 1000000)
	{
		char		body[64];
		int			blen = snprintf(body, sizeof(body), "{\"payload\": {\"price\": %ld}}", i++);
		int			rlen = snprintf(req, sizeof(req),
									"POST %s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n"
									"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
									a->path, a->token, blen, body);
		int64_t		t0 = now_us();
		size_t		have = 0;
		char	   *end = NULL;
		long		clen = -1;

		if (write(fd, req, rlen) != rlen)
			die("write failed");
		/* headers, then Content-Length bytes of body */
		for (;;)
		{
			ssize_t		r = read(fd, buf + have, sizeof(buf) - have - 1);

			if (r <= 0)
				die("the gateway closed the connection");
			have += r;
			buf[have] = '\0';
			if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL)
			{
				char	   *cl = strcasestr(buf, "Content-Length:");

				clen = cl ? atol(cl + 15) : 0;
			}
			if (end != NULL && have >= (size_t) (end + 4 - buf) + clen)
				break;
		}
		if (strncmp(buf, "HTTP/1.1 201", 12) != 0)
		{
			if (errs++ == 0)
				fprintf(stderr, "http_bench: unexpected response: %.200s\n", buf);
			continue;
		}
		mine[n++] = now_us() - t0;
	}
	close(fd);
	record(mine, n, errs);
	free(mine);
	return NULL;
}

/* ---- libpq ---- */
typedef struct PqArgs
{
	const char *conninfo;
	const char *account;
	const char *stream;
} PqArgs;

static void *
libpq_thread(void *arg)
{
	PqArgs	   *a = arg;
	PGconn	   *conn = PQconnectdb(a->conninfo);
	const char *set_params[1] = {a->account};
	int64_t    *mine = malloc(sizeof(int64_t) * 1000000);
	size_t		n = 0;
	long		errs = 0;
	long		i = 0;
	PGresult   *res;

	if (PQstatus(conn) != CONNECTION_OK)
		die(PQerrorMessage(conn));
	res = PQexecParams(conn, "SELECT set_config('datastreams.account_id', $1, false)", 1, NULL,
					   set_params, NULL, NULL, 0);
	PQclear(res);
	res = PQprepare(conn, "frame",
					"SELECT * FROM datastreams.create_frame($1::uuid, payload => $2::jsonb)", 2, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		die(PQerrorMessage(conn));
	PQclear(res);
	while (!stop_now && n < 1000000)
	{
		char		body[64];
		const char *params[2] = {a->stream, body};
		int64_t		t0 = now_us();

		snprintf(body, sizeof(body), "{\"price\": %ld}", i++);
		res = PQexecPrepared(conn, "frame", 2, params, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			mine[n++] = now_us() - t0;
		else if (errs++ == 0)
			fprintf(stderr, "http_bench: %s", PQerrorMessage(conn));
		PQclear(res);
	}
	PQfinish(conn);
	record(mine, n, errs);
	free(mine);
	return NULL;
}

/* ---- sse ---- */
typedef struct SseClient
{
	int			fd;
	char		buf[1 << 16];
	size_t		have;
	bool		open;			/* the headers came */
	int			events;
} SseClient;

/* Read what is there; record the delay of each complete event. */
static void
sse_read(SseClient *c, int64_t *delays, size_t *ndelays)
{
	ssize_t		r = read(c->fd, c->buf + c->have, sizeof(c->buf) - c->have - 1);
	int64_t		now = now_us();
	char	   *p;
	char	   *line;

	if (r <= 0)
		die("an event stream ended");
	c->have += r;
	c->buf[c->have] = '\0';
	p = c->buf;
	if (!c->open)
	{
		char	   *end = strstr(c->buf, "\r\n\r\n");

		if (end == NULL)
			return;
		if (strncmp(c->buf, "HTTP/1.0 200", 12) != 0 && strncmp(c->buf, "HTTP/1.1 200", 12) != 0)
			die("an event stream was refused");
		c->open = true;
		p = end + 4;
	}
	/* complete lines only; "data: {...}" carries the payload's "t" */
	while ((line = strchr(p, '\n')) != NULL)
	{
		*line = '\0';
		if (strncmp(p, "data: ", 6) == 0)
		{
			char	   *t = strstr(p, "\"payload\": {\"t\": ");

			if (t == NULL)
				t = strstr(p, "\"payload\":{\"t\":");
			if (t != NULL)
			{
				int64_t		sent = strtoll(strchr(t + 10, ':') + 1, NULL, 10);

				if (*ndelays < MAX_SAMPLES)
					delays[(*ndelays)++] = now - sent;
				c->events++;
			}
		}
		p = line + 1;
	}
	c->have -= (size_t) (p - c->buf);
	memmove(c->buf, p, c->have);
}

typedef struct Writer
{
	const char *conninfo;
	const char *account;
	const char *stream;
	int			frames;
	double		rate;
} Writer;

static void *
writer_thread(void *arg)
{
	Writer	   *w = arg;
	PGconn	   *conn = PQconnectdb(w->conninfo);
	const char *params[2] = {w->account, w->stream};
	PGresult   *res;

	if (PQstatus(conn) != CONNECTION_OK)
		die(PQerrorMessage(conn));
	res = PQexecParams(conn, "SELECT set_config('datastreams.account_id', $1, false)", 1, NULL,
					   params, NULL, NULL, 0);
	PQclear(res);
	for (int i = 0; i < w->frames; i++)
	{
		res = PQexecParams(conn,
						   "SELECT datastreams.create_frame($1::uuid, payload => jsonb_build_object('t',"
						   " (extract(epoch FROM clock_timestamp()) * 1000000)::int8))",
						   1, NULL, params + 1, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			die(PQerrorMessage(conn));
		PQclear(res);
		usleep((useconds_t) (1e6 / w->rate));
	}
	PQfinish(conn);
	return NULL;
}

static int
sse_main(char **argv)
{
	const char *host = argv[0];
	int			port = atoi(argv[1]);
	const char *path = argv[2];
	const char *token = argv[3];
	int			nclients = atoi(argv[4]);
	Writer		w = {argv[5], argv[6], argv[7], atoi(argv[8]), atof(argv[9])};
	SseClient  *clients = calloc(nclients, sizeof(SseClient));
	struct pollfd *fds = calloc(nclients, sizeof(struct pollfd));
	int64_t    *delays = malloc(sizeof(int64_t) * MAX_SAMPLES);
	size_t		ndelays = 0;
	pthread_t	writer;
	int			open_count = 0;
	int64_t		deadline;
	bool		writing = false;
	int			missing = 0;

	for (int i = 0; i < nclients; i++)
	{
		char		req[1024];
		int			n = snprintf(req, sizeof(req),
								 "GET %s HTTP/1.0\r\nHost: bench\r\nAuthorization: Bearer %s\r\n\r\n",
								 path, token);

		clients[i].fd = connect_to(host, port);
		if (write(clients[i].fd, req, n) != n)
			die("write failed");
		fds[i].fd = clients[i].fd;
		fds[i].events = POLLIN;
	}
	deadline = now_us() + 30 * 1000000LL;
	for (;;)
	{
		int			done = 0;

		if (!writing && open_count == nclients)
		{
			pthread_create(&writer, NULL, writer_thread, &w);
			writing = true;
			deadline = now_us() + (int64_t) ((w.frames / w.rate + 10) * 1e6);
		}
		if (now_us() > deadline)
			break;
		if (poll(fds, nclients, 100) < 0 && errno != EINTR)
			die("poll failed");
		open_count = 0;
		for (int i = 0; i < nclients; i++)
		{
			if (fds[i].revents & (POLLIN | POLLHUP | POLLERR))
				sse_read(&clients[i], delays, &ndelays);
			open_count += clients[i].open;
			done += clients[i].events >= w.frames;
		}
		if (writing && done == nclients)
			break;
	}
	if (writing)
		pthread_join(writer, NULL);
	for (int i = 0; i < nclients; i++)
	{
		missing += clients[i].events < w.frames ? w.frames - clients[i].events : 0;
		close(clients[i].fd);
	}
	qsort(delays, ndelays, sizeof(int64_t), cmp_i64);
	printf("clients=%d frames=%d events=%zu missing=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
		   nclients, w.frames, ndelays, missing, percentile_ms(delays, ndelays, 0.50),
		   percentile_ms(delays, ndelays, 0.99), percentile_ms(delays, ndelays, 1.0));
	return missing == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	void	  **args;

	if (argc >= 8 && strcmp(argv[1], "post") == 0)
	{
		int			clients = atoi(argv[6]);

		args = calloc(clients, sizeof(void *));
		for (int i = 0; i < clients; i++)
		{
			PostArgs   *a = malloc(sizeof(PostArgs));

			*a = (PostArgs)
			{
				argv[2], atoi(argv[3]), argv[4], argv[5]
			};
			args[i] = a;
		}
		run_threads(clients, atof(argv[7]), post_thread, args);
		return errors ? 1 : 0;
	}
	if (argc >= 7 && strcmp(argv[1], "libpq") == 0)
	{
		int			clients = atoi(argv[5]);

		args = calloc(clients, sizeof(void *));
		for (int i = 0; i < clients; i++)
		{
			PqArgs	   *a = malloc(sizeof(PqArgs));

			*a = (PqArgs)
			{
				argv[2], argv[3], argv[4]
			};
			args[i] = a;
		}
		run_threads(clients, atof(argv[6]), libpq_thread, args);
		return errors ? 1 : 0;
	}
	if (argc >= 12 && strcmp(argv[1], "sse") == 0)
		return sse_main(argv + 2);
	fprintf(stderr, "usage: see the header of test/bench/http_bench.c\n");
	return 2;
}
