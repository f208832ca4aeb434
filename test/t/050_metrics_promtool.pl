#-------------------------------------------------------------------------
#
# 050_metrics_promtool.pl
#	  datastreams.metrics() is valid Prometheus text exposition: promtool
#	  check metrics accepts it (no error, no lint finding) for an
#	  administrator, a tenant and a role without an account, with label
#	  values that need escaping.  Concurrent writers (pgbench) are counted
#	  exactly, committed work only.  The server log gets one line per
#	  committed stream change, none per accepted frame, and -- with
#	  datastreams.log_rejected_frames -- one per rejected frame.
#
#	  DATASTREAMS_TAP_PORT_BASE, when set, fixes the node's port.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $promtool = '/usr/bin/promtool';
if (!-x $promtool)
{
	BAIL_OUT("$promtool is missing (Debian package prometheus)") if $ENV{CI};
	plan skip_all => "$promtool is not installed";
}

my $node = PostgreSQL::Test::Cluster->new('promtool',
	$ENV{DATASTREAMS_TAP_PORT_BASE} ? (port => $ENV{DATASTREAMS_TAP_PORT_BASE} + 4) : ());
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'datastreams'
max_connections = 40
});
$node->start;

my $odd = qq{odd \\ "account"\nwith ünïcödé};    # backslash, quotes, line feed
(my $odd_sql = $odd) =~ s/'/''/g;
my ($S1, $S2, $S3, $SP) = map { sprintf('00000000-0000-4000-8000-0000000005%s', $_) } qw(c1 c2 c3 c4);

$node->safe_psql('postgres', qq{
CREATE EXTENSION datastreams;
CREATE ROLE regress_prom_tenant LOGIN;
CREATE ROLE regress_prom_nobody LOGIN;
SELECT datastreams.create_account('regress_prom_a', 'regress_prom_tenant');
SELECT datastreams.create_account(E'${\ join('', map { $_ eq "\n" ? '\n' : $_ eq '\\' ? '\\\\' : $_ eq "'" ? "''" : $_ } split //, $odd) }');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms) VALUES
	('$S1', 'regress_prom_a', 's1', 'S1', 'active', 50),
	('$S2', 'regress_prom_a', 's2', 'S2', 'active', 0),
	('$SP', 'regress_prom_a', 'paused', 'P', 'paused', 0);
BEGIN;
INSERT INTO datastreams.streams (id, account_id, name, symbol) VALUES
	('00000000-0000-4000-8000-0000000005cf', 'regress_prom_a', 'rolled back', 'RB');
ROLLBACK;
SET datastreams.account_id = 'regress_prom_a';
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms, status)
	SELECT '$S1', n, n * 7, CASE WHEN n % 10 = 0 THEN 'error' ELSE 'ok' END FROM generate_series(1, 100) AS n;
UPDATE datastreams.streams SET sla_ms = 100 WHERE id = '$S2';
});
$node->safe_psql('postgres', qq{
INSERT INTO datastreams.streams (id, account_id, name, symbol, status)
	SELECT '$S3', id, 'odd', 'ODD', 'active' FROM datastreams.accounts WHERE id LIKE 'odd %';
SELECT set_config('datastreams.account_id', id, false) FROM datastreams.accounts WHERE id LIKE 'odd %';
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES ('$S3', 1, 70000);
});

# promtool check metrics on what a role gets from metrics(): returns the
# text, passes when promtool exits 0 and reports nothing
sub check_as
{
	my ($role, $what) = @_;
	my $text = $node->safe_psql('postgres', 'SELECT datastreams.metrics()',
		extra_params => [ '-U', $role ]);
	$text .= "\n";    # psql drops the last line feed
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ $promtool, 'check', 'metrics' ], '<', \$text, '>', \$out, '2>', \$err);
	ok($ok && $out eq '' && $err eq '', "promtool accepts metrics() for $what")
	  or diag("promtool: $out$err\n--- input ---\n$text");
	return $text;
}

my $admin = check_as('postgres', 'an administrator');
my $tenant = check_as('regress_prom_tenant', 'a tenant');
my $nobody = check_as('regress_prom_nobody', 'a role without an account');

like($admin, qr/^datastreams_streams_created_total\{account_id="odd \\\\ \\"account\\"\\nwith ünïcödé"\} 1$/m,
	'label values escaped: backslash, double quote, line feed');
like($admin, qr/^datastreams_frame_latency_seconds_bucket\{account_id="regress_prom_a",stream_id="$S1",le="0\.5"\} 71$/m,
	'cumulative bucket: 71 of 7..700 ms are <= 0.5 s');
like($admin, qr/^datastreams_frame_latency_seconds_sum\{account_id="regress_prom_a",stream_id="$S1"\} 35\.350$/m,
	'sum in seconds: 7 x 5050 ms');
like($admin, qr/^datastreams_frames_created_total\{account_id="regress_prom_a",stream_id="$S1",status="error"\} 10$/m,
	'error frames');
like($admin, qr/^datastreams_frames_created_total\{account_id="regress_prom_a",stream_id="$S1",status="late"\} 83$/m,
	'late frames (ok above sla_ms 50)');
like($admin, qr/^datastreams_streams_created_total\{account_id="regress_prom_a"\} 3$/m,
	'the rolled-back creation is not counted');
like($admin, qr/^datastreams_streams_updated_total\{account_id="regress_prom_a"\} 1$/m, 'updates');
unlike($tenant, qr/odd /, 'the tenant does not see the other account');
like($tenant, qr/stream_id="$S1"/, 'the tenant sees its stream');
unlike($tenant, qr/^datastreams_(notifications_skipped|untracked_frames|tracked_streams)/m,
	'the tenant gets no server-wide series');
unlike($nobody, qr/^datastreams_\S+ /m, 'a role without an account gets no sample at all');

#
# Concurrent writers: 4 clients x 50 transactions, each commits one frame
# and rolls one back
#
my $script = PostgreSQL::Test::Utils::tempdir() . '/frames.sql';
append_to_file($script, qq{
\\set latency random(40, 160)
INSERT INTO datastreams.frames (stream_id, latency_ms) VALUES ('$S2', :latency);
BEGIN;
INSERT INTO datastreams.frames (stream_id, latency_ms) VALUES ('$S2', 1);
ROLLBACK;
});
{
	local $ENV{PGOPTIONS} = '-c datastreams.account_id=regress_prom_a';
	$node->command_ok(
		[ 'pgbench', '-n', '-c', '4', '-j', '4', '-t', '50', '-f', $script, '-h', $node->host,
		  '-p', $node->port, 'postgres' ],
		'pgbench: concurrent writers');
}
my ($ok, $late) = $node->safe_psql('postgres',
	"SELECT frames_ok, frames_late FROM datastreams.stream_state WHERE stream_id = '$S2'") =~ /(\d+)\|(\d+)/;
is($ok + $late, 200, 'stream_state: 200 frames committed');
$admin = check_as('postgres', 'an administrator after concurrent writes');
my ($m_ok) = $admin =~ /^datastreams_frames_created_total\{[^}]*stream_id="$S2",status="ok"\} (\d+)$/m;
my ($m_late) = $admin =~ /^datastreams_frames_created_total\{[^}]*stream_id="$S2",status="late"\} (\d+)$/m;
my ($count) = $admin =~ /^datastreams_frame_latency_seconds_count\{[^}]*stream_id="$S2"\} (\d+)$/m;
is("$m_ok/$m_late", "$ok/$late", 'metrics agree with stream_state per status');
is($count, 200, 'histogram count: the committed frames only');

#
# Server log
#
my $log = slurp_file($node->logfile);
my @created = $log =~ /LOG:  datastreams: stream created stream_id=(\S+) account_id=/g;
is(join(',', sort @created), join(',', sort ($S1, $S2, $SP, $S3)),
	'one LOG line per committed stream creation, none for the rolled-back one');
like($log, qr/LOG:  datastreams: stream updated stream_id=$S2 account_id=regress_prom_a$/m,
	'the update is logged');
like($log, qr/LOG:  datastreams: stream created stream_id=$S3 account_id="odd \\\\ \\"account\\"\\nwith ünïcödé"$/m,
	'values with special characters are quoted');
unlike($log, qr/datastreams: frame/, 'no line per accepted frame');

# Rejected frames: nothing by default, one line each at the chosen level
my $log_offset = -s $node->logfile;
$node->psql('postgres', qq{
SET datastreams.account_id = 'regress_prom_a';
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('$SP', 1);
});
$log = substr(slurp_file($node->logfile), $log_offset);
unlike($log, qr/frame rejected/, 'log_rejected_frames = off: no line');

$log_offset = -s $node->logfile;
for my $insert ("('$SP', 1)", "('$S1', 1)")
{
	$node->psql('postgres', qq{
SET datastreams.log_rejected_frames = log;
SET datastreams.account_id = 'regress_prom_a';
INSERT INTO datastreams.frames (stream_id, sequence) VALUES $insert;
});
}
$log = substr(slurp_file($node->logfile), $log_offset);
like($log,
	qr/LOG:  datastreams: frame rejected stream_id=$SP account_id=regress_prom_a reason=stream_paused$/m,
	'a frame for a paused stream');
like($log,
	qr/LOG:  datastreams: frame rejected stream_id=$S1 account_id=regress_prom_a reason=sequence_out_of_order$/m,
	'a frame out of order');

$node->stop;
done_testing();
