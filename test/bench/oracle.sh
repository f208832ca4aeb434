#!/usr/bin/env bash
# Does a rejected call take as long for another account's stream as for an
# id that names no stream (issue 13, item 5)?  Measures; asserts nothing.
#
#   sudo test/bench/oracle.sh          about 1 minute
#
# Starts a throwaway preloaded cluster (owned by 'postgres', private socket)
# with the extension installed in BENCH_PGBIN's installation, and as a
# tenant calls each entry point on account a's stream and on a missing id,
# alternately, BENCH_ROUNDS rounds of BENCH_CALLS calls each, every call in
# its own subtransaction (each one fails with P0002).  Prints per entry
# point the median time per call of each kind and their ratio.
#
# Environment:
#   BENCH_PGBIN=DIR     PostgreSQL bin directory (default: DATASTREAMS_PG_ROOT's, else
#                       /usr/lib/postgresql/15/bin); the extension must be installed there
#   BENCH_ROUNDS=N      rounds (default 7)
#   BENCH_CALLS=N       calls per kind and round (default 20000)
#   BENCH_PORT=N        port (default 55790)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -Eeuo pipefail

if [ -n "${DATASTREAMS_PG_ROOT:-}" ]; then
	PGBIN=${BENCH_PGBIN:-$DATASTREAMS_PG_ROOT/usr/lib/postgresql/15/bin}
else
	PGBIN=${BENCH_PGBIN:-/usr/lib/postgresql/15/bin}
fi
ROUNDS=${BENCH_ROUNDS:-7}
CALLS=${BENCH_CALLS:-20000}
PORT=${BENCH_PORT:-55790}

SCRATCH=$(mktemp -d /tmp/datastreams-oracle.XXXXXX)
chmod 755 "$SCRATCH"
[ "$(id -u)" -ne 0 ] || chown postgres: "$SCRATCH"
cleanup() {
	as_pg "$PGBIN/pg_ctl" -D "$SCRATCH/data" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$SCRATCH"
}
trap cleanup EXIT

as_pg "$PGBIN/initdb" -D "$SCRATCH/data" -U postgres --auth=trust --no-locale -E UTF8 --no-sync >/dev/null
cat >>"$SCRATCH/data/postgresql.conf" <<EOF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$SCRATCH'
shared_preload_libraries = 'datastreams'
EOF
as_pg "$PGBIN/pg_ctl" -D "$SCRATCH/data" -l "$SCRATCH/log" -w start >/dev/null
psql() { as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SCRATCH" -p "$PORT" -d postgres "$@"; }

psql >/dev/null <<'EOF'
CREATE EXTENSION datastreams;
CREATE ROLE bench_b;
SELECT datastreams.create_account('a');
SELECT datastreams.create_account('b', 'bench_b');
INSERT INTO datastreams.streams (id, account_id, name, symbol, status)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, 'a', 's', 'S', 'active'
  FROM generate_series(1, 1000) AS g;
INSERT INTO datastreams.streams (account_id, name, symbol, status) VALUES ('b', 'own', 'OWN', 'active');
-- microseconds per failing call of one entry point on target, n times
CREATE FUNCTION public.probe(kind text, target uuid, n int) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	FOR i IN 1 .. n LOOP
		BEGIN
			CASE kind
				WHEN 'INSERT frames' THEN
					INSERT INTO datastreams.frames (stream_id, sequence) VALUES (target, 1);
				WHEN 'create_frame()' THEN
					PERFORM datastreams.create_frame(target, 1);
				WHEN 'ingest()' THEN
					PERFORM datastreams.ingest(target, '[{"sequence": 1}]');
				WHEN 'get_stream()' THEN
					PERFORM datastreams.get_stream(target);
				WHEN 'update_stream()' THEN
					PERFORM datastreams.update_stream(target, '{"name": "x"}');
				WHEN 'latest_frame()' THEN
					PERFORM datastreams.latest_frame(target);
				WHEN 'list_frames()' THEN
					PERFORM datastreams.list_frames(target);
			END CASE;
		EXCEPTION WHEN no_data_found THEN
			NULL;
		END;
	END LOOP;
	RETURN EXTRACT(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END
$$;
EOF

printf '| entry point | other account'"'"'s stream (µs/call) | missing id (µs/call) | ratio |\n|---|---:|---:|---:|\n'
for kind in 'INSERT frames' 'create_frame()' 'ingest()' 'update_stream()' 'get_stream()' 'latest_frame()' 'list_frames()'; do
	psql -At -c "SET ROLE bench_b" -c "
CREATE TEMP TABLE t (kind text, us double precision);
DO \$\$
BEGIN
	FOR r IN 1 .. $ROUNDS LOOP
		-- a different id each round, looked up for the first time in the
		-- round like the missing one
		INSERT INTO t SELECT 'other', public.probe('$kind', ('00000000-0000-4000-8000-' || lpad(to_hex(r), 12, '0'))::uuid, $CALLS);
		INSERT INTO t SELECT 'missing', public.probe('$kind', gen_random_uuid(), $CALLS);
	END LOOP;
END
\$\$;
SELECT format('| %s | %s | %s | %s |', '$kind',
	round(o::numeric, 2), round(m::numeric, 2), round((o / m)::numeric, 3))
  FROM (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY us) FILTER (WHERE kind = 'other') AS o,
			   percentile_cont(0.5) WITHIN GROUP (ORDER BY us) FILTER (WHERE kind = 'missing') AS m
		  FROM t) AS x;" | grep '^|'
done
