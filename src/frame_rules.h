/*-------------------------------------------------------------------------
 *
 * frame_rules.h
 *	  The rules every frame obeys, however it is written: the frames
 *	  trigger and ingest() both call ds_apply_frame_rules().
 *
 *-------------------------------------------------------------------------
 */
#ifndef DS_FRAME_RULES_H
#define DS_FRAME_RULES_H

#include "utils/relcache.h"

#include "datastreams.h"

/* Positions (from 0) of the frames table's columns in its tuple descriptor */
typedef struct FrameColumns
{
	Oid			relid;
	int			natts;
	int			id;
	int			account_id;
	int			stream_id;
	int			sequence;
	int			payload;
	int			latency_ms;
	int			status;
	int			metadata;
	int			created_at;
} FrameColumns;

typedef enum FrameVerdict
{
	FRAME_ACCEPTED,				/* write it */
	FRAME_ALREADY_STORED		/* a frame with its sequence is stored; skip it */
} FrameVerdict;

extern const FrameColumns *ds_frame_columns(Relation frames);

/*
 * Check one frame given as the frames table's column values and fill in
 * what datastreams sets (id, account, sequence, status, created_at...), in
 * place.  Raises the rule's error, or returns FRAME_ALREADY_STORED when the
 * statement asked to skip duplicates (INSERT ... ON CONFLICT DO NOTHING, or
 * skip_duplicates) and the stream already has the frame's sequence.
 */
extern FrameVerdict ds_apply_frame_rules(const FrameColumns *c, Datum *values,
										 bool *nulls, bool skip_duplicates);

/* Does the running INSERT say ON CONFLICT DO NOTHING? */
extern bool ds_statement_skips_conflicts(void);

extern void ds_frame_rules_init(void);

#endif							/* DS_FRAME_RULES_H */
