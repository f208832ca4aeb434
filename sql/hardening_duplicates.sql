--
-- hardening_duplicates: a producer whose acknowledgement was lost sends
-- the same frame again (issue 13, item 9).  With on_duplicate => 'skip',
-- create_frame() returns the stored frame when the frame sent is the same
-- (payload, normalised metadata, latency, status; an "ok" the SLA made
-- "late" is the same), stores nothing, announces nothing and counts
-- nothing; a different frame under a stored sequence is still 23505.
--
CREATE ROLE regress_hd_tenant;
SELECT id FROM datastreams.create_account('regress_hd_a', 'regress_hd_tenant');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms) VALUES
	('00000000-0000-4000-8000-0000000009a1', 'regress_hd_a', 'a one', 'A1', 'active', 100);
SELECT datastreams.reset_metrics();
SET ROLE regress_hd_tenant;

SELECT sequence, payload, latency_ms, status, metadata
  FROM datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 1, '{"p": 1}', 500, ' OK ',
	'{" Source ": " ws "}');
SELECT id AS first_id, created_at AS first_at FROM datastreams.frames WHERE sequence = 1 \gset
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 2, '{"p": 2}');
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 3, '{"p": 3}', status => 'error');

-- the default is still an error
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 1, '{"p": 1}', 500, ' OK ',
	'{" Source ": " ws "}');
-- skip: the same frame, sent again (also below the latest sequence), is the stored one
SELECT id = :'first_id' AS same_id, created_at = :'first_at' AS same_time, sequence, payload, status, metadata
  FROM datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 1, '{"p": 1}', 500, ' OK ',
	'{" Source ": " ws "}', on_duplicate => 'skip');
SELECT sequence, status FROM datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 1, '{"p": 1}', 500, 'ok',
	'{"source": "ws"}', 'skip');
SELECT sequence, status FROM datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 1, '{"p": 1}', 500, 'late',
	'{"source": "ws"}', 'skip');
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 2, '{"p": 2}', on_duplicate => 'skip');
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 2, '{"p": 2}', -7, NULL, NULL, 'skip');
SELECT sequence, status FROM datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 3, '{"p": 3}',
	status => 'ERROR', on_duplicate => 'skip');
-- a different frame under a stored sequence: 23505, naming what differs
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 1, '{"p": 9}', 500, 'ok',
	'{"source": "ws"}', 'skip');
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 1, '{"p": 1}', 500, 'ok',
	'{"source": "rest"}', 'skip');
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 1, '{"p": 1}', 501, 'ok',
	'{"source": "ws"}', 'skip');
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 1, '{"p": 1}', 500, 'error',
	'{"source": "ws"}', 'skip');
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 2, on_duplicate => 'skip');
-- a new sequence is stored as usual, and a missing one below the latest is
-- still out of order
SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 5, '{"p": 5}', on_duplicate => 'skip');
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', 4, '{"p": 4}', on_duplicate => 'skip');
-- without a sequence there is nothing to repeat
SELECT sequence > 5 AS new_sequence FROM datastreams.create_frame('00000000-0000-4000-8000-0000000009a1', on_duplicate => 'skip');
RESET ROLE;

-- stored once each, counted once each
SELECT CASE WHEN sequence < 100 THEN sequence::text ELSE 'now in ns' END AS sequence, status
  FROM datastreams.frames WHERE stream_id = '00000000-0000-4000-8000-0000000009a1'
 ORDER BY frames.sequence;
SELECT frames_total, frames_ok, frames_late, frames_error, latency_mean_ms
  FROM datastreams.stream_health WHERE stream_id = '00000000-0000-4000-8000-0000000009a1';
SELECT m[1] AS status, m[2] AS frames_created
  FROM regexp_matches(datastreams.metrics(),
	'datastreams_frames_created_total\{account_id="regress_hd_a",stream_id="00000000-0000-4000-8000-0000000009a1",status="([a-z]+)"\} (\d+)',
	'g') AS m
 ORDER BY 1;

-- clean up
DELETE FROM datastreams.streams WHERE account_id = 'regress_hd_a';
DELETE FROM datastreams.accounts WHERE id = 'regress_hd_a';
DROP ROLE regress_hd_tenant;
