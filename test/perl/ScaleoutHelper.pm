#-------------------------------------------------------------------------
#
# ScaleoutHelper.pm
#	  Shared code of the scale-out TAP tests (test/t/2xx_scaleout_*.pl):
#	  shards (datastreams + datastreams_shard, a trusted router role), a
#	  proxy (datastreams + plproxy + datastreams_proxy) whose cluster map
#	  datastreams_cluster spreads partitions over the shards, and tenant
#	  roles on the proxy.  Also a pg_auto_failover formation (monitor and
#	  keepers run by pg_autoctl) and PgBouncer, for the failover tests.
#
# Loaded with "use ScaleoutHelper;" (test/perl is on prove's include path); not a test.
#
#-------------------------------------------------------------------------
package ScaleoutHelper;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use Time::HiRes qw(sleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(new_scaleout_node new_shard new_proxy set_cluster_map
  shard_conninfo add_tenants sqlstate_of start_writer writer_log move_partition
  start_autoctl_monitor start_autoctl_node autoctl_psql poll_autoctl autoctl_primary
  crash_autoctl_node restart_autoctl_node start_pgbouncer repoint_pgbouncer pgbouncer_admin
  stop_services);

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

# Run scripts/move-partition.sh: $partition from shard $source to shard
# $destination, with the map on $proxy.  Returns (success, stdout, stderr).
sub move_partition
{
	my ($source, $destination, $proxy, $partition) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[
			"$ENV{DATASTREAMS_SRC}/scripts/move-partition.sh",
			'--source', shard_conninfo($source),
			'--destination', shard_conninfo($destination),
			'--proxy', $proxy->connstr('postgres'), $partition
		],
		'>', \$out, '2>', \$err);
	return ($ok, $out, $err);
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

# ---------------------------------------------------------------------
# pg_auto_failover and PgBouncer, run as separate programs; every one is
# recorded in @services and stopped by stop_services(), which a test
# calls from an END block so nothing outlives a failed test.
# ---------------------------------------------------------------------
my @services;
my $autoctl_root;

# Small servers, like new_scaleout_node's; pg_autoctl would size
# shared_buffers from the machine's memory.
my $SMALL_SERVER = q{
shared_buffers = 32MB
unix_socket_directories = ''
max_connections = 30
timezone = 'UTC'
log_min_messages = warning
};

# pg_autoctl keeps its configuration and state under the XDG directories:
# a private set per test, so nothing of the user's is read or written.
sub autoctl_root
{
	return $autoctl_root if defined $autoctl_root;
	$autoctl_root = PostgreSQL::Test::Utils::tempdir_short();
	for my $xdg (qw(config data run))
	{
		mkdir "$autoctl_root/$xdg" or die "mkdir: $!";
	}
	$ENV{XDG_CONFIG_HOME} = "$autoctl_root/config";
	$ENV{XDG_DATA_HOME} = "$autoctl_root/data";
	$ENV{XDG_RUNTIME_DIR} = "$autoctl_root/run";
	return $autoctl_root;
}

# pg_autoctl reaches its own postgres with libpq's defaults, and the TAP
# framework points PGHOST at the socket directory of its nodes: loopback
# TCP instead, which every node here listens on.
sub autoctl_command
{
	my (@args) = @_;
	return [ 'env', '-u', 'PGPORT', 'PGHOST=127.0.0.1', 'pg_autoctl', @args ];
}

# The pg_ctl of the installation under test (the first on PATH), which
# pg_autoctl uses to find initdb, postgres and pg_basebackup.
sub pg_ctl_path
{
	my $bindir = `pg_config --bindir`;
	chomp $bindir;
	return "$bindir/pg_ctl";
}

# psql on a pg_autoctl-managed server; returns the output, or undef on
# failure when $may_fail.
sub autoctl_psql
{
	my ($svc, $sql, %opts) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[
			'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1',
			'-p', $svc->{port}, '-U', 'postgres',
			'-d', $opts{dbname} // $svc->{dbname}, '-c', $sql
		],
		'>', \$out, '2>', \$err);
	chomp $out;
	return $out if $ok;
	return undef if $opts{may_fail};
	die "psql on $svc->{name} failed: $err";
}

# Polls $sql on a pg_autoctl-managed server until it returns $expected
# (true) or 2 minutes pass (false).
sub poll_autoctl
{
	my ($svc, $sql, $expected) = @_;
	for (1 .. 1200)
	{
		my $got = autoctl_psql($svc, $sql, may_fail => 1);
		return 1 if defined $got && $got eq $expected;
		sleep 0.1;
	}
	return 0;
}

sub wait_for_autoctl
{
	my ($svc, $sql, $expected, $what) = @_;
	poll_autoctl($svc, $sql, $expected) or die "timed out waiting for $what";
}

# "pg_autoctl run" in the background, logging to a file.
sub run_autoctl
{
	my ($svc) = @_;
	$svc->{harness} = IPC::Run::start(
		autoctl_command('run', '--pgdata', $svc->{pgdata}),
		'>>', "$PostgreSQL::Test::Utils::log_path/pg_autoctl_$svc->{name}.log", '2>&1');
	push @services, $svc;
}

sub create_autoctl
{
	my ($kind, $name, @options) = @_;
	my $svc = {
		name => $name,
		pgdata => autoctl_root() . "/$name",
		port => PostgreSQL::Test::Cluster::get_free_port(),
		dbname => $kind eq 'monitor' ? 'pg_auto_failover' : 'postgres'
	};

	PostgreSQL::Test::Utils::run_log(
		autoctl_command(
			'create', $kind, '--pgdata', $svc->{pgdata},
			'--pgport', $svc->{port}, '--hostname', '127.0.0.1',
			'--listen', '127.0.0.1', '--auth', 'trust', '--no-ssl',
			'--pgctl', pg_ctl_path(), @options)) or die "pg_autoctl create $kind $name failed";
	return $svc;
}

# A monitor whose postgresql.conf carries %settings (its health checks).
sub start_autoctl_monitor
{
	my ($name, %settings) = @_;
	my $sharedir = `pg_config --sharedir`;
	chomp $sharedir;

	# A private copy of PostgreSQL (DATASTREAMS_PG_ROOT) made before the
	# package was installed lacks the monitor's extension.
	-e "$sharedir/extension/pgautofailover.control"
	  or die "pgautofailover is not installed in $sharedir: install postgresql-15-auto-failover"
	  . " (a private copy under DATASTREAMS_PG_ROOT made before it was installed must be removed)";
	my $monitor = create_autoctl('monitor', $name);

	# pg_autoctl includes its own file at the top of postgresql.conf:
	# lines appended to it win.
	PostgreSQL::Test::Utils::append_to_file("$monitor->{pgdata}/postgresql.conf",
		$SMALL_SERVER . join('', map { "$_ = $settings{$_}\n" } sort keys %settings));
	run_autoctl($monitor);
	wait_for_autoctl($monitor, 'SELECT 1', '1', "monitor $name");
	$monitor->{uri} =
	  "postgres://autoctl_node\@127.0.0.1:$monitor->{port}/pg_auto_failover?sslmode=disable";
	return $monitor;
}

# The node the monitor names primary of the default formation's group 0,
# as "host port" (undef while it names none).
sub autoctl_primary
{
	my ($monitor) = @_;
	return autoctl_psql($monitor,
		q{SELECT primary_host || ' ' || primary_port FROM pgautofailover.get_primary('default', 0)},
		may_fail => 1);
}

# A data node of the monitor's default formation: the first one becomes
# the primary, the next ones are cloned from it and become synchronous
# standbys.  Its postgresql.conf preloads datastreams.  Returns once the
# monitor sees it in its stable state and healthy (the monitor promotes
# no standby it has not found healthy).
sub start_autoctl_node
{
	my ($monitor, $name) = @_;
	my $primary = autoctl_primary($monitor);

	# pg_basebackup asks the primary for a spread checkpoint, which takes
	# most of checkpoint_timeout; after a CHECKPOINT it has nothing to do.
	if (defined $primary && $primary ne '')
	{
		my ($host, $port) = split / /, $primary;
		autoctl_psql({ name => 'primary', port => $port, dbname => 'postgres' },
			'CHECKPOINT');
	}
	my $node = create_autoctl('postgres', $name, '--name', $name,
		'--monitor', $monitor->{uri});

	# When promoted, a standby waits up to this long for its WAL receiver
	# to stop (default 5 s); with synchronous replication every
	# acknowledged commit is already on it.
	PostgreSQL::Test::Utils::run_log(
		autoctl_command('config', 'set', '--pgdata', $node->{pgdata},
			'timeout.prepare_promotion_walreceiver', '1'))
	  or die "pg_autoctl config set failed";

	# A standby's postgresql.conf is the primary's copy: appending again
	# changes nothing.
	PostgreSQL::Test::Utils::append_to_file("$node->{pgdata}/postgresql.conf",
		"shared_preload_libraries = 'datastreams'\n" . $SMALL_SERVER);
	run_autoctl($node);
	wait_for_autoctl(
		$monitor,
		"SELECT reportedstate = goalstate AND reportedstate IN ('single', 'primary', 'secondary')"
		  . " AND health = 1 FROM pgautofailover.node WHERE nodename = '$name'",
		't', "node $name to join the formation");
	wait_for_autoctl($node, 'SELECT 1', '1', "node $name to accept connections");
	return $node;
}

# Start a lost node's keeper again: pg_autoctl rewinds it and makes it a
# standby of the new primary.
sub restart_autoctl_node
{
	my ($monitor, $node) = @_;
	run_autoctl($node);
	wait_for_autoctl(
		$monitor,
		"SELECT reportedstate = goalstate AND reportedstate = 'secondary' AND health = 1"
		  . " FROM pgautofailover.node WHERE nodename = '$node->{name}'",
		't', "node $node->{name} to rejoin as a standby");
}

# Lose a node: its keeper and its postgres stop at once (immediate
# shutdown), as when the machine goes away.
sub crash_autoctl_node
{
	my ($node) = @_;
	PostgreSQL::Test::Utils::run_log(
		autoctl_command('stop', '--pgdata', $node->{pgdata}, '--immediate'));
	finish_within($node->{harness}, 30);
}

sub finish_within
{
	my ($h, $seconds) = @_;
	for (1 .. $seconds * 10)
	{
		return unless $h->pumpable;
		eval { $h->pump_nb };
		sleep 0.1;
	}
	$h->kill_kill;
}

# A role for LISTEN connections through PgBouncer (see start_pgbouncer).
our $LISTENER = 'regress_listener';
our $LISTENER_PASSWORD = 'regress-listener-secret';

# PgBouncer in transaction pooling mode on a free port, one database
# "postgres" pointing at $host:$port.  The router is trusted on its Unix
# socket (mode 0700: only this OS user reaches it), where a login costs no
# key derivation, and logs in with its password (SCRAM) over TCP; postgres
# reaches the admin console without one, from loopback.  $LISTENER's
# connections are pooled by session: LISTEN needs its own server
# connection, which transaction pooling hands to other clients.
# $bouncer->{conninfo} is what a proxy's map names.
sub start_pgbouncer
{
	my ($name, $host, $port) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir_short();
	my $bouncer = {
		name => $name,
		dir => $dir,
		port => PostgreSQL::Test::Cluster::get_free_port()
	};
	$bouncer->{conninfo} = "host=$dir port=$bouncer->{port} dbname=postgres";

	PostgreSQL::Test::Utils::append_to_file("$dir/userlist.txt",
		qq{"$ROUTER" "$ROUTER_PASSWORD"\n"$LISTENER" "$LISTENER_PASSWORD"\n"postgres" ""\n});
	PostgreSQL::Test::Utils::append_to_file("$dir/hba.conf",
		"host pgbouncer postgres 127.0.0.1/32 trust\n"
		  . "local all $ROUTER trust\n"
		  . "host all $ROUTER 127.0.0.1/32 scram-sha-256\n"
		  . "host all $LISTENER 127.0.0.1/32 scram-sha-256\n");
	write_pgbouncer_ini($bouncer, $host, $port);
	my $program = -x '/usr/sbin/pgbouncer' ? '/usr/sbin/pgbouncer' : 'pgbouncer';
	$bouncer->{harness} = IPC::Run::start([ $program, "$dir/pgbouncer.ini" ],
		'>', "$dir/stdout.log", '2>&1');
	push @services, $bouncer;
	for (1 .. 100)
	{
		return $bouncer if eval { pgbouncer_admin($bouncer, 'SHOW VERSION') };
		sleep 0.1;
	}
	die "PgBouncer $name did not start";
}

# server_login_retry (default 15 s) is how long PgBouncer refuses calls
# after a failed server login, even once pointed at a live server;
# query_wait_timeout (default 120 s) bounds how long a call waits for a
# server connection.
sub write_pgbouncer_ini
{
	my ($bouncer, $host, $port) = @_;
	my $dir = $bouncer->{dir};
	my $ini = qq{[databases]
postgres = host=$host port=$port dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer->{port}
unix_socket_dir = $dir
unix_socket_mode = 0700
auth_type = hba
auth_hba_file = $dir/hba.conf
auth_file = $dir/userlist.txt
admin_users = postgres
pool_mode = transaction
logfile = $dir/pgbouncer.log
server_connect_timeout = 1
server_login_retry = 0.1
query_wait_timeout = 2

[users]
$LISTENER = pool_mode=session
};
	open my $fh, '>', "$dir/pgbouncer.ini.new" or die "open: $!";
	print $fh $ini;
	close $fh or die "close: $!";
	rename "$dir/pgbouncer.ini.new", "$dir/pgbouncer.ini" or die "rename: $!";
	$bouncer->{target} = "$host $port";
}

# Point PgBouncer's database at another server: RELOAD makes it close the
# server connections to the old one and open the next to the new one.
sub repoint_pgbouncer
{
	my ($bouncer, $host, $port) = @_;
	write_pgbouncer_ini($bouncer, $host, $port);
	pgbouncer_admin($bouncer, 'RELOAD');
}

# A command on PgBouncer's admin console (SHOW POOLS, RELOAD ...); the
# rows as a list of hashes.
sub pgbouncer_admin
{
	my ($bouncer, $command) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			'psql', '-X', '--csv', '-h', '127.0.0.1', '-p', $bouncer->{port},
			'-U', 'postgres', '-d', 'pgbouncer', '-c', $command
		],
		'>', \$out, '2>', \$err) or die "PgBouncer $command failed: $err";
	my ($header, @lines) = split /\n/, $out;
	my @columns = split /,/, $header // '';
	return [ map { my %row; @row{@columns} = split /,/, $_, -1; \%row } @lines ];
}

# Stops everything started above, newest first: pg_autoctl with its
# postgres, PgBouncer.  Safe to call twice.
sub stop_services
{
	while (my $svc = pop @services)
	{
		next unless $svc->{harness}->pumpable;
		if ($svc->{pgdata})
		{
			IPC::Run::run(autoctl_command('stop', '--pgdata', $svc->{pgdata}, '--immediate'),
				'>', '/dev/null', '2>', '/dev/null');
			finish_within($svc->{harness}, 30);
		}
		else
		{
			$svc->{harness}->signal('TERM');
			finish_within($svc->{harness}, 10);
		}
	}
	return unless defined $autoctl_root;

	# A postgres whose keeper died without stopping it.
	for my $pidfile (glob("$autoctl_root/*/postmaster.pid"))
	{
		(my $pgdata = $pidfile) =~ s{/postmaster\.pid$}{};
		IPC::Run::run([ pg_ctl_path(), 'stop', '-D', $pgdata, '-m', 'immediate' ],
			'>', '/dev/null', '2>', '/dev/null');
	}
}

1;
