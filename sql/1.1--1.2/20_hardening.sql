
--------------------------------------------------------------------------
-- Hardening (issue 13): no tenant can freeze, blind or read another;
-- errors that help.  See docs/security-hardening.md.
--------------------------------------------------------------------------

-- LOCK TABLE in SHARE mode or stronger, which makes every writer (or
-- every reader) of the table wait, needs UPDATE, DELETE or TRUNCATE on the
-- table as a whole.  PUBLIC had UPDATE on streams, so any role, even one
-- without an account, could stop the service.  UPDATE granted column by
-- column allows the same UPDATE statements (and SELECT ... FOR UPDATE of
-- one's own rows) but no table lock beyond what reading and inserting take.
-- The columns are those a tenant may change; the immutable ones (id,
-- account_id, created_at) and updated_at are the trigger's.
REVOKE UPDATE ON datastreams.streams FROM PUBLIC;
GRANT UPDATE (name, symbol, description, frequency, sla_ms, status, metadata, retention)
	ON datastreams.streams TO PUBLIC;

-- create_frame() and update_stream() in C: their errors carry no internal
-- SQL as context and name the argument or field at fault.  create_frame()
-- gains on_duplicate: 'skip' makes a re-sent frame (same sequence, same
-- content) return the stored frame instead of failing with 23505.
DROP FUNCTION datastreams.create_frame(uuid, bigint, jsonb, integer, text, jsonb);
CREATE FUNCTION datastreams.create_frame(stream_id uuid, sequence bigint DEFAULT NULL,
	payload jsonb DEFAULT '{}', latency_ms integer DEFAULT 0,
	status text DEFAULT 'ok', metadata jsonb DEFAULT '{}',
	on_duplicate text DEFAULT 'error')
RETURNS datastreams.frames
AS 'MODULE_PATHNAME', 'datastreams_create_frame'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION datastreams.create_frame(uuid, bigint, jsonb, integer, text, jsonb, text) IS 'ingest one frame; sequence NULL means the current Unix time in nanoseconds; on_duplicate ''skip'' returns the stored frame when the same frame is sent again (''error'', the default: 23505)';

CREATE OR REPLACE FUNCTION datastreams.update_stream(id uuid, patch jsonb)
RETURNS datastreams.streams
AS 'MODULE_PATHNAME', 'datastreams_update_stream'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION datastreams.update_stream(uuid, jsonb) IS 'change the fields present in patch; the rules of the streams trigger apply';

-- Error messages quote user values clipped, as the C code does.
CREATE FUNCTION datastreams.clip_for_message(value text)
RETURNS text
AS 'MODULE_PATHNAME', 'datastreams_clip_for_message'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION datastreams.clip_for_message(text) IS 'a user value as error messages quote it: at most 64 bytes, then "..."';

-- The read functions check the stream with require_stream(), which answers
-- from the per-backend stream cache: another account's stream and a missing
-- id are rejected after the same work.  Their own queries, reading through
-- the streams index, took measurably longer for an existing stream (the
-- row is fetched, then filtered out) than for a missing one.
CREATE FUNCTION datastreams.require_stream(id uuid)
RETURNS text
AS 'MODULE_PATHNAME', 'datastreams_require_stream'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION datastreams.require_stream(uuid) IS 'the account the caller acts for, when the stream is that account''s; P0002 for another account''s stream as for a missing id';

CREATE OR REPLACE FUNCTION datastreams.get_stream(id uuid)
RETURNS datastreams.streams
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_stream($1);
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

CREATE OR REPLACE FUNCTION datastreams.list_frames(stream_id uuid, "limit" integer DEFAULT 25,
	before_sequence bigint DEFAULT NULL)
RETURNS SETOF datastreams.frames
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_stream($1);
	n integer := CASE WHEN "limit" IS NULL OR "limit" <= 0 THEN 25 ELSE least("limit", 500) END;
BEGIN
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

CREATE OR REPLACE FUNCTION datastreams.frames_since(stream_id uuid, after_sequence bigint,
	"limit" integer DEFAULT 500)
RETURNS SETOF datastreams.frames
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_stream($1);
	n integer := CASE WHEN "limit" IS NULL OR "limit" <= 0 THEN 500 ELSE least("limit", 10000) END;
BEGIN
	RETURN QUERY SELECT f.* FROM datastreams.frames AS f
	 WHERE f.stream_id = $1 AND f.account_id = account
	   AND f.sequence > coalesce(after_sequence, 0)
	 ORDER BY f.sequence LIMIT n;
END
$$;

CREATE OR REPLACE FUNCTION datastreams.latest_frame(stream_id uuid)
RETURNS datastreams.frames
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account text := datastreams.require_stream($1);
	result datastreams.frames;
BEGIN
	SELECT f.* INTO result FROM datastreams.frames AS f
	 WHERE f.stream_id OPERATOR(pg_catalog.=) $1 AND f.account_id OPERATOR(pg_catalog.=) account
	 ORDER BY f.sequence DESC LIMIT 1;
	RETURN result;
END
$$;

-- A duplicate binding names the role and the account it is bound to; the
-- unique index alone would show the role's OID.
CREATE FUNCTION datastreams.require_unbound_role(role regrole, account text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	other text;
BEGIN
	SELECT a.id INTO other FROM datastreams.accounts AS a
	 WHERE a.role = $1 AND a.id IS DISTINCT FROM $2;
	IF FOUND THEN
		RAISE EXCEPTION 'role "%" is already bound to account "%"',
			(SELECT r.rolname FROM pg_catalog.pg_roles AS r WHERE r.oid = $1::oid),
			datastreams.clip_for_message(other)
			USING ERRCODE = 'unique_violation',
				  DETAIL = 'A role acts for one account.',
				  HINT = 'Unbind it first with datastreams.bind_role(account, NULL), or make it a trusted role with datastreams.trust_role() to act for several accounts.';
	END IF;
END
$$;
COMMENT ON FUNCTION datastreams.require_unbound_role(regrole, text) IS 'raises 23505 naming the role and its account when role is bound to an account other than account (administrators)';
REVOKE ALL ON FUNCTION datastreams.require_unbound_role(regrole, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION datastreams.create_account(id text, role regrole DEFAULT NULL)
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
EXCEPTION WHEN unique_violation THEN
	IF EXISTS (SELECT FROM datastreams.accounts AS a WHERE a.id = $1) THEN
		RAISE EXCEPTION 'account "%" already exists', datastreams.clip_for_message($1)
			USING ERRCODE = 'unique_violation';
	END IF;
	PERFORM datastreams.require_unbound_role($2, $1);
	RAISE;
END
$$;

CREATE OR REPLACE FUNCTION datastreams.bind_role(account text, role regrole)
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
		RAISE EXCEPTION 'account "%" not found', datastreams.clip_for_message($1)
			USING ERRCODE = 'no_data_found';
	END IF;
	RETURN result;
EXCEPTION WHEN unique_violation THEN
	PERFORM datastreams.require_unbound_role($2, $1);
	RAISE;
END
$$;

-- Rows naming roles that no longer exist.  With the library loaded, DROP
-- ROLE removes them in the database where it runs; this is for the others.
CREATE FUNCTION datastreams.forget_dropped_roles(OUT binding text, OUT account_id text, OUT role oid)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM datastreams.require_admin();
	RETURN QUERY
	WITH gone AS (
		SELECT a.id, a.role::oid AS role FROM datastreams.accounts AS a
		 WHERE a.role IS NOT NULL
		   AND NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.oid = a.role::oid)
		   FOR UPDATE),
	unbound AS (
		UPDATE datastreams.accounts AS a SET role = NULL FROM gone
		 WHERE a.id = gone.id RETURNING gone.id, gone.role)
	SELECT 'account'::text, u.id, u.role FROM unbound AS u;
	RETURN QUERY
	DELETE FROM datastreams.trusted_roles AS t
	 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.oid = t.role::oid)
	RETURNING 'trusted'::text, NULL::text, t.role::oid;
END
$$;
COMMENT ON FUNCTION datastreams.forget_dropped_roles() IS 'unbind accounts from, and stop trusting, roles that no longer exist; returns what it removed (administrators)';
REVOKE ALL ON FUNCTION datastreams.forget_dropped_roles() FROM PUBLIC;

-- prune_all() inside a transaction block says so, instead of failing at
-- its first COMMIT with a bare "invalid transaction termination".
CREATE FUNCTION datastreams.require_top_level(procedure text)
RETURNS void
AS 'MODULE_PATHNAME', 'datastreams_require_top_level'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION datastreams.require_top_level(text) IS 'raises 2D000 naming procedure when called inside a transaction block (for procedures that commit)';

CREATE OR REPLACE PROCEDURE datastreams.prune_all(INOUT pruned bigint DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
	n bigint;
BEGIN
	PERFORM datastreams.require_admin();
	PERFORM datastreams.require_top_level('prune_all()');
	pruned := 0;
	LOOP
		n := datastreams.prune();
		pruned := pruned OPERATOR(pg_catalog.+) n;
		COMMIT;
		-- less than a full batch: every stream has caught up (waiting for a
		-- step that deletes nothing never ended under steady ingest)
		EXIT WHEN n OPERATOR(pg_catalog.<)
			pg_catalog.current_setting('datastreams.prune_batch_size')::pg_catalog.int8;
	END LOOP;
END
$$;
COMMENT ON PROCEDURE datastreams.prune_all(bigint) IS 'call prune() until a step deletes less than datastreams.prune_batch_size frames, committing after each step; pruned is the total (administrators)';


-- (end of hardening)
