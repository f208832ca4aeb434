/* contrib/datastreams_shard/datastreams_shard--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION datastreams_shard" to load this file. \quit

-- The routing hash and the id-hash setting came with datastreams 1.2.
SELECT 'datastreams.stream_hash(uuid)'::pg_catalog.regprocedure;

--------------------------------------------------------------------------
-- How a shard is entered
--
-- The proxy resolves the caller's account and connects to every shard as
-- one router role (docs/scale-out.md).  Each entry point below is called
-- by that role with the account as its first argument: it sets
-- datastreams.account_id for the rest of the call (the router is a
-- trusted role, so row-level security then applies to that account as on
-- one node), passes the partition-move gate, and calls the ordinary API.
-- The entry points' SET search_path clause makes the account setting end
-- with the call, so nothing leaks into the next call on a pooled
-- connection.
--------------------------------------------------------------------------

-- Partitions that are being moved in (the copy is not complete: invisible,
-- refused) or were moved out (this shard no longer serves them: refused,
-- so a proxy with a stale map retries until its map changes).  A stream
-- belongs to a row when stream_hash(id) & mask = value.
CREATE TABLE datastreams_shard.hidden (
	mask integer NOT NULL CHECK (mask > 0),
	value integer NOT NULL CHECK (value >= 0 AND value OPERATOR(pg_catalog.&) mask = value),
	state text NOT NULL CHECK (state IN ('moving_in', 'moved_out')),
	since timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (mask, value)
);
COMMENT ON TABLE datastreams_shard.hidden IS 'partitions moving in (invisible, refused) or moved out (refused with 40001) of this shard';
-- A moved_out mark must survive a dump and restore of the shard.
SELECT pg_catalog.pg_extension_config_dump('datastreams_shard.hidden', '');

-- A move's cutover writes a token here in its own transaction; when the
-- token has been replicated to the destination, so has every write that
-- committed before the cutover.
CREATE TABLE datastreams_shard.move_barrier (
	token text PRIMARY KEY,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE datastreams_shard.move_barrier IS 'tokens a partition move replicates to learn that the destination has caught up';

-- The gate every routed call passes.  Calls hold a shared advisory lock on
-- their bucket (the hash's low 10 bits; a partition of P is 1024 / P
-- buckets) until they commit; a move's cutover takes the partition's
-- buckets exclusively, so it waits for every write already past the gate,
-- and every later call sees the cutover's marker.  The marker is read by a
-- statement of its own, after the lock: with a new snapshot.
CREATE FUNCTION datastreams_shard.gate(hash integer)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF hash IS NULL THEN
		RETURN;
	END IF;
	PERFORM pg_catalog.pg_advisory_xact_lock_shared(17492, hash OPERATOR(pg_catalog.&) 1023);
	IF EXISTS (SELECT FROM datastreams_shard.hidden AS h
				WHERE (hash OPERATOR(pg_catalog.&) h.mask) OPERATOR(pg_catalog.=) h.value) THEN
		RAISE EXCEPTION 'stream partition % is moving to another shard',
				hash OPERATOR(pg_catalog.&) 1023
			USING ERRCODE = 'serialization_failure',
				  HINT = 'Retry the call: it reaches the partition''s new shard once the move is done.';
	END IF;
END
$$;
COMMENT ON FUNCTION datastreams_shard.gate(integer) IS 'the partition-move gate of a routed call: 40001 while the hash''s partition is moving or gone';

-- Streams of partitions this shard serves (fan-outs skip the others).
CREATE FUNCTION datastreams_shard.serves(stream_id uuid)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT NOT EXISTS (SELECT FROM datastreams_shard.hidden AS h
		WHERE (datastreams.stream_hash($1) OPERATOR(pg_catalog.&) h.mask) OPERATOR(pg_catalog.=) h.value)
$$;
COMMENT ON FUNCTION datastreams_shard.serves(uuid) IS 'false for a stream of a partition moving in or moved out';

--------------------------------------------------------------------------
-- Entry points, one per routed API function: (account, the API's arguments)
--------------------------------------------------------------------------

CREATE FUNCTION datastreams_shard.create_stream(account text, hash integer,
	name text, symbol text, description text, frequency interval,
	sla_ms integer, status text, metadata jsonb, retention interval)
RETURNS datastreams.streams
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', account, true);
	PERFORM pg_catalog.set_config('datastreams.stream_id_hash', hash::text, true);
	PERFORM datastreams_shard.gate(hash);
	RETURN datastreams.create_stream(name, symbol, description, frequency,
									 sla_ms, status, metadata, retention);
END
$$;
COMMENT ON FUNCTION datastreams_shard.create_stream(text, integer, text, text, text, interval, integer, text, jsonb, interval) IS 'create_stream() for account, with an id whose stream_hash() is hash (router)';

CREATE FUNCTION datastreams_shard.get_stream(account text, id uuid)
RETURNS datastreams.streams
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', account, true);
	PERFORM datastreams_shard.gate(datastreams.stream_hash(id));
	RETURN datastreams.get_stream(id);
END
$$;
COMMENT ON FUNCTION datastreams_shard.get_stream(text, uuid) IS 'get_stream() for account (router)';

CREATE FUNCTION datastreams_shard.update_stream(account text, id uuid, patch jsonb)
RETURNS datastreams.streams
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', account, true);
	PERFORM datastreams_shard.gate(datastreams.stream_hash(id));
	RETURN datastreams.update_stream(id, patch);
END
$$;
COMMENT ON FUNCTION datastreams_shard.update_stream(text, uuid, jsonb) IS 'update_stream() for account (router)';

CREATE FUNCTION datastreams_shard.create_frame(account text, stream_id uuid,
	sequence bigint, payload jsonb, latency_ms integer, status text, metadata jsonb,
	on_duplicate text)
RETURNS datastreams.frames
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', account, true);
	PERFORM datastreams_shard.gate(datastreams.stream_hash(stream_id));
	RETURN datastreams.create_frame(stream_id, sequence, payload, latency_ms, status, metadata,
									on_duplicate);
END
$$;
COMMENT ON FUNCTION datastreams_shard.create_frame(text, uuid, bigint, jsonb, integer, text, jsonb, text) IS 'create_frame() for account (router)';

CREATE FUNCTION datastreams_shard.ingest(account text, stream_id uuid, frames jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', account, true);
	PERFORM datastreams_shard.gate(datastreams.stream_hash(stream_id));
	RETURN datastreams.ingest(stream_id, frames);
END
$$;
COMMENT ON FUNCTION datastreams_shard.ingest(text, uuid, jsonb) IS 'ingest() for account (router)';

CREATE FUNCTION datastreams_shard.push(account text, topic text, payload jsonb)
RETURNS datastreams.frames
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', account, true);
	PERFORM datastreams_shard.gate(datastreams.stream_hash(datastreams.topic_stream_id(topic)));
	RETURN datastreams.push(topic, payload);
END
$$;
COMMENT ON FUNCTION datastreams_shard.push(text, text, jsonb) IS 'push() for account (router)';

CREATE FUNCTION datastreams_shard.list_frames(account text, stream_id uuid,
	"limit" integer, before_sequence bigint)
RETURNS SETOF datastreams.frames
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', $1, true);
	PERFORM datastreams_shard.gate(datastreams.stream_hash($2));
	RETURN QUERY SELECT * FROM datastreams.list_frames($2, $3, $4);
END
$$;
COMMENT ON FUNCTION datastreams_shard.list_frames(text, uuid, integer, bigint) IS 'list_frames() for account (router)';

CREATE FUNCTION datastreams_shard.frames_since(account text, stream_id uuid,
	after_sequence bigint, "limit" integer)
RETURNS SETOF datastreams.frames
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', $1, true);
	PERFORM datastreams_shard.gate(datastreams.stream_hash($2));
	RETURN QUERY SELECT * FROM datastreams.frames_since($2, $3, $4);
END
$$;
COMMENT ON FUNCTION datastreams_shard.frames_since(text, uuid, bigint, integer) IS 'frames_since() for account (router)';

CREATE FUNCTION datastreams_shard.latest_frame(account text, stream_id uuid)
RETURNS datastreams.frames
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', account, true);
	PERFORM datastreams_shard.gate(datastreams.stream_hash(stream_id));
	RETURN datastreams.latest_frame(stream_id);
END
$$;
COMMENT ON FUNCTION datastreams_shard.latest_frame(text, uuid) IS 'latest_frame() for account (router)';

-- Fan-outs: each shard returns the streams of the partitions it serves;
-- the proxy orders the union.
CREATE FUNCTION datastreams_shard.list_streams(account text)
RETURNS SETOF datastreams.streams
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', $1, true);
	RETURN QUERY SELECT s.* FROM datastreams.list_streams() AS s
				  WHERE datastreams_shard.serves(s.id);
END
$$;
COMMENT ON FUNCTION datastreams_shard.list_streams(text) IS 'list_streams() for account, without partitions moving in or moved out (router)';

-- The health thresholds are per session on one node; the proxy passes the
-- caller's, NULL meaning the shard's own.
CREATE FUNCTION datastreams_shard.stream_health(account text,
	frequency_tolerance text, late_ratio_threshold text)
RETURNS SETOF datastreams.stream_health
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', $1, true);
	IF $2 IS NOT NULL THEN
		PERFORM pg_catalog.set_config('datastreams.health_frequency_tolerance', $2, true);
	END IF;
	IF $3 IS NOT NULL THEN
		PERFORM pg_catalog.set_config('datastreams.health_late_ratio_threshold', $3, true);
	END IF;
	RETURN QUERY SELECT h.* FROM datastreams.stream_health AS h
				  WHERE datastreams_shard.serves(h.stream_id);
END
$$;
COMMENT ON FUNCTION datastreams_shard.stream_health(text, text, text) IS 'stream_health for account, without partitions moving in or moved out (router)';

--------------------------------------------------------------------------
-- Durable consumers
--
-- A consumer belongs to an account, not to a stream: the proxy creates and
-- drops it on every shard, and each shard keeps the positions of its own
-- streams.  Its consumers row is the same on every shard: the whole list
-- of streams (on every shard) and the proxy's created_at.  Members of a
-- consumer are sessions of the proxy, which locks streams for them there
-- (a shard's transaction ends with each call); the shard's poll is
-- therefore two calls: candidates, then the frames of the streams the
-- member got.
--------------------------------------------------------------------------

-- The streams of a list this shard holds (and serves) for account: the
-- proxy learns which streams exist anywhere before creating a consumer.
CREATE FUNCTION datastreams_shard.held_streams(account text, streams uuid[])
RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', $1, true);
	RETURN QUERY SELECT s.id FROM datastreams.streams AS s
				  WHERE s.id OPERATOR(pg_catalog.=) ANY ($2)
					AND s.account_id OPERATOR(pg_catalog.=) $1
					AND datastreams_shard.serves(s.id);
END
$$;
COMMENT ON FUNCTION datastreams_shard.held_streams(text, uuid[]) IS 'the streams of the list that this shard holds for account (router)';

-- The consumer's row made the same on every shard: the whole list of
-- streams and the proxy's created_at.  Positions of streams outside the
-- list go (create_consumer makes a consumer of every stream when none of
-- the list is here).  SECURITY DEFINER: tenants, and so the router, have
-- no UPDATE on consumers nor DELETE on positions.
CREATE FUNCTION datastreams_shard.settle_consumer(account text, name text,
	streams uuid[], created_at timestamptz)
RETURNS datastreams.consumers
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result datastreams.consumers;
BEGIN
	UPDATE datastreams.consumers AS c
	   SET streams = $3, created_at = coalesce($4, c.created_at)
	 WHERE c.account_id OPERATOR(pg_catalog.=) $1 AND c.name OPERATOR(pg_catalog.=) $2
	RETURNING c.* INTO result;
	IF $3 IS NOT NULL THEN
		DELETE FROM datastreams.consumer_positions AS p
		 WHERE p.account_id OPERATOR(pg_catalog.=) $1 AND p.consumer OPERATOR(pg_catalog.=) $2
		   AND p.stream_id OPERATOR(pg_catalog.<>) ALL ($3);
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION datastreams_shard.settle_consumer(text, text, uuid[], timestamptz) IS 'give a new consumer the whole list of streams and the proxy''s creation time (router)';

-- found: the streams of the list held by some shard (held_streams() of
-- every shard).  Returns the consumer, or nothing when this shard already
-- has it with the same definition: a retry after a partial failure
-- completes the consumer, and the proxy raises 23505 when every shard had
-- it.
CREATE FUNCTION datastreams_shard.create_consumer(account text, name text,
	streams uuid[], start text, found uuid[], created_at timestamptz)
RETURNS SETOF datastreams.consumers
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	start_at text := coalesce(pg_catalog.lower(pg_catalog.btrim($4)), 'latest');
	wanted uuid[];
	missing uuid;
	here uuid[];
	existing datastreams.consumers;
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', $1, true);
	IF pg_catalog.cardinality($3) > 0 AND pg_catalog.array_position($3, NULL) IS NULL THEN
		SELECT pg_catalog.array_agg(DISTINCT u.id ORDER BY u.id) INTO wanted
		  FROM pg_catalog.unnest($3) AS u(id);
		SELECT u.id INTO missing FROM pg_catalog.unnest(wanted) AS u(id)
		 WHERE u.id OPERATOR(pg_catalog.<>) ALL (coalesce($5, '{}'))
		 ORDER BY u.id LIMIT 1;
	END IF;
	-- A list one node refuses gets one node's error, in its order (name
	-- and start are checked first); a stream no shard holds is not here
	-- either.
	IF ($3 IS NOT NULL AND wanted IS NULL) OR missing IS NOT NULL THEN
		PERFORM datastreams.create_consumer($2,
			CASE WHEN missing IS NULL THEN $3 ELSE ARRAY[missing] END, $4);
		RAISE EXCEPTION 'stream % not found', missing USING ERRCODE = 'no_data_found';
	END IF;

	SELECT c.* INTO existing FROM datastreams.consumers AS c
	 WHERE c.account_id OPERATOR(pg_catalog.=) $1 AND c.name OPERATOR(pg_catalog.=) $2;
	IF FOUND AND existing.streams IS NOT DISTINCT FROM wanted
	   AND existing.start OPERATOR(pg_catalog.=) start_at THEN
		RETURN;
	END IF;

	-- One node's create_consumer checks the name, the start and that the
	-- consumer is new, and places the positions of this shard's streams.
	SELECT pg_catalog.array_agg(s.id ORDER BY s.id) INTO here
	  FROM datastreams.streams AS s
	 WHERE s.id OPERATOR(pg_catalog.=) ANY (wanted)
	   AND s.account_id OPERATOR(pg_catalog.=) $1
	   AND datastreams_shard.serves(s.id);
	PERFORM datastreams.create_consumer($2, here, $4);
	RETURN NEXT datastreams_shard.settle_consumer($1, $2, wanted, $6);
END
$$;
COMMENT ON FUNCTION datastreams_shard.create_consumer(text, text, uuid[], text, uuid[], timestamptz) IS 'create_consumer() for account with the positions of this shard''s streams; nothing if it exists with the same definition (router)';

-- Consumers of account (name NULL: all), without raising: the proxy
-- decides what "not found" is across shards.
CREATE FUNCTION datastreams_shard.consumers(account text, name text)
RETURNS SETOF datastreams.consumers
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', $1, true);
	RETURN QUERY SELECT c.* FROM datastreams.consumers AS c
				  WHERE c.account_id OPERATOR(pg_catalog.=) datastreams.require_account()
					AND ($2 IS NULL OR c.name OPERATOR(pg_catalog.=) $2);
END
$$;
COMMENT ON FUNCTION datastreams_shard.consumers(text, text) IS 'the consumers of account, or the one named (router)';

-- 1 if the consumer was here and is dropped, 0 if it was not here.
CREATE FUNCTION datastreams_shard.drop_consumer(account text, name text)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', $1, true);
	IF NOT EXISTS (SELECT FROM datastreams.consumers AS c
					WHERE c.account_id OPERATOR(pg_catalog.=) datastreams.require_account()
					  AND c.name OPERATOR(pg_catalog.=) $2) THEN
		RETURN 0;
	END IF;
	PERFORM datastreams.drop_consumer($2);
	RETURN 1;
END
$$;
COMMENT ON FUNCTION datastreams_shard.drop_consumer(text, text) IS 'drop_consumer() for account if the consumer is here: 1, else 0 (router)';

-- The first call of a poll through the proxy: the streams of this shard
-- with frames after the consumer's position, each with up to "limit" of
-- them counted, when it was last acknowledged and what it missed.
-- One node's poll() checks the consumer (P0002) and gives a consumer of
-- every stream positions for the streams created since; its one frame is
-- not used, and its missed-frames WARNING is not sent (the proxy raises
-- it for the streams it returns).
CREATE FUNCTION datastreams_shard.poll_candidates(account text, consumer text, "limit" integer)
RETURNS TABLE (stream_id uuid, acknowledged_at timestamptz, pending integer,
			   missed_since_ack bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = error
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', $1, true);
	PERFORM FROM datastreams.poll($2, 1);
	RETURN QUERY
		SELECT p.stream_id, p.acknowledged_at, w.n, p.missed_since_ack
		  FROM datastreams.consumer_positions AS p
		 CROSS JOIN LATERAL (
				SELECT pg_catalog.count(*)::integer AS n
				  FROM (SELECT FROM datastreams.frames AS f
						 WHERE f.stream_id OPERATOR(pg_catalog.=) p.stream_id
						   AND f.sequence OPERATOR(pg_catalog.>) p.acknowledged_sequence
						 ORDER BY f.sequence LIMIT $3) AS x) AS w
		 WHERE p.account_id OPERATOR(pg_catalog.=) $1 AND p.consumer OPERATOR(pg_catalog.=) $2
		   AND w.n OPERATOR(pg_catalog.>) 0
		   AND datastreams_shard.serves(p.stream_id);
END
$$;
COMMENT ON FUNCTION datastreams_shard.poll_candidates(text, text, integer) IS 'the consumer''s streams on this shard with frames after its position (router)';

-- The second call: frames after the consumer's positions (read now, after
-- the proxy locked the streams for the member) in the streams given, at
-- most "limit" per stream, each stream's in sequence order.
CREATE FUNCTION datastreams_shard.poll_frames(account text, consumer text,
	streams uuid[], "limit" integer)
RETURNS SETOF datastreams.frames
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', $1, true);
	RETURN QUERY
		SELECT f.*
		  FROM datastreams.consumer_positions AS p
		 CROSS JOIN LATERAL (
				SELECT f.* FROM datastreams.frames AS f
				 WHERE f.stream_id OPERATOR(pg_catalog.=) p.stream_id
				   AND f.account_id OPERATOR(pg_catalog.=) $1
				   AND f.sequence OPERATOR(pg_catalog.>) p.acknowledged_sequence
				 ORDER BY f.sequence LIMIT $4) AS f
		 WHERE p.account_id OPERATOR(pg_catalog.=) $1 AND p.consumer OPERATOR(pg_catalog.=) $2
		   AND p.stream_id OPERATOR(pg_catalog.=) ANY ($3)
		   AND datastreams_shard.serves(p.stream_id)
		 ORDER BY f.stream_id, f.sequence;
END
$$;
COMMENT ON FUNCTION datastreams_shard.poll_frames(text, text, uuid[], integer) IS 'frames after the consumer''s positions in the given streams, at most limit per stream (router)';

CREATE FUNCTION datastreams_shard.consumer_move(account text, consumer text,
	stream_id uuid, sequence bigint, backwards boolean)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', $1, true);
	PERFORM datastreams_shard.gate(datastreams.stream_hash($3));
	RETURN datastreams.consumer_move($2, $3, $4, $5);
END
$$;
COMMENT ON FUNCTION datastreams_shard.consumer_move(text, text, uuid, bigint, boolean) IS 'consumer_move() (ack, seek) for account (router)';

CREATE FUNCTION datastreams_shard.consumer_lag(account text)
RETURNS SETOF datastreams.consumer_lag
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.set_config('datastreams.account_id', $1, true);
	RETURN QUERY SELECT l.* FROM datastreams.consumer_lag AS l
				  WHERE datastreams_shard.serves(l.stream_id);
END
$$;
COMMENT ON FUNCTION datastreams_shard.consumer_lag(text) IS 'consumer_lag rows of account, without partitions moving in or moved out (router)';

--------------------------------------------------------------------------
-- Accounts and the router
--------------------------------------------------------------------------

-- Shards need only the account ids (streams reference them); roles and
-- bindings stay on the proxy.  Idempotent, so the proxy's fan-out can be
-- retried after a partial failure.  SECURITY DEFINER because the router
-- is a trusted role, not an administrator: this is the one write it may
-- make outside an account.
CREATE FUNCTION datastreams_shard.ensure_account(id text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF $1 IS NULL OR $1 !~ '[^[:space:]]' THEN
		RAISE EXCEPTION 'account id is required' USING ERRCODE = 'not_null_violation';
	END IF;
	INSERT INTO datastreams.accounts (id) VALUES ($1) ON CONFLICT DO NOTHING;
	RETURN $1;
END
$$;
COMMENT ON FUNCTION datastreams_shard.ensure_account(text) IS 'create an account on this shard unless it exists (router)';

-- The router role is created by the administrator (roles are global) and
-- authorized here once per shard database: trusted to name accounts, and
-- allowed to call the entry points.
CREATE FUNCTION datastreams_shard.authorize_router(role regrole)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	entry_points text;
BEGIN
	PERFORM datastreams.require_admin();
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'role is required' USING ERRCODE = 'not_null_violation';
	END IF;
	PERFORM datastreams.trust_role($1);
	EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA datastreams_shard TO %s', $1);
	EXECUTE pg_catalog.format('GRANT SELECT ON datastreams_shard.hidden TO %s', $1);
	SELECT pg_catalog.string_agg(p.oid::regprocedure::text, ', ') INTO entry_points
	  FROM pg_catalog.pg_proc AS p
	 WHERE p.pronamespace OPERATOR(pg_catalog.=) 'datastreams_shard'::regnamespace
	   AND p.proname OPERATOR(pg_catalog.<>) 'authorize_router';
	EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', entry_points, $1);
END
$$;
COMMENT ON FUNCTION datastreams_shard.authorize_router(regrole) IS 'trust role as the proxies'' router and let it call the entry points (administrators)';

DO $$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid FROM pg_catalog.pg_proc AS p
			  WHERE p.pronamespace OPERATOR(pg_catalog.=) 'datastreams_shard'::regnamespace LOOP
		EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
	END LOOP;
END
$$;
