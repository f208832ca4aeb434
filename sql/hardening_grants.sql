--
-- hardening_grants: no role other than an administrator can lock the
-- extension's tables in a mode that makes other sessions wait (issue 13,
-- item 1), and a session acting for an account writes only that account's
-- streams, even when it bypasses row-level security (item 4).
--
-- LOCK TABLE in SHARE mode or stronger needs UPDATE, DELETE or TRUNCATE on
-- the whole table; ACCESS SHARE needs SELECT and ROW EXCLUSIVE needs INSERT
-- (PostgreSQL 15).  ACCESS SHARE and ROW EXCLUSIVE are what any SELECT and
-- INSERT take anyway and conflict only with DDL-strength locks.
--
CREATE ROLE regress_hg_tenant;
CREATE ROLE regress_hg_app;
CREATE ROLE regress_hg_none;
CREATE ROLE regress_hg_loader BYPASSRLS;
SELECT id FROM datastreams.create_account('regress_hg_a', 'regress_hg_tenant');
SELECT id FROM datastreams.create_account('regress_hg_b');
SELECT datastreams.trust_role('regress_hg_app');
SELECT datastreams.trust_role('regress_hg_loader');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('00000000-0000-4000-8000-0000000007a1', 'regress_hg_a', 'a one', 'A1', 'active'),
	('00000000-0000-4000-8000-0000000007b1', 'regress_hg_b', 'b one', 'B1', 'active');

-- Outcome of a statement as role acting for account: 'ok' or the SQLSTATE
-- (in a subtransaction that is rolled back).
CREATE FUNCTION pg_temp.try_as(role name, account text, stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		EXECUTE format('SET LOCAL ROLE %I', role);
		PERFORM set_config('datastreams.account_id', account, true);
		EXECUTE stmt;
		RAISE EXCEPTION USING ERRCODE = 'HGOK0';
	EXCEPTION WHEN OTHERS THEN
		RETURN CASE WHEN SQLSTATE = 'HGOK0' THEN 'ok' ELSE SQLSTATE END;
	END;
END
$$;

--
-- LOCK TABLE, every mode, every table and view, as every kind of role
--
SELECT t.tbl, r.who,
	   string_agg(m.mode || '=' || pg_temp.try_as(r.role, r.account,
			format('LOCK TABLE datastreams.%I IN %s MODE', t.tbl, m.mode)), ', ' ORDER BY m.ord) AS outcomes
  FROM unnest(ARRAY['accounts', 'trusted_roles', 'streams', 'frames', 'stream_state', 'stream_health',
				   'consumers', 'consumer_positions', 'consumer_lag', 'api_token_hashes', 'api_tokens'])
	   WITH ORDINALITY AS t(tbl, tord)
 CROSS JOIN (VALUES (1, 'tenant', 'regress_hg_tenant', ''),
					(2, 'app', 'regress_hg_app', 'regress_hg_a'),
					(3, 'unbound', 'regress_hg_none', ''),
					(4, 'loader', 'regress_hg_loader', 'regress_hg_a')) AS r(rord, who, role, account)
 CROSS JOIN unnest(ARRAY['ACCESS SHARE', 'ROW SHARE', 'ROW EXCLUSIVE', 'SHARE UPDATE EXCLUSIVE',
						 'SHARE', 'SHARE ROW EXCLUSIVE', 'EXCLUSIVE', 'ACCESS EXCLUSIVE'])
	   WITH ORDINALITY AS m(mode, ord)
 GROUP BY t.tbl, t.tord, r.who, r.rord
 ORDER BY t.tord, r.rord;

-- No table of the extension grants PUBLIC a privilege that allows a
-- blocking lock (UPDATE, DELETE, TRUNCATE on the table as a whole) ...
SELECT c.relname, a.privilege_type
  FROM pg_class AS c, aclexplode(c.relacl) AS a
 WHERE c.relnamespace = 'datastreams'::regnamespace AND c.relkind IN ('r', 'v')
   AND a.grantee = 0 AND a.privilege_type NOT IN ('SELECT', 'INSERT')
 ORDER BY 1, 2;
-- ... while tenants may still change the columns that are theirs to change
SELECT a.attname
  FROM pg_attribute AS a
 WHERE a.attrelid = 'datastreams.streams'::regclass AND a.attnum > 0 AND NOT a.attisdropped
   AND has_column_privilege('regress_hg_none', a.attrelid, a.attnum, 'UPDATE')
 ORDER BY a.attnum;
-- and every column of every table stays readable (a column added later
-- without the grants would fail here), but for the administrators' tables
SELECT c.relname, a.attname
  FROM pg_class AS c JOIN pg_attribute AS a ON a.attrelid = c.oid
 WHERE c.relnamespace = 'datastreams'::regnamespace AND c.relkind = 'r'
   AND c.relname NOT IN ('trusted_roles', 'api_token_hashes')
   AND a.attnum > 0 AND NOT a.attisdropped
   AND NOT has_column_privilege('regress_hg_none', c.oid, a.attnum, 'SELECT');

-- what tenants do with streams still works: the API, a direct UPDATE of a
-- changeable column, and locking their own rows
SET ROLE regress_hg_tenant;
SELECT name FROM datastreams.update_stream('00000000-0000-4000-8000-0000000007a1', '{"name": "a 1"}');
UPDATE datastreams.streams SET description = 'direct' WHERE id = '00000000-0000-4000-8000-0000000007a1';
SELECT id, description FROM datastreams.streams FOR UPDATE;
-- but not an immutable one
UPDATE datastreams.streams SET account_id = 'regress_hg_b' WHERE id = '00000000-0000-4000-8000-0000000007a1';
RESET ROLE;

--
-- A role that bypasses row-level security, acting for an account, cannot
-- create, copy in or change another account's streams (42501, as for
-- frames); acting for none, it can (a loader or a restore).
--
SET ROLE regress_hg_loader;
SET datastreams.account_id = 'regress_hg_a';
INSERT INTO datastreams.streams (account_id, name, symbol) VALUES ('regress_hg_b', 'planted', 'P');
UPDATE datastreams.streams SET name = 'hijacked' WHERE id = '00000000-0000-4000-8000-0000000007b1';
COPY datastreams.streams (account_id, name, symbol) FROM STDIN (FORMAT csv);
regress_hg_b,copied,CP
\.
-- its own account's streams are fine
INSERT INTO datastreams.streams (account_id, name, symbol) VALUES ('regress_hg_a', 'own', 'OWN')
RETURNING account_id, symbol;
UPDATE datastreams.streams SET name = 'a one' WHERE id = '00000000-0000-4000-8000-0000000007a1'
RETURNING account_id, name;
-- as are other accounts' streams when it acts for no account
RESET datastreams.account_id;
UPDATE datastreams.streams SET description = 'loaded' WHERE id = '00000000-0000-4000-8000-0000000007b1'
RETURNING account_id, description;
RESET ROLE;
-- a superuser acting for an account is held to the same rule
SET datastreams.account_id = 'regress_hg_b';
UPDATE datastreams.streams SET name = 'hijacked' WHERE id = '00000000-0000-4000-8000-0000000007a1';
RESET datastreams.account_id;
SELECT account_id, name, symbol, description FROM datastreams.streams
 WHERE account_id LIKE 'regress_hg%' ORDER BY account_id, symbol;

-- clean up
DELETE FROM datastreams.streams WHERE account_id LIKE 'regress_hg%';
DELETE FROM datastreams.accounts WHERE id LIKE 'regress_hg%';
SELECT datastreams.untrust_role('regress_hg_app');
SELECT datastreams.untrust_role('regress_hg_loader');
DROP ROLE regress_hg_tenant, regress_hg_app, regress_hg_none, regress_hg_loader;
