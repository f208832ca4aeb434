--
-- consumers: durable consumers (issue 14) -- create_consumer, poll, ack,
-- seek, drop_consumer, consumer_lag, and their errors, as tenants.
--
--   regress_consumers_a       bound to account regress_consumers_a
--   regress_consumers_b       bound to account regress_consumers_b
--   regress_consumers_app     trusted: acts for datastreams.account_id
--   regress_consumers_nobody  neither bound nor trusted
--
-- Streams have fixed ids (written by the superuser) so output is stable:
--   ...0a01 A1, ...0a02 A2 (account a), ...0b01 B1 (account b).
-- pg_temp.try() shows an error's SQLSTATE, message and DETAIL, generated
-- stream ids masked.
--
CREATE FUNCTION pg_temp.try(cmd text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
	st text; msg text; det text;
BEGIN
	EXECUTE cmd;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
	RETURN regexp_replace(st || ': ' || msg || CASE WHEN det <> '' THEN ' | DETAIL: ' || det ELSE '' END,
		'(?!00000000-)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g');
END
$f$;
-- frames poll() returns, as stream:sequence (streams by their last 4 digits)
CREATE FUNCTION pg_temp.polled(consumer text, lim integer DEFAULT 500) RETURNS text
LANGUAGE sql AS $f$
	SELECT coalesce(string_agg(right(f.stream_id::text, 4) || ':' || f.sequence, ' ' ORDER BY f.ordinality), '(none)')
	  FROM datastreams.poll(consumer, lim) WITH ORDINALITY AS f
$f$;
-- the same, of one stream only
CREATE FUNCTION pg_temp.polled_in(consumer text, stream uuid) RETURNS text
LANGUAGE sql AS $f$
	SELECT coalesce(string_agg(f.sequence::text, ' ' ORDER BY f.ordinality), '(none)')
	  FROM datastreams.poll(consumer, 10000) WITH ORDINALITY AS f
	 WHERE f.stream_id = stream
$f$;
-- every position of the current role's consumers
CREATE FUNCTION pg_temp.positions() RETURNS TABLE (consumer text, stream text, acknowledged bigint, missed bigint, missed_since_ack bigint)
LANGUAGE sql AS $f$
	SELECT p.consumer, right(p.stream_id::text, 4), p.acknowledged_sequence, p.frames_missed, p.missed_since_ack
	  FROM datastreams.consumer_positions AS p
	 ORDER BY p.consumer COLLATE "C", p.stream_id
$f$;

CREATE ROLE regress_consumers_a;
CREATE ROLE regress_consumers_b;
CREATE ROLE regress_consumers_app;
CREATE ROLE regress_consumers_nobody;
SELECT id FROM datastreams.create_account('regress_consumers_a', 'regress_consumers_a');
SELECT id FROM datastreams.create_account('regress_consumers_b', 'regress_consumers_b');
SELECT datastreams.trust_role('regress_consumers_app');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('00000000-0000-4000-8000-000000000a01', 'regress_consumers_a', 'a one', 'A1', 'active'),
	('00000000-0000-4000-8000-000000000a02', 'regress_consumers_a', 'a two', 'A2', 'active'),
	('00000000-0000-4000-8000-000000000b01', 'regress_consumers_b', 'b one', 'B1', 'active');
INSERT INTO datastreams.frames (stream_id, sequence)
SELECT '00000000-0000-4000-8000-000000000a01', g FROM generate_series(1, 3) AS g;
INSERT INTO datastreams.frames (stream_id, sequence)
SELECT '00000000-0000-4000-8000-000000000b01', g FROM generate_series(1, 3) AS g;

-- the tables are registered for pg_dump, like every table of the extension
SELECT c.relname
  FROM pg_extension AS e, unnest(e.extconfig) AS x(oid) JOIN pg_class AS c ON c.oid = x.oid
 WHERE e.extname = 'datastreams' AND c.relname LIKE 'consumer%'
 ORDER BY 1;

--------------------------------------------------------------------------
-- create_consumer, get_consumer, list_consumers
--------------------------------------------------------------------------
SET ROLE regress_consumers_a;
-- every stream, from the latest frame: a01 is at 3, a02 (no frame) at 0
SELECT account_id, name, streams, start FROM datastreams.create_consumer('latest');
-- every stream, from the earliest retained frame
SELECT account_id, name, streams, start FROM datastreams.create_consumer('earliest', NULL, 'earliest');
-- some streams: sorted, without duplicates; start is trimmed and case-folded
SELECT account_id, name, streams, start FROM datastreams.create_consumer('listed',
	ARRAY['00000000-0000-4000-8000-000000000a02', '00000000-0000-4000-8000-000000000a01',
		  '00000000-0000-4000-8000-000000000a02']::uuid[], ' Earliest ');
SELECT account_id, name, streams, start FROM datastreams.create_consumer(name => 'named', start => 'latest');
SELECT * FROM pg_temp.positions();
SELECT name, start FROM datastreams.list_consumers();
SELECT name, streams FROM datastreams.get_consumer('listed');
-- errors
SELECT pg_temp.try($$SELECT datastreams.create_consumer(NULL)$$);
SELECT pg_temp.try($$SELECT datastreams.create_consumer('  ')$$);
SELECT pg_temp.try($$SELECT datastreams.create_consumer(repeat('x', 256))$$);
SELECT pg_temp.try($$SELECT datastreams.create_consumer('bad', NULL, 'newest')$$);
SELECT pg_temp.try($$SELECT datastreams.create_consumer('bad', '{}')$$);
SELECT pg_temp.try($$SELECT datastreams.create_consumer('bad', ARRAY[NULL]::uuid[])$$);
SELECT pg_temp.try($$SELECT datastreams.create_consumer('bad', ARRAY['00000000-0000-4000-8000-000000000f01']::uuid[])$$);
SELECT pg_temp.try($$SELECT datastreams.create_consumer('bad', ARRAY['00000000-0000-4000-8000-000000000a01', '00000000-0000-4000-8000-000000000b01']::uuid[])$$);
SELECT pg_temp.try($$SELECT datastreams.create_consumer('latest')$$);
SELECT pg_temp.try($$SELECT datastreams.get_consumer('missing')$$);
SELECT pg_temp.try($$SELECT datastreams.drop_consumer('missing')$$);
-- nothing of the failed calls was kept
SELECT count(*) AS consumers FROM datastreams.consumers;

--------------------------------------------------------------------------
-- poll and ack
--------------------------------------------------------------------------
INSERT INTO datastreams.frames (stream_id, sequence)
SELECT '00000000-0000-4000-8000-000000000a01', g FROM generate_series(4, 6) AS g;
INSERT INTO datastreams.frames (stream_id, sequence)
SELECT '00000000-0000-4000-8000-000000000a02', g FROM generate_series(10, 40, 10) AS g;
-- lowest sequence first within each stream, never acknowledged streams
-- first (by stream id)
SELECT pg_temp.polled('latest') AS latest, pg_temp.polled('earliest') AS earliest;
-- polling does not move the position
SELECT pg_temp.polled('latest') AS latest_again;
-- at most "limit" frames
SELECT pg_temp.polled('latest', 2) AS two, pg_temp.polled('latest', 5) AS five,
	   pg_temp.polled('latest', NULL) AS default_limit;
SELECT pg_temp.try($$SELECT datastreams.poll('latest', 0)$$);
SELECT pg_temp.try($$SELECT datastreams.poll('latest', -1)$$);
SELECT count(*) AS capped_at_10000 FROM datastreams.poll('earliest', 2000000000);
-- ack moves the position; true when it moved
SELECT datastreams.ack('latest', '00000000-0000-4000-8000-000000000a01', 5) AS moved;
SELECT pg_temp.polled('latest') AS after_ack;
-- backwards and in place are no-ops
SELECT datastreams.ack('latest', '00000000-0000-4000-8000-000000000a01', 4) AS backwards,
	   datastreams.ack('latest', '00000000-0000-4000-8000-000000000a01', 5) AS in_place;
-- any sequence up to the latest: sequences need not be those of frames
SELECT datastreams.ack('latest', '00000000-0000-4000-8000-000000000a02', 25) AS between_frames;
SELECT pg_temp.polled('latest') AS after_ack_between;
-- the latest sequence itself: caught up
SELECT datastreams.ack('latest', '00000000-0000-4000-8000-000000000a01', 6) AS to_latest,
	   datastreams.ack('latest', '00000000-0000-4000-8000-000000000a02', 40) AS to_latest;
SELECT pg_temp.polled('latest') AS caught_up;
-- the consumer's position rows, and nothing else changed
SELECT * FROM pg_temp.positions();
SELECT consumer, stream, acknowledged_at IS NOT NULL AS acknowledged_at_set
  FROM (SELECT p.consumer, right(p.stream_id::text, 4) AS stream, p.acknowledged_at
		  FROM datastreams.consumer_positions AS p WHERE p.consumer = 'latest') AS x
 ORDER BY 2;
-- errors
SELECT pg_temp.try($$SELECT datastreams.ack('latest', '00000000-0000-4000-8000-000000000a01', 7)$$);
SELECT pg_temp.try($$SELECT datastreams.ack('latest', '00000000-0000-4000-8000-000000000a01', -1)$$);
SELECT pg_temp.try($$SELECT datastreams.ack('latest', '00000000-0000-4000-8000-000000000a01', NULL)$$);
SELECT pg_temp.try($$SELECT datastreams.ack('latest', '00000000-0000-4000-8000-000000000f01', 1)$$);
SELECT pg_temp.try($$SELECT datastreams.ack('latest', NULL, 1)$$);
SELECT pg_temp.try($$SELECT datastreams.ack('missing', '00000000-0000-4000-8000-000000000a01', 1)$$);
SELECT pg_temp.try($$SELECT datastreams.ack(NULL, '00000000-0000-4000-8000-000000000a01', 1)$$);
SELECT pg_temp.try($$SELECT datastreams.poll('missing')$$);
SELECT pg_temp.try($$SELECT datastreams.poll(NULL)$$);

-- an ack is part of the caller's transaction
BEGIN;
SELECT datastreams.ack('earliest', '00000000-0000-4000-8000-000000000a01', 6) AS moved_in_transaction;
SELECT pg_temp.polled('earliest') AS inside;
ROLLBACK;
SELECT pg_temp.polled('earliest') AS after_rollback;
BEGIN;
SELECT datastreams.ack('earliest', '00000000-0000-4000-8000-000000000a01', 2);
SAVEPOINT s;
SELECT datastreams.ack('earliest', '00000000-0000-4000-8000-000000000a01', 6);
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT pg_temp.polled('earliest') AS after_savepoint_rollback;

-- seek: backwards to replay, forwards to skip; the same bounds as ack
SELECT datastreams.seek('latest', '00000000-0000-4000-8000-000000000a01', 0);
SELECT pg_temp.polled('latest', 3) AS replay;
SELECT datastreams.seek('latest', '00000000-0000-4000-8000-000000000a01', 5);
SELECT pg_temp.polled('latest') AS skipped;
SELECT pg_temp.try($$SELECT datastreams.seek('latest', '00000000-0000-4000-8000-000000000a01', 7)$$);
SELECT pg_temp.try($$SELECT datastreams.seek('latest', '00000000-0000-4000-8000-000000000a01', -1)$$);
SELECT datastreams.seek('latest', '00000000-0000-4000-8000-000000000a01', 6);

--------------------------------------------------------------------------
-- Streams created later, streams without frames, deleted streams
--------------------------------------------------------------------------
SELECT id AS a3 FROM datastreams.create_stream('a three', 'A3') \gset
-- a stream without frames: only 0 can be acknowledged
SELECT pg_temp.try(format($$SELECT datastreams.ack('latest', %L, 1)$$, :'a3'));
SELECT datastreams.ack('latest', :'a3', 0) AS zero;
INSERT INTO datastreams.frames (stream_id, sequence) VALUES (:'a3', 1), (:'a3', 2);
-- consumers of every stream get all of a later stream's frames, whatever
-- their start; a consumer of listed streams does not get it at all
SELECT pg_temp.polled_in('latest', :'a3') AS latest_gets_a3,
	   pg_temp.polled_in('named', :'a3') AS named_gets_a3,
	   pg_temp.polled_in('earliest', :'a3') AS earliest_gets_a3,
	   pg_temp.polled_in('listed', :'a3') AS listed_gets_nothing;
SELECT pg_temp.try(format($$SELECT datastreams.ack('listed', %L, 1)$$, :'a3'));
-- ack also works on a later stream before any poll saw it
SELECT id AS a4 FROM datastreams.create_stream('a four', 'A4') \gset
INSERT INTO datastreams.frames (stream_id, sequence) VALUES (:'a4', 1), (:'a4', 2);
SELECT datastreams.ack('earliest', :'a4', 1) AS ack_unseen_stream;
SELECT pg_temp.polled_in('earliest', :'a4') AS earliest_resumes_after_ack,
	   pg_temp.polled_in('latest', :'a4') AS latest_from_the_start;
-- deleting a stream deletes its positions; the consumers carry on
RESET ROLE;
DELETE FROM datastreams.streams WHERE id IN (:'a3', :'a4');
SET ROLE regress_consumers_a;
SELECT consumer, count(*) AS positions FROM datastreams.consumer_positions GROUP BY 1 ORDER BY consumer COLLATE "C";
SELECT pg_temp.polled('latest') AS latest_without_a3;

--------------------------------------------------------------------------
-- consumer_lag
--------------------------------------------------------------------------
RESET ROLE;
-- frames written an hour ago, so seconds_behind is known to the minute
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT '00000000-0000-4000-8000-000000000a01', g, now() - interval '1 hour' FROM generate_series(7, 9) AS g;
SET ROLE regress_consumers_a;
SELECT consumer, right(stream_id::text, 4) AS stream, account_id, acknowledged_sequence, latest_sequence,
	   frames_behind, round(seconds_behind / 60) AS minutes_behind, frames_missed,
	   acknowledged_at IS NOT NULL AS acknowledged
  FROM datastreams.consumer_lag
 ORDER BY consumer COLLATE "C", stream_id;
-- a consumer of every stream that has not polled since a stream was
-- created counts that stream from 0, as its next poll will
SELECT id AS a5 FROM datastreams.create_stream('a five', 'A5') \gset
INSERT INTO datastreams.frames (stream_id, sequence) VALUES (:'a5', 7);
SELECT consumer, acknowledged_sequence, latest_sequence, frames_behind
  FROM datastreams.consumer_lag WHERE stream_id = :'a5' ORDER BY consumer COLLATE "C";
SELECT count(*) AS a5_positions FROM datastreams.consumer_positions WHERE stream_id = :'a5';
RESET ROLE;
DELETE FROM datastreams.streams WHERE id = :'a5';

--------------------------------------------------------------------------
-- Tenancy: another account's consumer is exactly a missing one
--------------------------------------------------------------------------
SET ROLE regress_consumers_b;
SELECT count(*) AS consumers, (SELECT count(*) FROM datastreams.consumer_positions) AS positions,
	   (SELECT count(*) FROM datastreams.consumer_lag) AS lag_rows
  FROM datastreams.consumers;
SELECT name FROM datastreams.list_consumers();
SELECT f AS call,
	   pg_temp.try(format(f, 'latest', '00000000-0000-4000-8000-000000000b01')) AS other_account,
	   replace(pg_temp.try(format(f, 'latest', '00000000-0000-4000-8000-000000000b01')), 'latest', 'X')
	 = replace(pg_temp.try(format(f, 'nonexistent', '00000000-0000-4000-8000-000000000b01')), 'nonexistent', 'X') AS same_as_missing
  FROM unnest(ARRAY[
	'SELECT datastreams.get_consumer(%L) -- %s',
	'SELECT datastreams.poll(%L) -- %s',
	'SELECT datastreams.ack(%L, %L, 1)',
	'SELECT datastreams.seek(%L, %L, 1)',
	'SELECT datastreams.drop_consumer(%L) -- %s']) WITH ORDINALITY AS t(f, n)
 ORDER BY n;
-- the same name is free in this account
SELECT account_id, name, streams FROM datastreams.create_consumer('latest');
SELECT pg_temp.polled('latest') AS b_latest;
-- another account's stream: P0002 from the API and from direct writes,
-- the same as a missing stream
SELECT pg_temp.try($$SELECT datastreams.create_consumer('x', ARRAY['00000000-0000-4000-8000-000000000a01']::uuid[])$$) AS other_stream,
	   pg_temp.try($$SELECT datastreams.ack('latest', '00000000-0000-4000-8000-000000000a01', 1)$$) AS ack_other_stream;
SELECT pg_temp.try($$INSERT INTO datastreams.consumer_positions (account_id, consumer, stream_id) VALUES ('regress_consumers_b', 'latest', '00000000-0000-4000-8000-000000000a02')$$) AS other_stream,
	   pg_temp.try($$INSERT INTO datastreams.consumer_positions (account_id, consumer, stream_id) VALUES ('regress_consumers_b', 'latest', '00000000-0000-4000-8000-000000000f02')$$) AS missing_stream;
-- rows of another account: invisible, or refused by row-level security
SELECT pg_temp.try($$INSERT INTO datastreams.consumers (account_id, name) VALUES ('regress_consumers_a', 'planted')$$);
SELECT pg_temp.try($$INSERT INTO datastreams.consumer_positions (account_id, consumer, stream_id) VALUES ('regress_consumers_a', 'latest', '00000000-0000-4000-8000-000000000b01')$$);
WITH u AS (UPDATE datastreams.consumer_positions SET acknowledged_sequence = 0 WHERE account_id = 'regress_consumers_a' RETURNING 1)
SELECT count(*) AS positions_updated FROM u;
-- (tenants have no DELETE on consumers at all: drop_consumer() does it)
SELECT pg_temp.try($$DELETE FROM datastreams.consumers WHERE account_id = 'regress_consumers_a'$$) AS delete_consumers;
SELECT pg_temp.try($$DELETE FROM datastreams.consumer_positions$$);
SELECT pg_temp.try($$UPDATE datastreams.consumers SET start = 'earliest'$$);
SELECT datastreams.drop_consumer('latest');
RESET ROLE;

-- a trusted application role acts for the account the setting names
SET ROLE regress_consumers_app;
SELECT pg_temp.try($$SELECT datastreams.list_consumers()$$);
SET datastreams.account_id = 'regress_consumers_a';
SELECT name FROM datastreams.list_consumers();
SELECT pg_temp.polled('latest') AS app_polls_a;
SET datastreams.account_id = 'regress_consumers_b';
SELECT pg_temp.try($$SELECT datastreams.poll('latest')$$);
RESET datastreams.account_id;
RESET ROLE;
-- a role without an account
SET ROLE regress_consumers_nobody;
SELECT pg_temp.try($$SELECT datastreams.create_consumer('x')$$);
SELECT pg_temp.try($$SELECT datastreams.poll('latest')$$);
SELECT pg_temp.try($$SELECT datastreams.ack('latest', '00000000-0000-4000-8000-000000000a01', 1)$$);
SELECT count(*) AS lag_rows FROM datastreams.consumer_lag;
RESET ROLE;
-- account b's rows are untouched
SELECT name, count(p.*) AS positions FROM datastreams.consumers AS c
  LEFT JOIN datastreams.consumer_positions AS p ON p.account_id = c.account_id AND p.consumer = c.name
 WHERE c.account_id LIKE 'regress_consumers%'
 GROUP BY c.account_id, c.name ORDER BY c.account_id, c.name COLLATE "C";

--------------------------------------------------------------------------
-- Retention wins; the consumer is told what it missed
--------------------------------------------------------------------------
-- a01 has frames 1..9 (7..9 an hour old); positions: latest 6, earliest 2,
-- listed 0, named 3, and earliest2 at 7.  A retention of 30 minutes removes
-- 7 and 8 (never the latest frame, 9); frames 1..6 are recent and stay.
-- earliest2 acknowledged 7 in time: it missed only 8.
SET ROLE regress_consumers_a;
SELECT name FROM datastreams.create_consumer('earliest2', ARRAY['00000000-0000-4000-8000-000000000a01']::uuid[], 'earliest');
SELECT datastreams.ack('earliest2', '00000000-0000-4000-8000-000000000a01', 7);
RESET ROLE;
UPDATE datastreams.streams SET retention = '30 minutes' WHERE id = '00000000-0000-4000-8000-000000000a01';
SELECT datastreams.prune() AS pruned;
SET ROLE regress_consumers_a;
SELECT * FROM pg_temp.positions() WHERE stream = '0a01';
-- poll warns, once per poll, until a frame of the stream is acknowledged
SELECT pg_temp.polled('latest') AS latest_after_prune;
SELECT pg_temp.polled('latest') AS warned_again;
SELECT datastreams.ack('latest', '00000000-0000-4000-8000-000000000a01', 9);
SELECT pg_temp.polled('latest') AS no_more_warning;
-- a rolled back ack leaves the warning
BEGIN;
SELECT datastreams.ack('named', '00000000-0000-4000-8000-000000000a01', 9);
ROLLBACK;
SELECT pg_temp.polled('named') AS named_still_warned;
SELECT consumer, frames_missed FROM datastreams.consumer_lag
 WHERE stream_id = '00000000-0000-4000-8000-000000000a01' ORDER BY consumer COLLATE "C";
RESET ROLE;
-- frame 1 is below every position but listed's (0): only listed misses it;
-- deleting frames of a stream without consumers changes nothing
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-000000000a01', 10);
DELETE FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-8000-000000000a01' AND sequence = 1;
DELETE FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-8000-000000000b01' AND sequence = 1;
SET ROLE regress_consumers_a;
SELECT * FROM pg_temp.positions() WHERE stream = '0a01';
RESET ROLE;
UPDATE datastreams.streams SET retention = NULL WHERE id = '00000000-0000-4000-8000-000000000a01';

--------------------------------------------------------------------------
-- stream_health flags streams whose consumers fall behind
--------------------------------------------------------------------------
SET ROLE regress_consumers_a;
SELECT name, setting, unit, context FROM pg_settings WHERE name = 'datastreams.health_consumer_lag';
-- every unacknowledged frame is recent: nobody is a minute behind
SELECT right(stream_id::text, 4) AS stream, consumers, consumers_behind, healthy, reason
  FROM datastreams.stream_health ORDER BY stream_id;
RESET ROLE;
-- latest's oldest unacknowledged frame becomes two minutes old (the
-- others' oldest is still a recent one)
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
VALUES ('00000000-0000-4000-8000-000000000a02', 50, now() - interval '2 minutes');
SET ROLE regress_consumers_a;
SELECT right(stream_id::text, 4) AS stream, consumers, consumers_behind, healthy, reason,
	   round(consumer_seconds_behind / 60) AS minutes
  FROM datastreams.stream_health ORDER BY stream_id;
SET datastreams.health_consumer_lag = '5min';
SELECT right(stream_id::text, 4) AS stream, consumers_behind, healthy FROM datastreams.stream_health ORDER BY stream_id;
SELECT pg_temp.try($$SET datastreams.health_consumer_lag = 0$$);
RESET datastreams.health_consumer_lag;
-- the columns of 1.1 come first, unchanged
SELECT string_agg(attname, ', ' ORDER BY attnum) AS columns
  FROM pg_attribute WHERE attrelid = 'datastreams.stream_health'::regclass AND attnum > 0;
RESET ROLE;

--------------------------------------------------------------------------
-- metrics(): lag per consumer and stream
--------------------------------------------------------------------------
SELECT line FROM regexp_split_to_table(datastreams.metrics(), E'\n') AS line
 WHERE line LIKE '# % datastreams_consumer%'
	OR (line LIKE 'datastreams_consumer%' AND line LIKE '%"regress_consumers%'
		AND line NOT LIKE 'datastreams_consumer_lag_seconds{%')
 ORDER BY line COLLATE "C";
SELECT line ~ ' [0-9]+\.[0-9]{3}$' AS seconds_with_milliseconds
  FROM regexp_split_to_table(datastreams.metrics(), E'\n') AS line
 WHERE line LIKE 'datastreams_consumer_lag_seconds{account_id="regress_consumers_a",consumer="listed",stream_id="00000000-0000-4000-8000-000000000a02"}%';
-- a tenant gets its own account's series only
SET ROLE regress_consumers_b;
SELECT (datastreams.create_consumer('b')).name AS created;
SELECT string_agg(DISTINCT substring(line FROM 'account_id="([^"]*)"'), ',') AS accounts
  FROM regexp_split_to_table(datastreams.metrics(), E'\n') AS line
 WHERE line LIKE 'datastreams_consumer%';
RESET ROLE;

--------------------------------------------------------------------------
-- poll reads through the (stream_id, sequence) index
--------------------------------------------------------------------------
INSERT INTO datastreams.frames (stream_id, sequence)
SELECT '00000000-0000-4000-8000-000000000a02', g FROM generate_series(100, 20099) AS g;
ANALYZE datastreams.frames;
SET ROLE regress_consumers_a;
-- (counters of earlier transactions may still be pending in this backend)
SELECT pg_stat_force_next_flush();
BEGIN;
SELECT count(*) AS polled FROM datastreams.poll('listed', 1000);
SELECT seq_scan AS frames_seq_scans, idx_scan > 0 AS frames_index_scans
  FROM pg_stat_xact_user_tables WHERE relid = 'datastreams.frames'::regclass;
COMMIT;
RESET ROLE;

--------------------------------------------------------------------------
-- drop_consumer; an account with consumers cannot be deleted
--------------------------------------------------------------------------
DELETE FROM datastreams.streams WHERE account_id = 'regress_consumers_b';
SELECT pg_temp.try($$DELETE FROM datastreams.accounts WHERE id = 'regress_consumers_b'$$);
SET ROLE regress_consumers_a;
SELECT datastreams.drop_consumer('listed');
SELECT name FROM datastreams.list_consumers();
SELECT count(*) AS listed_positions FROM datastreams.consumer_positions WHERE consumer = 'listed';
SELECT pg_temp.try($$SELECT datastreams.drop_consumer('listed')$$);
RESET ROLE;

-- clean up
DELETE FROM datastreams.consumers WHERE account_id LIKE 'regress_consumers%';
DELETE FROM datastreams.streams WHERE account_id LIKE 'regress_consumers%';
DELETE FROM datastreams.accounts WHERE id LIKE 'regress_consumers%';
SELECT datastreams.untrust_role('regress_consumers_app');
DROP ROLE regress_consumers_a;
DROP ROLE regress_consumers_b;
DROP ROLE regress_consumers_app;
DROP ROLE regress_consumers_nobody;
