--
-- hardening_roles: a dropped role leaves no binding or trust behind
-- (issue 13, item 3).  accounts.role and trusted_roles.role hold OIDs, and
-- PostgreSQL may give a dropped role's OID to a new role, which would then
-- inherit the binding or the trust.  With the library loaded (the test
-- server preloads it), DROP ROLE removes the rows in the database where it
-- runs; forget_dropped_roles() removes those left anywhere else.
--
CREATE ROLE regress_hr_bound;
CREATE ROLE regress_hr_trusted;
CREATE ROLE regress_hr_other;
SELECT id, role FROM datastreams.create_account('regress_hr_a', 'regress_hr_bound');
SELECT id, role FROM datastreams.create_account('regress_hr_b', 'regress_hr_other');
SELECT datastreams.trust_role('regress_hr_trusted');
SELECT 'regress_hr_bound'::regrole::oid AS bound_oid, 'regress_hr_trusted'::regrole::oid AS trusted_oid \gset

-- a duplicate binding names the role and its account
SELECT datastreams.create_account('regress_hr_c', 'regress_hr_bound');
SELECT datastreams.bind_role('regress_hr_b', 'regress_hr_bound');

DROP ROLE regress_hr_bound;
DROP ROLE regress_hr_trusted;
-- the account stays, unbound; the trust is gone; nothing names the OIDs
SELECT id, role FROM datastreams.accounts WHERE id LIKE 'regress_hr%' ORDER BY id;
SELECT count(*) AS rows_naming_dropped_roles
  FROM (SELECT role::oid FROM datastreams.accounts UNION ALL SELECT role::oid FROM datastreams.trusted_roles) AS r(oid)
 WHERE r.oid IN (:bound_oid, :trusted_oid);
-- a role created afterwards (whatever OID it gets) is neither bound nor trusted
CREATE ROLE regress_hr_new;
SET ROLE regress_hr_new;
SELECT datastreams.current_account() IS NULL AS no_account;
SET datastreams.account_id = 'regress_hr_a';
SELECT datastreams.current_account() IS NULL AS still_no_account;
RESET datastreams.account_id;
RESET ROLE;
-- and the account can be bound again
SELECT id, role FROM datastreams.bind_role('regress_hr_a', 'regress_hr_new');

-- the cleanup is part of the DROP's transaction: rolled back with it
BEGIN;
DROP ROLE regress_hr_new;
ROLLBACK;
SELECT id, role FROM datastreams.accounts WHERE id = 'regress_hr_a';

-- A role created with the OID of a dropped role that another database's
-- DROP left behind: the stale rows go when the role is created.  OIDs come
-- from one counter, so the next role gets one of the next few OIDs.
SELECT max(oid) AS last_oid FROM pg_roles \gset
INSERT INTO datastreams.trusted_roles (role)
SELECT (:last_oid + g)::oid::regrole FROM generate_series(1, 20) AS g;
CREATE ROLE regress_hr_reused;
SELECT 'regress_hr_reused'::regrole::oid::bigint - :last_oid BETWEEN 1 AND 20 AS oid_in_range,
	   EXISTS (SELECT FROM datastreams.trusted_roles WHERE role = 'regress_hr_reused'::regrole) AS inherited_trust;
SET ROLE regress_hr_reused;
SET datastreams.account_id = 'regress_hr_a';
SELECT datastreams.current_account() IS NULL AS not_trusted;
RESET datastreams.account_id;
RESET ROLE;

-- rows naming roles that no longer exist (DROP ROLE ran in another
-- database, or without the library): forget_dropped_roles() removes them
-- and says what it removed
DELETE FROM datastreams.trusted_roles WHERE NOT EXISTS (SELECT FROM pg_roles WHERE oid = role::oid)
   AND role::oid > :last_oid AND role::oid <= :last_oid + 20;
INSERT INTO datastreams.accounts (id, role) VALUES ('regress_hr_gone', '4000000001');
INSERT INTO datastreams.trusted_roles (role) VALUES ('4000000002');
SELECT * FROM datastreams.forget_dropped_roles() ORDER BY 1, 2;
SELECT * FROM datastreams.forget_dropped_roles();
SELECT id, role FROM datastreams.accounts WHERE id = 'regress_hr_gone';
-- administrators only
SET ROLE regress_hr_reused;
SELECT datastreams.forget_dropped_roles();
RESET ROLE;

-- clean up
DELETE FROM datastreams.accounts WHERE id LIKE 'regress_hr%';
DROP ROLE regress_hr_new, regress_hr_other, regress_hr_reused;
