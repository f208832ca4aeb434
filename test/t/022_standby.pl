#-------------------------------------------------------------------------
#
# 022_standby.pl
#	  What datastreams does on a hot standby (issue 13, item 10): the read
#	  API works for tenants and sees what the primary committed; writes
#	  fail as read-only (25006); stream_health works and says everything
#	  but the latency percentiles; metrics() says, with 55000, that the
#	  primary counts; LISTEN is refused by PostgreSQL.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'datastreams'
log_min_messages = warning
});
$primary->start;
$primary->safe_psql('postgres', q{
CREATE EXTENSION datastreams;
CREATE ROLE regress_sb_tenant LOGIN;
SELECT datastreams.create_account('sb_a', 'regress_sb_tenant');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms, frequency) VALUES
	('00000000-0000-4000-8000-000000000e01', 'sb_a', 'one', 'ONE', 'active', 300, '1 hour');
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms)
SELECT '00000000-0000-4000-8000-000000000e01', g, g * 10 FROM generate_series(1, 20) AS g;
});

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

# a frame committed after the standby started reaches it too
$primary->safe_psql('postgres', q{
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms)
VALUES ('00000000-0000-4000-8000-000000000e01', 21, 500);
});
$primary->wait_for_catchup($standby);

sub as_tenant
{
	my ($node, $sql) = @_;
	return $node->psql('postgres', $sql, extra_params => [ '-U', 'regress_sb_tenant' ]);
}

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');

# the read API
my ($rc, $out, $err) = as_tenant($standby, q{
SELECT datastreams.current_account();
SELECT symbol FROM datastreams.get_stream('00000000-0000-4000-8000-000000000e01');
SELECT count(*) FROM datastreams.list_streams();
SELECT sequence, status FROM datastreams.latest_frame('00000000-0000-4000-8000-000000000e01');
SELECT count(*) FROM datastreams.list_frames('00000000-0000-4000-8000-000000000e01', 500);
SELECT count(*) FROM datastreams.frames_since('00000000-0000-4000-8000-000000000e01', 10);
});
is($rc, 0, 'the read API works on the standby') or diag $err;
is($out, "sb_a\nONE\n1\n21|late\n21\n11", '... and sees what the primary committed');

# writes are read-only errors
($rc, $out, $err) = as_tenant($standby,
	q{SELECT datastreams.create_frame('00000000-0000-4000-8000-000000000e01', 22)});
like($err, qr/cannot execute INSERT in a read-only transaction/, 'create_frame(): read-only');
($rc, $out, $err) = as_tenant($standby, q{\set VERBOSITY verbose
SELECT datastreams.update_stream('00000000-0000-4000-8000-000000000e01', '{"name": "x"}')});
like($err, qr/25006/, 'update_stream(): 25006');

# stream_health: counters, the latest frame and the health rules; the
# percentiles come from the primary's shared memory, so they are NULL here
($rc, $out, $err) = as_tenant($standby, q{
SELECT frames_total, frames_late, last_sequence, round(latency_mean_ms::numeric, 2), healthy, reason,
	   latency_p50_ms IS NULL AS no_p50
  FROM datastreams.stream_health});
is($rc, 0, 'stream_health works on the standby') or diag $err;
is($out, '21|1|21|123.81|t||t', '... with the counters and health of the primary, without percentiles');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM datastreams.stream_latency()'), '0',
	'stream_latency() has no rows on the standby');
isnt($primary->safe_psql('postgres', 'SELECT count(*) FROM datastreams.stream_latency()'), '0',
	'(it has on the primary)');

# metrics(): an error that says where to look
($rc, $out, $err) = $standby->psql('postgres', q{\set VERBOSITY verbose
SELECT datastreams.metrics()});
like($err, qr/55000: datastreams metrics are not collected on a standby/, 'metrics(): 55000 on the standby');
like($err, qr/HINT:  Read datastreams.metrics\(\) on the primary/, '... with a hint');
like($primary->safe_psql('postgres', 'SELECT datastreams.metrics()'),
	qr/datastreams_frames_created_total\{account_id="sb_a"/, 'metrics() on the primary');

# LISTEN: refused by PostgreSQL itself during recovery
($rc, $out, $err) = as_tenant($standby, q{LISTEN "datastreams_00000000-0000-4000-8000-000000000e01"});
like($err, qr/cannot execute LISTEN during recovery/, 'LISTEN is refused on a standby');

# after promotion the metrics count again
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
($rc, $out, $err) = as_tenant($standby,
	q{SELECT sequence FROM datastreams.create_frame('00000000-0000-4000-8000-000000000e01', 22)});
is($out, '22', 'promoted: frames are written');
like($standby->safe_psql('postgres', 'SELECT datastreams.metrics()'),
	qr/^datastreams_frames_created_total\{account_id="sb_a",stream_id="00000000-0000-4000-8000-000000000e01",status="ok"\} 1$/m,
	'promoted: metrics() counts from the promotion on');

$standby->stop;
$primary->stop;
done_testing();
