--
-- tenancy_basics: row-level security and current_account() as seen by
-- non-superuser roles (issue 2).
--
--   regress_tenancy_basics_a       bound to account tb_a
--   regress_tenancy_basics_b       bound to account tb_b
--   regress_tenancy_basics_app     trusted: acts for datastreams.account_id
--   regress_tenancy_basics_nobody  neither bound nor trusted
--
-- Every role must see only its account's rows, in every table and through
-- the API, and another account's stream must fail exactly like a stream
-- that does not exist.  regress_tenancy_basics.err() shows an error's
-- SQLSTATE, message, DETAIL and HINT with generated UUIDs masked.
--

-- Writers announce their frames and fold the stream counters at commit
-- (the path without a publisher), so that stream_state is current when read.
SET datastreams.notify_via_worker = off;
CREATE SCHEMA regress_tenancy_basics;
CREATE FUNCTION regress_tenancy_basics.err(cmd text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
	st text; msg text; det text; hnt text;
BEGIN
	EXECUTE cmd;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
	RETURN regexp_replace(st || ': ' || msg
		|| CASE WHEN det <> '' THEN ' | DETAIL: ' || det ELSE '' END
		|| CASE WHEN hnt <> '' THEN ' | HINT: ' || hnt ELSE '' END,
		'(?!00000000-)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
		'<uuid>', 'g');
END
$f$;
-- what the current role sees in each table, and through list_streams()
CREATE FUNCTION regress_tenancy_basics.seen() RETURNS TABLE (tbl text, n bigint, accounts text)
LANGUAGE sql AS $f$
	SELECT 'accounts', count(*), string_agg(DISTINCT id, ',') FROM datastreams.accounts
	UNION ALL
	SELECT 'streams', count(*), string_agg(DISTINCT account_id, ',') FROM datastreams.streams
	UNION ALL
	SELECT 'frames', count(*), string_agg(DISTINCT account_id, ',') FROM datastreams.frames
	UNION ALL
	SELECT 'stream_state', count(*), string_agg(DISTINCT account_id, ',') FROM datastreams.stream_state
$f$;
GRANT USAGE ON SCHEMA regress_tenancy_basics TO PUBLIC;

CREATE ROLE regress_tenancy_basics_a;
CREATE ROLE regress_tenancy_basics_b;
CREATE ROLE regress_tenancy_basics_app;
CREATE ROLE regress_tenancy_basics_nobody;
SELECT id, role FROM datastreams.create_account('tb_a', 'regress_tenancy_basics_a');
SELECT id, role FROM datastreams.create_account('tb_b', 'regress_tenancy_basics_b');
SELECT datastreams.trust_role('regress_tenancy_basics_app');

-- two streams with frames in each account, written by the superuser
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('00000000-0000-4000-8000-000000000a01', 'tb_a', 'a one', 'A1', 'active'),
	('00000000-0000-4000-8000-000000000a02', 'tb_a', 'a two', 'A2', 'active'),
	('00000000-0000-4000-8000-000000000b01', 'tb_b', 'b one', 'B1', 'active'),
	('00000000-0000-4000-8000-000000000b02', 'tb_b', 'b two', 'B2', 'active');
INSERT INTO datastreams.frames (stream_id, sequence)
SELECT s, g FROM unnest(ARRAY['00000000-0000-4000-8000-000000000a01', '00000000-0000-4000-8000-000000000a02',
                              '00000000-0000-4000-8000-000000000b01', '00000000-0000-4000-8000-000000000b02']::uuid[]) AS s,
                 generate_series(1, 3) AS g
 ORDER BY g;
-- the superuser bypasses row-level security and sees everything
SELECT (SELECT count(*) FROM datastreams.accounts WHERE id LIKE 'tb%') AS accounts,
       (SELECT count(*) FROM datastreams.streams WHERE account_id LIKE 'tb%') AS streams,
       (SELECT count(*) FROM datastreams.frames WHERE account_id LIKE 'tb%') AS frames,
       (SELECT count(*) FROM datastreams.stream_state WHERE account_id LIKE 'tb%') AS stream_state;

--
-- A role bound to account tb_a
--
SET ROLE regress_tenancy_basics_a;
SELECT datastreams.current_account();
SELECT * FROM regress_tenancy_basics.seen();
SELECT name FROM datastreams.list_streams();
SELECT name FROM datastreams.get_stream('00000000-0000-4000-8000-000000000a01');
SELECT sequence FROM datastreams.list_frames('00000000-0000-4000-8000-000000000a01');
SELECT sequence FROM datastreams.latest_frame('00000000-0000-4000-8000-000000000a01');
SELECT regress_tenancy_basics.err($$SELECT * FROM datastreams.trusted_roles$$);
-- it writes its own account's rows, directly and through the API
-- (ids are chosen by datastreams: a tenant giving one is refused, 42501)
SELECT regress_tenancy_basics.err($$INSERT INTO datastreams.streams (id, name, symbol) VALUES ('00000000-0000-4000-8000-000000000a03', 'a three', 'a3')$$);
INSERT INTO datastreams.streams (name, symbol)
VALUES ('a three', 'a3')
RETURNING account_id, symbol;
SELECT id AS a3 FROM datastreams.streams WHERE symbol = 'A3' \gset
INSERT INTO datastreams.frames (stream_id, sequence) VALUES (:'a3', 1)
RETURNING account_id;
SELECT regress_tenancy_basics.err(format($$INSERT INTO datastreams.frames (id, stream_id, sequence) VALUES ('00000000-0000-7000-8000-000000000a03', %L, 5)$$, :'a3'));
SELECT account_id, sequence FROM datastreams.create_frame(:'a3', 2);
UPDATE datastreams.streams SET description = 'mine' WHERE id = :'a3';
SELECT description FROM datastreams.update_stream(:'a3', '{"description": "still mine"}');
-- another account's stream fails exactly like a missing one, everywhere
SELECT f AS call,
       regress_tenancy_basics.err(format(f, '00000000-0000-4000-8000-000000000b01')) AS other_account,
       replace(regress_tenancy_basics.err(format(f, '00000000-0000-4000-8000-000000000b01')), 'b01', 'X')
     = replace(regress_tenancy_basics.err(format(f, '00000000-0000-4000-8000-000000000f01')), 'f01', 'X') AS same_as_missing
  FROM unnest(ARRAY[
	'SELECT datastreams.get_stream(%L)',
	'SELECT datastreams.update_stream(%L, ''{"name": "x"}'')',
	'SELECT datastreams.create_frame(%L, 100)',
	'SELECT datastreams.list_frames(%L)',
	'SELECT datastreams.latest_frame(%L)',
	'SELECT datastreams.push(''datastreams/'' || %L, ''{}'')',
	'INSERT INTO datastreams.frames (stream_id, sequence) VALUES (%L, 100)',
	'INSERT INTO datastreams.frames (stream_id) VALUES (%L)']) WITH ORDINALITY AS t(f, n)
 ORDER BY n;
-- direct writes to another account's rows: invisible or rejected
WITH u AS (UPDATE datastreams.streams SET name = 'hijacked' WHERE id = '00000000-0000-4000-8000-000000000b01' RETURNING 1)
SELECT count(*) AS streams_updated FROM u;
SELECT regress_tenancy_basics.err($$INSERT INTO datastreams.streams (account_id, name, symbol) VALUES ('tb_b', 'planted', 'P')$$);
SELECT regress_tenancy_basics.err($$INSERT INTO datastreams.frames (stream_id, account_id, sequence) VALUES ('00000000-0000-4000-8000-000000000a01', 'tb_b', 100)$$);
SELECT regress_tenancy_basics.err($$DELETE FROM datastreams.streams WHERE id = '00000000-0000-4000-8000-000000000b01'$$);
SELECT regress_tenancy_basics.err($$INSERT INTO datastreams.accounts (id) VALUES ('tb_planted')$$);
SELECT regress_tenancy_basics.err($$INSERT INTO datastreams.stream_state (stream_id, account_id, latest_frame_id, latest_sequence, latest_created_at) VALUES ('00000000-0000-4000-8000-000000000b01', 'tb_b', '00000000-0000-4000-8000-000000000b01', 1, now())$$);
SELECT regress_tenancy_basics.err($$SELECT datastreams.trust_role('regress_tenancy_basics_a')$$);
SELECT regress_tenancy_basics.err($$SELECT datastreams.bind_role('tb_b', 'regress_tenancy_basics_a')$$);

-- the setting cannot move a bound role to another account: the API
-- refuses (42501) and direct reads still show only tb_a
SET datastreams.account_id = 'tb_b';
SELECT datastreams.current_account();
SELECT regress_tenancy_basics.err($$SELECT datastreams.list_streams()$$);
SELECT regress_tenancy_basics.err($$SELECT datastreams.get_stream('00000000-0000-4000-8000-000000000b01')$$);
SELECT regress_tenancy_basics.err($$SELECT datastreams.create_stream('n', 'S')$$);
SELECT regress_tenancy_basics.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000b01', 100)$$);
SELECT * FROM regress_tenancy_basics.seen();
SELECT regress_tenancy_basics.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000b01', 100)$$);
-- naming its own account is fine
SET datastreams.account_id = 'tb_a';
SELECT count(*) AS own_streams FROM datastreams.list_streams();
RESET datastreams.account_id;
RESET ROLE;

-- account tb_b's role sees tb_b only
SET ROLE regress_tenancy_basics_b;
SELECT * FROM regress_tenancy_basics.seen();
SELECT name FROM datastreams.list_streams();
RESET ROLE;
-- and nothing of tb_b changed
SELECT name, description FROM datastreams.streams WHERE account_id = 'tb_b' ORDER BY id;
SELECT count(*) AS frames_of_b FROM datastreams.frames WHERE account_id = 'tb_b';

--
-- A trusted application role acts for whatever account the setting names
--
SET ROLE regress_tenancy_basics_app;
SELECT datastreams.current_account() IS NULL AS no_account_yet;
SELECT * FROM regress_tenancy_basics.seen();
SELECT regress_tenancy_basics.err($$SELECT datastreams.list_streams()$$);
SET datastreams.account_id = 'tb_a';
SELECT datastreams.current_account();
SELECT * FROM regress_tenancy_basics.seen();
SELECT name FROM datastreams.list_streams();
SELECT regress_tenancy_basics.err($$SELECT datastreams.get_stream('00000000-0000-4000-8000-000000000b01')$$);
SET datastreams.account_id = 'tb_b';
SELECT datastreams.current_account();
SELECT * FROM regress_tenancy_basics.seen();
SELECT name FROM datastreams.list_streams();
SELECT account_id, sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000b01', 4);
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000b02', 4)
RETURNING account_id, sequence;
SELECT account_id, symbol FROM datastreams.create_stream('made by app', 'app');
SELECT regress_tenancy_basics.err($$SELECT datastreams.get_stream('00000000-0000-4000-8000-000000000a01')$$);
SELECT regress_tenancy_basics.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000a01', 100)$$);
-- per transaction, the way a connection pool serves many accounts
BEGIN;
SET LOCAL datastreams.account_id = 'tb_a';
SELECT count(*) AS streams_of_a FROM datastreams.list_streams();
COMMIT;
SELECT datastreams.current_account();
SET datastreams.account_id = 'tb_nope';
SELECT regress_tenancy_basics.err($$SELECT datastreams.list_streams()$$);
SELECT * FROM regress_tenancy_basics.seen();
RESET datastreams.account_id;
RESET ROLE;

--
-- A role that is neither bound nor trusted sees nothing and writes nothing
--
SET ROLE regress_tenancy_basics_nobody;
SELECT datastreams.current_account() IS NULL AS no_account;
SELECT * FROM regress_tenancy_basics.seen();
SET datastreams.account_id = 'tb_a';
SELECT datastreams.current_account() IS NULL AS still_no_account;
SELECT * FROM regress_tenancy_basics.seen();
SELECT regress_tenancy_basics.err($$INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000a01', 100)$$);
SELECT regress_tenancy_basics.err($$INSERT INTO datastreams.frames (stream_id, account_id, sequence) VALUES ('00000000-0000-4000-8000-000000000a01', 'tb_a', 100)$$);
SELECT regress_tenancy_basics.err($$INSERT INTO datastreams.streams (account_id, name, symbol) VALUES ('tb_a', 'planted', 'P')$$);
SELECT regress_tenancy_basics.err($$INSERT INTO datastreams.streams (name, symbol) VALUES ('planted', 'P')$$);
WITH u AS (UPDATE datastreams.streams SET name = 'hijacked' RETURNING 1)
SELECT count(*) AS streams_updated FROM u;
SELECT regress_tenancy_basics.err($$SELECT datastreams.list_streams()$$);
SELECT regress_tenancy_basics.err($$SELECT datastreams.create_stream('n', 'S')$$);
SELECT regress_tenancy_basics.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000a01', 100)$$);
SELECT regress_tenancy_basics.err($$SELECT datastreams.push('datastreams/00000000-0000-4000-8000-000000000a01', '{}')$$);
RESET datastreams.account_id;
RESET ROLE;

-- what each account holds in the end
SELECT account_id, count(*) AS streams FROM datastreams.streams
 WHERE account_id LIKE 'tb%' GROUP BY account_id ORDER BY account_id;
SELECT account_id, count(*) AS frames, max(sequence) AS top FROM datastreams.frames
 WHERE account_id LIKE 'tb%' GROUP BY account_id ORDER BY account_id;

--
-- Parallel queries: the policies call current_account() in parallel
-- workers too, which must answer from the query's snapshot
--
CREATE FUNCTION regress_tenancy_basics.plan_is_parallel(query text) RETURNS boolean
LANGUAGE plpgsql AS $f$
DECLARE
	line text;
	parallel boolean := false;
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
		parallel := parallel OR line ~ 'Parallel Seq Scan';
	END LOOP;
	RETURN parallel;
END
$f$;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
SET ROLE regress_tenancy_basics_a;
SELECT regress_tenancy_basics.plan_is_parallel('SELECT count(*) FROM datastreams.frames') AS parallel_plan;
SELECT count(*) > 0 AS sees_frames, bool_and(account_id = datastreams.current_account()) AS only_its_own
  FROM datastreams.frames;
SELECT count(*) > 0 AS sees_streams FROM datastreams.streams;
RESET ROLE;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET parallel_leader_participation;

--
-- Clean up
--
DELETE FROM datastreams.streams WHERE account_id IN ('tb_a', 'tb_b');
DELETE FROM datastreams.accounts WHERE id IN ('tb_a', 'tb_b');
SELECT datastreams.untrust_role('regress_tenancy_basics_app');
DROP ROLE regress_tenancy_basics_a;
DROP ROLE regress_tenancy_basics_b;
DROP ROLE regress_tenancy_basics_app;
DROP ROLE regress_tenancy_basics_nobody;
DROP SCHEMA regress_tenancy_basics CASCADE;
