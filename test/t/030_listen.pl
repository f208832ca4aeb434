#-------------------------------------------------------------------------
#
# 030_listen.pl
#	  The data bus as a LISTEN client sees it: exact notification payloads,
#	  nothing for rolled-back frames, one batch notification for bulk
#	  statements, the NOTIFY size limit, notify_payload = ids, and a full
#	  notification queue (notify_queue_limit).  Alongside the raw LISTEN
#	  session, datastreams-listen follows the same streams and must print
#	  exactly the committed frames, complete, whatever the notifications
#	  carried or whether they were sent at all.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use FindBin;
use JSON::PP;
use Time::HiRes qw(sleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use ListenHelper;

my $json = JSON::PP->new->canonical;

my $node = new_ds_node('listen');
my $owner = 'regress_listen_owner';

$node->safe_psql(
	'postgres', qq{
CREATE ROLE $owner LOGIN;
SELECT datastreams.create_account('acct', '$owner');
ALTER SYSTEM SET datastreams.notify_payload = full;
SELECT pg_reload_conf();
});

# The bus settings are the server's: the publisher reads them, not the
# writer's session.  Change one and give the publisher time to reload.
sub set_bus
{
	my ($setting) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET $setting; SELECT pg_reload_conf();");
	sleep 0.5;
}

# Runs SQL as the account's bound role (subject to row-level security).
sub owner_sql
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => [ '-U', $owner ]);
}

sub new_stream
{
	my ($name, $sla_ms) = @_;
	return owner_sql(
		"SELECT id FROM datastreams.create_stream('$name', '$name', sla_ms => $sla_ms, status => 'active')"
	);
}

my $S = new_stream('main', 10);    # single frames, rollbacks, batches
my $P = new_stream('payloads', 0); # payloads around the NOTIFY limit
my $Q = new_stream('quiet', 0);    # frames written with notifications skipped
my $M = new_stream('marker', 0);   # not followed by datastreams-listen
my %name_of = ($S => 'main', $P => 'payloads', $Q => 'quiet', $M => 'marker');

# datastreams-listen, from the beginning, on three of the streams.  The
# polling interval is short: frames of $Q are never announced.
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $client_out = "$tmp/listen.out";
my $client_err = "$tmp/listen.err";
my $client = start_client($node, $owner, $client_out, $client_err,
	'--stream', $S, '--stream', $P, '--stream', $Q,
	'--from', '0', '--poll-interval', '1');

# The raw LISTEN session: psql prints each notification after a query.
my $listener = $node->background_psql('postgres', extra_params => [ '-U', $owner ]);
$listener->query_safe(join('', map { qq{LISTEN "datastreams_$_";} } ($S, $P, $Q, $M)));

my $channel_re = qr/^datastreams_([0-9a-f-]{36})$/;

# Notifications received until one on $stream announces $sequence (that
# one included), as [stream, payload text, decoded payload]; dies after the
# timeout.  Notifications of one session arrive in commit order, so what a
# transaction committed before the marker's cannot arrive after it.
sub notes_until
{
	my ($stream, $sequence) = @_;
	my @notes;
	my $done = 0;
	my $ok = wait_until(
		sub {
			my $out = $listener->query_safe('SELECT 1');
			for my $line (split /\n/, $out)
			{
				next
				  unless $line =~
				  /^Asynchronous notification "([^"]*)" with payload "(.*)" received from server process with PID \d+\.$/;
				my ($channel, $payload) = ($1, $2);
				my ($sid) = $channel =~ $channel_re;
				my $decoded = eval { decode_json($payload) };
				push @notes, [ $sid // $channel, $payload, $decoded ];
				$done = 1
				  if defined $sid
				  && $sid eq $stream
				  && ref $decoded eq 'HASH'
				  && defined $decoded->{sequence}
				  && $decoded->{sequence} == $sequence;
			}
			return $done;
		});
	die "no notification for sequence $sequence of stream $stream"
	  unless $ok;
	return @notes;
}

sub row_json
{
	my ($stream, $sequence) = @_;
	return decode_json(
		owner_sql(
			"SELECT row_to_json(f) FROM datastreams.frames AS f WHERE f.stream_id = '$stream' AND f.sequence = $sequence"
		));
}

sub keys_of { return join(',', sort keys %{ $_[0] }) }

my $full_keys = 'created_at,id,latency_ms,payload,sequence,sequence_text,status,stream_id';

# --- a committed frame: one notification carrying the whole frame ---------
owner_sql(
	qq{SELECT datastreams.create_frame('$S', 1, '{"price": 1.5, "nested": {"sequence": 99}, "q": "say \\"hi\\""}', 20, 'ok', '{"src": "t"}')}
);
my @notes = notes_until($S, 1);
is(scalar(@notes), 1, 'one committed frame: exactly one notification');
my $row = row_json($S, 1);
my $n = $notes[0][2];
is($notes[0][0], $S, 'notification on channel datastreams_<stream id>');
is(keys_of($n), $full_keys, 'notification has exactly the frame fields');
is_deeply(
	$n,
	{
		id => $row->{id},
		stream_id => $S,
		sequence => 1,
		sequence_text => '1',
		status => 'late',
		latency_ms => 20,
		created_at => $row->{created_at},
		payload => { price => 1.5, nested => { sequence => 99 }, q => 'say "hi"' }
	},
	'notification fields equal the stored frame (late: latency above the SLA)');

# --- rolled-back frames are never announced --------------------------------
owner_sql(
	qq{
BEGIN;
SELECT datastreams.create_frame('$S', 2, '{"rolled_back": "transaction"}');
ROLLBACK;
BEGIN;
SELECT datastreams.create_frame('$S', 2, '{"kept": 2}');
SAVEPOINT a;
SELECT datastreams.create_frame('$S', 3, '{"rolled_back": "savepoint"}');
INSERT INTO datastreams.frames (stream_id, sequence, payload)
  SELECT '$S', g, '{"rolled_back": "savepoint"}' FROM generate_series(4, 5) AS g;
ROLLBACK TO SAVEPOINT a;
SELECT datastreams.create_frame('$S', 3, '{"kept": 3}');
COMMIT;
DO \$\$
BEGIN
	-- the second row fails: the statement's first frame must not be announced
	INSERT INTO datastreams.frames (stream_id, sequence, payload)
	VALUES ('$S', 4, '{"rolled_back": "statement"}'), ('$S', 4, '{}');
EXCEPTION WHEN unique_violation THEN
	NULL;
END
\$\$;
SELECT datastreams.create_frame('$S', 4, '{"kept": 4}');
});
@notes = notes_until($S, 4);
is_deeply(
	[ map { [ $_->[0], $_->[2]{sequence}, $_->[2]{payload} ] } @notes ],
	[
		[ $S, 2, { kept => 2 } ],
		[ $S, 3, { kept => 3 } ],
		[ $S, 4, { kept => 4 } ]
	],
	'no notification for frames of a rolled-back transaction, savepoint or statement');
is_deeply(
	[ map { $_->[2]{id} } @notes ],
	[ map { row_json($S, $_)->{id} } 2 .. 4 ],
	'the announced ids are those of the committed frames');

# A subtransaction rolled back in the middle of a statement (an exception
# block in a function the statement calls for each row) must not lose the
# notices of the rows the statement wrote before it.
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION public.regress_listen_careful(i int) RETURNS int
LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		PERFORM 1 / 0;
	EXCEPTION WHEN division_by_zero THEN
		NULL;
	END;
	RETURN i;
END
$$;
});
owner_sql(
	qq{INSERT INTO datastreams.frames (stream_id, sequence, payload)
	   SELECT '$S', g, jsonb_build_object('i', public.regress_listen_careful(g))
	     FROM generate_series(5, 7) AS g});
@notes = notes_until($S, 7);
is_deeply([ map { $_->[2]{sequence} } @notes ],
	[ 5, 6, 7 ],
	'a statement whose rows run an exception block still announces all its frames');

# --- a 1000-row INSERT ... SELECT: one batch notification -------------------
owner_sql(
	qq{INSERT INTO datastreams.frames (stream_id, sequence, payload)
	   SELECT '$S', g, jsonb_build_object('g', g) FROM generate_series(1001, 2000) AS g});
@notes = notes_until($S, 2000);
is(scalar(@notes), 1, '1000-row INSERT ... SELECT: one notification');
is($notes[0][1],
	qq({"stream_id": "$S", "sequence": 2000, "sequence_text": "2000", "first_sequence": 1001, "first_sequence_text": "1001", "count": 1000, "batch": true}),
	'the batch notification names the first and last sequence and the count');

# the threshold: 100 frames one by one, 101 as a batch; per stream
owner_sql(
	qq{INSERT INTO datastreams.frames (stream_id, sequence)
	   SELECT '$S', g FROM generate_series(2001, 2100) AS g});
@notes = notes_until($S, 2100);
is_deeply(
	[ map { $_->[2]{sequence} } @notes ],
	[ 2001 .. 2100 ],
	'100 frames (notify_frames_per_statement) are announced one by one, in order');
is(scalar(grep { keys_of($_->[2]) ne $full_keys } @notes),
	0, '... each with the full frame');
owner_sql(
	qq{INSERT INTO datastreams.frames (stream_id, sequence)
	   SELECT s, g FROM (VALUES ('$S'::uuid, 2101), ('$P'::uuid, 1)) AS v(s, first),
	        LATERAL generate_series(first, first + CASE WHEN s = '$S' THEN 100 ELSE 2 END) AS g
	   ORDER BY s = '$P', g});
@notes = notes_until($P, 3);
is_deeply(
	[ map { $_->[1] } grep { $_->[0] eq $S } @notes ],
	[qq({"stream_id": "$S", "sequence": 2201, "sequence_text": "2201", "first_sequence": 2101, "first_sequence_text": "2101", "count": 101, "batch": true})],
	'101 frames of one stream in one statement: one batch notification');
is_deeply(
	[ map { $_->[2]{sequence} } grep { $_->[0] eq $P } @notes ],
	[ 1, 2, 3 ],
	'... while the same statement announces its 3 frames of another stream one by one');

# ingest() is one statement too
owner_sql(
	qq{SELECT datastreams.ingest('$S', (SELECT jsonb_agg(jsonb_build_object('sequence', g)) FROM generate_series(3001, 3500) AS g))}
);
@notes = notes_until($S, 3500);
is_deeply(
	[ map { $_->[1] } @notes ],
	[qq({"stream_id": "$S", "sequence": 3500, "sequence_text": "3500", "first_sequence": 3001, "first_sequence_text": "3001", "count": 500, "batch": true})],
	'ingest() of 500 frames: one batch notification');

set_bus('datastreams.notify_frames_per_statement = 0');
owner_sql(qq{SELECT datastreams.create_frame('$S', 3501)});
@notes = notes_until($S, 3501);
is_deeply(
	[ map { $_->[1] } @notes ],
	[qq({"stream_id": "$S", "sequence": 3501, "sequence_text": "3501", "first_sequence": 3501, "first_sequence_text": "3501", "count": 1, "batch": true})],
	'notify_frames_per_statement = 0: even a single frame is announced as a batch');
set_bus('datastreams.notify_frames_per_statement = 100');

# --- payloads around NOTIFY's limit (8000 bytes, so at most 7999) ----------
# id and created_at are given so that the notification text is known in
# advance to the byte.
my $created_at = '2024-01-02 03:04:05.123456+00';
my $created_json = $node->safe_psql('postgres', "SELECT to_json('$created_at'::timestamptz)");
$created_json =~ s/^"|"$//g;

sub frame_head
{
	my ($id, $sequence) = @_;
	return qq({"id": "$id", "stream_id": "$P", "sequence": $sequence, "sequence_text": "$sequence", "status": "ok", "latency_ms": 0, "created_at": "$created_json");
}

my %inserted_payload;
my $pad_for_7999 =
  7999 - length(frame_head('00000000-0000-7000-8000-000000000000', 10)) - length(q(, "payload": {"x": ""}})) ;

my @boundary = (
	[ 10, '01900000-0000-7000-8000-00000000000a', $pad_for_7999, 'full' ],
	[ 11, '01900000-0000-7000-8000-00000000000b', $pad_for_7999 + 1, 'truncated' ],
	[ 12, '01900000-0000-7000-8000-00000000000c', 200_000, 'truncated' ]);
for my $b (@boundary)
{
	my ($seq, $id, $len) = @$b;
	$inserted_payload{$seq} = { x => 'a' x $len };
	# only roles that bypass row-level security may give a frame's id
	$node->safe_psql('postgres',
		qq{INSERT INTO datastreams.frames (id, stream_id, sequence, payload, created_at)
		   VALUES ('$id', '$P', $seq, jsonb_build_object('x', repeat('a', $len)), '$created_at')});
}
@notes = notes_until($P, 12);
is(scalar(@notes), 3, 'three large frames: three notifications');
my $expect_full = frame_head($boundary[0][1], 10) . qq(, "payload": {"x": "$inserted_payload{10}{x}"}});
is(length($expect_full), 7999, 'test set-up: the first frame\'s notification is 7999 bytes');
is($notes[0][1], $expect_full, 'a notification of exactly 7999 bytes carries the payload');
is($notes[1][1], frame_head($boundary[1][1], 11) . ', "truncated": true}',
	'one byte more: sent without payload, with "truncated": true');
is($notes[2][1], frame_head($boundary[2][1], 12) . ', "truncated": true}',
	'a 200 kB payload: sent without payload, with "truncated": true');

# --- notify_payload = ids (superuser only) ---------------------------------
my ($ret, $stdout, $stderr) = (0, '', '');
$ret = $node->psql('postgres', 'SET datastreams.notify_payload = ids',
	extra_params => [ '-U', $owner ], stderr => \$stderr);
like($stderr, qr/permission denied to set parameter "datastreams.notify_payload"/,
	'notify_payload cannot be changed by an ordinary role');
set_bus('datastreams.notify_payload = ids');
$node->safe_psql(
	'postgres', qq{
SET datastreams.account_id = 'acct';
SELECT datastreams.create_frame('$P', 13, '{"secret": "only behind rls"}');
INSERT INTO datastreams.frames (stream_id, sequence, payload)
  VALUES ('$P', 14, jsonb_build_object('x', repeat('b', 9000)));
});
@notes = notes_until($P, 14);
is(scalar(@notes), 2, 'notify_payload = ids: one notification per frame');
is_deeply(
	[ map { $_->[2] } @notes ],
	[
		{ id => row_json($P, 13)->{id}, stream_id => $P, sequence => 13, sequence_text => '13', status => 'ok' },
		{ id => row_json($P, 14)->{id}, stream_id => $P, sequence => 14, sequence_text => '14', status => 'ok' }
	],
	'... carrying exactly id, stream_id, sequence (also as text) and status');
$inserted_payload{13} = { secret => 'only behind rls' };
$inserted_payload{14} = { x => 'b' x 9000 };

# --- a full queue: notify_queue_limit = 0 (the writers' own guard, at commit)
($stdout, $stderr) = ('', '');
$ret = $node->psql(
	'postgres', qq{
SET datastreams.notify_via_worker = off;
SET datastreams.notify_queue_limit = 0;
SET datastreams.account_id = 'acct';
BEGIN;
SELECT datastreams.create_frame('$Q', 1, '{"q": 1}');
INSERT INTO datastreams.frames (stream_id, sequence, payload)
  SELECT '$Q', g, jsonb_build_object('q', g) FROM generate_series(2, 3) AS g;
SELECT datastreams.create_frame('$M', 1);
COMMIT;
INSERT INTO datastreams.frames (stream_id, sequence)
  SELECT '$Q', g FROM generate_series(4, 203) AS g;
},
	stdout => \$stdout,
	stderr => \$stderr,
	on_error_stop => 1);
is($ret, 0, 'notify_queue_limit = 0: the transactions commit');
my @warnings = $stderr =~ /WARNING:  (.*)$/mg;
is(scalar(@warnings), 2, '... with one WARNING per transaction (two transactions)')
  or diag($stderr);
like(
	$warnings[0] // '',
	qr/^datastreams notification queue is 0% full; frames of this transaction are stored but not announced$/,
	'... saying the frames are stored but not announced');
like($stderr, qr/HINT:  Listeners recover skipped frames with datastreams.frames_since\(\)/,
	'... and how listeners recover');
is(owner_sql("SELECT count(*) FROM datastreams.frames WHERE stream_id IN ('$Q', '$M')"),
	'204', '... and every frame is stored');
owner_sql("SELECT datastreams.create_frame('$M', 2)");
@notes = notes_until($M, 2);
is_deeply([ map { "$name_of{$_->[0]}:$_->[2]{sequence}" } @notes ],
	['marker:2'], 'no notification at all for the skipped transactions');

# --- what datastreams-listen printed ----------------------------------------
my %want;
$want{$_} = [ frames_in_table($node, $_) ] for ($S, $P, $Q);
my $caught_up = wait_until(
	sub {
		my %got;
		$got{ $_->{frame}{stream_id} // '' }++ for client_frames($client_out);
		return !grep { ($got{$_} // 0) < @{ $want{$_} } } keys %want;
	});
ok($caught_up, 'datastreams-listen caught up with all three streams')
  or diag(slurp_file($client_err));
is(stop_client($client, 'TERM'), 0, 'datastreams-listen exits with 0 on SIGTERM');

my @printed = client_frames($client_out);
for my $stream ($S, $P, $Q)
{
	check_delivery("datastreams-listen, stream $name_of{$stream}",
		[ map { $_->{line} } grep { ($_->{frame}{stream_id} // '') eq $stream } @printed ],
		$want{$stream});
}
my %payload_printed = map { $_->{frame}{sequence} => $_->{frame}{payload} }
  grep { ($_->{frame}{stream_id} // '') eq $P } @printed;
for my $seq (sort { $a <=> $b } keys %inserted_payload)
{
	ok( defined $payload_printed{$seq}
		  && $json->encode($payload_printed{$seq}) eq $json->encode($inserted_payload{$seq}),
		"datastreams-listen printed frame $seq of stream payloads with its complete payload ("
		  . length($json->encode($inserted_payload{$seq})) . " bytes)");
}
is(scalar(grep { $_->{frame}{stream_id} eq $M } @printed), 0,
	'datastreams-listen printed nothing of a stream it does not follow');

$listener->quit;
$node->stop;
done_testing();
