# ingest() of a million frames: a cancel stops it within
# moments, with 57014 and nothing written, and a whole call keeps the
# backend's private memory under twice the size of its JSON argument
# (frames are written batch by batch; the argument is the only thing that
# grows with the array).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $stream = '00000000-0000-4000-8000-000000000951';
my $frames = 1_000_000;

my $node = PostgreSQL::Test::Cluster->new('ingest');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'datastreams'\n");
$node->start;
$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION datastreams;
CREATE ROLE regress_ingest_tenant LOGIN;
SELECT datastreams.create_account('regress_ingest', 'regress_ingest_tenant');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status)
VALUES ('$stream', 'regress_ingest', 'bulk', 'B', 'active');
CREATE TABLE big AS
SELECT jsonb_agg(jsonb_build_object('payload', jsonb_build_object('v', g), 'latency_ms', g % 200) ORDER BY g) AS frames
  FROM generate_series(1, $frames) AS g;
GRANT SELECT ON big TO regress_ingest_tenant;
});
my $ingest = "SELECT datastreams.ingest('$stream', (SELECT frames FROM big))";

sub frames_stored
{
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM datastreams.frames WHERE stream_id = '$stream'");
}

# Cancel while the frames are being written
my $session = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $session->query_safe("SET ROLE regress_ingest_tenant; SELECT pg_backend_pid()");
$session->query_until(qr/started/, "\\echo started\n$ingest;\n");
ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'active' AND query LIKE 'SELECT datastreams.ingest%' FROM pg_stat_activity WHERE pid = $pid"),
	'ingest() is running');
usleep(500_000);
my $start = time();
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
$session->query('SELECT 1');
my $elapsed = time() - $start;
like($session->{stderr}, qr/canceling statement due to user request/, 'the call is cancelled');
$session->{stderr} = '';
cmp_ok($elapsed, '<', 0.5, sprintf('within moments (%.0f ms)', $elapsed * 1000));
is(frames_stored(), '0', 'nothing is written');

# A whole call: private memory at its peak (all it touched, less the shared
# buffers and the mapped files) against the argument
is($session->query_safe($ingest), $frames, 'a million frames in one call');
my $status = slurp_file("/proc/$pid/status");
my %kb = map { $status =~ /^$_:\s+(\d+) kB/m ? ($_ => $1) : () } qw(VmHWM RssFile RssShmem);
my $peak_private = ($kb{VmHWM} - $kb{RssFile} - $kb{RssShmem}) * 1024;
my $argument = $node->safe_psql('postgres', "SELECT pg_column_size(frames || '[]') FROM big");
cmp_ok($peak_private, '<=', 2 * $argument,
	sprintf('peak private memory %.0f MB for an argument of %.0f MB',
		$peak_private / 1048576, $argument / 1048576));
is(frames_stored(), $frames, 'all of them stored');
$session->quit;

$node->stop;
done_testing();
