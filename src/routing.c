/*-------------------------------------------------------------------------
 *
 * routing.c
 *	  The routing hash of a stream, and the setting that lets a router
 *	  choose it for a stream about to be created.
 *
 * A sharded deployment (contrib/datastreams_proxy) routes every call about
 * a stream by stream_hash(id), the id's first 32 bits read big-endian as a
 * signed int4 (PL/Proxy's hash type).  Routing stays stateless because the
 * hash is part of the id: the proxy picks the hash of a new stream (random
 * by default), the shard's streams trigger generates an id that starts
 * with it, and the other 90 random bits of the version 4 id are chosen by
 * the trigger as always.  A role that sets the hash chooses at most where
 * its stream lives, never its id, so the rule that tenants never give ids
 * holds.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"
#include "utils/uuid.h"

#include "datastreams.h"

/* datastreams.stream_id_hash as text; "" when no hash is chosen */
static char *stream_id_hash_setting = NULL;

/* The parsed setting, kept by the assign hook */
static bool stream_id_hash_set = false;
static int32 stream_id_hash = 0;

static int32
uuid_prefix(const pg_uuid_t *id)
{
	uint32		prefix = ((uint32) id->data[0] << 24) |
		((uint32) id->data[1] << 16) |
		((uint32) id->data[2] << 8) |
		(uint32) id->data[3];

	return (int32) prefix;
}

static bool
check_stream_id_hash(char **newval, void **extra, GucSource source)
{
	char	   *end;
	long		value;

	if (**newval == '\0')
		return true;
	errno = 0;
	value = strtol(*newval, &end, 10);
	if (errno != 0 || end == *newval || *end != '\0' ||
		value < PG_INT32_MIN || value > PG_INT32_MAX)
	{
		GUC_check_errdetail("The hash is an integer from -2147483648 to 2147483647, or empty for none.");
		return false;
	}
	/* PostgreSQL 15 frees a setting's extra with free() */
	*extra = malloc(sizeof(int32));
	if (*extra == NULL)
		return false;
	*(int32 *) *extra = (int32) value;
	return true;
}

static void
assign_stream_id_hash(const char *newval, void *extra)
{
	stream_id_hash_set = (extra != NULL);
	if (extra != NULL)
		stream_id_hash = *(int32 *) extra;
}

void
ds_routing_init(void)
{
	DefineCustomStringVariable("datastreams.stream_id_hash",
							   "Sets the routing hash of the streams created next.",
							   "Empty leaves stream ids wholly random; an int4 becomes the "
							   "first 32 bits of the next stream ids, so stream_hash() of "
							   "each is that value.  Set by a sharded deployment's router.",
							   &stream_id_hash_setting,
							   "",
							   PGC_USERSET,
							   0,
							   check_stream_id_hash,
							   assign_stream_id_hash,
							   NULL);
}

void
ds_generate_stream_id(pg_uuid_t *out)
{
	uint32		prefix = (uint32) stream_id_hash;

	ds_generate_uuid_v4(out);
	if (!stream_id_hash_set)
		return;
	/* the version and variant bits are outside the first 32 */
	out->data[0] = (unsigned char) (prefix >> 24);
	out->data[1] = (unsigned char) (prefix >> 16);
	out->data[2] = (unsigned char) (prefix >> 8);
	out->data[3] = (unsigned char) prefix;
}

PG_FUNCTION_INFO_V1(datastreams_stream_hash);
Datum
datastreams_stream_hash(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(uuid_prefix(PG_GETARG_UUID_P(0)));
}
