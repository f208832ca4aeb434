#-------------------------------------------------------------------------
#
# 110_http_events.pl
#	  GET .../streams/{id}/events, the Server-Sent Events route: event ids
#	  are sequences, data the frames as the API returns them; where a stream
#	  starts (new frames only, ?from=, Last-Event-ID); a client that
#	  disconnects and reconnects with Last-Event-ID again and again while a
#	  writer commits gets every frame exactly once, in order; a database
#	  restart under open streams loses nothing; revoked tokens end their
#	  streams; the errors; SIGTERM ends the streams and the gateway cleanly.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use IPC::Run ();
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

use HttpHelper;

my $node = new_gateway_node('http_events');
my ($token, $token_id) = make_token($node, 'regress_http_a');
my $token_b = make_token($node, 'regress_http_b');
my $gw = start_gateway($node);
my $api = "$gw->{url}/accounts/regress_http_a/datastreams";

my $S = http('POST', "$api/streams", token => $token,
	body => '{"name": "events", "symbol": "ev", "status": "active"}')->{json}{id};
my $S_b = http('POST', "$gw->{url}/accounts/regress_http_b/datastreams/streams", token => $token_b,
	body => '{"name": "b", "symbol": "b"}')->{json}{id};
my $events = "$api/streams/$S/events";

my @before = insert_frames($node, 'regress_http_a', $S, 3);

# the frames of $S after $after as the events must carry them
sub expected_events
{
	my ($after) = @_;
	my @rows = split /\n/, $node->safe_psql('postgres',
		"SELECT sequence || ' ' || row_to_json(f) FROM datastreams.frames AS f"
		  . " WHERE stream_id = '$S' AND sequence > $after ORDER BY sequence");
	return map {
		my ($seq, $json) = split / /, $_, 2;
		{ id => $seq, data => substr($json, 0, -1) . qq(,"sequence_text":"$seq"}) }
	} @rows;
}

sub wait_for_events
{
	my ($sse, $n) = @_;
	return wait_until(sub { scalar(sse_events($sse)) >= $n }, 30);
}

# ---- new frames only, by default ----
my $sse = sse_start($events, token => $token);
ok(wait_until(sub { HttpHelper::slurp($sse->{file}) =~ /^retry: 2000\n\n/ }), 'the stream opens with a retry field');
my @new = insert_frames($node, 'regress_http_a', $S, 2, 100);
ok(wait_for_events($sse, 2), 'two new frames arrive');
sleep 0.3;
my @got = sse_events($sse);
is_deeply([ map { $_->{id} } @got ], \@new, 'without from or Last-Event-ID: only frames committed after connecting');
is_deeply([ map { { id => $_->{id}, data => $_->{data} } } @got ], [ expected_events($before[-1]) ],
	'event id = sequence; data = the frame as the API returns it, with sequence_text');
sse_stop($sse);
my $headers = HttpHelper::slurp("$sse->{file}.headers");
like($headers, qr{^HTTP/1\.1 200}, 'status 200');
like($headers, qr{content-type: text/event-stream; charset=utf-8}i, 'Content-Type: text/event-stream');
like($headers, qr{cache-control: no-store}i, 'not cached');

# ---- ?from= and ?access_token= ----
$sse = sse_start("$events?from=0&access_token=$token");
ok(wait_for_events($sse, 5), '?from=0 with ?access_token=: the whole history');
is_deeply([ map { $_->{id} } sse_events($sse) ], [ @before, @new ], '?from=0: every frame in order');
sse_stop($sse);
$sse = sse_start("$events?from=$before[1]", token => $token);
ok(wait_for_events($sse, 3), "?from=SEQ: the frames after SEQ");
sleep 0.3;
is_deeply([ map { $_->{id} } sse_events($sse) ], [ $before[2], @new ], '?from=SEQ starts after SEQ');
sse_stop($sse);
$sse = sse_start("$events?from=0", token => $token, headers => ["Last-Event-ID: $new[0]"]);
ok(wait_for_events($sse, 1), 'Last-Event-ID');
sleep 0.3;
is_deeply([ map { $_->{id} } sse_events($sse) ], [ $new[1] ], 'Last-Event-ID wins over ?from= (a browser reconnecting keeps its URL)');
sse_stop($sse);

# ---- errors, before any event ----
for my $case (
	[ "$api/streams/$S_b/events", $token, [], 404, 'P0002', "another account's stream" ],
	[ "$api/streams/00000000-0000-4000-8000-000000000000/events", $token, [], 404, 'P0002', 'a missing stream' ],
	[ "$api/streams/nope/events", $token, [], 400, '22P02', 'a malformed id' ],
	[ $events, undef, [], 401, '28000', 'no token' ],
	[ "$events?access_token=bogus", undef, [], 401, '28000', 'a bad ?access_token=' ],
	[ "$gw->{url}/accounts/regress_http_b/datastreams/streams/$S/events", $token, [], 403, '42501', "the token of another account than the path's" ],
	[ "$events?from=-1", $token, [], 400, '22P02', 'a negative from' ],
	[ "$events?from=abc", $token, [], 400, '22P02', 'from not a number' ],
	[ $events, $token, ['Last-Event-ID: 12x'], 400, '22P02', 'a malformed Last-Event-ID' ])
{
	my ($url, $tok, $hdrs, $status, $code, $what) = @$case;
	my $r = http('GET', $url, token => $tok, headers => $hdrs);
	is("$r->{status} " . ($r->{json}{code} // ''), "$status $code", "events, $what: $status $code");
}

# ---- reconnecting with Last-Event-ID under a concurrent writer ----
my $start = $node->safe_psql('postgres', "SELECT max(sequence) FROM datastreams.frames WHERE stream_id = '$S'");
my $writer_sql = "SET datastreams.account_id = 'regress_http_a';\n";
$writer_sql .= "SELECT datastreams.create_frame('$S', payload => '{\"price\": $_}');\nSELECT pg_sleep(0.005);\n"
  for 1 .. 400;
my $writer_file = "$PostgreSQL::Test::Utils::tmp_check/writer.sql";
open(my $wfh, '>', $writer_file) or die;
print $wfh $writer_sql;
close $wfh;
my $writer = fork;
die "fork failed: $!" unless defined $writer;
if ($writer == 0)
{
	open(STDOUT, '>', '/dev/null');
	exec('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-f', $writer_file)
	  or POSIX::_exit(127);
}
my ($writer_status, $end);
my @received;
my $last = $start;
my $connections = 0;
srand(42);
for (;;)
{
	$sse = sse_start($events, token => $token, headers => ["Last-Event-ID: $last"]);
	$connections++;
	sleep(0.1 + rand(0.4));
	sse_stop($sse);
	my @batch = sse_events($sse);
	push @received, @batch;
	$last = $batch[-1]{id} if @batch;
	if (!defined $writer_status && waitpid($writer, POSIX::WNOHANG()) == $writer)
	{
		$writer_status = $?;
		$end = $node->safe_psql('postgres', "SELECT max(sequence) FROM datastreams.frames WHERE stream_id = '$S'");
	}
	last if defined $end && $last eq $end;
	last if $connections > 300;
}
is($writer_status, 0, 'the writer committed 400 frames');
cmp_ok($connections, '>=', 5, "the client reconnected $connections times");
my @want = expected_events($start);
is(scalar @want, 400, '400 frames were committed after the start');
my %seen;
my $dups = grep { $seen{ $_->{id} }++ } @received;
is($dups, 0, 'no frame received twice across reconnections');
is_deeply([ map { $_->{id} } @received ], [ map { $_->{id} } @want ], 'no gap: every frame, in sequence order');
is_deeply([ map { $_->{data} } @received ], [ map { $_->{data} } @want ], 'and every frame exactly as stored');
is(scalar(grep { !defined $_->{json} || $_->{json}{sequence_text} ne $_->{id} } @received), 0,
	'every data line is JSON whose sequence_text is the event id');

# ---- many clients of one stream, and a database restart under them ----
my @clients = map { sse_start($events, token => $token) } 1 .. 20;
ok(wait_until(sub { !grep { HttpHelper::slurp($_->{file}) !~ /retry/ } @clients }), '20 clients connected');
my @batch1 = insert_frames($node, 'regress_http_a', $S, 5, 1000);
ok(wait_until(sub { !grep { scalar(sse_events($_)) < 5 } @clients }), '20 clients each got the 5 new frames');
$node->restart;
my @batch2 = insert_frames($node, 'regress_http_a', $S, 5, 2000);
ok(wait_until(sub { !grep { scalar(sse_events($_)) < 10 } @clients }, 60),
	'after a database restart under open streams, the clients get the next frames too');
sleep 0.5;
is(scalar(grep { join(',', map { $_->{id} } sse_events($_)) ne join(',', @batch1, @batch2) } @clients), 0,
	'each of the 20 clients got exactly the 10 frames, in order, none twice');
sse_stop($_) for @clients;

# ---- a revoked token ends its streams ----
my ($token2, $token2_id) = make_token($node, 'regress_http_a');
$sse = sse_start($events, token => $token2);
ok(wait_until(sub { HttpHelper::slurp($sse->{file}) =~ /retry/ }), 'a stream with a second token');
$node->safe_psql('postgres', "SELECT datastreams.revoke_api_token('$token2_id')");
ok(wait_until(sub { waitpid($sse->{pid}, POSIX::WNOHANG()) != 0 }, 20),
	'revoking the token ends the stream within seconds');
is(http('GET', $events, token => $token2)->{status}, 401, 'and reconnecting is refused: 401');

# ---- SIGTERM with streams open ----
$sse = sse_start($events, token => $token);
ok(wait_until(sub { HttpHelper::slurp($sse->{file}) =~ /retry/ }), 'a stream is open');
is(stop_gateway($gw, 'TERM'), 0, 'SIGTERM with an open stream: the gateway exits 0');
ok(wait_until(sub { waitpid($sse->{pid}, POSIX::WNOHANG()) != 0 }, 10), 'the stream was ended');
is($? >> 8, 0, 'the client saw a complete response (curl exit 0)');
my @log = access_log_lines($gw);
ok((grep { m{method=GET path=/accounts/regress_http_a/datastreams/streams/$S/events status=200 .* account=regress_http_a$} } @log) > 0,
	'event streams are logged when they end');

$node->stop;
done_testing();
