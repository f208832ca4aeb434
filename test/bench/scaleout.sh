#!/usr/bin/env bash
# Scale-out benchmark: the cost of datastreams_proxy.  Measures; asserts nothing.
#
#   sudo test/bench/scaleout.sh                  about 2 minutes on 2 cores
#   sudo BENCH_QUICK=1 test/bench/scaleout.sh    1 round x 1 s per cell
#
# Starts 1 proxy and 4 shards (throwaway clusters owned by 'postgres', Unix
# sockets only, default settings except shared_preload_libraries and
# shared_buffers = 32MB, so fsync and synchronous_commit are on) and
# measures, in the same run:
#   A. per call, one client (pgbench -c 1 -M prepared): create_frame(),
#      latest_frame() and ingest() of 1000 frames, directly on a shard vs
#      through the proxy: latency, and CPU per call of the proxy and of the
#      shard (utime + stime of each cluster's processes, reaped backends
#      included);
#   B. aggregate ingest, 4 clients each ingesting 1000-frame batches into a
#      stream of its own, directly on one shard and through the proxy with
#      the streams on 1, 2 and 4 shards: frames/s and CPU per frame of all
#      clusters together.
# Every cell is run BENCH_RUNS times, interleaved; medians are reported.
# The extension used is the one installed in $DATASTREAMS_PG_ROOT (or the
# system's PostgreSQL 15): build and install it first.
#
# Environment: BENCH_QUICK=1, BENCH_RUNS=N (default 3), BENCH_SECONDS=N
# (default 3), BENCH_PORT=N (first of 5 ports, default 56550),
# BENCH_OUT=FILE (default test/bench/scaleout-results.md), BENCH_KEEP=1.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -Eeuo pipefail

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PGBIN=${DATASTREAMS_PG_ROOT:-}/usr/lib/postgresql/15/bin
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	RUNS=${BENCH_RUNS:-1}
	DUR=${BENCH_SECONDS:-1}
else
	RUNS=${BENCH_RUNS:-3}
	DUR=${BENCH_SECONDS:-3}
fi
PORT0=${BENCH_PORT:-56550}
OUT=${BENCH_OUT:-$BENCH_SRC/scaleout-results.md}
CLIENTS=4
HZ=$(getconf CLK_TCK)

[ "$(id -u)" -eq 0 ] || { echo "run as root (clusters run as postgres)" >&2; exit 1; }
SCRATCH=$(mktemp -d /var/tmp/datastreams-scaleout-bench.XXXXXX)
chown postgres: "$SCRATCH"
NODES=(proxy shard0 shard1 shard2 shard3)

port_of() { local i; for i in "${!NODES[@]}"; do [ "${NODES[$i]}" = "$1" ] && echo $((PORT0 + i)); done; }
sql() { local node=$1; shift; as_pg "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SCRATCH" -p "$(port_of "$node")" -d postgres "$@"; }
conninfo() { echo "host=$SCRATCH port=$(port_of "$1") dbname=postgres"; }

cleanup() {
	local rc=$? n
	for n in "${NODES[@]}"; do
		[ ! -f "$SCRATCH/$n/postmaster.pid" ] || as_pg "$PGBIN/pg_ctl" -D "$SCRATCH/$n" -m immediate stop >/dev/null 2>&1 || true
	done
	if [ "$rc" -eq 0 ] && [ "${BENCH_KEEP:-0}" = 0 ]; then rm -rf "$SCRATCH"; else echo "scratch kept: $SCRATCH"; fi
}
trap cleanup EXIT

for n in "${NODES[@]}"; do
	as_pg "$PGBIN/initdb" -D "$SCRATCH/$n" -U postgres --auth=trust --no-locale -E UTF8 >/dev/null
	cat >>"$SCRATCH/$n/postgresql.conf" <<EOF
port = $(port_of "$n")
listen_addresses = ''
unix_socket_directories = '$SCRATCH'
shared_preload_libraries = 'datastreams'
shared_buffers = 32MB
max_connections = 30
timezone = 'UTC'
EOF
	as_pg "$PGBIN/pg_ctl" -D "$SCRATCH/$n" -l "$SCRATCH/$n.log" -w start >/dev/null
	sql "$n" -c 'CREATE EXTENSION datastreams; CREATE ROLE bench_tenant LOGIN'
done
for n in shard0 shard1 shard2 shard3; do
	sql "$n" -c "CREATE EXTENSION datastreams_shard; CREATE ROLE datastreams_router LOGIN;
		SELECT datastreams_shard.authorize_router('datastreams_router')" >/dev/null
done

# The map: 8 partitions over the first N shards.
set_map() {
	local shards=$1 p opts=()
	for p in 0 1 2 3 4 5 6 7; do opts+=("p$p '$(conninfo "shard$((p % shards))")'"); done
	sql proxy -c "DROP SERVER IF EXISTS datastreams_cluster CASCADE" 2>/dev/null
	sql proxy -c "CREATE SERVER datastreams_cluster FOREIGN DATA WRAPPER plproxy OPTIONS ($(IFS=,; echo "${opts[*]}"));
		CREATE USER MAPPING FOR PUBLIC SERVER datastreams_cluster OPTIONS (user 'datastreams_router');
		GRANT USAGE ON FOREIGN SERVER datastreams_cluster TO PUBLIC"
}
sql proxy -c 'CREATE EXTENSION plproxy; CREATE EXTENSION datastreams_proxy'
set_map 4
sql proxy -c "SELECT datastreams_proxy.create_account('a', 'bench_tenant')" >/dev/null
# Direct calls on a shard act as the same tenant there.
for n in shard0 shard1 shard2 shard3; do
	sql "$n" -c "SELECT datastreams.bind_role('a', 'bench_tenant')" >/dev/null
done

# bench.streams (client number -> stream) and bench.batch (1000 frames) on
# every node, readable by the tenant.
for n in "${NODES[@]}"; do
	sql "$n" -c "CREATE SCHEMA bench; GRANT USAGE ON SCHEMA bench TO bench_tenant;
		CREATE TABLE bench.streams (n int PRIMARY KEY, id uuid NOT NULL);
		CREATE TABLE bench.batch AS SELECT jsonb_agg(jsonb_build_object('payload', jsonb_build_object('v', g, 'price', g * 1.5))) AS doc
		  FROM generate_series(1, 1000) AS g;
		GRANT SELECT ON bench.streams, bench.batch TO bench_tenant"
done

# bench_streams NODE SCHEMA SHARDS: CLIENTS fresh streams, client i's in
# partition i (on shard i mod SHARDS), recorded on NODE.
bench_streams() {
	local node=$1 schema=$2 i id
	sql "$node" -c 'TRUNCATE bench.streams'
	for i in $(seq 1 "$CLIENTS"); do
		if [ "$schema" = datastreams_proxy ]; then
			id=$(sql proxy -U bench_tenant -c "SELECT id FROM datastreams_proxy.create_stream('bench', 'B', partition_hash => $((i - 1)))")
		else
			id=$(sql "$node" -U bench_tenant -c "SELECT id FROM datastreams.create_stream('bench', 'B')")
		fi
		sql "$node" -c "INSERT INTO bench.streams VALUES ($i, '$id')"
	done
}

# CPU ticks of a cluster: the postmaster, its reaped children, its live ones.
cpu_ticks() {
	local pid total=0 f
	pid=$(head -1 "$SCRATCH/$1/postmaster.pid")
	read -r -a f < <(sed 's/^.*) //' "/proc/$pid/stat")
	total=$((f[11] + f[12] + f[13] + f[14]))
	for c in $(ps -o pid= --ppid "$pid"); do
		[ -r "/proc/$c/stat" ] || continue
		read -r -a f < <(sed 's/^.*) //' "/proc/$c/stat") || continue
		total=$((total + f[11] + f[12]))
	done
	echo "$total"
}

# run NODE SCRIPT CLIENTS -> "tps cpu_proxy_ticks cpu_shards_ticks latency_ms"
run() {
	local node=$1 script=$2 clients=$3 before_p before_s after_p after_s out n
	before_p=$(cpu_ticks proxy); before_s=0
	for n in shard0 shard1 shard2 shard3; do before_s=$((before_s + $(cpu_ticks "$n"))); done
	out=$(as_pg "$PGBIN/pgbench" -n -M prepared -h "$SCRATCH" -p "$(port_of "$node")" -U bench_tenant \
		-c "$clients" -j "$((clients > 1 ? 2 : 1))" -T "$DUR" -f "$script" postgres 2>&1)
	after_p=$(cpu_ticks proxy); after_s=0
	for n in shard0 shard1 shard2 shard3; do after_s=$((after_s + $(cpu_ticks "$n"))); done
	echo "$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p') $((after_p - before_p)) $((after_s - before_s)) $(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for schema in datastreams datastreams_proxy; do
	cat >"$SCRATCH/create_frame.$schema.sql" <<EOF
SELECT 1 FROM $schema.create_frame((SELECT id FROM bench.streams WHERE n = 1), NULL, '{"v": 1}');
EOF
	cat >"$SCRATCH/latest_frame.$schema.sql" <<EOF
SELECT 1 FROM $schema.latest_frame((SELECT id FROM bench.streams WHERE n = 1));
EOF
	cat >"$SCRATCH/ingest.$schema.sql" <<EOF
SELECT $schema.ingest((SELECT id FROM bench.streams WHERE n = :client_id + 1), (SELECT doc FROM bench.batch));
EOF
done
chown postgres: "$SCRATCH"/*.sql

# ---- A: per call, one client ---------------------------------------------
# The proxy's streams all on shard0 (partitions 0..3 -> shard0 with 1 shard).
set_map 1
bench_streams shard0 datastreams 1
bench_streams proxy datastreams_proxy 1
declare -A LAT CPUP CPUS
for r in $(seq 1 "$RUNS"); do
	for call in create_frame latest_frame ingest; do
		for target in direct proxy; do
			if [ "$target" = direct ]; then
				read -r tps cp cs lat < <(run shard0 "$SCRATCH/$call.datastreams.sql" 1)
			else
				read -r tps cp cs lat < <(run proxy "$SCRATCH/$call.datastreams_proxy.sql" 1)
			fi
			calls=$(awk -v t="$tps" -v d="$DUR" 'BEGIN { print t * d }')
			LAT[$call.$target]+="$lat "
			CPUP[$call.$target]+="$(awk -v c="$cp" -v n="$calls" -v hz="$HZ" 'BEGIN { printf "%.1f", c / hz * 1e6 / n }') "
			CPUS[$call.$target]+="$(awk -v c="$cs" -v n="$calls" -v hz="$HZ" 'BEGIN { printf "%.1f", c / hz * 1e6 / n }') "
		done
	done
done

# ---- B: aggregate ingest ---------------------------------------------------
declare -A FPS CPF
configs="direct1 proxy1 proxy2 proxy4"
for r in $(seq 1 "$RUNS"); do
	for cfg in $configs; do
		shards=${cfg//[a-z]/}
		if [ "${cfg%%[0-9]*}" = direct ]; then
			bench_streams shard0 datastreams 1
			read -r tps cp cs lat < <(run shard0 "$SCRATCH/ingest.datastreams.sql" "$CLIENTS")
		else
			set_map "$shards"
			bench_streams proxy datastreams_proxy "$shards"
			read -r tps cp cs lat < <(run proxy "$SCRATCH/ingest.datastreams_proxy.sql" "$CLIENTS")
		fi
		frames=$(awk -v t="$tps" -v d="$DUR" 'BEGIN { print t * d * 1000 }')
		FPS[$cfg]+="$(awk -v t="$tps" 'BEGIN { printf "%.0f", t * 1000 }') "
		CPF[$cfg]+="$(awk -v c="$((cp + cs))" -v n="$frames" -v hz="$HZ" 'BEGIN { printf "%.2f", c / hz * 1e6 / n }') "
	done
done

m() { tr ' ' '\n' <<<"$1" | grep . | median; }
{
	echo "# Scale-out benchmark results"
	echo
	echo "$(date -u +%Y-%m-%d), $(nproc) cores, $("$PGBIN/postgres" --version), commit $(git -C "$BENCH_SRC" rev-parse --short HEAD 2>/dev/null || echo '?'),"
	echo "runs per cell $RUNS x $DUR s (medians), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo "Clusters: 1 proxy + 4 shards on this machine, Unix sockets, default settings (fsync on), shared_buffers 32MB."
	echo
	echo "## A. Per call, one client"
	echo
	echo "| call | direct on a shard: latency | through the proxy: latency | overhead | proxy CPU per call | shard CPU per call (direct / through the proxy) |"
	echo "|---|---|---|---|---|---|"
	for call in create_frame latest_frame ingest; do
		d=$(m "${LAT[$call.direct]}"); p=$(m "${LAT[$call.proxy]}")
		printf '| %s | %.3f ms | %.3f ms | %+.3f ms | %.0f µs | %.0f / %.0f µs |\n' \
			"$([ $call = ingest ] && echo 'ingest (1000 frames)' || echo "$call")" "$d" "$p" \
			"$(awk -v a="$p" -v b="$d" 'BEGIN { print a - b }')" "$(m "${CPUP[$call.proxy]}")" \
			"$(m "${CPUS[$call.direct]}")" "$(m "${CPUS[$call.proxy]}")"
	done
	echo
	echo "## B. Aggregate ingest, $CLIENTS clients, 1000-frame ingest() batches"
	echo
	echo "| setup | frames/s | vs direct | CPU per frame (all clusters) |"
	echo "|---|---|---|---|"
	base=$(m "${FPS[direct1]}")
	for cfg in $configs; do
		case $cfg in
		direct1) label='direct, 1 shard' ;;
		proxy1) label='proxy, 1 shard' ;;
		*) label="proxy, ${cfg#proxy} shards" ;;
		esac
		printf '| %s | %.0f | %.2fx | %.1f µs |\n' "$label" "$(m "${FPS[$cfg]}")" \
			"$(awk -v a="$(m "${FPS[$cfg]}")" -v b="$base" 'BEGIN { print a / b }')" "$(m "${CPF[$cfg]}")"
	done
} | tee "$OUT"
