/* datastreams--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION datastreams UPDATE TO '1.1'" to load this file. \quit

--------------------------------------------------------------------------
-- Observability: metrics and stream health
--------------------------------------------------------------------------

-- Live counters in shared memory (library in shared_preload_libraries).
-- Without preloading, metrics() and reset_metrics() raise 55000 with a HINT
-- and stream_latency() returns no rows.

CREATE FUNCTION datastreams.metrics() RETURNS text
AS 'MODULE_PATHNAME', 'datastreams_metrics'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION datastreams.metrics() IS 'the live counters in the Prometheus text exposition format: a tenant gets its own account''s series, administrators all series and the server-wide ones';

CREATE FUNCTION datastreams.reset_metrics() RETURNS void
AS 'MODULE_PATHNAME', 'datastreams_reset_metrics'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION datastreams.reset_metrics() IS 'forget every tracked stream and account and zero all counters (administrators)';
REVOKE ALL ON FUNCTION datastreams.reset_metrics() FROM PUBLIC;

CREATE FUNCTION datastreams.stream_latency(
	OUT stream_id uuid, OUT account_id text, OUT frames bigint, OUT latency_sum_ms bigint,
	OUT latency_p50_ms double precision, OUT latency_p95_ms double precision,
	OUT latency_p99_ms double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'datastreams_stream_latency'
LANGUAGE C VOLATILE PARALLEL SAFE ROWS 100;
COMMENT ON FUNCTION datastreams.stream_latency() IS 'per tracked stream visible to the caller: frames in its latency histogram since the last reset, their total latency and the estimated 50th, 95th and 99th percentiles; no rows without preloading';

-- One row per stream the caller can see (security_invoker: the row-level
-- security of the tables applies to the caller, not to the view's owner).
-- Counters, the latest frame and the mean latency come from stream_state
-- (transactional, since the stream was created); the percentiles from the
-- shared memory histograms (since the last reset; NULL without preloading).
-- An active stream is unhealthy when it has a frequency and no frame came
-- within frequency x datastreams.health_frequency_tolerance (counted from
-- its last change while it has no frame), or when its share of late frames
-- is above datastreams.health_late_ratio_threshold.
CREATE VIEW datastreams.stream_health WITH (security_invoker = true) AS
SELECT s.id AS stream_id,
       s.account_id,
       s.status,
       s.sla_ms,
       s.frequency,
       c.frames_total,
       c.frames_ok,
       c.frames_late,
       c.frames_error,
       c.late_ratio,
       l.latency_p50_ms,
       l.latency_p95_ms,
       l.latency_p99_ms,
       c.latency_mean_ms,
       st.latest_sequence AS last_sequence,
       st.latest_created_at AS last_frame_at,
       EXTRACT(epoch FROM statement_timestamp() - st.latest_created_at)::double precision
           AS seconds_since_last_frame,
       NOT (h.silent OR h.too_late) AS healthy,
       CASE WHEN h.silent OR h.too_late THEN
           concat_ws('; ',
               CASE WHEN h.silent THEN format('no frame within %s s (%s x frequency %s s)',
                   trim_scale(EXTRACT(epoch FROM s.frequency * cfg.tolerance)), cfg.tolerance,
                   trim_scale(EXTRACT(epoch FROM s.frequency))) END,
               CASE WHEN h.too_late THEN format('late ratio %s above %s',
                   round(c.late_ratio::numeric, 4), cfg.threshold) END)
       END AS reason
  FROM datastreams.streams AS s
  LEFT JOIN datastreams.stream_state AS st ON st.stream_id = s.id
  LEFT JOIN datastreams.stream_latency() AS l ON l.stream_id = s.id
  CROSS JOIN (SELECT
         coalesce(nullif(current_setting('datastreams.health_frequency_tolerance', true), '')::double precision, 3.0) AS tolerance,
         coalesce(nullif(current_setting('datastreams.health_late_ratio_threshold', true), '')::double precision, 0.05) AS threshold
      ) AS cfg
  CROSS JOIN LATERAL (SELECT
         coalesce(st.frames_ok + st.frames_late + st.frames_error, 0) AS frames_total,
         coalesce(st.frames_ok, 0) AS frames_ok,
         coalesce(st.frames_late, 0) AS frames_late,
         coalesce(st.frames_error, 0) AS frames_error,
         st.frames_late::double precision / nullif(st.frames_ok + st.frames_late + st.frames_error, 0) AS late_ratio,
         st.latency_ms_total::double precision / nullif(st.frames_ok + st.frames_late + st.frames_error, 0) AS latency_mean_ms
      ) AS c
  CROSS JOIN LATERAL (SELECT
         coalesce(s.status = 'active' AND s.frequency IS NOT NULL
                  AND statement_timestamp() - coalesce(st.latest_created_at, s.updated_at) > s.frequency * cfg.tolerance,
                  false) AS silent,
         coalesce(s.status = 'active' AND c.late_ratio > cfg.threshold, false) AS too_late
      ) AS h;
COMMENT ON VIEW datastreams.stream_health IS 'per stream: counters, late ratio, latency percentiles, the latest frame and whether an active stream keeps its SLA (healthy, reason); row-level security applies to the caller';
GRANT SELECT ON datastreams.stream_health TO PUBLIC;

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
		ELSIF key = 'sla_ms' AND (patch ->> key)::numeric <> trunc((patch ->> key)::numeric) THEN
			RAISE EXCEPTION 'stream field "sla_ms" must be a whole number' USING ERRCODE = 'invalid_parameter_value';
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
		metadata = CASE WHEN patch ? 'metadata' THEN nullif(patch -> 'metadata', 'null') ELSE s.metadata END,
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
