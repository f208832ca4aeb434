#-------------------------------------------------------------------------
#
# 050_metrics_no_preload.pl
#	  Without shared_preload_libraries: metrics() and reset_metrics() fail
#	  with 55000 and a HINT, stream_latency() returns nothing, and the rest
#	  keeps working -- frames, stream_health (without percentiles), the
#	  structured logs.  Settings written in postgresql.conf before the
#	  library is loaded keep their values when it loads.  Then the same node
#	  with the library preloaded has metrics.
#
#	  DATASTREAMS_TAP_PORT_BASE, when set, fixes the node's port.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('no_preload',
	$ENV{DATASTREAMS_TAP_PORT_BASE} ? (port => $ENV{DATASTREAMS_TAP_PORT_BASE} + 1) : ());
$node->init;
$node->append_conf('postgresql.conf', qq{
datastreams.log_stream_changes = warning
datastreams.health_late_ratio_threshold = 0.5
});
$node->start;

my $S = '00000000-0000-4000-8000-0000000005a1';
$node->safe_psql('postgres', qq{
CREATE EXTENSION datastreams;
SELECT datastreams.create_account('regress_np_a');
});

# psql with the SQLSTATE in error messages; returns (stdout, stderr)
sub run_sql
{
	my ($sql) = @_;
	my ($out, $err);
	$node->psql('postgres', "\\set VERBOSITY verbose\n$sql", stdout => \$out, stderr => \$err);
	return ($out, $err);
}

#
# The metrics functions explain what is missing
#
for my $fn ('datastreams.metrics()', 'datastreams.reset_metrics()')
{
	my (undef, $err) = run_sql("SELECT $fn");
	like($err, qr/ERROR:  55000: datastreams metrics are not enabled/, "$fn: 55000");
	like($err,
		qr/HINT:  Add datastreams to shared_preload_libraries in postgresql.conf and restart the server\./,
		"$fn: the HINT says how to enable them");
}
my ($count) = run_sql('SELECT count(*) FROM datastreams.stream_latency()');
is($count, '0', 'stream_latency() returns no rows');
my (undef, $err) = run_sql('SHOW datastreams.max_tracked_streams');
like($err, qr/unrecognized configuration parameter "datastreams.max_tracked_streams"/,
	'max_tracked_streams exists only when preloaded');

#
# Everything else works: streams, frames, stream_health, logs
#
(my $out, $err) = run_sql(qq{
SET datastreams.account_id = 'regress_np_a';
INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms)
	VALUES ('$S', 'regress_np_a', 'np', 'NP', 'active', 100);
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES ('$S', 1, 10), ('$S', 2, 20), ('$S', 3, 300);
SELECT frames_total, frames_late, latency_p50_ms IS NULL, latency_p99_ms IS NULL, latency_mean_ms, healthy
  FROM datastreams.stream_health WHERE stream_id = '$S';
SHOW datastreams.log_stream_changes;
SHOW datastreams.health_late_ratio_threshold;
});
is($out, "3|1|t|t|110|t\nwarning\n0.5",
	'stream_health without percentiles; settings from postgresql.conf kept (threshold 0.5: healthy)');
like($err, qr/WARNING:  01000: datastreams: stream created stream_id=$S account_id=regress_np_a/,
	'the stream change is logged at the configured level');
unlike(slurp_file($node->logfile), qr/invalid configuration parameter name "datastreams\./,
	'no setting was dropped when the library loaded');

#
# Preloaded, the same node has metrics
#
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'datastreams'\n");
$node->restart;
$node->safe_psql('postgres', qq{
SET datastreams.account_id = 'regress_np_a';
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms) VALUES ('$S', 4, 10);
});
like(
	$node->safe_psql('postgres', 'SELECT datastreams.metrics()'),
	qr/^datastreams_frames_created_total\{account_id="regress_np_a",stream_id="$S",status="ok"\} 1$/m,
	'preloaded: metrics() counts the frames committed since the start');
is($node->safe_psql('postgres', "SELECT latency_p50_ms IS NOT NULL FROM datastreams.stream_health WHERE stream_id = '$S'"),
	't', 'preloaded: stream_health has percentiles');

$node->stop;
done_testing();
