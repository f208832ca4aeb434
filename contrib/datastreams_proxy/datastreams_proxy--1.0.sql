/* contrib/datastreams_proxy/datastreams_proxy--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION datastreams_proxy" to load this file. \quit

-- The routing hash came with datastreams 1.2.
SELECT 'datastreams.stream_hash(uuid)'::pg_catalog.regprocedure;

--------------------------------------------------------------------------
-- The cluster map and tenancy
--
-- The map is the PL/Proxy SQL/MED server datastreams_cluster, which the
-- DBA creates (docs/scale-out.md): options p0 .. p<N-1>, N a power of two,
-- each a shard's connection string without credentials, and a user mapping
-- FOR PUBLIC naming the router role.  A stream lives in partition
-- stream_hash(id) & (N - 1).
--
-- Tenancy is resolved here, as on one node: every routed function takes
-- the account as a trailing argument defaulting to current_account(), and
-- cluster_for() refuses any other account before anything is sent.
--------------------------------------------------------------------------

CREATE FUNCTION datastreams_proxy.cluster_for(account text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF account IS DISTINCT FROM datastreams.require_account() THEN
		RAISE EXCEPTION 'permission denied to act for account "%"', pg_catalog.left(account, 100)
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Leave out the account argument: calls act for the account the role acts for.';
	END IF;
	RETURN 'datastreams_cluster';
END
$$;
COMMENT ON FUNCTION datastreams_proxy.cluster_for(text) IS 'the PL/Proxy cluster of a routed call; 42501 unless account is the one the caller acts for';

-- The map's partitions, from the foreign server's options.
CREATE FUNCTION datastreams_proxy.partitions()
RETURNS TABLE (partition integer, conninfo text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_foreign_server AS s
					WHERE s.srvname OPERATOR(pg_catalog.=) 'datastreams_cluster') THEN
		RAISE EXCEPTION 'cluster map "datastreams_cluster" does not exist'
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create the PL/Proxy server datastreams_cluster as docs/scale-out.md shows.';
	END IF;
	RETURN QUERY
		SELECT pg_catalog.substr(o.option_name, 2)::integer, o.option_value
		  FROM pg_catalog.pg_foreign_server AS s,
			   pg_catalog.pg_options_to_table(s.srvoptions) AS o
		 WHERE s.srvname OPERATOR(pg_catalog.=) 'datastreams_cluster'
		   AND o.option_name ~ '^p[0-9]+$'
		 ORDER BY 1;
END
$$;
COMMENT ON FUNCTION datastreams_proxy.partitions() IS 'the cluster map: each partition and the connection string of its shard';

CREATE FUNCTION datastreams_proxy.partition_count()
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_catalog.count(*)::integer FROM datastreams_proxy.partitions()
$$;
COMMENT ON FUNCTION datastreams_proxy.partition_count() IS 'the number of partitions in the cluster map (a power of two)';

CREATE FUNCTION datastreams_proxy.partition_of(stream_id uuid)
RETURNS integer
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT datastreams.stream_hash($1) OPERATOR(pg_catalog.&) (datastreams_proxy.partition_count() OPERATOR(pg_catalog.-) 1)
$$;
COMMENT ON FUNCTION datastreams_proxy.partition_of(uuid) IS 'the partition a stream id routes to';

-- Where to LISTEN for a stream's frames: notifications are sent by the
-- shard that stores the frame.  The connection string carries no
-- credentials; a listener connects with a role of its own.
CREATE FUNCTION datastreams_proxy.shard_of(stream_id uuid)
RETURNS text
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT p.conninfo FROM datastreams_proxy.partitions() AS p
	 WHERE p.partition OPERATOR(pg_catalog.=) datastreams_proxy.partition_of($1)
$$;
COMMENT ON FUNCTION datastreams_proxy.shard_of(uuid) IS 'the connection string of the shard that holds a stream (for LISTEN)';

-- A new stream's routing hash: random, so streams spread evenly.
CREATE FUNCTION datastreams_proxy.random_hash()
RETURNS integer
LANGUAGE sql VOLATILE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (pg_catalog.floor(pg_catalog.random() * 4294967296)::bigint - 2147483648)::integer
$$;
COMMENT ON FUNCTION datastreams_proxy.random_hash() IS 'a random routing hash for a new stream';

-- PL/Proxy's RUN ON needs a hash; a call without a stream id is sent to
-- partition 0, whose shard reports the error a single node would.
CREATE FUNCTION datastreams_proxy.route(hash integer)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce($1, 0) $$;
COMMENT ON FUNCTION datastreams_proxy.route(integer) IS 'the hash a routed call runs on: its stream''s hash, 0 for none';

--------------------------------------------------------------------------
-- The API, routed.  Same names and arguments as datastreams.*, plus the
-- trailing account (and partition_hash for create_stream).  Each call is
-- one transaction on one shard: there are no distributed transactions.
--------------------------------------------------------------------------

-- partition_hash lets a caller place a stream next to another (the same
-- hash gives the same partition); the id itself is still generated by the
-- shard.
CREATE FUNCTION datastreams_proxy.create_stream(name text, symbol text,
	description text DEFAULT '', frequency interval DEFAULT NULL,
	sla_ms integer DEFAULT 0, status text DEFAULT 'inactive',
	metadata jsonb DEFAULT '{}', retention interval DEFAULT NULL,
	account text DEFAULT datastreams.current_account(),
	partition_hash integer DEFAULT datastreams_proxy.random_hash())
RETURNS datastreams.streams
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON datastreams_proxy.route(partition_hash);
	SELECT * FROM datastreams_shard.create_stream($9, $10, $1, $2, $3, $4, $5, $6, $7, $8);
$$;
COMMENT ON FUNCTION datastreams_proxy.create_stream(text, text, text, interval, integer, text, jsonb, interval, text, integer) IS 'create_stream() on the shard of partition_hash (random by default)';

CREATE FUNCTION datastreams_proxy.get_stream(id uuid,
	account text DEFAULT datastreams.current_account())
RETURNS datastreams.streams
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON datastreams_proxy.route(datastreams.stream_hash(id));
	SELECT * FROM datastreams_shard.get_stream($2, $1);
$$;
COMMENT ON FUNCTION datastreams_proxy.get_stream(uuid, text) IS 'get_stream() on the stream''s shard';

CREATE FUNCTION datastreams_proxy.update_stream(id uuid, patch jsonb,
	account text DEFAULT datastreams.current_account())
RETURNS datastreams.streams
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON datastreams_proxy.route(datastreams.stream_hash(id));
	SELECT * FROM datastreams_shard.update_stream($3, $1, $2);
$$;
COMMENT ON FUNCTION datastreams_proxy.update_stream(uuid, jsonb, text) IS 'update_stream() on the stream''s shard';

CREATE FUNCTION datastreams_proxy.create_frame(stream_id uuid, sequence bigint DEFAULT NULL,
	payload jsonb DEFAULT '{}', latency_ms integer DEFAULT 0,
	status text DEFAULT 'ok', metadata jsonb DEFAULT '{}',
	on_duplicate text DEFAULT 'error',
	account text DEFAULT datastreams.current_account())
RETURNS datastreams.frames
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON datastreams_proxy.route(datastreams.stream_hash(stream_id));
	SELECT * FROM datastreams_shard.create_frame($8, $1, $2, $3, $4, $5, $6, $7);
$$;
COMMENT ON FUNCTION datastreams_proxy.create_frame(uuid, bigint, jsonb, integer, text, jsonb, text, text) IS 'create_frame() on the stream''s shard';

CREATE FUNCTION datastreams_proxy.ingest(stream_id uuid, frames jsonb,
	account text DEFAULT datastreams.current_account())
RETURNS bigint
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON datastreams_proxy.route(datastreams.stream_hash(stream_id));
	SELECT datastreams_shard.ingest($3, $1, $2);
$$;
COMMENT ON FUNCTION datastreams_proxy.ingest(uuid, jsonb, text) IS 'ingest() on the stream''s shard: one batch, one shard transaction';

CREATE FUNCTION datastreams_proxy.push(topic text, payload jsonb,
	account text DEFAULT datastreams.current_account())
RETURNS datastreams.frames
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON datastreams_proxy.route(datastreams.stream_hash(datastreams.topic_stream_id(topic)));
	SELECT * FROM datastreams_shard.push($3, $1, $2);
$$;
COMMENT ON FUNCTION datastreams_proxy.push(text, jsonb, text) IS 'push() on the shard of the topic''s stream';

CREATE FUNCTION datastreams_proxy.list_frames(stream_id uuid, "limit" integer DEFAULT 25,
	before_sequence bigint DEFAULT NULL,
	account text DEFAULT datastreams.current_account())
RETURNS SETOF datastreams.frames
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON datastreams_proxy.route(datastreams.stream_hash(stream_id));
	SELECT * FROM datastreams_shard.list_frames($4, $1, $2, $3);
$$;
COMMENT ON FUNCTION datastreams_proxy.list_frames(uuid, integer, bigint, text) IS 'list_frames() on the stream''s shard';

CREATE FUNCTION datastreams_proxy.frames_since(stream_id uuid, after_sequence bigint,
	"limit" integer DEFAULT 500,
	account text DEFAULT datastreams.current_account())
RETURNS SETOF datastreams.frames
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON datastreams_proxy.route(datastreams.stream_hash(stream_id));
	SELECT * FROM datastreams_shard.frames_since($4, $1, $2, $3);
$$;
COMMENT ON FUNCTION datastreams_proxy.frames_since(uuid, bigint, integer, text) IS 'frames_since() on the stream''s shard';

CREATE FUNCTION datastreams_proxy.latest_frame(stream_id uuid,
	account text DEFAULT datastreams.current_account())
RETURNS datastreams.frames
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON datastreams_proxy.route(datastreams.stream_hash(stream_id));
	SELECT * FROM datastreams_shard.latest_frame($2, $1);
$$;
COMMENT ON FUNCTION datastreams_proxy.latest_frame(uuid, text) IS 'latest_frame() on the stream''s shard';

-- Fan-outs: PL/Proxy returns the shards' rows in arrival order, so the
-- public functions order them.
CREATE FUNCTION datastreams_proxy.list_streams_on_shards(account text)
RETURNS SETOF datastreams.streams
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON ALL;
	SELECT * FROM datastreams_shard.list_streams($1);
$$;
COMMENT ON FUNCTION datastreams_proxy.list_streams_on_shards(text) IS 'the streams of account on every shard, unordered';

CREATE FUNCTION datastreams_proxy.list_streams(account text DEFAULT datastreams.current_account())
RETURNS SETOF datastreams.streams
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT s.* FROM datastreams_proxy.list_streams_on_shards($1) AS s
	 ORDER BY s.created_at DESC, s.id DESC
$$;
COMMENT ON FUNCTION datastreams_proxy.list_streams(text) IS 'streams of the account on every shard, newest first';

CREATE FUNCTION datastreams_proxy.stream_health_on_shards(account text,
	frequency_tolerance text, late_ratio_threshold text)
RETURNS SETOF datastreams.stream_health
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON ALL;
	SELECT * FROM datastreams_shard.stream_health($1, $2, $3);
$$;
COMMENT ON FUNCTION datastreams_proxy.stream_health_on_shards(text, text, text) IS 'stream_health rows of account on every shard, unordered';

-- As on one node, a role acting for no account sees no rows; the caller's
-- health_* settings apply on the shards.
CREATE FUNCTION datastreams_proxy.stream_health_rows()
RETURNS SETOF datastreams.stream_health
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF datastreams.current_account() IS NULL THEN
		RETURN;
	END IF;
	RETURN QUERY SELECT * FROM datastreams_proxy.stream_health_on_shards(
		datastreams.current_account(),
		pg_catalog.current_setting('datastreams.health_frequency_tolerance', true),
		pg_catalog.current_setting('datastreams.health_late_ratio_threshold', true));
END
$$;
COMMENT ON FUNCTION datastreams_proxy.stream_health_rows() IS 'the rows of the stream_health view of the proxy';

CREATE VIEW datastreams_proxy.stream_health AS
	SELECT * FROM datastreams_proxy.stream_health_rows();
COMMENT ON VIEW datastreams_proxy.stream_health IS 'datastreams.stream_health of the caller''s streams on every shard';

--------------------------------------------------------------------------
-- Durable consumers (docs/scale-out.md, "Durable consumers")
--
-- A consumer exists on every shard, each holding the positions of its own
-- streams.  Members of a consumer are sessions of this proxy: a shard's
-- transaction ends with each call, so the locks that keep members apart
-- (poll's row locks on the positions, on one node) are taken here, on
-- rows of consumer_streams, and held until the member's transaction on
-- the proxy ends.  ack() and seek() commit on the shard when they return.
--------------------------------------------------------------------------

-- Row locks rather than advisory locks: any role can take or list any
-- advisory lock, while row-level security keeps a tenant off another
-- account's rows, and the grants below (as for consumer_positions on one
-- node: no DELETE, no table-wide UPDATE) let no tenant lock the table as a
-- whole.  Rows are created on demand and stay when the consumer is
-- dropped (a consumer created again under the name reuses them), so they
-- are not dumped.
CREATE TABLE datastreams_proxy.consumer_streams (
	account_id text NOT NULL,
	consumer text NOT NULL,
	stream_id uuid NOT NULL,
	PRIMARY KEY (account_id, consumer, stream_id)
);
COMMENT ON TABLE datastreams_proxy.consumer_streams IS 'one row per consumer and stream polled through this proxy: the row a member locks while it holds the stream';
ALTER TABLE datastreams_proxy.consumer_streams ENABLE ROW LEVEL SECURITY;
ALTER TABLE datastreams_proxy.consumer_streams FORCE ROW LEVEL SECURITY;
CREATE POLICY consumer_streams_tenant ON datastreams_proxy.consumer_streams
	USING (account_id OPERATOR(pg_catalog.=) datastreams.current_account())
	WITH CHECK (account_id OPERATOR(pg_catalog.=) datastreams.current_account());
GRANT SELECT, INSERT ON datastreams_proxy.consumer_streams TO PUBLIC;
-- (SELECT ... FOR UPDATE needs UPDATE on a column)
GRANT UPDATE (stream_id) ON datastreams_proxy.consumer_streams TO PUBLIC;

-- Lock a stream of a consumer for the caller's transaction: a poll tries
-- (skipping streams other members hold), an ack or seek waits.  The row is
-- inserted the first time the consumer's stream is locked.
CREATE FUNCTION datastreams_proxy.lock_consumer_stream(account text, consumer text,
	stream_id uuid, wait boolean)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	previous_timeout text;
BEGIN
	PERFORM datastreams_proxy.cluster_for($1);
	IF $3 IS NULL THEN
		RETURN true;
	END IF;
	PERFORM FROM datastreams_proxy.consumer_streams AS cs
	 WHERE cs.account_id OPERATOR(pg_catalog.=) $1 AND cs.consumer OPERATOR(pg_catalog.=) $2
	   AND cs.stream_id OPERATOR(pg_catalog.=) $3;
	IF NOT FOUND AND $4 THEN
		INSERT INTO datastreams_proxy.consumer_streams (account_id, consumer, stream_id)
		VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING;
	ELSIF NOT FOUND THEN
		-- A member that inserted the row holds it until its transaction
		-- ends, and an insert of the same row would wait for that: a poll
		-- skips the stream instead, as if the member had locked it.
		previous_timeout := pg_catalog.current_setting('lock_timeout');
		BEGIN
			PERFORM pg_catalog.set_config('lock_timeout', '1ms', true);
			INSERT INTO datastreams_proxy.consumer_streams (account_id, consumer, stream_id)
			VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING;
			PERFORM pg_catalog.set_config('lock_timeout', previous_timeout, true);
		EXCEPTION WHEN lock_not_available THEN
			RETURN false;
		END;
	END IF;
	IF $4 THEN
		PERFORM FROM datastreams_proxy.consumer_streams AS cs
		 WHERE cs.account_id OPERATOR(pg_catalog.=) $1 AND cs.consumer OPERATOR(pg_catalog.=) $2
		   AND cs.stream_id OPERATOR(pg_catalog.=) $3
		   FOR UPDATE;
		RETURN true;
	END IF;
	PERFORM FROM datastreams_proxy.consumer_streams AS cs
	 WHERE cs.account_id OPERATOR(pg_catalog.=) $1 AND cs.consumer OPERATOR(pg_catalog.=) $2
	   AND cs.stream_id OPERATOR(pg_catalog.=) $3
	   FOR UPDATE SKIP LOCKED;
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION datastreams_proxy.lock_consumer_stream(text, text, uuid, boolean) IS 'lock a consumer''s stream for the caller''s transaction on the proxy (wait or try), as poll() holds it on one node';

CREATE FUNCTION datastreams_proxy.held_streams_on_shards(account text, streams uuid[])
RETURNS SETOF uuid
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON ALL;
	SELECT datastreams_shard.held_streams($1, $2);
$$;
COMMENT ON FUNCTION datastreams_proxy.held_streams_on_shards(text, uuid[]) IS 'the streams of the list that exist for account on some shard';

CREATE FUNCTION datastreams_proxy.create_consumer_on_shards(account text, name text,
	streams uuid[], start text, found uuid[], created_at timestamptz)
RETURNS SETOF datastreams.consumers
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON ALL;
	SELECT * FROM datastreams_shard.create_consumer($1, $2, $3, $4, $5, $6);
$$;
COMMENT ON FUNCTION datastreams_proxy.create_consumer_on_shards(text, text, uuid[], text, uuid[], timestamptz) IS 'the consumer on every shard that lacks it; its rows where it was created';

-- Every shard gets the consumer.  A shard that has it already with the
-- same definition counts as done, so a call that failed on some shard can
-- be repeated; when every shard had it, 23505 as on one node.
CREATE FUNCTION datastreams_proxy.create_consumer(name text, streams uuid[] DEFAULT NULL,
	start text DEFAULT 'latest',
	account text DEFAULT datastreams.current_account())
RETURNS datastreams.consumers
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	held uuid[];
	result datastreams.consumers;
BEGIN
	PERFORM datastreams_proxy.cluster_for(account);
	IF pg_catalog.cardinality(streams) > 0 THEN
		held := ARRAY(SELECT datastreams_proxy.held_streams_on_shards(account, streams));
	END IF;
	SELECT c.* INTO result
	  FROM datastreams_proxy.create_consumer_on_shards(account, name, streams, start, held,
													   pg_catalog.now()) AS c
	 LIMIT 1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'consumer "%" already exists', name USING ERRCODE = 'unique_violation';
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION datastreams_proxy.create_consumer(text, uuid[], text, text) IS 'create_consumer() on every shard (streams NULL: every stream of the account on every shard, also later ones)';

CREATE FUNCTION datastreams_proxy.consumers_on_shards(account text, name text)
RETURNS SETOF datastreams.consumers
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON ALL;
	SELECT * FROM datastreams_shard.consumers($1, $2);
$$;
COMMENT ON FUNCTION datastreams_proxy.consumers_on_shards(text, text) IS 'the consumers of account (name NULL: all) on every shard, unordered';

CREATE FUNCTION datastreams_proxy.get_consumer(name text,
	account text DEFAULT datastreams.current_account())
RETURNS datastreams.consumers
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result datastreams.consumers;
BEGIN
	SELECT c.* INTO result FROM datastreams_proxy.consumers_on_shards(account, name) AS c
	 WHERE c.name OPERATOR(pg_catalog.=) get_consumer.name
	 ORDER BY c.created_at LIMIT 1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'consumer "%" not found', pg_catalog.left(name, 100)
			USING ERRCODE = 'no_data_found';
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION datastreams_proxy.get_consumer(text, text) IS 'get_consumer() across the shards';

-- A consumer that a failed call left on some shards only is listed too,
-- so that it can be dropped or completed.
CREATE FUNCTION datastreams_proxy.list_consumers(account text DEFAULT datastreams.current_account())
RETURNS SETOF datastreams.consumers
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT DISTINCT ON (c.name COLLATE "C") c.*
	  FROM datastreams_proxy.consumers_on_shards($1, NULL) AS c
	 ORDER BY c.name COLLATE "C", c.created_at
$$;
COMMENT ON FUNCTION datastreams_proxy.list_consumers(text) IS 'consumers of the account, by name, across the shards';

CREATE FUNCTION datastreams_proxy.drop_consumer_on_shards(account text, name text)
RETURNS SETOF integer
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON ALL;
	SELECT datastreams_shard.drop_consumer($1, $2);
$$;
COMMENT ON FUNCTION datastreams_proxy.drop_consumer_on_shards(text, text) IS 'drop the consumer on every shard that has it; 1 per shard that had it';

-- Waits for the members of this proxy holding the consumer's streams;
-- P0002 only when no shard had the consumer: a repeated call completes a
-- drop that failed on some shard.
CREATE FUNCTION datastreams_proxy.drop_consumer(name text,
	account text DEFAULT datastreams.current_account())
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM datastreams_proxy.cluster_for(account);
	PERFORM FROM datastreams_proxy.consumer_streams AS cs
	 WHERE cs.account_id OPERATOR(pg_catalog.=) account
	   AND cs.consumer OPERATOR(pg_catalog.=) drop_consumer.name
	   FOR UPDATE;
	IF (SELECT pg_catalog.sum(d) FROM datastreams_proxy.drop_consumer_on_shards(account, name) AS d)
	   OPERATOR(pg_catalog.=) 0 THEN
		RAISE EXCEPTION 'consumer "%" not found', coalesce(pg_catalog.left(name, 100), '<NULL>')
			USING ERRCODE = 'no_data_found';
	END IF;
END
$$;
COMMENT ON FUNCTION datastreams_proxy.drop_consumer(text, text) IS 'drop_consumer() on every shard';

CREATE FUNCTION datastreams_proxy.poll_candidates(account text, consumer text, "limit" integer)
RETURNS TABLE (stream_id uuid, acknowledged_at timestamptz, pending integer,
			   missed_since_ack bigint)
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON ALL;
	SELECT * FROM datastreams_shard.poll_candidates($1, $2, $3);
$$;
COMMENT ON FUNCTION datastreams_proxy.poll_candidates(text, text, integer) IS 'the consumer''s streams with frames after its position, on every shard';

CREATE FUNCTION datastreams_proxy.poll_frames(account text, consumer text,
	streams uuid[], "limit" integer)
RETURNS SETOF datastreams.frames
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON ALL;
	SELECT * FROM datastreams_shard.poll_frames($1, $2, $3, $4);
$$;
COMMENT ON FUNCTION datastreams_proxy.poll_frames(text, text, uuid[], integer) IS 'frames after the consumer''s positions in the given streams, on every shard';

-- One node's poll() across the shards: at most "limit" frames in all;
-- streams least recently acknowledged first across the shards; each
-- stream's frames in sequence order; the streams returned are locked for
-- the caller's transaction on the proxy, so other members get other
-- streams.  Candidates are counted first and locked, then their frames
-- read: a frame read after the lock is one no member has acknowledged.
CREATE FUNCTION datastreams_proxy.poll(consumer text, "limit" integer DEFAULT 500,
	account text DEFAULT datastreams.current_account())
RETURNS SETOF datastreams.frames
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n integer;
	budget integer;
	taken uuid[] := '{}';
	candidate record;
BEGIN
	PERFORM datastreams_proxy.cluster_for(account);
	IF "limit" IS NOT NULL AND "limit" < 1 THEN
		RAISE EXCEPTION 'limit must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	n := least(coalesce("limit", 500), 10000);
	budget := n;
	FOR candidate IN
		SELECT c.stream_id, c.pending, c.missed_since_ack
		  FROM datastreams_proxy.poll_candidates(account, consumer, n) AS c
		 ORDER BY c.acknowledged_at NULLS FIRST, c.stream_id
	LOOP
		CONTINUE WHEN NOT datastreams_proxy.lock_consumer_stream(account, consumer,
																 candidate.stream_id, false);
		IF candidate.missed_since_ack > 0 THEN
			RAISE WARNING 'consumer "%" missed % frames of stream %', consumer,
					candidate.missed_since_ack, candidate.stream_id
				USING DETAIL = 'Retention removed them before they were acknowledged.',
					  HINT = 'The count is in frames_missed of datastreams_proxy.consumer_lag; acknowledging a frame of the stream clears this warning.';
		END IF;
		taken := taken || candidate.stream_id;
		budget := budget - candidate.pending;
		EXIT WHEN budget <= 0;
	END LOOP;
	IF pg_catalog.cardinality(taken) = 0 THEN
		RETURN;
	END IF;
	RETURN QUERY
		SELECT f.* FROM datastreams_proxy.poll_frames(account, consumer, taken, n) AS f
		 ORDER BY pg_catalog.array_position(taken, f.stream_id), f.sequence
		 LIMIT n;
END
$$;
COMMENT ON FUNCTION datastreams_proxy.poll(text, integer, text) IS 'poll() across the shards: at most limit frames, streams least recently acknowledged first, each stream''s in order; locks the streams returned for the caller''s transaction on this proxy';

CREATE FUNCTION datastreams_proxy.consumer_move_on_shard(account text, consumer text,
	stream_id uuid, sequence bigint, backwards boolean)
RETURNS boolean
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON datastreams_proxy.route(datastreams.stream_hash(stream_id));
	SELECT datastreams_shard.consumer_move($1, $2, $3, $4, $5);
$$;
COMMENT ON FUNCTION datastreams_proxy.consumer_move_on_shard(text, text, uuid, bigint, boolean) IS 'consumer_move() on the stream''s shard';

-- Waits for a member of this proxy that holds the stream, as one node
-- waits for its row lock; commits on the shard when it returns.
CREATE FUNCTION datastreams_proxy.consumer_move(consumer text, stream_id uuid, sequence bigint,
	backwards boolean, account text DEFAULT datastreams.current_account())
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM datastreams_proxy.cluster_for(account);
	PERFORM datastreams_proxy.lock_consumer_stream(account, consumer, stream_id, true);
	RETURN datastreams_proxy.consumer_move_on_shard(account, consumer, stream_id, sequence,
													backwards);
END
$$;
COMMENT ON FUNCTION datastreams_proxy.consumer_move(text, uuid, bigint, boolean, text) IS 'consumer_move() on the stream''s shard, after members of this proxy holding the stream';

CREATE FUNCTION datastreams_proxy.ack(consumer text, stream_id uuid, sequence bigint,
	account text DEFAULT datastreams.current_account())
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT datastreams_proxy.consumer_move($1, $2, $3, false, $4) $$;
COMMENT ON FUNCTION datastreams_proxy.ack(text, uuid, bigint, text) IS 'ack() on the stream''s shard; committed there when it returns';

CREATE FUNCTION datastreams_proxy.seek(consumer text, stream_id uuid, sequence bigint,
	account text DEFAULT datastreams.current_account())
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT datastreams_proxy.consumer_move($1, $2, $3, true, $4) $$;
COMMENT ON FUNCTION datastreams_proxy.seek(text, uuid, bigint, text) IS 'seek() on the stream''s shard; committed there when it returns';

CREATE FUNCTION datastreams_proxy.consumer_lag_on_shards(account text)
RETURNS SETOF datastreams.consumer_lag
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER datastreams_proxy.cluster_for(account);
	RUN ON ALL;
	SELECT * FROM datastreams_shard.consumer_lag($1);
$$;
COMMENT ON FUNCTION datastreams_proxy.consumer_lag_on_shards(text) IS 'consumer_lag rows of account on every shard, unordered';

-- As on one node, a role acting for no account sees no rows.
CREATE FUNCTION datastreams_proxy.consumer_lag_rows()
RETURNS SETOF datastreams.consumer_lag
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF datastreams.current_account() IS NULL THEN
		RETURN;
	END IF;
	RETURN QUERY SELECT l.* FROM datastreams_proxy.consumer_lag_on_shards(datastreams.current_account()) AS l
				  ORDER BY l.consumer COLLATE "C", l.stream_id;
END
$$;
COMMENT ON FUNCTION datastreams_proxy.consumer_lag_rows() IS 'the rows of the consumer_lag view of the proxy, by consumer and stream';

CREATE VIEW datastreams_proxy.consumer_lag AS
	SELECT * FROM datastreams_proxy.consumer_lag_rows();
COMMENT ON VIEW datastreams_proxy.consumer_lag IS 'datastreams.consumer_lag of the caller''s consumers on every shard, by consumer and stream';

--------------------------------------------------------------------------
-- Administration
--------------------------------------------------------------------------

CREATE FUNCTION datastreams_proxy.ensure_account_on_shards(id text)
RETURNS SETOF text
LANGUAGE plproxy
SET search_path = pg_catalog, pg_temp
AS $$
	CLUSTER 'datastreams_cluster';
	RUN ON ALL;
	SELECT datastreams_shard.ensure_account($1);
$$;
COMMENT ON FUNCTION datastreams_proxy.ensure_account_on_shards(text) IS 'create an account on every shard unless it exists there (administrators)';

-- The account is created here first (same checks and errors as on one
-- node), then on every shard within the same proxy transaction: a shard
-- that fails rolls the local account back; shards that succeeded keep an
-- unused id, which a retry absorbs.
CREATE FUNCTION datastreams_proxy.create_account(id text, role regrole DEFAULT NULL)
RETURNS datastreams.accounts
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result datastreams.accounts;
BEGIN
	result := datastreams.create_account($1, $2);
	PERFORM datastreams_proxy.ensure_account_on_shards($1);
	RETURN result;
END
$$;
COMMENT ON FUNCTION datastreams_proxy.create_account(text, regrole) IS 'create_account() here and on every shard (administrators)';

-- After shards are added to the map: every account of the proxy on every
-- shard.  Idempotent.
CREATE FUNCTION datastreams_proxy.sync_accounts()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text;
	n bigint := 0;
BEGIN
	PERFORM datastreams.require_admin();
	FOR account IN SELECT a.id FROM datastreams.accounts AS a ORDER BY a.id LOOP
		PERFORM datastreams_proxy.ensure_account_on_shards(account);
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION datastreams_proxy.sync_accounts() IS 'create every account of the proxy on every shard, e.g. after adding shards; returns the number of accounts (administrators)';

-- Roles, bindings and trust live on the proxy only.
CREATE FUNCTION datastreams_proxy.bind_role(account text, role regrole)
RETURNS datastreams.accounts
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT datastreams.bind_role($1, $2) $$;
COMMENT ON FUNCTION datastreams_proxy.bind_role(text, regrole) IS 'datastreams.bind_role() of the proxy (administrators)';

CREATE FUNCTION datastreams_proxy.trust_role(role regrole)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT datastreams.trust_role($1) $$;
COMMENT ON FUNCTION datastreams_proxy.trust_role(regrole) IS 'datastreams.trust_role() of the proxy (administrators)';

CREATE FUNCTION datastreams_proxy.untrust_role(role regrole)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT datastreams.untrust_role($1) $$;
COMMENT ON FUNCTION datastreams_proxy.untrust_role(regrole) IS 'datastreams.untrust_role() of the proxy (administrators)';

CREATE FUNCTION datastreams_proxy.current_account()
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT datastreams.current_account() $$;
COMMENT ON FUNCTION datastreams_proxy.current_account() IS 'the account the caller acts for, resolved on the proxy';

CREATE FUNCTION datastreams_proxy.channel(stream_id uuid)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT datastreams.channel($1) $$;
COMMENT ON FUNCTION datastreams_proxy.channel(uuid) IS 'the NOTIFY channel of a stream, on the shard shard_of() names';

REVOKE ALL ON FUNCTION datastreams_proxy.ensure_account_on_shards(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION datastreams_proxy.create_account(text, regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION datastreams_proxy.sync_accounts() FROM PUBLIC;
REVOKE ALL ON FUNCTION datastreams_proxy.bind_role(text, regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION datastreams_proxy.trust_role(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION datastreams_proxy.untrust_role(regrole) FROM PUBLIC;

GRANT USAGE ON SCHEMA datastreams_proxy TO PUBLIC;
GRANT SELECT ON datastreams_proxy.stream_health TO PUBLIC;
GRANT SELECT ON datastreams_proxy.consumer_lag TO PUBLIC;
