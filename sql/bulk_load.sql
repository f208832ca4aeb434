--
-- bulk_load: COPY, multi-row INSERT and ingest() under row-level security
-- (issue 8).  RLS stays forced on frames: tenants load with INSERT or
-- ingest(); roles with BYPASSRLS (and administrators) may COPY, and the
-- frames trigger still applies every rule and attributes each frame to its
-- stream's account.
--

-- Writers announce their frames and fold the stream counters at commit
-- (the path without a publisher), so that stream_state is current when read.
SET datastreams.notify_via_worker = off;
CREATE SCHEMA regress_bulk;
CREATE FUNCTION regress_bulk.err(cmd text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
	st text; msg text; det text;
BEGIN
	EXECUTE cmd;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
	RETURN regexp_replace(st || ': ' || msg || CASE WHEN det <> '' THEN ' | DETAIL: ' || det ELSE '' END,
		'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g');
END
$f$;
GRANT USAGE ON SCHEMA regress_bulk TO PUBLIC;

CREATE ROLE regress_bulk_tenant;
CREATE ROLE regress_bulk_loader BYPASSRLS;
CREATE ROLE regress_bulk_loader_b BYPASSRLS;
GRANT pg_read_server_files TO regress_bulk_loader, regress_bulk_loader_b;
SELECT id, role FROM datastreams.create_account('regress_bulk_a', 'regress_bulk_tenant');
SELECT id, role FROM datastreams.create_account('regress_bulk_b', 'regress_bulk_loader_b');

SET datastreams.account_id = 'regress_bulk_a';
SELECT id AS stream_a FROM datastreams.create_stream('bulk a', 'blk-a', sla_ms => 100, status => 'active') \gset
SET datastreams.account_id = 'regress_bulk_b';
SELECT id AS stream_b FROM datastreams.create_stream('bulk b', 'blk-b', status => 'active') \gset
RESET datastreams.account_id;

-- The files go to the data directory, so that concurrent runs on other
-- servers do not share them.
SELECT current_setting('data_directory') || '/regress_datastreams_bulk.csv' AS bulk_csv,
       current_setting('data_directory') || '/regress_datastreams_bulk_dup.csv' AS bulk_dup_csv,
       current_setting('data_directory') || '/regress_datastreams_bulk_b.csv' AS bulk_b_csv \gset

-- 100000 frames of stream a, every third one over the SLA
COPY (SELECT :'stream_a', g, '{"p": ' || g || '}', (g % 3) * 100, CASE WHEN g % 1000 = 0 THEN 'error' END
        FROM generate_series(1, 100000) g)
  TO :'bulk_csv' (FORMAT csv);

--
-- A tenant (subject to RLS) cannot COPY into frames: PostgreSQL's own error,
-- and nothing is stored.
--
SET ROLE regress_bulk_tenant;
COPY datastreams.frames (stream_id, sequence, payload, latency_ms, status)
  FROM STDIN (FORMAT csv);
\.
RESET ROLE;
SELECT count(*) AS frames_of_a FROM datastreams.frames WHERE stream_id = :'stream_a';

-- ... but it can load with a multi-row INSERT and with ingest()
SET ROLE regress_bulk_tenant;
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms)
SELECT :'stream_a', g, 150 FROM generate_series(1, 3) g;
SELECT datastreams.ingest(:'stream_a', '[{"sequence": 4}, {"sequence": 5, "latency_ms": 500, "status": "error"}]');
SELECT sequence, status, latency_ms FROM datastreams.list_frames(:'stream_a') ORDER BY sequence;
RESET ROLE;
DELETE FROM datastreams.frames WHERE stream_id = :'stream_a';
DELETE FROM datastreams.stream_state WHERE stream_id = :'stream_a';

--
-- A BYPASSRLS role without an account context may COPY: 100000 rows stored,
-- every rule applied, each frame attributed to its stream's account.
--
SET ROLE regress_bulk_loader;
SELECT datastreams.current_account() IS NULL AS no_account_context;
COPY datastreams.frames (stream_id, sequence, payload, latency_ms, status)
  FROM :'bulk_csv' (FORMAT csv);
RESET ROLE;
SELECT count(*) AS frames,
       count(*) FILTER (WHERE status = 'late') AS late,
       count(*) FILTER (WHERE status = 'error') AS error,
       count(*) FILTER (WHERE status = 'ok') AS ok,
       bool_and(account_id = 'regress_bulk_a') AS all_of_account_a,
       bool_and(status = CASE WHEN sequence % 1000 = 0 THEN 'error'
                              WHEN latency_ms > 100 THEN 'late' ELSE 'ok' END) AS all_classified
  FROM datastreams.frames WHERE stream_id = :'stream_a';
SELECT st.latest_sequence, st.latest_frame_id = f.id AS pointer_is_latest_frame,
       st.frames_ok + st.frames_late + st.frames_error AS counted
  FROM datastreams.stream_state st
  JOIN datastreams.frames f ON f.stream_id = st.stream_id AND f.sequence = 100000
 WHERE st.stream_id = :'stream_a';

-- The rules still hold for COPY: one bad row rejects the whole COPY
COPY (SELECT :'stream_a', 100001 UNION ALL SELECT :'stream_a', 100001)
  TO :'bulk_dup_csv' (FORMAT csv);
SET ROLE regress_bulk_loader;
SELECT regress_bulk.err(format($$COPY datastreams.frames (stream_id, sequence) FROM %L (FORMAT csv)$$, :'bulk_dup_csv'));
RESET ROLE;
SELECT max(sequence) AS still_latest FROM datastreams.frames WHERE stream_id = :'stream_a';

--
-- A BYPASSRLS role that acts for an account (bound to b) cannot write into
-- another account's stream: the trigger refuses it (42501), not RLS.
--
SET ROLE regress_bulk_loader_b;
SELECT datastreams.current_account();
SELECT regress_bulk.err(format($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES (%L, 200000)$$, :'stream_a'));
INSERT INTO datastreams.frames (stream_id, sequence) VALUES (:'stream_b', 1);
RESET ROLE;
COPY (SELECT :'stream_a', 200000) TO :'bulk_b_csv' (FORMAT csv);
SET ROLE regress_bulk_loader_b;
SELECT regress_bulk.err(format($$COPY datastreams.frames (stream_id, sequence) FROM %L (FORMAT csv)$$, :'bulk_b_csv'));
RESET ROLE;
SELECT count(*) AS frames_of_a_at_200000 FROM datastreams.frames WHERE stream_id = :'stream_a' AND sequence = 200000;

--
-- ingest(): all or nothing, and the failing element is named in the DETAIL
--
SET ROLE regress_bulk_tenant;
SELECT regress_bulk.err(format($$SELECT datastreams.ingest(%L, '[{"sequence": 300001}, {"sequence": 300002}, {"sequence": 300002}, {"sequence": 300003}]')$$, :'stream_a'));
SELECT regress_bulk.err(format($$SELECT datastreams.ingest(%L, '[{"sequence": 300001}, {"sequence": -1}]')$$, :'stream_a'));
SELECT regress_bulk.err(format($$SELECT datastreams.ingest(%L, '[{"sequence": 300001}, {"payload": [1]}]')$$, :'stream_a'));
SELECT regress_bulk.err(format($$SELECT datastreams.ingest(%L, '[{"sequence": 300001}, 7]')$$, :'stream_a'));
SELECT regress_bulk.err(format($$SELECT datastreams.ingest(%L, '[{"sequence": 300001}, {"sequence": 300002, "colour": "red"}]')$$, :'stream_a'));
SELECT regress_bulk.err(format($$SELECT datastreams.ingest(%L, '[{"sequence": 300001}, {"sequence": 300002, "latency_ms": 1e12}]')$$, :'stream_a'));
SELECT regress_bulk.err(format($$SELECT datastreams.ingest(%L, '[{"sequence": 300001}, {"sequence": 300002, "latency_ms": 2.5}]')$$, :'stream_a'));
SELECT regress_bulk.err(format($$SELECT datastreams.ingest(%L, '[{"sequence": 300001}, {"sequence": 300002, "status": "bogus"}]')$$, :'stream_a'));
SELECT regress_bulk.err(format($$SELECT datastreams.ingest(%L, '{"sequence": 1}')$$, :'stream_a'));
SELECT regress_bulk.err(format($$SELECT datastreams.ingest(%L, NULL)$$, :'stream_a'));
SELECT regress_bulk.err($$SELECT datastreams.ingest(NULL, '[]')$$);
SELECT count(*) AS nothing_stored FROM datastreams.frames WHERE stream_id = :'stream_a' AND sequence > 300000;
-- another account's stream is not found, exactly like a missing one
SELECT regress_bulk.err(format($$SELECT datastreams.ingest(%L, '[{}]')$$, :'stream_b'));
SELECT regress_bulk.err($$SELECT datastreams.ingest('00000000-0000-4000-8000-000000000000', '[{}]')$$);
-- a good batch: defaults, classification and the latest pointer
SELECT datastreams.ingest(:'stream_a', '[{"sequence": 300001, "latency_ms": 101}, {"sequence": 300002, "payload": {"x": 1}, "metadata": {" Source ": " feed "}}, {}]');
SELECT sequence > 300002 AS generated_sequence_above, status, payload, metadata
  FROM datastreams.latest_frame(:'stream_a');
SELECT sequence, status, latency_ms, payload, metadata
  FROM datastreams.frames_since(:'stream_a', 300000) ORDER BY sequence LIMIT 2;
SELECT datastreams.ingest(:'stream_a', '[]') AS empty_batch;
RESET ROLE;

-- without a tenant context ingest() refuses (42501)
SET ROLE regress_bulk_loader;
SELECT regress_bulk.err(format($$SELECT datastreams.ingest(%L, '[{}]')$$, :'stream_a'));
RESET ROLE;

DROP SCHEMA regress_bulk CASCADE;
DELETE FROM datastreams.frames WHERE account_id IN ('regress_bulk_a', 'regress_bulk_b');
DELETE FROM datastreams.streams WHERE account_id IN ('regress_bulk_a', 'regress_bulk_b');
DELETE FROM datastreams.accounts WHERE id IN ('regress_bulk_a', 'regress_bulk_b');
DROP ROLE regress_bulk_tenant, regress_bulk_loader, regress_bulk_loader_b;
