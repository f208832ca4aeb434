#-------------------------------------------------------------------------
#
# 045_notify_worker.pl
#	  Live fan-out through the notify worker (datastreams.notify_via_worker):
#	  writers hand committed streams over at commit and the worker, not the
#	  writer, publishes one wake-up per stream and batch; rolled-back frames
#	  are never announced; the counts announced add up to the frames
#	  committed; datastreams-listen still prints every committed frame once,
#	  in order; with the setting off, writers notify themselves again.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use FindBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use ListenHelper;

my $node = new_ds_node('notify_worker');
my $owner = 'regress_worker_owner';

$node->safe_psql(
	'postgres', qq{
CREATE ROLE $owner LOGIN;
SELECT datastreams.create_account('acct', '$owner');
ALTER SYSTEM SET datastreams.notify_via_worker = on;
SELECT pg_reload_conf();
});

my $worker_pid;
ok( wait_until(
		sub {
			$worker_pid = $node->safe_psql('postgres',
				"SELECT pid FROM pg_stat_activity WHERE backend_type = 'datastreams notify worker'"
			);
			return $worker_pid ne '';
		}),
	'the notify worker runs, connected to datastreams.database');

sub owner_sql
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => [ '-U', $owner ]);
}

my $S = owner_sql(
	"SELECT id FROM datastreams.create_stream('fan-out', 'fan', status => 'active')");
my $T = owner_sql(
	"SELECT id FROM datastreams.create_stream('other', 'oth', status => 'active')");

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $client_out = "$tmp/listen.out";
my $client = start_client($node, $owner, $client_out, "$tmp/listen.err",
	'--stream', $S, '--stream', $T, '--from', '0', '--poll-interval', '30');

my $listener = $node->background_psql('postgres', extra_params => [ '-U', $owner ]);
$listener->query_safe(qq{LISTEN "datastreams_$S"; LISTEN "datastreams_$T";});

# Notifications received until one on $stream announces $sequence, as
# [stream, decoded payload, sender pid].
sub notes_until
{
	my ($stream, $sequence) = @_;
	my @notes;
	my $done = 0;
	my $ok = wait_until(
		sub {
			my $out = $listener->query_safe('SELECT 1');
			for my $line (split /\n/, $out)
			{
				next
				  unless $line =~
				  /^Asynchronous notification "datastreams_([0-9a-f-]{36})" with payload "(.*)" received from server process with PID (\d+)\.$/;
				my ($sid, $payload, $pid) = ($1, $2, $3);
				my $decoded = decode_json($payload);
				push @notes, [ $sid, $decoded, $pid ];
				$done = 1 if $sid eq $stream && $decoded->{sequence} == $sequence;
			}
			return $done;
		});
	die "no notification for sequence $sequence of stream $stream" unless $ok;
	return @notes;
}

# --- one committed frame: a wake-up sent by the worker, not the writer ----
my $writer_pid = owner_sql(
	"SELECT pg_backend_pid() FROM datastreams.create_frame('$S', 1, '{\"p\": 1}', 5)");
my @notes = notes_until($S, 1);
is(scalar(@notes), 1, 'one committed frame: one notification');
is_deeply(
	$notes[0][1],
	{ stream_id => $S, sequence => 1, first_sequence => 1, count => 1, batch => JSON::PP::true },
	'the notification is a per-stream wake-up');
is($notes[0][2], $worker_pid, 'sent by the notify worker');
isnt($notes[0][2], $writer_pid, 'not by the writer');

# --- rolled back: never announced ------------------------------------------
owner_sql(
	"BEGIN; SELECT datastreams.create_frame('$S', 2); ROLLBACK; SELECT datastreams.create_frame('$S', 3);"
);
@notes = notes_until($S, 3);
is_deeply([ map { $_->[1]{sequence} } @notes ], [3],
	'a rolled-back frame is never announced');
is($notes[0][1]{count}, 1, '... and not counted');

# --- one transaction, two streams, many frames -----------------------------
owner_sql(
	"BEGIN; INSERT INTO datastreams.frames (stream_id, sequence) SELECT '$S', g FROM generate_series(10, 509) g;"
	  . " SELECT datastreams.create_frame('$T', 7); COMMIT;");
@notes = notes_until($S, 509);
my %by_stream = map { $_->[0] => $_->[1] } @notes;
is_deeply(
	$by_stream{$S},
	{ stream_id => $S, sequence => 509, first_sequence => 10, count => 500, batch => JSON::PP::true },
	'500 frames of one transaction: one wake-up with the count');
@notes = (@notes, notes_until($T, 7)) unless $by_stream{$T};
%by_stream = map { $_->[0] => $_->[1] } @notes;
is($by_stream{$T}{sequence}, 7, 'the other stream of the transaction gets its own wake-up');

# --- concurrent single-frame writers: the counts add up --------------------
my $script = "$tmp/one_frame.sql";
open(my $fh, '>', $script) or die;
print $fh "INSERT INTO datastreams.frames (stream_id) VALUES ('$S');\n";
close $fh;
$node->command_ok(
	[
		'pgbench', '--no-vacuum', '--client=4', '--transactions=100',
		'-f', $script, '-U', $owner, 'postgres'
	],
	'400 single-frame transactions from 4 writers');
my $last = owner_sql("SELECT max(sequence) FROM datastreams.frames WHERE stream_id = '$S'");
@notes = notes_until($S, $last);
my $counted = 0;
$counted += $_->[1]{count} for grep { $_->[0] eq $S } @notes;
is($counted, 400, 'the wake-ups count exactly the 400 committed frames');
ok(scalar(@notes) <= 400, 'in at most as many notifications (' . scalar(@notes) . ')');
ok(!(grep { $_->[2] ne $worker_pid } @notes), 'all sent by the worker');

# --- the client prints every committed frame once, in order ----------------
for my $stream ($S, $T)
{
	my @expected = frames_in_table($node, $stream);
	ok( wait_until(
			sub {
				my @got = grep { $_->{frame} && $_->{frame}{stream_id} eq $stream }
				  client_frames($client_out);
				return scalar(@got) >= scalar(@expected);
			}),
		"datastreams-listen caught up on $stream");
	my @lines = map { $_->{line} }
	  grep { $_->{frame} && $_->{frame}{stream_id} eq $stream } client_frames($client_out);
	check_delivery("worker mode, $stream", \@lines, \@expected);
}

# --- with the setting off, the writer notifies itself, per frame ----------
$writer_pid = $node->safe_psql(
	'postgres',
	"SET datastreams.notify_via_worker = off; SET datastreams.account_id = 'acct';"
	  . " SELECT pg_backend_pid() FROM datastreams.create_frame('$S', 9000000000000000000);");
@notes = notes_until($S, 9000000000000000000);
is($notes[-1][2], $writer_pid, 'notify_via_worker = off: the writer notifies');
ok(exists $notes[-1][1]{payload}, '... with the per-frame payload');

$listener->quit;
stop_client($client, 'TERM');
$node->stop;
done_testing();
