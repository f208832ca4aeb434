/* datastreams--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION datastreams" to load this file. \quit

--------------------------------------------------------------------------
-- C functions: identifiers, tenancy, triggers
--------------------------------------------------------------------------

CREATE FUNCTION datastreams.uuid_v4() RETURNS uuid
AS 'MODULE_PATHNAME', 'datastreams_uuid_v4'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION datastreams.uuid_v4() IS 'random (version 4) UUID from libuuid, used for stream ids';

CREATE FUNCTION datastreams.uuid_v7() RETURNS uuid
AS 'MODULE_PATHNAME', 'datastreams_uuid_v7'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION datastreams.uuid_v7() IS 'time-ordered (version 7 layout) UUID, used for frame ids';

CREATE FUNCTION datastreams.current_account() RETURNS text
AS 'MODULE_PATHNAME', 'datastreams_current_account'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION datastreams.current_account() IS 'account the current role acts for: its bound account, else datastreams.account_id for trusted roles and administrators, else NULL';

CREATE FUNCTION datastreams.require_account() RETURNS text
AS 'MODULE_PATHNAME', 'datastreams_require_account'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION datastreams.require_account() IS 'current_account(), or an error when there is none (42501), when a bound role names another account (42501) or when the account does not exist (P0002)';

CREATE FUNCTION datastreams.is_admin() RETURNS boolean
AS 'MODULE_PATHNAME', 'datastreams_is_admin'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION datastreams.is_admin() IS 'true for superusers and members of the extension owner role';

CREATE FUNCTION datastreams.require_admin() RETURNS void
AS 'MODULE_PATHNAME', 'datastreams_require_admin'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION datastreams.require_admin() IS 'raises 42501 unless the current role is a superuser or a member of the extension owner';

CREATE FUNCTION datastreams.streams_before_row() RETURNS trigger
AS 'MODULE_PATHNAME', 'datastreams_streams_trigger'
LANGUAGE C;
COMMENT ON FUNCTION datastreams.streams_before_row() IS 'trigger enforcing the rules of stream rows';

CREATE FUNCTION datastreams.frames_before_row() RETURNS trigger
AS 'MODULE_PATHNAME', 'datastreams_frames_trigger'
LANGUAGE C;
COMMENT ON FUNCTION datastreams.frames_before_row() IS 'trigger validating, ordering, classifying and announcing each frame';

CREATE FUNCTION datastreams.frames_after_statement() RETURNS trigger
AS 'MODULE_PATHNAME', 'datastreams_frames_statement_trigger'
LANGUAGE C;
COMMENT ON FUNCTION datastreams.frames_after_statement() IS 'trigger writing the latest-frame pointers once per statement';

CREATE FUNCTION datastreams.invalidate_caches() RETURNS trigger
AS 'MODULE_PATHNAME', 'datastreams_tenancy_changed'
LANGUAGE C;
COMMENT ON FUNCTION datastreams.invalidate_caches() IS 'trigger making every backend forget cached tenancy and stream data';

REVOKE ALL ON FUNCTION datastreams.streams_before_row() FROM PUBLIC;
REVOKE ALL ON FUNCTION datastreams.frames_before_row() FROM PUBLIC;
REVOKE ALL ON FUNCTION datastreams.frames_after_statement() FROM PUBLIC;
REVOKE ALL ON FUNCTION datastreams.invalidate_caches() FROM PUBLIC;

--------------------------------------------------------------------------
-- Tables
--------------------------------------------------------------------------

CREATE TABLE datastreams.accounts (
	id text PRIMARY KEY,
	role regrole UNIQUE,
	created_at timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT accounts_id_check CHECK (id <> '' AND length(id) <= 255)
);
COMMENT ON TABLE datastreams.accounts IS 'tenants; role, when set, binds a database role to the account';

CREATE TABLE datastreams.trusted_roles (
	role regrole PRIMARY KEY,
	created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE datastreams.trusted_roles IS 'application roles that act for the account named by datastreams.account_id';

CREATE TABLE datastreams.streams (
	id uuid PRIMARY KEY,			-- set by the streams trigger
	account_id text NOT NULL REFERENCES datastreams.accounts (id),
	name text NOT NULL,
	symbol text NOT NULL,
	description text NOT NULL DEFAULT '',
	frequency interval,
	sla_ms integer NOT NULL DEFAULT 0,
	status text NOT NULL DEFAULT 'inactive',
	metadata jsonb NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT streams_status_check CHECK (status IN ('inactive', 'active', 'paused')),
	CONSTRAINT streams_sla_ms_check CHECK (sla_ms >= 0),
	CONSTRAINT streams_metadata_check CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE INDEX streams_account_created_idx ON datastreams.streams (account_id, created_at DESC, id DESC);
COMMENT ON TABLE datastreams.streams IS 'channel definitions: symbol, expected frequency and SLA';

CREATE TABLE datastreams.frames (
	id uuid PRIMARY KEY,			-- set by the frames trigger
	account_id text NOT NULL,
	stream_id uuid NOT NULL REFERENCES datastreams.streams (id) ON DELETE CASCADE,
	sequence bigint NOT NULL,
	payload jsonb NOT NULL DEFAULT '{}',
	latency_ms integer NOT NULL DEFAULT 0,
	status text NOT NULL DEFAULT 'ok',
	metadata jsonb NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT frames_stream_sequence_key UNIQUE (stream_id, sequence),
	CONSTRAINT frames_sequence_check CHECK (sequence > 0),
	CONSTRAINT frames_latency_ms_check CHECK (latency_ms >= 0),
	CONSTRAINT frames_status_check CHECK (status IN ('ok', 'late', 'error')),
	CONSTRAINT frames_payload_check CHECK (jsonb_typeof(payload) = 'object')
);
COMMENT ON TABLE datastreams.frames IS 'ordered samples of a stream; immutable once written';

CREATE TABLE datastreams.stream_state (
	stream_id uuid PRIMARY KEY REFERENCES datastreams.streams (id) ON DELETE CASCADE,
	account_id text NOT NULL,
	latest_frame_id uuid NOT NULL,
	latest_sequence bigint NOT NULL,
	latest_created_at timestamptz NOT NULL,
	frames_ok bigint NOT NULL DEFAULT 0,
	frames_late bigint NOT NULL DEFAULT 0,
	frames_error bigint NOT NULL DEFAULT 0,
	latency_ms_total bigint NOT NULL DEFAULT 0,
	updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE datastreams.stream_state IS 'per stream: the latest-frame pointer and frame counters, written by the frames trigger once per statement';

CREATE TRIGGER streams_before_row
	BEFORE INSERT OR UPDATE OR DELETE ON datastreams.streams
	FOR EACH ROW EXECUTE FUNCTION datastreams.streams_before_row();
CREATE TRIGGER streams_truncate
	AFTER TRUNCATE ON datastreams.streams
	FOR EACH STATEMENT EXECUTE FUNCTION datastreams.invalidate_caches();
CREATE TRIGGER frames_before_row
	BEFORE INSERT OR UPDATE ON datastreams.frames
	FOR EACH ROW EXECUTE FUNCTION datastreams.frames_before_row();
CREATE TRIGGER frames_after_statement
	AFTER INSERT ON datastreams.frames
	FOR EACH STATEMENT EXECUTE FUNCTION datastreams.frames_after_statement();
CREATE TRIGGER accounts_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON datastreams.accounts
	FOR EACH STATEMENT EXECUTE FUNCTION datastreams.invalidate_caches();
CREATE TRIGGER trusted_roles_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON datastreams.trusted_roles
	FOR EACH STATEMENT EXECUTE FUNCTION datastreams.invalidate_caches();

--------------------------------------------------------------------------
-- Row-level security: a session sees and writes only its account's rows
--------------------------------------------------------------------------

ALTER TABLE datastreams.accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE datastreams.accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY accounts_tenant ON datastreams.accounts
	USING (id = datastreams.current_account());
-- administrators who are not superusers manage accounts too
CREATE POLICY accounts_admin ON datastreams.accounts
	USING (datastreams.is_admin())
	WITH CHECK (datastreams.is_admin());

ALTER TABLE datastreams.streams ENABLE ROW LEVEL SECURITY;
ALTER TABLE datastreams.streams FORCE ROW LEVEL SECURITY;
CREATE POLICY streams_tenant ON datastreams.streams
	USING (account_id = datastreams.current_account())
	WITH CHECK (account_id = datastreams.current_account());

ALTER TABLE datastreams.frames ENABLE ROW LEVEL SECURITY;
ALTER TABLE datastreams.frames FORCE ROW LEVEL SECURITY;
CREATE POLICY frames_tenant ON datastreams.frames
	USING (account_id = datastreams.current_account())
	WITH CHECK (account_id = datastreams.current_account());

ALTER TABLE datastreams.stream_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE datastreams.stream_state FORCE ROW LEVEL SECURITY;
CREATE POLICY stream_state_tenant ON datastreams.stream_state
	USING (account_id = datastreams.current_account());

ALTER TABLE datastreams.trusted_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE datastreams.trusted_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY trusted_roles_admin ON datastreams.trusted_roles
	USING (datastreams.is_admin())
	WITH CHECK (datastreams.is_admin());

-- Tenants reach the tables directly too; row-level security is the gate.
GRANT USAGE ON SCHEMA datastreams TO PUBLIC;
GRANT SELECT ON datastreams.accounts TO PUBLIC;
GRANT SELECT, INSERT, UPDATE ON datastreams.streams TO PUBLIC;
GRANT SELECT, INSERT ON datastreams.frames TO PUBLIC;
GRANT SELECT ON datastreams.stream_state TO PUBLIC;

-- pg_dump keeps the rows of every table (see README, "Backup and restore")
SELECT pg_catalog.pg_extension_config_dump('datastreams.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('datastreams.trusted_roles', '');
SELECT pg_catalog.pg_extension_config_dump('datastreams.streams', '');
SELECT pg_catalog.pg_extension_config_dump('datastreams.frames', '');
SELECT pg_catalog.pg_extension_config_dump('datastreams.stream_state', '');

--------------------------------------------------------------------------
-- Administration
--------------------------------------------------------------------------

CREATE FUNCTION datastreams.create_account(id text, role regrole DEFAULT NULL)
RETURNS datastreams.accounts
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result datastreams.accounts;
BEGIN
	PERFORM datastreams.require_admin();
	IF $1 IS NULL OR $1 !~ '[^[:space:]]' THEN
		RAISE EXCEPTION 'account id is required' USING ERRCODE = 'not_null_violation';
	END IF;
	INSERT INTO datastreams.accounts AS a (id, role) VALUES ($1, $2) RETURNING a.* INTO result;
	RETURN result;
END
$$;
COMMENT ON FUNCTION datastreams.create_account(text, regrole) IS 'create an account, optionally bound to a role (administrators)';

CREATE FUNCTION datastreams.bind_role(account text, role regrole)
RETURNS datastreams.accounts
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result datastreams.accounts;
BEGIN
	PERFORM datastreams.require_admin();
	UPDATE datastreams.accounts AS a SET role = $2 WHERE a.id = $1 RETURNING a.* INTO result;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'account "%" not found', $1 USING ERRCODE = 'no_data_found';
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION datastreams.bind_role(text, regrole) IS 'bind a role to an account, or unbind it with NULL (administrators)';

CREATE FUNCTION datastreams.trust_role(role regrole)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM datastreams.require_admin();
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'role is required' USING ERRCODE = 'not_null_violation';
	END IF;
	INSERT INTO datastreams.trusted_roles (role) VALUES ($1) ON CONFLICT DO NOTHING;
END
$$;
COMMENT ON FUNCTION datastreams.trust_role(regrole) IS 'let a role act for the account named by datastreams.account_id (administrators)';

CREATE FUNCTION datastreams.untrust_role(role regrole)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM datastreams.require_admin();
	DELETE FROM datastreams.trusted_roles AS t WHERE t.role = $1;
END
$$;
COMMENT ON FUNCTION datastreams.untrust_role(regrole) IS 'withdraw trust_role (administrators)';

REVOKE ALL ON FUNCTION datastreams.create_account(text, regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION datastreams.bind_role(text, regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION datastreams.trust_role(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION datastreams.untrust_role(regrole) FROM PUBLIC;

--------------------------------------------------------------------------
-- Streams
--------------------------------------------------------------------------

CREATE FUNCTION datastreams.create_stream(name text, symbol text,
	description text DEFAULT '', frequency interval DEFAULT NULL,
	sla_ms integer DEFAULT 0, status text DEFAULT 'inactive',
	metadata jsonb DEFAULT '{}')
RETURNS datastreams.streams
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO datastreams.streams AS s
		(account_id, name, symbol, description, frequency, sla_ms, status, metadata)
	VALUES (datastreams.require_account(), $1, $2, $3, $4, $5, $6, $7)
	RETURNING s.*;
$$;
COMMENT ON FUNCTION datastreams.create_stream(text, text, text, interval, integer, text, jsonb) IS 'create a stream of the current account';

-- The stream of the current account, or P0002 whether it is missing or
-- belongs to someone else: the two must be indistinguishable.
CREATE FUNCTION datastreams.get_stream(id uuid)
RETURNS datastreams.streams
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_account();
	result datastreams.streams;
BEGIN
	SELECT s.* INTO result FROM datastreams.streams AS s
	 WHERE s.id = $1 AND s.account_id = account;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'stream % not found', $1 USING ERRCODE = 'no_data_found';
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION datastreams.get_stream(uuid) IS 'one stream of the current account';

CREATE FUNCTION datastreams.list_streams()
RETURNS SETOF datastreams.streams
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT s.* FROM datastreams.streams AS s
	 WHERE s.account_id = datastreams.require_account()
	 ORDER BY s.created_at DESC, s.id DESC;
$$;
COMMENT ON FUNCTION datastreams.list_streams() IS 'streams of the current account, newest first';

CREATE FUNCTION datastreams.update_stream(id uuid, patch jsonb)
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
		ELSIF key NOT IN ('name', 'symbol', 'description', 'frequency', 'sla_ms', 'status', 'metadata') THEN
			RAISE EXCEPTION 'unknown stream field "%"', left(key, 100)
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'The fields that can be changed are name, symbol, description, frequency, sla_ms, status and metadata.';
		END IF;
		IF key IN ('name', 'symbol', 'description', 'status', 'frequency')
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
		metadata = CASE WHEN patch ? 'metadata' THEN nullif(patch -> 'metadata', 'null') ELSE s.metadata END
	WHERE s.id = $1 AND s.account_id = account
	RETURNING s.* INTO result;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'stream % not found', $1 USING ERRCODE = 'no_data_found';
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION datastreams.update_stream(uuid, jsonb) IS 'change the fields present in patch; the rules of the streams trigger apply';

--------------------------------------------------------------------------
-- Frames
--------------------------------------------------------------------------

CREATE FUNCTION datastreams.create_frame(stream_id uuid, sequence bigint DEFAULT NULL,
	payload jsonb DEFAULT '{}', latency_ms integer DEFAULT 0,
	status text DEFAULT 'ok', metadata jsonb DEFAULT '{}')
RETURNS datastreams.frames
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_account();
	result datastreams.frames;
BEGIN
	PERFORM FROM datastreams.streams AS s WHERE s.id = $1 AND s.account_id = account;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'stream % not found', $1 USING ERRCODE = 'no_data_found';
	END IF;
	INSERT INTO datastreams.frames AS f (stream_id, sequence, payload, latency_ms, status, metadata)
	VALUES ($1, $2, $3, $4, $5, $6)
	RETURNING f.* INTO result;
	RETURN result;
END
$$;
COMMENT ON FUNCTION datastreams.create_frame(uuid, bigint, jsonb, integer, text, jsonb) IS 'ingest one frame; sequence NULL means the current Unix time in nanoseconds';

CREATE FUNCTION datastreams.list_frames(stream_id uuid, "limit" integer DEFAULT 25,
	before_sequence bigint DEFAULT NULL)
RETURNS SETOF datastreams.frames
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_account();
	n integer := CASE WHEN "limit" IS NULL OR "limit" <= 0 THEN 25 ELSE least("limit", 500) END;
BEGIN
	PERFORM FROM datastreams.streams AS s WHERE s.id = $1 AND s.account_id = account;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'stream % not found', $1 USING ERRCODE = 'no_data_found';
	END IF;
	IF before_sequence IS NULL THEN
		RETURN QUERY SELECT f.* FROM datastreams.frames AS f
		 WHERE f.stream_id = $1 AND f.account_id = account
		 ORDER BY f.sequence DESC LIMIT n;
	ELSE
		RETURN QUERY SELECT f.* FROM datastreams.frames AS f
		 WHERE f.stream_id = $1 AND f.account_id = account AND f.sequence < before_sequence
		 ORDER BY f.sequence DESC LIMIT n;
	END IF;
END
$$;
COMMENT ON FUNCTION datastreams.list_frames(uuid, integer, bigint) IS 'frames of a stream, highest sequence first; limit defaults to 25, at most 500; before_sequence pages backwards';

CREATE FUNCTION datastreams.frames_since(stream_id uuid, after_sequence bigint,
	"limit" integer DEFAULT 500)
RETURNS SETOF datastreams.frames
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_account();
	n integer := CASE WHEN "limit" IS NULL OR "limit" <= 0 THEN 500 ELSE least("limit", 10000) END;
BEGIN
	PERFORM FROM datastreams.streams AS s WHERE s.id = $1 AND s.account_id = account;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'stream % not found', $1 USING ERRCODE = 'no_data_found';
	END IF;
	RETURN QUERY SELECT f.* FROM datastreams.frames AS f
	 WHERE f.stream_id = $1 AND f.account_id = account
	   AND f.sequence > coalesce(after_sequence, 0)
	 ORDER BY f.sequence LIMIT n;
END
$$;
COMMENT ON FUNCTION datastreams.frames_since(uuid, bigint, integer) IS 'frames after a sequence, lowest first, for replay after a disconnect; limit defaults to 500, at most 10000';

CREATE FUNCTION datastreams.latest_frame(stream_id uuid)
RETURNS datastreams.frames
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_account();
	result datastreams.frames;
BEGIN
	PERFORM FROM datastreams.streams AS s WHERE s.id = $1 AND s.account_id = account;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'stream % not found', $1 USING ERRCODE = 'no_data_found';
	END IF;
	SELECT f.* INTO result
	  FROM datastreams.stream_state AS st
	  JOIN datastreams.frames AS f ON f.id = st.latest_frame_id
	 WHERE st.stream_id = $1 AND f.account_id = account;
	RETURN result;
END
$$;
COMMENT ON FUNCTION datastreams.latest_frame(uuid) IS 'the frame with the highest sequence, NULL when the stream has none; one lookup through the latest-frame pointer';

CREATE FUNCTION datastreams.push(topic text, payload jsonb)
RETURNS datastreams.frames
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF topic IS NULL OR topic !~ '^datastreams/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN
		RAISE EXCEPTION 'invalid topic "%"', left(topic, 100)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A topic has the form datastreams/<stream id>.';
	END IF;
	IF payload IS NULL OR jsonb_typeof(payload) <> 'object' THEN
		RAISE EXCEPTION 'frame payload must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN datastreams.create_frame(substr(topic, 13)::uuid, NULL, payload);
END
$$;
COMMENT ON FUNCTION datastreams.push(text, jsonb) IS 'DataEngine entry point: ingest payload as a frame of the stream named by topic datastreams/<stream id>';

CREATE FUNCTION datastreams.channel(stream_id uuid)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'datastreams_' || $1::text $$;
COMMENT ON FUNCTION datastreams.channel(uuid) IS 'the NOTIFY channel of a stream';

CREATE FUNCTION datastreams.ingest(stream_id uuid, frames jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'datastreams_ingest'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION datastreams.ingest(uuid, jsonb) IS 'bulk ingest: a JSON array of frames (sequence, payload, latency_ms, status, metadata) into one stream, all or nothing; returns the number stored';
