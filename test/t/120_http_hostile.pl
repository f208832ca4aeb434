#-------------------------------------------------------------------------
#
# 120_http_hostile.pl
#	  Hostile clients never crash datastreams-http and never block the
#	  others: huge and endless bodies, malformed and deeply nested JSON,
#	  path traversal and encoded separators, bad and injected UUIDs,
#	  garbage request lines, clients that vanish mid-request, slowloris
#	  headers, a reader that stops reading an event stream, and 1,000
#	  idle connections held open while other clients are served.  After
#	  all of it the gateway answers, the data is intact, and SIGTERM still
#	  stops it cleanly.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use IO::Socket::INET;
use IPC::Run ();
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

use HttpHelper;

my $node = new_gateway_node('http_hostile');
my $token = make_token($node, 'regress_http_a');
my $gw = start_gateway($node, pool => 2);
my $api = "$gw->{url}/accounts/regress_http_a/datastreams";
my $S = http('POST', "$api/streams", token => $token,
	body => '{"name": "hostile", "symbol": "h", "status": "active"}')->{json}{id};
insert_frames($node, 'regress_http_a', $S, 3);
my $stored = 3;					# frames the database holds, as the test counts them

# One request on a fresh connection, raw bytes; returns the response text
# (up to $timeout seconds, or until the server closes).
sub raw
{
	my ($bytes, $timeout) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$gw->{port}", Proto => 'tcp')
	  or die "connect: $!";
	syswrite($s, $bytes) if length $bytes;
	shutdown($s, 1) if $bytes =~ /\r\n\r\n/;
	my $out = '';
	my $deadline = time + ($timeout // 10);
	while (time < $deadline)
	{
		my $rin = '';
		vec($rin, fileno($s), 1) = 1;
		next unless select($rin, undef, undef, 0.2);
		my $n = sysread($s, $out, 65536, length $out);
		last unless $n;
	}
	close $s;
	return $out;
}

sub status_of { my ($resp) = @_; return $resp =~ m{^HTTP/1\.[01] (\d{3})} ? $1 : 'none' }

# the gateway answers a normal request quickly
sub healthy
{
	my ($what) = @_;
	my $t0 = time;
	my $r = http('GET', "$api/streams/$S", token => $token, timeout => 10);
	my $dt = time - $t0;
	ok($r->{status} == 200 && $dt < 2, "$what: a normal request still succeeds (" . sprintf('%.3f', $dt) . " s)")
	  or diag("status $r->{status}: $r->{body} $r->{curl_error}");
	ok(gateway_alive($gw), "$what: the gateway is alive");
}

# ---- bodies ----
my $resp = raw("POST /accounts/regress_http_a/datastreams/streams/$S/frames HTTP/1.1\r\nHost: x\r\n"
	  . "Authorization: Bearer $token\r\nContent-Length: 107374182400\r\n\r\n");
is(status_of($resp), 413, 'a body announced as 100 GB: 413 before it is sent');
like($resp, qr/"code":"54000"/, '413 with a JSON error');

my $chunk = ('x' x 65536);
my $chunked = "POST /accounts/regress_http_a/datastreams/streams/$S/frames HTTP/1.1\r\nHost: x\r\n"
  . "Authorization: Bearer $token\r\nTransfer-Encoding: chunked\r\n\r\n"
  . ((sprintf("%x\r\n", length $chunk) . $chunk . "\r\n") x 180) . "0\r\n\r\n";
$resp = raw($chunked, 30);
is(status_of($resp), 413, 'an 11 MiB chunked body (no Content-Length): 413');
healthy('after huge bodies');

my $deep = '{"payload": ' . ('[' x 500000) . (']' x 500000) . '}';
my $r = http('POST', "$api/streams/$S/frames", token => $token, body => $deep);
is($r->{status}, 400, 'JSON nested 500,000 deep: 400') or diag($r->{body});
$r = http('POST', "$api/streams/$S/frames", token => $token, body => ('[' x 5000000));
is("$r->{status} $r->{json}{code}", '400 22P02', '5 MB of "[": 400 22P02');
for my $body ("\x00\x01\x02garbage", "\xef\xbb\xbf{}", '{"payload": {"a": "\ud800"}}', "{\"a\":1,}",
	'{"payload": 1e999999}', '{"sequence": 1' . ('0' x 5000) . '}', "{\"payload\": {\"k\": \"" . ("\\u00e9" x 100000) . "\"}}",
	'{' . join(',', map { "\"k$_\": $_" } 1 .. 20000) . '}', 'nul', 'tru', '{"":{"":{"":', '"\\', '-', '01')
{
	$r = http('POST', "$api/streams/$S/frames", token => $token, body => $body);
	$stored++ if $r->{status} == 201;
	ok($r->{status} == 400 || $r->{status} == 201 || $r->{status} == 413,
		'malformed body ' . substr(unpack('H*', $body), 0, 24) . "...: $r->{status} (4xx or stored)")
	  or diag($r->{body});
	ok(defined $r->{json} && defined $r->{json}{code} || $r->{status} == 201, '... with a JSON body');
}
healthy('after malformed JSON');

# ---- paths ----
for my $path ('/../../etc/passwd', '/accounts/../datastreams/streams', '/%2e%2e/%2e%2e/etc/passwd',
	'/accounts/%2e%2e/datastreams/streams', '/accounts/./datastreams/streams',
	'/accounts/regress_http_a/datastreams/streams/..', '//accounts/regress_http_a/datastreams/streams',
	'/accounts/regress_http_a//datastreams/streams', '/accounts/regress_http_a/datastreams/streams/%2e%2e/frames',
	'/accounts/a%00b/datastreams/streams', '/accounts/regress_http_a/datastreams/streams/%zz',
	'/accounts/%/datastreams/streams', '/page.html', '/index.html', '/.git/config', '/accounts/regress_http_a/datastreams/streams/' . $S . '/frames/../latest')
{
	$resp = raw("GET $path HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $token\r\nConnection: close\r\n\r\n");
	is(status_of($resp), 404, "GET $path: 404");
	unlike($resp, qr/root:|\[core\]/, "GET $path: no file content");
}
$r = http('GET', "$gw->{url}/accounts/regress_http_a%2Fx/datastreams/streams", token => $token);
is($r->{status}, 403, 'an encoded slash stays inside the account segment ("regress_http_a/x" is not the token\'s account)');
$r = http('GET', "$gw->{url}/accounts/regress%5Fhttp%5Fa/datastreams/streams/$S", token => $token);
is($r->{status}, 200, 'a percent-encoded account name is decoded once');

# ---- stream ids ----
for my $id ('zzzz', 'x' x 10000, "'%3B%20DROP%20TABLE%20datastreams.frames%3B%20--", '00000000-0000-0000-0000-00000000000g',
	"$S%27", '%7B' . $S . '%7D', '-1', '0')
{
	$r = http('GET', "$api/streams/$id/frames", token => $token);
	ok($r->{status} == 400 || $r->{status} == 404 || $r->{status} == 200 || $r->{status} == 414 || $r->{status} == 431,
		'stream id ' . substr($id, 0, 30) . ": $r->{status}");
}
is($node->safe_psql('postgres', "SELECT count(*) FROM datastreams.frames WHERE stream_id = '$S'"), $stored,
	'the frames table is intact');
healthy('after bad ids');

# ---- garbage on the wire ----
for my $bytes ("GARBAGE\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "GET /\r\n\r\n", "\x00\x01\x02\x03\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX: " . ('a' x 100000) . "\r\n\r\n",
	"GET / HTTP/1.1\r\n" . join('', map { "X-$_: $_\r\n" } 1 .. 5000) . "\r\n",
	"GET /" . ('a' x 200000) . " HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST /accounts/regress_http_a/datastreams/streams HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
	"POST /accounts/regress_http_a/datastreams/streams HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" x 200)
{
	raw($bytes, 5);
}
ok(gateway_alive($gw), 'garbage request lines, huge headers, bad lengths, 200 pipelined requests: still alive');
healthy('after garbage');

# clients that vanish while their request waits for the database
for (1 .. 50)
{
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$gw->{port}", Proto => 'tcp') or die;
	syswrite($s, "POST /accounts/regress_http_a/datastreams/streams/$S/frames HTTP/1.1\r\nHost: x\r\n"
		  . "Authorization: Bearer $token\r\nContent-Length: 2\r\n\r\n{}");
	close $s;
}
sleep 1;
healthy('after 50 clients vanished mid-request');
# their requests were complete: the frames are stored like any other
$stored += 50;

# ---- requests stuck in the database block neither the HTTP threads nor the page ----
my $locker = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
	  'BEGIN; LOCK TABLE datastreams.frames IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;' ],
	'>', \my $lout, '2>', \my $lerr);
ok(wait_until(sub { $node->safe_psql('postgres',
	"SELECT count(*) FROM pg_locks WHERE relation = 'datastreams.frames'::regclass AND mode = 'AccessExclusiveLock' AND granted") eq '1' }),
	'a session holds the frames table locked');
my @stuck_posts = map {
	IPC::Run::start([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', "Authorization: Bearer $token",
		'--data-binary', '{"payload": {"stuck": 1}}', "$api/streams/$S/frames" ], '>', \my $o)
} 1 .. 2;
ok(wait_until(sub { $node->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND usename = '$GW_ROLE'") eq '2' }),
	'both pool connections wait for the lock');
my $t0 = time;
$r = http('GET', "$gw->{url}/");
ok($r->{status} == 200 && time - $t0 < 0.5, 'meanwhile GET / is answered at once (' . sprintf('%.3f', time - $t0) . ' s)');
$t0 = time;
$r = http('DELETE', "$api/streams");
ok($r->{status} == 405 && time - $t0 < 0.5, 'and so is a request the gateway answers itself');
$_->finish for @stuck_posts, $locker;
$stored += 2;
is($node->safe_psql('postgres', "SELECT count(*) FROM datastreams.frames WHERE payload ? 'stuck'"), '2',
	'once the lock is gone, the two waiting frames are stored');

# ---- slow clients: 50 slowloris connections dribbling headers ----
my $dribble = <<'EOF';
use IO::Socket::INET; use Time::HiRes qw(sleep);
my ($port, $n, $seconds) = @ARGV;
my @s = map { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Proto => 'tcp') or die "connect: $!" } 1 .. $n;
$| = 1; print "open\n";
my $line = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " . ('a' x 1000);
for my $i (0 .. int($seconds / 0.05)) { syswrite($_, substr($line, $i % length($line), 1)) for @s; sleep 0.05; }
print "done\n";
EOF
my ($out, $err) = ('', '');
my $loris = IPC::Run::start([ 'perl', '-e', $dribble, $gw->{port}, 50, 4 ], '>', \$out, '2>', \$err);
$loris->pump until $out =~ /open/ || !$loris->pumpable;
my @times;
for (1 .. 10)
{
	my $t0 = time;
	my $rr = http('GET', "$api/streams/$S/latest", token => $token, timeout => 10);
	push @times, $rr->{status} == 200 ? time - $t0 : 99;
}
$loris->finish;
is($err, '', 'slowloris: 50 connections dribbled headers for 4 s');
cmp_ok((sort { $b <=> $a } @times)[0], '<', 1, 'slowloris: meanwhile every normal request took under 1 s');

# ---- a client that stops reading its event stream ----
# 48 MB of frames: far more than the kernel's socket buffers hold, so
# without the per-subscriber limit the gateway would keep most of it.
my $rss = sub { (HttpHelper::slurp("/proc/$gw->{pid}/status") =~ /VmRSS:\s+(\d+)/)[0] };
my $rss_before = $rss->();
my $stuck = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$gw->{port}", Proto => 'tcp') or die;
syswrite($stuck, "GET /accounts/regress_http_a/datastreams/streams/$S/events?access_token=$token&from=0 HTTP/1.1\r\nHost: x\r\n\r\n");
my $reader = sse_start("$api/streams/$S/events?from=0", token => $token);
sleep 0.5;
my $total = $stored + 4000;
$node->safe_psql('postgres', "SET datastreams.account_id = 'regress_http_a';"
	  . " INSERT INTO datastreams.frames (stream_id, sequence, payload)"
	  . " SELECT '$S', m.latest + n, jsonb_build_object('pad', repeat('y', 12000), 'n', n)"
	  . " FROM generate_series(1, 4000) AS n, (SELECT max(sequence) AS latest FROM datastreams.frames WHERE stream_id = '$S') AS m");
$stored += 4000;
my $last_id = $node->safe_psql('postgres', "SELECT max(sequence) FROM datastreams.frames WHERE stream_id = '$S'");
my $tail = sub {
	open(my $fh, '<', $reader->{file}) or return '';
	seek($fh, -65536, 2) or seek($fh, 0, 0);
	local $/;
	return <$fh> // '';
};
ok(wait_until(sub { $tail->() =~ /^id: $last_id$/m }, 120),
	"while one client does not read its stream, another receives all $total frames (48 MB)");
my $grown = $rss->() - $rss_before;
cmp_ok($grown, '<', 16 * 1024, "the stuck stream's backlog in the gateway stays bounded (RSS grew by $grown kB)");
healthy('with a stuck event stream');
is(scalar(sse_events($reader)), $total, '... every one of them');
# now read the stuck one: it gets everything, in order, once
my $raw = '';
my $deadline = time + 120;
my $found = 0;
while (time < $deadline && !$found)
{
	my $rin = '';
	vec($rin, fileno($stuck), 1) = 1;
	next unless select($rin, undef, undef, 0.5);
	my $n = sysread($stuck, $raw, 1 << 20, length $raw);
	last unless $n;
	$found = index($raw, "id: $last_id\n", length($raw) - $n - 64) >= 0;
}
close $stuck;
sse_stop($reader);
# undo the chunked transfer coding
my ($body) = $raw =~ /\r\n\r\n(.*)\z/s;
my $decoded = '';
while ($body =~ /\G([0-9a-fA-F]+)\r\n/gc)
{
	my $len = hex $1;
	my $pos = pos($body);
	last if length($body) < $pos + $len + 2;
	$decoded .= substr($body, $pos, $len);
	pos($body) = $pos + $len + 2;
}
my @ids = $decoded =~ /^id: (\d+)$/mg;
is(scalar @ids, $total, "the stuck client, once it reads, gets all $total frames");
is_deeply(\@ids, [ sort { $a <=> $b } @ids ], '... in order');
my %seen;
is(scalar(grep { $seen{$_}++ } @ids), 0, '... none twice');

# ---- 1,000 idle connections ----
my $idle = <<'EOF';
use IO::Socket::INET; use Socket qw(MSG_PEEK MSG_DONTWAIT);
my ($port, $n) = @ARGV;
my @s;
for my $i (1 .. $n) {
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Proto => 'tcp') or die "connect $i: $!";
	syswrite($s, "GET /healthz HTTP/1.1\r\nHost: x\r\n") if $i % 3 == 0;    # half a request
	push @s, $s;
}
$| = 1; print "open ", scalar(@s), "\n";
<STDIN>;
my $alive = 0;
for my $s (@s) { my $buf; my $r = recv($s, $buf, 1, MSG_PEEK | MSG_DONTWAIT); $alive++ if !defined($r) || length($buf); }
print "alive $alive\n";
EOF
($out, $err) = ('', '');
my $in = '';
my $flood = IPC::Run::start([ 'sh', '-c', 'ulimit -n 4096 && exec perl -e "$0" "$@"', $idle, $gw->{port}, 1000 ],
	'<', \$in, '>', \$out, '2>', \$err);
$flood->pump until $out =~ /open \d+/ || !$flood->pumpable;
like($out, qr/open 1000/, '1,000 connections opened and left idle') or diag($err);
@times = ();
for (1 .. 20)
{
	my $t0 = time;
	my $rr = http(($_ % 2) ? 'GET' : 'POST', "$api/streams/$S/frames", token => $token,
		($_ % 2) ? () : (body => '{"payload": {"n": ' . $_ . '}}'), timeout => 10);
	push @times, ($rr->{status} == 200 || $rr->{status} == 201) ? time - $t0 : 99;
	$stored++ if $rr->{status} == 201;
}
cmp_ok((sort { $b <=> $a } @times)[0], '<', 1, 'with 1,000 idle connections, 20 requests each took under 1 s');
$in = "go\n";
$flood->finish;
like($out, qr/alive 1000/, 'the 1,000 idle connections were still open (not dropped to make room)');

healthy('at the end');
is($node->safe_psql('postgres', "SELECT count(*) FROM datastreams.frames WHERE stream_id = '$S'"), $stored,
	'the frames table holds exactly what was accepted (201) and nothing else');
like(HttpHelper::slurp($gw->{err}), qr/\A(?:(?!panic|Fatal error|abort).)*\z/si, 'no panic in the gateway\'s log');
is(stop_gateway($gw, 'TERM'), 0, 'SIGTERM: the gateway exits 0 after all of it');

$node->stop;
done_testing();
