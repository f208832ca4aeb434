
--------------------------------------------------------------------------
-- Routing (sharded deployments, contrib/datastreams_proxy)
--------------------------------------------------------------------------

CREATE FUNCTION datastreams.stream_hash(stream_id uuid)
RETURNS integer
AS 'MODULE_PATHNAME', 'datastreams_stream_hash'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION datastreams.stream_hash(uuid) IS 'the routing hash of a stream: the first 32 bits of its id as an int4; datastreams.stream_id_hash chooses it for new streams';

-- (end of routing)
