--
-- retention: streams.retention, datastreams.default_retention, prune() and
-- prune_all()
--
-- Frames are inserted by the superuser with explicit created_at values, so
-- "old" frames exist without waiting.
--

-- Writers announce their frames and fold the stream counters at commit
-- (the path without a publisher), so that stream_state is current when read.
SET datastreams.notify_via_worker = off;

CREATE ROLE regress_retention_tenant;
CREATE ROLE regress_retention_other;
CREATE ROLE regress_retention_admin;
DO $$
BEGIN
	EXECUTE format('GRANT %I TO regress_retention_admin',
				   (SELECT extowner::regrole FROM pg_extension WHERE extname = 'datastreams'));
END
$$;
-- SQLSTATE and message of a statement, stream ids masked
CREATE FUNCTION pg_temp.try(sql text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM,
		'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g');
END
$$;
SELECT id FROM datastreams.create_account('regress_retention', 'regress_retention_tenant');
SELECT id FROM datastreams.create_account('regress_retention_other', 'regress_retention_other');

-- The settings and who may change them (datastreams.database and
-- datastreams.prune_role exist only when the library is preloaded)
SELECT name, vartype, context, coalesce(unit, '') AS unit, boot_val
  FROM pg_settings
 WHERE name IN ('datastreams.default_retention', 'datastreams.prune_batch_size',
                'datastreams.prune_interval')
 ORDER BY name COLLATE "C";
SET datastreams.default_retention = 'bogus';
SET datastreams.default_retention = '-1 day';
SET datastreams.default_retention = '1 mon 2 days';
SHOW datastreams.default_retention;
SET datastreams.default_retention = 'P1D';
SET datastreams.default_retention = '0';
SET datastreams.default_retention = '';
SET datastreams.prune_batch_size = 0;

--------------------------------------------------------------------------
-- The retention column, through the API and directly
--------------------------------------------------------------------------
SET ROLE regress_retention_tenant;
SET datastreams.default_retention = '1 day';	-- superusers only
SET datastreams.prune_batch_size = 5;		-- superusers only
SELECT name, retention FROM datastreams.create_stream('week', 'W', retention => '7 days');
SELECT name, retention FROM datastreams.create_stream('default', 'D');
SELECT name, retention FROM datastreams.create_stream('positional', 'P', '', NULL, 0, 'active', '{}', '2 hours');
SELECT name, retention FROM datastreams.create_stream('zero', 'Z', retention => '0');
SELECT name, retention FROM datastreams.create_stream('negative', 'N', retention => '-1 day');
SELECT name, retention FROM datastreams.create_stream('mixed', 'M', retention => '1 day -25 hours');
SELECT id AS week FROM datastreams.streams WHERE name = 'week' \gset
SELECT retention FROM datastreams.update_stream(:'week', '{"retention": "1 day"}');
SELECT retention FROM datastreams.update_stream(:'week', '{"name": "week2"}');
SELECT retention FROM datastreams.update_stream(:'week', '{"retention": null}');
SELECT retention FROM datastreams.update_stream(:'week', '{"retention": "P2W"}');
SELECT pg_temp.try(format($$SELECT datastreams.update_stream(%L, '{"retention": 86400}')$$, :'week'));
SELECT pg_temp.try(format($$SELECT datastreams.update_stream(%L, '{"retention": "0 seconds"}')$$, :'week'));
SELECT pg_temp.try(format($$SELECT datastreams.update_stream(%L, '{"retention": "soon"}')$$, :'week'));
SELECT retention FROM datastreams.update_stream(:'week', '{"retention_days": 3}');
INSERT INTO datastreams.streams (name, symbol, retention) VALUES ('direct', 'X', '-5 minutes');
SELECT pg_temp.try($$INSERT INTO datastreams.streams (name, symbol, retention) VALUES ('direct', 'X', '0')$$);
UPDATE datastreams.streams SET retention = '0' WHERE id = :'week';
UPDATE datastreams.streams SET retention = '3 hours' WHERE id = :'week' RETURNING name, retention;

-- Only administrators prune
SELECT has_function_privilege('datastreams.prune()', 'EXECUTE') AS tenant_may_prune;
SELECT datastreams.prune();
CALL datastreams.prune_all();
RESET ROLE;
DELETE FROM datastreams.streams WHERE account_id = 'regress_retention';

--------------------------------------------------------------------------
-- What prune() removes
--------------------------------------------------------------------------
SET ROLE regress_retention_tenant;
-- hour: retention 1 hour; old frames, recent frames, an old frame after
-- recent ones and an old latest frame
SELECT id AS hour FROM datastreams.create_stream('hour', 'H', retention => '1 hour') \gset
-- inherit: no retention of its own (datastreams.default_retention)
SELECT id AS inherit FROM datastreams.create_stream('inherit', 'I') \gset
-- day: retention 1 day, frames two hours old
SELECT id AS day FROM datastreams.create_stream('day', 'DY', retention => '1 day') \gset
-- lonely: one old frame, which is its latest
SELECT id AS lonely FROM datastreams.create_stream('lonely', 'L', retention => '1 minute') \gset
-- empty: no frames at all
SELECT id AS empty FROM datastreams.create_stream('empty', 'E', retention => '1 minute') \gset
-- eternal: a retention reaching past the oldest representable timestamp
SELECT id AS eternal FROM datastreams.create_stream('eternal', 'ET', retention => '100000 years') \gset
RESET ROLE;
SET ROLE regress_retention_other;
-- another account's stream is pruned all the same
SELECT id AS other FROM datastreams.create_stream('other', 'O', retention => '1 hour') \gset
RESET ROLE;

INSERT INTO datastreams.frames (stream_id, sequence, created_at, latency_ms)
SELECT :'hour', g,
       CASE WHEN g <= 5 OR g >= 9 THEN now() - interval '2 hours' ELSE now() END, g
  FROM generate_series(1, 10) AS g;
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT :'inherit', g, now() - interval '3 days' FROM generate_series(1, 4) AS g;
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT :'day', g, now() - interval '2 hours' FROM generate_series(1, 3) AS g;
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
VALUES (:'lonely', 1, now() - interval '1 year');
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT :'eternal', g, '2000-01-01' FROM generate_series(1, 3) AS g;
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT :'other', g, now() - interval '2 hours' FROM generate_series(1, 3) AS g;

CREATE TEMP TABLE state_before AS SELECT * FROM datastreams.stream_state;

-- default_retention empty: only streams with a retention of their own
SELECT datastreams.prune() AS pruned;
SELECT s.name, array_agg(f.sequence ORDER BY f.sequence) AS sequences
  FROM datastreams.streams AS s LEFT JOIN datastreams.frames AS f ON f.stream_id = s.id
 WHERE s.account_id LIKE 'regress_retention%'
 GROUP BY s.name ORDER BY s.name COLLATE "C";
SELECT datastreams.prune() AS pruned_again;

-- the latest-frame pointer, latest_frame() and the counters are untouched
SELECT count(*) AS changed_state_rows
  FROM datastreams.stream_state AS st
  JOIN state_before AS b USING (stream_id)
 WHERE (st.*)::text <> (b.*)::text;
SET ROLE regress_retention_tenant;
SELECT sequence, latency_ms FROM datastreams.latest_frame(:'hour');
SELECT sequence FROM datastreams.latest_frame(:'lonely');
SELECT frames_ok, latency_ms_total FROM datastreams.stream_state WHERE stream_id = :'hour';
-- ordering still holds against the kept latest frame
SELECT pg_temp.try(format('INSERT INTO datastreams.frames (stream_id, sequence) VALUES (%L, 7)', :'hour'));
SELECT pg_temp.try(format('INSERT INTO datastreams.frames (stream_id, sequence) VALUES (%L, 10)', :'hour'));
INSERT INTO datastreams.frames (stream_id, sequence) VALUES (:'hour', 11) RETURNING sequence;
SELECT count(*) AS hour_frames FROM datastreams.list_frames(:'hour');
RESET ROLE;

-- default_retention applies to streams without a retention of their own;
-- hour's old frame 10 is no longer its latest either
SET datastreams.default_retention = '1 day';
SELECT datastreams.prune() AS pruned_by_default;
SELECT array_agg(sequence ORDER BY sequence) AS inherit_sequences
  FROM datastreams.frames WHERE stream_id = :'inherit';
SET datastreams.default_retention = '0';
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
VALUES (:'inherit', 5, now() - interval '3 days'), (:'inherit', 6, now() - interval '3 days');
SELECT datastreams.prune() AS pruned_with_zero_default;
RESET datastreams.default_retention;

--------------------------------------------------------------------------
-- Bounded steps: prune_batch_size, prune_all()
--------------------------------------------------------------------------
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT :'hour', g, now() - interval '2 hours' FROM generate_series(12, 19) AS g;
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT :'other', g, now() - interval '2 hours' FROM generate_series(4, 6) AS g;
-- hour: 12..18 qualify (19 is the latest); other: 3..5 qualify
SET datastreams.prune_batch_size = 3;
SELECT datastreams.prune() AS step1;
SELECT datastreams.prune() AS step2;
SELECT datastreams.prune() AS step3;
SELECT datastreams.prune() AS step4;
SELECT datastreams.prune() AS step5;
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT :'hour', g, now() - interval '2 hours' FROM generate_series(20, 30) AS g;
CALL datastreams.prune_all();
SELECT datastreams.prune() AS after_prune_all;
SELECT array_agg(sequence ORDER BY sequence) AS hour_sequences
  FROM datastreams.frames WHERE stream_id = :'hour';
RESET datastreams.prune_batch_size;

-- An administrator who is not a superuser prunes every account's streams,
-- even though row-level security is forced on the tables.
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT :'other', g, now() - interval '2 hours' FROM generate_series(7, 9) AS g;
SET ROLE regress_retention_admin;
SELECT count(*) AS admin_sees_frames FROM datastreams.frames WHERE stream_id = :'other';
SELECT datastreams.prune() AS admin_pruned;
RESET ROLE;
SELECT array_agg(sequence ORDER BY sequence) AS other_sequences
  FROM datastreams.frames WHERE stream_id = :'other';

-- prune_all() commits between steps, so not inside a transaction block
BEGIN;
CALL datastreams.prune_all();
ROLLBACK;

-- clean up
DELETE FROM datastreams.streams WHERE account_id LIKE 'regress_retention%';
DELETE FROM datastreams.accounts WHERE id LIKE 'regress_retention%';
DROP ROLE regress_retention_tenant;
DROP ROLE regress_retention_other;
DROP ROLE regress_retention_admin;
