#-------------------------------------------------------------------------
#
# 035_listen_failover.pl
#	  datastreams-listen follows a failover through a list of hosts.
#
#	  1. A primary and a synchronous hot standby; two clients, one on the
#	     list standby-first with no target_session_attrs (it must not settle
#	     on the standby, where LISTEN fails with 25006), one on the
#	     documented host=a,b target_session_attrs=read-write.  A writer runs
#	     while the primary is stopped and the standby promoted, and again on
#	     the new primary: both clients print every committed frame, once,
#	     in order.
#	  2. Frames lost: a second standby is cut off, frames are written and
#	     printed, the primary is stopped and the cut-off standby promoted.
#	     The bare client's position is now ahead of the server: it says so
#	     on stderr with the numbers and prints the new frames that reuse the
#	     lost sequences instead of skipping them.  The other client sleeps
#	     (SIGSTOP) until the new primary has written past its position: it
#	     sees that the frame there is not the one it printed and says so.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();

use ListenHelper;

my $role = 'regress_failover_owner';
my $node_a = new_ds_node('a', allows_streaming => 1);
$node_a->safe_psql(
	'postgres', qq{
CREATE ROLE $role LOGIN;
SELECT datastreams.create_account('acct', '$role');
});
my $S = $node_a->safe_psql('postgres',
	"SELECT id FROM datastreams.create_stream('failover', 'F', status => 'active')",
	extra_params => [ '-U', $role ]);

$node_a->backup('a_backup');
my $node_b = PostgreSQL::Test::Cluster->new('b');
$node_b->init_from_backup($node_a, 'a_backup', has_streaming => 1);
$node_b->start;
# synchronous: whatever a client saw committed on a is on b
$node_a->append_conf('postgresql.conf', "synchronous_standby_names = 'b'");
$node_a->reload;
my $node_c = PostgreSQL::Test::Cluster->new('c');    # set up in part 2

my $host = $node_a->host;
my $tmp = PostgreSQL::Test::Utils::tempdir;
my @args = ('--stream', $S, '--from', '0', '--poll-interval', '1',
	'--max-backoff', '0.5');
my %conninfo = (
	bare => sprintf("host=$host,$host,$host port=%d,%d,%d dbname=postgres user=$role",
		$node_b->port, $node_a->port, $node_c->port),
	read_write => sprintf(
		"host=$host,$host,$host port=%d,%d,%d dbname=postgres user=$role target_session_attrs=read-write",
		$node_a->port, $node_b->port, $node_c->port));
my %client;
$client{$_} = spawn_client($conninfo{$_}, "$tmp/$_.out", "$tmp/$_.err", @args)
  for sort keys %conninfo;

# pgbench writing single frames into $S on $node until it ends or its
# server goes away; returns the pid.
my $script = "$tmp/frame.sql";
PostgreSQL::Test::Utils::append_to_file($script,
	"INSERT INTO datastreams.frames (stream_id, payload) VALUES ('$S', jsonb_build_object('client', :client_id));\n");
my $writes = 0;
sub start_writer
{
	my ($node, @limit) = @_;
	my $log = "$tmp/pgbench." . ++$writes . ".log";
	my $pid = fork;
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>', $log) or POSIX::_exit(127);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(127);
		exec('pgbench', '-n', '-h', $node->host, '-p', $node->port, '-U', $role,
			'-c', '2', '-R', '100', @limit, '-f', $script, 'postgres');
		POSIX::_exit(127);
	}
	return $pid;
}

sub count_frames
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM datastreams.frames WHERE stream_id = '$S'");
}

# The client's lines for $S, and whether they end with $last_line.
sub lines_of
{
	my ($name) = @_;
	return map { $_->{line} } client_frames("$tmp/$name.out");
}

# Has the client exited?  (Then waiting for it is pointless.)
my %exit_status;
sub gone
{
	my ($name) = @_;
	$exit_status{$name} = $? if !exists $exit_status{$name}
	  && waitpid($client{$name}, POSIX::WNOHANG()) == $client{$name};
	return exists $exit_status{$name};
}

sub caught_up
{
	my ($name, $want) = @_;
	(my $last = $want->[-1]) =~ s/("sequence":(\d+))/$1,"sequence_text":"$2"/;
	wait_until(sub { my @l = lines_of($name); (@l && $l[-1] eq $last) || gone($name) });
	my @l = lines_of($name);
	return @l && $l[-1] eq $last;
}

# --- 1. failover with a writer running ---------------------------------------
my $writer = start_writer($node_a, '-T', '60');
ok(wait_until(sub { count_frames($node_a) >= 200 }), 'the writer writes on a');
$node_a->stop('immediate');
waitpid($writer, 0);
$node_b->promote;
$writer = start_writer($node_b, '-t', '100');
waitpid($writer, 0);
is($? >> 8, 0, 'the writer wrote on b, the new primary');

my @want = frames_in_table($node_b, $S);
for my $name (sort keys %client)
{
	ok(caught_up($name, \@want), "$name: caught up with the new primary")
	  or diag(slurp_file("$tmp/$name.err"));
	check_delivery("$name, across the failover", [ lines_of($name) ], \@want);
}
like(slurp_file("$tmp/bare.err"), qr/reconnected/, 'bare: reconnected after the failover');
unlike(slurp_file("$tmp/$_.err"), qr/error:|warning:/, "$_: no error nor warning")
  for sort keys %client;

# --- 2. an asynchronous standby that lost frames is promoted -----------------
$node_b->backup('b_backup');
$node_c->init_from_backup($node_b, 'b_backup', has_streaming => 1);
$node_c->start;
$node_b->wait_for_catchup('c');
$node_c->append_conf('postgresql.conf', "primary_conninfo = ''");
$node_c->reload;
ok( wait_until(sub { $node_c->safe_psql('postgres', 'SELECT count(*) FROM pg_stat_wal_receiver') eq '0' }),
	'c is cut off from b');

my $latest = $node_b->safe_psql('postgres',
	"SELECT max(sequence) FROM datastreams.frames WHERE stream_id = '$S'");
my $write_sql = sub {
	my ($node, $from, $to, $tag) = @_;
	$node->safe_psql('postgres',
		"INSERT INTO datastreams.frames (stream_id, sequence, payload)"
		  . " SELECT '$S', $latest + g, jsonb_build_object('$tag', g) FROM generate_series($from, $to) AS g",
		extra_params => [ '-U', $role ]);
};
$write_sql->($node_b, 1, 20, 'lost');
my @before = frames_in_table($node_b, $S);
for my $name (sort keys %client)
{
	ok(caught_up($name, \@before), "$name: printed the frames c never got");
}
# read_write sleeps through the failover: when it reconnects, c will have
# written past its position
kill 'STOP', $client{read_write};
$node_b->stop('immediate');
$node_c->promote;

my $ahead = $latest + 20;
my $warning =
  qr/warning: stream $S: the server's latest sequence $latest is below this client's position $ahead/;
wait_until(sub { slurp_file("$tmp/bare.err") =~ $warning || gone('bare') });
like(slurp_file("$tmp/bare.err"), $warning,
	'bare: warns with the stream, the server\'s latest and its position');
like(slurp_file("$tmp/bare.err"), qr/detail: Frames after sequence $latest were lost/,
	'... and says it continues after the server\'s latest');

# new frames on c reuse the lost sequences, and go beyond
$write_sql->($node_c, 1, 25, 'new');
my @new = grep { /"sequence":(\d+)/ && $1 > $latest } frames_in_table($node_c, $S);
is(scalar(@new), 25, 'new frames on c');
ok(caught_up('bare', \@new), 'bare: printed the new frames')
  or diag(slurp_file("$tmp/bare.err"));

kill 'CONT', $client{read_write};
$warning =
  qr/warning: stream $S: the frame at this client's position $ahead is not the one it printed/;
wait_until(sub { slurp_file("$tmp/read_write.err") =~ $warning || gone('read_write') });
like(slurp_file("$tmp/read_write.err"), $warning,
	'read_write, back after c overtook it: warns that the history diverged at its position');
ok(caught_up('read_write', \@new), 'read_write: printed the frames after its position');

my %expected = (
	bare => [ @before, @new ],    # re-synced from c's latest before c wrote
	read_write => [ @before, grep { /"sequence":(\d+)/ && $1 > $ahead } @new ]);
for my $name (sort keys %client)
{
	my @got = map { (my $l = $_) =~ s/,"sequence_text":"\d+"//; $l } lines_of($name);
	is_deeply(\@got, $expected{$name}, "$name: every frame of b, then the frames of c it could tell");
	ok(!gone($name), "$name: still running");
	is(stop_client($client{$name}, 'TERM'), 0, "$name: exits with 0 on SIGTERM");
}

note "stderr of $_:\n" . slurp_file("$tmp/$_.err") for sort keys %client;

$node_c->stop;
done_testing();
