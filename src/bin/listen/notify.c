/*-------------------------------------------------------------------------
 *
 * notify.c
 *	  What datastreams-listen reads in a notification's payload.
 *
 * Notifications are only wake-ups: the frames themselves are always read
 * with frames_since().  From a payload we take the stream (to wake just
 * that stream), the sequence (to skip a fetch when it is already printed)
 * and whether the stream's partition moved to another shard (the source
 * shard of a move sends {"moved": true} on the moved streams' channels).  Whatever else the payload holds, and whatever shape it has,
 * is ignored; a payload we cannot read only means the stream is fetched.
 *
 * The payload is read with PostgreSQL's own JSON parser (common/jsonapi.h)
 * and only top-level members count: a frame's own "payload" may well have a
 * "sequence" of its own.
 *
 * IDENTIFICATION
 *	  src/bin/listen/notify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/jsonapi.h"
#include "datastreams_listen.h"
#include "mb/pg_wchar.h"

typedef struct PayloadState
{
	JsonLexContext *lex;
	NotifyInfo *info;
	char	   *field;			/* the top-level member being read */
} PayloadState;

static void
payload_field_start(void *state, char *fname, bool isnull)
{
	PayloadState *ps = state;

	if (ps->lex->lex_level == 1)
	{
		pfree(ps->field);
		ps->field = fname;
	}
	else
		pfree(fname);
}

static void
payload_scalar(void *state, char *token, JsonTokenType tokentype)
{
	PayloadState *ps = state;
	NotifyInfo *info = ps->info;

	if (ps->lex->lex_level == 0)
	{
		/* a payload that is just a number is taken as the sequence */
		if (tokentype == JSON_TOKEN_NUMBER)
			info->has_sequence = parse_sequence(token, &info->sequence);
	}
	else if (ps->lex->lex_level == 1 && ps->field != NULL)
	{
		/*
		 * "sequence_text" is exact whatever the sender; "sequence" is read
		 * as the exact integer it is on the wire, never through a double.
		 */
		if ((strcmp(ps->field, "sequence") == 0 &&
			 tokentype == JSON_TOKEN_NUMBER && !info->has_sequence) ||
			(strcmp(ps->field, "sequence_text") == 0 &&
			 tokentype == JSON_TOKEN_STRING))
			info->has_sequence = parse_sequence(token, &info->sequence);
		else if (strcmp(ps->field, "stream_id") == 0 &&
				 tokentype == JSON_TOKEN_STRING)
			info->has_stream = normalize_uuid(token, info->stream_id);
		else if (strcmp(ps->field, "moved") == 0 &&
				 tokentype == JSON_TOKEN_TRUE)
			info->moved = true;
	}
	pfree(token);
}

/*
 * Fill info from a notification's payload; what cannot be read is left
 * unset.
 */
void
parse_notify_payload(char *payload, NotifyInfo *info)
{
	PayloadState state = {0};
	JsonSemAction sem = {0};
	JsonLexContext *lex;

	memset(info, 0, sizeof(*info));
	lex = makeJsonLexContextCstringLen(payload, strlen(payload), PG_UTF8, true);
	state.lex = lex;
	state.info = info;
	sem.semstate = &state;
	sem.object_field_start = payload_field_start;
	sem.scalar = payload_scalar;

	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
		memset(info, 0, sizeof(*info));

	/* jsonapi has no destructor in PostgreSQL 15 */
	pfree(state.field);
	pfree(lex->strval->data);
	pfree(lex->strval);
	pfree(lex);
}
