/*-------------------------------------------------------------------------
 *
 * datastreams_listen.h
 *	  Declarations shared by the files of datastreams-listen.
 *
 * The program has three parts around one connection loop (main.c): the
 * connection itself, waiting and query plumbing (connection.c), following
 * streams by LISTEN and frames_since() (follow.c, with notify.c reading
 * notification payloads) and the durable consumer mode (consumer.c); both
 * modes print frames through output.c.
 *
 * IDENTIFICATION
 *	  src/bin/listen/datastreams_listen.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DATASTREAMS_LISTEN_H
#define DATASTREAMS_LISTEN_H

#include "libpq-fe.h"

#define PROGRAM_NAME		"datastreams-listen"
#define UUID_TEXT_LEN		36

extern const char *progname;

/* What a step of a session asks the connection loop to do next. */
typedef enum StepResult
{
	STEP_OK,					/* carry on */
	STEP_RETRY,					/* connection lost or transient error */
	STEP_FATAL,					/* retrying cannot help: exit 1 */
	STEP_DONE,					/* nothing (more) to do: exit 0 */
	STEP_STOP					/* SIGINT/SIGTERM: exit 0 */
} StepResult;

/* The command line, as parsed by main.c. */
typedef struct ListenOptions
{
	const char *conninfo;
	bool		proxy;			/* --proxy: conninfo is a datastreams_proxy */
	PQconninfoOption *shard_overrides;	/* --shard-conninfo, parsed */
	const char *account;
	const char *consumer;		/* --consumer: durable consumer mode */
	char	  **stream_ids;		/* --stream, canonical text form */
	int			nstream_ids;
	bool		all;
	bool		once;
	bool		from_given;
	int64		from;
	int			poll_ms;
	int			max_backoff_ms;
	int			batch_size;		/* frames per poll() in consumer mode */
} ListenOptions;

extern ListenOptions options;

/*
 * A mode of operation: what to do on every fresh connection (catch up, so
 * that with --once the program is done afterwards), and one round of work
 * on an established one.
 */
typedef struct ListenMode
{
	StepResult	(*setup) (PGconn *conn);
	StepResult	(*step) (PGconn *conn);
} ListenMode;

extern const ListenMode follow_mode;
extern const ListenMode consumer_mode;

/*
 * Where to connect.  The user's connection (the proxy with --proxy) is
 * main_target; the shards' LISTEN connections take the map's connection
 * string with --shard-conninfo's settings over it.
 */
typedef struct ConnTarget
{
	const char *conninfo;		/* NULL: options.conninfo */
	const PQconninfoOption *overrides;	/* NULL, or settings over conninfo */
	const char *default_connect_timeout;	/* NULL, or below conninfo */
} ConnTarget;

/* connection.c */
extern const ConnTarget main_target;
extern char last_sqlstate[6];	/* of the last failure query_failure() saw */
extern void setup_signals(void);
extern void defer_stop(bool defer);
extern int64 monotonic_ms(void);
extern int	wait_for_sockets(const int *socks, int n, bool for_write,
							 int64 deadline);
extern int	wait_for_socket(int sock, bool for_write, int64 deadline);
extern bool sleep_ms(long ms);
extern PGconn *open_connection(const ConnTarget *target, bool ever_connected,
							   StepResult *step, char **errmsg);
extern StepResult query_failure(PGconn *conn, const PGresult *res,
								const char *what);
extern PGresult *run_query(PGconn *conn, const char *what, const char *sql,
						   int nparams, const char *const *params,
						   StepResult *step);
extern PGresult *await_result(PGconn *conn, const char *what,
							  StepResult *step);
extern StepResult wait_for_input(PGconn *conn, int64 deadline);
extern StepResult discard_results(PGconn *conn);

/* shards.c: the shards' LISTEN connections with --proxy */
typedef struct Shard
{
	char	   *conninfo;		/* from the proxy's map, no credentials */
	PGconn	   *conn;			/* NULL while down */
	bool		ever_connected;
	bool		synced;			/* LISTENing on its streams, replay due */
	bool		has_streams;	/* holds a stream followed (follow mode) */
	long		backoff;		/* wait before the next attempt */
	int64		retry_at;		/* monotonic time of the next attempt */
} Shard;

extern Shard *shards;
extern int	nshards;
extern int	shard_lookup(const char *conninfo);
extern void shard_lost(int i);
extern StepResult shard_connect(int i);
extern int64 shards_next_retry(void);
extern StepResult wait_for_shards(int64 deadline);

/* follow.c: also used by the consumer mode */
extern StepResult set_account(PGconn *conn);
extern StepResult listen_channels(PGconn *conn, char *const *channels, int n);

/* output.c */
extern bool print_frame(const char *json, const char *sequence);
extern bool flush_output(void);

/* notify.c */
typedef struct NotifyInfo
{
	bool		has_sequence;
	int64		sequence;
	bool		has_stream;
	char		stream_id[UUID_TEXT_LEN + 1];
	bool		moved;			/* {"moved": true}: ask the proxy again */
} NotifyInfo;

extern void parse_notify_payload(char *payload, NotifyInfo *info);

/* main.c: parsing and backoff helpers shared with the modes */
extern long next_backoff(long backoff);
extern bool parse_sequence(const char *text, int64 *result);
extern bool normalize_uuid(const char *text, char *out);

#endif							/* DATASTREAMS_LISTEN_H */
