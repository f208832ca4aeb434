
--------------------------------------------------------------------------
-- API tokens for the HTTP gateway (datastreams-http, docs/http.md)
--------------------------------------------------------------------------

-- A token is "dst_" and 64 hexadecimal digits derived from two random
-- UUIDs (pg_strong_random, 244 random bits), shown once by
-- create_api_token(); only its SHA-256 is stored.  A plain hash suffices
-- because the secret is random and long: there is no dictionary to try.
CREATE TABLE datastreams.api_token_hashes (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	account_id text NOT NULL REFERENCES datastreams.accounts (id) ON DELETE CASCADE,
	token_hash bytea NOT NULL UNIQUE,
	note text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	revoked_at timestamptz,
	CONSTRAINT api_token_hashes_hash_check CHECK (pg_catalog.length(token_hash) OPERATOR(pg_catalog.=) 32),
	CONSTRAINT api_token_hashes_note_check CHECK (pg_catalog.length(note) OPERATOR(pg_catalog.<=) 1000)
);
COMMENT ON TABLE datastreams.api_token_hashes IS 'API tokens of the HTTP gateway: the SHA-256 of each token, never the token (administrators only)';

-- Only administrators see or change it; the gateway's role learns a
-- token's account through resolve_api_token() alone.
ALTER TABLE datastreams.api_token_hashes ENABLE ROW LEVEL SECURITY;
ALTER TABLE datastreams.api_token_hashes FORCE ROW LEVEL SECURITY;
CREATE POLICY api_token_hashes_admin ON datastreams.api_token_hashes
	USING (datastreams.is_admin())
	WITH CHECK (datastreams.is_admin());
REVOKE ALL ON datastreams.api_token_hashes FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('datastreams.api_token_hashes', '');

CREATE VIEW datastreams.api_tokens WITH (security_invoker = true) AS
SELECT t.id, t.account_id, t.note, t.created_at, t.revoked_at
  FROM datastreams.api_token_hashes AS t;
COMMENT ON VIEW datastreams.api_tokens IS 'API tokens without their secret or hash: id, account, note, creation and revocation time (administrators)';
REVOKE ALL ON datastreams.api_tokens FROM PUBLIC;

CREATE FUNCTION datastreams.create_api_token(account text, note text DEFAULT '',
	OUT id uuid, OUT token text)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM datastreams.require_admin();
	IF account IS NULL THEN
		RAISE EXCEPTION 'account is required' USING ERRCODE = 'not_null_violation';
	END IF;
	PERFORM FROM datastreams.accounts AS a WHERE a.id OPERATOR(pg_catalog.=) account;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'account "%" not found', pg_catalog.left(account, 100)
			USING ERRCODE = 'no_data_found',
				  HINT = 'Create it first with datastreams.create_account().';
	END IF;
	IF pg_catalog.length(note) OPERATOR(pg_catalog.>) 1000 THEN
		RAISE EXCEPTION 'token note is too long'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('The note has %s characters; at most 1000 are kept.', pg_catalog.length(note));
	END IF;
	token := 'dst_' OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.sha256(
		pg_catalog.uuid_send(pg_catalog.gen_random_uuid()) OPERATOR(pg_catalog.||)
		pg_catalog.uuid_send(pg_catalog.gen_random_uuid())), 'hex');
	INSERT INTO datastreams.api_token_hashes AS t (account_id, token_hash, note)
	VALUES (account, pg_catalog.sha256(pg_catalog.convert_to(token, 'UTF8')),
			COALESCE(note, ''))
	RETURNING t.id INTO id;
END
$$;
COMMENT ON FUNCTION datastreams.create_api_token(text, text) IS 'make an API token for an account; the token is returned once and only its SHA-256 is kept (administrators)';
REVOKE ALL ON FUNCTION datastreams.create_api_token(text, text) FROM PUBLIC;

CREATE FUNCTION datastreams.revoke_api_token(id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	token_id ALIAS FOR $1;
BEGIN
	PERFORM datastreams.require_admin();
	IF token_id IS NULL THEN
		RAISE EXCEPTION 'API token id is required' USING ERRCODE = 'not_null_violation';
	END IF;
	UPDATE datastreams.api_token_hashes AS t SET revoked_at = pg_catalog.now()
	 WHERE t.id OPERATOR(pg_catalog.=) token_id AND t.revoked_at IS NULL;
	IF FOUND THEN
		RETURN true;
	END IF;
	PERFORM FROM datastreams.api_token_hashes AS t WHERE t.id OPERATOR(pg_catalog.=) token_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'API token % not found', token_id USING ERRCODE = 'no_data_found';
	END IF;
	RETURN false;
END
$$;
COMMENT ON FUNCTION datastreams.revoke_api_token(uuid) IS 'revoke an API token at once; true when this call revoked it, false when it already was (administrators)';
REVOKE ALL ON FUNCTION datastreams.revoke_api_token(uuid) FROM PUBLIC;

-- The gateway's role learns a token's account through this function alone:
-- it reads the table through its index in C (src/api_tokens.c), so it
-- needs no privilege on the table and is not SECURITY DEFINER.  It returns
-- the account of an unrevoked token whose SHA-256 matches, else NULL, and
-- nothing else.  EXECUTE is granted by an administrator to the gateway's
-- role only.
CREATE FUNCTION datastreams.resolve_api_token(token text)
RETURNS text
AS 'MODULE_PATHNAME', 'datastreams_resolve_api_token'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION datastreams.resolve_api_token(text) IS 'the account of an unrevoked API token, NULL for any other string; for the HTTP gateway''s role (EXECUTE granted explicitly)';
REVOKE ALL ON FUNCTION datastreams.resolve_api_token(text) FROM PUBLIC;

-- (end of API tokens)
