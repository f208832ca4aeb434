/*-------------------------------------------------------------------------
 *
 * ingest.c
 *	  datastreams.ingest(): many frames of one stream in one call.
 *
 * The bulk path, built like COPY FROM.  The JSON array is walked element
 * by element; each element is read into the frames table's columns, goes
 * through the frame rules (frame_rules.c, the same code the frames trigger
 * runs, which also takes the stream lock and records the frame in the
 * transaction's ledger), and is then buffered and written with the table
 * access method's multi-insert, its index entries inserted after each batch.
 * So the frames trigger itself does not fire: one call costs about what
 * COPY costs, and memory holds one batch of frames besides the argument,
 * however long the array.
 *
 * What an INSERT would apply still applies: the caller's INSERT privilege,
 * the row-level security policies of datastreams.frames for the caller
 * (checked on every frame, as an INSERT does), the table's constraints,
 * defaults of columns a DBA added, and any trigger other than the
 * extension's own frames trigger (then frames are written one at a time
 * when such a trigger fires before each row, as COPY does).
 *
 * All or nothing: an error rolls the whole call back, and its DETAIL says
 * which element of the array (from 0) failed.  Cancellation is checked
 * before every element.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/nodeModifyTable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteHandler.h"
#include "rewrite/rowsecurity.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"

#include "datastreams.h"
#include "frame_rules.h"

/* A batch: at most this many frames, or this many bytes of them */
#define INGEST_BATCH_FRAMES 1000
#define INGEST_BATCH_BYTES (1024 * 1024)

/* frames.c: the extension's own BEFORE ROW trigger, whose rules ingest() applies itself */
extern PGDLLEXPORT Datum datastreams_frames_trigger(PG_FUNCTION_ARGS);

/* A default of a column the extension does not set (one a DBA added) */
typedef struct ColumnDefault
{
	int			column;			/* from 0 */
	ExprState  *expr;
} ColumnDefault;

typedef struct IngestState
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	const FrameColumns *columns;
	int			ndefaults;
	ColumnDefault *defaults;
	int			capacity;		/* frames per batch */
	TupleTableSlot *slots[INGEST_BATCH_FRAMES];
	int64		first;			/* element of slots[0] */
	int			buffered;
	Size		buffered_bytes;
	BulkInsertState bistate;
	CommandId	cid;
	TransitionCaptureState *transition_capture;
	int64		inserted;
} IngestState;

/* The element being worked on, for the error's DETAIL */
static int64 current_element = -1;

static Numeric int32_bounds[2];
static Numeric int64_bounds[2];

static void
field_error(const char *key, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("frame field \"%s\" must be %s", key, expected)));
}

static bool
numeric_is_whole(Numeric n)
{
	if (numeric_is_nan(n) || numeric_is_inf(n))
		return false;
	/* a number written without decimals: the common case, with no allocation */
	if (DatumGetInt32(DirectFunctionCall1(numeric_scale, NumericGetDatum(n))) == 0)
		return true;
	return DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(n),
											DirectFunctionCall2(numeric_trunc, NumericGetDatum(n),
																Int32GetDatum(0))));
}

static void
init_bounds(void)
{
	MemoryContext old;

	if (int64_bounds[0] != NULL)
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	int32_bounds[0] = int64_to_numeric(PG_INT32_MIN);
	int32_bounds[1] = int64_to_numeric(PG_INT32_MAX);
	int64_bounds[0] = int64_to_numeric(PG_INT64_MIN);
	int64_bounds[1] = int64_to_numeric(PG_INT64_MAX);
	MemoryContextSwitchTo(old);
}

/* A whole number within bounds (int32_bounds or int64_bounds) */
static Numeric
integer_field(const char *key, JsonbValue *v, Numeric *bounds)
{
	Numeric		n;

	if (v->type != jbvNumeric)
		field_error(key, "a number");
	n = v->val.numeric;
	if (!numeric_is_whole(n))
		field_error(key, "a whole number");
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n), NumericGetDatum(bounds[0]))) < 0 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n), NumericGetDatum(bounds[1]))) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("frame field \"%s\" is out of range", key)));
	return n;
}

static Datum
object_field(const char *key, JsonbValue *v)
{
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		field_error(key, "a JSON object");
	/* the nested object's bytes, as a jsonb value of their own */
	return JsonbPGetDatum(JsonbValueToJsonb(v));
}

/* Look a key up; false when absent or JSON null */
static bool
get_field(JsonbContainer *object, const char *key, JsonbValue *v, int *present)
{
	if (getKeyJsonValueFromContainer(object, key, strlen(key), v) == NULL)
		return false;
	(*present)++;
	return v->type != jbvNull;
}

static void
unknown_field(JsonbContainer *object)
{
	JsonbIterator *it = JsonbIteratorInit(object);
	JsonbValue	v;
	JsonbIteratorToken token;

	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;

		if (token != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		if (strcmp(key, "sequence") != 0 && strcmp(key, "payload") != 0 &&
			strcmp(key, "latency_ms") != 0 && strcmp(key, "status") != 0 &&
			strcmp(key, "metadata") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown frame field \"%s\"", ds_clip_for_message(key)),
					 errhint("A frame has the fields sequence, payload, latency_ms, status and metadata.")));
	}
}

/*
 * Fill in the frames table's columns from one element of the array: the
 * fields it has, the stream, and the defaults of columns the extension does
 * not know.  The frame rules do the rest.
 */
static void
read_element(IngestState *st, JsonbValue *element, Datum stream_id,
			 Datum *values, bool *nulls)
{
	const FrameColumns *c = st->columns;
	JsonbContainer *object;
	JsonbValue	v;
	int			present = 0;
	int			i;

	if (element->type != jbvBinary || !JsonContainerIsObject(element->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("each frame must be a JSON object")));
	object = element->val.binary.data;

	memset(nulls, true, sizeof(bool) * RelationGetDescr(st->rel)->natts);
	values[c->stream_id] = stream_id;
	nulls[c->stream_id] = false;

	if (get_field(object, "sequence", &v, &present))
	{
		values[c->sequence] = DirectFunctionCall1(numeric_int8,
												  NumericGetDatum(integer_field("sequence", &v, int64_bounds)));
		nulls[c->sequence] = false;
	}
	if (get_field(object, "latency_ms", &v, &present))
	{
		values[c->latency_ms] = DirectFunctionCall1(numeric_int4,
													NumericGetDatum(integer_field("latency_ms", &v, int32_bounds)));
		nulls[c->latency_ms] = false;
	}
	if (get_field(object, "status", &v, &present))
	{
		if (v.type != jbvString)
			field_error("status", "a string");
		values[c->status] = PointerGetDatum(cstring_to_text_with_len(v.val.string.val, v.val.string.len));
		nulls[c->status] = false;
	}
	if (get_field(object, "payload", &v, &present))
	{
		values[c->payload] = object_field("payload", &v);
		nulls[c->payload] = false;
	}
	if (get_field(object, "metadata", &v, &present))
	{
		values[c->metadata] = object_field("metadata", &v);
		nulls[c->metadata] = false;
	}
	if (present != JsonContainerSize(object))
		unknown_field(object);

	for (i = 0; i < st->ndefaults; i++)
	{
		ColumnDefault *d = &st->defaults[i];

		values[d->column] = ExecEvalExpr(d->expr, GetPerTupleExprContext(st->estate),
										 &nulls[d->column]);
	}
}

/*
 * The triggers of the frames table that ingest() fires: all but the
 * extension's frames trigger.  NULL when there are none.
 */
static TriggerDesc *
other_triggers(TriggerDesc *all)
{
	TriggerDesc *others;
	int			i;

	if (all == NULL)
		return NULL;
	others = palloc0(sizeof(TriggerDesc));
	others->triggers = palloc(sizeof(Trigger) * all->numtriggers);
	for (i = 0; i < all->numtriggers; i++)
	{
		Trigger    *trigger = &all->triggers[i];
		int16		type = trigger->tgtype;
		FmgrInfo	function;

		fmgr_info(trigger->tgfoid, &function);
		if (function.fn_addr == datastreams_frames_trigger)
			continue;
		others->triggers[others->numtriggers++] = *trigger;

		/* what ExecB/AR/SInsertTriggers look at */
		if (TRIGGER_TYPE_MATCHES(type, TRIGGER_TYPE_ROW, TRIGGER_TYPE_BEFORE, TRIGGER_TYPE_INSERT))
			others->trig_insert_before_row = true;
		if (TRIGGER_TYPE_MATCHES(type, TRIGGER_TYPE_ROW, TRIGGER_TYPE_AFTER, TRIGGER_TYPE_INSERT))
			others->trig_insert_after_row = true;
		if (TRIGGER_TYPE_MATCHES(type, TRIGGER_TYPE_STATEMENT, TRIGGER_TYPE_BEFORE, TRIGGER_TYPE_INSERT))
			others->trig_insert_before_statement = true;
		if (TRIGGER_TYPE_MATCHES(type, TRIGGER_TYPE_STATEMENT, TRIGGER_TYPE_AFTER, TRIGGER_TYPE_INSERT))
			others->trig_insert_after_statement = true;
		if (TRIGGER_FOR_INSERT(type) && trigger->tgnewtable != NULL)
			others->trig_insert_new_table = true;
	}
	if (others->numtriggers == 0)
		return NULL;
	return others;
}

/*
 * The row-level security policies an INSERT by the caller would check,
 * ready for ExecWithCheckOptions().
 */
static void
init_row_security(ResultRelInfo *rri, RangeTblEntry *rte)
{
	Query	   *query = makeNode(Query);
	List	   *security_quals = NIL;
	List	   *checks = NIL;
	List	   *exprs = NIL;
	bool		has_row_security = false;
	bool		has_sublinks = false;
	ListCell   *lc;

	query->commandType = CMD_INSERT;
	query->rtable = list_make1(rte);
	query->resultRelation = 1;
	get_row_security_policies(query, rte, 1, &security_quals, &checks,
							  &has_row_security, &has_sublinks);
	if (checks == NIL)
		return;
	if (has_sublinks)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("ingest() cannot check a row-level security policy with a subquery"),
				 errdetail("A policy on datastreams.frames uses a subquery."),
				 errhint("Write the frames with INSERT, or express the policy without a subquery.")));
	foreach(lc, checks)
	{
		WithCheckOption *check = lfirst_node(WithCheckOption, lc);
		Expr	   *qual = expression_planner((Expr *) check->qual);

		exprs = lappend(exprs, ExecInitQual(make_ands_implicit(qual), NULL));
	}
	rri->ri_WithCheckOptions = checks;
	rri->ri_WithCheckOptionExprs = exprs;
}

static void
init_defaults(IngestState *st)
{
	TupleDesc	desc = RelationGetDescr(st->rel);
	const FrameColumns *c = st->columns;
	int			i;

	st->defaults = palloc(sizeof(ColumnDefault) * desc->natts);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Node	   *expr;

		if (att->attisdropped || att->attgenerated ||
			i == c->id || i == c->account_id || i == c->stream_id || i == c->sequence ||
			i == c->payload || i == c->latency_ms || i == c->status || i == c->metadata ||
			i == c->created_at)
			continue;
		expr = build_column_default(st->rel, i + 1);
		if (expr == NULL)
			continue;
		st->defaults[st->ndefaults].column = i;
		st->defaults[st->ndefaults].expr = ExecInitExpr(expression_planner((Expr *) expr), NULL);
		st->ndefaults++;
	}
}

/*
 * Open the frames table for insertion as the caller, as the executor would
 * for INSERT INTO datastreams.frames (stream_id, sequence, payload,
 * latency_ms, status, metadata).
 */
static void
ingest_begin(IngestState *st)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	const FrameColumns *c;
	TriggerDesc *triggers;
	int			inserted[6];
	int			i;

	st->rel = table_open(ds_relations()->frames, RowExclusiveLock);
	if (st->rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("ingest() needs datastreams.frames to be a plain table")));
	st->columns = c = ds_frame_columns(st->rel);
	inserted[0] = c->stream_id;
	inserted[1] = c->sequence;
	inserted[2] = c->payload;
	inserted[3] = c->latency_ms;
	inserted[4] = c->status;
	inserted[5] = c->metadata;

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(st->rel);
	rte->relkind = st->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_INSERT;
	for (i = 0; i < lengthof(inserted); i++)
		rte->insertedCols = bms_add_member(rte->insertedCols,
										   inserted[i] + 1 - FirstLowInvalidHeapAttributeNumber);
	ExecCheckRTPerms(list_make1(rte), true);

	st->estate = CreateExecutorState();
	st->cid = GetCurrentCommandId(true);
	st->estate->es_output_cid = st->cid;
	ExecInitRangeTable(st->estate, list_make1(rte));
	st->rri = makeNode(ResultRelInfo);
	ExecInitResultRelation(st->estate, st->rri, 1);
	CheckValidResultRel(st->rri, CMD_INSERT);
	ExecOpenIndices(st->rri, false);
	init_row_security(st->rri, rte);
	init_defaults(st);

	triggers = other_triggers(st->rri->ri_TrigDesc);
	st->rri->ri_TrigDesc = triggers;
	st->transition_capture = triggers ?
		MakeTransitionCaptureState(triggers, RelationGetRelid(st->rel), CMD_INSERT) : NULL;
	/* a trigger that sees each frame before it is written gets them one by one */
	st->capacity = (triggers && triggers->trig_insert_before_row) ? 1 : INGEST_BATCH_FRAMES;
	st->bistate = GetBulkInsertState();

	AfterTriggerBeginQuery();
	ExecBSInsertTriggers(st->estate, st->rri);
}

/* Write the buffered frames, then their index entries */
static void
ingest_flush(IngestState *st)
{
	ResultRelInfo *rri = st->rri;
	MemoryContext old;
	int			i;

	if (st->buffered == 0)
		return;
	/* table_multi_insert() may leak into the current context */
	old = MemoryContextSwitchTo(GetPerTupleMemoryContext(st->estate));
	table_multi_insert(st->rel, st->slots, st->buffered, st->cid, 0, st->bistate);
	MemoryContextSwitchTo(old);

	for (i = 0; i < st->buffered; i++)
	{
		List	   *recheck = NIL;

		current_element = st->first + i;
		if (rri->ri_NumIndices > 0)
			recheck = ExecInsertIndexTuples(rri, st->slots[i], st->estate, false, false, NULL, NIL);
		ExecARInsertTriggers(st->estate, rri, st->slots[i], recheck, st->transition_capture);
		list_free(recheck);
		ExecClearTuple(st->slots[i]);
		ResetPerTupleExprContext(st->estate);
	}
	st->inserted += st->buffered;
	st->buffered = 0;
	st->buffered_bytes = 0;
}

/*
 * One element: read, apply the rules and what an INSERT checks, buffer.
 * What it allocates lives until the next element, except the frame itself.
 */
static void
ingest_element(IngestState *st, JsonbContainer *array, int64 index, Datum stream_id)
{
	TupleTableSlot *slot;
	MemoryContext old;
	HeapTuple	tuple;

	if (st->buffered == 0)
		st->first = index;
	if (st->slots[st->buffered] == NULL)
		st->slots[st->buffered] = table_slot_create(st->rel, NULL);
	slot = st->slots[st->buffered];
	ExecClearTuple(slot);

	ResetPerTupleExprContext(st->estate);
	old = MemoryContextSwitchTo(GetPerTupleMemoryContext(st->estate));
	read_element(st, getIthJsonbValueFromContainer(array, (uint32) index), stream_id,
				 slot->tts_values, slot->tts_isnull);
	if (ds_apply_frame_rules(st->columns, slot->tts_values, slot->tts_isnull, false) ==
		FRAME_ALREADY_STORED)
	{
		MemoryContextSwitchTo(old);
		return;
	}
	ExecStoreVirtualTuple(slot);

	if (st->rri->ri_TrigDesc && st->rri->ri_TrigDesc->trig_insert_before_row &&
		!ExecBRInsertTriggers(st->estate, st->rri, slot))
	{
		MemoryContextSwitchTo(old);
		return;					/* a trigger skipped it */
	}
	if (st->rel->rd_att->constr && st->rel->rd_att->constr->has_generated_stored)
		ExecComputeStoredGenerated(st->rri, st->estate, slot, CMD_INSERT);
	if (st->rri->ri_WithCheckOptions != NIL)
		ExecWithCheckOptions(WCO_RLS_INSERT_CHECK, st->rri, slot, st->estate);
	if (st->rel->rd_att->constr)
		ExecConstraints(st->rri, slot, st->estate);
	MemoryContextSwitchTo(old);

	/* the frame outlives this element's memory until the batch is written */
	tuple = ExecFetchSlotHeapTuple(slot, true, NULL);
	st->buffered_bytes += tuple->t_len;
	st->buffered++;
	if (st->buffered >= st->capacity || st->buffered_bytes >= INGEST_BATCH_BYTES)
		ingest_flush(st);
}

static void
ingest_end(IngestState *st)
{
	int			i;

	ingest_flush(st);
	/* what fires from here on concerns the whole call */
	current_element = -1;
	ExecASInsertTriggers(st->estate, st->rri, st->transition_capture);
	AfterTriggerEndQuery(st->estate);

	FreeBulkInsertState(st->bistate);
	table_finish_bulk_insert(st->rel, 0);
	for (i = 0; i < INGEST_BATCH_FRAMES && st->slots[i] != NULL; i++)
		ExecDropSingleTupleTableSlot(st->slots[i]);
	/* the slots the triggers used */
	ExecResetTupleTable(st->estate->es_tupleTable, false);
	ExecCloseResultRelations(st->estate);
	ExecCloseRangeTableRelations(st->estate);
	FreeExecutorState(st->estate);
	table_close(st->rel, NoLock);
}

/*
 * Re-raise the error being handled.  Errors about an element say which
 * one; those about the whole call (cancellation, shutdown, resources) do
 * not.
 */
static void rethrow_naming_element(int64 element, MemoryContext context) pg_attribute_noreturn();

static void
rethrow_naming_element(int64 element, MemoryContext context)
{
	ErrorData  *edata;
	int			category;
	char	   *where;

	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
	if (element < 0 ||
		category == ERRCODE_OPERATOR_INTERVENTION ||
		category == ERRCODE_INSUFFICIENT_RESOURCES ||
		category == ERRCODE_SYSTEM_ERROR ||
		category == ERRCODE_INTERNAL_ERROR)
		PG_RE_THROW();

	FlushErrorState();
	where = psprintf("The error is in element " INT64_FORMAT " of the frames array (counting from 0).",
					 element);
	edata->detail = edata->detail ? psprintf("%s %s", where, edata->detail) : where;
	ReThrowError(edata);
}

PG_FUNCTION_INFO_V1(datastreams_ingest);
Datum
datastreams_ingest(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *stream_id;
	Jsonb	   *frames;
	char	   *account;
	CachedStream *stream;
	int64		count;
	IngestState *st;
	MemoryContext caller_context = CurrentMemoryContext;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("stream_id is required")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("frames must be a JSON array")));
	stream_id = PG_GETARG_UUID_P(0);
	frames = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_ARRAY(frames) || JB_ROOT_IS_SCALAR(frames))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("frames must be a JSON array")));

	/* One tenant check for the whole call: the stream must be the caller's */
	account = ds_require_account();
	stream = ds_lookup_stream(stream_id);
	if (stream == NULL || strcmp(stream->account_id, account) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("stream %s not found", ds_uuid_to_cstring(stream_id))));

	count = JB_ROOT_COUNT(frames);
	if (count == 0)
		PG_RETURN_INT64(0);

	init_bounds();
	st = palloc0(sizeof(IngestState));
	PG_TRY();
	{
		int64		i;

		current_element = -1;
		ingest_begin(st);
		for (i = 0; i < count; i++)
		{
			CHECK_FOR_INTERRUPTS();
			current_element = i;
			ingest_element(st, &frames->root, i, UUIDPGetDatum(stream_id));
		}
		ingest_end(st);
	}
	PG_CATCH();
	{
		int64		element = current_element;

		current_element = -1;
		rethrow_naming_element(element, caller_context);
	}
	PG_END_TRY();

	PG_RETURN_INT64(st->inserted);
}
