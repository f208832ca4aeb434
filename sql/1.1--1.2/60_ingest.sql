
--------------------------------------------------------------------------
-- Bulk ingest and pruning
--------------------------------------------------------------------------

-- prune() until a step deletes less than a full batch: every stream has
-- then caught up.  Waiting for a step that deletes nothing never ended
-- while frames kept expiring under steady ingest.  A procedure cannot pin
-- search_path and still COMMIT, so every name and operator is qualified.
CREATE OR REPLACE PROCEDURE datastreams.prune_all(INOUT pruned bigint DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
	n bigint;
BEGIN
	PERFORM datastreams.require_admin();
	pruned := 0;
	LOOP
		n := datastreams.prune();
		pruned := pruned OPERATOR(pg_catalog.+) n;
		COMMIT;
		EXIT WHEN n OPERATOR(pg_catalog.<)
			pg_catalog.current_setting('datastreams.prune_batch_size')::pg_catalog.int8;
	END LOOP;
END
$$;
COMMENT ON PROCEDURE datastreams.prune_all(bigint) IS 'call prune() until a step deletes less than datastreams.prune_batch_size frames, committing after each step; pruned is the total (administrators)';

-- (end of bulk ingest and pruning)
