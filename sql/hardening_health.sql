--
-- hardening_health: no stored value makes stream_health fail (issue 13,
-- item 2).  The view is read by administrators and by the exporter for
-- every tenant at once, so one tenant's odd row must not take monitoring
-- down: a latest frame dated 'infinity' or '-infinity' (rows written
-- before frames.created_at was the trigger's to set, or restored), and a
-- frequency of millions of years, which the tolerance multiplies past the
-- range of interval.
--
CREATE ROLE regress_hh_tenant;
CREATE ROLE regress_hh_exporter BYPASSRLS;
SELECT id FROM datastreams.create_account('regress_hh_a', 'regress_hh_tenant');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status, frequency) VALUES
	('00000000-0000-4000-8000-000000000ca1', 'regress_hh_a', 'future', 'FUT', 'active', '1 second'),
	('00000000-0000-4000-8000-000000000ca2', 'regress_hh_a', 'past', 'PAST', 'active', '1 second'),
	('00000000-0000-4000-8000-000000000ca3', 'regress_hh_a', 'eon', 'EON', 'active', '178000000 years'),
	('00000000-0000-4000-8000-000000000ca4', 'regress_hh_a', 'eon, no frame', 'EON0', 'active', '178000000 years'),
	('00000000-0000-4000-8000-000000000ca5', 'regress_hh_a', 'normal', 'NORM', 'active', '1 hour');
INSERT INTO datastreams.frames (stream_id, sequence) VALUES
	('00000000-0000-4000-8000-000000000ca3', 1),
	('00000000-0000-4000-8000-000000000ca5', 1);
-- frames dated 'infinity' and '-infinity', as a restore of rows written
-- before 1.2 brings them back (the triggers are off, as for pg_restore)
SET session_replication_role = replica;
INSERT INTO datastreams.frames (id, account_id, stream_id, sequence, created_at) VALUES
	('00000000-0000-7000-8000-000000000ca1', 'regress_hh_a', '00000000-0000-4000-8000-000000000ca1', 1, 'infinity'),
	('00000000-0000-7000-8000-000000000ca2', 'regress_hh_a', '00000000-0000-4000-8000-000000000ca2', 1, '-infinity');
RESET session_replication_role;

-- (finite times are shown as "recent": they are the time of this run)
CREATE FUNCTION pg_temp.health() RETURNS TABLE (name text, last_frame_at text,
	seconds_since_last_frame text, healthy boolean, reason text)
LANGUAGE sql AS $$
	SELECT s.name,
		   CASE WHEN isfinite(h.last_frame_at) THEN 'recent' ELSE h.last_frame_at::text END,
		   CASE WHEN h.seconds_since_last_frame BETWEEN 0 AND 60 THEN 'recent'
				ELSE h.seconds_since_last_frame::text END,
		   h.healthy, h.reason
	  FROM datastreams.stream_health AS h JOIN datastreams.streams AS s ON s.id = h.stream_id
	 WHERE h.account_id = 'regress_hh_a'
	 ORDER BY h.stream_id
$$;

-- the administrator
SELECT * FROM pg_temp.health();
-- the tolerance at its maximum
SET datastreams.health_frequency_tolerance = 1000000;
SELECT name, healthy FROM pg_temp.health();
RESET datastreams.health_frequency_tolerance;
-- the exporter (BYPASSRLS), with the columns of its query
SET ROLE regress_hh_exporter;
SELECT count(*) AS streams,
	   count(*) FILTER (WHERE EXTRACT(epoch FROM frequency)::double precision > 0) AS with_frequency,
	   count(*) FILTER (WHERE EXTRACT(epoch FROM last_frame_at)::double precision IS NOT NULL) AS with_last_frame,
	   count(*) FILTER (WHERE healthy) AS healthy
  FROM datastreams.stream_health WHERE account_id = 'regress_hh_a';
RESET ROLE;
-- the tenant itself
SET ROLE regress_hh_tenant;
SELECT name, healthy FROM pg_temp.health();
RESET ROLE;

-- clean up
DELETE FROM datastreams.streams WHERE account_id = 'regress_hh_a';
DELETE FROM datastreams.accounts WHERE id = 'regress_hh_a';
DROP ROLE regress_hh_tenant, regress_hh_exporter;
