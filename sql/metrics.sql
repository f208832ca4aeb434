--
-- metrics: the shared memory counters (issue 5) and datastreams.metrics().
--
-- Needs the library in shared_preload_libraries (the test runner's cluster
-- has it).  The counters are server-wide, so the test starts with
-- reset_metrics() and looks only at the series of its own accounts
-- (regress_metrics_*), except where it checks deltas of the global ones.
-- Streams have fixed ids so that series can be shown as they are.
--

-- Writers announce their frames and fold the stream counters at commit
-- (the path without a publisher), so that stream_state is current when read.
SET datastreams.notify_via_worker = off;
CREATE SCHEMA regress_metrics;
GRANT USAGE ON SCHEMA regress_metrics TO PUBLIC;

-- The lines of metrics() containing a string (by default: this test's
-- accounts), in their order.
CREATE FUNCTION regress_metrics.lines(pattern text DEFAULT 'account_id="regress_metrics_')
RETURNS SETOF text LANGUAGE sql AS $$
	SELECT l.line FROM regexp_split_to_table(datastreams.metrics(), E'\n') WITH ORDINALITY AS l(line, n)
	 WHERE strpos(l.line, pattern) > 0 ORDER BY l.n
$$;
-- The value of one series, NULL when there is no such series.
CREATE FUNCTION regress_metrics.value(series text) RETURNS numeric LANGUAGE sql AS $$
	SELECT substring(l.line FROM ' ([^ ]+)$')::numeric
	  FROM regexp_split_to_table(datastreams.metrics(), E'\n') AS l(line)
	 WHERE substring(l.line FROM '^(.*) [^ ]+$') = series
$$;
-- The frame counters of a stream: 'ok=N late=N error=N' ('-' when absent).
CREATE FUNCTION regress_metrics.frames(account text, stream uuid) RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(t.s || '=' || coalesce(regress_metrics.value(format(
		'datastreams_frames_created_total{account_id="%s",stream_id="%s",status="%s"}',
		account, stream, t.s))::text, '-'), ' ' ORDER BY t.n)
	  FROM unnest(ARRAY['ok', 'late', 'error']) WITH ORDINALITY AS t(s, n)
$$;
-- Sample lines (not comments) of metrics(), and how many of them are not
-- labelled with the given account.
CREATE FUNCTION regress_metrics.samples(account text, OUT samples bigint, OUT foreign_samples bigint)
LANGUAGE sql AS $$
	SELECT count(*), count(*) FILTER (WHERE strpos(l.line, format('account_id="%s"', account)) = 0)
	  FROM regexp_split_to_table(datastreams.metrics(), E'\n') AS l(line)
	 WHERE l.line <> '' AND l.line NOT LIKE '#%'
$$;

SELECT datastreams.reset_metrics();
SHOW datastreams.max_tracked_streams;

CREATE ROLE regress_metrics_tenant_a;
CREATE ROLE regress_metrics_tenant_b;
CREATE ROLE regress_metrics_nobody;
CREATE ROLE regress_metrics_monitor BYPASSRLS;
SELECT id FROM datastreams.create_account('regress_metrics_a', 'regress_metrics_tenant_a');
SELECT id FROM datastreams.create_account('regress_metrics_b', 'regress_metrics_tenant_b');

--
-- Stream changes, per account, counted when they commit
--
INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms) VALUES
	('00000000-0000-4000-8000-000000000501', 'regress_metrics_a', 'counters', 'CNT', 'active', 100),
	('00000000-0000-4000-8000-000000000502', 'regress_metrics_a', 'histogram', 'HIST', 'active', 0),
	('00000000-0000-4000-8000-000000000503', 'regress_metrics_b', 'of b', 'B', 'active', 0);
SET datastreams.account_id = 'regress_metrics_a';
SELECT * FROM regress_metrics.lines('datastreams_streams_');

-- not before the commit, never after a rollback
BEGIN;
SELECT count(*) FROM datastreams.create_stream('rolled back', 'RB');
UPDATE datastreams.streams SET description = 'rolled back' WHERE id = '00000000-0000-4000-8000-000000000501';
SELECT * FROM regress_metrics.lines('datastreams_streams_');
ROLLBACK;
SELECT * FROM regress_metrics.lines('datastreams_streams_');

-- savepoints: what a rolled-back subtransaction did is not counted
BEGIN;
SELECT count(*) FROM datastreams.create_stream('kept', 'K1');
SAVEPOINT s1;
SELECT count(*) FROM datastreams.create_stream('dropped', 'D1');
UPDATE datastreams.streams SET description = 'dropped' WHERE id = '00000000-0000-4000-8000-000000000501';
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
SELECT count(*) FROM datastreams.create_stream('kept too', 'K2');
RELEASE SAVEPOINT s2;
UPDATE datastreams.streams SET description = 'changed' WHERE id = '00000000-0000-4000-8000-000000000501';
COMMIT;
SELECT * FROM regress_metrics.lines('datastreams_streams_');

--
-- Frames, per stream and status, counted when they commit
--
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES
	('00000000-0000-4000-8000-000000000501', 1, 10),
	('00000000-0000-4000-8000-000000000501', 2, 20),
	('00000000-0000-4000-8000-000000000501', 3, 150);	-- late: sla_ms is 100
SELECT regress_metrics.frames('regress_metrics_a', '00000000-0000-4000-8000-000000000501');

-- a rolled-back transaction counts nothing, and nothing shows before commit
BEGIN;
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES
	('00000000-0000-4000-8000-000000000501', 4, 5), ('00000000-0000-4000-8000-000000000501', 5, 500);
SELECT regress_metrics.frames('regress_metrics_a', '00000000-0000-4000-8000-000000000501');
ROLLBACK;
SELECT regress_metrics.frames('regress_metrics_a', '00000000-0000-4000-8000-000000000501');

-- nested savepoints: released ones join their parent, rolled-back ones
-- take their released children with them
BEGIN;
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES ('00000000-0000-4000-8000-000000000501', 4, 5);	-- ok
SAVEPOINT a;
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES ('00000000-0000-4000-8000-000000000501', 5, 500);	-- late, dropped
SAVEPOINT b;
INSERT INTO datastreams.frames (stream_id, sequence, status) VALUES ('00000000-0000-4000-8000-000000000501', 6, 'error');	-- dropped
RELEASE SAVEPOINT b;
ROLLBACK TO SAVEPOINT a;
INSERT INTO datastreams.frames (stream_id, sequence, status) VALUES ('00000000-0000-4000-8000-000000000501', 5, 'error');	-- error
SAVEPOINT c;
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES ('00000000-0000-4000-8000-000000000501', 6, 300);	-- late, dropped
ROLLBACK TO SAVEPOINT c;
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES ('00000000-0000-4000-8000-000000000501', 6, 7);	-- ok
RELEASE SAVEPOINT c;
COMMIT;
SELECT regress_metrics.frames('regress_metrics_a', '00000000-0000-4000-8000-000000000501');

-- a frame written only inside a released savepoint counts; one written
-- inside a savepoint released into a rolled-back one does not
BEGIN;
SAVEPOINT a;
SAVEPOINT b;
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES ('00000000-0000-4000-8000-000000000501', 7, 1);	-- dropped
RELEASE SAVEPOINT b;
ROLLBACK TO SAVEPOINT a;
SAVEPOINT d;
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES ('00000000-0000-4000-8000-000000000501', 7, 1);	-- ok
RELEASE SAVEPOINT d;
COMMIT;
SELECT regress_metrics.frames('regress_metrics_a', '00000000-0000-4000-8000-000000000501');

-- PL/pgSQL exception blocks are subtransactions: 100 blocks, every other
-- one fails after its insert
DO $$
BEGIN
	FOR i IN 1..100 LOOP
		BEGIN
			INSERT INTO datastreams.frames (stream_id, sequence, latency_ms)
			VALUES ('00000000-0000-4000-8000-000000000501', 100 + i, 1);
			IF i % 2 = 0 THEN
				RAISE EXCEPTION 'undo %', i USING ERRCODE = 'raise_exception';
			END IF;
		EXCEPTION WHEN raise_exception THEN
			NULL;
		END;
	END LOOP;
END
$$;
SELECT regress_metrics.frames('regress_metrics_a', '00000000-0000-4000-8000-000000000501');

-- a statement that fails half-way counts nothing
INSERT INTO datastreams.frames (stream_id, sequence) VALUES
	('00000000-0000-4000-8000-000000000501', 1000), ('00000000-0000-4000-8000-000000000501', 1000);
SELECT regress_metrics.frames('regress_metrics_a', '00000000-0000-4000-8000-000000000501');

-- ingest() and create_frame() go through the same trigger
SELECT datastreams.ingest('00000000-0000-4000-8000-000000000501',
	'[{"sequence": 1001, "latency_ms": 2}, {"sequence": 1002, "status": "error"}, {"sequence": 1003, "latency_ms": 101}]');
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000501', 1004);
SELECT regress_metrics.frames('regress_metrics_a', '00000000-0000-4000-8000-000000000501');

-- the counters agree with stream_state, which the trigger keeps per statement
SELECT frames_ok, frames_late, frames_error FROM datastreams.stream_state
 WHERE stream_id = '00000000-0000-4000-8000-000000000501';

--
-- Histogram: known latencies give exact cumulative buckets, sum and count
--
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms)
SELECT '00000000-0000-4000-8000-000000000502', t.n, t.l
  FROM unnest(ARRAY[0, 1, 2, 3, 5, 6, 10, 11, 25, 26, 50, 100, 101, 250, 500, 999,
                    1000, 1001, 2500, 5000, 10000, 30000, 60000, 60001]) WITH ORDINALITY AS t(l, n);
SELECT * FROM regress_metrics.lines('stream_id="00000000-0000-4000-8000-000000000502"')
 WHERE left(lines, 34) = 'datastreams_frame_latency_seconds_';
-- _sum is the sum of latency_ms in seconds, exactly
SELECT regress_metrics.value('datastreams_frame_latency_seconds_sum{account_id="regress_metrics_a",stream_id="00000000-0000-4000-8000-000000000502"}')
     = sum(latency_ms) / 1000.0 AS sum_matches
  FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-8000-000000000502';
-- the percentiles interpolate inside the bucket of the rank, as Prometheus'
-- histogram_quantile(): p50 rank 12 is the only frame of (50, 100] ms; p95
-- rank 22.8 is 80% into (30000, 60000]; p99 rank 23.76 is in +Inf, which
-- gives the highest finite bound
SELECT frames, latency_sum_ms, round(latency_p50_ms::numeric, 6) AS p50,
       round(latency_p95_ms::numeric, 6) AS p95, round(latency_p99_ms::numeric, 6) AS p99
  FROM datastreams.stream_latency() WHERE stream_id = '00000000-0000-4000-8000-000000000502';
-- a single bucket: 10 frames of 3 ms, all in (2, 5]
SET datastreams.account_id = 'regress_metrics_b';
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms)
SELECT '00000000-0000-4000-8000-000000000503', n, 3 FROM generate_series(1, 10) AS n;
SET datastreams.account_id = 'regress_metrics_a';
SELECT frames, latency_sum_ms, round(latency_p50_ms::numeric, 6) AS p50,
       round(latency_p95_ms::numeric, 6) AS p95, round(latency_p99_ms::numeric, 6) AS p99
  FROM datastreams.stream_latency() WHERE stream_id = '00000000-0000-4000-8000-000000000503';

-- every histogram in the output is cumulative, ends with +Inf = _count
WITH l AS (
	SELECT substring(line FROM 'stream_id="([^"]+)"') AS stream,
	       substring(line FROM 'le="([^"]+)"') AS le,
	       substring(line FROM '^datastreams_frame_latency_seconds_([a-z]+)') AS kind,
	       substring(line FROM ' ([^ ]+)$')::numeric AS value, n
	  FROM regexp_split_to_table(datastreams.metrics(), E'\n') WITH ORDINALITY AS t(line, n)
	 WHERE line LIKE 'datastreams_frame_latency_seconds_%'
), b AS (
	SELECT stream, le, value, value < lag(value) OVER (PARTITION BY stream ORDER BY n) AS decreasing,
	       row_number() OVER (PARTITION BY stream ORDER BY n DESC) AS from_end
	  FROM l WHERE kind = 'bucket'
)
SELECT count(DISTINCT stream) > 0 AS some_histograms,
       bool_and(NOT coalesce(decreasing, false)) AS cumulative,
       bool_and(le = '+Inf') FILTER (WHERE from_end = 1) AS last_is_inf,
       (SELECT bool_and(b.value = c.value) FROM b JOIN l AS c ON c.stream = b.stream AND c.kind = 'count'
         WHERE b.from_end = 1) AS inf_is_count
  FROM b;

--
-- Each tenant sees only its own account's series; administrators all
--
RESET datastreams.account_id;
SELECT count(*) > 0 AS admin_sees_b FROM regress_metrics.lines('account_id="regress_metrics_b"');
SELECT * FROM regress_metrics.lines('# TYPE');
SET ROLE regress_metrics_tenant_a;
SELECT * FROM regress_metrics.samples('regress_metrics_a');
SELECT * FROM regress_metrics.lines('# TYPE');
SELECT stream_id, frames FROM datastreams.stream_latency() ORDER BY stream_id;
SELECT * FROM regress_metrics.lines('datastreams_streams_');
RESET ROLE;
SET ROLE regress_metrics_tenant_b;
SELECT * FROM regress_metrics.samples('regress_metrics_b');
SELECT stream_id, frames FROM datastreams.stream_latency() ORDER BY stream_id;
RESET ROLE;
-- a role that bypasses row-level security reads every stream anyway: it
-- sees every series, like an administrator
SET ROLE regress_metrics_monitor;
SELECT count(*) > 0 AS sees_a FROM regress_metrics.lines('account_id="regress_metrics_a"');
SELECT count(*) > 0 AS sees_b FROM regress_metrics.lines('account_id="regress_metrics_b"');
SELECT count(*) AS families FROM regress_metrics.lines('# TYPE');
RESET ROLE;
-- a role without an account sees no series at all
SET ROLE regress_metrics_nobody;
SELECT * FROM regress_metrics.samples('none');
SELECT count(*) FROM datastreams.stream_latency();
RESET ROLE;

--
-- Label values are escaped: backslash, double quote, line feed
--
SELECT id FROM datastreams.create_account(E'regress_metrics_x\\ "q"\nz');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('00000000-0000-4000-8000-000000000504', E'regress_metrics_x\\ "q"\nz', 'odd', 'ODD', 'active');
SET datastreams.account_id = E'regress_metrics_x\\ "q"\nz';
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000504', 1);
RESET datastreams.account_id;
SELECT * FROM regress_metrics.lines('regress_metrics_x') WHERE lines NOT LIKE '%_bucket{%';

--
-- Skipped notifications are counted, at commit
--
SET datastreams.account_id = 'regress_metrics_a';
SELECT regress_metrics.value('datastreams_notifications_skipped_total') AS skipped_before \gset
SET datastreams.notify_queue_limit = 0;
INSERT INTO datastreams.frames (stream_id, sequence) VALUES
	('00000000-0000-4000-8000-000000000501', 2001), ('00000000-0000-4000-8000-000000000501', 2002);
BEGIN;
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000501', 2003);
ROLLBACK;
RESET datastreams.notify_queue_limit;
SELECT regress_metrics.value('datastreams_notifications_skipped_total') - :skipped_before AS skipped;

--
-- Stream changes in the server log (here at NOTICE level, to see them):
-- one line per committed change, when the transaction commits
--
SET datastreams.log_stream_changes = notice;
INSERT INTO datastreams.streams (id, account_id, name, symbol) VALUES
	('00000000-0000-4000-8000-000000000510', 'regress_metrics_a', 'logged', 'LOG');
BEGIN;
INSERT INTO datastreams.streams (id, account_id, name, symbol) VALUES
	('00000000-0000-4000-8000-000000000511', 'regress_metrics_a', 'rolled back', 'LOG');
ROLLBACK;
BEGIN;
INSERT INTO datastreams.streams (id, account_id, name, symbol) VALUES
	('00000000-0000-4000-8000-000000000512', 'regress_metrics_a', 'second', 'LOG');
SAVEPOINT s;
UPDATE datastreams.streams SET description = 'dropped' WHERE id = '00000000-0000-4000-8000-000000000510';
ROLLBACK TO SAVEPOINT s;
UPDATE datastreams.streams SET status = 'active' WHERE id = '00000000-0000-4000-8000-000000000510';
SELECT 'before commit' AS step;
COMMIT;
-- values that need it are quoted
SET datastreams.account_id = E'regress_metrics_x\\ "q"\nz';
INSERT INTO datastreams.streams (id, account_id, name, symbol) VALUES
	('00000000-0000-4000-8000-000000000513', E'regress_metrics_x\\ "q"\nz', 'quoted', 'LOG');
SET datastreams.account_id = 'regress_metrics_a';
SET datastreams.log_stream_changes = off;
INSERT INTO datastreams.streams (id, account_id, name, symbol) VALUES
	('00000000-0000-4000-8000-000000000514', 'regress_metrics_a', 'not logged', 'LOG');
RESET datastreams.log_stream_changes;
SHOW datastreams.log_stream_changes;
SHOW datastreams.log_rejected_frames;

--
-- reset_metrics(): administrators only
--
SET ROLE regress_metrics_tenant_a;
SELECT datastreams.reset_metrics();
RESET ROLE;
-- even when granted, the function checks the caller is an administrator
GRANT EXECUTE ON FUNCTION datastreams.reset_metrics() TO regress_metrics_tenant_a;
SET ROLE regress_metrics_tenant_a;
SELECT datastreams.reset_metrics();
RESET ROLE;
REVOKE EXECUTE ON FUNCTION datastreams.reset_metrics() FROM regress_metrics_tenant_a;
SELECT datastreams.reset_metrics();
SELECT count(*) AS series_left FROM regress_metrics.lines();
SELECT regress_metrics.value('datastreams_tracked_streams') AS tracked,
       regress_metrics.value('datastreams_notifications_skipped_total') AS skipped;
-- counting starts again from zero
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000501', 3001);
SELECT regress_metrics.frames('regress_metrics_a', '00000000-0000-4000-8000-000000000501');

-- the settings of the feature
SELECT name, setting, context FROM pg_settings
 WHERE name IN ('datastreams.max_tracked_streams', 'datastreams.log_stream_changes',
                'datastreams.log_rejected_frames', 'datastreams.health_frequency_tolerance',
                'datastreams.health_late_ratio_threshold')
 ORDER BY name;

--
-- Clean up
--
RESET datastreams.account_id;
DELETE FROM datastreams.streams WHERE account_id LIKE 'regress\_metrics\_%';
DELETE FROM datastreams.accounts WHERE id LIKE 'regress\_metrics\_%';
DROP ROLE regress_metrics_tenant_a;
DROP ROLE regress_metrics_tenant_b;
DROP ROLE regress_metrics_nobody;
DROP ROLE regress_metrics_monitor;
DROP SCHEMA regress_metrics CASCADE;
