/* datastreams--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION datastreams UPDATE TO '1.1'" to load this file. \quit

--------------------------------------------------------------------------
-- Observability: metrics and stream health
--------------------------------------------------------------------------

-- (end of observability)

--------------------------------------------------------------------------
-- Retention
--------------------------------------------------------------------------

-- Per-stream retention: NULL means the setting datastreams.default_retention
-- (whose default keeps every frame).  The streams trigger rejects a
-- retention that is not positive (22023).
ALTER TABLE datastreams.streams ADD COLUMN retention interval;
COMMENT ON COLUMN datastreams.streams.retention IS 'how long frames are kept (by created_at); NULL means datastreams.default_retention';

-- create_stream gains a trailing retention argument; every other parameter
-- is unchanged, so existing calls keep working.
DROP FUNCTION datastreams.create_stream(text, text, text, interval, integer, text, jsonb);
CREATE FUNCTION datastreams.create_stream(name text, symbol text,
	description text DEFAULT '', frequency interval DEFAULT NULL,
	sla_ms integer DEFAULT 0, status text DEFAULT 'inactive',
	metadata jsonb DEFAULT '{}', retention interval DEFAULT NULL)
RETURNS datastreams.streams
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO datastreams.streams AS s
		(account_id, name, symbol, description, frequency, sla_ms, status, metadata, retention)
	VALUES (datastreams.require_account(), $1, $2, $3, $4, $5, $6, $7, $8)
	RETURNING s.*;
$$;
COMMENT ON FUNCTION datastreams.create_stream(text, text, text, interval, integer, text, jsonb, interval) IS 'create a stream of the current account';

-- update_stream accepts the patch key retention (a string interval or null).
CREATE OR REPLACE FUNCTION datastreams.update_stream(id uuid, patch jsonb)
RETURNS datastreams.streams
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_account();
	key text;
	result datastreams.streams;
BEGIN
	IF patch IS NULL OR jsonb_typeof(patch) <> 'object' THEN
		RAISE EXCEPTION 'patch must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR key IN SELECT jsonb_object_keys(patch) LOOP
		IF key IN ('id', 'account_id', 'created_at', 'updated_at') THEN
			RAISE EXCEPTION 'stream field "%" cannot be changed', key
				USING ERRCODE = 'invalid_parameter_value';
		ELSIF key NOT IN ('name', 'symbol', 'description', 'frequency', 'sla_ms', 'status', 'metadata', 'retention') THEN
			RAISE EXCEPTION 'unknown stream field "%"', left(key, 100)
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'The fields that can be changed are name, symbol, description, frequency, sla_ms, status, metadata and retention.';
		END IF;
		IF key IN ('name', 'symbol', 'description', 'status', 'frequency', 'retention')
		   AND jsonb_typeof(patch -> key) NOT IN ('string', 'null') THEN
			RAISE EXCEPTION 'stream field "%" must be a string', key USING ERRCODE = 'invalid_parameter_value';
		ELSIF key = 'sla_ms' AND jsonb_typeof(patch -> key) NOT IN ('number', 'null') THEN
			RAISE EXCEPTION 'stream field "sla_ms" must be a number' USING ERRCODE = 'invalid_parameter_value';
		ELSIF key = 'metadata' AND jsonb_typeof(patch -> key) NOT IN ('object', 'null') THEN
			RAISE EXCEPTION 'stream field "metadata" must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;

	UPDATE datastreams.streams AS s SET
		name = CASE WHEN patch ? 'name' THEN patch ->> 'name' ELSE s.name END,
		symbol = CASE WHEN patch ? 'symbol' THEN patch ->> 'symbol' ELSE s.symbol END,
		description = CASE WHEN patch ? 'description' THEN patch ->> 'description' ELSE s.description END,
		frequency = CASE WHEN patch ? 'frequency' THEN (patch ->> 'frequency')::interval ELSE s.frequency END,
		sla_ms = CASE WHEN patch ? 'sla_ms' THEN (patch ->> 'sla_ms')::numeric::integer ELSE s.sla_ms END,
		status = CASE WHEN patch ? 'status' THEN patch ->> 'status' ELSE s.status END,
		metadata = CASE WHEN patch ? 'metadata' THEN patch -> 'metadata' ELSE s.metadata END,
		retention = CASE WHEN patch ? 'retention' THEN (patch ->> 'retention')::interval ELSE s.retention END
	WHERE s.id = $1 AND s.account_id = account
	RETURNING s.* INTO result;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'stream % not found', $1 USING ERRCODE = 'no_data_found';
	END IF;
	RETURN result;
END
$$;

-- One bounded step of pruning (at most datastreams.prune_batch_size frames),
-- committed by the caller; repeat until it returns 0.  Never removes a
-- stream's latest frame.
CREATE FUNCTION datastreams.prune() RETURNS bigint
AS 'MODULE_PATHNAME', 'datastreams_prune'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION datastreams.prune() IS 'delete up to datastreams.prune_batch_size frames older than their stream''s retention, never a stream''s latest frame; returns how many (administrators)';
REVOKE ALL ON FUNCTION datastreams.prune() FROM PUBLIC;

-- prune() until nothing is left, committing after each step.  A procedure
-- cannot pin search_path and still COMMIT, so every name and operator in it
-- is qualified.  CALL it outside a transaction block.
CREATE PROCEDURE datastreams.prune_all(INOUT pruned bigint DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
	n bigint;
BEGIN
	PERFORM datastreams.require_admin();
	pruned := 0;
	LOOP
		n := datastreams.prune();
		pruned := pruned OPERATOR(pg_catalog.+) n;
		COMMIT;
		EXIT WHEN n OPERATOR(pg_catalog.=) 0;
	END LOOP;
END
$$;
COMMENT ON PROCEDURE datastreams.prune_all(bigint) IS 'call prune() until it returns 0, committing after each step; pruned is the total (administrators)';
REVOKE ALL ON PROCEDURE datastreams.prune_all(bigint) FROM PUBLIC;

-- (end of retention)
