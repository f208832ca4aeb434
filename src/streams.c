/*-------------------------------------------------------------------------
 *
 * streams.c
 *	  The streams trigger: every rule a stream row must satisfy.
 *
 * The rules live in a BEFORE ROW trigger rather than in the API functions
 * so that they hold for direct INSERT, UPDATE and COPY as well.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "datastreams.h"
#include "ledger.h"
#include "stream_state.h"

typedef struct StreamColumns
{
	int			id;
	int			account_id;
	int			name;
	int			symbol;
	int			description;
	int			frequency;
	int			sla_ms;
	int			status;
	int			metadata;
	int			created_at;
	int			updated_at;
	int			retention;		/* -1 before version 1.1 of the SQL */
} StreamColumns;

static void
stream_columns(TupleDesc desc, StreamColumns *c)
{
	c->id = ds_column_index(desc, "streams", "id", true);
	c->account_id = ds_column_index(desc, "streams", "account_id", true);
	c->name = ds_column_index(desc, "streams", "name", true);
	c->symbol = ds_column_index(desc, "streams", "symbol", true);
	c->description = ds_column_index(desc, "streams", "description", true);
	c->frequency = ds_column_index(desc, "streams", "frequency", true);
	c->sla_ms = ds_column_index(desc, "streams", "sla_ms", true);
	c->status = ds_column_index(desc, "streams", "status", true);
	c->metadata = ds_column_index(desc, "streams", "metadata", true);
	c->created_at = ds_column_index(desc, "streams", "created_at", true);
	c->updated_at = ds_column_index(desc, "streams", "updated_at", true);
	c->retention = ds_column_index(desc, "streams", "retention", false);
}

static Datum
required_text(Datum value, bool isnull, const char *what, bool upper)
{
	char	   *s;

	if (isnull || ds_is_blank(s = TextDatumGetCString(value)))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("%s is required", what)));
	s = ds_trim(s);
	if (upper)
		s = str_toupper(s, strlen(s), DEFAULT_COLLATION_OID);
	return CStringGetTextDatum(s);
}

static Datum
normalize_status(Datum value, bool isnull)
{
	char	   *s;
	char	   *word;

	if (isnull || ds_is_blank(s = TextDatumGetCString(value)))
		return CStringGetTextDatum("inactive");
	word = ds_status_word(s);
	if (word == NULL ||
		(strcmp(word, "inactive") != 0 && strcmp(word, "active") != 0 && strcmp(word, "paused") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid stream status \"%s\"", ds_clip_for_message(word ? word : ds_trim(s))),
				 errhint("A stream's status is one of inactive, active or paused.")));
	return CStringGetTextDatum(word);
}

static void
check_frequency(Datum value)
{
	Interval	zero = {0};

	if (!DatumGetBool(DirectFunctionCall2(interval_gt, value, IntervalPGetDatum(&zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("frequency must be positive"),
				 errdetail("The frequency is the expected interval between two frames, such as '1s' or '100ms'.")));
}

static void
check_retention(Datum value)
{
	Interval	zero = {0};

	if (!DatumGetBool(DirectFunctionCall2(interval_gt, value, IntervalPGetDatum(&zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retention must be positive"),
				 errdetail("The retention is how long frames are kept, such as '30 days'; NULL means datastreams.default_retention.")));
}

static void
forbid_change(TupleDesc desc, int att, Datum *newvals, bool *newnulls,
			  Datum *oldvals, bool *oldnulls)
{
	Form_pg_attribute attr = TupleDescAttr(desc, att);

	if (newnulls[att] != oldnulls[att] ||
		(!newnulls[att] && !datumIsEqual(newvals[att], oldvals[att], attr->attbyval, attr->attlen)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("column \"%s\" of a stream cannot be changed", NameStr(attr->attname))));
}

/*
 * A stream takes its frames with it.  No foreign key says so (it would cost
 * every frame a row lock on its stream): the deletion takes the writers'
 * stream lock, so writers in progress finish first and later ones find the
 * stream gone (frame_rules.c), then deletes the frames as the extension.
 */
static void
delete_frames(Relation streams, HeapTuple stream)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	Datum		id = heap_getattr(stream, ds_column_index(RelationGetDescr(streams), "streams", "id", true) + 1,
								  RelationGetDescr(streams), &isnull);
	Oid			save_userid;
	int			save_sec_context;

	if (isnull)
		return;
	ds_lock_stream(DatumGetUUIDP(id), 1);
	ds_become_superuser(&save_userid, &save_sec_context);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (plan == NULL)
	{
		Oid			argtypes[1] = {UUIDOID};
		SPIPlanPtr	p = SPI_prepare("DELETE FROM datastreams.frames WHERE stream_id OPERATOR(pg_catalog.=) $1",
									1, argtypes);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the deletion of a stream's frames");
		plan = p;
	}
	if (SPI_execute_plan(plan, &id, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete the frames of a stream");
	SPI_finish();
	ds_restore_user(save_userid, save_sec_context);
}

/*
 * A session that acts for an account writes only that account's streams.
 * Row-level security already sees to it for everyone else; this is for
 * roles that bypass it (loaders, administrators) while acting for an
 * account, as the frames trigger does for frames.
 */
static void
check_acting_account(bool inserting, const pg_uuid_t *stream_id, Datum account,
					 bool account_null)
{
	char	   *acting;
	char	   *owner;

	if (account_null || !ds_bypasses_rls() || (acting = ds_current_account()) == NULL)
		return;
	owner = TextDatumGetCString(account);
	if (strcmp(owner, acting) == 0)
		return;
	if (inserting)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot create a stream for another account"),
				 errdetail("The stream is for account \"%s\"; this session acts for account \"%s\".",
						   ds_clip_for_message(owner), ds_clip_for_message(acting)),
				 errhint("Leave account_id out, or reset datastreams.account_id to act for no account.")));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("stream %s belongs to another account", ds_uuid_to_cstring(stream_id)),
			 errdetail("This session acts for account \"%s\".", ds_clip_for_message(acting))));
}

PG_FUNCTION_INFO_V1(datastreams_streams_trigger);
Datum
datastreams_streams_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tuple;
	StreamColumns c;
	Datum	   *values;
	bool	   *nulls;
	bool	   *replace;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	bool		inserting;
	char	   *account;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("datastreams_streams_trigger: not called by trigger manager")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("datastreams_streams_trigger: must be fired before each row")));

	inserting = TRIGGER_FIRED_BY_INSERT(trigdata->tg_event);
	desc = RelationGetDescr(trigdata->tg_relation);
	stream_columns(desc, &c);

	/*
	 * Every backend's stream cache forgets this stream (and only it) when
	 * the change commits or rolls back.  (A new stream's id is known below.)
	 */
	if (!inserting)
	{
		bool		isnull;
		Datum		id = heap_getattr(trigdata->tg_trigtuple, c.id + 1, desc, &isnull);

		if (!isnull)
			ds_stream_changed(DatumGetUUIDP(id));
	}

	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		delete_frames(trigdata->tg_relation, trigdata->tg_trigtuple);
		return PointerGetDatum(trigdata->tg_trigtuple);
	}

	tuple = inserting ? trigdata->tg_trigtuple : trigdata->tg_newtuple;

	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	replace = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(tuple, desc, values, nulls);
	memset(replace, false, sizeof(bool) * desc->natts);

	if (inserting)
	{
		/*
		 * Ids are chosen by the trigger: a tenant that could choose one would
		 * learn from a unique violation that another account uses it.
		 */
		if (!nulls[c.id] && !ds_bypasses_rls())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("a stream's id is chosen by datastreams"),
					 errhint("Leave id out; only roles that bypass row-level security may give one.")));
		if (nulls[c.id])
		{
			pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));

			ds_generate_stream_id(id);
			values[c.id] = UUIDPGetDatum(id);
			nulls[c.id] = false;
		}
		/* its own transaction may cache it, and then roll it back */
		ds_stream_changed(DatumGetUUIDP(values[c.id]));
		if (nulls[c.account_id] && (account = ds_current_account()) != NULL)
		{
			values[c.account_id] = CStringGetTextDatum(account);
			nulls[c.account_id] = false;
		}
		if (nulls[c.created_at])
		{
			values[c.created_at] = TimestampTzGetDatum(now);
			nulls[c.created_at] = false;
		}
	}
	else
	{
		Datum	   *oldvals = palloc(sizeof(Datum) * desc->natts);
		bool	   *oldnulls = palloc(sizeof(bool) * desc->natts);

		heap_deform_tuple(trigdata->tg_trigtuple, desc, oldvals, oldnulls);
		forbid_change(desc, c.id, values, nulls, oldvals, oldnulls);
		forbid_change(desc, c.account_id, values, nulls, oldvals, oldnulls);
		forbid_change(desc, c.created_at, values, nulls, oldvals, oldnulls);
	}
	check_acting_account(inserting, DatumGetUUIDP(values[c.id]), values[c.account_id],
						 nulls[c.account_id]);

	values[c.name] = required_text(values[c.name], nulls[c.name], "name", false);
	nulls[c.name] = false;
	values[c.symbol] = required_text(values[c.symbol], nulls[c.symbol], "symbol", true);
	nulls[c.symbol] = false;

	values[c.description] = CStringGetTextDatum(nulls[c.description] ? "" :
												ds_trim(TextDatumGetCString(values[c.description])));
	nulls[c.description] = false;

	values[c.status] = normalize_status(values[c.status], nulls[c.status]);
	nulls[c.status] = false;

	if (nulls[c.sla_ms] || DatumGetInt32(values[c.sla_ms]) < 0)
		values[c.sla_ms] = Int32GetDatum(0);
	nulls[c.sla_ms] = false;

	if (!nulls[c.frequency])
		check_frequency(values[c.frequency]);

	if (c.retention >= 0 && !nulls[c.retention])
		check_retention(values[c.retention]);

	if (nulls[c.metadata])
		values[c.metadata] = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	else
		values[c.metadata] = JsonbPGetDatum(ds_normalize_metadata(DatumGetJsonbP(values[c.metadata])));
	nulls[c.metadata] = false;

	values[c.updated_at] = TimestampTzGetDatum(now);
	nulls[c.updated_at] = false;

	memset(replace, true, sizeof(bool) * desc->natts);
	tuple = heap_modify_tuple(tuple, desc, values, nulls, replace);

	if (!nulls[c.account_id])
	{
		char	   *acct = TextDatumGetCString(values[c.account_id]);

		ds_ledger_stream_changed(DatumGetUUIDP(values[c.id]), acct, inserting);
	}

	return PointerGetDatum(tuple);
}
