--
-- api: the SQL API of issue 2 -- create_account, create_stream, get_stream,
-- list_streams, update_stream, create_frame, list_frames, latest_frame,
-- push and channel -- and its errors: no tenant context (42501), unknown
-- account (P0002), unknown or foreign stream (P0002), bad arguments (22023).
--
-- Stream ids are random, so they are kept in psql variables and never
-- printed; regress_api.err() shows an error's SQLSTATE, message, DETAIL
-- and HINT with UUIDs masked.
--
CREATE SCHEMA regress_api;
CREATE FUNCTION regress_api.err(cmd text) RETURNS text
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
		'[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}',
		'<uuid>', 'g');
END
$f$;
GRANT USAGE ON SCHEMA regress_api TO PUBLIC;
CREATE ROLE regress_api_user;
CREATE ROLE regress_api_tenant;

--
-- create_account: administrators only
--
SELECT id, role, created_at = now() AS created_now FROM datastreams.create_account('regress_api_a');
SELECT id, role FROM datastreams.create_account('regress_api_b', 'regress_api_tenant');
SELECT regress_api.err($$SELECT datastreams.create_account('regress_api_a')$$);
SELECT regress_api.err($$SELECT datastreams.create_account('')$$);
SELECT regress_api.err($$SELECT datastreams.create_account('   ')$$);
SELECT regress_api.err($$SELECT datastreams.create_account(NULL)$$);
SELECT regress_api.err($$SELECT datastreams.create_account('regress_api_c', 'regress_api_no_such_role')$$);
-- a role bound to one account cannot be bound to a second one
SELECT regexp_replace(regress_api.err($$SELECT datastreams.create_account('regress_api_c', 'regress_api_tenant')$$), '=\(\d+\)', '=(<oid>)');
-- non-administrators: EXECUTE is revoked from PUBLIC ...
SET ROLE regress_api_user;
SELECT regress_api.err($$SELECT datastreams.create_account('regress_api_c')$$);
SELECT regress_api.err($$SELECT datastreams.require_admin()$$);
RESET ROLE;
-- ... and granting EXECUTE is not enough: the function checks itself
GRANT EXECUTE ON FUNCTION datastreams.create_account(text, regrole) TO regress_api_user;
SET ROLE regress_api_user;
SELECT regress_api.err($$SELECT datastreams.create_account('regress_api_c')$$);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION datastreams.create_account(text, regrole) FROM regress_api_user;
SELECT count(*) AS regress_api_c FROM datastreams.accounts WHERE id = 'regress_api_c';

--
-- No tenant context: 42501 from every API function; unknown account: P0002
--
RESET datastreams.account_id;
SELECT datastreams.current_account() IS NULL AS no_account;
SELECT regress_api.err($$SELECT datastreams.create_stream('n', 'S')$$);
SELECT regress_api.err($$SELECT datastreams.list_streams()$$);
SELECT regress_api.err($$SELECT datastreams.get_stream('00000000-0000-4000-8000-000000000201')$$);
SELECT regress_api.err($$SELECT datastreams.update_stream('00000000-0000-4000-8000-000000000201', '{}')$$);
SELECT regress_api.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000201')$$);
SELECT regress_api.err($$SELECT datastreams.list_frames('00000000-0000-4000-8000-000000000201')$$);
SELECT regress_api.err($$SELECT datastreams.latest_frame('00000000-0000-4000-8000-000000000201')$$);
SELECT regress_api.err($$SELECT datastreams.push('datastreams/00000000-0000-4000-8000-000000000201', '{}')$$);
SET ROLE regress_api_user;
SELECT regress_api.err($$SELECT datastreams.create_stream('n', 'S')$$);
SELECT regress_api.err($$SELECT datastreams.list_streams()$$);
SELECT regress_api.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000201')$$);
-- the setting does not give an untrusted role an account
SET datastreams.account_id = 'regress_api_a';
SELECT datastreams.current_account() IS NULL AS still_no_account;
SELECT regress_api.err($$SELECT datastreams.list_streams()$$);
RESET ROLE;
SET datastreams.account_id = 'regress_api_nope';
SELECT regress_api.err($$SELECT datastreams.create_stream('n', 'S')$$);
SELECT regress_api.err($$SELECT datastreams.list_streams()$$);
SELECT regress_api.err($$SELECT datastreams.get_stream('00000000-0000-4000-8000-000000000201')$$);
SELECT regress_api.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000201')$$);
SELECT regress_api.err($$SELECT datastreams.push('datastreams/00000000-0000-4000-8000-000000000201', '{}')$$);

--
-- create_stream, get_stream, list_streams (newest first)
--
SET datastreams.account_id = 'regress_api_a';
SELECT id AS s1 FROM datastreams.create_stream('first', 'one', 'the first', '1 second', 500, 'active', '{"Env": "test"}') \gset
SELECT id AS s2 FROM datastreams.create_stream(name => 'second', symbol => 'two', status => 'active') \gset
SELECT id AS s3 FROM datastreams.create_stream('third', 'three') \gset
SELECT name, symbol, description, frequency, sla_ms, status, metadata, account_id
  FROM datastreams.get_stream(:'s1');
SELECT name FROM datastreams.list_streams();
SELECT count(*) = 3 AS three, bool_and(account_id = 'regress_api_a') AS all_mine FROM datastreams.list_streams();
-- a stream of account b: absent for account a, exactly like an unknown id
SET datastreams.account_id = 'regress_api_b';
SELECT id AS b1 FROM datastreams.create_stream('of b', 'B', status => 'active') \gset
SELECT name FROM datastreams.list_streams();
SET datastreams.account_id = 'regress_api_a';
SELECT regress_api.err(format('SELECT datastreams.get_stream(%L)', :'b1')) AS foreign_stream,
       regress_api.err($$SELECT datastreams.get_stream('00000000-0000-4000-8000-000000000201')$$) AS missing_stream;
SELECT regress_api.err($$SELECT datastreams.get_stream(NULL)$$);

--
-- update_stream: partial updates; unknown, immutable and mistyped keys: 22023
--
SELECT updated_at AS s1_updated FROM datastreams.get_stream(:'s1') \gset
SELECT name, symbol, description, frequency, sla_ms, status, metadata,
       updated_at > :'s1_updated' AS updated_later, updated_at = now() AS updated_now
  FROM datastreams.update_stream(:'s1', '{"symbol": " uno ", "sla_ms": 750}');
SELECT name, symbol, description, frequency, sla_ms, status, metadata
  FROM datastreams.update_stream(:'s1', '{"name": " First! ", "description": " new ", "frequency": "250 milliseconds", "status": "PAUSED", "metadata": {" Team ": " data "}}');
SELECT name, symbol, description, frequency, sla_ms, status, metadata
  FROM datastreams.update_stream(:'s1', '{}');
-- JSON null: optional fields fall back to their defaults, required ones fail
SELECT description, frequency, sla_ms, status, metadata
  FROM datastreams.update_stream(:'s1', '{"description": null, "frequency": null, "sla_ms": null, "status": null}');
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"name": null}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"symbol": "  "}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"colour": "red"}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"name": "x", "Name": "y"}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"id": "00000000-0000-4000-8000-000000000201"}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"account_id": "regress_api_b"}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"created_at": "2000-01-01"}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"updated_at": "2000-01-01"}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"name": 42}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"symbol": ["A"]}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"status": true}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"frequency": 1000}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"sla_ms": "100"}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"metadata": "x"}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"metadata": {"n": 1}}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"status": "closed"}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"frequency": "-1 second"}'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '["name", "x"]'));
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, NULL)', :'s1'));
-- a valid key does not sneak through beside a bad one
SELECT regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'s1', '{"name": "sneaky", "bogus": 1}'));
SELECT name, symbol, description, frequency, sla_ms, status, metadata FROM datastreams.get_stream(:'s1');
-- not found, and another account's stream is not found either
SELECT regress_api.err($$SELECT datastreams.update_stream('00000000-0000-4000-8000-000000000201', '{"name": "x"}')$$) AS missing_stream,
       regress_api.err(format('SELECT datastreams.update_stream(%L, %L)', :'b1', '{"name": "x"}')) AS foreign_stream;
SET datastreams.account_id = 'regress_api_b';
SELECT name FROM datastreams.get_stream(:'b1');

--
-- create_frame, list_frames (newest first, limit clamped, paging),
-- latest_frame
--
SET datastreams.account_id = 'regress_api_a';
SELECT datastreams.latest_frame(:'s2') IS NULL AS no_latest_yet;
SELECT count(*) AS no_frames_yet FROM datastreams.list_frames(:'s2');
SELECT sequence, payload, latency_ms, status, metadata, stream_id = :'s2' AS right_stream, account_id
  FROM datastreams.create_frame(:'s2', 1, '{"price": 1.5}', 12, 'ok', '{"Source": "ws"}');
SELECT sequence, payload, latency_ms, status, metadata
  FROM datastreams.create_frame(stream_id => :'s2', sequence => 2);
INSERT INTO datastreams.frames (stream_id, sequence, payload)
SELECT :'s2', g, jsonb_build_object('g', g) FROM generate_series(3, 700) AS g;
SELECT sequence, payload FROM datastreams.latest_frame(:'s2');
SELECT sequence FROM datastreams.list_frames(:'s2', 3);
SELECT count(*) AS default_limit FROM datastreams.list_frames(:'s2');
SELECT count(*) AS limit_0 FROM datastreams.list_frames(:'s2', 0);
SELECT count(*) AS limit_negative FROM datastreams.list_frames(:'s2', -7);
SELECT count(*) AS limit_null FROM datastreams.list_frames(:'s2', NULL);
SELECT count(*) AS limit_500 FROM datastreams.list_frames(:'s2', 500);
SELECT count(*) AS limit_501 FROM datastreams.list_frames(:'s2', 501);
SELECT count(*) AS limit_huge FROM datastreams.list_frames(:'s2', 2147483647);
SELECT max(sequence) AS top, min(sequence) AS bottom FROM datastreams.list_frames(:'s2', 1000);
-- paging backwards with before_sequence
SELECT sequence FROM datastreams.list_frames(:'s2', 4, before_sequence => 700);
SELECT sequence FROM datastreams.list_frames(:'s2', 4, before_sequence => 697);
SELECT sequence FROM datastreams.list_frames(:'s2', 4, before_sequence => 3);
SELECT count(*) AS past_the_start FROM datastreams.list_frames(:'s2', 4, before_sequence => 1);
SELECT count(*) AS before_null_is_from_top, max(sequence) FROM datastreams.list_frames(:'s2', 10, NULL);
-- walk every page of 200: 700 frames, each once, in order
WITH RECURSIVE pages(n, bottom, frames) AS (
	SELECT 1, min(sequence), count(*) FROM datastreams.list_frames(:'s2', 200)
	UNION ALL
	SELECT p.n + 1, f.bottom, f.frames
	  FROM pages AS p,
	       LATERAL (SELECT min(sequence) AS bottom, count(*) AS frames
	                  FROM datastreams.list_frames(:'s2', 200, p.bottom)) AS f
	 WHERE f.frames > 0
)
SELECT n, bottom, frames FROM pages ORDER BY n;
-- unknown or foreign streams: P0002
SELECT regress_api.err($$SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000201', 1)$$);
SELECT regress_api.err($$SELECT datastreams.list_frames('00000000-0000-4000-8000-000000000201')$$);
SELECT regress_api.err($$SELECT datastreams.latest_frame('00000000-0000-4000-8000-000000000201')$$);
SELECT regress_api.err(format('SELECT datastreams.create_frame(%L, 1)', :'b1'));
SELECT regress_api.err(format('SELECT datastreams.list_frames(%L)', :'b1'));
SELECT regress_api.err(format('SELECT datastreams.latest_frame(%L)', :'b1'));
-- the foreign stream really is untouched
SET datastreams.account_id = 'regress_api_b';
SELECT count(*) AS frames_of_b FROM datastreams.list_frames(:'b1');
SET datastreams.account_id = 'regress_api_a';

--
-- push(topic, payload): the DataEngine entry point
--
SELECT sequence > 1000000000000000000 AS ns_sequence, payload, status, stream_id = :'s3' AS right_stream
  FROM datastreams.push('datastreams/' || :'s3', '{"price": 2}');
SELECT payload FROM datastreams.push('datastreams/' || upper(:'s3'), '{"price": 3}');
SELECT count(*) AS pushed, bool_and(sequence > 1000000000000000000) AS ns_sequences
  FROM datastreams.list_frames(:'s3');
SELECT regress_api.err($$SELECT datastreams.push('datastreams/', '{}')$$);
SELECT regress_api.err($$SELECT datastreams.push('datastreams/not-a-uuid', '{}')$$);
SELECT regress_api.err($$SELECT datastreams.push('datastream/00000000-0000-4000-8000-000000000201', '{}')$$);
SELECT regress_api.err($$SELECT datastreams.push('00000000-0000-4000-8000-000000000201', '{}')$$);
SELECT regress_api.err($$SELECT datastreams.push(' datastreams/00000000-0000-4000-8000-000000000201', '{}')$$);
SELECT regress_api.err($$SELECT datastreams.push('datastreams/00000000-0000-4000-8000-000000000201 ', '{}')$$);
SELECT replace(regress_api.err($$SELECT datastreams.push(E'datastreams/00000000-0000-4000-8000-000000000201\n', '{}')$$), E'\n', '\n');
SELECT regress_api.err($$SELECT datastreams.push('datastreams/00000000-0000-4000-8000-000000000201/frames', '{}')$$);
SELECT regress_api.err($$SELECT datastreams.push('datastreams/{00000000-0000-4000-8000-000000000201}', '{}')$$);
SELECT regress_api.err($$SELECT datastreams.push('datastreams/00000000000040008000000000000201', '{}')$$);
SELECT regress_api.err($$SELECT datastreams.push('datastreams/00000000-0000-4000-8000-000000000201''); DROP TABLE datastreams.frames; --', '{}')$$);
SELECT regress_api.err($$SELECT datastreams.push('datastreams/'' OR 1=1 --', '{}')$$);
SELECT regress_api.err($$SELECT datastreams.push('datastreams/../streams', '{}')$$);
SELECT regress_api.err($$SELECT datastreams.push('', '{}')$$);
SELECT regress_api.err($$SELECT datastreams.push(NULL, '{}')$$);
SELECT regress_api.err(format('SELECT datastreams.push(%L, %L)', 'datastreams/' || :'s3', '[1]'));
SELECT regress_api.err(format('SELECT datastreams.push(%L, %L)', 'datastreams/' || :'s3', '"price"'));
SELECT regress_api.err(format('SELECT datastreams.push(%L, %L)', 'datastreams/' || :'s3', 'null'));
SELECT regress_api.err(format('SELECT datastreams.push(%L, NULL)', 'datastreams/' || :'s3'));
-- a well-formed topic of an unknown or foreign stream: P0002
SELECT regress_api.err($$SELECT datastreams.push('datastreams/00000000-0000-4000-8000-000000000201', '{}')$$);
SELECT regress_api.err(format('SELECT datastreams.push(%L, %L)', 'datastreams/' || :'b1', '{}'));
SELECT to_regclass('datastreams.frames') IS NOT NULL AS frames_still_there,
       count(*) AS still_two FROM datastreams.list_frames(:'s3');

--
-- channel(stream_id)
--
SELECT datastreams.channel('00000000-0000-4000-8000-000000000201');
SELECT datastreams.channel(:'s1') = 'datastreams_' || :'s1' AS channel_of_s1,
       octet_length(datastreams.channel(:'s1')) <= 63 AS fits_identifier;
SELECT datastreams.channel(NULL) IS NULL AS channel_of_null;

--
-- A bound tenant uses the same API without any setting
--
RESET datastreams.account_id;
SET ROLE regress_api_tenant;
SELECT datastreams.current_account();
SELECT name FROM datastreams.list_streams();
SELECT name, symbol FROM datastreams.create_stream('tenant made', 'tm');
SELECT name FROM datastreams.list_streams();
SELECT sequence FROM datastreams.create_frame(:'b1', 1);
SELECT sequence FROM datastreams.latest_frame(:'b1');
SELECT regress_api.err(format('SELECT datastreams.get_stream(%L)', :'s1'));
RESET ROLE;

--
-- Patches: a JSON null resets metadata to {}, sla_ms must be a whole
-- number; push topics are case-sensitive on the "datastreams/" prefix
--
SET datastreams.account_id = 'regress_api_a';
SELECT metadata FROM datastreams.update_stream(:'s1', '{"metadata": {"k": "v"}}');
SELECT metadata FROM datastreams.update_stream(:'s1', '{"metadata": null}');
SELECT regress_api.err(format($$SELECT datastreams.update_stream(%L, '{"sla_ms": 1.5}')$$, :'s1'));
SELECT sla_ms FROM datastreams.update_stream(:'s1', '{"sla_ms": 2.0}');
SELECT regress_api.err(format($$SELECT datastreams.push(%L, '{}')$$, 'DataStreams/' || :'s1'));
SELECT regress_api.err(format($$SELECT datastreams.push(%L, '{}')$$, 'datastreams/' || upper(:'s1')));

--
-- Clean up
--
RESET datastreams.account_id;
DELETE FROM datastreams.streams WHERE account_id IN ('regress_api_a', 'regress_api_b');
DELETE FROM datastreams.accounts WHERE id IN ('regress_api_a', 'regress_api_b');
DROP ROLE regress_api_user;
DROP ROLE regress_api_tenant;
DROP SCHEMA regress_api CASCADE;
