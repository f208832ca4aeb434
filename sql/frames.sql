--
-- frames: the rules of the frames trigger (issue 2): stream and account
-- checks, sequences, payload, latency, status and SLA classification,
-- paused streams, immutability and the latest-frame pointer, through
-- direct INSERT, INSERT ... SELECT, COPY and the API.
--
-- Runs as the superuser acting for account regress_frames_a through the
-- datastreams.account_id setting, and as regress_frames_tenant, a role
-- bound to regress_frames_a and subject to row-level security.
-- regress_frames.err() runs a statement and shows its SQLSTATE, message,
-- DETAIL and HINT with generated UUIDs and nanosecond sequences masked.
--

-- Writers announce their frames and fold the stream counters at commit
-- (the path without a publisher), so that stream_state is current when read.
SET datastreams.notify_via_worker = off;
CREATE SCHEMA regress_frames;
CREATE FUNCTION regress_frames.err(cmd text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
	st text; msg text; det text; hnt text;
BEGIN
	EXECUTE cmd;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
	RETURN regexp_replace(regexp_replace(st || ': ' || msg
		|| CASE WHEN det <> '' THEN ' | DETAIL: ' || det ELSE '' END
		|| CASE WHEN hnt <> '' THEN ' | HINT: ' || hnt ELSE '' END,
		'(?!00000000-)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
		'<uuid>', 'g'), '[0-9]{16,}', '<ns>', 'g');
END
$f$;
GRANT USAGE ON SCHEMA regress_frames TO PUBLIC;

CREATE ROLE regress_frames_tenant;
SELECT id FROM datastreams.create_account('regress_frames_a', 'regress_frames_tenant');
SELECT id FROM datastreams.create_account('regress_frames_b');

INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms) VALUES
	('00000000-0000-4000-8000-000000000101', 'regress_frames_a', 'seq', 'SEQ', 'active', 0),
	('00000000-0000-4000-8000-000000000102', 'regress_frames_a', 'sla', 'SLA', 'active', 100),
	('00000000-0000-4000-8000-000000000103', 'regress_frames_a', 'paused', 'PAU', 'paused', 0),
	('00000000-0000-4000-8000-000000000104', 'regress_frames_b', 'of b', 'B', 'active', 0),
	('00000000-0000-4000-8000-000000000105', 'regress_frames_a', 'bulk', 'BULK', 'active', 0),
	('00000000-0000-4000-8000-000000000106', 'regress_frames_a', 'empty', 'EMPTY', 'active', 0),
	('00000000-0000-4000-8000-000000000107', 'regress_frames_a', 'inactive', 'INA', 'inactive', 0),
	('00000000-0000-4000-8000-000000000108', 'regress_frames_a', 'ns', 'NS', 'active', 0);
SET datastreams.account_id = 'regress_frames_a';

--
-- The stream must exist and belong to the frame's account
--
-- unknown stream: P0002, directly and through the API
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-0000000001ff', 1)$$);
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000001ff', 1)$$);
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES (NULL, 1)$$);
-- a superuser acting for account a is told the stream is someone else's (42501)
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000104', 1)$$);
-- ... and through the API it is simply not found (P0002)
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000104', 1)$$);
-- an account_id that is not the stream's: 42501
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, account_id, sequence) VALUES ('00000000-0000-4000-8000-000000000101', 'regress_frames_b', 1)$$);
-- the stream's own account may be given; left out, it is filled in
INSERT INTO datastreams.frames (stream_id, account_id, sequence)
VALUES ('00000000-0000-4000-8000-000000000101', 'regress_frames_a', 1)
RETURNING account_id, sequence, payload, latency_ms, status, metadata;
INSERT INTO datastreams.frames (stream_id, sequence)
VALUES ('00000000-0000-4000-8000-000000000101', 2)
RETURNING account_id, sequence;
-- a superuser acting for no account writes any stream, as the stream's account
RESET datastreams.account_id;
INSERT INTO datastreams.frames (stream_id, sequence)
VALUES ('00000000-0000-4000-8000-000000000104', 1)
RETURNING account_id, sequence;
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, account_id, sequence) VALUES ('00000000-0000-4000-8000-000000000104', 'regress_frames_a', 2)$$);
SET datastreams.account_id = 'regress_frames_a';

-- for a tenant subject to row-level security, another account's stream is
-- exactly as missing as a stream that does not exist (P0002)
SET ROLE regress_frames_tenant;
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000104', 5)$$) AS other_account,
       regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-0000000001ff', 5)$$) AS missing;
SELECT replace(regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000104', 5)$$), '000000000104', 'X')
     = replace(regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-0000000001ff', 5)$$), '0000000001ff', 'X')
       AS direct_same_error,
       replace(regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000104', 5)$$), '000000000104', 'X')
     = replace(regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000001ff', 5)$$), '0000000001ff', 'X')
       AS api_same_error;
-- the tenant's own stream works, directly and through the API
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000101', 3)
RETURNING account_id, sequence;
SELECT account_id, sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000101', 4);
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, account_id, sequence) VALUES ('00000000-0000-4000-8000-000000000101', 'regress_frames_b', 5)$$);
RESET ROLE;
-- nothing reached account b's stream beyond the superuser's frame
SELECT count(*) AS frames_of_b FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-8000-000000000104';

--
-- Sequences: positive, strictly increasing per stream
--
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000101', 0)$$);
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000101', -1)$$);
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000101', -42)$$);
-- a duplicate: 23505
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000101', 4)$$);
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000101', 4)$$);
-- lower than the latest: 23514, DETAIL gives the latest sequence
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000101', 3)$$);
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000101', 1)$$);
-- within one statement too
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000101', 10), ('00000000-0000-4000-8000-000000000101', 10)$$);
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000101', 12), ('00000000-0000-4000-8000-000000000101', 11)$$);
-- gaps are fine
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000101', 100);
SELECT sequence FROM datastreams.list_frames('00000000-0000-4000-8000-000000000101', 500);

-- NULL sequence: the current Unix time in nanoseconds, strictly above the latest
SELECT ((extract(epoch FROM clock_timestamp()) - 60) * 1000000000)::bigint AS ns_low \gset
SELECT sequence AS ns1 FROM datastreams.create_frame('00000000-0000-4000-8000-000000000108') \gset
INSERT INTO datastreams.frames (stream_id) VALUES ('00000000-0000-4000-8000-000000000108')
RETURNING sequence AS ns2 \gset
INSERT INTO datastreams.frames (stream_id, sequence)
SELECT '00000000-0000-4000-8000-000000000108', NULL FROM generate_series(1, 50);
SELECT ((extract(epoch FROM clock_timestamp()) + 60) * 1000000000)::bigint AS ns_high \gset
SELECT :ns1 BETWEEN :ns_low AND :ns_high AS ns1_is_now,
       :ns2 BETWEEN :ns_low AND :ns_high AS ns2_is_now,
       :ns2 > :ns1 AS ns2_above_ns1;
SELECT count(*) AS frames, count(DISTINCT sequence) AS distinct_sequences,
       bool_and(sequence BETWEEN :ns_low AND :ns_high) AS all_now,
       bool_and(sequence > prev) AS strictly_increasing_by_insertion
  FROM (SELECT sequence, lag(sequence) OVER (ORDER BY id) AS prev
          FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-8000-000000000108') AS f
 WHERE prev IS NOT NULL;
-- a latest sequence ahead of the clock: NULL takes the next one
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000108', 9000000000000000000);
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000108', NULL);
SELECT sequence FROM datastreams.push('datastreams/00000000-0000-4000-8000-000000000108', '{}');
-- at the largest bigint there is no next sequence: 22003, not a wrap-around
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000108', 9223372036854775807);
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id) VALUES ('00000000-0000-4000-8000-000000000108')$$);

--
-- payload: a JSON object, NULL -> {}, at most datastreams.max_payload_bytes
--
SELECT sequence, payload FROM datastreams.create_frame('00000000-0000-4000-8000-000000000101', 101, '{"price": 1850.5, "tags": ["a"], "nested": {"x": null}}');
INSERT INTO datastreams.frames (stream_id, sequence, payload) VALUES ('00000000-0000-4000-8000-000000000101', 102, NULL)
RETURNING payload;
SELECT sequence, payload FROM datastreams.create_frame('00000000-0000-4000-8000-000000000101', 103, NULL);
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000101', 104, '[1, 2]')$$);
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000101', 104, '42')$$);
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000101', 104, '"text"')$$);
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence, payload) VALUES ('00000000-0000-4000-8000-000000000101', 104, 'null')$$);
SHOW datastreams.max_payload_bytes;
SET datastreams.max_payload_bytes = 64;
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000101', 104, jsonb_build_object('blob', repeat('x', 100)))$$);
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence, payload) VALUES ('00000000-0000-4000-8000-000000000101', 104, jsonb_build_object('blob', repeat('x', 100)))$$);
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000101', 104, '{"small": 1}');
RESET datastreams.max_payload_bytes;
SELECT sequence, octet_length(payload::text) > 100000 AS big
  FROM datastreams.create_frame('00000000-0000-4000-8000-000000000101', 105, jsonb_build_object('blob', repeat('x', 200000)));
-- a tenant cannot raise the limit
SET ROLE regress_frames_tenant;
SELECT regress_frames.err($$SET datastreams.max_payload_bytes = 100000000$$);
RESET ROLE;

--
-- latency_ms: negative -> 0; status: trimmed, lower-cased, empty -> ok
--
SELECT latency_ms FROM datastreams.create_frame('00000000-0000-4000-8000-000000000101', 200, latency_ms => -5);
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES ('00000000-0000-4000-8000-000000000101', 201, NULL)
RETURNING latency_ms;
SELECT to_json(t.input) AS input, f.status
  FROM unnest(ARRAY[' OK ', 'Late', E'\tERROR\n', '', '   ', NULL]) WITH ORDINALITY AS t(input, n),
       LATERAL datastreams.create_frame('00000000-0000-4000-8000-000000000101', 300 + t.n, status => t.input) AS f
 ORDER BY t.n;
INSERT INTO datastreams.frames (stream_id, sequence, status) VALUES ('00000000-0000-4000-8000-000000000101', 310, NULL)
RETURNING status;
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000101', 311, status => 'pending')$$);
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence, status) VALUES ('00000000-0000-4000-8000-000000000101', 311, ' Failed ')$$);

-- frame metadata follows the stream metadata rules
SELECT metadata FROM datastreams.create_frame('00000000-0000-4000-8000-000000000101', 320, metadata => '{" Source ": " websocket ", "": "x"}');
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000101', 321, metadata => '{"n": 1}')$$);
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000101', 321, metadata => '[]')$$);
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000101', 321, metadata => '{"K": "1", "k": "2"}')$$);

--
-- SLA classification (stream sla_ms = 100): ok beyond the SLA becomes
-- late; error stays error; late stays late; sla_ms 0 is never late
--
SELECT t.latency, to_json(t.status) AS given, f.latency_ms, f.status AS stored
  FROM (VALUES (1, 50, 'ok'), (2, 100, 'ok'), (3, 101, 'ok'), (4, 5000, NULL),
               (5, 150, 'error'), (6, 150, 'late'), (7, 10, 'late'), (8, -20, 'ok'),
               (9, 250, ' OK ')) AS t(n, latency, status),
       LATERAL datastreams.create_frame('00000000-0000-4000-8000-000000000102', t.n, latency_ms => t.latency, status => t.status) AS f
 ORDER BY t.n;
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES ('00000000-0000-4000-8000-000000000102', 10, 101)
RETURNING status;
SELECT latency_ms, status FROM datastreams.create_frame('00000000-0000-4000-8000-000000000101', 400, latency_ms => 2147483647);
-- changing the stream's SLA takes effect for the next frame
UPDATE datastreams.streams SET sla_ms = 1000 WHERE id = '00000000-0000-4000-8000-000000000102';
SELECT status FROM datastreams.create_frame('00000000-0000-4000-8000-000000000102', 11, latency_ms => 500);
UPDATE datastreams.streams SET sla_ms = 0 WHERE id = '00000000-0000-4000-8000-000000000102';
SELECT status FROM datastreams.create_frame('00000000-0000-4000-8000-000000000102', 12, latency_ms => 500);
UPDATE datastreams.streams SET sla_ms = 100 WHERE id = '00000000-0000-4000-8000-000000000102';
SELECT status FROM datastreams.create_frame('00000000-0000-4000-8000-000000000102', 13, latency_ms => 500);

--
-- Paused streams reject frames with 55000 and store nothing; inactive
-- streams accept them
--
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000103', 1)$$);
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000103', 1)$$);
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id) SELECT '00000000-0000-4000-8000-000000000103' FROM generate_series(1, 3)$$);
SELECT regress_frames.err($$SELECT datastreams.push('datastreams/00000000-0000-4000-8000-000000000103', '{}')$$);
SELECT count(*) AS frames_of_paused FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-8000-000000000103';
SELECT datastreams.latest_frame('00000000-0000-4000-8000-000000000103') IS NULL AS no_latest;
-- a stream paused after it had frames rejects new ones; resumed, it accepts them
UPDATE datastreams.streams SET status = 'paused' WHERE id = '00000000-0000-4000-8000-000000000102';
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000102', 14)$$);
UPDATE datastreams.streams SET status = 'active' WHERE id = '00000000-0000-4000-8000-000000000102';
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000102', 14);
SELECT sequence, status FROM datastreams.create_frame('00000000-0000-4000-8000-000000000107', 1);
-- a pause inside a transaction applies at once, and is forgotten on rollback
BEGIN;
UPDATE datastreams.streams SET status = ' Paused ' WHERE id = '00000000-0000-4000-8000-000000000107';
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000107', 2)$$);
ROLLBACK;
SELECT sequence, status FROM datastreams.create_frame('00000000-0000-4000-8000-000000000107', 2);
-- a stream created in a rolled-back transaction does not linger
BEGIN;
INSERT INTO datastreams.streams (id, name, symbol, status)
VALUES ('00000000-0000-4000-8000-000000000109', 'fleeting', 'FL', 'active');
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000109', 1);
ROLLBACK;
SELECT regress_frames.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000109', 1)$$);

--
-- Frames are immutable: UPDATE fails (0A000 for administrators; tenants
-- have no UPDATE privilege at all: 42501)
--
SELECT regress_frames.err($$UPDATE datastreams.frames SET payload = '{"x": 1}' WHERE stream_id = '00000000-0000-4000-8000-000000000101' AND sequence = 1$$);
SELECT regress_frames.err($$UPDATE datastreams.frames SET sequence = sequence WHERE stream_id = '00000000-0000-4000-8000-000000000101'$$);
SET ROLE regress_frames_tenant;
SELECT regress_frames.err($$UPDATE datastreams.frames SET status = 'error' WHERE stream_id = '00000000-0000-4000-8000-000000000101'$$);
SELECT regress_frames.err($$DELETE FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-8000-000000000101'$$);
RESET ROLE;
SELECT payload FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-8000-000000000101' AND sequence = 1;

--
-- Frame ids are time-ordered (UUIDv7 layout), stream ids random (v4)
--
SELECT bool_and(substr(id::text, 15, 1) = '7') AS v7,
       bool_and(substr(id::text, 20, 1) IN ('8', '9', 'a', 'b')) AS rfc_variant,
       bool_and(to_timestamp(('x' || lpad(replace(substr(id::text, 1, 13), '-', ''), 16, '0'))::bit(64)::bigint / 1000.0)
                BETWEEN now() - interval '1 hour' AND clock_timestamp() + interval '1 minute') AS time_is_now,
       count(DISTINCT id) = count(*) AS unique_ids
  FROM datastreams.frames WHERE account_id = 'regress_frames_a';
SELECT substr(id::text, 15, 1) AS stream_id_version FROM datastreams.create_stream('v4', 'V4');
SELECT substr(datastreams.uuid_v7()::text, 15, 1) AS v7, substr(datastreams.uuid_v4()::text, 15, 1) AS v4,
       datastreams.uuid_v7() < datastreams.uuid_v7() AS v7_increases;

--
-- The latest-frame pointer
--
-- NULL while the stream has no frames
SELECT datastreams.latest_frame('00000000-0000-4000-8000-000000000106') IS NULL AS latest_is_null,
       (datastreams.latest_frame('00000000-0000-4000-8000-000000000106')).id IS NULL AS id_is_null;
SELECT count(*) AS state_rows FROM datastreams.stream_state WHERE stream_id = '00000000-0000-4000-8000-000000000106';
-- multi-row INSERT ... SELECT into two streams at once
INSERT INTO datastreams.frames (stream_id, sequence, payload)
SELECT s.id, g * 10, jsonb_build_object('g', g)
  FROM generate_series(1, 1000) AS g,
       (VALUES ('00000000-0000-4000-8000-000000000105'::uuid), ('00000000-0000-4000-8000-000000000106'::uuid)) AS s(id)
 ORDER BY g;
SELECT sequence, payload FROM datastreams.latest_frame('00000000-0000-4000-8000-000000000105');
SELECT sequence, payload FROM datastreams.latest_frame('00000000-0000-4000-8000-000000000106');
SELECT st.latest_sequence, st.latest_frame_id = f.id AS points_at_max
  FROM datastreams.stream_state AS st
  JOIN LATERAL (SELECT id FROM datastreams.frames AS f WHERE f.stream_id = st.stream_id ORDER BY sequence DESC LIMIT 1) AS f ON true
 WHERE st.stream_id IN ('00000000-0000-4000-8000-000000000105', '00000000-0000-4000-8000-000000000106')
 ORDER BY st.stream_id;
-- COPY (superuser, from stdin)
COPY datastreams.frames (stream_id, sequence, payload, latency_ms, status) FROM stdin;
00000000-0000-4000-8000-000000000105	10001	{"copied": 1}	-4	 OK 
00000000-0000-4000-8000-000000000105	10002	{"copied": 2}	7	\N
00000000-0000-4000-8000-000000000105	10003	{"copied": 3}	\N	error
\.
SELECT sequence, payload, latency_ms, status FROM datastreams.list_frames('00000000-0000-4000-8000-000000000105', 3);
SELECT sequence, payload FROM datastreams.latest_frame('00000000-0000-4000-8000-000000000105');
SELECT latest_sequence FROM datastreams.stream_state WHERE stream_id = '00000000-0000-4000-8000-000000000105';
-- COPY checks order too, and a failed COPY stores nothing
SELECT regress_frames.err($$COPY datastreams.frames (stream_id, sequence) FROM PROGRAM 'printf "00000000-0000-4000-8000-000000000105\t20000\n00000000-0000-4000-8000-000000000105\t10003\n"'$$);
SELECT sequence FROM datastreams.latest_frame('00000000-0000-4000-8000-000000000105');

-- savepoints: frames rolled back do not move the pointer, and their
-- sequences can be used again
BEGIN;
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000105', 20001);
SAVEPOINT s1;
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000105', 20002);
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000105', 20003);
SELECT sequence FROM datastreams.latest_frame('00000000-0000-4000-8000-000000000105');
ROLLBACK TO SAVEPOINT s1;
SELECT sequence FROM datastreams.latest_frame('00000000-0000-4000-8000-000000000105');
-- 20002 and 20003 are free again; 20001 is not
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000105', 20001)$$);
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000105', 20002);
SAVEPOINT s2;
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000105', 30000);
RELEASE SAVEPOINT s2;
SAVEPOINT s3;
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000105', 30001);
ROLLBACK TO SAVEPOINT s3;
SELECT regress_frames.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000105', 29999)$$);
COMMIT;
SELECT sequence FROM datastreams.latest_frame('00000000-0000-4000-8000-000000000105');
SELECT latest_sequence FROM datastreams.stream_state WHERE stream_id = '00000000-0000-4000-8000-000000000105';
SELECT sequence FROM datastreams.list_frames('00000000-0000-4000-8000-000000000105', 5);
-- a whole transaction rolled back leaves no trace either
BEGIN;
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000105', 40000);
ROLLBACK;
SELECT sequence FROM datastreams.latest_frame('00000000-0000-4000-8000-000000000105');
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000105', 30001);
-- a frame rejected inside an exception block (a subtransaction) does not
-- disturb the frames written before and after it
DO $$
BEGIN
	PERFORM datastreams.create_frame('00000000-0000-4000-8000-000000000105', 30002);
	BEGIN
		PERFORM datastreams.create_frame('00000000-0000-4000-8000-000000000105', 30003);
		PERFORM datastreams.create_frame('00000000-0000-4000-8000-000000000105', 1);
	EXCEPTION WHEN check_violation THEN
		RAISE NOTICE 'rejected: %', SQLERRM;
	END;
	PERFORM datastreams.create_frame('00000000-0000-4000-8000-000000000105', 30003);
END
$$;
SELECT sequence FROM datastreams.list_frames('00000000-0000-4000-8000-000000000105', 4);
SELECT sequence FROM datastreams.latest_frame('00000000-0000-4000-8000-000000000105');
-- an exception block run per row, in the middle of a statement, does not
-- lose what the statement counted before it
CREATE FUNCTION regress_frames.careful(i int) RETURNS int LANGUAGE plpgsql AS $f$
BEGIN
	BEGIN
		PERFORM 1 / 0;
	EXCEPTION WHEN division_by_zero THEN
		NULL;
	END;
	RETURN i;
END
$f$;
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('00000000-0000-4000-8000-000000000109', 'regress_frames_a', 'careful', 'CAREFUL', 'active');
INSERT INTO datastreams.frames (stream_id, sequence)
SELECT '00000000-0000-4000-8000-000000000109', g FROM generate_series(1, 3) g
 WHERE regress_frames.careful(g) > 0;
SELECT frames_ok + frames_late + frames_error AS counted, latest_sequence
  FROM datastreams.stream_state WHERE stream_id = '00000000-0000-4000-8000-000000000109';

--
-- Clean up
--
RESET datastreams.account_id;
DELETE FROM datastreams.streams WHERE account_id IN ('regress_frames_a', 'regress_frames_b');
DELETE FROM datastreams.accounts WHERE id IN ('regress_frames_a', 'regress_frames_b');
DROP ROLE regress_frames_tenant;
DROP SCHEMA regress_frames CASCADE;
