/*-------------------------------------------------------------------------
 *
 * frames.c
 *	  The frames triggers: every frame, however it is inserted, goes
 *	  through the frame rules (frame_rules.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/rel.h"

#include "datastreams.h"
#include "frame_rules.h"

PG_FUNCTION_INFO_V1(datastreams_frames_trigger);
Datum
datastreams_frames_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const FrameColumns *c;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("datastreams_frames_trigger: not called by trigger manager")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("datastreams_frames_trigger: must be fired before each row")));
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("frames are immutable"),
				 errhint("Insert a new frame with a higher sequence instead.")));
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("datastreams_frames_trigger: must be fired for INSERT or UPDATE")));

	c = ds_frame_columns(trigdata->tg_relation);
	desc = RelationGetDescr(trigdata->tg_relation);
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(trigdata->tg_trigtuple, desc, values, nulls);

	if (ds_apply_frame_rules(c, values, nulls, ds_statement_skips_conflicts()) == FRAME_ALREADY_STORED)
		return PointerGetDatum(NULL);	/* skip it, as ON CONFLICT DO NOTHING would */

	return PointerGetDatum(heap_form_tuple(desc, values, nulls));
}

/*
 * The AFTER STATEMENT trigger of versions before 1.2, when the latest-frame
 * pointer was written per statement.  Kept so that their SQL still loads.
 */
PG_FUNCTION_INFO_V1(datastreams_frames_statement_trigger);
Datum
datastreams_frames_statement_trigger(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("datastreams_frames_statement_trigger: not called by trigger manager")));
	return PointerGetDatum(NULL);
}
