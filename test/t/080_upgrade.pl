# Upgrades: install the oldest version (1.0) with data, run ALTER EXTENSION
# datastreams UPDATE, and prove
#  (a) data, latest-frame pointers and row-level security survive;
#  (b) the upgraded schema equals a fresh install of the new version
#      (pg_dump --schema-only, and pg_dump --binary-upgrade, which also
#      dumps the extension's member objects one by one);
#  (c) the new C library works with the 1.0 SQL (what runs between
#      `make install` and ALTER EXTENSION UPDATE) and with the upgraded SQL.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'datastreams'
datastreams.prune_interval = 0
});
$node->start;

my $default_version = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'datastreams'");
my @versions = split /\n/,
  $node->safe_psql('postgres',
	"SELECT version FROM pg_available_extension_versions WHERE name = 'datastreams' ORDER BY version");
is($versions[0], '1.0', 'the oldest supported version is 1.0');
isnt($default_version, '1.0', "the default version ($default_version) is newer than 1.0");

$node->safe_psql('postgres', 'CREATE DATABASE upgraded');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');

sub sql { return $node->safe_psql('upgraded', $_[0]); }

# psql on 'upgraded'; returns (stdout, stderr) without dying on errors
sub try_sql
{
	my ($rc, $out, $err) = $node->psql('upgraded', $_[0]);
	return ($out, $err);
}

# ---------------------------------------------------------------------------
# 1.0 with data, written through the new library
# ---------------------------------------------------------------------------
sql("CREATE EXTENSION datastreams VERSION '1.0'");
is(sql("SELECT extversion FROM pg_extension WHERE extname = 'datastreams'"),
	'1.0', 'installed at 1.0');
is( sql("SELECT count(*) FROM pg_attribute WHERE attrelid = 'datastreams.streams'::regclass AND attname = 'retention'"),
	'0', 'the 1.0 SQL has no retention column');

sql(q{
CREATE ROLE regress_tenant_a;
CREATE ROLE regress_tenant_b;
CREATE ROLE regress_app;
SELECT datastreams.create_account('a', 'regress_tenant_a');
SELECT datastreams.create_account('b', 'regress_tenant_b');
SELECT datastreams.create_account('c');
SELECT datastreams.trust_role('regress_app');
});

# Streams through the 1.0 API (seven-argument create_stream) and directly
my $sa1 = sql("SET ROLE regress_tenant_a;
	SELECT id FROM datastreams.create_stream('a1', 'aaa', 'first', '1 second', 100, 'active', '{\"k\": \"v\"}')");
my $sa2 = sql("SET ROLE regress_tenant_a;
	INSERT INTO datastreams.streams (name, symbol, status) VALUES (' a2 ', 'bbb', 'ACTIVE') RETURNING id");
my $sb1 = sql("SET ROLE regress_tenant_b; SELECT id FROM datastreams.create_stream('b1', 'ccc')");
my $sc1 = sql("SET ROLE regress_app; SET datastreams.account_id = 'c';
	SELECT id FROM datastreams.create_stream('c1', 'ddd', status => 'active')");
is(sql("SET ROLE regress_tenant_a; SELECT name || ' ' || symbol || ' ' || status FROM datastreams.get_stream('$sa2')"),
	'a2 BBB active', 'old SQL, new library: the streams trigger normalises a direct INSERT');
is(sql("SET ROLE regress_tenant_b;
	SELECT sla_ms FROM datastreams.update_stream('$sb1', '{\"sla_ms\": 50, \"status\": \"active\"}')"),
	'50', 'old SQL, new library: update_stream');
my (undef, $err) = try_sql("SET ROLE regress_tenant_b;
	SELECT datastreams.update_stream('$sb1', '{\"frequency\": \"-1 second\"}')");
like($err, qr/frequency must be positive/, 'old SQL, new library: the streams trigger still checks its rules');

# Frames: create_frame, ingest(), push(), INSERT, COPY
sql("SET ROLE regress_tenant_a;
	SELECT datastreams.create_frame('$sa1', 1, '{\"v\": 1}', 10);
	SELECT datastreams.create_frame('$sa1', 2, '{\"v\": 2}', 200);
	SELECT datastreams.ingest('$sa1', '[{\"sequence\": 3}, {\"sequence\": 4, \"status\": \"error\"}, {\"sequence\": 5}]');
	SELECT datastreams.push('datastreams/$sa2', '{\"price\": 1.5}');");
sql("SET ROLE regress_tenant_b;
	INSERT INTO datastreams.frames (stream_id, sequence, payload) SELECT '$sb1', g, jsonb_build_object('g', g) FROM generate_series(1, 50) AS g;");
# (COPY FROM is not available under row-level security: as the superuser)
sql("COPY datastreams.frames (stream_id, sequence) FROM STDIN;
$sc1	7
$sc1	9
\\.
");
# old frames, to be pruned once the new version is installed
sql("INSERT INTO datastreams.frames (stream_id, sequence, created_at)
	 SELECT '$sb1', g, now() - interval '10 days' FROM generate_series(51, 60) AS g");
sql("INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('$sb1', 61)");
is(sql("SELECT count(*) FROM datastreams.frames"), '69', 'old SQL, new library: 69 frames ingested');
($_, $err) = try_sql("SET ROLE regress_tenant_a; SELECT datastreams.create_frame('$sa1', 3)");
like($err, qr/sequence 3 is lower than the latest sequence/,
	'old SQL, new library: sequence ordering holds');
is(sql("SET ROLE regress_tenant_a; SELECT sequence || ' ' || status FROM datastreams.latest_frame('$sa1')"),
	'5 ok', 'old SQL, new library: latest_frame()');
is(sql("SELECT frames_ok || ' ' || frames_late || ' ' || frames_error FROM datastreams.stream_state WHERE stream_id = '$sa1'"),
	'3 1 1', 'old SQL, new library: the counters of stream_state');

# What must survive the update
my $checksum_query = q{
SELECT count(*) || ' ' || md5(string_agg(x, '|' ORDER BY x)) FROM (
	SELECT 'a ' || (a.*)::text FROM datastreams.accounts AS a
	UNION ALL SELECT 't ' || (t.*)::text FROM datastreams.trusted_roles AS t
	UNION ALL SELECT 's ' || row(s.id, s.account_id, s.name, s.symbol, s.description, s.frequency,
		s.sla_ms, s.status, s.metadata, s.created_at, s.updated_at)::text FROM datastreams.streams AS s
	UNION ALL SELECT 'f ' || (f.*)::text FROM datastreams.frames AS f
	UNION ALL SELECT 'st ' || row(st.stream_id, st.account_id, st.latest_frame_id, st.latest_sequence,
		st.latest_created_at, st.frames_ok, st.frames_late, st.frames_error, st.latency_ms_total,
		st.updated_at)::text FROM datastreams.stream_state AS st) AS d(x)};
my $tenant_view_query = q{
SELECT (SELECT string_agg(name, ',' ORDER BY name) FROM datastreams.list_streams())
	|| ' ' || (SELECT count(*) FROM datastreams.frames)
	|| ' ' || (SELECT count(*) FROM datastreams.stream_state)
	|| ' ' || (SELECT count(*) FROM datastreams.accounts)};
my $latest_query = q{
SELECT string_agg(st.stream_id || '=' || f.id || '/' || f.sequence, ',' ORDER BY st.stream_id)
  FROM datastreams.stream_state AS st JOIN datastreams.frames AS f ON f.id = st.latest_frame_id};
my $rls_query = q{
SELECT string_agg(c.relname || ':' || c.relrowsecurity || c.relforcerowsecurity, ',' ORDER BY c.relname)
  FROM pg_class AS c WHERE c.relnamespace = 'datastreams'::regnamespace AND c.relkind = 'r'};
my $policy_query = q{
SELECT string_agg(tablename || ' ' || policyname || ' ' || cmd || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, ''), E'\n' ORDER BY tablename, policyname)
  FROM pg_policies WHERE schemaname = 'datastreams'};

# the tables of the old version: later versions add tables of their own
my $tables_before = sql(q{
SELECT string_agg(quote_literal(relname), ',') FROM pg_class
 WHERE relnamespace = 'datastreams'::regnamespace AND relkind = 'r'});
my %before = (
	checksum => sql($checksum_query),
	tenant_a => sql("SET ROLE regress_tenant_a; $tenant_view_query"),
	tenant_b => sql("SET ROLE regress_tenant_b; $tenant_view_query"),
	app => sql("SET ROLE regress_app; SET datastreams.account_id = 'c'; $tenant_view_query"),
	latest => sql($latest_query),
	rls => sql($rls_query),
	policies => sql($policy_query));
is($before{tenant_a}, 'a1,a2 6 2 1', 'before: tenant a sees only its streams, frames, pointers and account');

# ---------------------------------------------------------------------------
# ALTER EXTENSION UPDATE
# ---------------------------------------------------------------------------
sql('ALTER EXTENSION datastreams UPDATE');
is(sql("SELECT extversion FROM pg_extension WHERE extname = 'datastreams'"),
	$default_version, "updated to $default_version");

# (a) data, pointers and row-level security survive
is(sql($checksum_query), $before{checksum}, 'every row of every table survives');
is(sql($latest_query), $before{latest}, 'every latest-frame pointer survives');
is(sql("SET ROLE regress_tenant_a; $tenant_view_query"), $before{tenant_a},
	'tenant a sees exactly what it saw before');
is(sql("SET ROLE regress_tenant_b; $tenant_view_query"), $before{tenant_b},
	'tenant b sees exactly what it saw before');
is(sql("SET ROLE regress_app; SET datastreams.account_id = 'c'; $tenant_view_query"), $before{app},
	'the trusted role acting for c sees exactly what it saw before');
is(sql("SET ROLE regress_tenant_a; SELECT count(*) FROM datastreams.frames WHERE account_id <> 'a'"),
	'0', 'tenant a sees no frame of another account');
($_, $err) = try_sql("SET ROLE regress_tenant_a; SELECT datastreams.get_stream('$sb1')");
like($err, qr/not found/, "tenant a cannot reach tenant b's stream");
is(sql("$rls_query AND c.relname IN ($tables_before)"), $before{rls},
	'row-level security flags of the old tables unchanged');
unlike(sql($rls_query), qr/:(?!truetrue)/, 'row-level security enabled and forced on every table');
is(sql("$policy_query AND tablename IN ($tables_before)"), $before{policies},
	'policies of the old tables unchanged');

# (c) the new library with the upgraded SQL
is(sql("SELECT count(*) FROM datastreams.streams WHERE retention IS NULL"), '4',
	'existing streams have no retention of their own');
my $sa3 = sql("SET ROLE regress_tenant_a;
	SELECT id FROM datastreams.create_stream('a3', 'eee', retention => '1 day')");
is(sql("SET ROLE regress_tenant_a;
	SELECT retention FROM datastreams.update_stream('$sa1', '{\"retention\": \"30 days\"}')"),
	'30 days', 'update_stream sets a retention');
is(sql("SET ROLE regress_tenant_a; SELECT sequence FROM datastreams.create_frame('$sa1', 6)"),
	'6', 'create_frame after the update');
is(sql("SET ROLE regress_tenant_a; SELECT datastreams.ingest('$sa3', '[{}, {}, {}]')"),
	'3', 'ingest() after the update');
sql("UPDATE datastreams.streams SET retention = '1 day' WHERE id = '$sb1'");
is(sql('SELECT datastreams.prune()'), '10', 'prune() removes the old frames');
is(sql("SET ROLE regress_tenant_b; SELECT sequence FROM datastreams.latest_frame('$sb1')"),
	'61', 'latest_frame() after pruning');
($_, $err) = try_sql("SET ROLE regress_tenant_a; SELECT datastreams.create_frame('$sa1', 6)");
like($err, qr/already has a frame with sequence 6/, 'sequence ordering holds after the update');

# ---------------------------------------------------------------------------
# (b) the upgraded schema equals a fresh install
# ---------------------------------------------------------------------------
$node->safe_psql('fresh', 'CREATE EXTENSION datastreams');
is($node->safe_psql('fresh', "SELECT extversion FROM pg_extension WHERE extname = 'datastreams'"),
	$default_version, "fresh install at $default_version");

# Only what differs between any two databases is normalised: the header,
# pg_dump's random \restrict key, and in binary-upgrade dumps the OIDs,
# transaction ids and attribute LSNs pg_upgrade would carry over.
sub dump_schema
{
	my ($db, @extra) = @_;
	my ($stdout, $stderr);
	my $ok = IPC::Run::run(
		[ 'pg_dump', '--schema-only', '--no-sync', @extra, '-d', $node->connstr($db) ],
		'>', \$stdout, '2>', \$stderr);
	ok($ok, "pg_dump @extra of $db") or diag($stderr);
	$stdout =~ s/^\\(un)?restrict .*$/\\$1restrict KEY/mg;
	$stdout =~ s/'\d+'::pg_catalog\.oid/'OID'::pg_catalog.oid/g;
	$stdout =~ s/(relfrozenxid|relminmxid|datfrozenxid|datminmxid) = '\d+'/$1 = 'XID'/g;
	$stdout =~ s/(WHERE oid = )'?\d+'?/$1OID/g;
	$stdout =~ s/'\{[0-9A-F\/,]+\}'::pg_catalog\.pg_lsn\[\]/'{LSNS}'::pg_catalog.pg_lsn[]/g;
	$stdout =~ s/(binary_upgrade_create_empty_extension\(.*?)'\{[\d,]*\}'/$1'{CONFIG TABLE OIDS}'/g;
	$stdout =~ s/^-- Dumped (from|by) .*$//mg;
	return $stdout;
}

my $fresh = dump_schema('fresh');
my $upgraded = dump_schema('upgraded');
like($fresh, qr/CREATE EXTENSION IF NOT EXISTS datastreams/, 'the plain dump names the extension');
is($upgraded, $fresh, 'pg_dump --schema-only: upgraded equals fresh');

$fresh = dump_schema('fresh', '--binary-upgrade');
$upgraded = dump_schema('upgraded', '--binary-upgrade');
like($fresh, qr/CREATE TABLE datastreams\.frames/,
	'the binary-upgrade dump lists the extension\'s members');
like($fresh, qr/CREATE FUNCTION datastreams\.prune\(\)/, '... including those of the new version');
like($fresh, qr/REVOKE ALL ON FUNCTION datastreams\.prune\(\) FROM PUBLIC/, '... and their privileges');
is($upgraded, $fresh, 'pg_dump --schema-only --binary-upgrade: upgraded equals fresh');
if ($upgraded ne $fresh)
{
	my $dir = PostgreSQL::Test::Utils::tempdir();
	PostgreSQL::Test::Utils::append_to_file("$dir/fresh.sql", $fresh);
	PostgreSQL::Test::Utils::append_to_file("$dir/upgraded.sql", $upgraded);
	diag(`diff -u $dir/fresh.sql $dir/upgraded.sql | head -n 80`);
}

$node->stop;
done_testing();
