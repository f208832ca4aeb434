#-------------------------------------------------------------------------
#
# ScaleoutHelper.pm
#	  Shared code of the scale-out TAP tests (test/t/2xx_scaleout_*.pl):
#	  shards (datastreams + datastreams_shard, a trusted router role), a
#	  proxy (datastreams + plproxy + datastreams_proxy) whose cluster map
#	  datastreams_cluster spreads partitions over the shards, and tenant
#	  roles on the proxy.
#
# Loaded with "use ScaleoutHelper;" (test/perl is on prove's include path); not a test.
#
#-------------------------------------------------------------------------
package ScaleoutHelper;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(new_scaleout_node new_shard new_proxy set_cluster_map
  shard_conninfo add_tenants sqlstate_of start_writer writer_log);

our $ROUTER = 'datastreams_router';
our $ROUTER_PASSWORD = 'regress-router-secret';

# The machine has 2 cores and other tests run alongside: small servers.
sub new_scaleout_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init(%opts);
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'datastreams'
timezone = 'UTC'
shared_buffers = 32MB
max_connections = 30
max_wal_senders = 6
max_replication_slots = 6
wal_level = logical
log_min_messages = warning
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION datastreams');
	return $node;
}

# A shard: the extension, its entry points, and the router role they trust.
sub new_shard
{
	my ($name, %opts) = @_;
	my $node = new_scaleout_node($name, %opts);

	$node->safe_psql(
		'postgres', qq{
CREATE EXTENSION datastreams_shard;
CREATE ROLE $ROUTER LOGIN PASSWORD '$ROUTER_PASSWORD';
SELECT datastreams_shard.authorize_router('$ROUTER');
});
	return $node;
}

sub shard_conninfo
{
	my ($node) = @_;
	return 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';
}

# Point datastreams_cluster at the shards: $partitions partitions (a power
# of two), partition i on shard i mod the number of shards.  A shard is a
# node or a connection string.  Creates the map the first time.
sub set_cluster_map
{
	my ($proxy, $partitions, @shards) = @_;
	my @conninfos = map { ref($_) ? shard_conninfo($_) : $_ } @shards;
	my @options = map {
		"p$_ '" . $conninfos[ $_ % scalar(@conninfos) ] . "'"
	} (0 .. $partitions - 1);
	my $exists = $proxy->safe_psql('postgres',
		"SELECT count(*) FROM pg_foreign_server WHERE srvname = 'datastreams_cluster'");

	$proxy->safe_psql('postgres',
		'DROP SERVER IF EXISTS datastreams_cluster CASCADE') if $exists;
	$proxy->safe_psql(
		'postgres', qq{
CREATE SERVER datastreams_cluster FOREIGN DATA WRAPPER plproxy
	OPTIONS (@{[ join(', ', @options) ]});
CREATE USER MAPPING FOR PUBLIC SERVER datastreams_cluster
	OPTIONS (user '$ROUTER', password '$ROUTER_PASSWORD');
GRANT USAGE ON FOREIGN SERVER datastreams_cluster TO PUBLIC;
});
}

sub new_proxy
{
	my ($name, $partitions, @shards) = @_;
	my $node = new_scaleout_node($name);

	$node->safe_psql('postgres',
		'CREATE EXTENSION plproxy; CREATE EXTENSION datastreams_proxy');
	set_cluster_map($node, $partitions, @shards);
	return $node;
}

# Accounts a and b with bound roles, a trusted application role and a role
# with no account; through $create ('datastreams' on one node,
# 'datastreams_proxy' on a proxy, which also creates them on the shards).
sub add_tenants
{
	my ($node, $schema) = @_;

	$node->safe_psql(
		'postgres', qq{
CREATE ROLE regress_tenant_a LOGIN;
CREATE ROLE regress_tenant_b LOGIN;
CREATE ROLE regress_app LOGIN;
CREATE ROLE regress_nobody LOGIN;
SELECT $schema.create_account('a', 'regress_tenant_a');
SELECT $schema.create_account('b', 'regress_tenant_b');
SELECT $schema.trust_role('regress_app');
});
}

# Run $sql as $role; returns "ERROR <sqlstate>" or the output.
sub sqlstate_of
{
	my ($node, $role, $sql) = @_;
	my ($out, $err) = ('', '');

	$node->psql(
		'postgres', $sql,
		stdout => \$out,
		stderr => \$err,
		extra_params => [ '-U', $role, '-v', 'VERBOSITY=sqlstate' ]);
	return "ERROR $1" if $err =~ /ERROR:\s+([0-9A-Z]{5})/;
	return $out;
}

# A writer in one proxy session, in the background for $seconds: frames 1,
# 2, 3 ... to each of @ids through datastreams_proxy.create_frame(), each
# retried until acknowledged.  $retry is the condition retried
# (serialization_failure for a partition move; others for a failover, where
# a unique_violation on a retry means the failed attempt had committed, so
# the frame counts as acknowledged).  Every acknowledgement and refusal is a
# NOTICE with the time in ms, and so is any list_streams() sample showing a
# stream twice.  Returns the IPC::Run harness and a reference to its stderr.
sub start_writer
{
	my ($proxy, $role, $seconds, $retry, @ids) = @_;
	my $array = join ', ', map { "'$_'" } @ids;
	my $sql = qq{
DO \$\$
DECLARE
	streams uuid[] := ARRAY[$array]::uuid[];
	next_seq bigint[] := array_fill(1::bigint, ARRAY[cardinality(streams)]);
	stop_at timestamptz := clock_timestamp() + interval '$seconds s';
	doubled bigint;
BEGIN
	WHILE clock_timestamp() < stop_at LOOP
		FOR i IN 1 .. cardinality(streams) LOOP
			BEGIN
				BEGIN
					PERFORM datastreams_proxy.create_frame(streams[i], next_seq[i]);
				EXCEPTION WHEN unique_violation THEN
					IF '$retry' <> 'others' THEN
						RAISE;
					END IF;
				END;
				RAISE NOTICE 'ack % % %', i, next_seq[i],
					floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
				next_seq[i] := next_seq[i] + 1;
			EXCEPTION WHEN $retry THEN
				RAISE NOTICE 'refused % % % %', i, next_seq[i],
					floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint, SQLSTATE;
			END;
		END LOOP;
		BEGIN
			SELECT count(*) - count(DISTINCT s.id) INTO doubled FROM datastreams_proxy.list_streams() AS s;
			IF doubled > 0 THEN
				RAISE NOTICE 'doubled %', doubled;
			END IF;
		EXCEPTION WHEN $retry THEN
			NULL;
		END;
		PERFORM pg_sleep(0.003);
	END LOOP;
END
\$\$;};
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-U', $role,
			'-d', $proxy->connstr('postgres'), '-c', $sql
		],
		'>', \$out, '2>', \$err);
	return ($h, \$err);
}

# What a writer's NOTICEs say, per stream index (1-based): acknowledged
# sequences, their times, refusals, the longest time between two
# acknowledgements, and how many list_streams() samples showed duplicates.
sub writer_log
{
	my ($err) = @_;
	my %log = (acked => {}, ack_ms => {}, refused => {}, gap => {}, doubled => 0);

	for my $line (split /\n/, $err)
	{
		if ($line =~ /NOTICE:  ack (\d+) (\d+) (\d+)/)
		{
			my $times = $log{ack_ms}{$1} //= [];
			$log{gap}{$1} = $3 - $times->[-1]
			  if @$times && $3 - $times->[-1] > ($log{gap}{$1} // 0);
			push @{ $log{acked}{$1} }, $2;
			push @$times, $3;
		}
		$log{refused}{$1}++ if $line =~ /NOTICE:  refused (\d+)/;
		$log{doubled}++ if $line =~ /NOTICE:  doubled/;
	}
	return \%log;
}

1;
