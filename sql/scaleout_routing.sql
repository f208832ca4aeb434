-- The routing hash of sharded deployments and the setting that chooses it
-- for new streams (src/routing.c).
SELECT datastreams.stream_hash('ffffffff-0000-4000-8000-000000000000') AS minus_one,
       datastreams.stream_hash('00000001-0000-4000-8000-000000000000') AS one,
       datastreams.stream_hash('80000000-ffff-4fff-bfff-ffffffffffff') AS int4_min,
       datastreams.stream_hash(NULL) AS null_hash;

CREATE ROLE regress_routing_tenant;
SELECT datastreams.create_account('regress_routing', 'regress_routing_tenant') IS NOT NULL AS created;
SET ROLE regress_routing_tenant;

-- A chosen hash becomes the id's first 32 bits; the rest stays random and
-- the id stays a version 4 UUID.
SET datastreams.stream_id_hash = -2;
SELECT datastreams.stream_hash(s.id) AS hash,
       left(s.id::text, 8) AS prefix,
       substr(s.id::text, 15, 1) AS version,
       substr(s.id::text, 20, 1) IN ('8', '9', 'a', 'b') AS rfc_variant
  FROM datastreams.create_stream('chosen', 'c') AS s;
SET datastreams.stream_id_hash = 7;
SELECT count(DISTINCT s.id) AS distinct_ids, min(datastreams.stream_hash(s.id)) AS min_hash, max(datastreams.stream_hash(s.id)) AS max_hash
  FROM generate_series(1, 5) AS g, LATERAL datastreams.create_stream('many ' || g, 'm') AS s;

-- Empty means no choice: ids are random again.
SET datastreams.stream_id_hash = '';
SELECT count(DISTINCT datastreams.stream_hash(s.id)) AS distinct_hashes
  FROM generate_series(1, 5) AS g, LATERAL datastreams.create_stream('random ' || g, 'r') AS s;

-- The setting chooses a hash, never an id.
INSERT INTO datastreams.streams (id, name, symbol) VALUES ('00000007-0000-4000-8000-000000000000', 'x', 'x');

-- Bad values are refused.
SET datastreams.stream_id_hash = 'x';
SET datastreams.stream_id_hash = 2147483648;
SET datastreams.stream_id_hash = '7 ';
RESET datastreams.stream_id_hash;
RESET ROLE;

SELECT pg_catalog.count(*) AS streams FROM datastreams.streams WHERE account_id = 'regress_routing';
DELETE FROM datastreams.streams WHERE account_id = 'regress_routing';
DELETE FROM datastreams.accounts WHERE id = 'regress_routing';
DROP ROLE regress_routing_tenant;
