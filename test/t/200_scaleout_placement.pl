#-------------------------------------------------------------------------
#
# 200_scaleout_placement.pl
#	  Streams created through datastreams_proxy land on the shard that
#	  shard_of() names, in the partition stream_hash() gives, spread over
#	  every shard: 20 streams on 2 shards x 8 partitions, then 20 more on
#	  4 shards x 16 partitions.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ScaleoutHelper;

my @shards = (new_shard('shard0'), new_shard('shard1'));
my $proxy = new_proxy('proxy', 8, @shards);
add_tenants($proxy, 'datastreams_proxy');

# Creates 20 streams of $role through the proxy; checks each against the
# shards' own tables.
sub check_placement
{
	my ($label, $role, $partitions, @nodes) = @_;
	my %on_shard;

	$proxy->safe_psql('postgres',
		"SELECT datastreams_proxy.create_stream('s' || g, 'S') FROM generate_series(1, 20) AS g",
		extra_params => [ '-U', $role ]);
	my @rows = split /\n/, $proxy->safe_psql(
		'postgres', q{
SELECT s.id, datastreams_proxy.partition_of(s.id),
	   datastreams.stream_hash(s.id) & (datastreams_proxy.partition_count() - 1),
	   datastreams_proxy.shard_of(s.id)
  FROM datastreams_proxy.list_streams() AS s ORDER BY s.id},
		extra_params => [ '-U', $role ]);
	is(scalar(@rows), 20, "$label: list_streams returns the 20 streams");

	my %conninfo_of = map { (shard_conninfo($_) => $_) } @nodes;
	my ($placed, $hashed) = (0, 0);
	for my $row (@rows)
	{
		my ($id, $partition, $hash_partition, $conninfo) = split /\|/, $row;
		$hashed++ if $partition == $hash_partition && $partition < $partitions;
		my $node = $conninfo_of{$conninfo} or next;
		# the superuser sees every account's rows
		my $here = $node->safe_psql('postgres',
			"SELECT count(*) FROM datastreams.streams WHERE id = '$id'");
		my $total = 0;
		$total += $_->safe_psql('postgres',
			"SELECT count(*) FROM datastreams.streams WHERE id = '$id'")
		  for @nodes;
		$placed++ if $here == 1 && $total == 1;
		$on_shard{$conninfo}++;
	}
	is($hashed, 20, "$label: partition_of() is stream_hash() & (partitions - 1)");
	is($placed, 20, "$label: each stream is stored once, on the shard shard_of() names");
	is(scalar(keys %on_shard), scalar(@nodes), "$label: every shard holds streams");
}

is($proxy->safe_psql('postgres', 'SELECT datastreams_proxy.partition_count()'),
	'8', 'partition_count() reads the map');
check_placement('2 shards x 8', 'regress_tenant_a', 8, @shards);

# A chosen partition hash places the stream; the id is still generated.
my $placed = $proxy->safe_psql(
	'postgres', q{
SELECT datastreams_proxy.partition_of(s.id), datastreams.stream_hash(s.id)
  FROM datastreams_proxy.create_stream('chosen', 'C', partition_hash => 13) AS s},
	extra_params => [ '-U', 'regress_tenant_a' ]);
is($placed, '5|13', 'partition_hash chooses the partition (13 & 7 = 5) and the hash');

# Grow to 4 shards x 16 partitions; accounts reach the new shards with
# sync_accounts().  Account b's streams are all created on the new map.
push @shards, new_shard('shard2'), new_shard('shard3');
set_cluster_map($proxy, 16, @shards);
is($proxy->safe_psql('postgres', 'SELECT datastreams_proxy.sync_accounts()'),
	'2', 'sync_accounts() sends both accounts to every shard');
is($shards[3]->safe_psql('postgres', 'SELECT string_agg(id, \',\' ORDER BY id) FROM datastreams.accounts'),
	'a,b', 'a new shard has the accounts');
is($proxy->safe_psql('postgres', 'SELECT datastreams_proxy.partition_count()'),
	'16', 'partition_count() follows the map');
check_placement('4 shards x 16', 'regress_tenant_b', 16, @shards);

$_->stop for ($proxy, @shards);
done_testing();
