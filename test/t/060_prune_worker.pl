# The prune workers (datastreams preloaded, datastreams.prune_interval = 1s):
# none in a database without the extension, quiet with the 1.0 SQL, prunes
# on schedule and logs only when it removed frames, obeys SIGHUP (interval 0
# pauses it, default_retention is reread), runs as datastreams.prune_role
# in the databases datastreams.database lists, ends on SIGTERM; prune() runs
# safely alongside writers and other pruners.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('prune_worker');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'datastreams'
datastreams.prune_interval = '1s'
});
$node->start;

# Number of prune workers running: "SELECT count(*) ... " . $workers
my $workers =
  "FROM pg_stat_activity WHERE backend_type = 'datastreams prune worker'";

# Text of the server log from $offset on
sub log_since
{
	my ($offset) = @_;
	return slurp_file($node->logfile, $offset);
}

sub log_size { return -s $node->logfile; }

# Run $sql, then give the worker time for a few runs
sub settle { usleep(3_500_000); }

sub reload_with
{
	my ($settings) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET $_") for @$settings;
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	usleep(1_500_000);    # let the worker see the SIGHUP and finish a run
}

# ---------------------------------------------------------------------------
# Quiet while there is nothing to do
# ---------------------------------------------------------------------------
my $offset = log_size();
settle();
unlike(log_since($offset), qr/ERROR|FATAL|datastreams prune worker/,
	'no extension in the database: nothing logged');
is($node->safe_psql('postgres', "SELECT count(*) $workers"), '0',
	'... and no prune worker');

$node->safe_psql('postgres', "CREATE EXTENSION datastreams VERSION '1.0'");
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 $workers"),
	'CREATE EXTENSION starts a prune worker in the database');
is( $node->safe_psql(
		'postgres',
		"SELECT datname, usename FROM pg_stat_activity WHERE backend_type = 'datastreams prune worker'"
	),
	'postgres|' . $node->safe_psql('postgres', "SELECT rolname FROM pg_authid WHERE oid = 10"),
	'it connects to its database as the bootstrap superuser');
$offset = log_size();
settle();
unlike(log_since($offset), qr/ERROR|FATAL|datastreams prune worker/,
	'extension at 1.0 (no prune()): the worker stays quiet');

$node->safe_psql('postgres', 'ALTER EXTENSION datastreams UPDATE');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'datastreams'"),
	$node->safe_psql('postgres', "SELECT default_version FROM pg_available_extensions WHERE name = 'datastreams'"),
	'extension updated to the default version');

# ---------------------------------------------------------------------------
# Pruning on schedule
# ---------------------------------------------------------------------------
$node->safe_psql(
	'postgres', q{
CREATE ROLE regress_tenant LOGIN;
SELECT datastreams.create_account('acme', 'regress_tenant');
});
my $hour = $node->safe_psql('postgres',
	"SET ROLE regress_tenant; SELECT id FROM datastreams.create_stream('hour', 'H', retention => '1 hour')");
my $inherit = $node->safe_psql('postgres',
	"SET ROLE regress_tenant; SELECT id FROM datastreams.create_stream('inherit', 'I')");

sub count_frames
{
	my ($stream) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM datastreams.frames WHERE stream_id = '$stream'");
}

sub add_old_frames
{
	my ($stream, $from, $to) = @_;
	$node->safe_psql('postgres',
		"INSERT INTO datastreams.frames (stream_id, sequence, created_at)
		 SELECT '$stream', g, now() - interval '2 days' FROM generate_series($from, $to) AS g");
}

$offset = log_size();
add_old_frames($hour, 1, 51);
add_old_frames($inherit, 1, 20);
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM datastreams.frames WHERE stream_id = '$hour'"),
	'the worker pruned the stream with a retention down to its latest frame');
$node->wait_for_log(qr/datastreams prune worker removed 50 frames\n.*DETAIL:  1 step in \d+\.\d+ s\./, $offset);
pass('one LOG line for the run that removed the frames');
is( $node->safe_psql('postgres',
		"SET ROLE regress_tenant; SELECT sequence FROM datastreams.latest_frame('$hour')"),
	'51', 'latest_frame() still answers');
is(count_frames($inherit), '20',
	'a stream without retention keeps everything (default_retention empty)');

$offset = log_size();
settle();
unlike(log_since($offset), qr/datastreams prune worker/,
	'runs that remove nothing write nothing to the log');

# ---------------------------------------------------------------------------
# SIGHUP: interval 0 pauses the worker, settings are reread
# ---------------------------------------------------------------------------
reload_with(["datastreams.prune_interval = 0"]);
add_old_frames($hour, 52, 61);
settle();
is(count_frames($hour), '11', 'prune_interval = 0 (after SIGHUP): nothing is pruned');

reload_with(["datastreams.prune_interval = '1s'", "datastreams.default_retention = '1 day'"]);
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM datastreams.frames WHERE stream_id = '$hour'"),
	'prune_interval back to 1s (after SIGHUP): the worker prunes again');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM datastreams.frames WHERE stream_id = '$inherit'"),
	'default_retention set in the configuration reaches the worker');

# ---------------------------------------------------------------------------
# prune() alongside writers and another pruner (worker paused)
# ---------------------------------------------------------------------------
reload_with(["datastreams.prune_interval = 0"]);
add_old_frames($hour, 62, 161);

my $pruner = $node->background_psql('postgres');
$pruner->query_safe('BEGIN');
is($pruner->query_safe('SELECT datastreams.prune()'), '100',
	'a pruner deletes 100 frames and keeps its transaction open');

my ($rc, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '5s'; SELECT datastreams.prune()");
is($out, '0', 'a second pruner skips the claimed stream without waiting');
is($err, '', '... and without an error');

($rc, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '5s'; SET ROLE regress_tenant;
	 INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('$hour', 162) RETURNING sequence");
is($out, '162', 'a writer appends to the stream being pruned without waiting');

($rc, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '5s'; SET ROLE regress_tenant;
	 SELECT count(*) FROM datastreams.list_frames('$hour', 500)");
is($out, '102', 'readers still see the frames the uncommitted prune deletes');

$pruner->query_safe('COMMIT');
$pruner->quit;
is(count_frames($hour), '2', 'after the commit: the old latest frame and the new one remain');

# A burst of writers and pruners together: every stream keeps a latest frame
# that its pointer names, and nothing fails.
$node->safe_psql('postgres', "UPDATE datastreams.streams SET retention = '1 second'");
reload_with(["datastreams.prune_interval = '1s'"]);
$node->pgbench(
	"--no-vacuum --client=4 --transactions=150",
	0,
	[qr{processed: 600/600}],
	[qr{^$}],
	'writers and pruners run together without errors',
	{
		'060_write_hour' => qq{
SET ROLE regress_tenant;
INSERT INTO datastreams.frames (stream_id, payload) SELECT '$hour', '{"v": 1}' FROM generate_series(1, 20);
},
		'060_write_inherit' => qq{
SET ROLE regress_tenant;
INSERT INTO datastreams.frames (stream_id, payload) SELECT '$inherit', '{"v": 1}' FROM generate_series(1, 20);
},
		'060_prune' => q{
RESET ROLE;
SELECT datastreams.prune();
}
	});
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM datastreams.stream_state AS st
 WHERE NOT EXISTS (SELECT FROM datastreams.frames AS f
                    WHERE f.id = st.latest_frame_id AND f.sequence = st.latest_sequence)
    OR st.latest_sequence > (SELECT max(f.sequence) FROM datastreams.frames AS f
                              WHERE f.stream_id = st.stream_id)}),
	'0',
	'every counted-through pointer names an existing frame, at most the highest');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM datastreams.stream_health AS h
 WHERE h.last_sequence IS DISTINCT FROM (SELECT max(f.sequence) FROM datastreams.frames AS f
                                          WHERE f.stream_id = h.stream_id)}),
	'0',
	'stream_health names the highest frame of every stream');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM datastreams.frames"),
	'the worker catches up: one frame per stream is left');

# ---------------------------------------------------------------------------
# datastreams.database and datastreams.prune_role (restart)
# ---------------------------------------------------------------------------
$node->safe_psql(
	'postgres', q{
CREATE DATABASE other;
CREATE ROLE regress_pruner LOGIN;
});
$node->safe_psql(
	'other', q{
CREATE EXTENSION datastreams;
SELECT datastreams.create_account('acme');
});
my $owner = $node->safe_psql('other',
	"SELECT extowner::regrole FROM pg_extension WHERE extname = 'datastreams'");
$node->safe_psql('postgres', "GRANT $owner TO regress_pruner");
my $other = $node->safe_psql('other',
	"SET datastreams.account_id = 'acme';
	 SELECT id FROM datastreams.create_stream('other', 'O', retention => '1 minute')");
$node->safe_psql('other',
	"INSERT INTO datastreams.frames (stream_id, sequence, created_at)
	 SELECT '$other', g, now() - interval '1 hour' FROM generate_series(1, 5) AS g");
$node->append_conf(
	'postgresql.conf', q{
datastreams.database = 'other'
datastreams.prune_role = 'regress_pruner'
});
$node->restart;
ok($node->poll_query_until('postgres',
		"SELECT datname || ' ' || usename FROM pg_stat_activity WHERE backend_type = 'datastreams prune worker'",
		'other regress_pruner'),
	'the worker connects to the database datastreams.database lists, as datastreams.prune_role');
is($node->safe_psql('postgres', "SELECT count(*) $workers"), '1',
	'no other database gets one');
ok($node->poll_query_until('other',
		"SELECT count(*) = 1 FROM datastreams.frames WHERE stream_id = '$other'"),
	'an administrator role that is not a superuser prunes (row-level security notwithstanding)');

# ---------------------------------------------------------------------------
# SIGTERM
# ---------------------------------------------------------------------------
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'datastreams prune worker'");
$offset = log_size();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 $workers"),
	'SIGTERM ends the worker');
like(log_since($offset), qr/terminating background worker "datastreams prune worker" due to administrator command/,
	'... through the standard interrupt handling');
$node->stop('fast');
pass('the server stops with the worker configured');
unlike(slurp_file($node->logfile), qr/PANIC|TRAP|terminated by signal/,
	'no crash in the server log');

done_testing();
