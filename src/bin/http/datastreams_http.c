/*-------------------------------------------------------------------------
 *
 * datastreams_http.c
 *	  datastreams-http: the HTTP API of the datastreams service, a thin
 *	  gateway over the extension's SQL API.
 *
 * This file holds the program's life: options, the listening sockets, the
 * threads, and the clean shutdown on SIGTERM/SIGINT.  Termination signals
 * are blocked in every thread and taken by sigwait() in the main thread,
 * so no handler ever runs inside library code.
 *
 * The order of the shutdown matters to libmicrohttpd, which aborts when it
 * is stopped with a connection still suspended: stop accepting, answer new
 * requests 503 at once, end every event stream, wait until no request is
 * parked for the pool or the events thread, and only then stop the daemon,
 * the pool and the events thread.
 *
 * IDENTIFICATION
 *	  src/bin/http/datastreams_http.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"

#define DEFAULT_LISTEN		"127.0.0.1:8080"
#define DEFAULT_POOL		4
#define MAX_POOL			256
#define DEFAULT_THREADS		2
#define MAX_THREADS			64
#define DEFAULT_MAX_CONNECTIONS 4096
#define DEFAULT_IDLE_TIMEOUT 60
#define SHUTDOWN_WAIT_MS	5000

static void
usage(void)
{
	printf("%s serves the datastreams SQL API over HTTP.\n\n", PROGNAME);
	printf("Usage:\n  %s [OPTION]...\n\n", PROGNAME);
	printf("Options:\n");
	printf("  -l, --listen=ADDR:PORT          address to serve the API on (default %s;\n"
		   "                                  PORT 0 picks a free port, printed at start)\n", DEFAULT_LISTEN);
	printf("  -d, --dbname=CONNINFO           database name or connection string/URI; the role\n"
		   "                                  must be trusted (datastreams.trust_role)\n");
	printf("  -p, --pool=N                    database connections for requests (default %d)\n", DEFAULT_POOL);
	printf("      --metrics-listen=ADDR:PORT  serve GET /metrics and GET /healthz there (no token)\n");
	printf("      --metrics-dbname=CONNINFO   connection for datastreams.metrics() (default: --dbname)\n");
	printf("      --threads=N                 HTTP threads (default %d)\n", DEFAULT_THREADS);
	printf("      --max-connections=N         open HTTP connections at most (default %d)\n", DEFAULT_MAX_CONNECTIONS);
	printf("      --idle-timeout=SECS         close connections idle this long (default %d)\n", DEFAULT_IDLE_TIMEOUT);
	printf("  -V, --version                   print the version and exit\n");
	printf("  -?, --help                      print this help and exit\n\n");
	printf("One access-log line per request goes to standard output, diagnostics to\n"
		   "standard error.  SIGTERM or SIGINT stops the gateway cleanly.\n");
}

static void usage_error(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));

static void
usage_error(const char *fmt,...)
{
	va_list		ap;

	fputs(PROGNAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry \"%s --help\" for more information.\n", PROGNAME);
	exit(2);
}

static long
parse_count(const char *option, const char *arg, long min, long max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno != 0 || *end != '\0' || end == arg || v < min || v > max)
		usage_error("invalid value \"%s\" for %s: a whole number from %ld to %ld expected",
					arg, option, min, max);
	return v;
}

/*
 * Listen on ADDR:PORT ([ADDR]:PORT for IPv6).  Returns the socket, after
 * printing the address actually bound (PORT 0 picks a free one).
 */
static int
open_listener(const char *spec, const char *what)
{
	char	   *copy = xstrdup(spec);
	char	   *host = copy;
	char	   *port = strrchr(copy, ':');
	struct addrinfo hints;
	struct addrinfo *ai = NULL;
	int			fd = -1;
	int			rc;
	int			one = 1;
	char		shost[NI_MAXHOST];
	char		sport[NI_MAXSERV];
	struct sockaddr_storage bound;
	socklen_t	bound_len = sizeof(bound);

	if (port == NULL || port == copy || port[1] == '\0')
		usage_error("invalid address \"%s\" for %s: ADDR:PORT expected", spec, what);
	*port++ = '\0';
	if (host[0] == '[')
	{
		size_t		n = strlen(host);

		if (host[n - 1] != ']')
			usage_error("invalid address \"%s\" for %s: [IPv6]:PORT expected", spec, what);
		host[n - 1] = '\0';
		host++;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0)
		usage_error("invalid address \"%s\" for %s: %s", spec, what, gai_strerror(rc));
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0 ||
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
		bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
		listen(fd, 1024) != 0)
	{
		log_msg("could not listen on %s: %s", spec, strerror(errno));
		exit(1);
	}
	freeaddrinfo(ai);
	if (getsockname(fd, (struct sockaddr *) &bound, &bound_len) == 0 &&
		getnameinfo((struct sockaddr *) &bound, bound_len, shost, sizeof(shost), sport,
					sizeof(sport), NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		log_msg("%s listening on http://%s%s%s:%s/", what,
				strchr(shost, ':') ? "[" : "", shost, strchr(shost, ':') ? "]" : "", sport);
	free(copy);
	return fd;
}

/* 1,000 idle clients need more descriptors than the usual soft limit. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_msg("could not raise the open file limit: %s", strerror(errno));
	}
}

int
main(int argc, char **argv)
{
	enum
	{
		OPT_METRICS_LISTEN = 256, OPT_METRICS_DBNAME, OPT_THREADS, OPT_MAX_CONNECTIONS,
		OPT_IDLE_TIMEOUT
	};
	static const struct option long_options[] = {
		{"listen", required_argument, NULL, 'l'},
		{"dbname", required_argument, NULL, 'd'},
		{"pool", required_argument, NULL, 'p'},
		{"metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN},
		{"metrics-dbname", required_argument, NULL, OPT_METRICS_DBNAME},
		{"threads", required_argument, NULL, OPT_THREADS},
		{"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
		{"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
		{"help", no_argument, NULL, '?'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	const char *listen_spec = DEFAULT_LISTEN;
	const char *conninfo = "";
	const char *metrics_spec = NULL;
	const char *metrics_conninfo = NULL;
	long		pool_size = DEFAULT_POOL;
	long		threads = DEFAULT_THREADS;
	long		max_connections = DEFAULT_MAX_CONNECTIONS;
	long		idle_timeout = DEFAULT_IDLE_TIMEOUT;
	int			c;
	int			listen_fd;
	int			metrics_fd = -1;
	struct MHD_Daemon *daemon;
	struct MHD_Daemon *metrics_daemon = NULL;
	sigset_t	sigs;
	int			sig;
	PQconninfoOption *parsed;
	char	   *errmsg = NULL;
	PGconn	   *probe;
	int64_t		deadline;

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-?") == 0))
	{
		usage();
		return 0;
	}
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":l:d:p:V", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'l':
				listen_spec = optarg;
				break;
			case 'd':
				conninfo = optarg;
				break;
			case 'p':
				pool_size = parse_count("--pool", optarg, 1, MAX_POOL);
				break;
			case OPT_METRICS_LISTEN:
				metrics_spec = optarg;
				break;
			case OPT_METRICS_DBNAME:
				metrics_conninfo = optarg;
				break;
			case OPT_THREADS:
				threads = parse_count("--threads", optarg, 1, MAX_THREADS);
				break;
			case OPT_MAX_CONNECTIONS:
				max_connections = parse_count("--max-connections", optarg, 16, 1000000);
				break;
			case OPT_IDLE_TIMEOUT:
				idle_timeout = parse_count("--idle-timeout", optarg, 1, 86400);
				break;
			case 'V':
				puts(VERSION_STRING);
				return 0;
			case ':':
				usage_error("option \"%s\" needs a value", argv[optind - 1]);
			default:
				if (optopt == '?')
				{
					usage();
					return 0;
				}
				usage_error("invalid option \"%s\"", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument \"%s\"", argv[optind]);

	/* a connection string that cannot work is a usage error, found now */
	parsed = PQconninfoParse(conninfo, &errmsg);
	if (parsed == NULL)
		usage_error("invalid --dbname: %s", errmsg ? errmsg : "out of memory");
	PQconninfoFree(parsed);
	if (metrics_conninfo == NULL)
		metrics_conninfo = conninfo;
	else if ((parsed = PQconninfoParse(metrics_conninfo, &errmsg)) == NULL)
		usage_error("invalid --metrics-dbname: %s", errmsg ? errmsg : "out of memory");
	else
		PQconninfoFree(parsed);

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	/* blocked before any thread starts, so every thread inherits the mask */
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	raise_fd_limit();

	listen_fd = open_listener(listen_spec, "API");
	if (metrics_spec)
		metrics_fd = open_listener(metrics_spec, "metrics");

	/* the gateway starts without the database too: /healthz says 503 */
	probe = db_connect(conninfo, "startup check");
	if (probe != NULL)
		PQfinish(probe);

	if (!pool_start(conninfo, (int) pool_size) || !events_start(conninfo) ||
		!metrics_db_start(metrics_conninfo))
		return 1;
	daemon = start_http_daemon(listen_fd, (int) threads, (unsigned) max_connections,
							   (unsigned) idle_timeout);
	if (daemon == NULL)
	{
		log_msg("could not start the HTTP server");
		return 1;
	}
	if (metrics_fd >= 0)
	{
		metrics_daemon = start_metrics_daemon(metrics_fd);
		if (metrics_daemon == NULL)
		{
			log_msg("could not start the metrics server");
			return 1;
		}
	}
	log_msg("ready (pool %ld, threads %ld)", pool_size, threads);

	while (sigwait(&sigs, &sig) != 0)
		;
	log_msg("received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");

	shutting_down = true;
	{
		MHD_socket fd = MHD_quiesce_daemon(daemon);

		if (fd != MHD_INVALID_SOCKET)
			close(fd);
	}
	if (metrics_daemon)
		MHD_stop_daemon(metrics_daemon);
	events_end_all();
	deadline = now_ms() + SHUTDOWN_WAIT_MS;
	while ((parked_requests() > 0 || events_suspended() > 0) && now_ms() < deadline)
		usleep(10000);
	/* a straggler that parked meanwhile is still served by the running pool */
	usleep(50000);
	while ((parked_requests() > 0 || events_suspended() > 0) && now_ms() < deadline)
		usleep(10000);
	if (parked_requests() > 0 || events_suspended() > 0)
	{
		log_msg("requests still waiting after %d ms; exiting without stopping cleanly",
				SHUTDOWN_WAIT_MS);
		return 1;
	}
	MHD_stop_daemon(daemon);
	pool_stop();
	events_stop();
	log_msg("stopped");
	return 0;
}
