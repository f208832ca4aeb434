/*
 * plpgsql_baseline.sql
 *	  The benchmark's PL/pgSQL baseline: the rules of datastreams.frames
 *	  written the way a user without the C extension would write them, as
 *	  one PL/pgSQL BEFORE ROW trigger on a copy of the frames table.
 *
 * Loaded by test/bench/run.sh after CREATE EXTENSION datastreams.  The
 * tables are LIKE the extension's (same columns, defaults, constraints and
 * indexes; frame ids from the same uuid_v7()): only the way the rules
 * are enforced differs.  Per row the trigger does what the C trigger does:
 *   - stream lookup (must exist, belong to the session's account, not be
 *     paused), account attribution;
 *   - checks: payload a JSON object under the size limit, latency >= 0,
 *     status normalised and validated, metadata normalised;
 *   - SLA classification (ok -> late when latency_ms > sla_ms);
 *   - ordering: a per-stream advisory lock held to the end of the
 *     transaction, then the latest sequence; NULL sequence = Unix time in
 *     nanoseconds (or latest + 1), otherwise strictly increasing;
 *   - the latest-frame pointer and counters upserted into stream_state;
 *   - pg_notify() of the frame on channel baseline_<stream id>, without
 *     its payload when the message would exceed NOTIFY's 7999 bytes.
 * Tenancy is row-level security on the setting baseline.account_id, the
 * usual hand-written pattern (the C version uses datastreams.current_account()).
 */

CREATE SCHEMA baseline;

CREATE TABLE baseline.streams (LIKE datastreams.streams INCLUDING ALL);

CREATE TABLE baseline.frames (LIKE datastreams.frames INCLUDING ALL);
ALTER TABLE baseline.frames
	ADD FOREIGN KEY (stream_id) REFERENCES baseline.streams (id) ON DELETE CASCADE;

CREATE TABLE baseline.stream_state (LIKE datastreams.stream_state INCLUDING ALL);
ALTER TABLE baseline.stream_state
	ADD FOREIGN KEY (stream_id) REFERENCES baseline.streams (id) ON DELETE CASCADE;

CREATE FUNCTION baseline.frames_before_row() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct text := nullif(current_setting('baseline.account_id', true), '');
	s record;
	latest bigint;
	note text;
BEGIN
	IF TG_OP = 'UPDATE' THEN
		RAISE EXCEPTION 'frames are immutable' USING ERRCODE = 'feature_not_supported';
	END IF;

	-- the stream
	IF NEW.stream_id IS NULL THEN
		RAISE EXCEPTION 'stream_id is required' USING ERRCODE = 'not_null_violation';
	END IF;
	SELECT st.account_id, st.status, st.sla_ms INTO s
	  FROM baseline.streams AS st WHERE st.id = NEW.stream_id;
	IF NOT FOUND OR acct IS NULL OR s.account_id <> acct THEN
		RAISE EXCEPTION 'stream % not found', NEW.stream_id USING ERRCODE = 'no_data_found';
	END IF;
	IF s.status = 'paused' THEN
		RAISE EXCEPTION 'stream % is paused', NEW.stream_id
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF NEW.account_id IS NOT NULL AND NEW.account_id <> s.account_id THEN
		RAISE EXCEPTION 'frame account "%" does not match the account of stream %',
			NEW.account_id, NEW.stream_id USING ERRCODE = 'insufficient_privilege';
	END IF;
	NEW.account_id := s.account_id;

	-- the frame's own fields
	IF NEW.sequence IS NOT NULL AND NEW.sequence <= 0 THEN
		RAISE EXCEPTION 'sequence must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	NEW.payload := coalesce(NEW.payload, '{}');
	IF pg_column_size(NEW.payload) > 1048576 THEN
		RAISE EXCEPTION 'frame payload is too large' USING ERRCODE = 'program_limit_exceeded';
	END IF;
	IF jsonb_typeof(NEW.payload) <> 'object' THEN
		RAISE EXCEPTION 'frame payload must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	NEW.latency_ms := greatest(coalesce(NEW.latency_ms, 0), 0);
	NEW.status := coalesce(lower(nullif(btrim(NEW.status), '')), 'ok');
	IF NEW.status NOT IN ('ok', 'late', 'error') THEN
		RAISE EXCEPTION 'invalid frame status "%"', NEW.status USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NEW.status = 'ok' AND s.sla_ms > 0 AND NEW.latency_ms > s.sla_ms THEN
		NEW.status := 'late';
	END IF;
	IF NEW.metadata IS NULL THEN
		NEW.metadata := '{}';
	ELSIF NEW.metadata <> '{}' THEN
		IF jsonb_typeof(NEW.metadata) <> 'object'
		   OR EXISTS (SELECT FROM jsonb_each(NEW.metadata) AS e WHERE jsonb_typeof(e.value) <> 'string') THEN
			RAISE EXCEPTION 'metadata must be a flat map of strings' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF (SELECT count(DISTINCT lower(btrim(e.key))) <> count(*)
			  FROM jsonb_each_text(NEW.metadata) AS e WHERE btrim(e.key) <> '') THEN
			RAISE EXCEPTION 'metadata key is given more than once' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		NEW.metadata := coalesce((SELECT jsonb_object_agg(lower(btrim(e.key)), btrim(e.value))
									FROM jsonb_each_text(NEW.metadata) AS e
								   WHERE btrim(e.key) <> ''), '{}');
	END IF;
	NEW.id := coalesce(NEW.id, datastreams.uuid_v7());
	NEW.created_at := coalesce(NEW.created_at, now());

	-- ordering, under the stream's lock
	PERFORM pg_advisory_xact_lock(hashtextextended(NEW.stream_id::text, 0));
	SELECT ss.latest_sequence INTO latest
	  FROM baseline.stream_state AS ss WHERE ss.stream_id = NEW.stream_id;
	latest := coalesce(latest, 0);
	IF NEW.sequence IS NULL THEN
		NEW.sequence := greatest((extract(epoch FROM clock_timestamp()) * 1000000000)::bigint, latest + 1);
	ELSIF NEW.sequence = latest THEN
		RAISE EXCEPTION 'stream % already has a frame with sequence %', NEW.stream_id, NEW.sequence
			USING ERRCODE = 'unique_violation';
	ELSIF NEW.sequence < latest THEN
		RAISE EXCEPTION 'sequence % is lower than the latest sequence of stream %', NEW.sequence, NEW.stream_id
			USING ERRCODE = 'check_violation';
	END IF;

	-- the latest-frame pointer and counters
	INSERT INTO baseline.stream_state AS ss
		(stream_id, account_id, latest_frame_id, latest_sequence, latest_created_at,
		 frames_ok, frames_late, frames_error, latency_ms_total, updated_at)
	VALUES (NEW.stream_id, NEW.account_id, NEW.id, NEW.sequence, NEW.created_at,
			(NEW.status = 'ok')::int, (NEW.status = 'late')::int, (NEW.status = 'error')::int,
			NEW.latency_ms, now())
	ON CONFLICT (stream_id) DO UPDATE SET
		latest_frame_id = excluded.latest_frame_id,
		latest_sequence = excluded.latest_sequence,
		latest_created_at = excluded.latest_created_at,
		frames_ok = ss.frames_ok + excluded.frames_ok,
		frames_late = ss.frames_late + excluded.frames_late,
		frames_error = ss.frames_error + excluded.frames_error,
		latency_ms_total = ss.latency_ms_total + excluded.latency_ms_total,
		updated_at = excluded.updated_at;

	-- publication
	note := json_build_object('id', NEW.id, 'stream_id', NEW.stream_id, 'sequence', NEW.sequence,
							  'status', NEW.status, 'latency_ms', NEW.latency_ms,
							  'created_at', NEW.created_at, 'payload', NEW.payload)::text;
	IF octet_length(note) > 7999 THEN
		note := json_build_object('id', NEW.id, 'stream_id', NEW.stream_id, 'sequence', NEW.sequence,
								  'status', NEW.status, 'latency_ms', NEW.latency_ms,
								  'created_at', NEW.created_at, 'truncated', true)::text;
	END IF;
	PERFORM pg_notify('baseline_' || NEW.stream_id::text, note);
	RETURN NEW;
END
$$;

CREATE TRIGGER frames_before_row
	BEFORE INSERT OR UPDATE ON baseline.frames
	FOR EACH ROW EXECUTE FUNCTION baseline.frames_before_row();

ALTER TABLE baseline.frames ENABLE ROW LEVEL SECURITY;
ALTER TABLE baseline.frames FORCE ROW LEVEL SECURITY;
CREATE POLICY frames_tenant ON baseline.frames
	USING (account_id = current_setting('baseline.account_id', true))
	WITH CHECK (account_id = current_setting('baseline.account_id', true));

GRANT USAGE ON SCHEMA baseline TO PUBLIC;
GRANT SELECT ON baseline.streams TO PUBLIC;
GRANT SELECT, INSERT ON baseline.frames TO PUBLIC;
GRANT SELECT, INSERT, UPDATE ON baseline.stream_state TO PUBLIC;
