--
-- stream_health: the SLA view (issue 5).  One row per stream the caller
-- can see; an active stream is unhealthy when no frame came within
-- frequency x datastreams.health_frequency_tolerance, or when its share of
-- late frames is above datastreams.health_late_ratio_threshold.
--
-- Frame times are controlled by giving created_at explicitly; the
-- percentiles come from the shared memory histograms (the test cluster
-- preloads the library), which the test resets first.
--

-- Writers announce their frames and fold the stream counters at commit
-- (the path without a publisher), so that stream_state is current when read.
SET datastreams.notify_via_worker = off;
CREATE ROLE regress_health_tenant_a;
CREATE ROLE regress_health_tenant_b;
CREATE ROLE regress_health_nobody;
SELECT id FROM datastreams.create_account('regress_health_a', 'regress_health_tenant_a');
SELECT id FROM datastreams.create_account('regress_health_b', 'regress_health_tenant_b');
SELECT datastreams.reset_metrics();

INSERT INTO datastreams.streams (id, account_id, name, symbol, status, frequency, sla_ms) VALUES
	('00000000-0000-4000-8000-000000000551', 'regress_health_a', 'silent', 'SIL', 'active', '1 second', 0),
	('00000000-0000-4000-8000-000000000552', 'regress_health_a', 'no frequency', 'NOF', 'active', NULL, 0),
	('00000000-0000-4000-8000-000000000553', 'regress_health_a', 'late', 'LATE', 'active', NULL, 100),
	('00000000-0000-4000-8000-000000000554', 'regress_health_a', 'paused', 'PAU', 'active', '1 second', 100),
	('00000000-0000-4000-8000-000000000555', 'regress_health_a', 'both', 'BOTH', 'active', '1 second', 100),
	('00000000-0000-4000-8000-000000000556', 'regress_health_a', 'new', 'NEW', 'active', '1 minute', 0),
	('00000000-0000-4000-8000-000000000557', 'regress_health_a', 'inactive', 'INA', 'inactive', '1 second', 0),
	('00000000-0000-4000-8000-000000000559', 'regress_health_a', 'never', 'NEV', 'active', '100 milliseconds', 0),
	('00000000-0000-4000-8000-000000000558', 'regress_health_b', 'of b', 'B', 'active', '1 second', 0);
SET datastreams.account_id = 'regress_health_a';

-- silent: its last frame is 10 seconds old, frequency 1 second
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms, created_at) VALUES
	('00000000-0000-4000-8000-000000000551', 1, 4, now() - interval '12 seconds'),
	('00000000-0000-4000-8000-000000000551', 2, 6, now() - interval '10 seconds');
-- no frequency: old frames, but no frequency to break
INSERT INTO datastreams.frames (stream_id, sequence, created_at) VALUES
	('00000000-0000-4000-8000-000000000552', 1, now() - interval '1 day');
-- late: 19 frames within the SLA and 1 late, exactly the threshold
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms)
SELECT '00000000-0000-4000-8000-000000000553', n, CASE WHEN n = 20 THEN 150 ELSE 10 END
  FROM generate_series(1, 20) AS n;
-- paused: late and silent, but not active
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms, created_at) VALUES
	('00000000-0000-4000-8000-000000000554', 1, 500, now() - interval '1 hour');
UPDATE datastreams.streams SET status = 'paused' WHERE id = '00000000-0000-4000-8000-000000000554';
-- both: late and silent
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms, created_at) VALUES
	('00000000-0000-4000-8000-000000000555', 1, 20, now() - interval '1 minute'),
	('00000000-0000-4000-8000-000000000555', 2, 200, now() - interval '1 minute');
-- inactive: silent, not active
INSERT INTO datastreams.frames (stream_id, sequence, created_at) VALUES
	('00000000-0000-4000-8000-000000000557', 1, now() - interval '1 hour');
SET datastreams.account_id = 'regress_health_b';
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES
	('00000000-0000-4000-8000-000000000558', 1, 1);
RESET datastreams.account_id;
-- never: no frame yet, so it is judged from its creation, over 0.3 s ago after this
SELECT pg_sleep(0.4);

--
-- As tenant a: its streams only
--
SET ROLE regress_health_tenant_a;
SELECT name, h.status, h.frequency, frames_total, frames_ok, frames_late, frames_error,
       round(late_ratio::numeric, 4) AS late_ratio, healthy, reason
  FROM datastreams.stream_health AS h JOIN datastreams.streams AS s ON s.id = h.stream_id
 ORDER BY stream_id;
-- the latest frame, and how long ago it came
SELECT name, last_sequence, last_frame_at = f.created_at AS last_frame_at_matches,
       seconds_since_last_frame >= 10 AS ten_seconds_or_more, seconds_since_last_frame < 3600 AS under_an_hour
  FROM datastreams.stream_health AS h
  JOIN datastreams.streams AS s ON s.id = h.stream_id
  LEFT JOIN datastreams.frames AS f ON f.stream_id = h.stream_id AND f.sequence = h.last_sequence
 ORDER BY h.stream_id;
-- latency: percentiles from the histogram, the mean from stream_state
SELECT name, round(latency_p50_ms::numeric, 3) AS p50, round(latency_p95_ms::numeric, 3) AS p95,
       round(latency_p99_ms::numeric, 3) AS p99, round(latency_mean_ms::numeric, 3) AS mean
  FROM datastreams.stream_health AS h JOIN datastreams.streams AS s ON s.id = h.stream_id
 ORDER BY stream_id;

-- one more late frame: 2 of 21 is above 0.05
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES
	('00000000-0000-4000-8000-000000000553', 21, 101);
SELECT healthy, reason FROM datastreams.stream_health
 WHERE stream_id = '00000000-0000-4000-8000-000000000553';

-- the settings move the limits (each session may choose its own)
SET datastreams.health_late_ratio_threshold = 0.1;
SET datastreams.health_frequency_tolerance = 20;
SELECT s.name, healthy, reason
  FROM datastreams.stream_health AS h JOIN datastreams.streams AS s ON s.id = h.stream_id
 ORDER BY stream_id;
SET datastreams.health_frequency_tolerance = 1000000;
SET datastreams.health_late_ratio_threshold = 0;
SELECT s.name, healthy, reason
  FROM datastreams.stream_health AS h JOIN datastreams.streams AS s ON s.id = h.stream_id
 ORDER BY stream_id;
RESET datastreams.health_frequency_tolerance;
RESET datastreams.health_late_ratio_threshold;
SET datastreams.health_frequency_tolerance = 0.5;
SET datastreams.health_late_ratio_threshold = 1.5;

-- reactivating a stream: judged again from its last frame
RESET ROLE;
SET datastreams.account_id = 'regress_health_a';
UPDATE datastreams.streams SET status = 'active' WHERE id = '00000000-0000-4000-8000-000000000554';
SET ROLE regress_health_tenant_a;
SELECT healthy, reason FROM datastreams.stream_health
 WHERE stream_id = '00000000-0000-4000-8000-000000000554';
RESET ROLE;

--
-- Other roles: tenant b sees its stream only, a role without an account
-- sees nothing, a superuser sees every stream
--
SET ROLE regress_health_tenant_b;
SELECT stream_id, account_id, frames_total, latency_p50_ms IS NOT NULL AS has_p50, healthy
  FROM datastreams.stream_health ORDER BY stream_id;
RESET ROLE;
SET ROLE regress_health_nobody;
SELECT count(*) FROM datastreams.stream_health;
RESET ROLE;
SELECT account_id, count(*) FROM datastreams.stream_health
 WHERE account_id LIKE 'regress\_health\_%' GROUP BY account_id ORDER BY account_id;

--
-- Cost: the view reads streams, stream_state and the shared memory, and
-- the frames table only through its (stream_id, sequence) index: the latest
-- frame, and the frames not yet folded into stream_state.  Never a scan of
-- the frames table, whose size it must not depend on.
--
CREATE FUNCTION pg_temp.plan_mentions(pattern text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	line text;
BEGIN
	FOR line IN EXPLAIN (COSTS OFF) SELECT * FROM datastreams.stream_health LOOP
		IF line ~ pattern THEN
			RETURN true;
		END IF;
	END LOOP;
	RETURN false;
END
$$;
SET enable_seqscan = off;	-- the test tables are small; the index is what scales
SELECT pg_temp.plan_mentions('Seq Scan on frames') AS scans_frames,
       pg_temp.plan_mentions('frames_stream_sequence_key on frames') AS frames_by_index,
       pg_temp.plan_mentions('\mstream_state\M') AS reads_stream_state,
       pg_temp.plan_mentions('stream_latency') AS reads_histograms;
RESET enable_seqscan;

--
-- Clean up
--
DELETE FROM datastreams.streams WHERE account_id LIKE 'regress\_health\_%';
DELETE FROM datastreams.accounts WHERE id LIKE 'regress\_health\_%';
DROP ROLE regress_health_tenant_a;
DROP ROLE regress_health_tenant_b;
DROP ROLE regress_health_nobody;
