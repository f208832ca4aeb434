--
-- write_path: what 1.2 changed on the ingest path.  Retried writes
-- (INSERT ... ON CONFLICT DO NOTHING skips stored frames, counted and
-- announced once); created_at is the service's; streams and frames stay
-- together without a foreign key; past datastreams.max_stream_locks a
-- transaction locks the frames table; stream lock keys reveal nothing of
-- stream ids.
--
\i test/sql/err.sql
CREATE ROLE regress_wp_tenant;
SELECT id FROM datastreams.create_account('regress_wp', 'regress_wp_tenant');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('00000000-0000-4000-8000-000000000c01', 'regress_wp', 'one', 'ONE', 'active'),
	('00000000-0000-4000-8000-000000000c02', 'regress_wp', 'two', 'TWO', 'active'),
	('00000000-0000-4000-8000-000000000c03', 'regress_wp', 'three', 'THREE', 'active'),
	('00000000-0000-4000-8000-000000000c04', 'regress_wp', 'four', 'FOUR', 'active');
SET ROLE regress_wp_tenant;

--
-- Retried writes
--
INSERT INTO datastreams.frames (stream_id, sequence, payload) VALUES
	('00000000-0000-4000-8000-000000000c01', 1, '{"v": 1}'), ('00000000-0000-4000-8000-000000000c01', 2, '{"v": 2}');
-- the same frames again: 23505 without ON CONFLICT
SELECT pg_temp.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000c01', 2)$$);
-- with ON CONFLICT DO NOTHING the stored ones are skipped, the new one written
INSERT INTO datastreams.frames (stream_id, sequence, payload) VALUES
	('00000000-0000-4000-8000-000000000c01', 1, '{"v": 1}'),
	('00000000-0000-4000-8000-000000000c01', 2, '{"v": 2}'),
	('00000000-0000-4000-8000-000000000c01', 3, '{"v": 3}')
ON CONFLICT (stream_id, sequence) DO NOTHING
RETURNING sequence, payload;
-- a lower sequence that is not stored is still out of order
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000c02', 5);
SELECT pg_temp.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000c02', 4) ON CONFLICT DO NOTHING$$);
-- frames are immutable: DO UPDATE on a stored frame is refused (for a
-- superuser too; tenants may not update frames at all)
SELECT pg_temp.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000c01', 3) ON CONFLICT (stream_id, sequence) DO UPDATE SET payload = '{"changed": true}'$$);
RESET ROLE;
SELECT pg_temp.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000c01', 3) ON CONFLICT (stream_id, sequence) DO UPDATE SET payload = '{"changed": true}'$$);
SET ROLE regress_wp_tenant;
-- skipped frames are counted once
SELECT frames_total, last_sequence FROM datastreams.stream_health
 WHERE stream_id = '00000000-0000-4000-8000-000000000c01';
-- inside a function's exception block, the statement stack stays right
DO $$
BEGIN
	BEGIN
		INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000c01', 3);
	EXCEPTION WHEN unique_violation THEN
		RAISE NOTICE 'caught %', SQLSTATE;
	END;
	INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000c01', 3)
	ON CONFLICT DO NOTHING;
	RAISE NOTICE 'skipped';
END
$$;

--
-- created_at is the service's clock
--
SELECT pg_temp.err($$INSERT INTO datastreams.frames (stream_id, sequence, created_at) VALUES ('00000000-0000-4000-8000-000000000c03', 1, '2000-01-01')$$);
SELECT pg_temp.err($$INSERT INTO datastreams.frames (stream_id, sequence, created_at) VALUES ('00000000-0000-4000-8000-000000000c03', 1, 'infinity')$$);
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000c03', 1)
RETURNING created_at = transaction_timestamp() AS stamped_now;
RESET ROLE;
-- roles that bypass row-level security may give it (bulk loads, restores), finite
SELECT pg_temp.err($$INSERT INTO datastreams.frames (stream_id, sequence, created_at) VALUES ('00000000-0000-4000-8000-000000000c03', 2, 'infinity')$$);
INSERT INTO datastreams.frames (stream_id, sequence, created_at) VALUES ('00000000-0000-4000-8000-000000000c03', 2, '2000-01-01')
RETURNING created_at;

--
-- Stream locks: keyed by a hash, so pg_locks shows no part of the id
--
BEGIN;
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000c04', 1);
SELECT count(*) AS stream_locks,
       count(*) FILTER (WHERE lpad(to_hex(objid::bigint), 8, '0') IN ('00000000', '00000c04')
                         OR lpad(to_hex(classid::bigint), 8, '0') IN ('00000000', '00000c04')) AS revealing
  FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
COMMIT;
-- past max_stream_locks streams, the frames table instead (one lock)
SET datastreams.max_stream_locks = 2;
BEGIN;
INSERT INTO datastreams.frames (stream_id)
SELECT id FROM datastreams.streams WHERE account_id = 'regress_wp' ORDER BY id;
SELECT count(*) FILTER (WHERE locktype = 'advisory') AS stream_locks,
       string_agg(mode, ',') FILTER (WHERE locktype = 'relation' AND relation = 'datastreams.frames'::regclass) AS frames_table
  FROM pg_locks WHERE pid = pg_backend_pid();
COMMIT;
RESET datastreams.max_stream_locks;
SET ROLE regress_wp_tenant;
SELECT pg_temp.err('SET datastreams.max_stream_locks = 1');
RESET ROLE;

--
-- A stream takes its frames with it (no foreign key does it any more)
--
SELECT count(*) AS frames_before FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-8000-000000000c02';
DELETE FROM datastreams.streams WHERE id = '00000000-0000-4000-8000-000000000c02';
SELECT count(*) AS frames_after FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-8000-000000000c02';
SELECT pg_temp.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000c02', 6)$$);

--
-- PREPARE of a transaction that wrote frames is refused
--
BEGIN;
INSERT INTO datastreams.frames (stream_id) VALUES ('00000000-0000-4000-8000-000000000c01');
PREPARE TRANSACTION 'regress_wp';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'regress_wp';

DELETE FROM datastreams.streams WHERE account_id = 'regress_wp';
DELETE FROM datastreams.accounts WHERE id = 'regress_wp';
DROP ROLE regress_wp_tenant;
