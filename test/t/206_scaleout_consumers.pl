#-------------------------------------------------------------------------
#
# 206_scaleout_consumers.pl
#	  Durable consumers through the proxy (1 proxy, 2 shards): a consumer
#	  of every stream exists on both shards and covers a stream created
#	  later; two processes sharing it through the proxy receive every frame
#	  exactly once and each stream's frames in order; a member holds the
#	  streams it polled until its transaction ends; consumer_lag through
#	  the proxy is the union of the shards' rows, in order; a consumer of
#	  streams on both shards keeps the whole list everywhere; tenancy
#	  (another account is refused with 42501 on the proxy, a tenant's
#	  consumer and the proxy's lock rows are invisible to another); a
#	  consumer's position survives scripts/move-partition.sh of its
#	  stream's partition; retention's missed frames are announced once.
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

sub as_a { return sqlstate_of($proxy, 'regress_tenant_a', $_[0]); }
sub as_b { return sqlstate_of($proxy, 'regress_tenant_b', $_[0]); }

# s0 .. s3 in partitions 0 .. 3: even ones on shard0, odd ones on shard1.
my @s = map {
	as_a(qq{SELECT id FROM datastreams_proxy.create_stream('s$_', 'S', status => 'active', partition_hash => $_)})
} 0 .. 3;
is(as_a(q{SELECT name, start, streams IS NULL FROM datastreams_proxy.create_consumer('all', start => 'earliest')}),
	'all|earliest|t', 'a consumer of every stream is created through the proxy');
is(join(',', map { $_->safe_psql('postgres', q{SELECT count(*) FROM datastreams.consumers WHERE name = 'all'}) } @shards),
	'1,1', 'it exists on both shards');
is(as_a(q{SELECT * FROM datastreams_proxy.create_consumer('all')}), 'ERROR 23505',
	'creating it again is 23505 as on one node');
# A stream created after the consumer, on shard0.
push @s, as_a(q{SELECT id FROM datastreams_proxy.create_stream('s4', 'S', status => 'active', partition_hash => 4)});
as_a(qq{SELECT datastreams_proxy.ingest('$_', (SELECT jsonb_agg(jsonb_build_object('sequence', g)) FROM generate_series(1, 40) AS g))})
  for @s;

# Two members share the consumer: each polls 7 frames, "processes" them
# for 20 ms, acknowledges the last frame of each stream and commits; both
# stop after 1 s without frames.  Every frame received is a NOTICE with
# the member, the stream, the sequence and the time.
sub start_member
{
	my ($member) = @_;
	my $sql = qq{
DO \$\$
DECLARE
	f record;
	idle integer := 0;
	n integer;
BEGIN
	WHILE idle < 20 LOOP
		n := 0;
		FOR f IN SELECT p.stream_id, p.sequence,
						max(p.sequence) OVER (PARTITION BY p.stream_id) AS last
				   FROM datastreams_proxy.poll('all', 7) AS p
				  ORDER BY p.stream_id, p.sequence LOOP
			RAISE NOTICE 'got $member % % %', f.stream_id, f.sequence,
				(extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
			n := n + 1;
			IF f.sequence = f.last THEN
				PERFORM pg_sleep(0.02);
				PERFORM datastreams_proxy.ack('all', f.stream_id, f.sequence);
			END IF;
		END LOOP;
		COMMIT;
		IF n = 0 THEN
			idle := idle + 1;
			PERFORM pg_sleep(0.05);
		ELSE
			idle := 0;
		END IF;
	END LOOP;
END
\$\$;};
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-U', 'regress_tenant_a',
			'-d', $proxy->connstr('postgres'), '-c', $sql
		],
		'>', \$out, '2>', \$err);
	return [ $h, \$err ];
}

my @members = (start_member('m1'), start_member('m2'));
$_->[0]->finish for @members;
ok(!$_->[0]->result, 'a member ends without an error') for @members;

my (%delivered, %by_member);
for my $m (@members)
{
	for (split /\n/, ${ $m->[1] })
	{
		next unless /NOTICE:  got (m\d) (\S+) (\d+) (\d+)/;
		push @{ $delivered{$2} }, [ $4, $3 ];
		$by_member{$1}++;
	}
}
for my $i (0 .. $#s)
{
	my @order = map { $_->[1] } sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } @{ $delivered{ $s[$i] } // [] };
	is_deeply(\@order, [ 1 .. 40 ], "s$i: every frame received once, in order, across both members");
}
is(scalar(keys %delivered), 5, 'frames of the five streams on both shards were received');
ok(($by_member{m1} // 0) > 0 && ($by_member{m2} // 0) > 0,
	'both members received frames (m1 ' . ($by_member{m1} // 0) . ', m2 ' . ($by_member{m2} // 0) . ')');
is(as_a(q{SELECT count(*) FROM datastreams_proxy.poll('all')}), '0', 'nothing is left to poll');

# A member holds what it polled until its transaction on the proxy ends:
# another member gets nothing of it (without waiting, also when the first
# member's poll was the consumer's first of the streams), and its ack and
# the consumer's drop wait.
sub start_holder
{
	my ($consumer) = @_;
	my %h = (in => "BEGIN;\nSELECT 'polled', count(*) FROM datastreams_proxy.poll('$consumer', 100);\n",
		out => '', err => '');
	$h{run} = IPC::Run::start(
		[ 'psql', '-X', '-q', '-A', '-t', '-U', 'regress_tenant_a', '-d', $proxy->connstr('postgres') ],
		'<', \$h{in}, '>', \$h{out}, '2>', \$h{err});
	$h{run}->pump while length $h{in};
	$proxy->poll_query_until('postgres', qq{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE usename = 'regress_tenant_a' AND state = 'idle in transaction' AND query LIKE '%poll(''$consumer''%'})
	  or die 'the holding member did not poll';
	return \%h;
}

sub end_holder
{
	my ($h) = @_;
	$h->{in} = "ROLLBACK;\n\\q\n";
	$h->{run}->finish;
	return $h->{out};
}

for my $c (qw(fresh held))
{
	as_a(qq{SELECT name FROM datastreams_proxy.create_consumer('$c', ARRAY['$s[3]', '$s[4]']::uuid[], 'earliest')});
}
my $holder = start_holder('fresh');
is(as_a(q{SET statement_timeout = '5s'; SELECT count(*) FROM datastreams_proxy.poll('fresh')}), '0',
	'a member gets none of the streams another is polling for the first time');
is(end_holder($holder), "polled|80\n", 'which had polled the frames of two streams on both shards');

# (a first poll, committed, makes the proxy's lock rows of the two streams)
is(as_a(q{SELECT count(*) FROM datastreams_proxy.poll('held', 100)}), '80', 'a consumer of the same two streams');
$holder = start_holder('held');
is(as_a(q{SELECT count(*) FROM datastreams_proxy.poll('held')}), '0',
	'another member gets none of them while the first holds them');
is(as_a(qq{SET lock_timeout = '200ms'; SELECT datastreams_proxy.ack('held', '$s[3]', 1)}), 'ERROR 55P03',
	'its ack of a held stream waits');
is(as_a(q{SET lock_timeout = '200ms'; SELECT datastreams_proxy.drop_consumer('held')}), 'ERROR 55P03',
	'so does a drop of the consumer');
is(end_holder($holder), "polled|80\n", 'the first member had polled both streams');
is(as_a(q{SELECT count(*) FROM datastreams_proxy.poll('held')}), '80',
	'once the first member rolled back, the frames go to the next');
as_a(qq{SELECT datastreams_proxy.drop_consumer(c) FROM unnest(ARRAY['fresh', 'held']) AS c});

# Lag: new frames on two streams, one of them partly acknowledged.
as_a(qq{SELECT datastreams_proxy.ingest('$s[1]', '[{"sequence": 41}, {"sequence": 42}, {"sequence": 43}]')});
as_a(qq{SELECT datastreams_proxy.ingest('$s[2]', '[{"sequence": 41}]')});
as_a(qq{SELECT datastreams_proxy.ack('all', '$s[1]', 41)});
is(as_a(qq{SELECT sequence FROM datastreams_proxy.poll('all', 10) WHERE stream_id = '$s[1]'}),
	"42\n43", 'poll returns the frames after the acknowledged one');
my $cols = 'consumer, account_id, stream_id, acknowledged_sequence, latest_sequence, frames_behind, frames_missed';
my $shard_rows = join "\n", sort map {
	split /\n/, $_->safe_psql('postgres', "SELECT $cols FROM datastreams.consumer_lag WHERE account_id = 'a'")
} @shards;
my $proxy_rows = as_a("SELECT $cols FROM datastreams_proxy.consumer_lag");
is($proxy_rows, $shard_rows, 'consumer_lag through the proxy is the union of the shards\' rows, by consumer and stream');
like($proxy_rows, qr/\Q$s[1]\E\|41\|43\|2\|0/, 'with the lag of a stream partly acknowledged');

# A consumer of two streams on different shards keeps the whole list on
# both shards; its positions are where the streams are.
my $pair = join ',', sort @s[0, 1];
is(as_a(qq{SELECT array_to_string(streams, ',') FROM datastreams_proxy.create_consumer('pair', ARRAY['$s[1]', '$s[0]', '$s[1]']::uuid[])}),
	$pair, 'a consumer of streams on both shards');
is(join(';', map { $_->safe_psql('postgres', q{SELECT array_to_string(streams, ',') || ':' || (SELECT count(*) FROM datastreams.consumer_positions WHERE consumer = 'pair') FROM datastreams.consumers WHERE name = 'pair'}) } @shards),
	"$pair:1;$pair:1", 'both shards have its whole list and the position of their own stream');
is(as_a(qq{SELECT count(*) FROM datastreams_proxy.poll('pair')}), '0', 'it starts at the latest frames');
as_a(qq{SELECT datastreams_proxy.create_frame('$_', 100)}) for @s[0, 1, 2];
is(as_a(qq{SELECT count(*) || ':' || count(DISTINCT stream_id) FROM datastreams_proxy.poll('pair')}), '2:2',
	'it receives the new frames of its two streams only');
is(as_a(qq{SELECT * FROM datastreams_proxy.ack('pair', '$s[2]', 100)}), 'ERROR 22023',
	'a stream it does not consume is refused as on one node');
is(as_a(q{SELECT string_agg(name, ',' ORDER BY name) FROM datastreams_proxy.list_consumers()}),
	'all,pair', 'list_consumers() shows each consumer once');
is(as_a(q{SELECT name FROM datastreams_proxy.get_consumer('pair')}), 'pair', 'get_consumer()');

# No distributed transactions: a create or drop that reached one shard
# only is completed by repeating it.
$shards[1]->safe_psql('postgres', q{DELETE FROM datastreams.consumers WHERE name = 'pair'});
is(as_a(q{SELECT count(*) FROM datastreams_proxy.list_consumers() WHERE name = 'pair'}), '1',
	'a consumer on one shard only is listed');
is(as_a(qq{SELECT array_to_string(streams, ',') FROM datastreams_proxy.create_consumer('pair', ARRAY['$s[0]', '$s[1]']::uuid[])}),
	$pair, 'creating it again with the same definition completes it');
is(join(';', map { $_->safe_psql('postgres', q{SELECT array_to_string(streams, ',') || ':' || (SELECT count(*) FROM datastreams.consumer_positions WHERE consumer = 'pair') FROM datastreams.consumers WHERE name = 'pair'}) } @shards),
	"$pair:1;$pair:1", 'on both shards');
is(as_a(qq{SELECT * FROM datastreams_proxy.create_consumer('pair', ARRAY['$s[0]']::uuid[])}), 'ERROR 23505',
	'a different definition under the name is 23505');
$shards[0]->safe_psql('postgres', q{DELETE FROM datastreams.consumers WHERE name = 'pair'});
as_a(q{SELECT datastreams_proxy.drop_consumer('pair')});
is(join(',', map { $_->safe_psql('postgres', q{SELECT count(*) FROM datastreams.consumers WHERE name = 'pair'}) } @shards),
	'0,0', 'drop_consumer() drops it on both shards');
is(as_a(q{SELECT * FROM datastreams_proxy.get_consumer('pair')}), 'ERROR P0002', 'then it is not found');
is(as_a(q{SELECT datastreams_proxy.drop_consumer('pair')}), 'ERROR P0002', 'nor dropped again');

# Tenancy.
for my $call (
	q{datastreams_proxy.create_consumer('x', account => 'b')},
	q{datastreams_proxy.get_consumer('all', account => 'b')},
	q{datastreams_proxy.list_consumers(account => 'b')},
	q{datastreams_proxy.poll('all', account => 'b')},
	qq{datastreams_proxy.ack('all', '$s[0]', 1, account => 'b')},
	qq{datastreams_proxy.seek('all', '$s[0]', 1, account => 'b')},
	q{datastreams_proxy.drop_consumer('all', account => 'b')})
{
	is(as_a("SELECT * FROM $call"), 'ERROR 42501', "another account is refused on the proxy: $call");
}
is(sqlstate_of($proxy, 'regress_nobody', q{SELECT * FROM datastreams_proxy.poll('all')}),
	'ERROR 42501', 'a role acting for no account cannot poll');
is(sqlstate_of($proxy, 'regress_nobody', q{SELECT count(*) FROM datastreams_proxy.consumer_lag}),
	'0', 'nor sees any lag');
is(as_b(q{SELECT count(*) FROM datastreams_proxy.list_consumers()}), '0', "b does not see a's consumers");
is(as_b(q{SELECT count(*) FROM datastreams_proxy.consumer_lag}), '0', "nor their lag");
is(as_b(q{SELECT * FROM datastreams_proxy.poll('all')}), 'ERROR P0002', "nor polls a's consumer");
is(as_b(qq{SELECT * FROM datastreams_proxy.ack('all', '$s[0]', 1)}), 'ERROR P0002', "nor acknowledges for it");
is(as_b(q{SELECT * FROM datastreams_proxy.drop_consumer('all')}), 'ERROR P0002', "nor drops it");
# The rows members lock on the proxy are the account's own.
is(as_a(q{SELECT count(*) FROM datastreams_proxy.consumer_streams WHERE consumer = 'all'}), '5',
	"the proxy has a lock row per stream a's members polled");
is(as_b(q{SELECT count(*) FROM datastreams_proxy.consumer_streams}), '0', 'b sees none of them');
is(as_b(qq{INSERT INTO datastreams_proxy.consumer_streams VALUES ('a', 'all', '$s[0]')}), 'ERROR 42501',
	"b cannot make one for a's consumer");
is(as_b(q{BEGIN; LOCK TABLE datastreams_proxy.consumer_streams IN SHARE MODE; COMMIT}), 'ERROR 42501',
	'nor lock the table');
is(as_b(q{SELECT name FROM datastreams_proxy.create_consumer('all')}), 'all', 'b has a consumer of the same name');
is(as_b(q{SELECT count(*) FROM datastreams_proxy.poll('all')}), '0', 'which polls b\'s streams only');
is(as_a(q{SELECT start FROM datastreams_proxy.get_consumer('all')}), 'earliest', "and leaves a's alone");

# Moving partition 3 (stream m, on shard1) to shard0: positions move too.
my $m = as_a(q{SELECT id FROM datastreams_proxy.create_stream('m', 'M', status => 'active', partition_hash => 3)});
is(as_a(qq{SELECT count(*) FROM datastreams_proxy.create_consumer('just_m', ARRAY['$m']::uuid[])}), '1',
	'a consumer of a stream on shard1');
as_a(qq{SELECT datastreams_proxy.ingest('$m', (SELECT jsonb_agg(jsonb_build_object('sequence', g)) FROM generate_series(1, 10) AS g))});
as_a(qq{SELECT datastreams_proxy.ack(c, '$m', 6) FROM unnest(ARRAY['all', 'just_m']) AS c});
my ($moved, $mout, $merr) = move_partition($shards[1], $shards[0], $proxy, 3);
ok($moved, 'move-partition.sh moves partition 3') or diag($mout . $merr);
is($proxy->safe_psql('postgres', "SELECT datastreams_proxy.shard_of('$m')"),
	shard_conninfo($shards[0]), 'the stream is on shard0 now');
is($shards[0]->safe_psql('postgres',
		"SELECT string_agg(consumer || ':' || acknowledged_sequence, ',' ORDER BY consumer) FROM datastreams.consumer_positions WHERE stream_id = '$m'"),
	'all:6,just_m:6', 'its positions moved with it');
is(as_a(qq{SELECT string_agg(sequence::text, ',' ORDER BY sequence) FROM unnest(ARRAY['all', 'just_m']) AS c, datastreams_proxy.poll(c) AS f WHERE f.stream_id = '$m'}),
	'7,7,8,8,9,9,10,10', 'both consumers continue after their acknowledged frame');
is(as_a(qq{SELECT string_agg(consumer || ':' || acknowledged_sequence || ':' || frames_behind, ',') FROM datastreams_proxy.consumer_lag WHERE stream_id = '$m'}),
	'all:6:4,just_m:6:4', 'consumer_lag through the proxy shows them once');
is(as_a(qq{SELECT datastreams_proxy.ack('just_m', '$m', 10)}), 't', 'and acknowledging moves them on the new shard');

# Retention on the shard: frames removed before they were acknowledged
# are counted there and announced by the proxy's poll.
as_a(qq{SELECT datastreams_proxy.ingest('$m', '[{"sequence": 11}, {"sequence": 12}, {"sequence": 13}]')});
$shards[0]->safe_psql('postgres', "DELETE FROM datastreams.frames WHERE stream_id = '$m' AND sequence IN (11, 12)");
my ($pout, $perr) = ('', '');
$proxy->psql('postgres', q{SELECT sequence FROM datastreams_proxy.poll('just_m')},
	stdout => \$pout, stderr => \$perr, extra_params => [ '-U', 'regress_tenant_a' ]);
is($pout, '13', 'poll returns the frame retention left');
like($perr, qr/WARNING:  consumer "just_m" missed 2 frames of stream \Q$m\E/,
	'with the WARNING of one node');
unlike($perr, qr/WARNING.*WARNING/s, 'once (the shard\'s own is not passed on)');
is(as_a(qq{SELECT frames_missed FROM datastreams_proxy.consumer_lag WHERE consumer = 'just_m'}), '2',
	'consumer_lag through the proxy counts them');

$_->stop for ($proxy, @shards);
done_testing();
