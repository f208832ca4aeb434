# Pruning without preloading datastreams: pg_cron (postgresql-15-cron)
# schedules CALL datastreams.prune_all() and SELECT datastreams.prune(), as
# the README documents.  pg_cron 1.4 schedules by the minute, so this test
# waits for the next minute boundary (up to about 70 seconds).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pg_config = $ENV{PG_CONFIG} || 'pg_config';
my $pg_cron = `$pg_config --pkglibdir`;
chomp $pg_cron;
plan skip_all => 'pg_cron is not installed (Debian package postgresql-15-cron)'
  unless -f "$pg_cron/pg_cron.so";

my $node = PostgreSQL::Test::Cluster->new('pg_cron');
$node->init;
# pg_cron connects to the server like a client (cron.use_background_workers
# is off by default): through the node's Unix socket directory.
my $host = $node->host;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.host = '$host'
});
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'pg_cron', 'datastreams is not preloaded');

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION pg_cron;
CREATE EXTENSION datastreams;
CREATE ROLE regress_tenant;
SELECT datastreams.create_account('acme', 'regress_tenant');
});
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'datastreams prune worker'"),
	'0',
	'so there is no prune worker');

my $hour = $node->safe_psql('postgres',
	"SET ROLE regress_tenant; SELECT id FROM datastreams.create_stream('hour', 'H', retention => '1 hour')");
my $day = $node->safe_psql('postgres',
	"SET ROLE regress_tenant; SELECT id FROM datastreams.create_stream('day', 'D', retention => '1 day')");
$node->safe_psql(
	'postgres', qq{
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT '$hour', g, now() - interval '2 hours' FROM generate_series(1, 30) AS g;
INSERT INTO datastreams.frames (stream_id, sequence, created_at)
SELECT '$day', g, now() - interval '2 days' FROM generate_series(1, 20) AS g;
});

# The two documented forms, scheduled for the same minute
$node->safe_psql(
	'postgres', q{
SELECT cron.schedule('datastreams-prune-all', '* * * * *', 'CALL datastreams.prune_all()');
SELECT cron.schedule('datastreams-prune', '* * * * *', 'SELECT datastreams.prune()');
});

ok( $node->poll_query_until(
		'postgres', qq{
SELECT (SELECT count(*) FROM datastreams.frames WHERE stream_id = '$hour') = 1
   AND (SELECT count(*) FROM datastreams.frames WHERE stream_id = '$day') = 1}),
	'the scheduled jobs pruned both streams down to their latest frames');
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(DISTINCT j.jobname) = 2
  FROM cron.job_run_details AS d JOIN cron.job AS j USING (jobid)
 WHERE d.status = 'succeeded'}),
	'both jobs succeeded');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM cron.job_run_details WHERE status = 'failed'}),
	'0',
	'no job failed');
is( $node->safe_psql('postgres',
		"SET ROLE regress_tenant; SELECT sequence FROM datastreams.latest_frame('$hour')"),
	'30', 'latest_frame() still answers');

$node->stop;
done_testing();
