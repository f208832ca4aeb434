# The prune worker rests between runs under steady ingest: a run ends with the first step that deletes less than a full batch,
# although frames keep expiring, so the worker is idle most of the time and
# logs one line per prune_interval.  (A run that waited for a step deleting
# nothing never ended while a writer kept going.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('prune_rests');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'datastreams'
datastreams.prune_interval = '2s'
});
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION datastreams;
SELECT datastreams.create_account('regress_rests');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status, retention) VALUES
	('00000000-0000-4000-8000-000000000651', 'regress_rests', 'rests', 'R', 'active', '1 second'),
	('00000000-0000-4000-8000-000000000652', 'regress_rests', 'kept', 'K', 'active', '1 hour');
-- a stream whose 200000 frames are all kept: reading them made every step slow
INSERT INTO datastreams.frames (stream_id, payload)
SELECT '00000000-0000-4000-8000-000000000652', '{"v": 1}' FROM generate_series(1, 200000);
});
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'datastreams prune worker'"),
	'a prune worker runs');

# A writer for 8 seconds: 20 frames per transaction, at most 100
# transactions a second, every frame expiring one second after it was
# written.
my $offset = -s $node->logfile;
my $writer = $node->background_psql('postgres');
$writer->query_until(
	qr/writing/, q{
\echo writing
DO $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	WHILE clock_timestamp() < t0 + interval '8 seconds' LOOP
		INSERT INTO datastreams.frames (stream_id, payload)
		SELECT '00000000-0000-4000-8000-000000000651', '{"v": 1}' FROM generate_series(1, 20);
		COMMIT;
		PERFORM pg_sleep(0.01);
	END LOOP;
END
$$;
});

# Sample the worker's state while the writer runs (after the first second,
# when frames have started to expire)
usleep(1_500_000);
my ($samples, $active) = (0, 0);
for (1 .. 20)
{
	my $state = $node->safe_psql('postgres',
		"SELECT state FROM pg_stat_activity WHERE backend_type = 'datastreams prune worker'");
	$samples++;
	$active++ if $state eq 'active';
	usleep(250_000);
}
$writer->query_safe('SELECT 1');    # waits for the DO block to end
$writer->quit;

cmp_ok($active, '<=', 5, "the worker is idle most of the time ($active of $samples samples active)");
my @runs = (slurp_file($node->logfile, $offset) =~
	  /datastreams prune worker removed \d+ frames\n.*DETAIL:  (\d+) steps? in/g);
cmp_ok(scalar(@runs), '>=', 2, 'runs end while the writer goes on: ' . scalar(@runs) . ' runs logged');
cmp_ok((sort { $b <=> $a } @runs)[0] // 0, '<=', 2, 'each run took a step or two');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM datastreams.frames
		  WHERE stream_id = '00000000-0000-4000-8000-000000000651'"),
	'once the writer stops, the next run leaves the latest frame only');

$node->stop;
done_testing();
