#-------------------------------------------------------------------------
#
# 036_listen_consumer.pl
#	  datastreams-listen --consumer: two processes share a durable consumer
#	  of three streams while writers write; one is killed, later the server
#	  crashes, and each time the processes resume from the positions the
#	  server keeps.  Every committed frame is printed, in order per stream
#	  and process, and a frame is printed again exactly as often as it was
#	  printed but not acknowledged when a process or the server died.
#
#	  To be sure there are such frames, acknowledgements are held back
#	  (a SHARE lock on consumer_positions blocks ack() but not poll())
#	  until a member has printed a batch and waits to acknowledge it; the
#	  positions read then are those at the kill.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();

use ListenHelper;

my $role = 'regress_consumer_owner';
my $node = new_ds_node('consumer');
$node->safe_psql(
	'postgres', qq{
CREATE ROLE $role LOGIN;
SELECT datastreams.create_account('acct', '$role');
});
my @streams = map {
	$node->safe_psql('postgres',
		"SELECT id FROM datastreams.create_stream('s$_', 'S$_', status => 'active')",
		extra_params => [ '-U', $role ])
} 1 .. 3;
$node->safe_psql('postgres', "SELECT datastreams.create_consumer('shared', start => 'earliest')",
	extra_params => [ '-U', $role ]);

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $script = "$tmp/frame.sql";
PostgreSQL::Test::Utils::append_to_file($script,
	"\\set s random(1, 3)\nINSERT INTO datastreams.frames (stream_id, payload) VALUES ((ARRAY['"
	  . join("','", @streams)
	  . "']::uuid[])[:s], jsonb_build_object('client', :client_id));\n");

# pgbench writing single frames until it ends or the server goes away
sub start_writers
{
	my ($seconds) = @_;
	my $pid = fork;
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>>', "$tmp/pgbench.log") or POSIX::_exit(127);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(127);
		exec('pgbench', '-n', '-h', $node->host, '-p', $node->port, '-U', $role,
			'-c', '2', '-R', '100', '-T', $seconds, '-f', $script, 'postgres');
		POSIX::_exit(127);
	}
	return $pid;
}

# A member: its process and its output.  @runs lists every member process
# ever started, in order.
my @runs;
sub start_member
{
	my ($name) = @_;
	my $conninfo = $node->connstr('postgres') . " user=$role application_name=$name";
	push @runs,
	  {
		name => $name,
		out => "$tmp/$name.out",
		pid => spawn_client($conninfo, "$tmp/$name.out", "$tmp/$name.err",
			'--consumer', 'shared', '--batch-size', '50', '--poll-interval', '1',
			'--max-backoff', '0.5')
	  };
	return $runs[-1];
}

sub printed
{
	my ($run) = @_;
	return map { $_->{frame} } client_frames($run->{out});
}

sub positions
{
	my %pos = split /[|\n]/, $node->safe_psql('postgres',
		"SELECT stream_id, acknowledged_sequence FROM datastreams.consumer_positions WHERE consumer = 'shared'");
	return \%pos;
}

# Hold acknowledgements back until a member (of those named) has printed a
# batch and waits to acknowledge it.  Returns the locking session and the
# waiting member's name.
sub hold_acks
{
	my @names = @_;
	my $lock = $node->background_psql('postgres');
	$lock->query_safe('BEGIN; LOCK TABLE datastreams.consumer_positions IN SHARE MODE');
	my $waiting;
	wait_until(
		sub {
			$waiting = $node->safe_psql('postgres',
				"SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name IN ('"
				  . join("','", @names)
				  . "') ORDER BY 1 LIMIT 1");
			return $waiting ne '';
		});
	return ($lock, $waiting);
}

# Frames printed by @runs (their output so far) above the positions: those
# printed but not acknowledged.
sub unacknowledged
{
	my ($pos, @of) = @_;
	my %ids;
	for my $run (@of)
	{
		$ids{ $_->{id} } = 1
		  for grep { $_->{sequence} > $pos->{ $_->{stream_id} } } printed($run);
	}
	return \%ids;
}

my $writers = start_writers(600);
my %member = (m1 => start_member('m1'), m2 => start_member('m2'));
ok( wait_until(sub { scalar(printed($member{m1})) + scalar(printed($member{m2})) >= 300 }),
	'the members print frames');

# --- a member killed between printing a batch and acknowledging it ---------
my ($lock, $victim) = hold_acks('m1', 'm2');
ok($victim ne '', "a member ($victim) printed a batch and waits to acknowledge it");
my $at_kill = positions();
is(stop_client($member{$victim}{pid}, 'KILL') & 127, 9, "$victim killed with SIGKILL");
my $unacked_kill = unacknowledged($at_kill, $member{$victim});
# its server process notices once it stops waiting for the lock
$lock->query_safe('COMMIT');
$lock->quit;
ok( wait_until(sub { $node->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = '$victim'") eq '0' }),
	"$victim's transaction ended without acknowledging");
my $survivor = $victim eq 'm1' ? 'm2' : 'm1';
$member{$victim} = start_member("${victim}b");

my $before = scalar(map { printed($_) } @runs);
ok(wait_until(sub { scalar(map { printed($_) } @runs) >= $before + 300 }),
	'the members go on after the kill');

# --- the server crashes while members wait to acknowledge ----------------
($lock, my $waiting) = hold_acks(map { $_->{name} } values %member);
ok($waiting ne '', "a member ($waiting) waits to acknowledge when the server crashes");
my $at_crash = positions();
$node->stop('immediate');
eval { $lock->quit };
waitpid($writers, 0);
my $unacked_crash = unacknowledged($at_crash, values %member);
$node->start;

$writers = start_writers(3);
waitpid($writers, 0);
my %committed = map { my $f = decode($_); $f->{id} => $_ } map { frames_in_table($node, $_) } @streams;
ok( wait_until(
		sub {
			my %seen = map { $_->{id} => 1 } map { printed($_) } @runs;
			return !grep { !$seen{$_} } keys %committed;
		}),
	'every committed frame is printed (' . scalar(keys %committed) . ')');
for my $name (sort keys %member)
{
	is(stop_client($member{$name}{pid}, 'TERM'), 0, "$member{$name}{name} exits with 0 on SIGTERM");
}

sub decode { return JSON::PP::decode_json($_[0]) }

# --- what was printed --------------------------------------------------------
my (%count, $wrong_line, $out_of_order);
$wrong_line = 0;
$out_of_order = 0;
for my $run (@runs)
{
	my (%last, %seen);
	for my $line (map { $_->{line} } client_frames($run->{out}))
	{
		my $f = decode($line);
		(my $bare = $line) =~ s/,"sequence_text":"\d+"//;
		$wrong_line++ unless defined $committed{ $f->{id} } && $committed{ $f->{id} } eq $bare;
		$count{ $f->{id} }++;
		next if $seen{ $f->{id} }++;    # printed again by this process after the crash
		$out_of_order++ if ($last{ $f->{stream_id} } // 0) >= $f->{sequence};
		$last{ $f->{stream_id} } = $f->{sequence};
	}
	ok(scalar(printed($run)) > 0, "$run->{name} printed frames");
}
is($wrong_line, 0, 'every line is a committed frame, as row_to_json with sequence_text');
is($out_of_order, 0, 'each process prints every stream in ascending order');

my $dups_kill = scalar(keys %$unacked_kill);
my $dups_crash = scalar(keys %$unacked_crash);
note "printed but not acknowledged: $dups_kill at the member kill, $dups_crash at the server crash";
ok($dups_kill > 0 && $dups_crash > 0, 'both deaths left printed frames unacknowledged');
my @wrong = grep {
	$count{$_} != 1 + ($unacked_kill->{$_} // 0) + ($unacked_crash->{$_} // 0)
} keys %committed;
is(scalar(@wrong), 0,
	'each frame printed once, plus once per death that left it printed but not acknowledged');
is( scalar(grep { $count{$_} > 1 } keys %count),
	scalar(keys %{ { %$unacked_kill, %$unacked_crash } }),
	'duplicates are exactly those frames');

note "stderr of $_->{name}:\n" . slurp_file("$tmp/$_->{name}.err") for @runs;
$node->stop;
done_testing();
