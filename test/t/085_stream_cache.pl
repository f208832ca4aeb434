# The per-backend stream cache where no isolation spec reaches: a stream
# change made with PREPARE TRANSACTION reaches other backends' caches at
# COMMIT PREPARED, run by yet another backend, and never after ROLLBACK
# PREPARED; without the library preloaded (no shared memory for the
# per-partition counters) a change still reaches every backend.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $stream_a = '00000000-0000-4000-8000-000000000031';
my $stream_b = '00000000-0000-4000-8000-000000000032';

sub setup_node
{
	my ($name, $preload) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf',
		"max_prepared_transactions = 2\n"
		  . ($preload ? "shared_preload_libraries = 'datastreams'\n" : ''));
	$node->start;
	$node->safe_psql(
		'postgres', qq{
CREATE EXTENSION datastreams;
CREATE ROLE regress_cache_tenant LOGIN;
SELECT datastreams.create_account('regress_cache', 'regress_cache_tenant');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status) VALUES
	('$stream_a', 'regress_cache', 'a', 'A', 'active'),
	('$stream_b', 'regress_cache', 'b', 'B', 'active');
});
	return $node;
}

# A tenant session that keeps its backend (and its stream cache)
sub tenant_session
{
	my ($node) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->query_safe('SET ROLE regress_cache_tenant');
	return $s;
}

# The status of the frame inserted, or the SQLSTATE of the error
sub insert_frame
{
	my ($session, $stream, $sequence, $latency) = @_;
	$latency //= 0;
	my $out = $session->query(
		"DO \$\$
		 DECLARE st text;
		 BEGIN
			INSERT INTO datastreams.frames (stream_id, sequence, latency_ms)
			VALUES ('$stream', $sequence, $latency) RETURNING status INTO st;
			RAISE NOTICE 'frame %', st;
		 EXCEPTION WHEN OTHERS THEN
			RAISE NOTICE 'frame %', SQLSTATE;
		 END \$\$");
	my ($result) = ($session->{stderr} =~ /NOTICE:  frame (\w+)/);
	$session->{stderr} = '';
	return $result // 'nothing';
}

my $node = setup_node('stream_cache', 1);
my $writer = tenant_session($node);
is(insert_frame($writer, $stream_a, 1), 'ok', 'a writer caches stream a');

# A pause prepared in another backend, committed by a third one
my $preparer = $node->background_psql('postgres');
$preparer->query_safe(
	"BEGIN;
	 UPDATE datastreams.streams SET status = 'paused' WHERE id = '$stream_a';
	 PREPARE TRANSACTION 'pause_a'");
is(insert_frame($writer, $stream_a, 2), 'ok', 'a prepared pause does not apply yet');
$node->safe_psql('postgres', "COMMIT PREPARED 'pause_a'");
is(insert_frame($writer, $stream_a, 3), '55000',
	'committed by another backend, it reaches the writer\'s cache');

# A prepared change rolled back never applies
$preparer->query_safe(
	"BEGIN;
	 UPDATE datastreams.streams SET sla_ms = 100 WHERE id = '$stream_b';
	 PREPARE TRANSACTION 'sla_b'");
is(insert_frame($writer, $stream_b, 1, 150), 'ok', 'a prepared SLA change does not apply yet');
$node->safe_psql('postgres', "ROLLBACK PREPARED 'sla_b'");
is(insert_frame($writer, $stream_b, 2, 150), 'ok', 'rolled back, it never applies');
$node->safe_psql('postgres', "UPDATE datastreams.streams SET sla_ms = 100 WHERE id = '$stream_b'");
is(insert_frame($writer, $stream_b, 3, 150), 'late', 'an SLA change committed later does');

$writer->quit;
$preparer->quit;
$node->stop;

# Without preloading: no shared memory, a change empties every cache
my $plain = setup_node('stream_cache_no_preload', 0);
$writer = tenant_session($plain);
is(insert_frame($writer, $stream_a, 1), 'ok', 'not preloaded: a writer caches stream a');
$plain->safe_psql('postgres',
	"UPDATE datastreams.streams SET status = 'paused' WHERE id = '$stream_a'");
is(insert_frame($writer, $stream_a, 2), '55000', 'not preloaded: a pause reaches it');
$writer->quit;
$plain->stop;

done_testing();
