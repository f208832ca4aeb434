#-------------------------------------------------------------------------
#
# 201_scaleout_parity.pl
#	  One scripted workload run on a single node (datastreams.*) and
#	  through a proxy with 2 shards (datastreams_proxy.*): every step gives
#	  the same result, and every error case the same SQLSTATE, ids aside.
#	  The single node's SQLSTATEs are also checked against the expected
#	  ones, so a step cannot pass by failing the same wrong way twice.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ScaleoutHelper;

my $single = new_scaleout_node('single');
add_tenants($single, 'datastreams');
my @shards = (new_shard('shard0'), new_shard('shard1'));
my $proxy = new_proxy('proxy', 8, @shards);
add_tenants($proxy, 'datastreams_proxy');

my $missing = '00000000-0000-4000-8000-000000000001';
# sequences from push() are the clock's nanoseconds
my $seq = q{CASE WHEN sequence > 1000000000 THEN 'clock' ELSE sequence::text END};

# [role, SQL with @. for the schema and {var} for captured stream ids,
#  variable to capture (the first column) or undef, expected SQLSTATE or undef]
my @steps = (
	[ 'regress_tenant_a', q{SELECT id, name, symbol, description, status, sla_ms, frequency, metadata FROM @.create_stream(' temp ', ' t1 ', 'desc', '1s', 100, 'ACTIVE', '{"k": "v"}')}, 's1' ],
	[ 'regress_tenant_a', q{SELECT id, name, status FROM @.create_stream('second', 's2')}, 's2' ],
	[ 'regress_tenant_a', q{SELECT id, name FROM @.create_stream('third', 's3')}, 's3' ],
	[ 'regress_tenant_b', q{SELECT id, name FROM @.create_stream('of b', 'b1')}, 'sb' ],
	[ 'regress_tenant_a', qq{SELECT $seq, payload, status, latency_ms FROM \@.create_frame('{s1}', 1, '{"v": 1}')} ],
	[ 'regress_tenant_a', qq{SELECT $seq, status, latency_ms FROM \@.create_frame('{s1}', 2, '{"v": 2}', 500)} ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_frame('{s1}', 2)}, undef, '23505' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_frame('{s1}', 1)}, undef, '23514' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_frame('{s1}', 0)}, undef, '22023' ],
	# on_duplicate: a frame sent again is returned, a different one is 23505
	[ 'regress_tenant_a', qq{SELECT $seq, payload, status, latency_ms FROM \@.create_frame('{s1}', 2, '{"v": 2}', 500, on_duplicate => 'skip')} ],
	[ 'regress_tenant_a', qq{SELECT $seq, payload FROM \@.create_frame('{s1}', 1, '{"v": 1}', 0, 'ok', '{}', 'skip')} ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_frame('{s1}', 2, '{"v": 3}', on_duplicate => 'skip')}, undef, '23505' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_frame('{s1}', 2, '{"v": 2}', 500, on_duplicate => 'error')}, undef, '23505' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_frame('{s1}', 9, on_duplicate => 'bogus')}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_frame('{sb}', 1, on_duplicate => 'skip')}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_frame('{s1}', 9, '{}', 0, 'bogus')}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_frame('{s1}', 9, '[1]')}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT @.ingest('{s1}', '[{"sequence": 3}, {"sequence": 4, "payload": {"x": 2}, "status": "error"}]')} ],
	[ 'regress_tenant_a', q{SELECT @.ingest('{s1}', '{}')}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT @.ingest('{s1}', '[{"sequence": 5}, {"sequence": 5}]')}, undef, '23505' ],
	[ 'regress_tenant_a', q{SELECT @.ingest('{s1}', '[{"sequence": 5, "bogus": 1}]')}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT @.ingest(NULL, '[]')}, undef, '23502' ],
	[ 'regress_tenant_a', qq{SELECT $seq, payload FROM \@.push('datastreams/{s1}', '{"pushed": true}')} ],
	[ 'regress_tenant_a', q{SELECT * FROM @.push('bad topic', '{}')}, undef, '22023' ],
	[ 'regress_tenant_a', qq{SELECT * FROM \@.push('datastreams/$missing', '{}')}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.push('datastreams/{s1}', '"x"')}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT name, status FROM @.update_stream('{s2}', '{"status": "paused"}')} ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_frame('{s2}', 1)}, undef, '55000' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.update_stream('{s1}', '{"bogus": 1}')}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.update_stream('{s1}', '{"id": "x"}')}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.update_stream('{s1}', '{"sla_ms": 1.5}')}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT name, symbol, sla_ms FROM @.update_stream('{s1}', '{"name": "renamed", "sla_ms": 200}')} ],
	[ 'regress_tenant_a', q{SELECT name, symbol, sla_ms, status FROM @.get_stream('{s1}')} ],
	[ 'regress_tenant_a', q{SELECT * FROM @.get_stream('{sb}')}, undef, 'P0002' ],
	[ 'regress_tenant_a', qq{SELECT * FROM \@.get_stream('$missing')}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.get_stream(NULL)}, undef, '23502' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_frame('{sb}', 1)}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.update_stream('{sb}', '{"name": "mine"}')}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT @.ingest('{sb}', '[{"sequence": 1}]')}, undef, 'P0002' ],
	[ 'regress_tenant_a', qq{SELECT $seq, status FROM \@.list_frames('{s1}', 2)} ],
	[ 'regress_tenant_a', qq{SELECT $seq, status FROM \@.list_frames('{s1}', 10, 4)} ],
	[ 'regress_tenant_a', qq{SELECT $seq, status FROM \@.frames_since('{s1}', 2)} ],
	[ 'regress_tenant_a', qq{SELECT $seq FROM \@.frames_since('{s1}', 0, 2)} ],
	[ 'regress_tenant_a', q{SELECT * FROM @.frames_since('{sb}', 0)}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.list_frames('{sb}')}, undef, 'P0002' ],
	[ 'regress_tenant_a', qq{SELECT $seq, payload FROM \@.latest_frame('{s1}')} ],
	[ 'regress_tenant_a', q{SELECT @.latest_frame('{s2}') IS NULL} ],
	[ 'regress_tenant_a', q{SELECT * FROM @.latest_frame('{sb}')}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT name FROM @.list_streams()} ],
	[ 'regress_tenant_b', q{SELECT name FROM @.list_streams()} ],
	[ 'regress_tenant_a', q{SELECT status, frames_total, frames_ok, frames_late, frames_error, last_sequence IS NOT NULL FROM @.stream_health ORDER BY frames_total, status COLLATE "C"} ],
	[ 'regress_tenant_a', q{SET datastreams.health_late_ratio_threshold = 0.9; SELECT frames_total, healthy FROM @.stream_health ORDER BY frames_total} ],
	# durable consumers: c1 of every stream (only s1 has frames), c2 of s1 and s2
	[ 'regress_tenant_a', q{SELECT name, start, streams IS NULL FROM @.create_consumer('c1', start => 'earliest')} ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_consumer('c1')}, undef, '23505' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_consumer('c1', start => 'earliest')}, undef, '23505' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_consumer(' ')}, undef, '23502' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_consumer(NULL, '{}')}, undef, '23502' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_consumer(repeat('x', 256))}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_consumer('c2', start => 'middle')}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_consumer('c2', '{}')}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_consumer('c2', ARRAY[NULL]::uuid[])}, undef, '22023' ],
	[ 'regress_tenant_a', qq{SELECT * FROM \@.create_consumer('c2', ARRAY['{s1}', '$missing']::uuid[])}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_consumer('c2', ARRAY['{sb}']::uuid[])}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_consumer('c1', ARRAY['{sb}']::uuid[])}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT name, start, cardinality(streams) FROM @.create_consumer('c2', ARRAY['{s2}', '{s1}', '{s2}']::uuid[])} ],
	[ 'regress_tenant_a', q{SELECT name, start FROM @.list_consumers()} ],
	[ 'regress_tenant_a', q{SELECT name, start, cardinality(streams) FROM @.get_consumer('c2')} ],
	[ 'regress_tenant_a', q{SELECT * FROM @.get_consumer('nope')}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.get_consumer(NULL)}, undef, 'P0002' ],
	[ 'regress_tenant_a', qq{SELECT $seq FROM \@.poll('c2')} ],
	[ 'regress_tenant_a', qq{SELECT $seq, status FROM \@.poll('c1', 3)} ],
	[ 'regress_tenant_a', q{SELECT * FROM @.poll('c1', 0)}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.poll('nope')}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT @.ack('c1', '{s1}', 3)} ],
	[ 'regress_tenant_a', q{SELECT @.ack('c1', '{s1}', 2)} ],
	[ 'regress_tenant_a', qq{SELECT $seq FROM \@.poll('c1', 2)} ],
	[ 'regress_tenant_a', q{SELECT @.seek('c1', '{s1}', 1)} ],
	[ 'regress_tenant_a', qq{SELECT $seq FROM \@.poll('c1', NULL)} ],
	[ 'regress_tenant_a', q{SELECT @.ack('c2', '{s3}', 1)}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT @.ack('c2', '{s1}', NULL)}, undef, '23502' ],
	[ 'regress_tenant_a', q{SELECT @.ack('c2', '{s1}', -1)}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT @.ack('c2', '{s2}', 1)}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT @.ack('c2', '{sb}', 1)}, undef, 'P0002' ],
	[ 'regress_tenant_a', qq{SELECT \@.ack('c2', '$missing', 1)}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT @.ack('nope', '{s1}', 1)}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT @.seek('c1', NULL, 1)}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT consumer, CASE WHEN acknowledged_sequence > 1000000000 THEN 'clock' ELSE acknowledged_sequence::text END, frames_behind, frames_missed FROM @.consumer_lag ORDER BY 1, 3, 2} ],
	[ 'regress_tenant_b', q{SELECT * FROM @.poll('c1')}, undef, 'P0002' ],
	[ 'regress_tenant_b', q{SELECT count(*) FROM @.list_consumers()} ],
	[ 'regress_tenant_b', q{SELECT count(*) FROM @.consumer_lag} ],
	[ 'regress_nobody', q{SELECT * FROM @.poll('c1')}, undef, '42501' ],
	[ 'regress_nobody', q{SELECT * FROM @.create_consumer('c3')}, undef, '42501' ],
	[ 'regress_nobody', q{SELECT count(*) FROM @.consumer_lag} ],
	[ 'regress_tenant_a', q{SELECT @.drop_consumer('c2')} ],
	[ 'regress_tenant_a', q{SELECT @.drop_consumer('c2')}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT @.drop_consumer(NULL)}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SELECT name FROM @.list_consumers()} ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_stream('', 'x')}, undef, '23502' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_stream('x', 'x', status => 'weird')}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_stream('x', 'x', frequency => '-1s')}, undef, '22023' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_stream('x', 'x', retention => '0')}, undef, '22023' ],
	[ 'regress_nobody', q{SELECT * FROM @.create_stream('x', 'x')}, undef, '42501' ],
	[ 'regress_nobody', q{SELECT * FROM @.list_streams()}, undef, '42501' ],
	[ 'regress_nobody', q{SELECT * FROM @.get_stream('{s1}')}, undef, '42501' ],
	[ 'regress_nobody', q{SELECT count(*) FROM @.stream_health} ],
	[ 'regress_app', q{SELECT * FROM @.create_frame('{s1}', 10)}, undef, '42501' ],
	[ 'regress_app', qq{SET datastreams.account_id = 'a'; SELECT $seq FROM \@.create_frame('{s3}', 10)} ],
	[ 'regress_app', q{SET datastreams.account_id = 'b'; SELECT * FROM @.create_frame('{s3}', 11)}, undef, 'P0002' ],
	[ 'regress_app', q{SET datastreams.account_id = 'nope'; SELECT * FROM @.list_streams()}, undef, 'P0002' ],
	[ 'regress_tenant_a', q{SET datastreams.account_id = 'b'; SELECT * FROM @.get_stream('{sb}')}, undef, '42501' ],
	[ 'regress_tenant_a', q{SELECT * FROM @.create_account('c')}, undef, '42501' ],
	[ 'postgres', q{SELECT id FROM @.create_account('a')}, undef, '23505' ],
	[ 'postgres', q{SELECT id FROM @.create_account(' ')}, undef, '23502' ],
	[ 'postgres', q{SELECT id FROM @.create_account('c')} ],
);

sub run_workload
{
	my ($node, $schema) = @_;
	my (%var, @results);

	for my $step (@steps)
	{
		my ($role, $sql, $capture) = @$step;
		$sql =~ s/\@\./$schema./g;
		$sql =~ s/\{(\w+)\}/$var{$1}/g;
		my $result = sqlstate_of($node, $role, $sql);
		$var{$capture} = $1
		  if defined $capture && $result =~ /^([0-9a-f-]{36})\|/;
		$result =~ s/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/<uuid>/g;
		push @results, $result;
	}
	return @results;
}

my @on_node = run_workload($single, 'datastreams');
my @on_proxy = run_workload($proxy, 'datastreams_proxy');

for my $i (0 .. $#steps)
{
	my ($role, $sql, undef, $sqlstate) = @{ $steps[$i] };
	my $what = sprintf('step %d (%s: %s)', $i + 1, $role, substr($sql, 0, 60));

	if (defined $sqlstate)
	{
		is($on_node[$i], "ERROR $sqlstate", "$what: one node raises $sqlstate");
	}
	else
	{
		unlike($on_node[$i], qr/^ERROR/, "$what: one node succeeds");
	}
	is($on_proxy[$i], $on_node[$i], "$what: same through the proxy");
}

# The new account reached every shard.
is($_->safe_psql('postgres', q{SELECT count(*) FROM datastreams.accounts WHERE id = 'c'}),
	'1', 'create_account() through the proxy reaches ' . $_->name)
  for @shards;

$_->stop for ($single, $proxy, @shards);
done_testing();
