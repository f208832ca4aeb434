/*-------------------------------------------------------------------------
 *
 * consumer_drain.c
 *	  Benchmark client: drain a durable consumer, or (the baseline) read a
 *	  stream with frames_since() keeping the position in the client.
 *
 *	  consumer_drain CONNINFO consumer NAME BATCH
 *	  consumer_drain CONNINFO since STREAM_ID BATCH
 *
 * consumer: per transaction, BEGIN; SELECT * FROM datastreams.poll(NAME,
 * BATCH); ack() of the highest sequence received per stream; COMMIT; until
 * nothing is left to acknowledge (a poll that returns nothing while another
 * member still holds a stream with frames waits 1 ms and polls again).
 * since: SELECT * FROM datastreams.frames_since(STREAM_ID, last, BATCH) in
 * autocommit until it returns nothing.  Every column of every frame is
 * sent to the client.  On exit the program prints one line:
 *
 *	  frames=N batches=N empty_polls=N seconds=X
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libpq-fe.h"

static PGconn *conn;

static void
die(const char *what, PGresult *res)
{
	fprintf(stderr, "consumer_drain: %s: %s", what,
			res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	exit(1);
}

static PGresult *
run(const char *sql, int nparams, const char *const *params, ExecStatusType want)
{
	PGresult   *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(res) != want)
		die(sql, res);
	return res;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	const char *mode;
	const char *target;
	const char *batch;
	long long	frames = 0;
	long long	batches = 0;
	long long	empty = 0;
	double		start;

	if (argc != 5 || (strcmp(argv[2], "consumer") != 0 && strcmp(argv[2], "since") != 0))
	{
		fprintf(stderr, "usage: consumer_drain CONNINFO consumer NAME BATCH\n"
				"       consumer_drain CONNINFO since STREAM_ID BATCH\n");
		return 2;
	}
	mode = argv[2];
	target = argv[3];
	batch = argv[4];
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
		die("connect", NULL);

	start = now_seconds();
	if (strcmp(mode, "since") == 0)
	{
		char		last[32] = "0";

		for (;;)
		{
			const char *params[3] = {target, last, batch};
			PGresult   *res = run("SELECT f.* FROM datastreams.frames_since($1, $2, $3) AS f",
								  3, params, PGRES_TUPLES_OK);
			int			n = PQntuples(res);
			int			seqcol = PQfnumber(res, "sequence");

			if (n == 0)
			{
				PQclear(res);
				break;
			}
			snprintf(last, sizeof(last), "%s", PQgetvalue(res, n - 1, seqcol));
			frames += n;
			batches++;
			PQclear(res);
		}
	}
	else
	{
		for (;;)
		{
			const char *params[2] = {target, batch};
			PGresult   *res;
			int			n;
			int			i;
			int			streamcol;
			int			seqcol;

			PQclear(run("BEGIN", 0, NULL, PGRES_COMMAND_OK));
			res = run("SELECT f.* FROM datastreams.poll($1, $2) AS f", 2, params, PGRES_TUPLES_OK);
			n = PQntuples(res);
			streamcol = PQfnumber(res, "stream_id");
			seqcol = PQfnumber(res, "sequence");
			/* frames come stream by stream: acknowledge each stream's last */
			for (i = 0; i < n; i++)
			{
				if (i == n - 1 || strcmp(PQgetvalue(res, i, streamcol),
										 PQgetvalue(res, i + 1, streamcol)) != 0)
				{
					const char *ack[3] = {target, PQgetvalue(res, i, streamcol),
					PQgetvalue(res, i, seqcol)};

					PQclear(run("SELECT datastreams.ack($1, $2, $3)", 3, ack, PGRES_TUPLES_OK));
				}
			}
			PQclear(res);
			PQclear(run("COMMIT", 0, NULL, PGRES_COMMAND_OK));
			if (n > 0)
			{
				frames += n;
				batches++;
				continue;
			}

			/* nothing for us: done, unless another member holds a stream */
			res = run("SELECT EXISTS (SELECT FROM datastreams.consumer_positions AS p "
					  " WHERE p.consumer = $1 AND (SELECT f.sequence FROM datastreams.frames AS f "
					  "   WHERE f.stream_id = p.stream_id AND f.sequence > p.acknowledged_sequence "
					  "   ORDER BY f.sequence LIMIT 1) IS NOT NULL)",
					  1, params, PGRES_TUPLES_OK);
			if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
			{
				PQclear(res);
				break;
			}
			PQclear(res);
			empty++;
			{
				struct timespec pause = {0, 1000000};

				nanosleep(&pause, NULL);
			}
		}
	}
	printf("frames=%lld batches=%lld empty_polls=%lld seconds=%.3f\n",
		   frames, batches, empty, now_seconds() - start);
	PQfinish(conn);
	return 0;
}
