#-------------------------------------------------------------------------
#
# 204_scaleout_move.pl
#	  scripts/move-partition.sh moves partition 3 of 8 from shard1 to
#	  shard0 while a writer keeps writing through the proxy to two streams
#	  of that partition and one stream of another partition of shard1,
#	  retrying refused (40001) calls: no acknowledged frame is lost or
#	  doubled, sequences stay gapless and in order, the destination's
#	  latest frame and counters match its frames, the other partition is never
#	  refused, list_streams() never shows a stream twice, the source keeps
#	  none of the moved streams, and the partition is unavailable < 1 s.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ScaleoutHelper;

my @shards = (new_shard('shard0'), new_shard('shard1'));
my $proxy = new_proxy('proxy', 8, @shards);
add_tenants($proxy, 'datastreams_proxy');

# m1, m2 in partition 3, other in partition 5: all on shard1.
my %id;
for ([ m1 => 3 ], [ m2 => 11 ], [ other => 5 ])
{
	my ($name, $hash) = @$_;
	$id{$name} = $proxy->safe_psql('postgres',
		"SELECT id FROM datastreams_proxy.create_stream('$name', 'M', partition_hash => $hash)",
		extra_params => [ '-U', 'regress_tenant_a' ]);
}
is($shards[1]->safe_psql('postgres', 'SELECT count(*) FROM datastreams.streams'),
	'3', 'the three streams start on shard1');

# A listen-only role on the source listens to m1's channel.
$shards[1]->safe_psql('postgres', 'CREATE ROLE regress_listener LOGIN');
my ($lin, $lout, $lerr) = ("LISTEN \"datastreams_$id{m1}\";\n", '', '');
my $listener = IPC::Run::start(
	[ 'psql', '-X', '-U', 'regress_listener', '-d', $shards[1]->connstr('postgres') ],
	'<', \$lin, '>', \$lout, '2>', \$lerr);
$listener->pump while length $lin;

# The writer: one proxy session writing to the three streams, retrying
# refused calls.
my ($writer, $werr) = start_writer($proxy, 'regress_tenant_a', 5,
	'serialization_failure', @id{qw(m1 m2 other)});

# Let the writer run, then move.
sleep 1;
my ($moved, $mout, $merr) = move_partition($shards[1], $shards[0], $proxy, 3);
ok($moved, 'move-partition.sh succeeds') or diag($mout . $merr);
note($mout);
$writer->finish;
ok(!$writer->result, 'the writer ends without an error other than 40001')
  or diag(join "\n", grep { /ERROR/ } split /\n/, $$werr);

my $log = writer_log($$werr);
my ($acked, $refused, $longest_gap) = @$log{qw(acked refused gap)};
note(sprintf('acknowledged %d/%d/%d; refused %d/%d/%d; longest gaps %d/%d/%d ms',
	(map { scalar @{ $acked->{$_} // [] } } 1 .. 3),
	(map { $refused->{$_} // 0 } 1 .. 3),
	(map { $longest_gap->{$_} // 0 } 1 .. 3)));

ok(($refused->{1} // 0) + ($refused->{2} // 0) > 0, 'the moved partition was refused for a moment');
is($refused->{3} // 0, 0, 'the other partition of the source was never refused');
is($log->{doubled}, 0, 'list_streams() never showed a stream twice');
my ($unavailable) = $mout =~ /unavailable_ms=(\d+)/;
ok(defined $unavailable && $unavailable < 1000,
	'the script measured the partition unavailable < 1 s (' . ($unavailable // '?') . ' ms)');
ok(($longest_gap->{$_} // 99999) < 1000,
	"stream $_: the writer waited < 1 s between acknowledgements ("
	  . ($longest_gap->{$_} // '?') . ' ms)')
  for 1, 2;

# Every acknowledged frame stored once, gapless and in order.
my %home = (1 => $shards[0], 2 => $shards[0], 3 => $shards[1]);
my @names = ('', 'm1', 'm2', 'other');
for my $i (1 .. 3)
{
	my $n = scalar @{ $acked->{$i} // [] };
	ok($n > 50, "$names[$i]: the writer had $n frames acknowledged");
	is_deeply($acked->{$i}, [ 1 .. $n ], "$names[$i]: acknowledged in order without gaps");
	is( $home{$i}->safe_psql(
			'postgres',
			"SELECT count(*) || ':' || count(DISTINCT sequence) || ':' || min(sequence) || ':' || max(sequence)
			   FROM datastreams.frames WHERE stream_id = '$id{$names[$i]}'"),
		"$n:$n:1:$n",
		"$names[$i]: exactly the acknowledged frames are stored on " . $home{$i}->name);
	is( $home{$i}->safe_psql(
			'postgres',
			"SELECT h.last_sequence || ':' || h.frames_total || ':' || h.frames_ok
			   FROM datastreams.stream_health AS h WHERE h.stream_id = '$id{$names[$i]}'"),
		"$n:$n:$n",
		"$names[$i]: the latest frame and the counters match the frames");
}
$lin = "SELECT 'after the move';\n\\q\n";
$listener->finish;
like($lout, qr/notification "datastreams_$id{m1}" with payload "\{"moved": true\}"/,
	'a listener on the source is told {"moved": true}');
is($shards[1]->safe_psql('postgres',
		"SELECT count(*) FROM datastreams.streams WHERE id IN ('$id{m1}', '$id{m2}')"),
	'0', 'the source keeps none of the moved streams');
is($shards[1]->safe_psql('postgres',
		"SELECT state FROM datastreams_shard.hidden WHERE mask = 7 AND value = 3"),
	'moved_out', 'the source keeps its moved_out mark for stale proxies');
is($proxy->safe_psql('postgres', "SELECT datastreams_proxy.shard_of('$id{m1}')"),
	shard_conninfo($shards[0]), 'shard_of() names the destination');
is($proxy->safe_psql('postgres', 'SELECT count(*) FROM datastreams_proxy.list_streams()',
		extra_params => [ '-U', 'regress_tenant_a' ]),
	'3', 'list_streams() shows the three streams once');
is($proxy->safe_psql('postgres', "SELECT sequence FROM datastreams_proxy.create_frame('$id{m1}', 100000)",
		extra_params => [ '-U', 'regress_tenant_a' ]),
	'100000', 'the moved stream takes new frames through the proxy');

# A second move of the same partition needs the first one finished: here
# it is, and moving it back works too.
ok((move_partition($shards[0], $shards[1], $proxy, 3))[0], 'the partition moves back');
is($proxy->safe_psql('postgres', "SELECT sequence FROM datastreams_proxy.latest_frame('$id{m1}')",
		extra_params => [ '-U', 'regress_tenant_a' ]),
	'100000', 'with its frames');

$_->stop for ($proxy, @shards);
done_testing();
