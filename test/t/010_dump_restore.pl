#-------------------------------------------------------------------------
#
# 010_dump_restore.pl
#	  pg_dump / pg_restore of a database using datastreams: accounts bound
#	  to roles, trusted roles, streams (active, paused, with an SLA and late
#	  frames), frames, the latest-frame pointers, consumers and their
#	  positions and the API token hashes come back identical,
#	  with row-level security still forced and still separating tenants.
#
# The extension's tables are registered with pg_extension_config_dump, so
# their rows are in the dump as TABLE DATA.  A plain pg_restore replays them
# through the extension's triggers, which treat them as new writes: the
# frames of a paused stream are refused (and with them the whole frames
# table), the stream_state rows collide with the pointers the frames
# trigger has just written, and every stream's updated_at becomes the time
# of the restore.  The procedure that works restores with the triggers off:
#
#   PGOPTIONS='-c session_replication_role=replica' pg_restore -d NEWDB DUMP
#
# (as a superuser: only superusers may set session_replication_role).  This
# test shows both: what a plain restore does, and that the procedure above
# gives back every row unchanged.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump_restore');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'datastreams'
timezone = 'UTC'
});
$node->start;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $dump = "$tmp/source.dump";

#-------------------------------------------------------------------------
# The source database
#-------------------------------------------------------------------------
$node->safe_psql('postgres', q{
CREATE ROLE regress_dr_a LOGIN;
CREATE ROLE regress_dr_b LOGIN;
CREATE ROLE regress_dr_app LOGIN;
CREATE ROLE regress_dr_nobody LOGIN;
CREATE DATABASE source;
});

$node->safe_psql('source', q{
CREATE EXTENSION datastreams;
SELECT datastreams.create_account('acct-a', 'regress_dr_a');
SELECT datastreams.create_account('acct-b', 'regress_dr_b');
SELECT datastreams.create_account('acct-c');
SELECT datastreams.trust_role('regress_dr_app');
});

# As the tenants themselves, through the API
sub tenant_sql
{
	my ($role, $sql) = @_;
	return $node->safe_psql('source', $sql, extra_params => [ '-U', $role ]);
}

my $sla = tenant_sql('regress_dr_a', q{
SELECT id FROM datastreams.create_stream('With SLA', 'sla', 'frames with latencies',
	'1s', 100, 'active', '{"Region": " eu "}')});
my $paused = tenant_sql('regress_dr_a', q{
SELECT id FROM datastreams.create_stream('Paused', 'paused', status => 'active')});
my $empty = tenant_sql('regress_dr_a', q{
SELECT id FROM datastreams.create_stream('Empty', 'empty')});
my $b_stream = $node->safe_psql('source', q{
SET datastreams.account_id = 'acct-b';
SELECT id FROM datastreams.create_stream('Of b', 'bee', status => 'active')},
	extra_params => [ '-U', 'regress_dr_app' ]);

tenant_sql('regress_dr_a', qq{
SELECT datastreams.create_frame('$sla', 1, '{"v": 1}', 10);
SELECT datastreams.create_frame('$sla', 2, '{"v": 2}', 250);
SELECT datastreams.create_frame('$sla', 3, '{"v": 3}', 50, 'error', '{"Cause": "sensor"}');
SELECT datastreams.ingest('$sla', '[{"sequence": 10, "latency_ms": 99}, {"sequence": 11, "latency_ms": 101}, {"sequence": 12}]');
SELECT datastreams.push('datastreams/$sla', '{"pushed": true}');
SELECT datastreams.create_frame('$paused', 5, '{"before": "pause"}');
SELECT datastreams.create_frame('$paused', 6, '{"before": "pause"}');
SELECT datastreams.update_stream('$paused', '{"status": "paused"}');
-- a lower SLA after the fact: frame 1 (10 ms) stays "ok" as written
SELECT datastreams.update_stream('$sla', '{"sla_ms": 5}');
SELECT datastreams.update_stream('$empty', '{"retention": "30 days", "metadata": {"Owner": "ops"}}');
});
$node->safe_psql('source', qq{
SET datastreams.account_id = 'acct-b';
INSERT INTO datastreams.frames (stream_id, sequence, payload)
SELECT '$b_stream', g, jsonb_build_object('g', g) FROM generate_series(1, 200) AS g;
}, extra_params => [ '-U', 'regress_dr_app' ]);

# Durable consumers with positions and a frame missed by one of them
tenant_sql('regress_dr_a', qq{
SELECT datastreams.create_consumer('billing', NULL, 'earliest');
SELECT datastreams.ack('billing', '$sla', 3);
SELECT datastreams.create_consumer('sla only', ARRAY['$sla']::uuid[]);
});
$node->safe_psql('source', "DELETE FROM datastreams.frames WHERE stream_id = '$sla' AND sequence = 10");

# API tokens of the HTTP gateway (only their hashes are stored), one revoked
my $api_token = $node->safe_psql('source', q{
SELECT datastreams.revoke_api_token(id) FROM datastreams.create_api_token('acct-b', 'old');
SELECT token FROM datastreams.create_api_token('acct-a', 'deploy');
});
$api_token =~ s/^t\n//;

# Every row of every table of the extension, in a stable order
my %tables = (
	accounts => 'id',
	trusted_roles => 'role',
	streams => 'id',
	frames => 'stream_id, sequence',
	stream_state => 'stream_id',
	consumers => 'account_id, name',
	consumer_positions => 'account_id, consumer, stream_id',
	api_token_hashes => 'id');

sub table_digests
{
	my ($db) = @_;
	my %digest;
	for my $t (sort keys %tables)
	{
		$digest{$t} = $node->safe_psql($db,
			"SELECT count(*) || ' rows, md5 ' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY $tables{$t}), ''))"
			  . " FROM datastreams.$t AS t");
	}
	return \%digest;
}

my $source = table_digests('source');
note "source: $_ = $source->{$_}" for sort keys %$source;
is($node->safe_psql('source', 'SELECT count(*) FROM datastreams.frames'), '208', 'source has its frames');

my ($stdout, $stderr);
my $rc;
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('source'), '-f', $dump ], 'pg_dump -Fc');

#-------------------------------------------------------------------------
# A plain pg_restore: the triggers treat the rows as new writes
#-------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE plain');
($stdout, $stderr) = ('', '');
$rc = IPC::Run::run([ 'pg_restore', '-d', $node->connstr('plain'), $dump ], '>', \$stdout, '2>', \$stderr);
note "plain pg_restore:\n$stderr";
ok(!$rc, 'plain pg_restore reports errors');
# (no foreign key orders frames after streams: a frame is refused because
# its stream is paused, or not restored yet)
like($stderr, qr/COPY failed for table "frames": ERROR:  stream \S+ (is paused|not found)/,
	'plain pg_restore: the frames trigger refuses the frames');
my $plain = table_digests('plain');
is($node->safe_psql('plain', 'SELECT count(*) FROM datastreams.frames'), '0',
	'plain pg_restore: so no frame at all is restored');
isnt($plain->{streams}, $source->{streams}, 'plain pg_restore: the streams trigger rewrites the streams (updated_at)');

#-------------------------------------------------------------------------
# The procedure: pg_restore with session_replication_role = replica
#-------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE restored');
{
	local $ENV{PGOPTIONS} = '-c session_replication_role=replica';
	($stdout, $stderr) = ('', '');
	$rc = IPC::Run::run([ 'pg_restore', '-d', $node->connstr('restored'), $dump ],
		'>', \$stdout, '2>', \$stderr);
	ok($rc, "pg_restore with session_replication_role = replica succeeds") or diag $stderr;
	is($stderr, '', 'and prints nothing');
}

my $restored = table_digests('restored');
is($restored->{$_}, $source->{$_}, "$_: every row restored unchanged") for sort keys %tables;

# Row-level security is enabled and forced, the policies and privileges
# are those of the extension
is( $node->safe_psql('restored', q{
SELECT string_agg(relname || ':' || relrowsecurity || ',' || relforcerowsecurity, ' ' ORDER BY relname)
  FROM pg_class WHERE relnamespace = 'datastreams'::regnamespace AND relkind = 'r'}),
	'accounts:true,true api_token_hashes:true,true consumer_positions:true,true consumers:true,true frames:true,true stream_state:true,true streams:true,true trusted_roles:true,true',
	'row-level security enabled and forced on every table');
is( $node->safe_psql('restored', q{
SELECT string_agg(c.relname || '.' || p.polname, ' ' ORDER BY c.relname, p.polname)
  FROM pg_policy AS p JOIN pg_class AS c ON c.oid = p.polrelid
 WHERE c.relnamespace = 'datastreams'::regnamespace}),
	'accounts.accounts_admin accounts.accounts_tenant api_token_hashes.api_token_hashes_admin consumer_positions.consumer_positions_tenant consumers.consumers_tenant frames.frames_tenant stream_state.stream_state_tenant streams.streams_tenant trusted_roles.trusted_roles_admin',
	'the policies');
is($node->safe_psql('restored', "SELECT datastreams.resolve_api_token('$api_token')"), 'acct-a',
	'an API token made before the dump still resolves to its account');
is( $node->safe_psql('restored', q{
SELECT has_function_privilege('regress_dr_a', 'datastreams.create_account(text, regrole)', 'EXECUTE'),
	   has_table_privilege('regress_dr_a', 'datastreams.streams', 'INSERT'),
	   has_table_privilege('regress_dr_a', 'datastreams.frames', 'UPDATE')}),
	'f|t|f', 'privileges as installed');

# Tenants in the restored database
sub restored_as
{
	my ($role, $sql) = @_;
	return $node->safe_psql('restored', $sql, extra_params => [ '-U', $role ]);
}

my $visible = q{
SELECT (SELECT coalesce(string_agg(id, ',' ORDER BY id), 'no account') FROM datastreams.accounts) || ' / ' ||
	   (SELECT count(*) FROM datastreams.streams) || ' streams / ' ||
	   (SELECT count(*) FROM datastreams.frames) || ' frames / ' ||
	   (SELECT count(*) FROM datastreams.stream_state) || ' pointers'};
is(restored_as('regress_dr_a', $visible), 'acct-a / 3 streams / 8 frames / 2 pointers',
	'tenant a sees only its rows');
is(restored_as('regress_dr_b', $visible), 'acct-b / 1 streams / 200 frames / 1 pointers',
	'tenant b sees only its rows');
is(restored_as('regress_dr_nobody', $visible), 'no account / 0 streams / 0 frames / 0 pointers',
	'an unbound role sees nothing');
is( restored_as('regress_dr_b', qq{
SELECT count(*) FROM datastreams.streams WHERE id = '$sla'}), '0', "tenant b does not see a's stream");
is( $node->safe_psql('restored', qq{
SET datastreams.account_id = 'acct-b';
SELECT count(*) FROM datastreams.list_streams();
SELECT sequence FROM datastreams.latest_frame('$b_stream');},
		extra_params => [ '-U', 'regress_dr_app' ]),
	"1\n200", 'the trusted role acts for an account through the setting');

is( restored_as('regress_dr_a', qq{
SELECT string_agg(consumer || ' ' || acknowledged_sequence || ' ' || frames_missed, ', ' ORDER BY consumer)
  FROM datastreams.consumer_lag WHERE stream_id = '$sla' AND consumer = 'billing'}),
	'billing 3 1', 'consumer positions and missed-frame counts after the restore');

# The latest-frame pointers work, and the triggers are back for new writes
my $latest = restored_as('regress_dr_a', qq{
SELECT f.sequence || ' ' || f.payload::text FROM datastreams.latest_frame('$sla') AS f});
is( $latest,
	$node->safe_psql('source', qq{
SELECT sequence || ' ' || payload::text FROM datastreams.frames
 WHERE stream_id = '$sla' ORDER BY sequence DESC LIMIT 1}),
	'latest_frame() after the restore');
is(restored_as('regress_dr_a', "SELECT datastreams.latest_frame('$empty') IS NULL"), 't',
	'latest_frame() of a stream without frames');
is( restored_as('regress_dr_a', qq{
SELECT status FROM datastreams.frames WHERE stream_id = '$sla' AND sequence = 1}),
	'ok', 'frames keep the status they were written with');

my ($ret, $out, $err) = $node->psql('restored', "SELECT datastreams.create_frame('$sla', 4)",
	extra_params => [ '-U', 'regress_dr_a' ]);
like($err, qr/sequence 4 is lower than the latest sequence/, 'ordering holds after the restore');
($ret, $out, $err) = $node->psql('restored', "SELECT datastreams.create_frame('$paused', 100)",
	extra_params => [ '-U', 'regress_dr_a' ]);
like($err, qr/is paused/, 'the paused stream is still paused');
($ret, $out, $err) = $node->psql('restored', "SELECT datastreams.create_frame('$b_stream', 1000)",
	extra_params => [ '-U', 'regress_dr_a' ]);
like($err, qr/stream \S+ not found/, "tenant a cannot write b's stream");
is( restored_as('regress_dr_a', qq{
SELECT datastreams.create_frame('$sla', NULL, '{"after": "restore"}', 7) IS NOT NULL;
SELECT payload::text || ' ' || status FROM datastreams.latest_frame('$sla');
SELECT last_sequence = (SELECT max(sequence) FROM datastreams.frames WHERE stream_id = '$sla'), frames_late
  FROM datastreams.stream_health WHERE stream_id = '$sla';}),
	"t\n{\"after\": \"restore\"} late\nt|"
	  . (1 + $node->safe_psql('source', "SELECT frames_late FROM datastreams.stream_health WHERE stream_id = '$sla'")),
	'a new frame: classified with the current SLA, the latest frame and counters move on');

$node->stop;
done_testing();
