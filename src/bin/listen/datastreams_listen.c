/*-------------------------------------------------------------------------
 *
 * datastreams_listen.c
 *	  datastreams-listen: print the frames of datastreams streams as JSON
 *	  lines and keep following new ones with LISTEN/NOTIFY.
 *
 * Notifications are treated purely as wake-ups.  The client remembers the
 * last sequence it printed for every stream and always reads the frames
 * themselves with datastreams.frames_since(), so it depends neither on one
 * notification per frame nor on what a notification's payload contains;
 * the payload is only used to skip fetches that cannot return anything.
 *
 * Every (re)connection LISTENs before it replays from the last printed
 * sequence: whatever commits after the replay query's snapshot is then
 * announced by a notification, and a periodic catch-up fetch covers any
 * notification that is lost anyway.  Because the last printed sequence
 * survives reconnections, the output stays gap-free and duplicate-free
 * across server restarts.
 *
 * All waiting is done in pselect() with SIGINT and SIGTERM blocked
 * everywhere else, so a termination signal can never slip in between
 * checking the flag and going to sleep.
 *
 * IDENTIFICATION
 *	  src/bin/datastreams_listen.c
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include "libpq-fe.h"

#define PROGNAME			"datastreams-listen"
#define VERSION_STRING		PROGNAME " (datastreams) " DS_VERSION

/* Rows asked of frames_since() per call; the server caps it at this too. */
#define FETCH_LIMIT			10000
#define FETCH_LIMIT_STR		"10000"

/*
 * Streams fetched by one catch-up query.  Bounded so that the ORDER BY of a
 * single query never has to sort more than this many times FETCH_LIMIT rows.
 */
#define STREAMS_PER_QUERY	256

#define UUID_TEXT_LEN		36

#define INITIAL_BACKOFF_MS	100
#define DEFAULT_POLL_MS		5000
#define DEFAULT_BACKOFF_MS	5000
#define MAX_SECONDS_OPTION	86400.0

/*
 * Queries.  Everything built in is schema-qualified so that a hostile
 * search_path cannot redirect any of it.  Lists of streams are passed as
 * array parameters so that one round trip serves any number of streams.
 */
#define SET_ACCOUNT_SQL \
	"SELECT pg_catalog.set_config('datastreams.account_id', $1, false)"

#define LIST_STREAMS_SQL \
	"SELECT s.id::pg_catalog.text FROM datastreams.list_streams() AS s"

#define CHANNELS_SQL \
	"SELECT datastreams.channel(u.id)" \
	"  FROM pg_catalog.unnest($1::pg_catalog.uuid[])" \
	"       WITH ORDINALITY AS u(id, n)" \
	" ORDER BY u.n"

#define LATEST_SQL \
	"SELECT (SELECT f.sequence FROM datastreams.latest_frame(u.id) AS f)" \
	"  FROM pg_catalog.unnest($1::pg_catalog.uuid[])" \
	"       WITH ORDINALITY AS u(id, n)" \
	" ORDER BY u.n"

/*
 * The frame's JSON is exactly row_to_json() of frames_since()'s row; the
 * ordinal and the sequence ride along only for the client's bookkeeping.
 */
#define FETCH_SQL \
	"SELECT u.n, f.sequence, pg_catalog.row_to_json(f)::pg_catalog.text" \
	"  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[])," \
	"                  pg_catalog.unnest($2::pg_catalog.int8[]))" \
	"       WITH ORDINALITY AS u(stream_id, after_sequence, n)," \
	"       LATERAL datastreams.frames_since(u.stream_id, u.after_sequence, " \
	FETCH_LIMIT_STR ") AS f" \
	" ORDER BY u.n, f.sequence"

typedef struct Stream
{
	char		id[UUID_TEXT_LEN + 1];	/* canonical lower-case text form */
	char	   *channel;		/* NOTIFY channel, from datastreams.channel() */
	int64_t		last;			/* last sequence printed or skipped */
	bool		dirty;			/* already in dirty_list */
} Stream;

/* What a step of the session asks the main loop to do next. */
typedef enum StepResult
{
	STEP_OK,					/* carry on */
	STEP_RETRY,					/* connection lost or transient error */
	STEP_FATAL,					/* retrying cannot help: exit 1 */
	STEP_STOP					/* SIGINT/SIGTERM: exit 0 */
} StepResult;

/* What a notification's payload says, as far as we care. */
typedef struct NotifyInfo
{
	bool		has_sequence;
	int64_t		sequence;
	bool		has_stream;
	char		stream_id[UUID_TEXT_LEN + 1];
} NotifyInfo;

typedef struct StrBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} StrBuf;

static volatile sig_atomic_t stop_requested = 0;
static sigset_t wait_sigmask;	/* mask in effect while in pselect() */

/* options */
static const char *opt_conninfo = NULL;
static const char *opt_account = NULL;
static bool opt_all = false;
static bool opt_once = false;
static bool opt_from_given = false;
static int64_t opt_from = 0;
static long opt_poll_ms = DEFAULT_POLL_MS;
static long opt_max_backoff_ms = DEFAULT_BACKOFF_MS;

/* the streams followed, sorted by id */
static Stream *streams = NULL;
static int	nstreams = 0;
static int *channel_order = NULL;	/* stream indexes sorted by channel */
static bool streams_resolved = false;	/* list and channels known */
static bool positions_known = false;	/* every stream's "last" is valid */
static int *dirty_list = NULL;
static int	ndirty = 0;

/* set once a connection has succeeded; from then on all failures retry */
static bool ever_connected = false;


/*
 * Diagnostics.  Everything on stderr carries the program's name so that it
 * stands out in logs that mix several programs.
 */
static void log_msg(const char *fmt,...) __attribute__((format(printf, 1, 2)));

static void
log_msg(const char *fmt,...)
{
	va_list		ap;

	fputs(PROGNAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
out_of_memory(void)
{
	log_msg("out of memory");
	exit(1);
}

static void *
xmalloc(size_t size)
{
	void	   *p = malloc(size > 0 ? size : 1);

	if (p == NULL)
		out_of_memory();
	return p;
}

static void *
xrealloc(void *old, size_t size)
{
	void	   *p = realloc(old, size > 0 ? size : 1);

	if (p == NULL)
		out_of_memory();
	return p;
}

static char *
xstrdup(const char *s)
{
	char	   *p = strdup(s);

	if (p == NULL)
		out_of_memory();
	return p;
}

static void
sb_init(StrBuf *sb)
{
	sb->cap = 128;
	sb->len = 0;
	sb->data = xmalloc(sb->cap);
	sb->data[0] = '\0';
}

static void
sb_append_len(StrBuf *sb, const char *s, size_t n)
{
	if (sb->len + n + 1 > sb->cap)
	{
		while (sb->len + n + 1 > sb->cap)
			sb->cap *= 2;
		sb->data = xrealloc(sb->data, sb->cap);
	}
	memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

static void
sb_append(StrBuf *sb, const char *s)
{
	sb_append_len(sb, s, strlen(s));
}

/*
 * Squeeze a libpq message, which may span several lines and end in a
 * newline, onto one line so that each failure is exactly one log line.
 * The result is malloc'd.
 */
static char *
flatten(const char *msg)
{
	char	   *out = xmalloc(strlen(msg) + 1);
	char	   *o = out;
	bool		space = false;

	for (; *msg; msg++)
	{
		if (*msg == '\n' || *msg == '\r' || *msg == '\t' || *msg == ' ')
		{
			space = (o != out);
			continue;
		}
		if (space)
			*o++ = ' ';
		space = false;
		*o++ = *msg;
	}
	*o = '\0';
	return out;
}

static void
log_flat(const char *prefix, const char *msg)
{
	char	   *line = flatten(msg);

	log_msg("%s%s", prefix, line);
	free(line);
}

/* Server NOTICEs and WARNINGs would otherwise reach stderr unprefixed. */
static void
notice_processor(void *arg, const char *message)
{
	(void) arg;
	log_flat("", message);
}


/*
 * Command line.
 */
static void
usage(void)
{
	printf("%s prints the frames of datastreams streams as JSON lines and keeps\n"
		   "following new frames with LISTEN/NOTIFY.\n\n", PROGNAME);
	printf("Usage:\n  %s [OPTION]... [CONNINFO]\n\n", PROGNAME);
	printf("Options:\n");
	printf("  -d, --dbname=CONNINFO     database name or connection string/URI\n");
	printf("  -a, --account=ACCOUNT     set datastreams.account_id after each connect\n");
	printf("                            (not needed if PGOPTIONS or the role supplies it)\n");
	printf("  -s, --stream=UUID         follow this stream (repeatable)\n");
	printf("      --all                 follow every stream of the account that exists\n");
	printf("                            at start; streams created later are not followed\n");
	printf("  -f, --from=SEQ            start after sequence SEQ in every stream\n");
	printf("                            (0 = whole history); default: only new frames\n");
	printf("      --once                print the frames there are now, then exit;\n");
	printf("                            connection failures are not retried\n");
	printf("      --poll-interval=SECS  catch-up fetch period, besides notifications\n");
	printf("                            (default 5)\n");
	printf("      --max-backoff=SECS    longest wait between reconnection attempts\n");
	printf("                            (default 5; the first wait is 0.1)\n");
	printf("  -V, --version             output version information, then exit\n");
	printf("  -h, --help                show this help, then exit\n\n");
	printf("Exactly one of --stream and --all must be given.  Connection settings\n"
		   "not given in CONNINFO come from the libpq environment (PGHOST, PGPORT,\n"
		   "PGDATABASE, PGUSER, PGPASSWORD, ...).\n\n");
	printf("Each frame is printed as one JSON object per line on standard output,\n"
		   "in sequence order within each stream; diagnostics go to standard error.\n"
		   "Lost connections are re-established without gaps or duplicates.\n\n");
	printf("Exit status: 0 when done (--once) or stopped by SIGINT/SIGTERM;\n"
		   "1 on an error that retrying cannot fix; 2 on bad usage.\n");
}

static void usage_error(const char *fmt,...) __attribute__((format(printf, 1, 2)));

static void
usage_error(const char *fmt,...)
{
	va_list		ap;

	fputs(PROGNAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nUsage: %s [OPTION]... (--stream=UUID... | --all) [CONNINFO]\n"
			"Try \"%s --help\" for more information.\n", PROGNAME, PROGNAME);
	exit(2);
}

/* A non-negative decimal integer, digits only, no overflow. */
static bool
parse_int64(const char *s, size_t len, int64_t *out)
{
	int64_t		v = 0;
	size_t		i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++)
	{
		int			d;

		if (s[i] < '0' || s[i] > '9')
			return false;
		d = s[i] - '0';
		if (v > (INT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

static long
parse_seconds(const char *option, const char *arg)
{
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(arg, &end);
	/* the comparisons also reject NaN */
	if (errno != 0 || end == arg || *end != '\0' ||
		!(v >= 0.001 && v <= MAX_SECONDS_OPTION))
		usage_error("invalid value \"%s\" for %s: seconds between 0.001 and %.0f expected",
					arg, option, MAX_SECONDS_OPTION);
	return (long) (v * 1000.0 + 0.5);
}

/*
 * Accept a UUID in the canonical 8-4-4-4-12 form or as 32 bare hex digits,
 * in either case, and write the canonical lower-case form to out.  The
 * canonical form is what the server prints, which lets us compare ids from
 * notification payloads and from the command line as plain strings.
 */
static bool
normalize_uuid(const char *s, size_t len, char *out)
{
	bool		hyphens;
	int			digits = 0;
	size_t		i;

	if (len == UUID_TEXT_LEN)
		hyphens = true;
	else if (len == 32)
		hyphens = false;
	else
		return false;

	for (i = 0; i < len; i++)
	{
		if (hyphens && (i == 8 || i == 13 || i == 18 || i == 23))
		{
			if (s[i] != '-')
				return false;
			continue;
		}
		if (!isxdigit((unsigned char) s[i]))
			return false;
		if (digits == 8 || digits == 12 || digits == 16 || digits == 20)
			*out++ = '-';
		*out++ = (char) tolower((unsigned char) s[i]);
		digits++;
	}
	*out = '\0';
	return true;
}

static int
stream_cmp(const void *a, const void *b)
{
	return strcmp(((const Stream *) a)->id, ((const Stream *) b)->id);
}

static void
add_stream(const char *id)
{
	streams = xrealloc(streams, sizeof(Stream) * (nstreams + 1));
	memset(&streams[nstreams], 0, sizeof(Stream));
	strcpy(streams[nstreams].id, id);
	streams[nstreams].last = opt_from;
	nstreams++;
}

/* Sort the streams by id and drop duplicates given more than once. */
static void
sort_streams(void)
{
	int			i,
				n = 0;

	if (nstreams == 0)
		return;
	qsort(streams, nstreams, sizeof(Stream), stream_cmp);
	for (i = 1; i < nstreams; i++)
	{
		if (strcmp(streams[i].id, streams[n].id) != 0)
			streams[++n] = streams[i];
	}
	nstreams = n + 1;
}

static void
parse_args(int argc, char **argv)
{
	enum
	{
		OPT_ALL = 256,
		OPT_ONCE,
		OPT_POLL_INTERVAL,
		OPT_MAX_BACKOFF
	};
	static const struct option long_options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"account", required_argument, NULL, 'a'},
		{"stream", required_argument, NULL, 's'},
		{"all", no_argument, NULL, OPT_ALL},
		{"from", required_argument, NULL, 'f'},
		{"once", no_argument, NULL, OPT_ONCE},
		{"poll-interval", required_argument, NULL, OPT_POLL_INTERVAL},
		{"max-backoff", required_argument, NULL, OPT_MAX_BACKOFF},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	int			c;

	/* getopt_long's own messages must carry our prefix too */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:a:s:f:hV", long_options, NULL)) != -1)
	{
		char		id[UUID_TEXT_LEN + 1];

		switch (c)
		{
			case 'd':
				opt_conninfo = optarg;
				break;
			case 'a':
				opt_account = optarg;
				break;
			case 's':
				if (!normalize_uuid(optarg, strlen(optarg), id))
					usage_error("invalid stream UUID \"%s\": "
								"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx expected",
								optarg);
				add_stream(id);
				break;
			case OPT_ALL:
				opt_all = true;
				break;
			case 'f':
				if (!parse_int64(optarg, strlen(optarg), &opt_from))
					usage_error("invalid value \"%s\" for --from: "
								"a non-negative sequence number expected", optarg);
				opt_from_given = true;
				break;
			case OPT_ONCE:
				opt_once = true;
				break;
			case OPT_POLL_INTERVAL:
				opt_poll_ms = parse_seconds("--poll-interval", optarg);
				break;
			case OPT_MAX_BACKOFF:
				opt_max_backoff_ms = parse_seconds("--max-backoff", optarg);
				break;
			case 'h':
				usage();
				exit(0);
			case 'V':
				printf("%s\n", VERSION_STRING);
				exit(0);
			case ':':
				usage_error("option \"%s\" requires an argument", argv[optind - 1]);
				break;
			default:
				/* optopt is set for short options only */
				if (optopt > 0 && optopt < 256)
					usage_error("invalid option \"-%c\"", optopt);
				usage_error("invalid option \"%s\"", argv[optind - 1]);
				break;
		}
	}

	if (optind < argc)
	{
		if (opt_conninfo != NULL)
			usage_error("connection given both with --dbname and as argument \"%s\"",
						argv[optind]);
		opt_conninfo = argv[optind++];
	}
	if (optind < argc)
		usage_error("too many command-line arguments (first is \"%s\")",
					argv[optind]);

	if (opt_all && nstreams > 0)
		usage_error("--stream and --all cannot be used together");
	if (!opt_all && nstreams == 0)
		usage_error("one of --stream and --all is required");

	/*
	 * Check a connection string now, so that a typo is a usage error and not
	 * a connection failure.  Plain database names are not connection strings
	 * and need no check.
	 */
	if (opt_conninfo != NULL &&
		(strchr(opt_conninfo, '=') != NULL ||
		 strncmp(opt_conninfo, "postgresql://", 13) == 0 ||
		 strncmp(opt_conninfo, "postgres://", 11) == 0))
	{
		char	   *err = NULL;
		PQconninfoOption *opts = PQconninfoParse(opt_conninfo, &err);

		if (opts == NULL)
		{
			if (err == NULL)
				out_of_memory();
			err[strcspn(err, "\n")] = '\0';
			usage_error("invalid connection string: %s", err);
		}
		PQconninfoFree(opts);
	}

	/* --from may have come after some --stream */
	sort_streams();
	for (c = 0; c < nstreams; c++)
		streams[c].last = opt_from;
	positions_known = opt_from_given;
}


/*
 * Signals and waiting.
 */
static void
handle_stop_signal(int signo)
{
	(void) signo;
	stop_requested = 1;
}

static void
setup_signals(void)
{
	struct sigaction sa;
	sigset_t	stop_signals;

	/*
	 * Block the signals except inside pselect(): the handler then only ever
	 * runs while we wait, so a signal can never arrive just after the flag
	 * was checked and leave us sleeping.
	 */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	sigprocmask(SIG_BLOCK, &stop_signals, &wait_sigmask);
	sigdelset(&wait_sigmask, SIGINT);
	sigdelset(&wait_sigmask, SIGTERM);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_stop_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;			/* no SA_RESTART: pselect() must fail EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static int64_t
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Wait until sock is readable (or writable), until the monotonic deadline
 * (in ms; -1 for none) passes, or until a stop signal arrives.  sock may be
 * -1 to just sleep.  Returns 1 when the socket is ready, 0 on timeout and
 * -1 when a stop was requested.
 */
static int
wait_for_socket(int sock, bool for_write, int64_t deadline)
{
	if (sock >= FD_SETSIZE)
	{
		log_msg("socket number %d too large for select()", sock);
		exit(1);
	}

	for (;;)
	{
		fd_set		fds;
		struct timespec ts;
		struct timespec *tsp = NULL;
		int			rc;

		if (stop_requested)
			return -1;

		FD_ZERO(&fds);
		if (sock >= 0)
			FD_SET(sock, &fds);
		if (deadline >= 0)
		{
			int64_t		left = deadline - monotonic_ms();

			if (left <= 0)
				return 0;
			ts.tv_sec = left / 1000;
			ts.tv_nsec = (left % 1000) * 1000000;
			tsp = &ts;
		}

		rc = pselect(sock + 1,
					 (sock >= 0 && !for_write) ? &fds : NULL,
					 (sock >= 0 && for_write) ? &fds : NULL,
					 NULL, tsp, &wait_sigmask);
		if (rc > 0)
			return 1;
		if (rc == 0)
			return 0;
		if (errno != EINTR)
		{
			log_msg("select() failed: %s", strerror(errno));
			exit(1);
		}
	}
}

static bool
sleep_ms(long ms)
{
	return wait_for_socket(-1, false, monotonic_ms() + ms) == 0;
}


/*
 * Connecting.
 */

/*
 * Is a failed first connection hopeless?  libpq gives no SQLSTATE for
 * connection failures, so this goes by the message: anything the server
 * rejected us with (a FATAL) is permanent unless it is one of the states a
 * restarting or busy server passes through; a server we could not reach at
 * all may still be starting, so that is worth retrying.
 */
static bool
connect_error_is_permanent(PGconn *conn, const char *msg)
{
	static const char *const transient[] = {
		"the database system is starting up",
		"the database system is shutting down",
		"the database system is in recovery mode",
		"the database system is not yet accepting connections",
		"the database system is not accepting connections",
		"sorry, too many clients already",
		"remaining connection slots are reserved",
		"too many connections for",
		"terminating connection due to administrator command",
		NULL
	};
	static const char *const permanent[] = {
		"authentication failed",
		"no pg_hba.conf entry",
		"does not exist",
		"permission denied",
		"not permitted to log in",
		"no password supplied",
		NULL
	};
	int			i;

	if (PQconnectionNeedsPassword(conn))
		return true;
	for (i = 0; transient[i] != NULL; i++)
		if (strstr(msg, transient[i]) != NULL)
			return false;
	for (i = 0; permanent[i] != NULL; i++)
		if (strstr(msg, permanent[i]) != NULL)
			return true;
	return strstr(msg, "FATAL:") != NULL;
}

/*
 * libpq enforces connect_timeout only in its blocking connect, so we apply
 * it ourselves (to the whole attempt rather than per host), with libpq's
 * rule that values of 1 mean 2.
 */
static int64_t
connect_deadline(PGconn *conn)
{
	PQconninfoOption *opts = PQconninfo(conn);
	PQconninfoOption *o;
	int64_t		deadline = -1;

	if (opts == NULL)
		return -1;
	for (o = opts; o->keyword != NULL; o++)
	{
		if (strcmp(o->keyword, "connect_timeout") == 0 && o->val != NULL)
		{
			int64_t		secs;

			if (parse_int64(o->val, strlen(o->val), &secs) && secs > 0 &&
				secs < 1000000)
				deadline = monotonic_ms() + (secs < 2 ? 2 : secs) * 1000;
			break;
		}
	}
	PQconninfoFree(opts);
	return deadline;
}

/*
 * Open a connection without blocking in libpq, so that a stop signal is
 * honoured even while a host does not answer.  On failure returns NULL with
 * *step set and *errmsg a malloc'd one-line message.
 */
static PGconn *
open_connection(StepResult *step, char **errmsg)
{
	const char *keywords[3];
	const char *values[3];
	int			n = 0;
	PGconn	   *conn;
	PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
	bool		timed_out = false;

	*errmsg = NULL;
	if (opt_conninfo != NULL)
	{
		keywords[n] = "dbname";
		values[n++] = opt_conninfo;
	}
	keywords[n] = "fallback_application_name";
	values[n++] = PROGNAME;
	keywords[n] = NULL;
	values[n] = NULL;

	conn = PQconnectStartParams(keywords, values, 1);
	if (conn == NULL)
		out_of_memory();
	PQsetNoticeProcessor(conn, notice_processor, NULL);

	if (PQstatus(conn) != CONNECTION_BAD)
	{
		int64_t		deadline = connect_deadline(conn);

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
				*step = STEP_STOP;
				return NULL;
			}
			if (rc == 0)
			{
				timed_out = true;
				break;
			}
			poll = PQconnectPoll(conn);
		}
	}

	if (!timed_out && PQstatus(conn) == CONNECTION_OK)
	{
		ever_connected = true;
		*step = STEP_OK;
		return conn;
	}

	*errmsg = flatten(timed_out ? "timeout expired" : PQerrorMessage(conn));
	if (**errmsg == '\0')
	{
		free(*errmsg);
		*errmsg = xstrdup("connection failed");
	}
	*step = (!ever_connected && connect_error_is_permanent(conn, *errmsg)) ?
		STEP_FATAL : STEP_RETRY;
	PQfinish(conn);
	return NULL;
}


/*
 * Queries.
 */

/*
 * Errors that a new connection may well not repeat: no SQLSTATE at all
 * (libpq's own errors, such as a lost connection), connection exceptions,
 * rollbacks, lack of resources, operator intervention (shutdown, cancel,
 * timeouts) and system errors.  Everything else, notably 42501 (no
 * permission or no account) and P0002 (unknown stream), is permanent.
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
		strcmp(sqlstate, "55P03") == 0;
}

/* Report a failed query (res may be NULL) and say what to do about it. */
static StepResult
query_failure(PGconn *conn, const PGresult *res, const char *what)
{
	const char *sqlstate = NULL;
	const char *severity = NULL;
	const char *primary;
	const char *detail;
	const char *hint;

	if (res != NULL)
	{
		sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	}

	if (PQstatus(conn) == CONNECTION_BAD || sqlstate_is_transient(sqlstate) ||
		(severity != NULL &&
		 (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0)))
	{
		char	   *line = flatten(res != NULL ? PQresultErrorMessage(res) :
								   PQerrorMessage(conn));

		log_msg("%s failed%s: %s", what, opt_once ? "" : ", reconnecting",
				*line ? line : "connection lost");
		free(line);
		return STEP_RETRY;
	}

	primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	log_msg("%s failed: %s (SQLSTATE %s)", what,
			primary != NULL ? primary : "unknown error", sqlstate);
	if (detail != NULL)
		log_flat("DETAIL: ", detail);
	if (hint != NULL)
		log_flat("HINT: ", hint);
	return STEP_FATAL;
}

/*
 * Wait for the next result of the query in progress, staying responsive to
 * stop signals.  Returns the result, or NULL with *step == STEP_OK at the
 * end of the query's results, or NULL with another *step on failure.
 */
static PGresult *
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
 * Run a query (parameterised when nparams > 0; several statements are
 * allowed only without parameters) and return its last result, which the
 * caller must PQclear().  Returns NULL with *step set on failure; the
 * connection is then dropped or the program exits, so the remaining
 * results need not be read.
 */
static PGresult *
run_query(PGconn *conn, const char *what, const char *sql,
		  int nparams, const char *const *params, StepResult *step)
{
	PGresult   *keep = NULL;
	int			sent;

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
		log_msg("%s failed: no result from server", what);
		*step = STEP_RETRY;
	}
	return keep;
}

/* "{a,b,...}" for the given streams, as an array parameter. */
static void
build_id_array(StrBuf *sb, const int *idx, int n)
{
	int			i;

	sb_init(sb);
	sb_append(sb, "{");
	for (i = 0; i < n; i++)
	{
		if (i > 0)
			sb_append(sb, ",");
		sb_append(sb, streams[idx != NULL ? idx[i] : i].id);
	}
	sb_append(sb, "}");
}

static StepResult
set_account(PGconn *conn)
{
	const char *params[1] = {opt_account};
	StepResult	step;
	PGresult   *res;

	res = run_query(conn, "setting the account", SET_ACCOUNT_SQL, 1, params, &step);
	PQclear(res);
	return step;
}

/* --all: take the account's streams once, at the first connection. */
static StepResult
list_streams(PGconn *conn)
{
	StepResult	step;
	PGresult   *res;
	int			i;

	res = run_query(conn, "listing the streams", LIST_STREAMS_SQL, 0, NULL, &step);
	if (res == NULL)
		return step;
	for (i = 0; i < PQntuples(res); i++)
	{
		const char *val = PQgetvalue(res, i, 0);
		char		id[UUID_TEXT_LEN + 1];

		if (PQgetisnull(res, i, 0) || !normalize_uuid(val, strlen(val), id))
		{
			log_msg("datastreams.list_streams() returned an invalid stream id \"%s\"", val);
			PQclear(res);
			return STEP_FATAL;
		}
		add_stream(id);
	}
	PQclear(res);
	sort_streams();
	return STEP_OK;
}

static int
channel_cmp(const void *a, const void *b)
{
	return strcmp(streams[*(const int *) a].channel,
				  streams[*(const int *) b].channel);
}

/* Ask the server for each stream's NOTIFY channel, rather than guessing. */
static StepResult
fetch_channels(PGconn *conn)
{
	StrBuf		ids;
	const char *params[1];
	StepResult	step;
	PGresult   *res;
	int			i;

	build_id_array(&ids, NULL, nstreams);
	params[0] = ids.data;
	res = run_query(conn, "looking up the notification channels", CHANNELS_SQL,
					1, params, &step);
	free(ids.data);
	if (res == NULL)
		return step;
	if (PQntuples(res) != nstreams)
	{
		log_msg("datastreams.channel() returned %d rows for %d streams",
				PQntuples(res), nstreams);
		PQclear(res);
		return STEP_FATAL;
	}
	for (i = 0; i < nstreams; i++)
	{
		if (PQgetisnull(res, i, 0))
		{
			log_msg("datastreams.channel() returned NULL for stream %s", streams[i].id);
			PQclear(res);
			return STEP_FATAL;
		}
		free(streams[i].channel);
		streams[i].channel = xstrdup(PQgetvalue(res, i, 0));
	}
	PQclear(res);

	channel_order = xrealloc(channel_order, sizeof(int) * nstreams);
	for (i = 0; i < nstreams; i++)
		channel_order[i] = i;
	qsort(channel_order, nstreams, sizeof(int), channel_cmp);
	return STEP_OK;
}

static StepResult
listen_all(PGconn *conn)
{
	StrBuf		sql;
	StepResult	step;
	PGresult   *res;
	int			i;

	sb_init(&sql);
	for (i = 0; i < nstreams; i++)
	{
		char	   *ident = PQescapeIdentifier(conn, streams[i].channel,
											   strlen(streams[i].channel));

		if (ident == NULL)
		{
			log_flat("could not quote channel name: ", PQerrorMessage(conn));
			free(sql.data);
			return STEP_FATAL;
		}
		sb_append(&sql, "LISTEN ");
		sb_append(&sql, ident);
		sb_append(&sql, ";");
		PQfreemem(ident);
	}
	res = run_query(conn, "LISTEN", sql.data, 0, NULL, &step);
	free(sql.data);
	PQclear(res);
	return step;
}

/*
 * Without --from, start after each stream's latest frame.  This runs after
 * LISTEN, so any frame it does not see is announced by a notification.
 */
static StepResult
fetch_positions(PGconn *conn)
{
	StrBuf		ids;
	const char *params[1];
	StepResult	step;
	PGresult   *res;
	int			i;

	build_id_array(&ids, NULL, nstreams);
	params[0] = ids.data;
	res = run_query(conn, "reading the latest frames", LATEST_SQL, 1, params, &step);
	free(ids.data);
	if (res == NULL)
		return step;
	if (PQntuples(res) != nstreams)
	{
		log_msg("datastreams.latest_frame() gave %d rows for %d streams",
				PQntuples(res), nstreams);
		PQclear(res);
		return STEP_FATAL;
	}
	for (i = 0; i < nstreams; i++)
	{
		const char *val = PQgetvalue(res, i, 0);

		if (PQgetisnull(res, i, 0))
			streams[i].last = 0;
		else if (!parse_int64(val, strlen(val), &streams[i].last))
		{
			log_msg("datastreams.latest_frame() returned invalid sequence \"%s\" for stream %s",
					val, streams[i].id);
			PQclear(res);
			return STEP_FATAL;
		}
	}
	PQclear(res);
	positions_known = true;
	return STEP_OK;
}

/* Print one row of FETCH_SQL and advance its stream's position. */
static StepResult
emit_row(const PGresult *res, int row, const int *idx, int n,
		 int *rows, bool *advanced)
{
	const char *ordval = PQgetvalue(res, row, 0);
	const char *seqval = PQgetvalue(res, row, 1);
	int64_t		ord;
	int64_t		seq;
	Stream	   *s;

	if (PQgetisnull(res, row, 0) || PQgetisnull(res, row, 2) ||
		!parse_int64(ordval, strlen(ordval), &ord) || ord < 1 || ord > n)
	{
		log_msg("unexpected row from datastreams.frames_since()");
		return STEP_FATAL;
	}
	s = &streams[idx[ord - 1]];
	if (PQgetisnull(res, row, 1) || !parse_int64(seqval, strlen(seqval), &seq))
	{
		log_msg("datastreams.frames_since() returned a frame of stream %s "
				"with invalid sequence \"%s\"", s->id, seqval);
		return STEP_FATAL;
	}
	rows[ord - 1]++;

	/* Never print a frame twice, even if the server breaks its contract. */
	if (seq <= s->last)
	{
		log_msg("ignoring frame of stream %s with sequence %" PRId64
				" not after %" PRId64, s->id, seq, s->last);
		return STEP_OK;
	}

	fputs(PQgetvalue(res, row, 2), stdout);
	fputc('\n', stdout);
	if (ferror(stdout))
	{
		log_msg("could not write to standard output: %s", strerror(errno));
		return STEP_FATAL;
	}
	s->last = seq;
	advanced[ord - 1] = true;
	return STEP_OK;
}

/*
 * One FETCH_SQL query for up to STREAMS_PER_QUERY streams.  Rows are taken
 * in single-row mode, so memory stays bounded by one frame however large
 * the batch, and frames already printed when a connection breaks stay
 * accounted for.  Sets full[i] when stream idx[i] may have more frames.
 */
static StepResult
fetch_chunk(PGconn *conn, const int *idx, int n, bool *full)
{
	StrBuf		ids;
	StrBuf		lasts;
	const char *params[2];
	int		   *rows = xmalloc(sizeof(int) * n);
	bool	   *advanced = xmalloc(sizeof(bool) * n);
	StepResult	step = STEP_OK;
	int			i;

	build_id_array(&ids, idx, n);
	sb_init(&lasts);
	sb_append(&lasts, "{");
	for (i = 0; i < n; i++)
	{
		char		num[32];

		snprintf(num, sizeof(num), "%s%" PRId64, i > 0 ? "," : "",
				 streams[idx[i]].last);
		sb_append(&lasts, num);
		rows[i] = 0;
		advanced[i] = false;
	}
	sb_append(&lasts, "}");
	params[0] = ids.data;
	params[1] = lasts.data;

	if (!PQsendQueryParams(conn, FETCH_SQL, 2, NULL, params, NULL, NULL, 0))
	{
		step = query_failure(conn, NULL, "fetching frames");
		goto done;
	}
	/* if this fails we merely get all rows at once */
	(void) PQsetSingleRowMode(conn);

	for (;;)
	{
		PGresult   *res = await_result(conn, "fetching frames", &step);
		ExecStatusType status;

		if (res == NULL)
			break;
		status = PQresultStatus(res);
		if (status != PGRES_SINGLE_TUPLE && status != PGRES_TUPLES_OK)
		{
			step = query_failure(conn, res, "fetching frames");
			PQclear(res);
			break;
		}
		for (i = 0; i < PQntuples(res) && step == STEP_OK; i++)
			step = emit_row(res, i, idx, n, rows, advanced);
		PQclear(res);
		if (step != STEP_OK)
			break;
	}

	/* a stream that came back short has been read to its end */
	for (i = 0; i < n; i++)
		full[i] = (rows[i] >= FETCH_LIMIT && advanced[i]);

done:
	if (fflush(stdout) != 0)
	{
		log_msg("could not write to standard output: %s", strerror(errno));
		step = STEP_FATAL;
	}
	free(ids.data);
	free(lasts.data);
	free(rows);
	free(advanced);
	return step;
}

/*
 * Print every frame after the last printed one for the given streams:
 * frames_since() in a loop until a stream returns fewer than FETCH_LIMIT
 * rows.  Several streams share each query, so a catch-up of many streams
 * costs a few round trips rather than one per stream.
 */
static StepResult
fetch_streams(PGconn *conn, const int *list, int n)
{
	int		   *pending = xmalloc(sizeof(int) * (n > 0 ? n : 1));
	bool	   *full = xmalloc(sizeof(bool) * STREAMS_PER_QUERY);
	int			npending = n;
	StepResult	step = STEP_OK;

	memcpy(pending, list, sizeof(int) * n);
	while (npending > 0 && step == STEP_OK)
	{
		int			nfull = 0;
		int			start;

		for (start = 0; start < npending && step == STEP_OK;
			 start += STREAMS_PER_QUERY)
		{
			int			chunk = npending - start;
			int			i;

			if (chunk > STREAMS_PER_QUERY)
				chunk = STREAMS_PER_QUERY;
			step = fetch_chunk(conn, pending + start, chunk, full);
			if (step != STEP_OK)
				break;
			/* compact in place: nfull never overtakes start + i */
			for (i = 0; i < chunk; i++)
				if (full[i])
					pending[nfull++] = pending[start + i];
		}
		npending = nfull;
	}
	free(pending);
	free(full);
	return step;
}

static StepResult
fetch_all_streams(PGconn *conn)
{
	int		   *all = xmalloc(sizeof(int) * (nstreams > 0 ? nstreams : 1));
	StepResult	step;
	int			i;

	for (i = 0; i < nstreams; i++)
	{
		all[i] = i;
		streams[i].dirty = false;
	}
	ndirty = 0;
	step = fetch_streams(conn, all, nstreams);
	free(all);
	return step;
}

/*
 * Bring a fresh connection to the point where notifications can be waited
 * for: account, LISTEN, and only then the replay, so that nothing committed
 * after the replay's snapshot can go unannounced.
 */
static StepResult
setup_session(PGconn *conn)
{
	StepResult	step;

	if (opt_account != NULL && (step = set_account(conn)) != STEP_OK)
		return step;

	if (!streams_resolved)
	{
		if (opt_all && (step = list_streams(conn)) != STEP_OK)
			return step;
		if (nstreams == 0)
			return STEP_OK;
		if (!opt_once && (step = fetch_channels(conn)) != STEP_OK)
			return step;
		dirty_list = xmalloc(sizeof(int) * nstreams);
		streams_resolved = true;
	}
	if (nstreams == 0)
		return STEP_OK;

	if (!opt_once && (step = listen_all(conn)) != STEP_OK)
		return step;
	if (!positions_known && (step = fetch_positions(conn)) != STEP_OK)
		return step;
	return fetch_all_streams(conn);
}


/*
 * Notifications.
 */

static const char *
skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

/*
 * p is at a JSON string's opening quote.  Returns the position after the
 * closing quote (NULL if there is none) and the raw contents; *escaped says
 * whether they contain backslash escapes, which we do not decode.
 */
static const char *
scan_string(const char *p, const char **start, size_t *len, bool *escaped)
{
	const char *s = ++p;
	bool		esc = false;

	while (*p != '"')
	{
		if (*p == '\0')
			return NULL;
		if (*p == '\\')
		{
			esc = true;
			if (*++p == '\0')
				return NULL;
		}
		p++;
	}
	*start = s;
	*len = p - s;
	*escaped = esc;
	return p + 1;
}

/* Skip any JSON value; returns the position after it, NULL if malformed. */
static const char *
skip_value(const char *p)
{
	const char *s;
	size_t		len;
	bool		esc;

	if (*p == '"')
		return scan_string(p, &s, &len, &esc);
	if (*p == '{' || *p == '[')
	{
		/* brackets only need counting, strings skipping */
		int			depth = 0;

		for (;;)
		{
			if (*p == '\0')
				return NULL;
			if (*p == '"')
			{
				p = scan_string(p, &s, &len, &esc);
				if (p == NULL)
					return NULL;
				continue;
			}
			if (*p == '{' || *p == '[')
				depth++;
			else if ((*p == '}' || *p == ']') && --depth == 0)
				return p + 1;
			p++;
		}
	}
	/* a number, true, false or null */
	s = p;
	while (*p != '\0' && strchr(",}] \t\r\n", *p) == NULL)
		p++;
	return p == s ? NULL : p;
}

/*
 * Pick the top-level "sequence" and "stream_id" out of a notification's
 * payload.  Members of nested objects (the frame's own "payload" may well
 * have a "sequence") are skipped.  A payload that is just a number is taken
 * as the sequence; anything unparsable yields no information, which only
 * means that the stream is fetched.
 */
static void
parse_notify_payload(const char *payload, NotifyInfo *info)
{
	const char *p = skip_ws(payload);

	memset(info, 0, sizeof(*info));

	if (*p >= '0' && *p <= '9')
	{
		const char *s = p;

		while (*p >= '0' && *p <= '9')
			p++;
		if (*skip_ws(p) == '\0')
			info->has_sequence = parse_int64(s, p - s, &info->sequence);
		return;
	}
	if (*p != '{')
		return;
	p = skip_ws(p + 1);
	if (*p == '}')
		return;

	for (;;)
	{
		const char *key;
		const char *val;
		const char *end;
		size_t		keylen;
		size_t		vallen;
		bool		keyesc;
		bool		valesc = false;

		if (*p != '"' || (p = scan_string(p, &key, &keylen, &keyesc)) == NULL)
			goto malformed;
		p = skip_ws(p);
		if (*p != ':')
			goto malformed;
		p = skip_ws(p + 1);
		if ((end = skip_value(p)) == NULL)
			goto malformed;

		/* the value itself, without quotes if it is a string */
		val = p;
		vallen = end - p;
		if (*p == '"')
			(void) scan_string(p, &val, &vallen, &valesc);

		if (!keyesc && keylen == 8 && memcmp(key, "sequence", 8) == 0)
			info->has_sequence = !valesc &&
				parse_int64(val, vallen, &info->sequence);
		else if (!keyesc && keylen == 9 && memcmp(key, "stream_id", 9) == 0)
			info->has_stream = *p == '"' && !valesc &&
				normalize_uuid(val, vallen, info->stream_id);

		p = skip_ws(end);
		if (*p == ',')
			p = skip_ws(p + 1);
		else if (*p == '}')
			return;
		else
			goto malformed;
	}

malformed:
	memset(info, 0, sizeof(*info));
}

static void
mark_dirty(Stream *s, const NotifyInfo *info)
{
	/* frames up to s->last are printed already */
	if (info->has_sequence && info->sequence <= s->last)
		return;
	if (!s->dirty)
	{
		s->dirty = true;
		dirty_list[ndirty++] = (int) (s - streams);
	}
}

static void
handle_notification(const PGnotify *notify)
{
	NotifyInfo	info;
	int			lo = 0,
				hi = nstreams - 1;

	parse_notify_payload(notify->extra != NULL ? notify->extra : "", &info);

	if (info.has_stream)
	{
		Stream		key;
		Stream	   *s;

		strcpy(key.id, info.stream_id);
		s = bsearch(&key, streams, nstreams, sizeof(Stream), stream_cmp);
		if (s != NULL)
		{
			mark_dirty(s, &info);
			return;
		}
	}

	/*
	 * Otherwise go by the channel.  Should several streams ever share one,
	 * all of them are woken.
	 */
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			c = strcmp(notify->relname, streams[channel_order[mid]].channel);

		if (c == 0)
		{
			int			i;

			for (i = mid; i >= 0 &&
				 strcmp(notify->relname, streams[channel_order[i]].channel) == 0; i--)
				mark_dirty(&streams[channel_order[i]], &info);
			for (i = mid + 1; i < nstreams &&
				 strcmp(notify->relname, streams[channel_order[i]].channel) == 0; i++)
				mark_dirty(&streams[channel_order[i]], &info);
			return;
		}
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
}

static void
drain_notifications(PGconn *conn)
{
	PGnotify   *notify;

	while ((notify = PQnotifies(conn)) != NULL)
	{
		handle_notification(notify);
		PQfreemem(notify);
	}
}

static StepResult
fetch_dirty(PGconn *conn)
{
	int			n = ndirty;
	int		   *list = xmalloc(sizeof(int) * (n > 0 ? n : 1));
	StepResult	step;
	int			i;

	/*
	 * Clear the marks first: a notification that arrives during the fetch
	 * must be able to queue the stream again.
	 */
	memcpy(list, dirty_list, sizeof(int) * n);
	for (i = 0; i < n; i++)
		streams[list[i]].dirty = false;
	ndirty = 0;
	step = fetch_streams(conn, list, n);
	free(list);
	return step;
}

/* One round of waiting for and handling notifications. */
static StepResult
follow_step(PGconn *conn, int64_t *next_poll)
{
	int			sock;
	int			rc;

	drain_notifications(conn);
	if (monotonic_ms() >= *next_poll)
	{
		static const NotifyInfo no_info;
		int			i;

		/* the safety net, for notifications lost whatever the reason */
		for (i = 0; i < nstreams; i++)
			mark_dirty(&streams[i], &no_info);
		*next_poll = monotonic_ms() + opt_poll_ms;
	}
	if (ndirty > 0)
		return fetch_dirty(conn);

	sock = PQsocket(conn);
	if (PQstatus(conn) == CONNECTION_BAD || sock < 0)
		return query_failure(conn, NULL, "waiting for notifications");
	rc = wait_for_socket(sock, false, *next_poll);
	if (rc < 0)
		return STEP_STOP;
	if (rc > 0 && !PQconsumeInput(conn))
		return query_failure(conn, NULL, "waiting for notifications");
	return STEP_OK;
}


int
main(int argc, char **argv)
{
	PGconn	   *conn = NULL;
	long		backoff = 0;	/* wait before the next connection attempt */
	bool		lost = false;
	int64_t		next_poll = 0;
	int			exit_code = 0;

	parse_args(argc, argv);
	setup_signals();

	/* consumers see each frame as soon as it is printed */
	setvbuf(stdout, NULL, _IOLBF, 0);

	for (;;)
	{
		StepResult	step;

		if (conn == NULL)
		{
			char	   *err;

			if (backoff > 0 && !sleep_ms(backoff))
				break;
			conn = open_connection(&step, &err);
			if (step == STEP_STOP)
				break;
			if (conn == NULL)
			{
				if (step == STEP_FATAL || opt_once)
				{
					log_msg("could not connect: %s", err);
					free(err);
					exit_code = 1;
					break;
				}
				backoff = backoff == 0 ? INITIAL_BACKOFF_MS : backoff * 2;
				if (backoff > opt_max_backoff_ms)
					backoff = opt_max_backoff_ms;
				log_msg("could not connect, retrying in %.1f s: %s",
						backoff / 1000.0, err);
				free(err);
				continue;
			}

			step = setup_session(conn);
			if (step == STEP_OK)
			{
				if (nstreams == 0)
				{
					log_msg("the account has no streams to follow");
					break;
				}
				if (opt_once)
					break;
				if (lost)
					log_msg("reconnected");
				lost = false;
				backoff = 0;
				next_poll = monotonic_ms() + opt_poll_ms;
			}
		}
		else
			step = follow_step(conn, &next_poll);

		if (step == STEP_OK)
			continue;
		if (step == STEP_STOP)
			break;
		if (step == STEP_FATAL || opt_once)
		{
			exit_code = 1;
			break;
		}

		/* STEP_RETRY: drop the connection; positions are kept */
		PQfinish(conn);
		conn = NULL;
		lost = true;
		backoff = backoff == 0 ? INITIAL_BACKOFF_MS : backoff * 2;
		if (backoff > opt_max_backoff_ms)
			backoff = opt_max_backoff_ms;
	}

	PQfinish(conn);
	if (fflush(stdout) != 0 && exit_code == 0)
	{
		log_msg("could not write to standard output: %s", strerror(errno));
		exit_code = 1;
	}
	return exit_code;
}
