#-------------------------------------------------------------------------
#
# 023_on_duplicate.pl
#	  A re-sent frame skipped with create_frame(on_duplicate => 'skip') is
#	  never announced twice (issue 13, item 9): a LISTEN session receives
#	  one notification per stored frame, however often each was sent, and
#	  none for a rejected different frame.  (hardening_duplicates shows
#	  that it is stored and counted once.)
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ListenHelper;

my $node = new_ds_node('on_duplicate');
my $S = '00000000-0000-4000-8000-000000000f01';
$node->safe_psql('postgres', qq{
CREATE ROLE regress_dup_tenant LOGIN;
SELECT datastreams.create_account('dup_a', 'regress_dup_tenant');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status)
VALUES ('$S', 'dup_a', 'one', 'ONE', 'active');
});

my $listener = $node->background_psql('postgres', extra_params => [ '-U', 'regress_dup_tenant' ]);
$listener->query_safe(qq{LISTEN "datastreams_$S"});

# the producer: frames 1 and 2, each sent three times (an acknowledgement
# lost twice), frame 3 once, then a different frame under sequence 2
my ($rc, $out, $err) = $node->psql('postgres', qq{
SELECT sequence FROM datastreams.create_frame('$S', 1, '{"v": 1}', on_duplicate => 'skip');
SELECT sequence FROM datastreams.create_frame('$S', 1, '{"v": 1}', on_duplicate => 'skip');
SELECT sequence FROM datastreams.create_frame('$S', 2, '{"v": 2}', on_duplicate => 'skip');
SELECT sequence FROM datastreams.create_frame('$S', 1, '{"v": 1}', on_duplicate => 'skip');
SELECT sequence FROM datastreams.create_frame('$S', 2, '{"v": 2}', on_duplicate => 'skip');
BEGIN;
SELECT sequence FROM datastreams.create_frame('$S', 2, '{"v": 2}', on_duplicate => 'skip');
SELECT sequence FROM datastreams.create_frame('$S', 3, '{"v": 3}', on_duplicate => 'skip');
COMMIT;
SELECT sequence FROM datastreams.create_frame('$S', 2, '{"v": 20}', on_duplicate => 'skip');
}, extra_params => [ '-U', 'regress_dup_tenant' ]);
is($out, "1\n1\n2\n1\n2\n2\n3", 'every call returned its frame');
like($err, qr/already has a different frame with sequence 2/, 'the different frame is refused');

# every notification, until the one of frame 3
my @sequences;
ok( wait_until(
		sub {
			for my $line (split /\n/, $listener->query_safe('SELECT 1'))
			{
				push @sequences, decode_json($1)->{sequence}
				  if $line =~ /^Asynchronous notification "datastreams_\Q$S\E" with payload "(.*)" received/;
			}
			return grep { $_ == 3 } @sequences;
		}),
	'the notification of frame 3 arrived');
# anything sent after it would have arrived with it (one session's
# notifications come in commit order); look once more all the same
for my $line (split /\n/, $listener->query_safe('SELECT pg_sleep(0.5)'))
{
	push @sequences, decode_json($1)->{sequence}
	  if $line =~ /^Asynchronous notification "datastreams_\Q$S\E" with payload "(.*)" received/;
}
is(join(',', @sequences), '1,2,3', 'one notification per stored frame');
is($node->safe_psql('postgres', "SELECT count(*) FROM datastreams.frames WHERE stream_id = '$S'"),
	'3', 'three frames stored');

$listener->quit;
$node->stop;
done_testing();
