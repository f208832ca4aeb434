
--------------------------------------------------------------------------
-- Durable consumers (issue 14): server-side positions acknowledged in the
-- consumer's own transaction, competing members, lag
--------------------------------------------------------------------------

-- A consumer is a name of an account; its position is one row per
-- (consumer, stream) in consumer_positions.  Positions are rows so that an
-- acknowledgement commits or rolls back with the caller's transaction, and
-- so that members of one consumer share the streams by row locks: poll()
-- locks the position rows of the streams it returns (FOR UPDATE SKIP
-- LOCKED) until the transaction ends.

CREATE TABLE datastreams.consumers (
	account_id text NOT NULL REFERENCES datastreams.accounts (id),
	name text NOT NULL,
	streams uuid[],
	start text NOT NULL DEFAULT 'latest',
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, name),
	CONSTRAINT consumers_name_check CHECK (name ~ '[^[:space:]]' AND length(name) <= 255),
	CONSTRAINT consumers_start_check CHECK (start IN ('latest', 'earliest')),
	CONSTRAINT consumers_streams_check CHECK (cardinality(streams) > 0)
);
COMMENT ON TABLE datastreams.consumers IS 'durable consumers: a name per account, the streams it reads (NULL: every stream of the account, also later ones) and where it started';
COMMENT ON COLUMN datastreams.consumers.streams IS 'the streams consumed, sorted and without duplicates; NULL means every stream of the account, including streams created later';
COMMENT ON COLUMN datastreams.consumers.start IS 'latest: only frames after the consumer was created; earliest: every frame still retained';

CREATE TABLE datastreams.consumer_positions (
	account_id text NOT NULL,
	consumer text NOT NULL,
	stream_id uuid NOT NULL REFERENCES datastreams.streams (id) ON DELETE CASCADE,
	acknowledged_sequence bigint NOT NULL DEFAULT 0,
	acknowledged_at timestamptz,
	frames_missed bigint NOT NULL DEFAULT 0,
	missed_since_ack bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (account_id, consumer, stream_id),
	FOREIGN KEY (account_id, consumer) REFERENCES datastreams.consumers (account_id, name) ON DELETE CASCADE,
	CONSTRAINT consumer_positions_sequence_check CHECK (acknowledged_sequence >= 0),
	CONSTRAINT consumer_positions_missed_check CHECK (frames_missed >= 0 AND missed_since_ack >= 0)
);
-- the frames deletion trigger and the cascade from streams find positions by stream
CREATE INDEX consumer_positions_stream_idx ON datastreams.consumer_positions (stream_id);
COMMENT ON TABLE datastreams.consumer_positions IS 'per consumer and stream: the acknowledged sequence and the frames retention removed before they were acknowledged';
COMMENT ON COLUMN datastreams.consumer_positions.acknowledged_sequence IS 'frames up to this sequence are done; poll() returns frames above it';
COMMENT ON COLUMN datastreams.consumer_positions.acknowledged_at IS 'when ack() or seek() last moved the position; NULL if never';
COMMENT ON COLUMN datastreams.consumer_positions.frames_missed IS 'frames deleted (by retention) above the acknowledged position, since the consumer was created';
COMMENT ON COLUMN datastreams.consumer_positions.missed_since_ack IS 'the part of frames_missed deleted since the position last moved; poll() warns while it is not 0';

-- A position names a stream through a foreign key, and a foreign key check
-- does not apply row-level security: without this trigger a tenant could
-- tell another account's stream from a missing one by inserting a
-- position.  Both are "stream ... not found" (P0002), as everywhere else.
CREATE FUNCTION datastreams.consumer_positions_before_row() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM FROM datastreams.streams AS s
	 WHERE s.id = NEW.stream_id AND s.account_id = NEW.account_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'stream % not found', NEW.stream_id USING ERRCODE = 'no_data_found';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION datastreams.consumer_positions_before_row() IS 'trigger refusing positions of streams the writer cannot see or of another account (P0002)';
REVOKE ALL ON FUNCTION datastreams.consumer_positions_before_row() FROM PUBLIC;
CREATE TRIGGER consumer_positions_before_row
	BEFORE INSERT OR UPDATE OF account_id, stream_id ON datastreams.consumer_positions
	FOR EACH ROW EXECUTE FUNCTION datastreams.consumer_positions_before_row();

-- Retention wins over consumers: prune() deletes expired frames whether or
-- not a consumer acknowledged them.  This trigger counts, per position, the
-- deleted frames above the acknowledged sequence.  The count is computed in
-- the UPDATE itself, so a position a member holds is counted after that
-- member's transaction ends, against the sequence it acknowledged (READ
-- COMMITTED re-evaluates the row): a frame acknowledged in time is never
-- counted as missed.
CREATE FUNCTION datastreams.consumers_count_missed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- most installations have no consumer: skip reading the deleted rows
	PERFORM FROM datastreams.consumer_positions LIMIT 1;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	-- per stream, the deleted sequences sorted: width_bucket() finds by
	-- binary search how many of them are not above a position
	WITH r AS (
		SELECT r.stream_id, array_agg(r.sequence ORDER BY r.sequence) AS sequences
		  FROM removed AS r GROUP BY r.stream_id)
	UPDATE datastreams.consumer_positions AS p
	   SET frames_missed = p.frames_missed
			   + cardinality(r.sequences) - width_bucket(p.acknowledged_sequence, r.sequences),
		   missed_since_ack = p.missed_since_ack
			   + cardinality(r.sequences) - width_bucket(p.acknowledged_sequence, r.sequences)
	  FROM r
	 WHERE p.stream_id = r.stream_id
	   AND width_bucket(p.acknowledged_sequence, r.sequences) < cardinality(r.sequences);
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION datastreams.consumers_count_missed() IS 'trigger counting deleted frames that consumers had not acknowledged';
REVOKE ALL ON FUNCTION datastreams.consumers_count_missed() FROM PUBLIC;
CREATE TRIGGER frames_missed_by_consumers
	AFTER DELETE ON datastreams.frames
	REFERENCING OLD TABLE AS removed
	FOR EACH STATEMENT EXECUTE FUNCTION datastreams.consumers_count_missed();

ALTER TABLE datastreams.consumers ENABLE ROW LEVEL SECURITY;
ALTER TABLE datastreams.consumers FORCE ROW LEVEL SECURITY;
CREATE POLICY consumers_tenant ON datastreams.consumers
	USING (account_id = datastreams.current_account())
	WITH CHECK (account_id = datastreams.current_account());

ALTER TABLE datastreams.consumer_positions ENABLE ROW LEVEL SECURITY;
ALTER TABLE datastreams.consumer_positions FORCE ROW LEVEL SECURITY;
CREATE POLICY consumer_positions_tenant ON datastreams.consumer_positions
	USING (account_id = datastreams.current_account())
	WITH CHECK (account_id = datastreams.current_account());

-- The functions below are SECURITY INVOKER like the rest of the extension,
-- so tenants write these tables themselves; row-level security is the gate.
-- No table-wide UPDATE or DELETE: either would let any role LOCK the table
-- in any mode and stop every tenant's consumers (and pruning, which counts
-- missed frames in consumer_positions).  Positions are updated column by
-- column; a consumer is dropped by drop_consumer(), as the extension.
GRANT SELECT, INSERT ON datastreams.consumers TO PUBLIC;
GRANT SELECT, INSERT ON datastreams.consumer_positions TO PUBLIC;
GRANT UPDATE (acknowledged_sequence, acknowledged_at, missed_since_ack)
	ON datastreams.consumer_positions TO PUBLIC;

-- pg_dump keeps the rows (see README, "Backup and restore")
SELECT pg_catalog.pg_extension_config_dump('datastreams.consumers', '');
SELECT pg_catalog.pg_extension_config_dump('datastreams.consumer_positions', '');

--------------------------------------------------------------------------
-- Consumer API
--------------------------------------------------------------------------

CREATE FUNCTION datastreams.create_consumer(name text, streams uuid[] DEFAULT NULL,
	start text DEFAULT 'latest')
RETURNS datastreams.consumers
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_account();
	start_at text := coalesce(lower(btrim($3)), 'latest');
	wanted uuid[];
	missing uuid;
	result datastreams.consumers;
BEGIN
	IF $1 IS NULL OR $1 !~ '[^[:space:]]' THEN
		RAISE EXCEPTION 'consumer name is required' USING ERRCODE = 'not_null_violation';
	END IF;
	IF length($1) > 255 THEN
		RAISE EXCEPTION 'consumer name is too long'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The name has %s characters; at most 255 are allowed.', length($1));
	END IF;
	IF start_at NOT IN ('latest', 'earliest') THEN
		RAISE EXCEPTION 'invalid consumer start "%"', left($3, 100)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The start is latest (only frames written after the consumer is created) or earliest (every frame still retained).';
	END IF;
	IF $2 IS NOT NULL THEN
		IF cardinality($2) = 0 THEN
			RAISE EXCEPTION 'consumer streams must not be empty'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Pass NULL to consume every stream of the account, including streams created later.';
		END IF;
		IF array_position($2, NULL) IS NOT NULL THEN
			RAISE EXCEPTION 'consumer streams must not contain NULL' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		SELECT array_agg(DISTINCT u.id ORDER BY u.id) INTO wanted FROM unnest($2) AS u(id);
		SELECT u.id INTO missing FROM unnest(wanted) AS u(id)
		 WHERE NOT EXISTS (SELECT FROM datastreams.streams AS s
							WHERE s.id = u.id AND s.account_id = account)
		 ORDER BY u.id LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'stream % not found', missing USING ERRCODE = 'no_data_found';
		END IF;
	END IF;

	INSERT INTO datastreams.consumers AS c (account_id, name, streams, start)
	VALUES (account, $1, wanted, start_at)
	ON CONFLICT DO NOTHING
	RETURNING c.* INTO result;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'consumer "%" already exists', $1 USING ERRCODE = 'unique_violation';
	END IF;

	-- latest: each stream's position is its latest frame now
	INSERT INTO datastreams.consumer_positions (account_id, consumer, stream_id, acknowledged_sequence)
	SELECT account, $1, s.id,
		   CASE WHEN start_at = 'earliest' THEN 0
		   ELSE coalesce((SELECT f.sequence FROM datastreams.frames AS f
						   WHERE f.stream_id = s.id ORDER BY f.sequence DESC LIMIT 1), 0) END
	  FROM datastreams.streams AS s
	 WHERE s.account_id = account AND (wanted IS NULL OR s.id = ANY (wanted))
	 ORDER BY s.id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION datastreams.create_consumer(text, uuid[], text) IS 'create a durable consumer of the current account for the given streams (NULL: every stream, also later ones), starting at the latest frame or the earliest retained one';

-- The consumer of the current account, or P0002 whether it is missing or
-- belongs to someone else.
CREATE FUNCTION datastreams.get_consumer(name text)
RETURNS datastreams.consumers
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_account();
	result datastreams.consumers;
BEGIN
	SELECT c.* INTO result FROM datastreams.consumers AS c
	 WHERE c.account_id = account AND c.name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'consumer "%" not found', left($1, 100) USING ERRCODE = 'no_data_found';
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION datastreams.get_consumer(text) IS 'one consumer of the current account';

CREATE FUNCTION datastreams.list_consumers()
RETURNS SETOF datastreams.consumers
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT c.* FROM datastreams.consumers AS c
	 WHERE c.account_id = datastreams.require_account()
	 ORDER BY c.name COLLATE "C";
$$;
COMMENT ON FUNCTION datastreams.list_consumers() IS 'consumers of the current account, by name';

CREATE FUNCTION datastreams.drop_consumer(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'datastreams_drop_consumer'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION datastreams.drop_consumer(text) IS 'drop a consumer of the current account and its positions; waits for members holding its streams';

-- Frames after the consumer's positions, at most "limit" (default 500, at
-- most 10000), stream by stream, lowest sequence first within each stream.
-- Streams are visited least recently acknowledged first, so that one busy
-- stream does not starve the others; each stream returned is locked for
-- this transaction (its position row, FOR UPDATE SKIP LOCKED), so other
-- members of the consumer get other streams.  The position does not move:
-- ack() moves it.
CREATE FUNCTION datastreams.poll(consumer text, "limit" integer DEFAULT 500)
RETURNS SETOF datastreams.frames
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_account();
	c datastreams.consumers;
	n integer;
	got bigint;
	candidate record;
	pos datastreams.consumer_positions;
BEGIN
	IF "limit" IS NOT NULL AND "limit" < 1 THEN
		RAISE EXCEPTION 'limit must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	n := least(coalesce("limit", 500), 10000);
	SELECT cs.* INTO c FROM datastreams.consumers AS cs
	 WHERE cs.account_id = account AND cs.name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'consumer "%" not found', left($1, 100) USING ERRCODE = 'no_data_found';
	END IF;

	-- A consumer of every stream gets a position for each stream created
	-- since (at 0: all their frames came after the consumer).  One member
	-- at a time creates them, the one that gets the consumer's advisory
	-- lock; the others do not wait for it (inserting the same rows would
	-- wait for its whole transaction) and see the new positions once it
	-- commits.  A hash collision with someone else's advisory lock only
	-- defers the creation to a later poll.
	IF c.streams IS NULL AND EXISTS (
		SELECT FROM datastreams.streams AS s
		 WHERE s.account_id = account
		   AND NOT EXISTS (SELECT FROM datastreams.consumer_positions AS p
							WHERE p.account_id = account AND p.consumer = c.name
							  AND p.stream_id = s.id))
	THEN
		IF pg_try_advisory_xact_lock(hashtext(account), hashtext(c.name)) THEN
			INSERT INTO datastreams.consumer_positions (account_id, consumer, stream_id)
			SELECT account, c.name, s.id
			  FROM datastreams.streams AS s
			 WHERE s.account_id = account
			   AND NOT EXISTS (SELECT FROM datastreams.consumer_positions AS p
								WHERE p.account_id = account AND p.consumer = c.name
								  AND p.stream_id = s.id)
			 ORDER BY s.id
			ON CONFLICT DO NOTHING;
		END IF;
	END IF;

	FOR candidate IN
		-- (a subquery with LIMIT, not EXISTS: the planner could turn EXISTS
		-- into a join that reads every frame)
		SELECT p.stream_id
		  FROM datastreams.consumer_positions AS p
		 WHERE p.account_id = account AND p.consumer = c.name
		   AND (SELECT f.sequence FROM datastreams.frames AS f
				 WHERE f.stream_id = p.stream_id AND f.sequence > p.acknowledged_sequence
				 ORDER BY f.sequence LIMIT 1) IS NOT NULL
		 ORDER BY p.acknowledged_at NULLS FIRST, p.stream_id
	LOOP
		-- the newest version of the row, locked, or nothing if another member has it
		SELECT p.* INTO pos FROM datastreams.consumer_positions AS p
		 WHERE p.account_id = account AND p.consumer = c.name
		   AND p.stream_id = candidate.stream_id
		   FOR UPDATE SKIP LOCKED;
		CONTINUE WHEN NOT FOUND;
		IF pos.missed_since_ack > 0 THEN
			RAISE WARNING 'consumer "%" missed % frames of stream %', c.name, pos.missed_since_ack, pos.stream_id
				USING DETAIL = 'Retention removed them before they were acknowledged.',
					  HINT = 'The count is in frames_missed of datastreams.consumer_lag; acknowledging a frame of the stream clears this warning.';
		END IF;
		RETURN QUERY
			SELECT f.* FROM datastreams.frames AS f
			 WHERE f.stream_id = pos.stream_id AND f.account_id = account
			   AND f.sequence > pos.acknowledged_sequence
			 ORDER BY f.sequence
			 LIMIT n;
		GET DIAGNOSTICS got = ROW_COUNT;
		n := n - got;
		EXIT WHEN n <= 0;
	END LOOP;
END
$$;
COMMENT ON FUNCTION datastreams.poll(text, integer) IS 'frames after the consumer''s acknowledged positions, lowest sequence first within each stream, at most limit (default 500, at most 10000); locks the streams returned for this transaction so other members get other streams; does not move the position';

-- ack() and seek(): move a consumer's position in a stream within the
-- caller's transaction.  The position row is locked first, so a member
-- that holds the stream (poll() in an open transaction) is waited for.  A
-- consumer of every stream that has not polled since a stream was created
-- gets the position row for it here.
CREATE FUNCTION datastreams.consumer_move(consumer text, stream_id uuid, sequence bigint,
	backwards boolean)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_account();
	c datastreams.consumers;
	latest bigint;
	acknowledged bigint;
BEGIN
	SELECT cs.* INTO c FROM datastreams.consumers AS cs
	 WHERE cs.account_id = account AND cs.name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'consumer "%" not found', left($1, 100) USING ERRCODE = 'no_data_found';
	END IF;
	SELECT coalesce((SELECT f.sequence FROM datastreams.frames AS f
					  WHERE f.stream_id = s.id ORDER BY f.sequence DESC LIMIT 1), 0)
	  INTO latest
	  FROM datastreams.streams AS s
	 WHERE s.id = $2 AND s.account_id = account;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'stream % not found', $2 USING ERRCODE = 'no_data_found';
	END IF;
	IF c.streams IS NOT NULL AND NOT $2 = ANY (c.streams) THEN
		RAISE EXCEPTION 'consumer "%" does not consume stream %', c.name, $2
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF $3 IS NULL THEN
		RAISE EXCEPTION 'sequence is required' USING ERRCODE = 'not_null_violation';
	END IF;
	IF $3 < 0 THEN
		RAISE EXCEPTION 'sequence must not be negative' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF $3 > latest THEN
		RAISE EXCEPTION 'sequence % is beyond the latest frame of stream %', $3, $2
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = CASE WHEN latest = 0 THEN 'The stream has no frame yet.'
							ELSE format('The latest sequence of the stream is %s.', latest) END;
	END IF;

	SELECT p.acknowledged_sequence INTO acknowledged FROM datastreams.consumer_positions AS p
	 WHERE p.account_id = account AND p.consumer = c.name AND p.stream_id = $2
	   FOR UPDATE;
	IF NOT FOUND THEN
		INSERT INTO datastreams.consumer_positions (account_id, consumer, stream_id)
		VALUES (account, c.name, $2)
		ON CONFLICT DO NOTHING;
		SELECT p.acknowledged_sequence INTO acknowledged FROM datastreams.consumer_positions AS p
		 WHERE p.account_id = account AND p.consumer = c.name AND p.stream_id = $2
		   FOR UPDATE;
	END IF;
	IF $3 = acknowledged OR ($3 < acknowledged AND NOT backwards) THEN
		RETURN false;
	END IF;
	UPDATE datastreams.consumer_positions AS p
	   SET acknowledged_sequence = $3, acknowledged_at = now(), missed_since_ack = 0
	 WHERE p.account_id = account AND p.consumer = c.name AND p.stream_id = $2;
	RETURN true;
END
$$;
COMMENT ON FUNCTION datastreams.consumer_move(text, uuid, bigint, boolean) IS 'what ack() (backwards false) and seek() (backwards true) do: set the consumer''s position in a stream, in the caller''s transaction; true if it moved';

CREATE FUNCTION datastreams.ack(consumer text, stream_id uuid, sequence bigint)
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT datastreams.consumer_move($1, $2, $3, false) $$;
COMMENT ON FUNCTION datastreams.ack(text, uuid, bigint) IS 'move the consumer''s position in a stream forward to sequence (at most the stream''s latest), in the caller''s transaction; true if it moved, false if it was already there or beyond';

CREATE FUNCTION datastreams.seek(consumer text, stream_id uuid, sequence bigint)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT datastreams.consumer_move($1, $2, $3, true) $$;
COMMENT ON FUNCTION datastreams.seek(text, uuid, bigint) IS 'set the consumer''s position in a stream to sequence, backwards (to replay; 0: every frame still retained) or forwards (to skip)';

--------------------------------------------------------------------------
-- Lag
--------------------------------------------------------------------------

-- One row per consumer and stream it consumes.  A consumer of every
-- stream that has not polled since a stream was created has no position
-- row for it yet: it counts from 0, as poll() will.  frames_behind counts
-- index entries (its cost grows with the backlog); latest_sequence and
-- seconds_behind are one index probe each.  All are scalar subqueries, so a
-- query that does not use them does not compute them.
CREATE VIEW datastreams.consumer_lag WITH (security_invoker = true) AS
SELECT c.name AS consumer,
	   c.account_id,
	   s.id AS stream_id,
	   coalesce(p.acknowledged_sequence, 0) AS acknowledged_sequence,
	   p.acknowledged_at,
	   coalesce((SELECT f.sequence FROM datastreams.frames AS f
				  WHERE f.stream_id = s.id ORDER BY f.sequence DESC LIMIT 1), 0) AS latest_sequence,
	   (SELECT count(*) FROM datastreams.frames AS f
		 WHERE f.stream_id = s.id AND f.sequence > coalesce(p.acknowledged_sequence, 0)) AS frames_behind,
	   coalesce((SELECT (EXTRACT(epoch FROM statement_timestamp()) - EXTRACT(epoch FROM f.created_at))::double precision
				   FROM datastreams.frames AS f
				  WHERE f.stream_id = s.id AND f.sequence > coalesce(p.acknowledged_sequence, 0)
				  ORDER BY f.sequence LIMIT 1), 0) AS seconds_behind,
	   coalesce(p.frames_missed, 0) AS frames_missed
  FROM datastreams.consumers AS c
  JOIN datastreams.streams AS s
	ON s.account_id = c.account_id AND (c.streams IS NULL OR s.id = ANY (c.streams))
  LEFT JOIN datastreams.consumer_positions AS p
	ON p.account_id = c.account_id AND p.consumer = c.name AND p.stream_id = s.id;
COMMENT ON VIEW datastreams.consumer_lag IS 'per consumer and stream: acknowledged and latest sequence, frames behind, seconds since the oldest unacknowledged frame, frames retention removed before they were acknowledged; row-level security applies to the caller';
GRANT SELECT ON datastreams.consumer_lag TO PUBLIC;

-- stream_health gains three columns, after the existing ones: how many
-- consumers read the stream, which of them are more than
-- datastreams.health_consumer_lag behind (seconds since their oldest
-- unacknowledged frame), and the largest lag.  A lagging consumer makes the
-- stream unhealthy whatever its status: a paused stream's backlog is still
-- to be consumed.  The definition is that of 10_bus_and_state.sql plus
-- these; the view still never scans frames: it reads one more frame per
-- consumer of a stream, through the (stream_id, sequence) index.  Times are
-- computed as seconds in numbers: interval arithmetic fails (22008) on a
-- frame dated 'infinity' (rows written before the frames trigger set
-- created_at, restores) or on a frequency of millions of years times the
-- tolerance, and one such row would make the view fail for every
-- administrator and exporter.  A frame dated in the future counts as
-- recent; one dated '-infinity' as long ago.
CREATE OR REPLACE VIEW datastreams.stream_health WITH (security_invoker = true) AS
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
       lf.sequence AS last_sequence,
       lf.created_at AS last_frame_at,
       (sec.now_s - EXTRACT(epoch FROM lf.created_at))::double precision
           AS seconds_since_last_frame,
       NOT (h.silent OR h.too_late OR h.lagging) AS healthy,
       CASE WHEN h.silent OR h.too_late OR h.lagging THEN
           concat_ws('; ',
               CASE WHEN h.silent THEN format('no frame within %s s (%s x frequency %s s)',
                   trim_scale(sec.window_s), cfg.tolerance, trim_scale(sec.frequency_s)) END,
               CASE WHEN h.too_late THEN format('late ratio %s above %s',
                   round(c.late_ratio::numeric, 4), cfg.threshold) END,
               CASE WHEN h.lagging THEN format('consumers more than %s s behind: %s',
                   trim_scale(EXTRACT(epoch FROM cfg.consumer_lag)),
                   array_to_string(cl.behind, ', ')) END)
       END AS reason,
       cl.consumers,
       coalesce(cl.behind, '{}') AS consumers_behind,
       cl.max_seconds_behind AS consumer_seconds_behind
  FROM datastreams.streams AS s
  LEFT JOIN datastreams.stream_state AS st ON st.stream_id = s.id
  LEFT JOIN datastreams.stream_latency() AS l ON l.stream_id = s.id
  LEFT JOIN LATERAL (SELECT f.sequence, f.created_at FROM datastreams.frames AS f
                      WHERE f.stream_id = s.id ORDER BY f.sequence DESC LIMIT 1) AS lf ON true
  CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE f.status = 'ok') AS ok,
                             count(*) FILTER (WHERE f.status = 'late') AS late,
                             count(*) FILTER (WHERE f.status = 'error') AS error,
                             coalesce(sum(f.latency_ms), 0) AS latency
                        FROM datastreams.frames AS f
                       WHERE f.stream_id = s.id AND f.sequence > coalesce(st.counted_through, 0)) AS u
  CROSS JOIN (SELECT
         coalesce(nullif(current_setting('datastreams.health_frequency_tolerance', true), '')::double precision, 3.0) AS tolerance,
         coalesce(nullif(current_setting('datastreams.health_late_ratio_threshold', true), '')::double precision, 0.05) AS threshold,
         coalesce(nullif(current_setting('datastreams.health_consumer_lag', true), '')::interval, interval '60 s') AS consumer_lag
      ) AS cfg
  CROSS JOIN LATERAL (SELECT
         count(*)::integer AS consumers,
         array_agg(lag.consumer ORDER BY lag.consumer COLLATE "C")
             FILTER (WHERE lag.seconds_behind > EXTRACT(epoch FROM cfg.consumer_lag)::double precision) AS behind,
         max(lag.seconds_behind) AS max_seconds_behind
        -- OFFSET 0: compute each consumer's seconds_behind once
        FROM (SELECT cl.consumer, cl.seconds_behind FROM datastreams.consumer_lag AS cl
               WHERE cl.stream_id = s.id OFFSET 0) AS lag) AS cl
  CROSS JOIN LATERAL (SELECT
         coalesce(st.frames_ok, 0) + u.ok AS ok,
         coalesce(st.frames_late, 0) + u.late AS late,
         coalesce(st.frames_error, 0) + u.error AS error,
         coalesce(st.latency_ms_total, 0) + u.latency AS latency
      ) AS t
  CROSS JOIN LATERAL (SELECT
         t.ok + t.late + t.error AS frames_total,
         t.ok AS frames_ok,
         t.late AS frames_late,
         t.error AS frames_error,
         t.late::double precision / nullif(t.ok + t.late + t.error, 0) AS late_ratio,
         t.latency::double precision / nullif(t.ok + t.late + t.error, 0) AS latency_mean_ms
      ) AS c
  CROSS JOIN LATERAL (SELECT
         EXTRACT(epoch FROM statement_timestamp()) AS now_s,
         EXTRACT(epoch FROM s.frequency) AS frequency_s,
         EXTRACT(epoch FROM s.frequency) * cfg.tolerance::numeric AS window_s
      ) AS sec
  CROSS JOIN LATERAL (SELECT
         coalesce(s.status = 'active' AND s.frequency IS NOT NULL
                  AND sec.now_s - EXTRACT(epoch FROM coalesce(lf.created_at, s.updated_at)) > sec.window_s,
                  false) AS silent,
         coalesce(s.status = 'active' AND c.late_ratio > cfg.threshold, false) AS too_late,
         cl.behind IS NOT NULL AS lagging
      ) AS h;
COMMENT ON VIEW datastreams.stream_health IS 'per stream: counters, late ratio, latency percentiles, the latest frame, its consumers and those more than datastreams.health_consumer_lag behind, and whether the stream keeps its SLA (healthy, reason); row-level security applies to the caller';

-- (end of consumers)
