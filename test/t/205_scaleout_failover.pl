#-------------------------------------------------------------------------
#
# 205_scaleout_failover.pl
#	  Failover of a shard: shard0 has a synchronous standby and the proxy's
#	  map names both with one multi-host connection string
#	  (target_session_attrs=read-write).  A writer keeps writing through
#	  the proxy to a stream on shard0 and one on shard1; shard0's primary
#	  crashes and the standby is promoted (what pg_auto_failover does):
#	  writes resume within 5 s without any map change and every
#	  acknowledged frame is on the new primary.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use ScaleoutHelper;

my $primary = new_shard('shard0', allows_streaming => 1);
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby0');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
$primary->append_conf('postgresql.conf', "synchronous_standby_names = 'standby0'");
$primary->reload;
$primary->poll_query_until('postgres',
	q{SELECT sync_state = 'sync' FROM pg_stat_replication WHERE application_name = 'standby0'})
  or die 'the standby did not become synchronous';

my $shard1 = new_shard('shard1');
my $pair = sprintf('host=%s,%s port=%d,%d dbname=postgres target_session_attrs=read-write',
	$primary->host, $standby->host, $primary->port, $standby->port);
my $proxy = new_proxy('proxy', 8, $pair, $shard1);
add_tenants($proxy, 'datastreams_proxy');

my ($on0, $on1) = map {
	$proxy->safe_psql('postgres',
		"SELECT id FROM datastreams_proxy.create_stream('s$_', 'F', partition_hash => $_)",
		extra_params => [ '-U', 'regress_tenant_a' ])
} (2, 3);

my ($writer, $werr) = start_writer($proxy, 'regress_tenant_a', 7, 'others', $on0, $on1);
sleep 2;
my $crash_ms = int(time * 1000);
$primary->stop('immediate');
$standby->promote;
$writer->finish;
ok(!$writer->result, 'the writer ran to its end')
  or diag(join "\n", grep { /ERROR/ } split /\n/, $$werr);

my $log = writer_log($$werr);
my @acked = map { $log->{acked}{$_} // [] } 1, 2;
my ($resumed_ms) = grep { $_ > $crash_ms } @{ $log->{ack_ms}{1} // [] };
note(sprintf('acknowledged %d/%d; failed calls %d/%d; writes to shard0 resumed %s ms after the crash',
	scalar(@{ $acked[0] }), scalar(@{ $acked[1] }),
	$log->{refused}{1} // 0, $log->{refused}{2} // 0,
	defined $resumed_ms ? $resumed_ms - $crash_ms : 'never'));

ok(defined $resumed_ms && $resumed_ms - $crash_ms < 5000,
	'writes to the failed shard resume within 5 s, without a map change');
ok(($log->{refused}{1} // 0) > 0, 'some calls failed during the failover');
for my $i (0, 1)
{
	my $n = scalar @{ $acked[$i] };
	ok($n > 50, "stream $i: $n frames acknowledged");
	is_deeply($acked[$i], [ 1 .. $n ], "stream $i: acknowledged in order without gaps");
}
my $n0 = scalar @{ $acked[0] };
is($standby->safe_psql('postgres',
		"SELECT count(*) || ':' || min(sequence) || ':' || max(sequence) FROM datastreams.frames WHERE stream_id = '$on0'"),
	"$n0:1:$n0", 'every acknowledged frame of shard0 is on the promoted standby, once');
is($proxy->safe_psql('postgres', "SELECT sequence FROM datastreams_proxy.latest_frame('$on0')",
		extra_params => [ '-U', 'regress_tenant_a' ]),
	$n0, 'the proxy reads it through the same map');

$_->stop for ($proxy, $standby, $shard1);
done_testing();
