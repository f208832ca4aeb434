
--------------------------------------------------------------------------
-- Routing (sharded deployments, contrib/datastreams_proxy)
--------------------------------------------------------------------------

CREATE FUNCTION datastreams.stream_hash(stream_id uuid)
RETURNS integer
AS 'MODULE_PATHNAME', 'datastreams_stream_hash'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION datastreams.stream_hash(uuid) IS 'the routing hash of a stream: the first 32 bits of its id as an int4; datastreams.stream_id_hash chooses it for new streams';

-- push() names its stream by a topic; routing push() needs the stream id
-- before push() validates the topic, so an invalid topic gives NULL here
-- and push() itself raises the error.
CREATE FUNCTION datastreams.topic_stream_id(topic text)
RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN $1 ~ '^datastreams/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
		THEN pg_catalog.substr($1, 13)::uuid END
$$;
COMMENT ON FUNCTION datastreams.topic_stream_id(text) IS 'the stream id in a push() topic datastreams/<stream id>, NULL when the topic has another form';

-- (end of routing)
