--
-- search_path_hijack: objects named like the ones the extension uses, in a
-- schema earlier on the caller's search_path, change nothing.
--
-- A non-superuser creates schema evil with functions, operators and tables
-- named like those the extension's SQL functions, triggers and C code use.
-- Each evil function raises a NOTICE "HIJACKED ..." and returns a wrong
-- answer.  Then every API function and direct INSERT/UPDATE/COPY runs as a
-- tenant (and the administrative functions as a superuser) under four
-- search paths; each result must equal the result under the default path,
-- and no HIJACKED notice may appear.
--

-- Writers announce their frames and fold the stream counters at commit
-- (the path without a publisher), so that stream_state is current when read.
SET datastreams.notify_via_worker = off;
SET client_min_messages = warning;
CREATE ROLE regress_sph_evil;
CREATE ROLE regress_sph_tenant;
CREATE ROLE regress_sph_other;
RESET client_min_messages;
SELECT id FROM datastreams.create_account('regress_sph', 'regress_sph_tenant');

--------------------------------------------------------------------------
-- The static rule: every SQL-language function of the extension pins its
-- search_path, and none is SECURITY DEFINER.  The one exception is the
-- procedure prune_all(), which commits between steps (a SET clause would
-- forbid that) and so qualifies every name and operator instead; it is run
-- under the hostile paths at the end.
--------------------------------------------------------------------------
SELECT p.oid::regprocedure AS function_without_pinned_search_path
  FROM pg_proc AS p
  JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'datastreams'
  JOIN pg_language AS l ON l.oid = p.prolang
 WHERE l.lanname NOT IN ('c', 'internal')
   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
 ORDER BY 1;
SELECT p.oid::regprocedure AS security_definer_function
  FROM pg_proc AS p
  JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'datastreams'
 WHERE p.prosecdef
 ORDER BY 1;

--------------------------------------------------------------------------
-- The trap, set by a non-superuser
--------------------------------------------------------------------------
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO regress_sph_evil', current_database()); END $$;
SET ROLE regress_sph_evil;
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
SET search_path = evil, pg_catalog;

-- functions
CREATE FUNCTION evil.btrim(text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED btrim(text)'; RETURN 'HIJACKED'; END $$;
CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED lower(text)'; RETURN 'HIJACKED'; END $$;
CREATE FUNCTION evil.upper(text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED upper(text)'; RETURN 'HIJACKED'; END $$;
CREATE FUNCTION evil.left(text, integer) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED left(text, integer)'; RETURN 'HIJACKED'; END $$;
CREATE FUNCTION evil.substr(text, integer) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED substr(text, integer)'; RETURN '00000000-0000-4000-a000-000000000000'; END $$;
CREATE FUNCTION evil.length(text) RETURNS integer LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED length(text)'; RETURN 0; END $$;
CREATE FUNCTION evil.format(text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED format(text)'; RETURN 'HIJACKED'; END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED now()'; RETURN '2000-01-01'; END $$;
CREATE FUNCTION evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED jsonb_typeof(jsonb)'; RETURN 'object'; END $$;
CREATE FUNCTION evil.jsonb_object_keys(jsonb) RETURNS SETOF text LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED jsonb_object_keys(jsonb)'; RETURN NEXT 'name'; END $$;
CREATE FUNCTION evil.jsonb_array_elements(jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED jsonb_array_elements(jsonb)'; RETURN NEXT '{}'; END $$;
CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED pg_notify(text, text)'; END $$;
CREATE FUNCTION evil.gen_random_uuid() RETURNS uuid LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED gen_random_uuid()'; RETURN '00000000-0000-4000-a000-000000000000'; END $$;
CREATE FUNCTION evil.uuid_v4() RETURNS uuid LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED uuid_v4()'; RETURN '00000000-0000-4000-a000-000000000000'; END $$;
CREATE FUNCTION evil.uuid_v7() RETURNS uuid LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED uuid_v7()'; RETURN '00000000-0000-4000-a000-000000000000'; END $$;
CREATE FUNCTION evil.current_account() RETURNS text LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED current_account()'; RETURN 'evil'; END $$;
CREATE FUNCTION evil.require_account() RETURNS text LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED require_account()'; RETURN 'evil'; END $$;
CREATE FUNCTION evil.require_admin() RETURNS void LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED require_admin()'; END $$;

-- operators, each on the exact argument types the extension compares, so
-- that they would win over pg_catalog's even later on the path
CREATE FUNCTION evil.any_true(text, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED operator on (text, text)'; RETURN true; END $$;
CREATE FUNCTION evil.any_false(text, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED operator on (text, text)'; RETURN false; END $$;
CREATE FUNCTION evil.uuid_true(uuid, uuid) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED operator on (uuid, uuid)'; RETURN true; END $$;
CREATE FUNCTION evil.regrole_true(regrole, regrole) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED operator on (regrole, regrole)'; RETURN true; END $$;
CREATE FUNCTION evil.bigint_true(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED operator on (bigint, bigint)'; RETURN true; END $$;
CREATE FUNCTION evil.int_true(integer, integer) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED operator on (integer, integer)'; RETURN true; END $$;
CREATE FUNCTION evil.bigint_plus(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED +(bigint, bigint)'; RETURN -1; END $$;
CREATE FUNCTION evil.concat(text, text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED ||(text, text)'; RETURN 'HIJACKED'; END $$;
CREATE FUNCTION evil.jsonb_has(jsonb, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED ?(jsonb, text)'; RETURN true; END $$;
CREATE FUNCTION evil.jsonb_get_text(jsonb, text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED ->>(jsonb, text)'; RETURN '7'; END $$;
CREATE FUNCTION evil.jsonb_get(jsonb, text) RETURNS jsonb LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'HIJACKED ->(jsonb, text)'; RETURN '{"hijacked": "yes"}'; END $$;

CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.any_true);
CREATE OPERATOR evil.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.any_false);
CREATE OPERATOR evil.!~* (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.any_false);
CREATE OPERATOR evil.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.any_true);
CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.uuid_true);
CREATE OPERATOR evil.= (LEFTARG = regrole, RIGHTARG = regrole, FUNCTION = evil.regrole_true);
CREATE OPERATOR evil.> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.bigint_true);
CREATE OPERATOR evil.< (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.bigint_true);
CREATE OPERATOR evil.<= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.int_true);
CREATE OPERATOR evil.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.bigint_plus);
CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.concat);
CREATE OPERATOR evil.? (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = evil.jsonb_has);
CREATE OPERATOR evil.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = evil.jsonb_get_text);
CREATE OPERATOR evil.-> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = evil.jsonb_get);

-- tables named like the extension's
CREATE TABLE evil.accounts (id text, role regrole);
CREATE TABLE evil.trusted_roles (role regrole);
CREATE TABLE evil.streams (id uuid, account_id text, name text, symbol text);
CREATE TABLE evil.frames (id uuid, account_id text, stream_id uuid, sequence bigint);
CREATE TABLE evil.stream_state (stream_id uuid, account_id text, latest_frame_id uuid);
INSERT INTO evil.accounts VALUES ('evil', NULL);
INSERT INTO evil.streams VALUES ('00000000-0000-4000-a000-000000000000', 'evil', 'HIJACKED', 'HIJACKED');
GRANT ALL ON ALL TABLES IN SCHEMA evil TO PUBLIC;
RESET search_path;
RESET ROLE;

-- the same tables as temporary tables of the session that runs the calls
CREATE TEMP TABLE accounts (id text, role regrole);
CREATE TEMP TABLE trusted_roles (role regrole);
CREATE TEMP TABLE streams (id uuid, account_id text, name text, symbol text);
CREATE TEMP TABLE frames (id uuid, account_id text, stream_id uuid, sequence bigint);
CREATE TEMP TABLE stream_state (stream_id uuid, account_id text, latest_frame_id uuid);
INSERT INTO pg_temp.streams VALUES ('00000000-0000-4000-a000-000000000000', 'evil', 'HIJACKED', 'HIJACKED');
GRANT ALL ON pg_temp.accounts, pg_temp.trusted_roles, pg_temp.streams, pg_temp.frames,
	pg_temp.stream_state TO PUBLIC;

--------------------------------------------------------------------------
-- The victims' data
--------------------------------------------------------------------------
SET datastreams.account_id = 'regress_sph';
INSERT INTO datastreams.streams (id, account_id, name, symbol, sla_ms, status, metadata) VALUES
	('00000000-0000-4000-a000-00000000005a', 'regress_sph', 'Hijack target', 'sph', 100, 'active', '{"Region": "eu"}'),
	('00000000-0000-4000-a000-00000000005b', 'regress_sph', 'Paused', 'sphp', 0, 'paused', '{}');
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-a000-00000000005a', 1, '{"v": 1}', 10);
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-a000-00000000005a', 2, '{"v": 2}', 200);
RESET datastreams.account_id;

--------------------------------------------------------------------------
-- The calls
--------------------------------------------------------------------------
CREATE TABLE sph_paths (ord int, path text);
INSERT INTO sph_paths VALUES
	(0, '"$user", public'),
	(1, 'evil, public, pg_catalog'),
	(2, 'evil, pg_temp, pg_catalog'),
	(3, 'pg_temp, evil, public, pg_catalog');

-- who: NULL = the superuser running the test, else the tenant role.  Each
-- statement returns one text value (COPY: its row count); the stream ids
-- are fixed, and no value depends on the time.  The statements themselves
-- qualify the operators they use: they stand for the caller's own SQL,
-- which the hostile path may well hijack.
CREATE TABLE sph_calls (ord serial, call text, who name, stmt text);
INSERT INTO sph_calls (call, who, stmt) VALUES
	('create_account()', NULL, $$SELECT ROW(a.id, a.role)::text FROM datastreams.create_account(' regress_sph_new ', 'regress_sph_other') AS a$$),
	('create_account(), blank id', NULL, $$SELECT ROW(a.id)::text FROM datastreams.create_account('   ') AS a$$),
	('bind_role()', NULL, $$SELECT ROW(a.id, a.role)::text FROM datastreams.bind_role('regress_sph', 'regress_sph_other') AS a$$),
	('bind_role(), unknown account', NULL, $$SELECT ROW(a.id, a.role)::text FROM datastreams.bind_role('regress_sph_none', 'regress_sph_other') AS a$$),
	('trust_role()', NULL, $$SELECT datastreams.trust_role('regress_sph_other')::text$$),
	('untrust_role()', NULL, $$SELECT datastreams.untrust_role('regress_sph_tenant')::text$$),
	('require_admin(), tenant', 'regress_sph_tenant', $$SELECT datastreams.require_admin()::text$$),
	('current_account()', 'regress_sph_tenant', $$SELECT datastreams.current_account()$$),
	('require_account()', 'regress_sph_tenant', $$SELECT datastreams.require_account()$$),
	('create_stream()', 'regress_sph_tenant', $$SELECT ROW(s.account_id, s.name, s.symbol, s.description, s.frequency, s.sla_ms, s.status, s.metadata)::text FROM datastreams.create_stream(' New  ', ' nsym ', ' d ', '1s', 5, ' ACTIVE ', '{" Key ": " v "}') AS s$$),
	('create_stream(), bad metadata', 'regress_sph_tenant', $$SELECT ROW(s.id)::text FROM datastreams.create_stream('n', 's', metadata => '{"k": 1}') AS s$$),
	('get_stream()', 'regress_sph_tenant', $$SELECT ROW(s.account_id, s.name, s.symbol, s.sla_ms, s.status, s.metadata)::text FROM datastreams.get_stream('00000000-0000-4000-a000-00000000005a') AS s$$),
	('get_stream(), unknown', 'regress_sph_tenant', $$SELECT ROW(s.name)::text FROM datastreams.get_stream('00000000-0000-4000-a000-000000000000') AS s$$),
	('list_streams()', 'regress_sph_tenant', $$SELECT string_agg(s.symbol, ',') FROM datastreams.list_streams() AS s$$),
	('update_stream()', 'regress_sph_tenant', $$SELECT ROW(s.name, s.symbol, s.description, s.frequency, s.sla_ms, s.status, s.metadata)::text FROM datastreams.update_stream('00000000-0000-4000-a000-00000000005a', '{"name": " Renamed ", "symbol": "x", "sla_ms": 7, "frequency": "2s", "metadata": {" A ": " b "}}') AS s$$),
	('update_stream(), bad field', 'regress_sph_tenant', $$SELECT ROW(s.name)::text FROM datastreams.update_stream('00000000-0000-4000-a000-00000000005a', '{"id": "x"}') AS s$$),
	('update_stream(), unknown field', 'regress_sph_tenant', $$SELECT ROW(s.name)::text FROM datastreams.update_stream('00000000-0000-4000-a000-00000000005a', '{"colour": "x"}') AS s$$),
	('update_stream(), not an object', 'regress_sph_tenant', $$SELECT ROW(s.name)::text FROM datastreams.update_stream('00000000-0000-4000-a000-00000000005a', '[1]') AS s$$),
	('create_frame()', 'regress_sph_tenant', $$SELECT ROW(f.account_id, f.stream_id, f.sequence, f.payload, f.latency_ms, f.status, f.metadata)::text FROM datastreams.create_frame('00000000-0000-4000-a000-00000000005a', 3, '{"v": 3}', 500, ' OK ', '{" M ": " n "}') AS f$$),
	('create_frame(), lower sequence', 'regress_sph_tenant', $$SELECT ROW(f.sequence)::text FROM datastreams.create_frame('00000000-0000-4000-a000-00000000005a', 1) AS f$$),
	('create_frame(), paused stream', 'regress_sph_tenant', $$SELECT ROW(f.sequence)::text FROM datastreams.create_frame('00000000-0000-4000-a000-00000000005b', 1) AS f$$),
	('list_frames()', 'regress_sph_tenant', $$SELECT string_agg(ROW(f.sequence, f.status)::text, ',') FROM datastreams.list_frames('00000000-0000-4000-a000-00000000005a', 1) AS f$$),
	('list_frames(), before', 'regress_sph_tenant', $$SELECT string_agg(ROW(f.sequence, f.status)::text, ',') FROM datastreams.list_frames('00000000-0000-4000-a000-00000000005a', 10, 2) AS f$$),
	('frames_since()', 'regress_sph_tenant', $$SELECT string_agg(ROW(f.sequence, f.status)::text, ',') FROM datastreams.frames_since('00000000-0000-4000-a000-00000000005a', 1) AS f$$),
	('latest_frame()', 'regress_sph_tenant', $$SELECT ROW(f.sequence, f.payload, f.status)::text FROM datastreams.latest_frame('00000000-0000-4000-a000-00000000005a') AS f$$),
	('ingest()', 'regress_sph_tenant', $$SELECT datastreams.ingest('00000000-0000-4000-a000-00000000005a', '[{"sequence": 10, "latency_ms": 500}, {"sequence": 11, "status": "error"}]')::text$$),
	('ingest(), bad element', 'regress_sph_tenant', $$SELECT datastreams.ingest('00000000-0000-4000-a000-00000000005a', '[{"sequence": 10}, {"sequence": 9}]')::text$$),
	('push()', 'regress_sph_tenant', $$SELECT ROW(f.account_id, f.stream_id, f.payload, f.status)::text FROM datastreams.push('datastreams/00000000-0000-4000-a000-00000000005a', '{"p": 1}') AS f$$),
	('push(), bad topic', 'regress_sph_tenant', $$SELECT ROW(f.sequence)::text FROM datastreams.push('datastreams/x', '{}') AS f$$),
	('push(), not an object', 'regress_sph_tenant', $$SELECT ROW(f.sequence)::text FROM datastreams.push('datastreams/00000000-0000-4000-a000-00000000005a', '[]') AS f$$),
	('channel()', 'regress_sph_tenant', $$SELECT datastreams.channel('00000000-0000-4000-a000-00000000005a')$$),
	('INSERT streams', 'regress_sph_tenant', $$INSERT INTO datastreams.streams (name, symbol, metadata) VALUES (' n ', ' s ', '{" K ": " v "}') RETURNING ROW(account_id, name, symbol, status, metadata)::text$$),
	('INSERT frames', 'regress_sph_tenant', $$INSERT INTO datastreams.frames (stream_id, sequence, latency_ms, status) VALUES ('00000000-0000-4000-a000-00000000005a', 3, 500, NULL), ('00000000-0000-4000-a000-00000000005a', 4, 0, 'Error') RETURNING ROW(account_id, sequence, status)::text$$),
	('frames, then the pointer', 'regress_sph_tenant', $$SELECT public.sph_frames_then_pointer()$$),
	('UPDATE streams', 'regress_sph_tenant', $$UPDATE datastreams.streams SET symbol = ' low ', status = 'PAUSED' WHERE id OPERATOR(pg_catalog.=) '00000000-0000-4000-a000-00000000005a' RETURNING ROW(symbol, status)::text$$),
	('COPY frames FROM, superuser', NULL, $$COPY datastreams.frames (stream_id, sequence, latency_ms) FROM PROGRAM 'echo 00000000-0000-4000-a000-00000000005a,5,500' (FORMAT csv)$$),
	('metrics()', 'regress_sph_tenant', $$SELECT (count(*) > 0)::text FROM regexp_matches(datastreams.metrics(), 'account_id="regress_sph"', 'g')$$),
	('stream_latency()', 'regress_sph_tenant', $$SELECT (count(*) > 0)::text FROM datastreams.stream_latency()$$),
	('stream_health', 'regress_sph_tenant', $$SELECT string_agg(ROW(h.stream_id, h.account_id, h.status, h.sla_ms, h.frames_total, h.frames_late, h.last_sequence)::text, ',' ORDER BY h.stream_id) FROM datastreams.stream_health AS h$$),
	('prune()', NULL, $$SELECT datastreams.prune()::text$$),
	('prune(), tenant', 'regress_sph_tenant', $$SELECT datastreams.prune()::text$$);

-- Frames and then, in a later statement, the latest frame and counters
-- (the index lookups of the frames trigger and of stream_health)
CREATE FUNCTION sph_frames_then_pointer() RETURNS text LANGUAGE sql AS $$
	INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES
		('00000000-0000-4000-a000-00000000005a', 3, 500), ('00000000-0000-4000-a000-00000000005a', 4, 5);
	SELECT ROW(h.last_sequence, h.frames_total, h.frames_ok, h.frames_late, h.frames_error)::text
	  FROM datastreams.stream_health AS h
	 WHERE h.stream_id OPERATOR(pg_catalog.=) '00000000-0000-4000-a000-00000000005a';
$$;

-- Run every call under every path; each call is rolled back afterwards so
-- that every run starts from the same state.  The result is the value, or
-- the SQLSTATE and message of the error.
CREATE TABLE sph_results (call_ord int, path_ord int, result text);
CREATE FUNCTION sph_run() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
DECLARE
	c record;
	p record;
	result text;
	n bigint;
BEGIN
	FOR c IN SELECT * FROM sph_calls ORDER BY ord LOOP
		FOR p IN SELECT * FROM sph_paths ORDER BY ord LOOP
			BEGIN
				IF c.who IS NOT NULL THEN
					EXECUTE format('SET LOCAL ROLE %I', c.who);
				END IF;
				PERFORM pg_catalog.set_config('search_path', p.path, true);
				IF c.stmt LIKE 'COPY %' THEN
					EXECUTE c.stmt;
					GET DIAGNOSTICS n = ROW_COUNT;
					result := n::text;
				ELSE
					EXECUTE c.stmt INTO result;
				END IF;
				RAISE EXCEPTION USING ERRCODE = 'SPHOK', MESSAGE = coalesce(result, 'NULL');
			EXCEPTION WHEN OTHERS THEN
				result := CASE WHEN SQLSTATE = 'SPHOK' THEN SQLERRM ELSE SQLSTATE || ': ' || SQLERRM END;
			END;
			INSERT INTO public.sph_results VALUES (c.ord, p.ord, result);
		END LOOP;
	END LOOP;
END
$$;
-- (should a notice appear, show where it came from)
\set SHOW_CONTEXT always
SELECT sph_run();
\set SHOW_CONTEXT errors

-- Same result under every path, and the results themselves (no HIJACKED
-- notice above, and none of the evil values below)
SELECT c.call, count(DISTINCT r.result) = 1 AS unchanged,
	   min(r.result) FILTER (WHERE r.path_ord = 0) AS result
  FROM sph_calls AS c JOIN sph_results AS r ON r.call_ord = c.ord
 GROUP BY c.ord, c.call
 ORDER BY c.ord;
SELECT count(*) AS runs FROM sph_results;
SELECT count(*) AS hijacked_results FROM sph_results WHERE result ~ 'HIJACKED|evil|hijacked|2000-01-01';

-- prune_all() commits, so it runs at top level: with a retention that
-- lets it delete the stream's older frames (never the latest), then again
-- under each hostile path (nothing left to delete)
UPDATE datastreams.streams SET retention = '1 microsecond' WHERE id = '00000000-0000-4000-a000-00000000005a';
SELECT pg_sleep(0.01);
CALL datastreams.prune_all();
SET search_path = evil, public, pg_catalog;
CALL datastreams.prune_all();
SET search_path = evil, pg_temp, pg_catalog;
CALL datastreams.prune_all();
SET search_path = pg_temp, evil, public, pg_catalog;
UPDATE datastreams.streams SET retention = NULL WHERE id OPERATOR(pg_catalog.=) '00000000-0000-4000-a000-00000000005a';
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-a000-00000000005a', 100), ('00000000-0000-4000-a000-00000000005a', 101);
UPDATE datastreams.streams SET retention = '1 microsecond' WHERE id OPERATOR(pg_catalog.=) '00000000-0000-4000-a000-00000000005a';
SELECT pg_catalog.pg_sleep(0.01);
CALL datastreams.prune_all();
RESET search_path;
SELECT sequence FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-a000-00000000005a' ORDER BY sequence;

-- clean up
SET client_min_messages = warning;

DROP FUNCTION sph_run(), sph_frames_then_pointer();
DROP TABLE sph_calls, sph_paths, sph_results;
DROP TABLE pg_temp.accounts, pg_temp.trusted_roles, pg_temp.streams, pg_temp.frames, pg_temp.stream_state;
DROP SCHEMA evil CASCADE;
DO $$ BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM regress_sph_evil', current_database()); END $$;
DELETE FROM datastreams.streams WHERE account_id = 'regress_sph';
DELETE FROM datastreams.accounts WHERE id = 'regress_sph';
DROP ROLE regress_sph_evil, regress_sph_tenant, regress_sph_other;
RESET client_min_messages;
