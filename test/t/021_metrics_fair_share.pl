#-------------------------------------------------------------------------
#
# 021_metrics_fair_share.pl
#	  One tenant cannot take every metrics slot (issue 13, item 6).  With
#	  datastreams.max_tracked_streams = 10 and
#	  datastreams.max_tracked_streams_per_account = 4, a tenant writing to
#	  ten streams gets four entries, another tenant's streams still get
#	  theirs, and each account sees how many of its frames went untracked.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('fair_share');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'datastreams'
datastreams.max_tracked_streams = 10
datastreams.max_tracked_streams_per_account = 4
log_min_messages = warning
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION datastreams;
CREATE ROLE regress_fair_a LOGIN;
CREATE ROLE regress_fair_b LOGIN;
SELECT datastreams.create_account('fair_a', 'regress_fair_a');
SELECT datastreams.create_account('fair_b', 'regress_fair_b');
});

# New streams of a tenant, each with frames (one transaction)
sub streams_with_frames
{
	my ($role, $n, $frames) = @_;
	$node->safe_psql('postgres', qq{
BEGIN;
CREATE TEMP TABLE new_streams AS
SELECT (datastreams.create_stream('s' || i, 'S' || i, status => 'active')).id FROM generate_series(1, $n) AS i;
SELECT datastreams.ingest(id, (SELECT jsonb_agg(jsonb_build_object('sequence', g)) FROM generate_series(1, $frames) AS g))
  FROM new_streams;
COMMIT;
}, extra_params => [ '-U', $role ]);
}

sub metrics
{
	my ($role) = @_;
	return $node->safe_psql('postgres', 'SELECT datastreams.metrics()',
		$role ? (extra_params => [ '-U', $role ]) : ());
}

sub value_of
{
	my ($text, $series) = @_;
	my ($value) = $text =~ /^\Q$series\E (\S+)$/m;
	return $value;
}

# tenant a first, with ten streams of three frames: it could fill the table
streams_with_frames('regress_fair_a', 10, 3);
# then tenant b, three streams of two frames
streams_with_frames('regress_fair_b', 3, 2);

my $all = metrics();
is(value_of($all, 'datastreams_max_tracked_streams_per_account'), '4', 'the setting, as a gauge');
is(value_of($all, 'datastreams_tracked_streams'), '7', 'seven streams tracked: four of a, three of b');
is(value_of($all, 'datastreams_account_tracked_streams{account_id="fair_a"}'), '4', 'a holds its share');
is(value_of($all, 'datastreams_account_tracked_streams{account_id="fair_b"}'), '3', 'b got an entry for every stream');
is(value_of($all, 'datastreams_account_untracked_frames_total{account_id="fair_a"}'), '18',
	"a's frames of its six untracked streams are counted for a");
is(value_of($all, 'datastreams_account_untracked_frames_total{account_id="fair_b"}'), '0', 'b lost nothing');
is(value_of($all, 'datastreams_untracked_frames_total'), '18', 'the server-wide count agrees');
my @b_series = $all =~ /^datastreams_frames_created_total\{account_id="fair_b",[^}]*status="ok"\} 2$/mg;
is(scalar(@b_series), 3, "each of b's streams has its counters");

# each tenant sees its own share and losses, not the other's
my $a_view = metrics('regress_fair_a');
is(value_of($a_view, 'datastreams_account_untracked_frames_total{account_id="fair_a"}'), '18',
	'tenant a sees its untracked frames');
unlike($a_view, qr/fair_b/, "tenant a sees nothing of b");

# the share is a reloadable setting: raised, a's next stream gets an entry
$node->append_conf('postgresql.conf', 'datastreams.max_tracked_streams_per_account = 5');
$node->reload;
streams_with_frames('regress_fair_a', 1, 1);
is(value_of(metrics(), 'datastreams_account_tracked_streams{account_id="fair_a"}'), '5',
	'after a reload with a larger share, a new stream of a is tracked');

# reset_metrics() forgets the shares too
$node->safe_psql('postgres', 'SELECT datastreams.reset_metrics()');
$all = metrics();
is(value_of($all, 'datastreams_tracked_streams'), '0', 'reset: nothing tracked');
unlike($all, qr/datastreams_account_untracked_frames_total\{/, 'reset: no account series');

$node->stop;
done_testing();
