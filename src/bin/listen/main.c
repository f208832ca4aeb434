/*-------------------------------------------------------------------------
 *
 * main.c
 *	  datastreams-listen: print the frames of datastreams streams as JSON
 *	  lines and keep following new ones; the command line and the
 *	  connection loop.
 *
 * The loop owns the connection: it connects (with exponential backoff
 * between attempts), lets the mode set the session up and catch up, then
 * runs the mode's steps until one fails.  Whatever the mode remembers
 * (positions, the streams) survives a lost connection, so a reconnection
 * continues exactly where the last session stopped.
 *
 * IDENTIFICATION
 *	  src/bin/listen/main.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/logging.h"
#include "datastreams_listen.h"
#include "fe_utils/option_utils.h"
#include "getopt_long.h"

#define VERSION_STRING		"datastreams-listen (datastreams) " DS_VERSION

#define INITIAL_BACKOFF_MS	100
#define DEFAULT_POLL_MS		5000
#define DEFAULT_BACKOFF_MS	5000
#define MAX_SECONDS_OPTION	86400.0
#define DEFAULT_BATCH_SIZE	500
#define MAX_BATCH_SIZE		10000

const char *progname;

ListenOptions options = {
	.poll_ms = DEFAULT_POLL_MS,
	.max_backoff_ms = DEFAULT_BACKOFF_MS,
	.batch_size = DEFAULT_BATCH_SIZE,
};

static void
usage(void)
{
	printf("%s prints the frames of datastreams streams as JSON lines and keeps\n"
		   "following new frames with LISTEN/NOTIFY.\n\n", progname);
	printf("Usage:\n  %s [OPTION]... [CONNINFO]\n\n", progname);
	printf("Options:\n");
	printf("  -d, --dbname=CONNINFO     database name or connection string/URI\n");
	printf("      --proxy=CONNINFO      follow streams sharded behind this datastreams_proxy\n");
	printf("                            database: read frames through it, LISTEN on the\n");
	printf("                            shards its map names\n");
	printf("      --shard-conninfo=CONNINFO\n");
	printf("                            settings for the shards' LISTEN connections, laid\n");
	printf("                            over the map's (e.g. \"user=listener\")\n");
	printf("  -a, --account=ACCOUNT     set datastreams.account_id after each connect\n");
	printf("                            (not needed if PGOPTIONS or the role supplies it)\n");
	printf("  -s, --stream=UUID         follow this stream (repeatable)\n");
	printf("      --all                 follow every stream of the account that exists\n");
	printf("                            at start; streams created later are not followed\n");
	printf("  -f, --from=SEQ            start after sequence SEQ in every stream\n");
	printf("                            (0 = whole history); default: only new frames\n");
	printf("  -c, --consumer=NAME       print the frames of durable consumer NAME\n");
	printf("                            (datastreams.poll) and acknowledge them once\n");
	printf("                            printed; processes sharing NAME share its streams\n");
	printf("      --batch-size=N        frames per poll in consumer mode (default %d)\n",
		   DEFAULT_BATCH_SIZE);
	printf("      --once                print the frames there are now, then exit;\n");
	printf("                            connection failures are not retried\n");
	printf("      --poll-interval=SECS  catch-up fetch period, besides notifications\n");
	printf("                            (default 5)\n");
	printf("      --max-backoff=SECS    longest wait between reconnection attempts\n");
	printf("                            (default 5; the first wait is 0.1)\n");
	printf("  -V, --version             output version information, then exit\n");
	printf("  -h, --help                show this help, then exit\n\n");
	printf("With --proxy the frames are read through the proxy with the tenant's role\n"
		   "and each stream's notifications are heard on its shard; a stream whose\n"
		   "partition moves is followed to its new shard.\n\n");
	printf("Exactly one of --stream, --all and --consumer must be given.  Connection\n"
		   "settings not given in CONNINFO come from the libpq environment (PGHOST,\n"
		   "PGPORT, PGDATABASE, PGUSER, PGPASSWORD, ...).  A list of hosts\n"
		   "(host=a,b) is searched for the primary, which LISTEN needs.\n\n");
	printf("Each frame is printed as one JSON object per line on standard output,\n"
		   "in sequence order within each stream, with its sequence also as the\n"
		   "string \"sequence_text\"; diagnostics go to standard error.  Lost\n"
		   "connections are re-established without gaps or duplicates.\n\n");
	printf("Exit status: 0 when done (--once) or stopped by SIGINT/SIGTERM;\n"
		   "1 on an error that retrying cannot fix; 2 on bad usage.\n");
}

static void usage_error(const char *fmt,...) pg_attribute_printf(1, 2);

static void
usage_error(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	pg_log_generic_v(PG_LOG_ERROR, PG_LOG_PRIMARY, fmt, ap);
	va_end(ap);
	pg_log_error_hint("Try \"%s --help\" for more information.", progname);
	exit(2);
}

/*
 * A sequence as the server prints it: decimal digits only (no sign, no
 * blanks), within bigint.
 */
bool
parse_sequence(const char *text, int64 *result)
{
	char	   *end;
	int64		value;

	if (!isdigit((unsigned char) text[0]))
		return false;
	errno = 0;
	value = strtoi64(text, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*result = value;
	return true;
}

/*
 * Accept a UUID in the canonical 8-4-4-4-12 form or as 32 bare hex digits,
 * in either case, and write the canonical lower-case form to out.  That is
 * the form the server prints, so ids from notification payloads and from
 * the command line compare as plain strings.
 */
bool
normalize_uuid(const char *text, char *out)
{
	size_t		len = strlen(text);
	bool		hyphens;
	int			digits = 0;

	if (len == UUID_TEXT_LEN)
		hyphens = true;
	else if (len == 32)
		hyphens = false;
	else
		return false;

	for (size_t i = 0; i < len; i++)
	{
		if (hyphens && (i == 8 || i == 13 || i == 18 || i == 23))
		{
			if (text[i] != '-')
				return false;
			continue;
		}
		if (!isxdigit((unsigned char) text[i]))
			return false;
		if (digits == 8 || digits == 12 || digits == 16 || digits == 20)
			*out++ = '-';
		*out++ = (char) pg_tolower((unsigned char) text[i]);
		digits++;
	}
	*out = '\0';
	return true;
}

static int
parse_seconds(const char *option, const char *arg)
{
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(arg, &end);
	/* the comparisons also reject NaN */
	if (errno != 0 || end == arg || *end != '\0' ||
		!(v >= 0.001 && v <= MAX_SECONDS_OPTION))
		usage_error("invalid value \"%s\" for option %s: seconds between 0.001 and %.0f expected",
					arg, option, MAX_SECONDS_OPTION);
	return (int) (v * 1000.0 + 0.5);
}

/* Parse a connection string, or end with a usage error. */
static PQconninfoOption *
parse_conninfo(const char *conninfo)
{
	PQconninfoOption *parsed;
	char	   *err = NULL;

	parsed = PQconninfoParse(conninfo, &err);
	if (parsed == NULL)
	{
		if (err == NULL)
			pg_fatal("out of memory");
		usage_error("invalid connection string: %s", err);
	}
	return parsed;
}

/*
 * Check a connection string now, so that a typo is a usage error and not a
 * connection failure.  Plain database names are not connection strings and
 * need no check.
 */
static void
check_conninfo(const char *conninfo)
{
	if (strchr(conninfo, '=') == NULL &&
		strncmp(conninfo, "postgresql://", 13) != 0 &&
		strncmp(conninfo, "postgres://", 11) != 0)
		return;
	PQconninfoFree(parse_conninfo(conninfo));
}

static void
parse_args(int argc, char **argv)
{
	enum
	{
		OPT_ALL = 256,
		OPT_ONCE,
		OPT_POLL_INTERVAL,
		OPT_MAX_BACKOFF,
		OPT_BATCH_SIZE,
		OPT_PROXY,
		OPT_SHARD_CONNINFO
	};
	static const struct option long_options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"account", required_argument, NULL, 'a'},
		{"stream", required_argument, NULL, 's'},
		{"all", no_argument, NULL, OPT_ALL},
		{"from", required_argument, NULL, 'f'},
		{"consumer", required_argument, NULL, 'c'},
		{"batch-size", required_argument, NULL, OPT_BATCH_SIZE},
		{"proxy", required_argument, NULL, OPT_PROXY},
		{"shard-conninfo", required_argument, NULL, OPT_SHARD_CONNINFO},
		{"once", no_argument, NULL, OPT_ONCE},
		{"poll-interval", required_argument, NULL, OPT_POLL_INTERVAL},
		{"max-backoff", required_argument, NULL, OPT_MAX_BACKOFF},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	bool		batch_size_given = false;
	const char *dbname = NULL;
	const char *proxy = NULL;
	const char *shard_conninfo = NULL;
	int			c;

	/* getopt_long's own messages would lack the "error:" prefix and hint */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:a:s:f:c:hV", long_options, NULL)) != -1)
	{
		char		id[UUID_TEXT_LEN + 1];

		switch (c)
		{
			case 'd':
				dbname = optarg;
				break;
			case OPT_PROXY:
				proxy = optarg;
				break;
			case OPT_SHARD_CONNINFO:
				shard_conninfo = optarg;
				break;
			case 'a':
				options.account = optarg;
				break;
			case 's':
				if (!normalize_uuid(optarg, id))
					usage_error("invalid stream UUID \"%s\": "
								"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx expected",
								optarg);
				options.stream_ids = pg_realloc(options.stream_ids,
												sizeof(char *) * (options.nstream_ids + 1));
				options.stream_ids[options.nstream_ids++] = pg_strdup(id);
				break;
			case OPT_ALL:
				options.all = true;
				break;
			case 'f':
				if (!parse_sequence(optarg, &options.from))
					usage_error("invalid value \"%s\" for option --from: "
								"a non-negative sequence number expected", optarg);
				options.from_given = true;
				break;
			case 'c':
				if (optarg[0] == '\0')
					usage_error("the consumer name must not be empty");
				options.consumer = optarg;
				break;
			case OPT_BATCH_SIZE:
				if (!option_parse_int(optarg, "--batch-size", 1, MAX_BATCH_SIZE,
									  &options.batch_size))
				{
					pg_log_error_hint("Try \"%s --help\" for more information.", progname);
					exit(2);
				}
				batch_size_given = true;
				break;
			case OPT_ONCE:
				options.once = true;
				break;
			case OPT_POLL_INTERVAL:
				options.poll_ms = parse_seconds("--poll-interval", optarg);
				break;
			case OPT_MAX_BACKOFF:
				options.max_backoff_ms = parse_seconds("--max-backoff", optarg);
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
		if (dbname != NULL || proxy != NULL)
			usage_error("connection given both with %s and as argument \"%s\"",
						dbname != NULL ? "--dbname" : "--proxy", argv[optind]);
		dbname = argv[optind++];
	}
	if (optind < argc)
		usage_error("too many command-line arguments (first is \"%s\")",
					argv[optind]);

	if ((options.all ? 1 : 0) + (options.nstream_ids > 0 ? 1 : 0) +
		(options.consumer != NULL ? 1 : 0) != 1)
		usage_error("exactly one of --stream, --all and --consumer is required");
	if (options.consumer != NULL && options.from_given)
		usage_error("--from cannot be used with --consumer: the consumer's position is kept by the server");
	if (options.consumer == NULL && batch_size_given)
		usage_error("--batch-size can only be used with --consumer");
	if (dbname != NULL && proxy != NULL)
		usage_error("--dbname and --proxy cannot be used together: give the proxy's connection with --proxy");
	if (shard_conninfo != NULL && proxy == NULL)
		usage_error("--shard-conninfo can only be used with --proxy");
	options.conninfo = proxy != NULL ? proxy : dbname;
	options.proxy = proxy != NULL;
	if (options.conninfo != NULL)
		check_conninfo(options.conninfo);
	if (shard_conninfo != NULL)
		options.shard_overrides = parse_conninfo(shard_conninfo);
}

/* The wait before the next connection attempt: doubling, up to the cap. */
long
next_backoff(long backoff)
{
	backoff = backoff == 0 ? INITIAL_BACKOFF_MS : backoff * 2;
	return Min(backoff, options.max_backoff_ms);
}

int
main(int argc, char **argv)
{
	const ListenMode *mode;
	PGconn	   *conn = NULL;
	long		backoff = 0;	/* wait before the next connection attempt */
	bool		ever_connected = false;
	bool		lost = false;
	int			exit_code = 0;

	pg_logging_init(argv[0]);
	progname = get_progname(argv[0]);
	parse_args(argc, argv);
	mode = options.consumer != NULL ? &consumer_mode : &follow_mode;
	setup_signals();

	/* readers of the output see each frame as soon as it is printed */
	setvbuf(stdout, NULL, _IOLBF, 0);

	for (;;)
	{
		StepResult	step;

		if (conn == NULL)
		{
			char	   *errmsg;

			if (backoff > 0 && !sleep_ms(backoff))
				break;
			conn = open_connection(&main_target, ever_connected, &step, &errmsg);
			if (conn == NULL)
			{
				if (step == STEP_STOP)
					break;
				if (step == STEP_FATAL)
				{
					pg_log_error("could not connect: %s", errmsg);
					pg_free(errmsg);
					exit_code = 1;
					break;
				}
				backoff = next_backoff(backoff);
				pg_log_info("could not connect, retrying in %.1f s: %s",
							backoff / 1000.0, errmsg);
				pg_free(errmsg);
				continue;
			}
			ever_connected = true;
			step = mode->setup(conn);
			if (step == STEP_OK)
			{
				if (options.once)
					break;
				if (lost)
					pg_log_info("reconnected");
				lost = false;
				backoff = 0;
			}
		}
		else
			step = mode->step(conn);

		if (step == STEP_OK)
			continue;
		if (step == STEP_STOP || step == STEP_DONE)
			break;
		if (step == STEP_FATAL || options.once)
		{
			exit_code = 1;
			break;
		}

		/* STEP_RETRY: drop the connection; the mode keeps its positions */
		PQfinish(conn);
		conn = NULL;
		lost = true;
		backoff = next_backoff(backoff);
	}

	PQfinish(conn);
	if (!flush_output() && exit_code == 0)
		exit_code = 1;
	return exit_code;
}
