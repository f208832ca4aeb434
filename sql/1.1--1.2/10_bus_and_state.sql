
--------------------------------------------------------------------------
-- The ingest path and the bus
--------------------------------------------------------------------------

-- With the 1.2 library (settings are the library's, see CHANGELOG.md):
-- notify_payload defaults to ids, the publisher (notify_via_worker) to on,
-- notify_frames_per_statement counts per transaction and is superuser-only,
-- datastreams.database defaults to every database.

-- Frames and streams are kept together by the stream lock instead of a
-- foreign key (which cost every frame a row lock on its stream, and a
-- multixact once several writers shared it): the frames trigger finds the
-- stream under the lock, and deleting a stream (streams trigger) takes the
-- same lock and deletes its frames.
ALTER TABLE datastreams.frames DROP CONSTRAINT frames_stream_id_fkey;

-- A frame's created_at is the service's clock, set by the frames trigger:
-- tenants may not choose it (one frame dated 'infinity' broke stream_health,
-- frames dated in the future escaped retention).  Without a default the
-- trigger can tell a value given from none.
ALTER TABLE datastreams.frames ALTER COLUMN created_at DROP DEFAULT;
COMMENT ON COLUMN datastreams.frames.created_at IS 'when the frame was written (the transaction''s start), set by the frames trigger; only roles that bypass row-level security may give it (bulk loads, restores)';

-- TRUNCATE of streams takes the frames along, as the cascade used to.
CREATE FUNCTION datastreams.streams_truncated() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	TRUNCATE datastreams.frames;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION datastreams.streams_truncated() IS 'trigger truncating the frames with the streams';
REVOKE ALL ON FUNCTION datastreams.streams_truncated() FROM PUBLIC;
CREATE TRIGGER streams_truncate_frames
	AFTER TRUNCATE ON datastreams.streams
	FOR EACH STATEMENT EXECUTE FUNCTION datastreams.streams_truncated();

-- Nothing is written per statement any more: the latest frame is read from
-- the (stream_id, sequence) index, the counters are folded in later.
DROP TRIGGER frames_after_statement ON datastreams.frames;
COMMENT ON FUNCTION datastreams.frames_after_statement() IS 'no longer used (the trigger of versions before 1.2)';

-- The counters of stream_state cover the frames up to counted_through;
-- readers add the frames above it.  The rows written before 1.2 counted
-- every frame up to their latest sequence.
ALTER TABLE datastreams.stream_state ADD COLUMN counted_through bigint NOT NULL DEFAULT 0;
UPDATE datastreams.stream_state SET counted_through = latest_sequence;
COMMENT ON COLUMN datastreams.stream_state.counted_through IS 'the counters count the frames with a sequence up to this one';
COMMENT ON TABLE datastreams.stream_state IS 'per stream: frame counters up to counted_through, folded in by the publisher (or by writers at commit when no publisher runs)';

CREATE FUNCTION datastreams.fold_stream_state(stream uuid, wait boolean DEFAULT true)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	through bigint;
	ok bigint;
	late bigint;
	error bigint;
	latency bigint;
	highest bigint;
	last_frame datastreams.frames;
BEGIN
	INSERT INTO datastreams.stream_state AS st
	       (stream_id, account_id, latest_frame_id, latest_sequence, latest_created_at, counted_through)
	SELECT f.stream_id, f.account_id, f.id, f.sequence, f.created_at, 0
	  FROM datastreams.frames AS f
	 WHERE f.stream_id OPERATOR(pg_catalog.=) stream
	 ORDER BY f.sequence LIMIT 1
	ON CONFLICT (stream_id) DO NOTHING;
	-- a stream without frames (or gone) has nothing to fold
	PERFORM FROM datastreams.stream_state AS st WHERE st.stream_id OPERATOR(pg_catalog.=) stream;
	IF NOT FOUND THEN
		RETURN true;
	END IF;

	-- the row lock keeps two folds of a stream from counting a frame twice
	IF wait THEN
		SELECT st.counted_through INTO through FROM datastreams.stream_state AS st
		 WHERE st.stream_id OPERATOR(pg_catalog.=) stream FOR UPDATE;
	ELSE
		SELECT st.counted_through INTO through FROM datastreams.stream_state AS st
		 WHERE st.stream_id OPERATOR(pg_catalog.=) stream FOR UPDATE SKIP LOCKED;
	END IF;
	IF NOT FOUND THEN
		RETURN false;
	END IF;

	SELECT count(*) FILTER (WHERE f.status OPERATOR(pg_catalog.=) 'ok'),
	       count(*) FILTER (WHERE f.status OPERATOR(pg_catalog.=) 'late'),
	       count(*) FILTER (WHERE f.status OPERATOR(pg_catalog.=) 'error'),
	       coalesce(sum(f.latency_ms), 0), max(f.sequence)
	  INTO ok, late, error, latency, highest
	  FROM datastreams.frames AS f
	 WHERE f.stream_id OPERATOR(pg_catalog.=) stream
	   AND f.sequence OPERATOR(pg_catalog.>) through;
	IF highest IS NULL THEN
		RETURN true;
	END IF;
	SELECT f.* INTO last_frame FROM datastreams.frames AS f
	 WHERE f.stream_id OPERATOR(pg_catalog.=) stream
	   AND f.sequence OPERATOR(pg_catalog.=) highest;

	UPDATE datastreams.stream_state AS st
	   SET frames_ok = st.frames_ok OPERATOR(pg_catalog.+) ok,
	       frames_late = st.frames_late OPERATOR(pg_catalog.+) late,
	       frames_error = st.frames_error OPERATOR(pg_catalog.+) error,
	       latency_ms_total = st.latency_ms_total OPERATOR(pg_catalog.+) latency,
	       latest_frame_id = last_frame.id,
	       latest_sequence = last_frame.sequence,
	       latest_created_at = last_frame.created_at,
	       counted_through = highest,
	       updated_at = pg_catalog.now()
	 WHERE st.stream_id OPERATOR(pg_catalog.=) stream;
	RETURN true;
END
$$;
COMMENT ON FUNCTION datastreams.fold_stream_state(uuid, boolean) IS 'add a stream''s frames above counted_through to its stream_state counters; without wait, a stream another session is folding is skipped (false)';
REVOKE ALL ON FUNCTION datastreams.fold_stream_state(uuid, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION datastreams.latest_frame(stream_id uuid)
RETURNS datastreams.frames
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_account();
	result datastreams.frames;
BEGIN
	PERFORM FROM datastreams.streams AS s
	 WHERE s.id OPERATOR(pg_catalog.=) $1 AND s.account_id OPERATOR(pg_catalog.=) account;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'stream % not found', $1 USING ERRCODE = 'no_data_found';
	END IF;
	SELECT f.* INTO result FROM datastreams.frames AS f
	 WHERE f.stream_id OPERATOR(pg_catalog.=) $1 AND f.account_id OPERATOR(pg_catalog.=) account
	 ORDER BY f.sequence DESC LIMIT 1;
	RETURN result;
END
$$;
COMMENT ON FUNCTION datastreams.latest_frame(uuid) IS 'the frame with the highest sequence, NULL when the stream has none; one backward step through the (stream_id, sequence) index';

-- stream_health reads the counters as stream_state's plus the frames above
-- counted_through, and the latest frame from the index: it is replaced once,
-- with the consumers' columns, in 30_consumers.sql.
