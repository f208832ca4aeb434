#-------------------------------------------------------------------------
#
# 140_http_metrics.pl
#	  The metrics listener of datastreams-http (--metrics-listen): GET
#	  /metrics serves datastreams.metrics() and the gateway's own series,
#	  valid for promtool; what the database returns depends on the
#	  --metrics-dbname role; with the database down the gateway's series
#	  are still served (datastreams_http_database_up 0); GET /healthz;
#	  nothing else is served there, and /metrics is not on the API address.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use IPC::Run ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use HttpHelper;

my $promtool = '/usr/bin/promtool';
BAIL_OUT("$promtool is missing (Debian package prometheus)") unless -x $promtool;

my $node = new_gateway_node('http_metrics');
my $token = make_token($node, 'regress_http_a');
my $gw = start_gateway($node, metrics => 1);
my $api = "$gw->{url}/accounts/regress_http_a/datastreams";

sub promtool_ok
{
	my ($text, $what) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ $promtool, 'check', 'metrics' ], '<', \$text, '>', \$out, '2>', \$err);
	ok($ok && $out eq '' && $err eq '', "promtool accepts $what") or diag("$out$err");
}

my $S = http('POST', "$api/streams", token => $token, body => '{"name": "m", "symbol": "m", "status": "active"}')->{json}{id};
http('POST', "$api/streams/$S/frames", token => $token, body => '{"payload": {}, "latency_ms": 20}') for 1 .. 3;
http('GET', "$api/streams/$S/nope", token => $token);
my $sse = sse_start("$api/streams/$S/events", token => $token);
wait_until(sub { HttpHelper::slurp($sse->{file}) =~ /retry/ });

my $r = http('GET', "$gw->{metrics_url}/metrics");
is($r->{status}, 200, 'GET /metrics on the metrics listener: 200');
is($r->{headers}{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8', 'the Prometheus text format');
promtool_ok($r->{body}, 'the metrics (as the superuser: every series)');
like($r->{body},
	qr/^datastreams_frames_created_total\{account_id="regress_http_a",stream_id="$S",status="ok"\} 3$/m,
	'datastreams.metrics() counts the 3 frames posted through the gateway');
like($r->{body}, qr/^datastreams_http_requests_total\{route="frames",status="201"\} 3$/m,
	"the gateway's requests by route and status");
like($r->{body}, qr/^datastreams_http_requests_total\{route="unknown",status="404"\} 1$/m, 'unknown routes too');
like($r->{body}, qr/^datastreams_http_request_duration_seconds_count \d+$/m, 'the request duration histogram');
like($r->{body}, qr/^datastreams_http_events_clients 1$/m, 'one open event stream');
like($r->{body}, qr/^datastreams_http_pool_connections 2$/m, 'both pool connections are up');
like($r->{body}, qr/^datastreams_http_database_up 1$/m, 'the database answered');
sse_stop($sse);

is(http('GET', "$gw->{metrics_url}/healthz")->{status}, 200, 'GET /healthz on the metrics listener: 200');
$r = http('GET', "$gw->{metrics_url}/accounts/regress_http_a/datastreams/streams", token => $token);
is("$r->{status} $r->{json}{code}", '404 42704', 'the API is not served on the metrics listener');
is(http('POST', "$gw->{metrics_url}/metrics")->{status}, 405, 'POST /metrics: 405');
is(http('GET', "$gw->{url}/metrics")->{status}, 404, 'no /metrics on the API address');

# the database down: the gateway's own series still, database_up 0
$node->stop('fast');
$r = http('GET', "$gw->{metrics_url}/metrics");
is($r->{status}, 200, 'with the database down, /metrics still answers');
like($r->{body}, qr/^datastreams_http_database_up 0$/m, 'datastreams_http_database_up 0');
unlike($r->{body}, qr/^datastreams_frames_created_total/m, 'and no database series');
promtool_ok($r->{body}, 'the metrics with the database down');
is(http('GET', "$gw->{metrics_url}/healthz")->{status}, 503, 'GET /healthz on the metrics listener: 503');
$node->start;
ok(wait_until(sub { http('GET', "$gw->{metrics_url}/metrics")->{body} =~ /^datastreams_http_database_up 1$/m }),
	'database_up 1 again after the restart');
is(stop_gateway($gw), 0, 'the gateway stops cleanly');

# with the gateway's own (trusted, not administrator) role: no account's series
my $gw2 = start_gateway($node, args => [ '--metrics-listen', '127.0.0.1:0' ]);
$r = http('GET', "$gw2->{metrics_url}/metrics");
promtool_ok($r->{body}, "the metrics as the gateway's role");
unlike($r->{body}, qr/regress_http_a/, "as the gateway's role, datastreams.metrics() shows no account's series");
like($r->{body}, qr/^# TYPE datastreams_frames_created_total counter$/m, '... only its HELP and TYPE lines');
is(stop_gateway($gw2, 'INT'), 0, 'SIGINT stops that gateway cleanly too');
like(HttpHelper::slurp($gw2->{err}), qr/received SIGINT, shutting down\n.*stopped\n\z/s, '... saying so');

$node->stop;
done_testing();
