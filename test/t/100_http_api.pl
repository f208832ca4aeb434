#-------------------------------------------------------------------------
#
# 100_http_api.pl
#	  datastreams-http, every route and every error through curl: status
#	  codes, bodies, headers; tokens (none, bad, revoked, another account's,
#	  only their hash stored); tenancy; sequences that survive JavaScript;
#	  the access log; /healthz and 503 while the database is down.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use HttpHelper;

my $node = new_gateway_node('http_api');
my ($token_a, $token_a_id) = make_token($node, 'regress_http_a', 'api test');
my $token_b = make_token($node, 'regress_http_b');
my $gw = start_gateway($node);
my $api = "$gw->{url}/accounts/regress_http_a/datastreams";
my $api_b = "$gw->{url}/accounts/regress_http_b/datastreams";

# ---- tokens: stored as a hash only, listed without secret ----
like($token_a, qr/^dst_[0-9a-f]{64}$/, 'a token is dst_ and 64 hex digits');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM datastreams.api_token_hashes"
		  . " WHERE token_hash = sha256(convert_to('$token_a', 'UTF8'))"
		  . " AND position(convert_to('$token_a', 'UTF8') IN token_hash) = 0"),
	'1', 'only the SHA-256 of the token is stored');
is( $node->safe_psql('postgres',
		"SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns"
		  . " WHERE table_schema = 'datastreams' AND table_name = 'api_tokens'"),
	'id,account_id,note,created_at,revoked_at',
	'the token listing has no secret and no hash');

# ---- authentication ----
my $r = http('GET', "$api/streams");
is($r->{status}, 401, 'no token: 401');
is($r->{json}{code}, '28000', 'no token: code 28000');
is($r->{headers}{'www-authenticate'}, 'Bearer', '401 carries WWW-Authenticate: Bearer');
$r = http('GET', "$api/streams", token => 'dst_' . ('0' x 64));
is($r->{status}, 401, 'unknown token: 401');
is($r->{json}{error}, 'invalid or revoked token', 'unknown token: message');
$r = http('GET', "$api/streams", headers => ['Authorization: Basic dXNlcjpwYXNz']);
is($r->{status}, 401, 'another scheme than Bearer: 401');
$r = http('GET', "$api/streams", token => "x" x 300);
is($r->{status}, 401, 'a token longer than 256 characters: 401');
$r = http('GET', "$api/streams?access_token=$token_a");
is($r->{status}, 401, '?access_token= is refused outside the events route');
$r = http('GET', "$api_b/streams", token => $token_a);
is($r->{status}, 403, "a token of another account than the path's: 403");
is_deeply(
	[ @{ $r->{json} }{qw(error code)} ],
	[ 'the token does not belong to this account', '42501' ],
	'403 body');
$r = http('GET', "$gw->{url}/accounts/nobody/datastreams/streams", token => $token_a);
is($r->{status}, 403, 'a token on a path naming an account that does not exist: 403 as well');

# ---- streams ----
$r = http('GET', "$api/streams", token => $token_a);
is($r->{status}, 200, 'GET streams: 200');
is($r->{body}, '[]', 'GET streams: empty list');
is($r->{headers}{'content-type'}, 'application/json; charset=utf-8', 'JSON content type');

$r = http('POST', "$api/streams", token => $token_a,
	body => '{"name": " Market Data Feed ", "symbol": "eth-usd", "description": "Ethereum",'
	  . ' "frequency": "1s", "sla_ms": 1000, "status": "active",'
	  . ' "metadata": {"Source": " exchange-api "}}');
is($r->{status}, 201, 'POST streams: 201');
my $stream = $r->{json};
is_deeply(
	[ @$stream{qw(account_id name symbol description frequency sla_ms status)} ],
	[ 'regress_http_a', 'Market Data Feed', 'ETH-USD', 'Ethereum', '00:00:01', 1000, 'active' ],
	'POST streams: the extension normalised the stream');
is_deeply($stream->{metadata}, { source => 'exchange-api' }, 'POST streams: metadata normalised');
like($stream->{id}, qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
	'POST streams: a version 4 id');
is($r->{headers}{location}, "/accounts/regress_http_a/datastreams/streams/$stream->{id}",
	'POST streams: Location of the new stream');
my $S = $stream->{id};
is_deeply(
	[ sort keys %$stream ],
	[ sort split /,/, $node->safe_psql('postgres',
		"SELECT string_agg(attname, ',') FROM pg_attribute WHERE attrelid = 'datastreams.streams'::regclass AND attnum > 0 AND NOT attisdropped") ],
	'a stream has the columns of the streams table, as the SQL API returns it');

$r = http('POST', "$api/streams", token => $token_a, body => '{"name": "Minimal", "symbol": "min"}');
is($r->{status}, 201, 'POST streams with name and symbol only: 201');
is_deeply([ @{ $r->{json} }{qw(status sla_ms description)} ], [ 'inactive', 0, '' ],
	'absent fields take the extension defaults');
my $S2 = $r->{json}{id};

for my $case (
	[ '{"symbol": "x"}', 400, '23502', 'name missing' ],
	[ '{"name": "x", "symbol": "x", "status": "running"}', 400, '22023', 'bad status' ],
	[ '{"name": "x", "symbol": "x", "sla_ms": "fast"}', 400, '22023', 'sla_ms not a number' ],
	[ '{"name": "x", "symbol": "x", "sla_ms": 3000000000}', 400, '22003', 'sla_ms out of range' ],
	[ '{"name": "x", "symbol": "x", "frequency": "often"}', 400, '22007', 'frequency not an interval' ],
	[ '{"name": "x", "symbol": "x", "frequency": "-1s"}', 400, '22023', 'frequency not positive' ],
	[ '{"name": "x", "symbol": "x", "metadata": {"a": {"b": 1}}}', 400, '22023', 'metadata not flat' ],
	[ '{"name": 5, "symbol": "x"}', 400, '22023', 'name not a string' ],
	[ '{"name": "x", "symbol": "x", "id": "00000000-0000-4000-8000-000000000000"}', 400, '22023', 'unknown field id' ],
	[ '{"name": "x",', 400, '22P02', 'malformed JSON' ],
	[ '"just a string"', 400, '22023', 'not an object' ],
	[ '', 400, '22023', 'empty body' ])
{
	my ($body, $status, $code, $what) = @$case;
	$r = http('POST', "$api/streams", token => $token_a, body => $body);
	is("$r->{status} " . ($r->{json}{code} // ''), "$status $code", "POST streams, $what: $status $code");
}
$r = http('POST', "$api/streams", token => $token_a, body => '{"name": "x", "symbol": "x", "colour": "red"}');
is_deeply(
	[ @{ $r->{json} }{qw(error hint)} ],
	[ 'unknown stream field "colour"',
	  'The fields of a stream are name, symbol, description, frequency, sla_ms, status, metadata and retention.' ],
	'unknown field: the message names it, the hint lists the fields');
ok(exists $r->{json}{detail} && !defined $r->{json}{detail}, 'errors carry detail, null when none');

$r = http('GET', "$api/streams", token => $token_a);
is_deeply([ map { $_->{id} } @{ $r->{json} } ], [ $S2, $S ], 'GET streams: newest first');
$r = http('GET', "$api/streams/$S", token => $token_a);
is($r->{status}, 200, 'GET streams/{id}: 200');
is($r->{json}{name}, 'Market Data Feed', 'GET streams/{id}: the stream');
$r = http('GET', "$api/streams/" . uc($S), token => $token_a);
is($r->{json}{id}, $S, 'GET streams/{id}: an upper-case id is the same stream');

$r = http('PATCH', "$api/streams/$S", token => $token_a, body => '{"sla_ms": 250, "description": "ETH"}');
is($r->{status}, 200, 'PATCH streams/{id}: 200');
is_deeply([ @{ $r->{json} }{qw(sla_ms description name status)} ], [ 250, 'ETH', 'Market Data Feed', 'active' ],
	'PATCH changes only the fields present');
$r = http('PATCH', "$api/streams/$S", token => $token_a, body => '{"account_id": "regress_http_b"}');
is("$r->{status} $r->{json}{code}", '400 22023', 'PATCH of account_id: 400 22023');
$r = http('PATCH', "$api/streams/$S", token => $token_a, body => '[]');
is("$r->{status} $r->{json}{code}", '400 22023', 'PATCH with an array: 400');
$r = http('PATCH', "$api/streams/$S", token => $token_a, body => '{"status": "paused"}');
is($r->{json}{status}, 'paused', 'PATCH pauses the stream');

# ---- frames ----
$r = http('GET', "$api/streams/$S/latest", token => $token_a);
is("$r->{status} $r->{json}{code}", '404 P0002', 'GET latest of a stream without frames: 404 P0002');
is($r->{json}{error}, 'the stream has no frame yet', 'GET latest without frames: message');

$r = http('POST', "$api/streams/$S/frames", token => $token_a, body => '{"payload": {"price": 1}}');
is("$r->{status} $r->{json}{code}", '409 55000', 'POST frames to a paused stream: 409 55000');
is($r->{json}{hint}, "Set the stream's status to active to accept frames again.", '55000: the extension\'s hint');
http('PATCH', "$api/streams/$S", token => $token_a, body => '{"status": "active"}');

$r = http('POST', "$api/streams/$S/frames", token => $token_a,
	body => '{"payload": {"price": 1850.5}, "latency_ms": 45, "metadata": {"Src": "ws"}}');
is($r->{status}, 201, 'POST frames without a sequence: 201');
my $f1 = $r->{json};
like($f1->{sequence_text}, qr/^\d{19}$/, 'default sequence: Unix nanoseconds, 19 digits');
ok($f1->{sequence_text} > 2**53, 'the default sequence is above 2^53');
like($r->{body}, qr/"sequence":$f1->{sequence_text},/, 'sequence is a JSON number with every digit');
like($r->{body}, qr/"sequence_text":"$f1->{sequence_text}"/, 'sequence_text carries the same digits as a string');
is_deeply([ @$f1{qw(status latency_ms stream_id account_id)} ], [ 'ok', 45, $S, 'regress_http_a' ],
	'POST frames: the frame');
is_deeply($f1->{metadata}, { src => 'ws' }, 'POST frames: metadata normalised');

my $big = '9007199254740993123';    # above 2^53, not a double
$r = http('POST', "$api/streams/$S/frames", token => $token_a,
	body => qq({"sequence": "$big", "payload": {"price": 1851}, "latency_ms": 400}));
is($r->{status}, 201, 'POST frames with the sequence as a string: 201');
is($r->{json}{sequence_text}, $big, 'a string sequence is stored exactly');
is($r->{json}{status}, 'late', 'a frame over the SLA is stored late');
my $next = '9007199254740993124';
$r = http('POST', "$api/streams/$S/frames", token => $token_a,
	body => qq({"sequence": $next, "payload": {"price": 1852}, "status": "error"}));
is($r->{json}{sequence_text}, $next, 'a numeric sequence above 2^53 is stored exactly');
is($node->safe_psql('postgres', "SELECT string_agg(sequence::text, ',' ORDER BY sequence) FROM datastreams.frames WHERE stream_id = '$S' AND sequence > 9000000000000000000"),
	"$big,$next", 'the table holds the exact sequences');

for my $case (
	[ qq({"sequence": $next}), 409, '23505', 'duplicate sequence' ],
	[ '{"sequence": 5}', 400, '23514', 'sequence lower than the latest' ],
	[ '{"sequence": 0}', 400, '22023', 'sequence not positive' ],
	[ '{"sequence": 1.5}', 400, '22P02', 'fractional sequence' ],
	[ '{"sequence": "12abc"}', 400, '22P02', 'sequence string with letters' ],
	[ '{"sequence": true}', 400, '22023', 'sequence a boolean' ],
	[ '{"payload": [1, 2]}', 400, '22023', 'payload an array' ],
	[ '{"payload": "x"}', 400, '22023', 'payload a string' ],
	[ '{"status": "weird"}', 400, '22023', 'bad status' ],
	[ '{"latency_ms": "slow"}', 400, '22023', 'latency_ms not a number' ],
	[ '{"latency_ms": 1e99}', 400, '22P02', 'latency_ms out of range' ],
	[ '{"payload": {"a": "\u0000"}}', 400, '22P05', 'NUL in JSON' ],
	[ '{"payload": {}, "stream_id": "x"}', 400, '22023', 'unknown field' ],
	[ '{"payload": {"a": 1}', 400, '22P02', 'malformed JSON' ],
	[ '{"payload": {"a": 1}} trailing', 400, '22P02', 'trailing garbage' ],
	[ "{\"payload\": {\"a\": \"\xff\"}}", 400, '22021', 'invalid UTF-8' ])
{
	my ($body, $status, $code, $what) = @$case;
	$r = http('POST', "$api/streams/$S/frames", token => $token_a, body => $body);
	is("$r->{status} " . ($r->{json}{code} // ''), "$status $code", "POST frames, $what: $status $code");
}
$r = http('POST', "$api/streams/$S/frames", token => $token_a, body => '{"sequence": 5}');
is($r->{json}{detail}, "The latest sequence is $next.", 'the detail of the extension\'s error is passed on');

$node->safe_psql('postgres', 'ALTER SYSTEM SET datastreams.max_payload_bytes = 1000; SELECT pg_reload_conf()');
$r = http('POST', "$api/streams/$S/frames", token => $token_a,
	body => '{"payload": {"blob": "' . ('x' x 2000) . '"}}');
is("$r->{status} $r->{json}{code}", '413 54000', 'a payload over datastreams.max_payload_bytes: 413 54000');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET datastreams.max_payload_bytes; SELECT pg_reload_conf()');

$r = http('GET', "$api/streams/$S/latest", token => $token_a);
is($r->{status}, 200, 'GET latest: 200');
is($r->{json}{sequence_text}, $next, 'GET latest: the highest sequence');

# 30 more frames to page through
insert_frames($node, 'regress_http_a', $S, 30);
my @all = split /\n/, $node->safe_psql('postgres',
	"SELECT sequence FROM datastreams.frames WHERE stream_id = '$S' ORDER BY sequence DESC");
$r = http('GET', "$api/streams/$S/frames", token => $token_a);
is(scalar @{ $r->{json} }, 25, 'GET frames: 25 by default');
is_deeply([ map { $_->{sequence_text} } @{ $r->{json} } ], [ @all[ 0 .. 24 ] ], 'GET frames: highest sequence first');
$r = http('GET', "$api/streams/$S/frames?limit=3", token => $token_a);
is_deeply([ map { $_->{sequence_text} } @{ $r->{json} } ], [ @all[ 0 .. 2 ] ], 'GET frames?limit=3');
$r = http('GET', "$api/streams/$S/frames?limit=2&before_sequence=$all[2]", token => $token_a);
is_deeply([ map { $_->{sequence_text} } @{ $r->{json} } ], [ @all[ 3 .. 4 ] ], 'GET frames?before_sequence= pages backwards');
$r = http('GET', "$api/streams/$S/frames?limit=0", token => $token_a);
is(scalar @{ $r->{json} }, 25, 'limit=0 gives 25');
$r = http('GET', "$api/streams/$S/frames?limit=-7", token => $token_a);
is(scalar @{ $r->{json} }, 25, 'a negative limit gives 25');
$r = http('GET', "$api/streams/$S/frames?limit=99999999999999", token => $token_a);
is(scalar @{ $r->{json} }, scalar @all, 'a huge limit is capped at 500 (all 33 here)');
$r = http('GET', "$api/streams/$S/frames?limit=ten", token => $token_a);
is("$r->{status} $r->{json}{code}", '400 22P02', 'limit=ten: 400');
$r = http('GET', "$api/streams/$S/frames?before_sequence=x", token => $token_a);
is("$r->{status} $r->{json}{code}", '400 22P02', 'before_sequence=x: 400');
$r = http('GET', "$api/streams/$S2/frames", token => $token_a);
is($r->{body}, '[]', 'GET frames of a stream without frames: []');

# the frame bodies are row_to_json of the frames row plus sequence_text
my $row = $node->safe_psql('postgres',
	"SELECT row_to_json(f) FROM datastreams.frames f WHERE stream_id = '$S' ORDER BY sequence DESC LIMIT 1");
$r = http('GET', "$api/streams/$S/latest", token => $token_a);
is($r->{body}, substr($row, 0, -1) . qq(,"sequence_text":"$all[0]"}),
	'a frame is exactly the SQL API\'s row plus sequence_text');

# ---- not found, other accounts, bad ids ----
my $S_b = http('POST', "$api_b/streams", token => $token_b, body => '{"name": "b", "symbol": "b"}')->{json}{id};
for my $path ("streams/$S_b", "streams/$S_b/latest", "streams/$S_b/frames",
	"streams/00000000-0000-4000-8000-000000000000")
{
	$r = http('GET', "$api/$path", token => $token_a);
	is("$r->{status} $r->{json}{code}", '404 P0002', "GET $path (another account's or missing): 404 P0002");
}
$r = http('POST', "$api/streams/$S_b/frames", token => $token_a, body => '{}');
is("$r->{status} $r->{json}{code}", '404 P0002', "POST frames to another account's stream: 404, never 403");
$r = http('PATCH', "$api/streams/$S_b", token => $token_a, body => '{"name": "mine"}');
is("$r->{status} $r->{json}{code}", '404 P0002', "PATCH another account's stream: 404");
is($node->safe_psql('postgres', "SELECT name FROM datastreams.streams WHERE id = '$S_b'"), 'b',
	"another account's stream is unchanged");
$r = http('GET', "$api/streams/not-a-uuid", token => $token_a);
is("$r->{status} $r->{json}{code}", '400 22P02', 'a malformed stream id: 400 22P02');
$r = http('GET', "$api/streams/$S", token => $token_b);
is($r->{status}, 403, "b's token on a's path: 403 before anything is looked up");

# ---- routes and methods ----
for my $case (
	[ 'GET', '/nope', 404 ], [ 'GET', '/accounts', 404 ], [ 'GET', '/accounts/regress_http_a', 404 ],
	[ 'GET', '/accounts/regress_http_a/datastreams', 404 ],
	[ 'GET', "/accounts/regress_http_a/datastreams/streams/$S/nope", 404 ],
	[ 'GET', "/accounts/regress_http_a/datastreams/streams/$S/frames/1", 404 ],
	[ 'GET', '/accounts/regress_http_a/datastreams/streams/', 404 ],
	[ 'GET', '/metrics', 404 ],
	[ 'DELETE', '/accounts/regress_http_a/datastreams/streams', 405 ],
	[ 'PUT', "/accounts/regress_http_a/datastreams/streams/$S", 405 ],
	[ 'DELETE', "/accounts/regress_http_a/datastreams/streams/$S", 405 ],
	[ 'PATCH', "/accounts/regress_http_a/datastreams/streams/$S/frames", 405 ],
	[ 'POST', "/accounts/regress_http_a/datastreams/streams/$S/latest", 405 ],
	[ 'POST', "/accounts/regress_http_a/datastreams/streams/$S/events", 405 ],
	[ 'POST', '/', 405 ], [ 'POST', '/healthz', 405 ])
{
	my ($method, $path, $status) = @$case;
	$r = http($method, "$gw->{url}$path", token => $token_a);
	is($r->{status}, $status, "$method $path: $status");
	is($r->{json}{code}, $status == 404 ? '42704' : '0A000', "$method $path: JSON error body");
}
$r = http('DELETE', "$api/streams/$S", token => $token_a);
is($r->{headers}{allow}, 'GET, HEAD, PATCH', '405 says what is allowed');
$r = http('DELETE', "$api/streams");
is($r->{status}, 405, 'a wrong method is 405 even without a token');
$r = http('HEAD', "$api/streams/$S", token => $token_a, curl => ['-I']);
is($r->{status}, 200, 'HEAD streams/{id}: 200');

# ---- bodies over 10 MiB ----
$r = http('POST', "$api/streams/$S/frames", token => $token_a,
	body => '{"payload": {"blob": "' . ('x' x (10 * 1024 * 1024)) . '"}}');
is("$r->{status} $r->{json}{code}", '413 54000', 'a body over 10 MiB: 413 54000');
is($r->{json}{detail}, 'Request bodies are limited to 10485760 bytes.', '413: the limit in the detail');
$r = http('POST', "$api/streams/$S/frames", token => $token_a,
	body => '{"payload": {"blob": "' . ('x' x (9 * 1024 * 1024)) . '"}}');
is("$r->{status} $r->{json}{code}", '413 54000',
	'a 9 MiB body passes the gateway, and the extension\'s payload limit (1MB) answers 413');

# ---- revocation ----
$r = http('GET', "$api/streams", token => $token_a);
is($r->{status}, 200, 'the token works before revocation');
is($node->safe_psql('postgres', "SELECT datastreams.revoke_api_token('$token_a_id')"), 't',
	'revoke_api_token: true');
is($node->safe_psql('postgres', "SELECT datastreams.revoke_api_token('$token_a_id')"), 'f',
	'revoke_api_token again: false');
$r = http('GET', "$api/streams", token => $token_a);
is($r->{status}, 401, 'a revoked token: 401 at once');
my $token_a2 = make_token($node, 'regress_http_a');

# ---- the gateway's role without EXECUTE on resolve_api_token ----
$node->safe_psql('postgres', 'CREATE ROLE regress_http_gw2 LOGIN; SELECT datastreams.trust_role(\'regress_http_gw2\')');
my $gw2 = start_gateway($node, role => 'regress_http_gw2');
$r = http('GET', "$gw2->{url}/accounts/regress_http_a/datastreams/streams", token => $token_a2);
is("$r->{status} $r->{json}{code}", '500 42501',
	'a gateway role not granted resolve_api_token: 500 with the permission error');
is(stop_gateway($gw2), 0, 'that gateway stops cleanly');

# ---- the access log ----
my @log = access_log_lines($gw);
my $requests = grep { /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z method=/ } @log;
is($requests, scalar @log, 'every access log line has the same shape');
like(
	(grep { m{method=PATCH path=/accounts/regress_http_a/datastreams/streams/$S status=200} } @log)[0],
	qr/ duration_ms=\d+\.\d{3} account=regress_http_a$/,
	'an access log line: method, path, status, duration, account');
like((grep { /status=401/ } @log)[0], qr/account=-$/, 'a 401 is logged without account');
is((grep { /\Q$token_a\E|\Q$token_b\E/ } @log), 0, 'no token ever appears in the access log');

# ---- /healthz and the database going away ----
$r = http('GET', "$gw->{url}/healthz");
is_deeply([ $r->{status}, $r->{body} ], [ 200, '{"status":"ok"}' ], 'GET /healthz: 200');
$node->stop('fast');
$r = http('GET', "$gw->{url}/healthz");
is("$r->{status} $r->{json}{code}", '503 08006', 'GET /healthz with the database down: 503');
is($r->{headers}{'retry-after'}, '1', '503 carries Retry-After');
$r = http('GET', "$api/streams", token => $token_a2);
is($r->{status}, 503, 'an API call with the database down: 503');
unlike($r->{body}, qr/socket|port|host/i, 'the 503 does not reveal how the database is reached');
$node->start;
ok(wait_until(sub { http('GET', "$gw->{url}/healthz")->{status} == 200 }, 30),
	'GET /healthz is 200 again once the database is back');
$r = http('GET', "$api/streams", token => $token_a2);
is($r->{status}, 200, 'the API works again after the restart');

# ---- the page ----
$r = http('GET', "$gw->{url}/");
is($r->{status}, 200, 'GET /: 200');
is($r->{headers}{'content-type'}, 'text/html; charset=utf-8', 'GET /: HTML');
like($r->{body}, qr/new EventSource/, 'GET /: the page with its script');
like($r->{headers}{'content-security-policy'}, qr/default-src 'none'/, 'GET /: a restrictive CSP');

ok(gateway_alive($gw), 'the gateway is still running');
is(stop_gateway($gw, 'TERM'), 0, 'SIGTERM: the gateway exits 0');
like(HttpHelper::slurp($gw->{err}), qr/received SIGTERM, shutting down\n.*stopped\n\z/s, 'SIGTERM: a clean shutdown');

$node->stop;
done_testing();
