
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

-- (end of hardening)
