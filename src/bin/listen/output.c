/*-------------------------------------------------------------------------
 *
 * output.c
 *	  The output of datastreams-listen: one JSON object per frame and line.
 *
 * A frame is printed as the server's row_to_json() of it, with one member
 * added right after "sequence": "sequence_text", the same number as a
 * string.  Sequences default to Unix nanoseconds, above 2^53, which
 * JavaScript's JSON.parse (and jq 1.6) silently round; a consumer that
 * reads the string instead never feeds a rounded sequence back to
 * frames_since().  The member is always there: adding a member to a JSON
 * object breaks no reader, whereas an option would leave the safe form to
 * those who already know the trap.
 *
 * IDENTIFICATION
 *	  src/bin/listen/output.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/logging.h"
#include "datastreams_listen.h"

#define SEQUENCE_KEY		"\"sequence\":"

/*
 * Where to put "sequence_text": after the top-level "sequence" member,
 * which row_to_json() writes without blanks.  No string value can contain
 * the key as found here, because a quote inside a JSON string is escaped.
 * Without it (a row type that changed shape) the member goes last.
 */
static size_t
insert_position(const char *json, size_t len, const char *sequence)
{
	const char *key = strstr(json, SEQUENCE_KEY);
	size_t		seqlen = strlen(sequence);

	if (key != NULL)
	{
		const char *value = key + strlen(SEQUENCE_KEY);

		if (strncmp(value, sequence, seqlen) == 0 &&
			(value[seqlen] == ',' || value[seqlen] == '}'))
			return value + seqlen - json;
	}
	return len - 1;
}

/*
 * Print one frame.  json is the frame's row_to_json() text, sequence its
 * sequence as the server prints it.  Returns false (having said why) when
 * standard output cannot be written.
 */
bool
print_frame(const char *json, const char *sequence)
{
	size_t		len = strlen(json);
	size_t		at;

	Assert(len >= 2 && json[len - 1] == '}');
	at = insert_position(json, len, sequence);
	fwrite(json, 1, at, stdout);
	printf(",\"sequence_text\":\"%s\"", sequence);
	fputs(json + at, stdout);
	fputc('\n', stdout);
	if (ferror(stdout))
	{
		pg_log_error("could not write to standard output: %m");
		return false;
	}
	return true;
}

/* Push printed frames out of our buffer; false (said why) on failure. */
bool
flush_output(void)
{
	if (fflush(stdout) != 0 || ferror(stdout))
	{
		pg_log_error("could not write to standard output: %m");
		return false;
	}
	return true;
}
