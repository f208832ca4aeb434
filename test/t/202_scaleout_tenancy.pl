#-------------------------------------------------------------------------
#
# 202_scaleout_tenancy.pl
#	  Tenancy through the proxy: the account is resolved on the proxy and
#	  a caller naming another account is refused there (42501) before
#	  anything reaches a shard; the router's credential is invisible to
#	  tenants; tenants cannot write PL/Proxy functions, call the shard entry
#	  points or the fan-out administration, or choose a stream id.  And the
#	  pinned difference from one node: ROLLBACK on the proxy undoes nothing
#	  on the shards.
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

sub as
{
	my ($role, $sql) = @_;
	return sqlstate_of($proxy, $role, $sql);
}

my $sb = as('regress_tenant_b', q{SELECT id FROM datastreams_proxy.create_stream('of b', 'B')});
my $sa = as('regress_tenant_a', q{SELECT id FROM datastreams_proxy.create_stream('of a', 'A')});
like($sb, qr/^[0-9a-f-]{36}$/, 'b creates a stream through the proxy');

# Every routed function refuses an account the caller does not act for.
my @routed = (
	qq{datastreams_proxy.create_stream('x', 'x', account => 'b')},
	qq{datastreams_proxy.get_stream('$sb', account => 'b')},
	qq{datastreams_proxy.update_stream('$sb', '{"name": "taken"}', account => 'b')},
	qq{datastreams_proxy.create_frame('$sb', 1, account => 'b')},
	qq{datastreams_proxy.ingest('$sb', '[{"sequence": 2}]', account => 'b')},
	qq{datastreams_proxy.push('datastreams/$sb', '{}', account => 'b')},
	qq{datastreams_proxy.list_frames('$sb', account => 'b')},
	qq{datastreams_proxy.frames_since('$sb', 0, account => 'b')},
	qq{datastreams_proxy.latest_frame('$sb', account => 'b')},
	qq{datastreams_proxy.list_streams(account => 'b')},
	qq{datastreams_proxy.list_streams(account => NULL)});
is(as('regress_tenant_a', "SELECT * FROM $_"), 'ERROR 42501',
	"bound role naming account b: $_")
  for @routed;
is(as('regress_app', "SET datastreams.account_id = 'a'; SELECT * FROM $routed[3]"),
	'ERROR 42501', 'trusted role acting for a naming account b');
is(as('regress_app', "SELECT * FROM $routed[3]"),
	'ERROR 42501', 'trusted role without an account naming account b');
is(as('regress_nobody', "SELECT * FROM $routed[3]"),
	'ERROR 42501', 'role with no account naming account b');
is(as('regress_tenant_a', qq{SELECT name FROM datastreams_proxy.get_stream('$sa', account => 'a')}),
	'of a', 'naming its own account is allowed');

# Nothing was sent: b's stream on its shard is unchanged.
my $b_state = join ',', map {
	$_->safe_psql('postgres',
		"SELECT name || ':' || (SELECT count(*) FROM datastreams.frames WHERE stream_id = '$sb') FROM datastreams.streams WHERE id = '$sb'")
} @shards;
like($b_state, qr/^,?of b:0,?$/, "b's stream got no frame and kept its name");

# The router's credential and the shards' entry points.
is(as('regress_tenant_a',
		q{SELECT coalesce(umoptions::text, 'hidden') FROM pg_user_mappings WHERE srvname = 'datastreams_cluster'}),
	'hidden', 'tenants do not see the router password');
is(as('regress_tenant_a',
		q{CREATE FUNCTION public.mine(i int) RETURNS int LANGUAGE plproxy AS $$ CLUSTER 'datastreams_cluster'; RUN ON 0; $$}),
	'ERROR 42501', 'tenants cannot write PL/Proxy functions');
is(as('regress_tenant_a', q{SELECT datastreams_proxy.ensure_account_on_shards('z')}),
	'ERROR 42501', 'tenants cannot create accounts on the shards');
is(as('regress_tenant_a', q{SELECT datastreams_proxy.sync_accounts()}),
	'ERROR 42501', 'tenants cannot sync accounts');
is(as('regress_tenant_a', q{SELECT datastreams_proxy.create_account('z')}),
	'ERROR 42501', 'tenants cannot create accounts');

$shards[0]->safe_psql('postgres', 'CREATE ROLE regress_listener LOGIN');
is( sqlstate_of(
		$shards[0], 'regress_listener',
		qq{SELECT datastreams_shard.create_frame('b', '$sb', 1, '{}', 0, 'ok', '{}')}),
	'ERROR 42501',
	'a listen-only role on a shard cannot call the entry points');
is(sqlstate_of($shards[0], 'regress_listener', q{SELECT datastreams_shard.ensure_account('z')}),
	'ERROR 42501', 'nor create accounts there');
is(sqlstate_of($shards[0], 'regress_listener', qq{LISTEN "datastreams_$sb"; SELECT 'listening'}),
	'listening', 'but it can LISTEN');

# Ids are generated on the shard: the same partition hash gives two ids
# that share only the hash.
my ($id1, $id2) = split /\n/, as('regress_tenant_a',
	q{SELECT s.id FROM generate_series(1, 2) AS g,
		LATERAL datastreams_proxy.create_stream('same place ' || g, 'P', partition_hash => 42) AS s});
ok($id1 ne $id2 && substr($id1, 0, 8) eq '0000002a' && substr($id2, 0, 8) eq '0000002a',
	'a chosen partition hash fixes the first 32 bits only');
is(as('regress_tenant_a',
		qq{SELECT * FROM datastreams_proxy.create_stream(id => '$id1', name => 'x', symbol => 'x')}),
	'ERROR 42883', 'create_stream takes no id');

# No distributed transactions: the shard committed before the ROLLBACK.
as('regress_tenant_a',
	qq{BEGIN; SELECT datastreams_proxy.create_frame('$sa', 7); ROLLBACK;});
is(as('regress_tenant_a', qq{SELECT sequence FROM datastreams_proxy.latest_frame('$sa')}),
	'7', 'ROLLBACK on the proxy leaves the frame stored on the shard');

$_->stop for ($proxy, @shards);
done_testing();
