--
-- streams: the rules of the streams trigger (issue 2), through the API and
-- through direct INSERT / UPDATE / COPY on datastreams.streams.
--
-- Runs as the superuser acting for account regress_streams_a through the
-- datastreams.account_id setting.  regress_streams.err() runs a statement
-- and shows its SQLSTATE, message, DETAIL and HINT, with generated UUIDs
-- masked; the fixed ids used here (00000000-...) are left as they are.
--
CREATE SCHEMA regress_streams;
CREATE FUNCTION regress_streams.err(cmd text) RETURNS text
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

SELECT id FROM datastreams.create_account('regress_streams_a');
SELECT id FROM datastreams.create_account('regress_streams_b');
SET datastreams.account_id = 'regress_streams_a';

--
-- Trimming and upper-casing, defaults
--
SELECT name, symbol, description, frequency, sla_ms, status, metadata,
       account_id, created_at = now() AS created_now, updated_at = now() AS updated_now
  FROM datastreams.create_stream(E'  Market feed \t', E' \n eth-usd  ', '  Ethereum price  ');

-- The API fills the defaults of every optional argument
SELECT description, frequency, sla_ms, status, metadata
  FROM datastreams.create_stream('defaults', 'def');

-- Multibyte symbols are upper-cased the way upper() does in this database
-- (the C locale of the test cluster leaves non-ASCII letters alone; see the
-- ICU database below for the full case mapping).
SELECT s.symbol = upper(btrim(t.input)) AS same_as_upper, s.symbol = upper(s.symbol) AS is_upper,
       octet_length(s.symbol) > char_length(s.symbol) AS still_multibyte
  FROM unnest(ARRAY[' straße ', 'éth', ' ǆemal-usd ', 'ñandú']) WITH ORDINALITY AS t(input, n),
       LATERAL datastreams.create_stream('multibyte', t.input) AS s
 ORDER BY t.n;

--
-- name and symbol are required (23502), through the API and directly
--
SELECT regress_streams.err($$SELECT datastreams.create_stream('', 'X')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream(E' \t\n ', 'X')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream(NULL, 'X')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', '')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', '   ')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', NULL)$$);
SELECT regress_streams.err($$INSERT INTO datastreams.streams (account_id, name, symbol) VALUES ('regress_streams_a', ' ', 'X')$$);
SELECT regress_streams.err($$INSERT INTO datastreams.streams (account_id, symbol) VALUES ('regress_streams_a', 'X')$$);
SELECT regress_streams.err($$INSERT INTO datastreams.streams (account_id, name, symbol) VALUES ('regress_streams_a', 'n', NULL)$$);

--
-- status: trimmed, lower-cased, empty/NULL -> inactive, else 22023
--
SELECT to_json(t.input) AS input, s.status
  FROM unnest(ARRAY[' ACTIVE ', 'Paused', E'\tinactive\n', '', '   ', NULL]) WITH ORDINALITY AS t(input, n),
       LATERAL datastreams.create_stream('status', 'ST', status => t.input) AS s
 ORDER BY t.n;
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', status => 'running')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', status => ' Stopped ')$$);
SELECT regress_streams.err($$INSERT INTO datastreams.streams (account_id, name, symbol, status) VALUES ('regress_streams_a', 'n', 'X', 'deleted')$$);

--
-- sla_ms: negative -> 0; frequency must be positive (22023)
--
SELECT sla_ms FROM datastreams.create_stream('sla', 'SLA', sla_ms => -250);
SELECT sla_ms FROM datastreams.create_stream('sla', 'SLA', sla_ms => 1500);
SELECT sla_ms FROM datastreams.create_stream('sla', 'SLA', sla_ms => NULL);
SELECT frequency FROM datastreams.create_stream('freq', 'F', frequency => '100 milliseconds');
SELECT frequency FROM datastreams.create_stream('freq', 'F', frequency => '1 day -23 hours');
SELECT frequency FROM datastreams.create_stream('freq', 'F', frequency => NULL);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', frequency => '0')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', frequency => '-1 second')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', frequency => '1 mon -30 days')$$);
SELECT regress_streams.err($$INSERT INTO datastreams.streams (account_id, name, symbol, frequency) VALUES ('regress_streams_a', 'n', 'X', '-5 minutes')$$);

--
-- metadata: keys trimmed and lower-cased, empty keys dropped, values
-- trimmed; non-object, non-string value, colliding keys -> 22023
--
SELECT metadata FROM datastreams.create_stream('meta', 'M',
	metadata => '{" Source ": "  exchange-api ", "ENV": "production", "": "dropped", "   ": "dropped too", "Region\t": "eu"}');
SELECT metadata FROM datastreams.create_stream('meta', 'M', metadata => '{}');
SELECT metadata FROM datastreams.create_stream('meta', 'M', metadata => NULL);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', metadata => '["a", "b"]')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', metadata => '"text"')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', metadata => 'null')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', metadata => '{"count": 3}')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', metadata => '{"ok": "yes", "flag": true}')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', metadata => '{"nested": {"a": "b"}}')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', metadata => '{"missing": null}')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', metadata => '{"Env": "a", " env ": "b"}')$$);
SELECT regress_streams.err($$SELECT datastreams.create_stream('n', 'X', metadata => '{"ENV": "a", "env": "b"}')$$);
SELECT regress_streams.err($$INSERT INTO datastreams.streams (account_id, name, symbol, metadata) VALUES ('regress_streams_a', 'n', 'X', '[]')$$);
-- nothing above was stored
SELECT count(*) AS streams_named_n FROM datastreams.streams WHERE name = 'n';

--
-- Direct INSERT: the same rules, and the account comes from the setting
-- when account_id is left out
--
INSERT INTO datastreams.streams (id, name, symbol, description, sla_ms, status, metadata, updated_at)
VALUES ('00000000-0000-4000-8000-000000000001', '  direct  ', ' btc-usd ', NULL, -1, NULL,
        '{" Feed ": " ws "}', '2000-01-01')
RETURNING id, account_id, name, symbol, description, sla_ms, status, metadata,
          updated_at = now() AS updated_now;
-- (acting for an account, not even a superuser writes another account's
-- streams: see hardening_grants)
RESET datastreams.account_id;
INSERT INTO datastreams.streams (id, account_id, name, symbol, metadata)
VALUES ('00000000-0000-4000-8000-000000000002', 'regress_streams_b', 'of b', 'b', NULL)
RETURNING id, account_id, symbol, status, metadata;
SET datastreams.account_id = 'regress_streams_a';
-- an id is generated when none is given (the default, or NULL)
INSERT INTO datastreams.streams (id, name, symbol) VALUES (NULL, 'null id', 'NID')
RETURNING id IS NOT NULL AS has_id, account_id;

-- COPY goes through the same trigger
COPY datastreams.streams (id, account_id, name, symbol, status, sla_ms, metadata) FROM stdin;
00000000-0000-4000-8000-000000000003	regress_streams_a	  copied  	 sol-usd 	 ACTIVE 	-7	{"A": " 1 "}
\.
SELECT name, symbol, status, sla_ms, metadata FROM datastreams.streams
 WHERE id = '00000000-0000-4000-8000-000000000003';
SELECT regress_streams.err($$COPY datastreams.streams (account_id, name, symbol, status) FROM PROGRAM 'printf "regress_streams_a\tn\tX\tgone\n"'$$);

--
-- UPDATE: the rules apply again; id, account_id and created_at are
-- immutable (22023); updated_at is maintained by the trigger
--
SELECT created_at AS created_before FROM datastreams.streams
 WHERE id = '00000000-0000-4000-8000-000000000001' \gset
SELECT pg_sleep(0.01);
UPDATE datastreams.streams
   SET name = ' renamed ', symbol = ' xbt-usd ', status = ' PAUSED ', sla_ms = -3,
       metadata = '{" Tier ": " Gold "}', updated_at = '2000-01-01'
 WHERE id = '00000000-0000-4000-8000-000000000001'
RETURNING name, symbol, status, sla_ms, metadata,
          created_at = :'created_before' AS created_kept,
          updated_at = now() AS updated_now, updated_at > created_at AS updated_later;
-- assigning the same values is not a change
UPDATE datastreams.streams SET id = id, account_id = account_id, created_at = created_at
 WHERE id = '00000000-0000-4000-8000-000000000001';
SELECT regress_streams.err($$UPDATE datastreams.streams SET id = '00000000-0000-4000-8000-0000000000ff' WHERE id = '00000000-0000-4000-8000-000000000001'$$);
SELECT regress_streams.err($$UPDATE datastreams.streams SET account_id = 'regress_streams_b' WHERE id = '00000000-0000-4000-8000-000000000001'$$);
SELECT regress_streams.err($$UPDATE datastreams.streams SET created_at = created_at - interval '1 day' WHERE id = '00000000-0000-4000-8000-000000000001'$$);
SELECT regress_streams.err($$UPDATE datastreams.streams SET name = '' WHERE id = '00000000-0000-4000-8000-000000000001'$$);
SELECT regress_streams.err($$UPDATE datastreams.streams SET symbol = NULL WHERE id = '00000000-0000-4000-8000-000000000001'$$);
SELECT regress_streams.err($$UPDATE datastreams.streams SET status = 'archived' WHERE id = '00000000-0000-4000-8000-000000000001'$$);
SELECT regress_streams.err($$UPDATE datastreams.streams SET frequency = '0 seconds' WHERE id = '00000000-0000-4000-8000-000000000001'$$);
SELECT regress_streams.err($$UPDATE datastreams.streams SET metadata = '{"a": "1", "A": "2"}' WHERE id = '00000000-0000-4000-8000-000000000001'$$);
SELECT regress_streams.err($$UPDATE datastreams.streams SET metadata = '{"a": 1}' WHERE id = '00000000-0000-4000-8000-000000000001'$$);
-- the failed updates changed nothing
SELECT id, account_id, name, symbol, status, sla_ms, frequency, metadata
  FROM datastreams.streams WHERE id = '00000000-0000-4000-8000-000000000001';

--
-- Full Unicode case mapping, in a database whose default collation is ICU:
-- the trigger upper-cases exactly like upper(), so 'straße' -> 'STRASSE'
--
CREATE DATABASE regress_streams_icu TEMPLATE template0 ENCODING 'UTF8'
	LOCALE_PROVIDER icu ICU_LOCALE 'und' LOCALE 'C';
\c regress_streams_icu
CREATE EXTENSION datastreams;
SELECT id FROM datastreams.create_account('icu');
SET datastreams.account_id = 'icu';
SELECT t.input, s.symbol, s.symbol = upper(btrim(t.input)) AS same_as_upper
  FROM unnest(ARRAY[' straße ', 'éth', 'ǆemal', 'ñandú-usd']) WITH ORDINALITY AS t(input, n),
       LATERAL datastreams.create_stream('icu', t.input) AS s
 ORDER BY t.n;
SELECT metadata FROM datastreams.create_stream('icu', 'X', metadata => '{" ÉTAT ": " Prêt "}');
\c contrib_regression
DROP DATABASE regress_streams_icu;

--
-- Clean up
--
RESET datastreams.account_id;
DELETE FROM datastreams.streams WHERE account_id IN ('regress_streams_a', 'regress_streams_b');
DELETE FROM datastreams.accounts WHERE id IN ('regress_streams_a', 'regress_streams_b');
DROP SCHEMA regress_streams CASCADE;
