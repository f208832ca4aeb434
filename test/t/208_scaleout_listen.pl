#-------------------------------------------------------------------------
#
# 208_scaleout_listen.pl
#	  datastreams-listen --proxy: one client follows streams on two shards,
#	  reading frames through the proxy as a tenant and LISTENing on the
#	  shards as a listen-only role.  Notifications are its only wake-up
#	  (--poll-interval 3600), so frames printed late or never mean it did
#	  not LISTEN on the right shard.
#
#	  1. 200 frames on four streams of two shards, with one shard restarted
#	     halfway: all 200 printed once and in order.
#	  2. A live move of a partition under a writer: every acknowledged frame
#	     printed once and in order, no gaps, and frames written after the
#	     move (on the new shard) printed too.
#
#	  Alongside 1, a second client consumes a durable consumer of s0 and s1
#	  through the proxy (--consumer): it prints their 110 frames once and
#	  in order, woken by the shards' notifications, also across the restart.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ListenHelper;
use ScaleoutHelper;

# Usage: --proxy takes the proxy's connection, which no other connection
# option may contradict, and --shard-conninfo needs it.
for my $case (
	[ [ '--proxy', 'dbname=x', '--dbname', 'dbname=y', '--all' ],
		qr/--dbname and --proxy cannot be used together/ ],
	[ [ '--proxy', 'dbname=x', '--all', 'dbname=y' ],
		qr/connection given both with --proxy and as argument/ ],
	[ [ '--shard-conninfo', 'user=l', '--all', 'dbname=y' ],
		qr/--shard-conninfo can only be used with --proxy/ ],
	[ [ '--proxy', 'dbname=x', '--shard-conninfo', 'nonsense', '--all' ],
		qr/invalid connection string/ ])
{
	my ($args, $message) = @$case;
	my ($uout, $uerr) = ('', '');
	IPC::Run::run([ listen_program(), @$args ], '>', \$uout, '2>', \$uerr);
	is($? >> 8, 2, "usage error exits 2: @$args");
	like($uerr, $message, "... saying so: @$args");
}

my @shards = (new_shard('shard0'), new_shard('shard1'));
my $proxy = new_proxy('proxy', 8, @shards);
add_tenants($proxy, 'datastreams_proxy');
$_->safe_psql('postgres', 'CREATE ROLE regress_listener LOGIN') for @shards;

# Partition = hash & 7, shard = partition % 2.  s0, s2 on shard0; s1, s3,
# m1, m2 (partition 3) and other (partition 5) on shard1.
my %id;
my %hash = (s0 => 0, s1 => 1, s2 => 2, s3 => 3, m1 => 11, m2 => 19, other => 5);
for my $name (sort keys %hash)
{
	$id{$name} = $proxy->safe_psql('postgres',
		"SELECT id FROM datastreams_proxy.create_stream('$name', 'L', partition_hash => $hash{$name})",
		extra_params => [ '-U', 'regress_tenant_a' ]);
}

my $dir = PostgreSQL::Test::Utils::tempdir;
my ($out, $err) = ("$dir/listen.out", "$dir/listen.err");
my ($cout, $cerr) = ("$dir/consumer.out", "$dir/consumer.err");
$proxy->safe_psql('postgres',
	"SELECT datastreams_proxy.create_consumer('c', ARRAY['$id{s0}', '$id{s1}']::uuid[])",
	extra_params => [ '-U', 'regress_tenant_a' ]);
my $cpid = spawn_listen(
	$cout, $cerr,
	'--proxy' => $proxy->connstr('postgres') . ' user=regress_tenant_a',
	'--shard-conninfo' => 'user=regress_listener',
	'--consumer' => 'c', '--poll-interval' => '3600', '--max-backoff' => '0.5');
my $pid = spawn_listen(
	$out, $err,
	'--proxy' => $proxy->connstr('postgres') . ' user=regress_tenant_a',
	'--shard-conninfo' => 'user=regress_listener',
	'--all', '--from' => '0', '--poll-interval' => '3600', '--max-backoff' => '0.5');

sub lines_of
{
	my ($name) = @_;
	return map { $_->{line} }
	  grep { defined $_->{frame} && $_->{frame}{stream_id} eq $id{$name} }
	  client_frames($out);
}

sub slurp_err
{
	return -e $err ? PostgreSQL::Test::Utils::slurp_file($err) : '';
}

# Frames $from .. $to to each stream through the proxy, each call retried
# until it is acknowledged: the proxy's connection to a restarted shard
# fails once before PL/Proxy reconnects.
sub write_frames
{
	my ($from, $to, @names) = @_;
	my $array = join ', ', map { "'$id{$_}'" } @names;
	$proxy->safe_psql(
		'postgres', qq{
DO \$\$
DECLARE
	s uuid;
BEGIN
	FOR seq IN $from .. $to LOOP
		FOREACH s IN ARRAY ARRAY[$array]::uuid[] LOOP
			FOR attempt IN 1 .. 100 LOOP
				BEGIN
					PERFORM datastreams_proxy.create_frame(s, seq, jsonb_build_object('n', seq));
					EXIT;
				EXCEPTION
					WHEN unique_violation THEN EXIT;
					WHEN OTHERS THEN PERFORM pg_sleep(0.05);
				END;
			END LOOP;
		END LOOP;
	END LOOP;
END
\$\$;},
		extra_params => [ '-U', 'regress_tenant_a' ]);
}

# Each stream's output is exactly its committed frames in order, on the
# shard that holds it now.
sub check_streams
{
	my ($label, $home, @names) = @_;
	for my $name (@names)
	{
		my @expected = frames_in_table($home->{$name}, $id{$name});
		ok( wait_until(sub { scalar(lines_of($name)) >= scalar(@expected) }, 30),
			"$label: $name printed within 30 s");
		check_delivery("$label: $name", [ lines_of($name) ], \@expected);
	}
}

# 1. 100 frames, a restart of shard1, 100 more.
my %home = map { $_ => $shards[ $hash{$_} & 1 ] } keys %hash;
write_frames(1, 25, qw(s0 s1 s2 s3));
ok(wait_until(sub { scalar(client_frames($out)) >= 100 }, 30),
	'the first 100 frames are printed, on notifications from both shards');

$shards[1]->restart;
ok( wait_until(sub { slurp_err() =~ /lost the connection to shard/ }, 30),
	'the client noticed that shard1 went away');
write_frames(26, 50, qw(s0 s1 s2 s3));
check_streams('across a restart of shard1', \%home, qw(s0 s1 s2 s3));
is(scalar(client_frames($out)), 200, '200 frames printed, 200 written');

# Frames on the restarted shard alone: only its notifications wake the
# consumer client.
write_frames(51, 60, qw(s1));
for my $name (qw(s0 s1))
{
	my @expected = frames_in_table($home{$name}, $id{$name});
	my $consumed = sub {
		map { $_->{line} }
		  grep { defined $_->{frame} && $_->{frame}{stream_id} eq $id{$name} }
		  client_frames($cout);
	};
	ok(wait_until(sub { scalar($consumed->()) >= scalar(@expected) }, 30),
		"consumer: $name printed within 30 s");
	check_delivery("consumer through the proxy: $name", [ $consumed->() ], \@expected);
}
is(stop_client($cpid, 'TERM'), 0, 'the consumer client exits 0 on SIGTERM');
note("the consumer client's stderr:\n" . PostgreSQL::Test::Utils::slurp_file($cerr));
like(slurp_err(), qr/could not connect to shard|lost the connection to shard/,
	'stderr says the shard connection was re-established');

# 2. A live move of partition 3 (s3, m1, m2) from shard1 to shard0 under a
# writer; "other" stays on shard1.
my ($writer, $werr) = start_writer($proxy, 'regress_tenant_a', 5,
	'serialization_failure', @id{qw(m1 m2 other)});
sleep 1;
my ($moved, $mout, $merr) = move_partition($shards[1], $shards[0], $proxy, 3);
ok($moved, 'move-partition.sh succeeds') or diag($mout . $merr);
$writer->finish;
ok(!$writer->result, 'the writer ends without an error other than 40001')
  or diag($$werr);
my $acked = writer_log($$werr)->{acked};
ok(scalar(@{ $acked->{$_} // [] }) > 20, "writer stream $_ had frames acknowledged")
  for 1 .. 3;

# After the move: frames that only a LISTEN on shard0 announces.
write_frames(51, 60, qw(s3));
for my $name (qw(m1 m2))
{
	$proxy->safe_psql('postgres',
		"SELECT datastreams_proxy.create_frame('$id{$name}', 1000000)",
		extra_params => [ '-U', 'regress_tenant_a' ]);
}

$home{$_} = $shards[0] for qw(s3 m1 m2);
check_streams('across a live move', \%home, qw(m1 m2 other s3));
for my $i (1 .. 3)
{
	my $name = (qw(m1 m2 other))[ $i - 1 ];
	my @printed = map { $_->{frame}{sequence} }
	  grep { defined $_->{frame} && $_->{frame}{stream_id} eq $id{$name} }
	  client_frames($out);
	my @acked = @{ $acked->{$i} // [] };
	is_deeply([ @printed[ 0 .. $#acked ] ], \@acked,
		"$name: every acknowledged frame printed once, in order, no gaps");
}
like(slurp_err(), qr/stream $id{m1} moved to shard/,
	'the client followed m1 to its new shard');
unlike(slurp_err(), qr/error:/, 'the client reported no error');

is(stop_client($pid, 'TERM'), 0, 'the client exits 0 on SIGTERM');
note("the client's stderr:\n" . slurp_err());
$_->stop for ($proxy, @shards);
done_testing();
