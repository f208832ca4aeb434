#-------------------------------------------------------------------------
#
# 050_metrics_exporter.pl
#	  contrib/prometheus-postgres-exporter/queries.yaml end to end: start
#	  prometheus-postgres-exporter on loopback against a test node, scrape
#	  its /metrics and find the stream_health series: all tenants' streams
#	  for a BYPASSRLS monitoring role, one account's streams for a role
#	  bound to that account.
#
#	  DATASTREAMS_TAP_PORT_BASE, when set, fixes the node's port (default: a
#	  free port); DATASTREAMS_EXPORTER_PORT the exporter's.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use FindBin;
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $exporter = '/usr/bin/prometheus-postgres-exporter';
if (!-x $exporter)
{
	BAIL_OUT("$exporter is missing (Debian package prometheus-postgres-exporter)") if $ENV{CI};
	plan skip_all => "$exporter is not installed";
}
my $queries = "$FindBin::RealBin/../../contrib/prometheus-postgres-exporter/queries.yaml";
ok(-f $queries, 'the queries file exists');

my $node = PostgreSQL::Test::Cluster->new('exporter',
	$ENV{DATASTREAMS_TAP_PORT_BASE} ? (port => $ENV{DATASTREAMS_TAP_PORT_BASE} + 3) : ());
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'datastreams'
log_min_messages = warning
});
$node->start;

my $A = '00000000-0000-4000-8000-0000000005e1';    # healthy, account a
my $L = '00000000-0000-4000-8000-0000000005e2';    # late, account a
my $B = '00000000-0000-4000-8000-0000000005e3';    # account b
$node->safe_psql('postgres', qq{
CREATE EXTENSION datastreams;
CREATE ROLE regress_exporter LOGIN BYPASSRLS;
CREATE ROLE regress_exporter_a LOGIN;
SELECT datastreams.create_account('regress_exp_a', 'regress_exporter_a');
SELECT datastreams.create_account('regress_exp_b');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms, frequency) VALUES
	('$A', 'regress_exp_a', 'healthy', 'OK', 'active', 100, '1 hour'),
	('$L', 'regress_exp_a', 'late', 'LATE', 'active', 100, NULL),
	('$B', 'regress_exp_b', 'of b', 'B', 'active', 0, NULL);
SET datastreams.account_id = 'regress_exp_a';
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms)
	SELECT '$A', n, 3 FROM generate_series(1, 10) AS n;
INSERT INTO datastreams.frames (stream_id, sequence, latency_ms)
	SELECT '$L', n, CASE WHEN n <= 3 THEN 500 ELSE 20 END FROM generate_series(1, 4) AS n;
SET datastreams.account_id = 'regress_exp_b';
INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('$B', 1);
});

# Start the exporter as $role, wait until a scrape shows $want; returns the
# scrape's text.
sub scrape_as
{
	my ($role, $want) = @_;
	my $port = $ENV{DATASTREAMS_EXPORTER_PORT} // PostgreSQL::Test::Cluster::get_free_port();
	my ($out, $err) = ('', '');
	local $ENV{DATA_SOURCE_NAME} = sprintf('host=%s port=%d user=%s dbname=postgres sslmode=disable',
		$node->host, $node->port, $role);
	my $h = IPC::Run::start(
		[
			$exporter, "--web.listen-address=127.0.0.1:$port",
			"--extend.query-path=$queries", '--disable-default-metrics',
			'--disable-settings-metrics', '--no-collector.database',
			'--no-collector.bgwriter', '--log.level=warn'
		],
		'>', \$out, '2>', \$err);

	my $http = HTTP::Tiny->new(timeout => 10);
	my $text = '';
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		my $res = $http->get("http://127.0.0.1:$port/metrics");
		if ($res->{success})
		{
			$text = $res->{content};
			last if $text =~ $want;
		}
		select(undef, undef, undef, 0.25);
	}
	$h->kill_kill;
	$h->finish;
	note("exporter stderr: $err") if $err ne '';
	return $text;
}

# The value of a series given by name and labels (in any order).
sub value_of
{
	my ($text, $name, %labels) = @_;
	for my $line (split /\n/, $text)
	{
		next unless $line =~ /^\Q$name\E\{([^}]*)\} (\S+)$/;
		my ($labels, $value) = ($1, $2);
		my %have = $labels =~ /(\w+)="([^"]*)"/g;
		next if grep { ($have{$_} // '') ne $labels{$_} } keys %labels;
		return $value;
	}
	return undef;
}

#
# A monitoring role that bypasses row-level security sees every stream
#
my $all = scrape_as('regress_exporter', qr/^datastreams_stream_health_healthy\{.*\Q$B\E.*$/m);
like($all, qr/^pg_up 1$/m, 'the exporter reached the node');
is(value_of($all, 'pg_exporter_user_queries_load_error'), '0', 'queries.yaml loads without error');
like($all, qr/^pg_exporter_last_scrape_error 0$/m, 'the last scrape had no error');

is(value_of($all, 'datastreams_stream_health_healthy', stream_id => $A, account_id => 'regress_exp_a'),
	'1', 'healthy stream: healthy 1');
is(value_of($all, 'datastreams_stream_health_healthy', stream_id => $L), '0',
	'3 of 4 frames late: healthy 0');
is(value_of($all, 'datastreams_stream_health_late_ratio', stream_id => $L), '0.75', 'late ratio');
is(value_of($all, 'datastreams_stream_health_frames_total', stream_id => $L, status => 'late'),
	'3', 'late frames');
is(value_of($all, 'datastreams_stream_health_frames_total', stream_id => $L, status => 'ok'),
	'1', 'ok frames');
is(value_of($all, 'datastreams_stream_health_frames_total', stream_id => $L, status => 'error'),
	'0', 'error frames');
is(value_of($all, 'datastreams_stream_health_latency_p50_seconds', stream_id => $A), '0.0035',
	'median latency from the histogram, in seconds');
is(value_of($all, 'datastreams_stream_health_sla_seconds', stream_id => $A), '0.1', 'SLA in seconds');
is(value_of($all, 'datastreams_stream_health_frequency_seconds', stream_id => $A), '3600',
	'frequency in seconds');
is(value_of($all, 'datastreams_stream_health_frequency_seconds', stream_id => $L), 'NaN',
	'no frequency: NaN');
is(value_of($all, 'datastreams_stream_health_last_sequence', stream_id => $A), '10',
	'last sequence');
is(value_of($all, 'datastreams_stream_health_active', stream_id => $B, account_id => 'regress_exp_b'),
	'1', 'the other account\'s stream is there too');

#
# A role bound to an account sees that account's streams only
#
my $mine = scrape_as('regress_exporter_a', qr/^datastreams_stream_health_healthy\{.*\Q$A\E.*$/m);
is(value_of($mine, 'datastreams_stream_health_healthy', stream_id => $A), '1',
	'bound role: its stream');
is(value_of($mine, 'datastreams_stream_health_healthy', stream_id => $B), undef,
	'bound role: not the other account\'s stream');
unlike($mine, qr/regress_exp_b/, 'bound role: no series of the other account at all');

$node->stop;
done_testing();
