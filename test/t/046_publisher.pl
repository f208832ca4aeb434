#-------------------------------------------------------------------------
#
# 046_publisher.pl
#	  The per-database publisher, the default path of the bus when the
#	  library is preloaded: it announces what writers commit with exactly
#	  the notifications a writer would send at commit; a stopped or killed
#	  publisher leaves no listener in silence (writers take over); a
#	  transaction may write any number of streams; the launcher serves a
#	  database created after the start and lets DROP DATABASE through.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use ListenHelper;

my $node = new_ds_node('publisher');
$node->append_conf('postgresql.conf', "datastreams.publisher_timeout = '500ms'\n");
$node->reload;

sub publisher_pid
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'datastreams publisher' AND datname = '$db'");
}

my $pid;
ok(wait_until(sub { ($pid = publisher_pid('postgres')) ne '' }),
	'a publisher runs in the database with the extension');
ok( wait_until(sub { $node->safe_psql('postgres', 'SHOW datastreams.notify_mode') eq 'publisher' }),
	'notify_mode says the publisher announces this database\'s frames');

$node->safe_psql(
	'postgres', q{
SELECT datastreams.create_account('acct');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('00000000-0000-4000-8000-00000000aaa1', 'acct', 'at commit', 'C', 'active'),
	('00000000-0000-4000-8000-00000000aaa2', 'acct', 'publisher', 'P', 'active');
});
my %name_of = (
	'00000000-0000-4000-8000-00000000aaa1' => 'commit',
	'00000000-0000-4000-8000-00000000aaa2' => 'publisher');

my $listener = $node->background_psql('postgres');
$listener->query_safe(q{LISTEN "datastreams_00000000-0000-4000-8000-00000000aaa1";
LISTEN "datastreams_00000000-0000-4000-8000-00000000aaa2";});

# Notifications received until $count have arrived (or the time is up), as
# [stream, payload text, sender pid, seconds since $since].
my @pending;
sub notes
{
	my ($count, $limit) = @_;
	my @got;
	my $deadline = time + ($limit // 30);
	while (@got < $count && time < $deadline)
	{
		my $out = $listener->query_safe('SELECT 1');
		for my $line (split /\n/, $out)
		{
			push @got, [ $1, $2, $3, time ]
			  if $line =~
			  /^Asynchronous notification "datastreams_([0-9a-f-]{36})" with payload "(.*)" received from server process with PID (\d+)\.$/;
		}
		sleep 0.02 if @got < $count;
	}
	return @got;
}

# One workload, written once through each path
sub workload
{
	my ($stream, $path_off) = @_;
	my $set = $path_off ? 'SET datastreams.notify_via_worker = off;' : '';
	my $n = $path_off ? 1 : 2;
	$node->safe_psql(
		'postgres', qq{
$set
INSERT INTO datastreams.frames (id, stream_id, sequence) VALUES ('00000000-0000-7000-800$n-000000000001', '$stream', 1);
BEGIN;
INSERT INTO datastreams.frames (id, stream_id, sequence, status) VALUES ('00000000-0000-7000-800$n-000000000002', '$stream', 2, 'error');
SAVEPOINT s;
INSERT INTO datastreams.frames (id, stream_id, sequence) VALUES ('00000000-0000-7000-800$n-000000000003', '$stream', 3);
ROLLBACK TO SAVEPOINT s;
INSERT INTO datastreams.frames (id, stream_id, sequence) VALUES ('00000000-0000-7000-800$n-000000000004', '$stream', 4);
COMMIT;
BEGIN;
INSERT INTO datastreams.frames (id, stream_id, sequence) VALUES ('00000000-0000-7000-800$n-000000000005', '$stream', 5);
ROLLBACK;
INSERT INTO datastreams.frames (stream_id, sequence) SELECT '$stream', g FROM generate_series(10, 210) AS g;
});
}

workload('00000000-0000-4000-8000-00000000aaa1', 1);
my @commit = notes(4);
workload('00000000-0000-4000-8000-00000000aaa2', 0);
my @published = notes(4);

sub normalized
{
	return join "\n", map {
		my $p = $_->[1];
		$p =~ s/00000000-0000-4000-8000-00000000aaa[12]/STREAM/g;
		$p =~ s/00000000-0000-7000-800[12]-/FRAME-/g;
		$p
	} @_;
}
is(scalar @commit, 4, 'the at-commit path: four notifications');
is(normalized(@published), normalized(@commit),
	'the publisher sends what a writer sends at commit, in the same order')
  or diag(normalized(@commit));
like(normalized(@commit), qr/"sequence": 4, "sequence_text": "4"/,
	'a frame rolled back to a savepoint is not announced, its successor is');
unlike(normalized(@commit), qr/"sequence": [35],/, 'rolled-back frames are never announced');
like(normalized(@commit), qr/"count": 201, "batch": true/, 'a bulk insert is one batch wake-up');
is(scalar(grep { $_->[2] eq $pid } @published), 4, 'the publisher sent them');

# Any number of streams in one transaction, on either path
$node->safe_psql(
	'postgres', q{
INSERT INTO datastreams.streams (account_id, name, symbol, status)
SELECT 'acct', 'many ' || g, 'M', 'active' FROM generate_series(1, 5000) AS g;
});
my ($ret, $stdout, $stderr);
for my $off (0, 1)
{
	my $set = $off ? 'SET datastreams.notify_via_worker = off;' : '';
	($ret, $stdout, $stderr) = $node->psql(
		'postgres', qq{$set
INSERT INTO datastreams.frames (stream_id, sequence)
SELECT id, 100 + $off FROM datastreams.streams WHERE name LIKE 'many %';});
	is($ret, 0, ($off ? 'at commit' : 'through the publisher') . ': one transaction writes 5000 streams')
	  or diag($stderr);
}
is($node->safe_psql('postgres',
		"SELECT count(*) FROM datastreams.frames f JOIN datastreams.streams s ON s.id = f.stream_id WHERE s.name LIKE 'many %'"),
	'10000', 'all their frames are stored');

# 100,000 streams in one transaction: past datastreams.max_stream_locks the
# transaction locks the frames table instead of filling the lock table
$node->safe_psql(
	'postgres', q{
INSERT INTO datastreams.streams (account_id, name, symbol, status)
SELECT 'acct', 'lots ' || g, 'L', 'active' FROM generate_series(1, 100000) AS g;
});
($ret, $stdout, $stderr) = $node->psql('postgres', q{
INSERT INTO datastreams.frames (stream_id, sequence)
SELECT id, 1 FROM datastreams.streams WHERE name LIKE 'lots %';});
is($ret, 0, 'one transaction writes 100,000 streams (max_locks_per_transaction 64)') or diag($stderr);
is($node->safe_psql('postgres', 'SHOW max_locks_per_transaction'), '64', 'with the default lock table');

# A stopped publisher: writers notice within publisher_timeout and notify
# themselves; the publisher takes over again when it resumes
kill 'STOP', $pid;
sleep 0.8;
my $t0 = time;
$node->safe_psql('postgres',
	"INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('00000000-0000-4000-8000-00000000aaa2', 1000)");
my @stopped = notes(1, 10);
kill 'CONT', $pid;
is(scalar @stopped, 1, 'a frame written while the publisher is stopped is announced');
ok(@stopped && $stopped[0][3] - $t0 < 1.0,
	sprintf('within a second (%.3f s)', @stopped ? $stopped[0][3] - $t0 : -1));
isnt(@stopped ? $stopped[0][2] : $pid, $pid, 'by the writer');

ok( wait_until(
		sub {
			$node->safe_psql('postgres',
				"INSERT INTO datastreams.frames (stream_id) VALUES ('00000000-0000-4000-8000-00000000aaa2')");
			my @n = notes(1, 2);
			return @n && $n[0][2] eq $pid;
		}),
	'after it resumes, the publisher announces again');

# A publisher that ends: writers notify meanwhile, the launcher restarts it
kill 'TERM', $pid;
ok(wait_until(sub { my $p = publisher_pid('postgres'); $p ne '' && $p ne $pid }),
	'the launcher starts a new publisher');
my $seq = $node->safe_psql('postgres',
	"INSERT INTO datastreams.frames (stream_id) VALUES ('00000000-0000-4000-8000-00000000aaa2') RETURNING sequence");
my @after = notes(1, 10);
like(@after ? $after[-1][1] : '', qr/"sequence": $seq,/, 'frames are announced across the restart');

# Databases come and go
$node->safe_psql('postgres', 'CREATE DATABASE later');
$node->safe_psql('later', 'CREATE EXTENSION datastreams');
ok(wait_until(sub { publisher_pid('later') ne '' }), 'a database that gets the extension after the start gets a publisher');
ok(wait_until(sub { $node->safe_psql('later', 'SHOW datastreams.notify_mode') eq 'publisher' }),
	'and its writers hand their frames to it');
$node->safe_psql('postgres', 'CREATE DATABASE plain');
sleep 1;
($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE later');
is($ret, 0, 'DROP DATABASE without FORCE works for a database with the extension') or diag($stderr);
($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE plain');
is($ret, 0, 'and for one without it') or diag($stderr);
$node->safe_psql('postgres', 'CREATE DATABASE gone');
$node->safe_psql('gone', 'CREATE EXTENSION datastreams');
ok(wait_until(sub { publisher_pid('gone') ne '' }), 'a publisher starts with CREATE EXTENSION');
$node->safe_psql('gone', 'DROP EXTENSION datastreams');
ok(wait_until(sub { publisher_pid('gone') eq '' }), 'and ends with DROP EXTENSION');

$listener->quit;
$node->stop;
done_testing();
