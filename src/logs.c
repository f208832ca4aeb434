/*-------------------------------------------------------------------------
 *
 * logs.c
 *	  Structured server log lines: stream changes and rejected frames.
 *
 * Lines are "datastreams: <event> key=value ...", values quoted (logfmt
 * style) when they contain spaces, quotes, '=' or control characters, so
 * that log processors can split them reliably.  Each kind of line has its
 * own level setting; "off" emits nothing.  Accepted frames are never
 * logged one by one.
 *
 * Stream changes are logged when their transaction commits (the ledger
 * keeps them until then), so a rolled-back change leaves no line.  A
 * rejected frame is logged when it is rejected: the error that follows
 * says the same, but only to the client, and may be caught.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/guc.h"

#include "datastreams.h"
#include "ledger.h"

#define LOG_OFF 0

static int	log_stream_changes = LOG;
static int	log_rejected_frames = LOG_OFF;

static const struct config_enum_entry log_level_options[] = {
	{"off", LOG_OFF, false},
	{"debug5", DEBUG5, false},
	{"debug4", DEBUG4, false},
	{"debug3", DEBUG3, false},
	{"debug2", DEBUG2, false},
	{"debug1", DEBUG1, false},
	{"debug", DEBUG2, true},
	{"info", INFO, false},
	{"notice", NOTICE, false},
	{"warning", WARNING, false},
	{"log", LOG, false},
	{NULL, 0, false}
};

void
ds_logs_init(void)
{
	DefineCustomEnumVariable("datastreams.log_stream_changes",
							 "Sets the level of the server log line written for each stream created or updated.",
							 "Lines are written when the transaction commits; off writes none.",
							 &log_stream_changes,
							 LOG,
							 log_level_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("datastreams.log_rejected_frames",
							 "Sets the level of the server log line written for each frame the frames trigger rejects.",
							 "off writes none; accepted frames are never logged.",
							 &log_rejected_frames,
							 LOG_OFF,
							 log_level_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
}

static void
append_value(StringInfo buf, const char *key, const char *value)
{
	const char *p;
	bool		quote = (*value == '\0');

	for (p = value; *p && !quote; p++)
		if (*p == ' ' || *p == '"' || *p == '=' || *p == '\\' ||
			(unsigned char) *p < 0x20 || *p == 0x7f)
			quote = true;

	appendStringInfo(buf, " %s=", key);
	if (!quote)
	{
		appendStringInfoString(buf, value);
		return;
	}
	appendStringInfoChar(buf, '"');
	for (p = value; *p; p++)
	{
		switch (*p)
		{
			case '"':
				appendStringInfoString(buf, "\\\"");
				break;
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			default:
				if ((unsigned char) *p < 0x20 || *p == 0x7f)
					appendStringInfo(buf, "\\x%02x", (unsigned char) *p);
				else
					appendStringInfoChar(buf, *p);
		}
	}
	appendStringInfoChar(buf, '"');
}

/*
 * "datastreams: stream created stream_id=... account_id=..."
 */
static void
log_stream_change(int elevel, const char *change, const pg_uuid_t *stream_id,
				  const char *account_id)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "datastreams: stream %s", change);
	append_value(&buf, "stream_id", ds_uuid_to_cstring(stream_id));
	append_value(&buf, "account_id", account_id);
	ereport(elevel,
			(errmsg_internal("%s", buf.data),
			 errhidestmt(true), errhidecontext(true)));
	pfree(buf.data);
}

/*
 * "datastreams: frame rejected stream_id=... account_id=... reason=..."
 * For the frames trigger, right before it raises the error; account_id is
 * the account the session acts for, "-" when none (or unknown).
 */
void
ds_log_rejected_frame(const pg_uuid_t *stream_id, const char *reason)
{
	StringInfoData buf;
	char	   *account;

	if (log_rejected_frames == LOG_OFF)
		return;
	account = ds_current_account();
	initStringInfo(&buf);
	appendStringInfoString(&buf, "datastreams: frame rejected");
	append_value(&buf, "stream_id", stream_id ? ds_uuid_to_cstring(stream_id) : "-");
	append_value(&buf, "account_id", account ? account : "-");
	append_value(&buf, "reason", reason);
	ereport(log_rejected_frames,
			(errmsg_internal("%s", buf.data),
			 errhidestmt(true), errhidecontext(true)));
	pfree(buf.data);
}

/* At commit: the transaction's stream changes, in the order they were made */
void
ds_log_changes(void)
{
	int			count;
	int64		not_listed;
	LedgerChange *changes = ds_ledger_changes(&count, &not_listed);
	int			i;

	if (log_stream_changes == LOG_OFF)
		return;
	for (i = 0; i < count; i++)
		log_stream_change(log_stream_changes, changes[i].created ? "created" : "updated",
						  &changes[i].stream_id, changes[i].account_id);
	if (not_listed > 0)
		ereport(log_stream_changes,
				(errmsg("datastreams: stream changes not logged count=" INT64_FORMAT, not_listed),
				 errdetail("A transaction logs at most %d stream changes one by one.", count),
				 errhidestmt(true), errhidecontext(true)));
}
