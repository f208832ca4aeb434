#-------------------------------------------------------------------------
#
# 203_scaleout_fanout.pl
#	  Fan-outs through the proxy: list_streams() newest first across
#	  shards, without duplicates; the stream_health view's counters equal
#	  the frames stored on the shards; a partition marked as moving in or moved
#	  out on a shard disappears from both and its calls are refused with
#	  40001 (the partition-move gate), until the mark is removed.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ScaleoutHelper;

my @shards = (new_shard('shard0'), new_shard('shard1'));
my $proxy = new_proxy('proxy', 8, @shards);
add_tenants($proxy, 'datastreams_proxy');

sub as_a
{
	return sqlstate_of($proxy, 'regress_tenant_a', $_[0]);
}

# 12 streams, one transaction each, alternating between the shards (even
# partitions are on shard0, odd ones on shard1); a few frames in each.
for my $i (1 .. 12)
{
	as_a(qq{SELECT s.id FROM datastreams_proxy.create_stream('s$i', 'S', partition_hash => $i) AS s});
}
as_a(q{SELECT datastreams_proxy.ingest(s.id, (SELECT jsonb_agg(jsonb_build_object('sequence', g, 'latency_ms', g * 10, 'status', CASE WHEN g % 3 = 0 THEN 'error' ELSE 'ok' END)) FROM generate_series(1, length(s.name)) AS g)) FROM datastreams_proxy.list_streams() AS s});

my $by_shards = join ',', map {
	$_->safe_psql('postgres', q{SELECT count(*) FROM datastreams.streams WHERE account_id = 'a'})
} @shards;
is($by_shards, '6,6', 'the streams are on both shards');

my $expected = join "\n", map { "s$_" } reverse 1 .. 12;
is(as_a(q{SELECT name FROM datastreams_proxy.list_streams()}),
	$expected, 'list_streams() is newest first across shards');
is(as_a(q{SELECT count(*) - count(DISTINCT id) FROM datastreams_proxy.list_streams()}),
	'0', 'list_streams() has no duplicates');

# stream_health counters against the frames stored on each shard.
my $truth = join "\n", sort map {
	split /\n/, $_->safe_psql('postgres', q{
SELECT s.name || ':' || count(*) FILTER (WHERE f.status = 'ok') || ':'
	   || count(*) FILTER (WHERE f.status = 'error') || ':' || max(f.sequence)
  FROM datastreams.frames AS f JOIN datastreams.streams AS s ON s.id = f.stream_id
 GROUP BY s.name})
} @shards;
my $health = as_a(q{
SELECT line FROM (
	SELECT s.name || ':' || h.frames_ok || ':' || h.frames_error || ':' || h.last_sequence AS line
	  FROM datastreams_proxy.stream_health AS h
	  JOIN datastreams_proxy.list_streams() AS s ON s.id = h.stream_id) AS l
 ORDER BY line COLLATE "C"});
is($health, $truth, 'stream_health counters equal the frames on the shards');
is(as_a(q{SELECT count(*) FROM datastreams_proxy.stream_health}), '12',
	'stream_health has one row per stream');

# Partition 3 of 8 (stream s3, s11) is on shard1.  Marked as moving in,
# it is hidden from fan-outs and refused.
my ($s3) = as_a(q{SELECT id FROM datastreams_proxy.list_streams() WHERE name = 's3'});
$shards[1]->safe_psql('postgres',
	q{INSERT INTO datastreams_shard.hidden (mask, value, state) VALUES (7, 3, 'moving_in')});
is(as_a(q{SELECT string_agg(name, ',' ORDER BY name COLLATE "C") FROM datastreams_proxy.list_streams() WHERE name IN ('s3', 's11', 's4')}),
	's4', 'a partition moving in is not listed');
is(as_a(q{SELECT count(*) FROM datastreams_proxy.stream_health}), '10',
	'nor in stream_health');
is(as_a(qq{SELECT * FROM datastreams_proxy.create_frame('$s3', 100)}),
	'ERROR 40001', 'its writes are refused with 40001');
is(as_a(qq{SELECT * FROM datastreams_proxy.latest_frame('$s3')}),
	'ERROR 40001', 'and its reads');
$shards[1]->safe_psql('postgres', q{UPDATE datastreams_shard.hidden SET state = 'moved_out'});
is(as_a(qq{SELECT * FROM datastreams_proxy.frames_since('$s3', 0)}),
	'ERROR 40001', 'a partition moved out is refused too');
$shards[1]->safe_psql('postgres', q{DELETE FROM datastreams_shard.hidden});
is(as_a(qq{SELECT sequence FROM datastreams_proxy.create_frame('$s3', 100)}),
	'100', 'without the mark the partition is served again');
is(as_a(q{SELECT count(*) FROM datastreams_proxy.list_streams()}), '12',
	'and listed again');

$_->stop for ($proxy, @shards);
done_testing();
