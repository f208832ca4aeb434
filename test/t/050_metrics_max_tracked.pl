#-------------------------------------------------------------------------
#
# 050_metrics_max_tracked.pl
#	  datastreams.max_tracked_streams = 2: what happens when the shared
#	  tables are full.  Nothing is evicted; committed frames of streams
#	  without an entry go to datastreams_untracked_frames_total, stream
#	  changes of accounts without one to
#	  datastreams_untracked_stream_changes_total (as do account ids of 256
#	  bytes or more); reset_metrics() makes room again.  Also: after
#	  errors in every kind of session the shared lock is still free.
#
#	  DATASTREAMS_TAP_PORT_BASE, when set, fixes the node's port.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('max_tracked',
	$ENV{DATASTREAMS_TAP_PORT_BASE} ? (port => $ENV{DATASTREAMS_TAP_PORT_BASE} + 2) : ());
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'datastreams'
datastreams.max_tracked_streams = 2
log_min_messages = warning
});
$node->start;

my ($S1, $S2, $S3, $SB, $SC, $SL) = map { sprintf('00000000-0000-4000-8000-0000000005%s', $_) }
  qw(b1 b2 b3 b4 b5 b6);
my $long = 'é' x 150;    # 150 characters, 300 bytes: too long to track

$node->safe_psql('postgres', qq{
CREATE EXTENSION datastreams;
SELECT datastreams.create_account('regress_max_a');
SELECT datastreams.create_account('regress_max_b');
SELECT datastreams.create_account('regress_max_c');
SELECT datastreams.create_account('$long');
});

sub metrics { return $node->safe_psql('postgres', 'SELECT datastreams.metrics()'); }

# The value of one series (exact name and labels), undef when absent.
sub value_of
{
	my ($series) = @_;
	my ($value) = metrics() =~ /^\Q$series\E (\S+)$/m;
	return $value;
}

sub frames
{
	my ($account, $stream, $from, $n) = @_;
	$node->safe_psql('postgres', qq{
SET datastreams.account_id = '$account';
INSERT INTO datastreams.frames (stream_id, sequence)
	SELECT '$stream', s FROM generate_series($from, $from + $n - 1) AS s;
});
}

is($node->safe_psql('postgres', 'SHOW datastreams.max_tracked_streams'), '2', 'the setting');
like(metrics(), qr/^datastreams_max_tracked_streams 2$/m, 'the gauge');

# Three streams of account a: the first two get entries
$node->safe_psql('postgres', qq{
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('$S1', 'regress_max_a', 's1', 'S1', 'active'),
	('$S2', 'regress_max_a', 's2', 'S2', 'active'),
	('$S3', 'regress_max_a', 's3', 'S3', 'active');
});
frames('regress_max_a', $S1, 1, 3);
frames('regress_max_a', $S2, 1, 4);
frames('regress_max_a', $S3, 1, 5);
is(value_of(qq{datastreams_frames_created_total{account_id="regress_max_a",stream_id="$S1",status="ok"}}),
	'3', 'first stream tracked');
is(value_of(qq{datastreams_frames_created_total{account_id="regress_max_a",stream_id="$S2",status="ok"}}),
	'4', 'second stream tracked');
unlike(metrics(), qr/\Q$S3\E/, 'third stream: no series');
is(value_of('datastreams_untracked_frames_total'), '5', 'its frames are counted as untracked');
is(value_of('datastreams_tracked_streams'), '2', 'two streams tracked');
is(value_of('datastreams_streams_created_total{account_id="regress_max_a"}'), '3',
	'its creation was counted: the account has an entry');

# Rolled-back frames of an untracked stream are not counted either
$node->safe_psql('postgres', qq{
SET datastreams.account_id = 'regress_max_a';
BEGIN;
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('$S3', 100);
ROLLBACK;
});
is(value_of('datastreams_untracked_frames_total'), '5', 'rolled back: still 5');

# The accounts table is full too (2 entries: a, b); c is untracked
$node->safe_psql('postgres', qq{
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('$SB', 'regress_max_b', 'sb', 'SB', 'active');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('$SC', 'regress_max_c', 'sc', 'SC', 'active');
UPDATE datastreams.streams SET description = 'changed' WHERE id = '$SC';
});
is(value_of('datastreams_streams_created_total{account_id="regress_max_b"}'), '1', 'account b tracked');
unlike(metrics(), qr/regress_max_c/, 'account c: no series');
is(value_of('datastreams_untracked_stream_changes_total'), '2',
	'account c: its creation and update counted as untracked');
frames('regress_max_b', $SB, 1, 2);
is(value_of('datastreams_untracked_frames_total'), '7', 'frames of b\'s stream: untracked (no room)');

# reset_metrics() makes room
$node->safe_psql('postgres', 'SELECT datastreams.reset_metrics()');
is(value_of('datastreams_tracked_streams'), '0', 'reset: no stream tracked');
is(value_of('datastreams_untracked_frames_total'), '0', 'reset: untracked frames zeroed');
frames('regress_max_a', $S3, 200, 1);
is(value_of(qq{datastreams_frames_created_total{account_id="regress_max_a",stream_id="$S3",status="ok"}}),
	'1', 'after the reset the third stream gets an entry');

# An account id of 256 bytes or more cannot be tracked, whatever the room
$node->safe_psql('postgres', qq{
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('$SL', '$long', 'long', 'LONG', 'active');
});
frames($long, $SL, 1, 3);
is(value_of('datastreams_untracked_stream_changes_total'), '1', 'long account id: creation untracked');
is(value_of('datastreams_untracked_frames_total'), '3', 'long account id: frames untracked');
is(value_of('datastreams_tracked_streams'), '1', 'long account id: no entry taken');

#
# No lock is left behind by sessions that failed: errors inside
# transactions that counted, rejected frames, a tenant calling
# reset_metrics(), a cancelled statement, a terminated backend.  Then
# reset_metrics() (exclusive lock) and a commit that creates an entry
# must still complete.
#
$node->safe_psql('postgres', 'CREATE ROLE regress_max_tenant LOGIN');
my ($ret, $stdout, $stderr) = $node->psql('postgres', qq{
SET datastreams.account_id = 'regress_max_a';
BEGIN;
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('$S1', 1000);
SELECT 1/0;
COMMIT;
});
like($stderr, qr/division by zero/, 'an error in a counting transaction');
($ret, $stdout, $stderr) = $node->psql('postgres', qq{
SET datastreams.account_id = 'regress_max_a';
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('$S1', 1001), ('$S1', 1001);
});
like($stderr, qr/already has a frame with sequence 1001/, 'a rejected frame');
($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT datastreams.reset_metrics()',
	extra_params => [ '-U', 'regress_max_tenant' ]);
like($stderr, qr/permission denied/, 'a tenant calling reset_metrics()');
($ret, $stdout, $stderr) = $node->psql('postgres', qq{
SET statement_timeout = '10ms';
SELECT datastreams.metrics() FROM generate_series(1, 1000000);
});
like($stderr, qr/canceling statement due to statement timeout/, 'metrics() cancelled');

my $bg = $node->background_psql('postgres');
$bg->query_safe(qq{SET datastreams.account_id = 'regress_max_a'; BEGIN;
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('$S1', 1002);});
my $pid = $bg->query_safe('SELECT pg_backend_pid()');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid, 10000)");
eval { $bg->quit };

my $done = $node->safe_psql('postgres', qq{
SET statement_timeout = '30s';
SELECT 'reset' FROM datastreams.reset_metrics();
SET datastreams.account_id = 'regress_max_a';
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('$S1', 1003);
SELECT 'done';
});
is($done, "reset\ndone", 'the lock is free: reset_metrics() and new entries still work');
is(value_of(qq{datastreams_frames_created_total{account_id="regress_max_a",stream_id="$S1",status="ok"}}),
	'1', 'only the committed frame counts');

$node->stop;
done_testing();
