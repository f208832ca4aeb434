-- What scripts/demo.sh sets up in the database datastreams_demo, as a
-- superuser.  test/t/090_docs_examples.pl runs it too, before the SQL
-- examples of README.md and docs/*.md, which assume exactly this.

CREATE EXTENSION datastreams;

-- The application role.  Roles belong to the cluster, not to the database,
-- so a re-run finds it already there.
SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'demo_app') AS need_role \gset
\if :need_role
CREATE ROLE demo_app LOGIN;
\endif

-- An account, bound to no role.
SELECT datastreams.create_account('demo');

-- A trusted application role: the account it acts for comes from the
-- setting datastreams.account_id.
SELECT datastreams.trust_role('demo_app');
