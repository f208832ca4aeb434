#-------------------------------------------------------------------------
#
# 130_http_page.pl
#	  The page of GET / in headless Chromium (Debian's chromium, driven
#	  through the DevTools protocol on a pipe; loopback only): given an
#	  account, a token and a stream it shows the latest frame, the last
#	  frames and, as frames are inserted through SQL, a live list and a
#	  sparkline of a numeric payload field; sequences above 2^53 keep
#	  every digit; a bad token is reported; the token leaves the address
#	  bar and never reaches the access log.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

use HttpHelper;

my $node = new_gateway_node('http_page');
my $token = make_token($node, 'regress_http_a');
my $gw = start_gateway($node);
my $api = "$gw->{url}/accounts/regress_http_a/datastreams";
my $S = http('POST', "$api/streams", token => $token,
	body => '{"name": "page", "symbol": "pg", "status": "active"}')->{json}{id};
my @before = insert_frames($node, 'regress_http_a', $S, 5, 10);

my $browser = chromium_start("$gw->{url}/#account=regress_http_a&token=$token&stream=$S&field=price");
my $js = sub { chromium_eval($browser, $_[0]) };
my $rows = sub {
	$js->(q{JSON.stringify(Array.from(document.querySelectorAll('#frames tr')).map(
		tr => [tr.dataset.sequence, tr.cells[1].textContent, tr.cells[3].textContent]))});
};

ok(wait_until(sub { ($js->("document.getElementById('status').textContent") // '') eq 'live' }, 60),
	'the page connects its event stream ("live")')
  or diag('status: ' . ($js->("document.getElementById('status').textContent") // 'undef'));
is_deeply(decode_json($rows->()),
	[ map { [ $before[ 4 - $_ ], 'ok', 14 - $_ ] } 0 .. 4 ],
	'the last frames are listed, newest first, with their price');
like($js->("document.getElementById('latest').textContent"), qr/"sequence_text":"$before[-1]"/,
	'the latest frame is shown');
is($js->("document.getElementById('line').dataset.points"), '5', 'the sparkline has the 5 prices');
is($js->('location.hash'), '', 'the token is cleared from the address bar');

my @live = insert_frames($node, 'regress_http_a', $S, 3, 100);
ok(wait_until(sub { ($js->("document.querySelectorAll('#frames tr').length") // 0) == 8 }, 30),
	'frames inserted through SQL appear in the page');
my $shown = decode_json($rows->());
is_deeply([ map { $_->[0] } @$shown[ 0 .. 2 ] ], [ reverse @live ], 'the new frames are on top, newest first');
is_deeply([ map { $_->[2] } @$shown[ 0 .. 2 ] ], [ 102, 101, 100 ], 'with their prices');
is($js->("document.getElementById('received').textContent"), '3', 'the page counts 3 frames received live');
is($js->("document.getElementById('value').textContent"), '= 102', 'the current value is the newest price');
like($js->("document.getElementById('latest').textContent"), qr/"sequence_text":"$live[-1]"/,
	'the latest frame follows');
is($js->("document.getElementById('line').dataset.points"), '8', 'the sparkline grew to 8 points');
my @points = split / /, $js->("document.getElementById('line').getAttribute('points')");
is(scalar @points, 8, 'the polyline has 8 vertices');
is((split /,/, $points[-1])[1], '3.0', 'the newest price, the highest, is drawn at the top');
ok($live[-1] > 2**53, 'the sequences are above 2^53');
is($shown->[0][0], $live[-1], 'and the page shows them with every digit');

# frames of another account's stream or a bad token: the page says so
my $S_b = do {
	my $token_b = make_token($node, 'regress_http_b');
	http('POST', "$gw->{url}/accounts/regress_http_b/datastreams/streams", token => $token_b,
		body => '{"name": "b", "symbol": "b"}')->{json}{id};
};
$js->("show('regress_http_a', '$token', '$S_b', 'price'); 0");
ok(wait_until(sub { ($js->("document.getElementById('status').textContent") // '') =~ /^error: 404/ }, 30),
	"another account's stream: the page reports 404");
$js->("show('regress_http_a', 'dst_bogus', '$S', 'price'); 0");
ok(wait_until(sub { ($js->("document.getElementById('status').textContent") // '') =~ /^error: 401 invalid or revoked token/ }, 30),
	'a bad token: the page reports 401');

chromium_stop($browser);
# (a closed event stream is noticed at its next keepalive; SIGTERM ends it now)
is(stop_gateway($gw), 0, 'the gateway stops cleanly');
my @log = access_log_lines($gw);
ok((grep { m{method=GET path=/ status=200} } @log) > 0, 'the page was served');
ok((grep { m{path=/accounts/regress_http_a/datastreams/streams/$S/events status=200} } @log) > 0,
	"the page's event stream is logged");
is((grep { /\Q$token\E/ } @log), 0, 'the token (sent as ?access_token=) is not in the access log');
$node->stop;
done_testing();
