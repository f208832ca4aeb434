--
-- hardening_oracle: another account's stream and a missing id take the
-- same path (issue 13, item 5).  Their errors were already identical; the
-- time was not: the per-backend stream cache remembered streams but not
-- missing ids, so a rejected insert into another account's stream skipped
-- the index probe that a missing id paid every time, and the difference
-- told a tenant which ids exist; the read functions' queries fetched the
-- row of an existing stream before filtering it out.  Every entry point now
-- checks the stream through the cache first.  The work is counted here as scans of the
-- streams table (through any index, or sequential) within the
-- transaction: after a first lookup of each id, repeated calls scan it as
-- often for another account's stream as for a missing id.
--
CREATE ROLE regress_ho_b;
SELECT id FROM datastreams.create_account('regress_ho_a');
SELECT id FROM datastreams.create_account('regress_ho_b', 'regress_ho_b');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('00000000-0000-4000-8000-000000000da1', 'regress_ho_a', 'a one', 'A1', 'active'),
	('00000000-0000-4000-8000-000000000db1', 'regress_ho_b', 'b one', 'B1', 'active');

CREATE FUNCTION pg_temp.stream_scans() RETURNS bigint
LANGUAGE sql AS $$
	SELECT pg_stat_get_xact_numscans('datastreams.streams'::regclass)
		 + (SELECT sum(pg_stat_get_xact_numscans(i.indexrelid))
			  FROM pg_index AS i WHERE i.indrelid = 'datastreams.streams'::regclass)
$$;

-- Run stmt (with {id}) five times as regress_ho_b after a first time, in
-- subtransactions; the outcome and the scans of streams the five took.
CREATE FUNCTION pg_temp.probes(stmt text, id uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	before bigint;
	outcome text;
	i int;
BEGIN
	SET LOCAL ROLE regress_ho_b;
	FOR i IN 0 .. 5 LOOP
		IF i = 1 THEN
			before := pg_temp.stream_scans();
		END IF;
		BEGIN
			EXECUTE replace(stmt, '{id}', quote_literal(id));
			outcome := 'ok';
		EXCEPTION WHEN OTHERS THEN
			outcome := SQLSTATE;
		END;
	END LOOP;
	RETURN outcome || ', ' || (pg_temp.stream_scans() - before) || ' scans';
END
$$;

BEGIN;
SELECT p.probe,
	   pg_temp.probes(p.stmt, '00000000-0000-4000-8000-000000000da1') AS other_account,
	   pg_temp.probes(p.stmt, '00000000-0000-4000-8000-000000000dff') AS missing
  FROM (VALUES (1, 'INSERT frames', 'INSERT INTO datastreams.frames (stream_id, sequence) VALUES ({id}, 1)'),
			   (2, 'create_frame()', 'SELECT datastreams.create_frame({id}, 1)'),
			   (3, 'ingest()', $$SELECT datastreams.ingest({id}, '[{"sequence": 1}]')$$),
			   (4, 'update_stream()', $$SELECT datastreams.update_stream({id}, '{"name": "x"}')$$),
			   (5, 'get_stream()', 'SELECT datastreams.get_stream({id})'),
			   (6, 'latest_frame()', 'SELECT datastreams.latest_frame({id})'),
			   (7, 'list_frames()', 'SELECT datastreams.list_frames({id})'),
			   (8, 'frames_since()', 'SELECT datastreams.frames_since({id}, 0)')) AS p(ord, probe, stmt)
 ORDER BY p.ord;
ROLLBACK;

-- clean up
DELETE FROM datastreams.streams WHERE account_id LIKE 'regress_ho%';
DELETE FROM datastreams.accounts WHERE id LIKE 'regress_ho%';
DROP ROLE regress_ho_b;
