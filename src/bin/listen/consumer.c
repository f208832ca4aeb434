/*-------------------------------------------------------------------------
 *
 * consumer.c
 *	  Durable consumer mode of datastreams-listen (--consumer).
 *
 * IDENTIFICATION
 *	  src/bin/listen/consumer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/logging.h"
#include "datastreams_listen.h"

static StepResult
consumer_setup(PGconn *conn)
{
	pg_log_error("--consumer is not implemented yet");
	return STEP_FATAL;
}

static StepResult
consumer_step(PGconn *conn)
{
	return STEP_FATAL;
}

const ListenMode consumer_mode = {
	.setup = consumer_setup,
	.step = consumer_step,
};
