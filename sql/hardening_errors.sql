--
-- hardening_errors: errors that help (issue 13, items 7 and 8).
--
-- Statements run directly, so the output is what a client sees: the
-- message, DETAIL, HINT and CONTEXT.  No error of create_frame(),
-- update_stream() or ingest() shows the extension's internal SQL as
-- context; range errors name the field; every user value quoted in a
-- message is clipped to 64 bytes; metadata has a size limit (54000) like
-- payloads.
--
CREATE ROLE regress_he_tenant;
SELECT id FROM datastreams.create_account('regress_he_a', 'regress_he_tenant');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms) VALUES
	('00000000-0000-4000-8000-0000000008a1', 'regress_he_a', 'a one', 'A1', 'active', 100),
	('00000000-0000-4000-8000-0000000008a2', 'regress_he_a', 'a two', 'A2', 'paused', 0);
SET ROLE regress_he_tenant;

--
-- update_stream(): the streams trigger's errors without the UPDATE as
-- context; conversions and ranges name the field
--
SELECT datastreams.update_stream('00000000-0000-4000-8000-0000000008a1', '{"sla_ms": 3000000000}');
SELECT datastreams.update_stream('00000000-0000-4000-8000-0000000008a1', '{"sla_ms": 1e20}');
SELECT datastreams.update_stream('00000000-0000-4000-8000-0000000008a1', '{"frequency": "every now and then"}');
SELECT datastreams.update_stream('00000000-0000-4000-8000-0000000008a1', '{"retention": "300000000 years"}');
SELECT datastreams.update_stream('00000000-0000-4000-8000-0000000008a1', jsonb_build_object('frequency', repeat('x', 100000)));
SELECT datastreams.update_stream('00000000-0000-4000-8000-0000000008a1', '{"status": "closed"}');
SELECT datastreams.update_stream('00000000-0000-4000-8000-0000000008a1', '{"name": " "}');
SELECT datastreams.update_stream('00000000-0000-4000-8000-0000000008a1', '{"frequency": "-1 second"}');
SELECT datastreams.update_stream('00000000-0000-4000-8000-0000000008a1', jsonb_build_object(repeat('k', 100000), 1));
SELECT datastreams.update_stream('00000000-0000-4000-8000-0000000008a1', '{"metadata": {"n": 1}}');
SELECT datastreams.update_stream(NULL, '{"name": "x"}');
SELECT datastreams.update_stream('00000000-0000-4000-8000-0000000008ff', '{"name": "x"}');
-- and what works still works
SELECT name, sla_ms, frequency, retention, metadata
  FROM datastreams.update_stream('00000000-0000-4000-8000-0000000008a1',
	'{"name": " one ", "sla_ms": 2147483647, "frequency": "250 ms", "retention": "7 days", "metadata": {" K ": " v "}}');
SELECT name, sla_ms, frequency, retention, metadata
  FROM datastreams.update_stream('00000000-0000-4000-8000-0000000008a1',
	'{"sla_ms": -5, "frequency": null, "retention": null, "metadata": null}');

--
-- create_frame(): the frames trigger's errors without the INSERT as
-- context; no stream is the 23502 of an INSERT without one
--
SELECT datastreams.create_frame(NULL);
INSERT INTO datastreams.frames (sequence) VALUES (1);
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000008a2', 1);
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000008a1', -1);
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000008a1', 1, status => repeat('bad', 100000));
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000008a1', 1, '[1]');
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000008ff', 1);
SELECT sequence, status FROM datastreams.create_frame('00000000-0000-4000-8000-0000000008a1', 5, latency_ms => 500);
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000008a1', 5);
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000008a1', 4);
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000008a1', 6, on_duplicate => 'ignore');
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000008a1', 6, on_duplicate => NULL);

--
-- ingest(): the same errors, with the element, without the INSERT
--
SELECT datastreams.ingest('00000000-0000-4000-8000-0000000008a1', '[{"sequence": 7}, {"sequence": 7}]');
SELECT datastreams.ingest('00000000-0000-4000-8000-0000000008a1', '[{"sequence": 8, "status": "nope"}]');

--
-- Metadata: a size limit (datastreams.max_metadata_bytes, 54000), and keys
-- quoted clipped
--
SHOW datastreams.max_metadata_bytes;
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000008a1', 10,
	metadata => jsonb_build_object('big', repeat('x', 70000)));
SELECT datastreams.update_stream('00000000-0000-4000-8000-0000000008a1',
	jsonb_build_object('metadata', jsonb_build_object('big', repeat('x', 70000))));
INSERT INTO datastreams.streams (name, symbol, metadata)
VALUES ('n', 'S', jsonb_build_object('big', repeat('x', 70000)));
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000008a1', 10,
	metadata => jsonb_build_object(repeat('k', 1000), 1));
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000008a1', 10,
	metadata => jsonb_build_object(repeat('k', 1000), 'a', upper(repeat('k', 1000)), 'b'));
-- just under the limit is fine
SELECT length(metadata ->> 'big')
  FROM datastreams.create_frame('00000000-0000-4000-8000-0000000008a1', 10,
	metadata => jsonb_build_object('big', repeat('x', 60000)));
RESET ROLE;
-- the limit is a superuser setting
SET datastreams.max_metadata_bytes = 16;
SET ROLE regress_he_tenant;
SELECT datastreams.create_frame('00000000-0000-4000-8000-0000000008a1', 11, metadata => '{"key": "value"}');
SET datastreams.max_metadata_bytes = '1MB';
RESET ROLE;
RESET datastreams.max_metadata_bytes;

--
-- Values from the session quoted clipped too
--
SET ROLE regress_he_tenant;
SELECT set_config('datastreams.account_id', repeat('z', 1000), false) IS NOT NULL AS set;
SELECT datastreams.list_streams();
RESET datastreams.account_id;
RESET ROLE;
CREATE ROLE regress_he_app;
SELECT datastreams.trust_role('regress_he_app');
SET ROLE regress_he_app;
SELECT set_config('datastreams.account_id', repeat('z', 1000), false) IS NOT NULL AS set;
SELECT datastreams.list_streams();
RESET datastreams.account_id;
RESET ROLE;

--
-- Administration: a duplicate account or binding says which, by name
--
SELECT datastreams.create_account('regress_he_a');
SELECT datastreams.create_account('regress_he_b', 'regress_he_tenant');
SELECT datastreams.bind_role(repeat('n', 1000), 'regress_he_app');
-- prune_all() inside a transaction block
BEGIN;
CALL datastreams.prune_all();
ROLLBACK;

-- clean up
DELETE FROM datastreams.streams WHERE account_id = 'regress_he_a';
DELETE FROM datastreams.accounts WHERE id = 'regress_he_a';
DROP ROLE regress_he_tenant, regress_he_app;
