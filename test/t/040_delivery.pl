#-------------------------------------------------------------------------
#
# 040_delivery.pl
#	  End-to-end delivery through datastreams-listen: concurrent writers
#	  (pgbench) ingest into two streams with rolled-back transactions and
#	  savepoints, single frames and multi-row statements; the server is
#	  restarted while they write, and the client is killed with SIGKILL and
#	  started again from the last sequence it printed.  The client's output
#	  must be exactly the committed frames, each once, in sequence order per
#	  stream.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes qw(sleep);

use ListenHelper;

my $node = new_ds_node('delivery');
my $writer = 'regress_delivery_writer';    # bound to the account
my $app = 'regress_delivery_app';          # trusted, picks the account

$node->safe_psql(
	'postgres', qq{
CREATE ROLE $writer LOGIN;
CREATE ROLE $app LOGIN;
SELECT datastreams.create_account('acct', '$writer');
SELECT datastreams.trust_role('$app');
-- counts the transactions that roll back: sequences are not transactional
CREATE SEQUENCE public.regress_delivery_doomed;
GRANT USAGE ON SEQUENCE public.regress_delivery_doomed TO $writer;
});

my %stream;
for my $name (qw(A B))
{
	$stream{$name} = $node->safe_psql('postgres',
		"SELECT id FROM datastreams.create_stream('delivery $name', '$name', status => 'active')",
		extra_params => [ '-U', $writer ]);
}
my ($A, $B) = @stream{qw(A B)};
my %name_of = reverse %stream;

my $tmp = PostgreSQL::Test::Utils::tempdir;

# --- the writers' scripts ----------------------------------------------------
# Every transaction takes the stream locks in the order A, B, so concurrent
# writers cannot deadlock.  Sequences are left to the server (NULL: the
# current time in nanoseconds, above the stream's latest).  About one
# transaction in seven rolls back; its frames say "doomed".
my $rollback_or_commit = q{
\if :rb = 1
SELECT nextval('public.regress_delivery_doomed');
ROLLBACK;
\else
COMMIT;
\endif
};
my %script = (
	# one frame, one stream
	single => qq{
\\set s random(0, 1)
\\set rb random(1, 7)
BEGIN;
SELECT datastreams.create_frame(CASE WHEN :s = 0 THEN '$A'::uuid ELSE '$B'::uuid END,
	NULL, jsonb_build_object('client', :client_id, 'doomed', :rb = 1));
$rollback_or_commit},
	# one statement writing 20 to 150 frames to each stream: below and above
	# notify_frames_per_statement, so both one-by-one and batch notifications
	multi => qq{
\\set n random(20, 150)
\\set rb random(1, 7)
BEGIN;
INSERT INTO datastreams.frames (stream_id, payload)
SELECT v.s, jsonb_build_object('client', :client_id, 'i', g, 'doomed', :rb = 1)
  FROM (VALUES ('$A'::uuid, 1), ('$B'::uuid, 2)) AS v(s, o), generate_series(1, :n) AS g
 ORDER BY v.o, g;
$rollback_or_commit},
	# a savepoint rolled back between two kept frames
	savepoint => qq{
BEGIN;
SELECT datastreams.create_frame('$A', NULL, jsonb_build_object('client', :client_id, 'kept', 1));
SAVEPOINT s;
SELECT datastreams.create_frame('$B', NULL, jsonb_build_object('client', :client_id, 'doomed', true));
INSERT INTO datastreams.frames (stream_id, payload)
SELECT '$B', jsonb_build_object('client', :client_id, 'doomed', true) FROM generate_series(1, 5);
ROLLBACK TO SAVEPOINT s;
SELECT datastreams.create_frame('$B', NULL, jsonb_build_object('client', :client_id, 'kept', 2));
COMMIT;
},
	# bulk ingest() into one stream, autocommit
	ingest => qq{
\\set n random(1, 200)
SELECT datastreams.ingest('$B',
	(SELECT jsonb_agg(jsonb_build_object('payload', jsonb_build_object('client', :client_id, 'i', g)))
	   FROM generate_series(1, :n) AS g));
});
my @pgbench_files;
for my $s (sort keys %script)
{
	my $weight = { single => 20, multi => 2, savepoint => 2, ingest => 1 }->{$s};
	PostgreSQL::Test::Utils::append_to_file("$tmp/$s.sql", $script{$s});
	push @pgbench_files, '-f', "$tmp/$s.sql\@$weight";
}

# Four concurrent writers for $seconds at about 40 transactions a second.
# They give up when the server goes away (pgbench aborts its clients).
# Returns the pid of pgbench.
my $phase = 0;

sub start_writers
{
	my ($seconds) = @_;
	$phase++;
	my $log = "$tmp/pgbench.$phase.log";
	my $pid = fork;
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>', $log) or POSIX::_exit(127);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(127);
		exec('pgbench', '-n', '-h', $node->host, '-p', $node->port, '-U', $writer,
			'-c', '4', '-j', '2', '-T', $seconds, '-R', '40', @pgbench_files,
			'postgres');
		POSIX::_exit(127);
	}
	return $pid;
}

# Wait for pgbench to end, after sending it $signal if given; returns its
# wait status.
sub wait_writers
{
	my ($pid, $signal) = @_;
	kill $signal, $pid if defined $signal;
	waitpid($pid, 0);
	my $status = $?;
	note "pgbench phase $phase ended with wait status $status:\n"
	  . slurp_file("$tmp/pgbench.$phase.log");
	return $status;
}

sub frame_count
{
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM datastreams.frames WHERE stream_id IN ('$A', '$B')");
}

sub wait_for_more_frames
{
	my ($more) = @_;
	my $target = frame_count() + $more;
	ok(wait_until(sub { frame_count() >= $target }),
		"writers are writing (at least $target frames)");
}

sub last_sequences
{
	my ($file) = @_;
	my %last;
	$last{ $_->{frame}{stream_id} } = $_->{frame}{sequence}
	  for client_frames($file);
	return %last;
}

my @client_args = ('--account', 'acct', '--poll-interval', '1', '--max-backoff', '1');

# --- phase 1: the client follows both streams; the server restarts --------
# While the server restarts the client's role may not log in, and it stays
# locked out until the writers have committed more frames: the client can
# only get those by replaying after it reconnects.
my $out1 = "$tmp/listen.1.out";
my $err1 = "$tmp/listen.1.err";
my $client1 = start_client($node, $app, $out1, $err1,
	'--stream', $A, '--stream', $B, '--from', '0', @client_args);

my $writers = start_writers(120);
wait_for_more_frames(400);
# locked out only once it has connected (a first connection refused is final)
ok(wait_until(sub { scalar(client_frames($out1)) > 0 }), 'the client prints frames');
$node->safe_psql('postgres', "ALTER ROLE $app NOLOGIN");
$node->restart;
isnt(wait_writers($writers), 0, 'the restart interrupted the writers');
my $at_restart = frame_count();

# --- phase 2: writers again; the client is killed and started again -------
$writers = start_writers(120);
wait_for_more_frames(500);
$node->safe_psql('postgres', "ALTER ROLE $app LOGIN");
ok( wait_until(sub { slurp_file($err1) =~ /reconnected/ }),
	'the client reconnects after the restart once it may log in');
like(slurp_file($err1), qr/could not connect, retrying/,
	'... having been locked out for a while');
wait_for_more_frames(500);
is(stop_client($client1, 'KILL') & 127, 9, 'client killed with SIGKILL');

# Frames committed while no client runs reach the output only by the
# restarted client's replay.
wait_for_more_frames(500);

# The client takes one --from for all its streams; start one per stream from
# the last frame it printed of that stream.
my %last = last_sequences($out1);
note "last printed before the kill: "
  . join(', ', map { "$name_of{$_} $last{$_}" } sort keys %last);
my %client2;
for my $name (qw(A B))
{
	$client2{$name} = start_client($node, $app, "$tmp/listen.2$name.out",
		"$tmp/listen.2$name.err", '--stream', $stream{$name},
		'--from', $last{ $stream{$name} } // 0, @client_args);
}
# the restarted clients follow live writes for a while; then the writers die
wait_for_more_frames(500);
wait_writers($writers, 'KILL');

# --- phase 3: a last round, then everything must have been delivered ------
$writers = start_writers(5);
is(wait_writers($writers), 0, 'the last writers ran to completion');
cmp_ok(frame_count(), '>', $at_restart, 'frames were committed after the restart');
# the backends of killed writers may still be finishing a commit
ok( wait_until(
		sub {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM pg_stat_activity WHERE usename = '$writer'") eq '0';
		}),
	'no writer is connected any more');

my %want = map { $_ => [ frames_in_table($node, $stream{$_}) ] } qw(A B);
for my $name (qw(A B))
{
	my $last_committed = $want{$name}[-1] =~ /"sequence":(\d+)/ ? $1 : 'none';
	ok( wait_until(
			sub {
				my %l = last_sequences("$tmp/listen.2$name.out");
				($l{ $stream{$name} } // -1) eq $last_committed;
			}),
		"restarted client of stream $name caught up with sequence $last_committed");
	is(stop_client($client2{$name}, 'TERM'), 0,
		"restarted client of stream $name exits with 0 on SIGTERM");
}

my @before_kill = client_frames($out1);
my $doomed = $node->safe_psql('postgres',
	'SELECT last_value FROM public.regress_delivery_doomed');
note sprintf(
	"committed frames: A %d, B %d; printed before the kill: %d; rolled-back transactions: %d",
	scalar(@{ $want{A} }), scalar(@{ $want{B} }), scalar(@before_kill), $doomed);
cmp_ok($doomed, '>', 0, 'some writer transactions rolled back');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM datastreams.frames WHERE stream_id IN ('$A', '$B') AND payload \@> '{\"doomed\": true}'"
	),
	'0',
	'no frame of a rolled-back transaction or savepoint is stored');

for my $name (qw(A B))
{
	my @lines = (
		(map { $_->{line} } grep { ($_->{frame}{stream_id} // '') eq $stream{$name} } @before_kill),
		(map { $_->{line} } client_frames("$tmp/listen.2$name.out")));
	ok(@lines >= 1500, "stream $name: thousands of frames delivered (" . scalar(@lines) . ')');
	check_delivery("stream $name", \@lines, $want{$name});
}
is(scalar(grep { !exists $name_of{ $_->{frame}{stream_id} // '' } } @before_kill),
	0, 'the client printed frames of its two streams only');

note "stderr of $_:\n" . slurp_file($_)
  for ($err1, "$tmp/listen.2A.err", "$tmp/listen.2B.err");

$node->stop;
done_testing();
