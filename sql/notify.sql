--
-- notify: the settings around the data bus (issue 2).
--
-- psql prints the sending backend's PID with every notification it
-- receives, so the notifications themselves are checked by the TAP test
-- with a real LISTEN client.  Here: who may change the bus settings, and
-- that a full notification queue (simulated with notify_queue_limit = 0)
-- never makes an insert fail -- frames are stored, and each transaction
-- gets exactly one WARNING.
--

-- Writers announce their frames and fold the stream counters at commit
-- (the path without a publisher), so that stream_state is current when read.
SET datastreams.notify_via_worker = off;
CREATE SCHEMA regress_notify;
CREATE FUNCTION regress_notify.err(cmd text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
	st text; msg text; det text; hnt text;
BEGIN
	EXECUTE cmd;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
	RETURN st || ': ' || msg
		|| CASE WHEN det <> '' THEN ' | DETAIL: ' || det ELSE '' END
		|| CASE WHEN hnt <> '' THEN ' | HINT: ' || hnt ELSE '' END;
END
$f$;
GRANT USAGE ON SCHEMA regress_notify TO PUBLIC;
CREATE ROLE regress_notify_tenant;
SELECT id FROM datastreams.create_account('regress_notify_a', 'regress_notify_tenant');
SET datastreams.account_id = 'regress_notify_a';
INSERT INTO datastreams.streams (id, name, symbol, status) VALUES
	('00000000-0000-4000-8000-000000000301', 'bus', 'BUS', 'active'),
	('00000000-0000-4000-8000-000000000302', 'bus two', 'BUS2', 'active');

--
-- Defaults, and the settings only a superuser may change
--
SELECT name, setting, unit, context, vartype, enumvals
  FROM pg_settings
 WHERE name IN ('datastreams.notify_payload', 'datastreams.notify_queue_limit',
                'datastreams.max_payload_bytes', 'datastreams.account_id')
 ORDER BY name;
SET ROLE regress_notify_tenant;
SELECT regress_notify.err($$SET datastreams.notify_payload = 'ids'$$);
SELECT regress_notify.err($$SET datastreams.notify_payload = 'full'$$);
SELECT regress_notify.err($$SET datastreams.notify_queue_limit = 0$$);
SELECT regress_notify.err($$SET datastreams.max_payload_bytes = '10MB'$$);
SELECT regress_notify.err($$SELECT set_config('datastreams.notify_payload', 'ids', true)$$);
SHOW datastreams.notify_payload;
RESET ROLE;
SELECT regress_notify.err($$SET datastreams.notify_payload = 'everything'$$);
SELECT regress_notify.err($$SET datastreams.notify_queue_limit = 1.5$$);
SELECT regress_notify.err($$SET datastreams.notify_queue_limit = -0.1$$);
SET datastreams.notify_payload = 'ids';
SHOW datastreams.notify_payload;
-- frames are stored in either mode
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000301', 1, '{"a": 1}');
RESET datastreams.notify_payload;
SHOW datastreams.notify_payload;

--
-- A "full" queue: frames are stored, one WARNING per transaction
--
SET datastreams.notify_queue_limit = 0;
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000301', 2);
BEGIN;
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000301', 3);
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000302', 1);
INSERT INTO datastreams.frames (stream_id, sequence)
SELECT '00000000-0000-4000-8000-000000000301', g FROM generate_series(4, 300) AS g;
COPY datastreams.frames (stream_id, sequence) FROM stdin;
00000000-0000-4000-8000-000000000302	2
00000000-0000-4000-8000-000000000302	3
\.
COMMIT;
-- the next transaction is warned again
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000301', 301);
-- a tenant's insert is never failed by the bus either
SET ROLE regress_notify_tenant;
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000301', 302);
RESET ROLE;
-- a transaction that rolls back stores nothing and announces nothing, so
-- it is not warned (the queue is looked at when a transaction commits)
BEGIN;
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000301', 303);
ROLLBACK;
SELECT stream_id, count(*) AS frames, max(sequence) AS top
  FROM datastreams.frames WHERE account_id = 'regress_notify_a'
 GROUP BY stream_id ORDER BY stream_id;
SELECT sequence FROM datastreams.latest_frame('00000000-0000-4000-8000-000000000301');
-- back to the default: no warning
RESET datastreams.notify_queue_limit;
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000301', 400);

--
-- Clean up
--
RESET datastreams.account_id;
DELETE FROM datastreams.streams WHERE account_id = 'regress_notify_a';
DELETE FROM datastreams.accounts WHERE id = 'regress_notify_a';
DROP ROLE regress_notify_tenant;
DROP SCHEMA regress_notify CASCADE;
