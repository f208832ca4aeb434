#!/usr/bin/env bash
# The datastreams-http benchmark.  Measures; asserts nothing.
#
#   sudo DATASTREAMS_PG_ROOT=/tmp/pg-x test/bench/http.sh
#   sudo HTTPBENCH_QUICK=1 test/bench/http.sh        (1 run x 2 s per cell)
#
# Starts a throwaway PostgreSQL 15 cluster owned by 'postgres' with default
# settings (fsync and synchronous_commit on) except
# shared_preload_libraries = 'datastreams', and datastreams-http on it, and
# compares in the same run:
#   1. POST .../frames through the gateway against datastreams.create_frame()
#      over libpq, each at 1, 4, 8 and 16 concurrent clients (the gateway's
#      pool as large as the number of clients): requests/s, the ratio, and
#      the latency p50/p99;
#   2. the delay from a frame's INSERT (clock_timestamp() in its payload) to
#      its event in an SSE client, with 1 and with 100 clients attached.
# Prints one markdown table and writes it with a header to
# test/bench/http-results.md (HTTPBENCH_OUT).
#
# Uses the extension and datastreams-http installed in DATASTREAMS_PG_ROOT
# (a private copy made by scripts/lib.sh) or in the system; with
# HTTPBENCH_BUILD=1 it builds and installs this tree there first.
#
# Environment: HTTPBENCH_QUICK, HTTPBENCH_RUNS (3; quick 1),
# HTTPBENCH_SECONDS (5; quick 2), HTTPBENCH_CLIENTS ("1 4 8 16"),
# HTTPBENCH_SSE_FRAMES (200; quick 50), HTTPBENCH_SSE_RATE (20 per second),
# HTTPBENCH_SYNCHRONOUS_COMMIT (on; off measures the CPU-bound case, where
# commits do not wait for the disk), HTTPBENCH_PORT (56350: the cluster; the
# gateway takes the next one),
# HTTPBENCH_OUT, HTTPBENCH_KEEP=1 (keep the scratch directory).
set -Eeuo pipefail

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_SRC/../.." && pwd)
. "$ROOT/scripts/lib.sh"

QUICK=${HTTPBENCH_QUICK:-0}
RUNS=${HTTPBENCH_RUNS:-$([ "$QUICK" = 1 ] && echo 1 || echo 3)}
DUR=${HTTPBENCH_SECONDS:-$([ "$QUICK" = 1 ] && echo 2 || echo 5)}
CLIENTS=${HTTPBENCH_CLIENTS:-1 4 8 16}
SSE_FRAMES=${HTTPBENCH_SSE_FRAMES:-$([ "$QUICK" = 1 ] && echo 50 || echo 200)}
SSE_RATE=${HTTPBENCH_SSE_RATE:-20}
SYNC=${HTTPBENCH_SYNCHRONOUS_COMMIT:-on}
PORT=${HTTPBENCH_PORT:-56350}
GW_PORT=$((PORT + 1))
OUT=${HTTPBENCH_OUT:-$BENCH_SRC/http-results.md}
DB=postgres

ds_pick_os_user
if [ "${HTTPBENCH_BUILD:-0}" = 1 ]; then
	ds_build_install
fi
[ -x "$DS_PGBIN/datastreams-http" ] || ds_die "datastreams-http is not installed in $DS_PGBIN (make install, or HTTPBENCH_BUILD=1)"

WORK=$(mktemp -d /var/tmp/datastreams-httpbench.XXXXXX)
chmod 755 "$WORK"
ds_give_to_pg "$WORK"
GW_PID=""
cleanup() {
	local rc=$?
	[ -z "$GW_PID" ] || { kill "$GW_PID" 2>/dev/null; wait "$GW_PID" 2>/dev/null || true; }
	ds_cluster_stop "$WORK/data"
	if [ "$rc" -eq 0 ] && [ "${HTTPBENCH_KEEP:-0}" = 0 ]; then rm -rf "$WORK"; else echo "scratch directory kept: $WORK"; fi
}
trap cleanup EXIT

ds_info "compiling test/bench/http_bench.c"
cc -O2 -Wall -pthread -I"$(pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)" \
	"$BENCH_SRC/http_bench.c" -lpq -o "$WORK/http_bench"

ds_cluster_init "$WORK/data" "$WORK" "$PORT"
printf 'max_connections = 200\nsynchronous_commit = %s\n' "$SYNC" >>"$WORK/data/postgresql.conf"
ds_cluster_start "$WORK/data" "$WORK/server.log"
ds_psql "$WORK" "$PORT" -d "$DB" -q >/dev/null <<'EOF'
CREATE EXTENSION datastreams;
CREATE ROLE bench_gateway LOGIN;
CREATE ROLE bench_tenant LOGIN;
SELECT datastreams.trust_role('bench_gateway');
GRANT EXECUTE ON FUNCTION datastreams.resolve_api_token(text) TO bench_gateway;
SELECT datastreams.create_account('bench', 'bench_tenant');
EOF
TOKEN=$(ds_psql "$WORK" "$PORT" -d "$DB" -Atc "SELECT token FROM datastreams.create_api_token('bench')")
new_stream() {
	ds_psql "$WORK" "$PORT" -d "$DB" -Atc \
		"SET datastreams.account_id = 'bench'; SELECT id FROM datastreams.create_stream('$1', '$1', status => 'active')" | tail -n 1
}
CONNINFO_GW="host=$WORK port=$PORT dbname=$DB user=bench_gateway"
CONNINFO_TENANT="host=$WORK port=$PORT dbname=$DB user=bench_tenant"

start_gateway() {
	"$DS_PGBIN/datastreams-http" --listen "127.0.0.1:$GW_PORT" --dbname "$CONNINFO_GW" \
		--pool "$1" --threads 2 >/dev/null 2>>"$WORK/gateway.err" &
	GW_PID=$!
	for _ in $(seq 1 100); do
		curl -sf "http://127.0.0.1:$GW_PORT/healthz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	ds_die "datastreams-http did not start (see $WORK/gateway.err)"
}
stop_gateway() { kill "$GW_PID"; wait "$GW_PID" || true; GW_PID=""; }
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

ROWS=()
for c in $CLIENTS; do
	S=$(new_stream "bench$c")
	start_gateway "$c"
	: >"$WORK/gw.$c"; : >"$WORK/pq.$c"
	for r in $(seq 1 "$RUNS"); do
		ds_info "clients=$c run $r: libpq, then the gateway"
		timeout $((DUR + 60)) "$WORK/http_bench" libpq "$CONNINFO_TENANT" bench "$S" "$c" "$DUR" >>"$WORK/pq.$c"
		timeout $((DUR + 60)) "$WORK/http_bench" post 127.0.0.1 "$GW_PORT" \
			"/accounts/bench/datastreams/streams/$S/frames" "$TOKEN" "$c" "$DUR" >>"$WORK/gw.$c"
	done
	stop_gateway
	pq=$(field rate <"$WORK/pq.$c" | median)
	gw=$(field rate <"$WORK/gw.$c" | median)
	ROWS+=("| $c | $(printf '%.0f' "$pq") | $(printf '%.0f' "$gw") | $(awk -v a="$gw" -v b="$pq" 'BEGIN {printf "%.2f", a / b}') \
| $(field p50_ms <"$WORK/pq.$c" | median) / $(field p99_ms <"$WORK/pq.$c" | median) \
| $(field p50_ms <"$WORK/gw.$c" | median) / $(field p99_ms <"$WORK/gw.$c" | median) |")
done

SSE_ROWS=()
S=$(new_stream events)
start_gateway 4
for n in 1 100; do
	ds_info "SSE: $n clients, $SSE_FRAMES frames at $SSE_RATE/s"
	line=$(timeout $((SSE_FRAMES / SSE_RATE + 120)) "$WORK/http_bench" sse 127.0.0.1 "$GW_PORT" \
		"/accounts/bench/datastreams/streams/$S/events" "$TOKEN" "$n" "$CONNINFO_TENANT" bench "$S" \
		"$SSE_FRAMES" "$SSE_RATE")
	echo "$line"
	SSE_ROWS+=("| $n | $(echo "$line" | field events) | $(echo "$line" | field missing) | $(echo "$line" | field p50_ms) | $(echo "$line" | field p99_ms) | $(echo "$line" | field max_ms) |")
done
stop_gateway

{
	echo "# datastreams-http benchmark"
	echo
	echo "$(date -u +%Y-%m-%d) on $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)),"
	echo "PostgreSQL $("$DS_PGBIN/postgres" --version | awk '{print $3}'), default settings except synchronous_commit = $SYNC (fsync on),"
	echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); $RUNS run(s) of $DUR s per cell, medians; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo "Produced by \`test/bench/http.sh\`."
	echo
	echo "## POST .../frames through the gateway vs create_frame() over libpq"
	echo
	echo "| clients | libpq create_frame/s | gateway POST/s | ratio | libpq p50 / p99 ms | gateway p50 / p99 ms |"
	echo "|---|---|---|---|---|---|"
	printf '%s\n' "${ROWS[@]}"
	echo
	echo "## INSERT to SSE receipt ($SSE_FRAMES frames at $SSE_RATE/s, one writer)"
	echo
	echo "| SSE clients | events received | missing | p50 ms | p99 ms | max ms |"
	echo "|---|---|---|---|---|---|"
	printf '%s\n' "${SSE_ROWS[@]}"
} >"$OUT"
cat "$OUT"
