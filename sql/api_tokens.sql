--
-- api_tokens: the API tokens of the HTTP gateway -- create_api_token,
-- revoke_api_token, the api_tokens listing and resolve_api_token: only
-- administrators make, list and revoke tokens; only a token's SHA-256 is
-- stored; resolve_api_token reveals a token's account and nothing else,
-- and only to roles granted EXECUTE.
--
-- Tokens are random: they are kept in psql variables and never printed.
--
CREATE SCHEMA regress_tok;
CREATE FUNCTION regress_tok.err(cmd text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
	st text; msg text; det text; hnt text;
BEGIN
	EXECUTE cmd;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
	RETURN regexp_replace(st || ': ' || msg
		|| CASE WHEN det <> '' THEN ' | DETAIL: ' || det ELSE '' END
		|| CASE WHEN hnt <> '' THEN ' | HINT: ' || hnt ELSE '' END,
		'[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}',
		'<uuid>', 'g');
END
$f$;
GRANT USAGE ON SCHEMA regress_tok TO PUBLIC;
CREATE ROLE regress_tok_gateway;
CREATE ROLE regress_tok_tenant;
SELECT datastreams.trust_role('regress_tok_gateway');
SELECT id FROM datastreams.create_account('regress_tok_a', 'regress_tok_tenant');
SELECT id FROM datastreams.create_account('regress_tok_b');
SELECT id FROM datastreams.create_account('regress_tok_gone');

--
-- create_api_token: the token once, its hash stored
--
SELECT id AS token_a_id, token AS token_a FROM datastreams.create_api_token('regress_tok_a', 'ci deploy') \gset
SELECT token AS token_a2 FROM datastreams.create_api_token('regress_tok_a') \gset
SELECT id AS token_b_id, token AS token_b FROM datastreams.create_api_token('regress_tok_b', NULL) \gset
SELECT token AS token_gone FROM datastreams.create_api_token('regress_tok_gone') \gset
SELECT :'token_a' ~ '^dst_[0-9a-f]{64}$' AS well_formed,
       :'token_a' <> :'token_a2' AS distinct_tokens;
-- the table holds the SHA-256 of each token and never the token
SELECT t.account_id, t.note, t.token_hash = sha256(convert_to(:'token_a', 'UTF8')) AS hash_of_token,
       length(t.token_hash) AS hash_bytes, t.revoked_at IS NULL AS active
  FROM datastreams.api_token_hashes AS t WHERE t.id = :'token_a_id';
SELECT count(*) AS rows_containing_a_token
  FROM datastreams.api_token_hashes AS t
 WHERE position(convert_to(:'token_a', 'UTF8') IN t.token_hash) > 0
    OR t.note LIKE '%dst_%' OR t.id::text LIKE '%' || substr(:'token_a', 5, 16) || '%';
-- the listing: no secret, no hash
SELECT account_id, note, revoked_at IS NULL AS active FROM datastreams.api_tokens
 ORDER BY account_id COLLATE "C", note COLLATE "C";
SELECT string_agg(attname, ', ' ORDER BY attnum) AS api_tokens_columns
  FROM pg_attribute WHERE attrelid = 'datastreams.api_tokens'::regclass AND attnum > 0;
-- errors
SELECT regress_tok.err($$SELECT datastreams.create_api_token(NULL)$$);
SELECT regress_tok.err($$SELECT datastreams.create_api_token('regress_tok_nobody')$$);
SELECT regress_tok.err($$SELECT datastreams.create_api_token('regress_tok_a', repeat('n', 1001))$$);

--
-- resolve_api_token: the account of an active token, NULL for anything else
--
SELECT datastreams.resolve_api_token(:'token_a') AS a,
       datastreams.resolve_api_token(:'token_a2') AS a2,
       datastreams.resolve_api_token(:'token_b') AS b,
       datastreams.resolve_api_token(upper(:'token_a')) AS upper_case,
       datastreams.resolve_api_token(:'token_a' || ' ') AS trailing_space,
       datastreams.resolve_api_token('') AS empty,
       datastreams.resolve_api_token(NULL) AS null_token,
       datastreams.resolve_api_token(encode(sha256(convert_to(:'token_a', 'UTF8')), 'hex')) AS the_hash_itself;
-- a C function reading the table's index: not SECURITY DEFINER
SELECT p.oid::regprocedure, l.lanname, p.prosecdef, p.provolatile, p.proisstrict
  FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
 WHERE p.oid = 'datastreams.resolve_api_token(text)'::regprocedure;

--
-- who may do what
--
SET ROLE regress_tok_tenant;
SELECT regress_tok.err($$SELECT datastreams.create_api_token('regress_tok_a')$$);
SELECT regress_tok.err($$SELECT datastreams.revoke_api_token('00000000-0000-4000-8000-000000000000')$$);
SELECT regress_tok.err($$SELECT * FROM datastreams.api_tokens$$);
SELECT regress_tok.err($$SELECT * FROM datastreams.api_token_hashes$$);
SELECT regress_tok.err($$SELECT datastreams.resolve_api_token('x')$$);
RESET ROLE;
SET ROLE regress_tok_gateway;
SELECT regress_tok.err($$SELECT datastreams.resolve_api_token('x')$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION datastreams.resolve_api_token(text) TO regress_tok_gateway;
SET ROLE regress_tok_gateway;
-- the gateway's role learns a token's account, and nothing else
SELECT datastreams.resolve_api_token(:'token_a') AS a, datastreams.resolve_api_token('dst_nope') AS nope;
SELECT regress_tok.err($$SELECT * FROM datastreams.api_token_hashes$$);
SELECT regress_tok.err($$SELECT * FROM datastreams.api_tokens$$);
SELECT regress_tok.err($$SELECT datastreams.create_api_token('regress_tok_a')$$);
SELECT regress_tok.err($$UPDATE datastreams.api_token_hashes SET revoked_at = NULL$$);
RESET ROLE;

--
-- revoke_api_token: at once, once
--
SELECT datastreams.revoke_api_token(:'token_a_id') AS revoked;
SELECT datastreams.revoke_api_token(:'token_a_id') AS revoked_again;
SELECT datastreams.resolve_api_token(:'token_a') AS revoked_token,
       datastreams.resolve_api_token(:'token_a2') AS other_token_of_a;
SELECT account_id, note, revoked_at IS NULL AS active FROM datastreams.api_tokens
 WHERE account_id = 'regress_tok_a' ORDER BY note COLLATE "C";
SELECT regress_tok.err($$SELECT datastreams.revoke_api_token('00000000-0000-4000-8000-000000000000')$$);
SELECT regress_tok.err($$SELECT datastreams.revoke_api_token(NULL)$$);

--
-- an account's tokens go with it
--
DELETE FROM datastreams.accounts WHERE id = 'regress_tok_gone';
SELECT datastreams.resolve_api_token(:'token_gone') AS deleted_account;
SELECT count(*) AS tokens_left FROM datastreams.api_token_hashes WHERE account_id = 'regress_tok_gone';

-- clean up
DELETE FROM datastreams.api_token_hashes WHERE account_id LIKE 'regress_tok_%';
DELETE FROM datastreams.accounts WHERE id LIKE 'regress_tok_%';
REVOKE EXECUTE ON FUNCTION datastreams.resolve_api_token(text) FROM regress_tok_gateway;
SELECT datastreams.untrust_role('regress_tok_gateway');
DROP ROLE regress_tok_gateway;
DROP ROLE regress_tok_tenant;
DROP SCHEMA regress_tok CASCADE;
