--
-- prune_cost: one prune() step costs in proportion to the frames it
-- deletes, not to the frames its streams keep.
--
-- A stream keeps frames within its retention and has 10 expired ones
-- before them.  The buffers of frames and its indexes that one step reads
-- (pg_stat_get_xact_blocks_fetched, counted inside the transaction) must
-- not grow when the stream keeps 20 times more frames.  Each step is
-- rolled back, so both steps delete the same 10 frames.
--
-- The streams have no retention of their own: this session's
-- default_retention applies, which the database's prune worker does not
-- share, so it leaves them alone while the test runs.
--
SET datastreams.notify_via_worker = off;
SET datastreams.default_retention = '1 hour';
INSERT INTO datastreams.accounts (id) VALUES ('regress_prune_cost');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status)
VALUES ('00000000-0000-4000-8000-00000000c057', 'regress_prune_cost', 'cost', 'C', 'active');

-- buffers of frames and its indexes read so far in this transaction
CREATE FUNCTION pg_temp.frames_blocks() RETURNS bigint
LANGUAGE sql AS $$
	SELECT sum(pg_stat_get_xact_blocks_fetched(c.oid))::bigint
	  FROM pg_class AS c
	 WHERE c.oid = 'datastreams.frames'::regclass
	    OR c.oid IN (SELECT i.indexrelid FROM pg_index AS i
	                  WHERE i.indrelid = 'datastreams.frames'::regclass)
$$;

-- 10 expired frames, then 1000 kept
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT '00000000-0000-4000-8000-00000000c057', g,
       CASE WHEN g <= 10 THEN now() - interval '1 day' ELSE now() END
  FROM generate_series(1, 1010) AS g;
SELECT datastreams.fold_stream_state('00000000-0000-4000-8000-00000000c057') AS folded;
VACUUM ANALYZE datastreams.frames;

BEGIN;
SELECT pg_temp.frames_blocks() AS before \gset
SELECT datastreams.prune() AS pruned_keeping_1000;
SELECT pg_temp.frames_blocks() - :before AS blocks_keeping_1000 \gset
ROLLBACK;

-- 20000 more kept frames
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT '00000000-0000-4000-8000-00000000c057', g, now()
  FROM generate_series(1011, 21010) AS g;
SELECT datastreams.fold_stream_state('00000000-0000-4000-8000-00000000c057') AS folded;
VACUUM ANALYZE datastreams.frames;

BEGIN;
SELECT pg_temp.frames_blocks() AS before \gset
SELECT datastreams.prune() AS pruned_keeping_21000;
SELECT pg_temp.frames_blocks() - :before AS blocks_keeping_21000 \gset
ROLLBACK;

-- a handful of buffers either way (reading the kept frames takes hundreds)
SELECT :blocks_keeping_1000 < 100 AS few_buffers,
       :blocks_keeping_21000 <= :blocks_keeping_1000 + 10 AS flat_in_frames_kept;

DELETE FROM datastreams.streams WHERE account_id = 'regress_prune_cost';

-- The walk ends 64 frames past the last expired one: frames that expired
-- behind a few younger ones go, those behind more wait for them.
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('00000000-0000-4000-8000-00000000c058', 'regress_prune_cost', 'few', 'F', 'active'),
	('00000000-0000-4000-8000-00000000c059', 'regress_prune_cost', 'many', 'M', 'active');
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT s.id, g, CASE WHEN g <= s.younger THEN now() ELSE now() - interval '1 day' END
  FROM (VALUES ('00000000-0000-4000-8000-00000000c058'::uuid, 10),
               ('00000000-0000-4000-8000-00000000c059'::uuid, 100)) AS s(id, younger),
       generate_series(1, s.younger + 6) AS g;
SELECT datastreams.fold_stream_state(id) AS folded FROM datastreams.streams
 WHERE account_id = 'regress_prune_cost' ORDER BY name;
SELECT datastreams.prune() AS pruned;
SELECT s.name, count(*) AS kept, max(f.sequence) AS latest
  FROM datastreams.frames AS f JOIN datastreams.streams AS s ON s.id = f.stream_id
 WHERE s.account_id = 'regress_prune_cost' GROUP BY s.name ORDER BY s.name;

DELETE FROM datastreams.streams WHERE account_id = 'regress_prune_cost';
DELETE FROM datastreams.accounts WHERE id = 'regress_prune_cost';
RESET datastreams.default_retention;
