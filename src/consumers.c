/*-------------------------------------------------------------------------
 *
 * consumers.c
 *	  Durable consumers: the lag setting of stream_health and the lag
 *	  series of metrics().
 *
 * Consumers are SQL (sql/1.1--1.2/30_consumers.sql): positions are rows
 * acknowledged in the consumer's own transaction, and the view
 * datastreams.consumer_lag computes the lag.  metrics() exports that view,
 * so its series are as fresh as the last committed acknowledgement; unlike
 * the other series they do not live in shared memory and need no
 * preloading of their own (metrics() as a whole does).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "datastreams.h"

/* Read by the stream_health view through current_setting() */
static int	health_consumer_lag_s = 60;

void
ds_consumers_init(void)
{
	DefineCustomIntVariable("datastreams.health_consumer_lag",
							"Sets how far behind a consumer may fall before stream_health calls its streams unhealthy.",
							"A consumer is behind by the age of its oldest unacknowledged frame.",
							&health_consumer_lag_s,
							60,
							1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

/*
 * The lag of every consumer and stream the viewer may see, as three
 * families.  Administrators see every account: the view applies row-level
 * security, which is forced on the tables even for administrators who are
 * not superusers, so the query runs as the bootstrap superuser for them
 * (like prune()); tenants run it as themselves.  A database whose
 * extension predates consumers has the families without series.
 */
void
ds_consumer_metrics(StringInfo buf, const char *account, bool all)
{
	static const char *const families[3][3] = {
		{"datastreams_consumer_lag_frames", "gauge",
		"Frames after the consumer's acknowledged position, per consumer and stream."},
		{"datastreams_consumer_lag_seconds", "gauge",
		"Age of the consumer's oldest unacknowledged frame, per consumer and stream (0 when caught up)."},
		{"datastreams_consumer_frames_missed_total", "counter",
		"Frames retention removed before the consumer acknowledged them, per consumer and stream."},
	};
	StringInfoData series[3];
	Oid			save_userid;
	int			save_sec_context;
	int			rc;
	uint64		i;
	int			f;

	for (f = 0; f < 3; f++)
		initStringInfo(&series[f]);

	if ((all || account != NULL) &&
		OidIsValid(get_relname_relid("consumer_lag", ds_relations()->namespace)))
	{
		GetUserIdAndSecContext(&save_userid, &save_sec_context);
		if (all)
			SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
								   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		rc = SPI_execute("SELECT l.account_id, l.consumer, l.stream_id::text, "
						 "       l.frames_behind, l.seconds_behind, l.frames_missed "
						 "  FROM datastreams.consumer_lag AS l "
						 " ORDER BY l.account_id COLLATE pg_catalog.\"C\", "
						 "          l.consumer COLLATE pg_catalog.\"C\", l.stream_id",
						 true, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not read datastreams.consumer_lag: %s",
				 SPI_result_code_string(rc));

		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tuple = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			char	   *labels[3];
			bool		isnull;
			int			k;

			for (k = 0; k < 3; k++)
				labels[k] = SPI_getvalue(tuple, desc, k + 1);
			for (f = 0; f < 3; f++)
			{
				Datum		value = SPI_getbinval(tuple, desc, f + 4, &isnull);

				appendStringInfo(&series[f], "%s{", families[f][0]);
				ds_prometheus_label(&series[f], "account_id", labels[0], true);
				ds_prometheus_label(&series[f], "consumer", labels[1], false);
				ds_prometheus_label(&series[f], "stream_id", labels[2], false);
				if (f == 1)
					appendStringInfo(&series[f], "} %.3f\n", DatumGetFloat8(value));
				else
					appendStringInfo(&series[f], "} " INT64_FORMAT "\n", DatumGetInt64(value));
			}
		}
		SPI_finish();
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}

	for (f = 0; f < 3; f++)
	{
		ds_prometheus_family(buf, families[f][0], families[f][1], families[f][2]);
		appendBinaryStringInfo(buf, series[f].data, series[f].len);
	}
}

/*
 * datastreams.drop_consumer(name): drop a consumer of the current account
 * and, through the foreign key's cascade, its positions (waiting for
 * members that hold them).  Tenants have no DELETE on consumers, since that
 * privilege would let any role lock the table in any mode; the row is
 * deleted as the extension, after the account check.
 */
PG_FUNCTION_INFO_V1(datastreams_drop_consumer);
Datum
datastreams_drop_consumer(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	char	   *account = ds_require_account();
	char	   *name = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	Datum		values[2];
	Oid			save_userid;
	int			save_sec_context;
	uint64		dropped = 0;

	if (name != NULL)
	{
		values[0] = CStringGetTextDatum(account);
		values[1] = PointerGetDatum(PG_GETARG_TEXT_PP(0));
		ds_become_superuser(&save_userid, &save_sec_context);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (plan == NULL)
		{
			Oid			argtypes[2] = {TEXTOID, TEXTOID};
			SPIPlanPtr	p = SPI_prepare("DELETE FROM datastreams.consumers AS c "
										"WHERE c.account_id OPERATOR(pg_catalog.=) $1 "
										"AND c.name OPERATOR(pg_catalog.=) $2",
										2, argtypes);

			if (p == NULL || SPI_keepplan(p) != 0)
				elog(ERROR, "could not prepare the deletion of a consumer");
			plan = p;
		}
		if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not delete a consumer");
		dropped = SPI_processed;
		SPI_finish();
		ds_restore_user(save_userid, save_sec_context);
	}
	if (dropped == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("consumer \"%s\" not found", name ? ds_clip_for_message(name) : "<NULL>")));
	PG_RETURN_VOID();
}
