/*
 * setup.sql
 *	  Objects of the benchmark database, loaded by test/bench/run.sh as the
 *	  superuser after plpgsql_baseline.sql.
 *
 * Stream n (0 <= n) has the id 00000000-0000-4000-8000-<n as 12 digits>
 * in both datastreams.streams and baseline.streams, so pgbench scripts can
 * name a client's stream from its client id.  All streams are active with
 * an SLA of 150 ms; the scripts send latencies of 0..200 ms, so about a
 * quarter of the frames are classified late.
 */

\set ON_ERROR_STOP 1

CREATE ROLE bench_tenant LOGIN;
SELECT datastreams.create_account('bench', 'bench_tenant');

CREATE SCHEMA bench;
GRANT USAGE ON SCHEMA bench TO PUBLIC;

CREATE FUNCTION bench.stream_uuid(n integer) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT ('00000000-0000-4000-8000-' || lpad($1::text, 12, '0'))::uuid $$;

-- 0: shared by 8 clients; 1..8: one per client; 100: batches;
-- 1000: 10^3 frames; 1001: 10^6 frames; 1002: memory, smaller statement
INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms)
SELECT bench.stream_uuid(n), 'bench', 'bench ' || n, 'B' || n, 'active', 150
  FROM (SELECT generate_series(0, 8) UNION ALL VALUES (100), (1000), (1001), (1002)) AS g(n);
INSERT INTO baseline.streams
SELECT * FROM datastreams.streams;

-- The ceiling: the same table with no trigger, no foreign key, no RLS;
-- ids from the extension's uuid_v7() (as the frames trigger makes them),
-- sequences from a bigint sequence.
CREATE TABLE bench.frames_plain (LIKE datastreams.frames INCLUDING ALL);
CREATE SEQUENCE bench.frames_plain_sequence AS bigint;
ALTER TABLE bench.frames_plain
	ALTER COLUMN id SET DEFAULT datastreams.uuid_v7(),
	ALTER COLUMN sequence SET DEFAULT nextval('bench.frames_plain_sequence'),
	ALTER COLUMN account_id SET DEFAULT 'bench',
	ALTER COLUMN created_at SET DEFAULT now();	-- the frames trigger sets it
GRANT SELECT, INSERT ON bench.frames_plain TO PUBLIC;
GRANT USAGE ON SEQUENCE bench.frames_plain_sequence TO PUBLIC;

-- The ceiling plus the frames table's foreign key to its streams, to tell
-- PostgreSQL's own per-row costs (the RI check, its after-trigger queue)
-- from the extension's
CREATE TABLE bench.frames_plain_fk (LIKE bench.frames_plain INCLUDING ALL);
ALTER TABLE bench.frames_plain_fk
	ADD FOREIGN KEY (stream_id) REFERENCES datastreams.streams (id) ON DELETE CASCADE;
GRANT SELECT, INSERT ON bench.frames_plain_fk TO PUBLIC;

-- One 1000-frame JSON array for datastreams.ingest(), built once
CREATE TABLE bench.batch_json AS
SELECT jsonb_agg(jsonb_build_object('payload', jsonb_build_object('v', g), 'latency_ms', g % 200)
				 ORDER BY g) AS frames
  FROM generate_series(1, 1000) AS g;
GRANT SELECT ON bench.batch_json TO PUBLIC;
