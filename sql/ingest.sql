--
-- ingest: the bulk path applies what an INSERT applies.
-- ingest() writes frames with the table AM's multi-insert instead of
-- through the frames trigger, so this checks that the INSERT privilege,
-- the caller's row-level security policies, constraints, defaults and
-- triggers a DBA put on datastreams.frames still hold, that the frame
-- rules and the stream counters are those of any other insert, and that
-- an error names its element, in the rules and when the batch is written.
--
\i test/sql/err.sql
SET datastreams.notify_via_worker = off;
CREATE ROLE regress_ingest_tenant;
SELECT id FROM datastreams.create_account('regress_ingest', 'regress_ingest_tenant');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms) VALUES
	('00000000-0000-4000-8000-000000000e01', 'regress_ingest', 'one', 'ONE', 'active', 100),
	('00000000-0000-4000-8000-000000000e02', 'regress_ingest', 'two', 'TWO', 'active', 0);

--
-- The rules and the counters: 2500 frames (three batches), every third
-- one over the SLA, every hundredth an error, metadata normalised
--
SET ROLE regress_ingest_tenant;
SELECT datastreams.ingest('00000000-0000-4000-8000-000000000e01',
	(SELECT jsonb_agg(jsonb_build_object('sequence', g, 'payload', jsonb_build_object('g', g),
	                                     'latency_ms', (g % 3) * 100,
	                                     'status', CASE WHEN g % 100 = 0 THEN ' Error ' END,
	                                     'metadata', jsonb_build_object(' Key ', ' value '))
	                  ORDER BY g)
	   FROM generate_series(1, 2500) AS g)) AS ingested;
SELECT count(*) AS frames,
       count(*) FILTER (WHERE status = 'late') AS late,
       count(*) FILTER (WHERE status = 'error') AS error,
       bool_and(account_id = 'regress_ingest') AS all_of_the_account,
       bool_and(payload = jsonb_build_object('g', sequence)) AS payloads,
       bool_and(metadata = '{"key": "value"}') AS metadata_normalised,
       count(DISTINCT created_at) AS created_at_values,
       count(DISTINCT id) AS ids
  FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-8000-000000000e01';
SELECT frames_total, frames_ok, frames_late, frames_error, last_sequence
  FROM datastreams.stream_health WHERE stream_id = '00000000-0000-4000-8000-000000000e01';
-- generated sequences continue above the latest
SELECT datastreams.ingest('00000000-0000-4000-8000-000000000e01', '[{}, {"payload": {"x": 1}}]') AS ingested;
SELECT count(*) AS above_2500 FROM datastreams.frames
 WHERE stream_id = '00000000-0000-4000-8000-000000000e01' AND sequence > 2500;
-- a rule broken in the third batch rolls back all of it
SELECT pg_temp.err($$SELECT datastreams.ingest('00000000-0000-4000-8000-000000000e02',
	(SELECT jsonb_agg(jsonb_build_object('sequence', CASE WHEN g = 2345 THEN 1 ELSE g END) ORDER BY g)
	   FROM generate_series(1, 3000) AS g))$$);
SELECT count(*) AS nothing_stored FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-8000-000000000e02';
RESET ROLE;

--
-- The INSERT privilege on frames is the caller's
--
REVOKE INSERT ON datastreams.frames FROM PUBLIC;
SET ROLE regress_ingest_tenant;
SELECT pg_temp.err($$SELECT datastreams.ingest('00000000-0000-4000-8000-000000000e02', '[{"sequence": 1}]')$$);
RESET ROLE;
GRANT INSERT ON datastreams.frames TO PUBLIC;

--
-- The caller's row-level security policies are checked on every frame
--
CREATE POLICY regress_ingest_no_errors ON datastreams.frames AS RESTRICTIVE FOR INSERT
	TO regress_ingest_tenant WITH CHECK (status <> 'error');
SET ROLE regress_ingest_tenant;
SELECT pg_temp.err($$SELECT datastreams.ingest('00000000-0000-4000-8000-000000000e02',
	'[{"sequence": 1}, {"sequence": 2, "status": "error"}]')$$);
SELECT datastreams.ingest('00000000-0000-4000-8000-000000000e02', '[{"sequence": 1}, {"sequence": 2}]') AS ingested;
RESET ROLE;
DROP POLICY regress_ingest_no_errors ON datastreams.frames;
-- a policy with a subquery cannot be checked this way: said so
CREATE POLICY regress_ingest_subquery ON datastreams.frames AS RESTRICTIVE FOR INSERT
	TO regress_ingest_tenant WITH CHECK (EXISTS (SELECT FROM datastreams.accounts AS a WHERE a.id = account_id));
SET ROLE regress_ingest_tenant;
SELECT pg_temp.err($$SELECT datastreams.ingest('00000000-0000-4000-8000-000000000e02', '[{"sequence": 3}]')$$);
RESET ROLE;
DROP POLICY regress_ingest_subquery ON datastreams.frames;

--
-- What a DBA added to frames: a column with a default, a constraint, a
-- unique index, triggers before and after each row and statement
--
CREATE TABLE regress_ingest_audit (seq bigint, stage text);
GRANT INSERT ON regress_ingest_audit TO regress_ingest_tenant;
CREATE FUNCTION regress_ingest_audit() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
	IF TG_LEVEL = 'STATEMENT' THEN
		INSERT INTO regress_ingest_audit VALUES (NULL, TG_WHEN || ' statement');
		RETURN NULL;
	END IF;
	INSERT INTO regress_ingest_audit VALUES (NEW.sequence, TG_WHEN || ' row');
	IF TG_WHEN = 'BEFORE' AND NEW.payload ? 'skip' THEN
		RETURN NULL;
	END IF;
	RETURN NEW;
END
$f$;
ALTER TABLE datastreams.frames ADD COLUMN regress_region text DEFAULT 'eu';
ALTER TABLE datastreams.frames ADD CONSTRAINT regress_small CHECK (latency_ms < 1000);
CREATE UNIQUE INDEX regress_ingest_unique ON datastreams.frames ((payload ->> 'u')) WHERE payload ? 'u';
CREATE TRIGGER regress_after_row AFTER INSERT ON datastreams.frames
	FOR EACH ROW EXECUTE FUNCTION regress_ingest_audit();
CREATE TRIGGER regress_before_statement BEFORE INSERT ON datastreams.frames
	FOR EACH STATEMENT EXECUTE FUNCTION regress_ingest_audit();
CREATE TRIGGER regress_after_statement AFTER INSERT ON datastreams.frames
	FOR EACH STATEMENT EXECUTE FUNCTION regress_ingest_audit();
SET ROLE regress_ingest_tenant;
SELECT datastreams.ingest('00000000-0000-4000-8000-000000000e02', '[{"sequence": 10}, {"sequence": 11}]') AS ingested;
SELECT sequence, regress_region FROM datastreams.frames
 WHERE stream_id = '00000000-0000-4000-8000-000000000e02' AND sequence >= 10 ORDER BY sequence;
SELECT pg_temp.err($$SELECT datastreams.ingest('00000000-0000-4000-8000-000000000e02',
	'[{"sequence": 12}, {"sequence": 13, "latency_ms": 5000}]')$$);
-- a unique violation found when the batch is written names its element too
SELECT pg_temp.err($$SELECT datastreams.ingest('00000000-0000-4000-8000-000000000e02',
	'[{"sequence": 12, "payload": {"u": "a"}}, {"sequence": 13}, {"sequence": 14, "payload": {"u": "a"}}]')$$);
RESET ROLE;
-- a trigger before each row: frames are written one by one, and it may skip one
CREATE TRIGGER regress_before_row BEFORE INSERT ON datastreams.frames
	FOR EACH ROW EXECUTE FUNCTION regress_ingest_audit();
TRUNCATE regress_ingest_audit;
SET ROLE regress_ingest_tenant;
SELECT datastreams.ingest('00000000-0000-4000-8000-000000000e02',
	'[{"sequence": 20}, {"sequence": 21, "payload": {"skip": true}}, {"sequence": 22}]') AS ingested;
RESET ROLE;
SELECT seq, stage FROM regress_ingest_audit ORDER BY seq NULLS FIRST, stage COLLATE "C";
SELECT sequence FROM datastreams.frames
 WHERE stream_id = '00000000-0000-4000-8000-000000000e02' AND sequence >= 20 ORDER BY sequence;

DROP TRIGGER regress_before_row ON datastreams.frames;
DROP TRIGGER regress_after_row ON datastreams.frames;
DROP TRIGGER regress_before_statement ON datastreams.frames;
DROP TRIGGER regress_after_statement ON datastreams.frames;
DROP INDEX datastreams.regress_ingest_unique;
ALTER TABLE datastreams.frames DROP CONSTRAINT regress_small;
ALTER TABLE datastreams.frames DROP COLUMN regress_region;
DROP FUNCTION regress_ingest_audit();
DROP TABLE regress_ingest_audit;
DELETE FROM datastreams.streams WHERE account_id = 'regress_ingest';
DELETE FROM datastreams.accounts WHERE id = 'regress_ingest';
DROP ROLE regress_ingest_tenant;
