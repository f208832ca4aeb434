/*-------------------------------------------------------------------------
 *
 * shards.c
 *	  The LISTEN connections of datastreams-listen --proxy: one per shard
 *	  that holds a followed stream.
 *
 * Notifications are sent by the shard that commits a frame, so a client
 * behind a datastreams_proxy LISTENs on the shards themselves, with a
 * role of its own (LISTEN needs only CONNECT), while it reads frames
 * through the proxy, where tenancy is resolved.  Each shard's connection
 * comes and goes on its own: a shard that restarts or fails over is
 * reconnected with its own backoff while the streams of the other shards
 * are followed on.
 *
 * Shards are known by the connection strings in the proxy's map
 * (datastreams_proxy.shard_of()), which carry no credentials: the
 * settings of --shard-conninfo (a role, a password file, TLS) are laid
 * over each of them.  Partitions on one server share its connection.
 *
 * IDENTIFICATION
 *	  src/bin/listen/shards.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/logging.h"
#include "datastreams_listen.h"

/*
 * Connecting blocks the loop, so a shard that does not answer must not
 * hold up the others for long: this applies (libpq's shortest) unless the
 * map or --shard-conninfo sets connect_timeout.
 */
#define SHARD_CONNECT_TIMEOUT	"2"

Shard	   *shards = NULL;
int			nshards = 0;

/* The shard with this connection string, added if new. */
int
shard_lookup(const char *conninfo)
{
	for (int i = 0; i < nshards; i++)
	{
		if (strcmp(shards[i].conninfo, conninfo) == 0)
			return i;
	}
	shards = pg_realloc(shards, sizeof(Shard) * (nshards + 1));
	memset(&shards[nshards], 0, sizeof(Shard));
	shards[nshards].conninfo = pg_strdup(conninfo);
	return nshards++;
}

/*
 * Drop shard i's connection after a failure: its streams wait for the
 * reconnection, which comes after a backoff and replays them.
 */
void
shard_lost(int i)
{
	Shard	   *shard = &shards[i];

	PQfinish(shard->conn);
	shard->conn = NULL;
	shard->synced = false;
	shard->backoff = next_backoff(shard->backoff);
	shard->retry_at = monotonic_ms() + shard->backoff;
}

/*
 * Connect to shard i unless it is connected or waiting out its backoff.
 * Returns STEP_OK when connected, STEP_RETRY when not (yet), STEP_FATAL
 * when connecting cannot succeed (a first connection refused: a wrong
 * role or password) and STEP_STOP on a stop signal.
 */
StepResult
shard_connect(int i)
{
	Shard	   *shard = &shards[i];
	ConnTarget	target = {
		.conninfo = shard->conninfo,
		.overrides = options.shard_overrides,
		.default_connect_timeout = SHARD_CONNECT_TIMEOUT,
	};
	StepResult	step;
	char	   *errmsg;

	if (shard->conn != NULL)
		return STEP_OK;
	if (monotonic_ms() < shard->retry_at)
		return STEP_RETRY;

	shard->conn = open_connection(&target, shard->ever_connected, &step, &errmsg);
	if (shard->conn != NULL)
	{
		shard->ever_connected = true;
		return STEP_OK;
	}
	if (step == STEP_FATAL)
		pg_log_error("could not connect to shard \"%s\": %s", shard->conninfo, errmsg);
	else if (step == STEP_RETRY)
	{
		shard->backoff = next_backoff(shard->backoff);
		shard->retry_at = monotonic_ms() + shard->backoff;
		pg_log_info("could not connect to shard \"%s\", retrying in %.1f s: %s",
					shard->conninfo, shard->backoff / 1000.0, errmsg);
	}
	pg_free(errmsg);
	return step;
}

/* The earliest time a shard that is down may be tried again, or -1. */
int64
shards_next_retry(void)
{
	int64		next = -1;

	for (int i = 0; i < nshards; i++)
	{
		if (shards[i].conn == NULL && shards[i].has_streams &&
			(next < 0 || shards[i].retry_at < next))
			next = shards[i].retry_at;
	}
	return next;
}

/*
 * Wait for input on every connected shard until the deadline and read what
 * came; the caller takes the notifications with PQnotifies().  A shard
 * whose connection failed is dropped (and reconnected later).
 */
StepResult
wait_for_shards(int64 deadline)
{
	int		   *socks = pg_malloc(sizeof(int) * Max(nshards, 1));
	int			nsocks = 0;
	int			rc;

	for (int i = 0; i < nshards; i++)
	{
		if (shards[i].conn == NULL)
			continue;
		if (PQsocket(shards[i].conn) < 0)
		{
			pg_log_info("lost the connection to shard \"%s\"", shards[i].conninfo);
			shard_lost(i);
			continue;
		}
		socks[nsocks++] = PQsocket(shards[i].conn);
	}
	rc = wait_for_sockets(socks, nsocks, false, deadline);
	pg_free(socks);
	if (rc < 0)
		return STEP_STOP;

	/*
	 * libpq's sockets never block, so every connection is read, even after
	 * a timeout: what arrived is never left waiting behind a deadline that
	 * keeps passing.
	 */
	for (int i = 0; i < nshards; i++)
	{
		if (shards[i].conn != NULL && !PQconsumeInput(shards[i].conn))
		{
			pg_log_info("lost the connection to shard \"%s\", reconnecting: %s",
						shards[i].conninfo, PQerrorMessage(shards[i].conn));
			shard_lost(i);
		}
	}
	return STEP_OK;
}
