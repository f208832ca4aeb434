#!/usr/bin/env bash
# Retention benchmark (issue 7): does pruning with bounded DELETEs plus
# autovacuum keep the frames table from growing, and what does pruning cost
# ingest?  Measures, prints two small tables, writes them to
# test/bench/retention-results.md; asserts nothing (the verdict lines say
# whether the targets were met).
#
#   sudo test/bench/retention.sh                  about 5 minutes on 2 cores
#   sudo RET_QUICK=1 test/bench/retention.sh      smoke run, about 1 minute
#
# 1. Bloat.  RET_CYCLES "days": each ingests RET_FRAMES_PER_DAY frames spread
#    over RET_STREAMS streams, with created_at set explicitly (as the
#    superuser) so that a day passes instantly, then prunes with
#    CALL datastreams.prune_all() whatever is older than RET_KEEP_DAYS days,
#    then waits until autovacuum has processed the frames table (a real day
#    gives it hours; autovacuum_naptime is 5s here so a compressed day gives
#    it its turn).  The table's on-disk size (pg_total_relation_size) is
#    reported after every cycle: it must plateau once the window is full.
# 2. Ingest cost.  pgbench clients insert frames into their own streams
#    (retention 2 seconds) for RET_SECONDS, alternately with the prune
#    worker off and with it on (datastreams.prune_interval = 1s, its most
#    aggressive setting, or 10s): the worker deletes frames as fast as they
#    arrive, the steady state of any retention, only with a table that turns
#    over far faster than a real one.  Every run starts from a pruned,
#    vacuumed table.  Frames per second while pruning over frames per second
#    alone should be >= 0.8.  Workloads: one frame per transaction, and 100
#    frames per INSERT with the worker every 1s and every 10s.
#
# The cluster has PostgreSQL's default settings (fsync and synchronous_commit
# on) except shared_preload_libraries = 'datastreams' and
# autovacuum_naptime = 5s.
#
# Environment:
#   RET_QUICK=1            small sizes and short runs
#   RET_CYCLES=N           days (default 10; quick 6)
#   RET_FRAMES_PER_DAY=N   frames per day (default 200000; quick 50000)
#   RET_STREAMS=N          streams sharing a day's frames (default 4)
#   RET_KEEP_DAYS=N        retention in days (default 3; quick 2)
#   RET_SECONDS=N          seconds per pgbench run (default 15; quick 5)
#   RET_ROUNDS=N           alone/pruning pairs per workload (default 2; quick 1)
#   RET_CLIENTS=N          pgbench clients (default 2)
#   RET_PORT=N             port of the throwaway cluster (default 55760; Unix
#                          socket only)
#   RET_OUT=FILE           results file (default test/bench/retention-results.md)
#   RET_KEEP=1             keep the scratch directory (cluster, logs)
#   RET_BLOAT_ONLY=1       skip part 2 (for CI: part 1 is deterministic enough
#                          to check, throughput on a shared machine is not)
#   RET_ASSERT=1           exit 1 when the plateau target is not met
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -Eeuo pipefail

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

QUICK=${RET_QUICK:-0}
if [ "$QUICK" = 1 ]; then
	CYCLES=${RET_CYCLES:-6}
	PER_DAY=${RET_FRAMES_PER_DAY:-50000}
	KEEP_DAYS=${RET_KEEP_DAYS:-2}
	SECS=${RET_SECONDS:-5}
	ROUNDS=${RET_ROUNDS:-1}
else
	CYCLES=${RET_CYCLES:-10}
	PER_DAY=${RET_FRAMES_PER_DAY:-200000}
	KEEP_DAYS=${RET_KEEP_DAYS:-3}
	SECS=${RET_SECONDS:-15}
	ROUNDS=${RET_ROUNDS:-2}
fi
STREAMS=${RET_STREAMS:-4}
CLIENTS=${RET_CLIENTS:-2}
PORT=${RET_PORT:-55760}
OUT=${RET_OUT:-$BENCH_SRC/retention-results.md}
PGBIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PGBIN/pg_config
DB=postgres			# the prune worker's datastreams.database
CHUNK=10000				# frames per INSERT statement while loading a day

WORK=""

cleanup() {
	local rc=$?
	trap - ERR
	set +e
	if [ -n "$WORK" ] && [ -f "$WORK/data/postmaster.pid" ]; then
		as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate -w -t 30 stop >/dev/null 2>&1
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ "${RET_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
			printf 'scratch directory kept: %s (server.log)\n' "$WORK" >&2
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'printf "ERROR: retention.sh line %s: %s failed\n" "$LINENO" "$BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

psql_su() {
	timeout -k 5 900 "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
		-h "$WORK" -p "$PORT" -U postgres -d "$DB" "$@"
}
q() { psql_su -At -c "$1"; }

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# --------------------------------------------------------------------------
[ -x "$PGBIN/pgbench" ] || die "pgbench is not installed ($PGBIN/pgbench)"
[ -f "$("$PG_CONFIG" --pkglibdir)/datastreams.so" ] ||
	die "the datastreams extension is not installed (make install)"
if [ "$(id -u)" -eq 0 ]; then
	id postgres >/dev/null 2>&1 || die "OS user 'postgres' does not exist"
fi
while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do PORT=$((PORT + 1)); done

WORK=$(mktemp -d /var/tmp/datastreams-retention.XXXXXX)
chmod 755 "$WORK"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$WORK"; fi
say "scratch directory $WORK"
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --no-locale \
	>"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
cat >>"$WORK/data/postgresql.conf" <<EOF

# ---- datastreams retention benchmark: defaults except these ----
port = $PORT
listen_addresses = ''
unix_socket_directories = '$WORK'
shared_preload_libraries = 'datastreams'
autovacuum_naptime = 5s
datastreams.prune_interval = 0
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w -t 60 start >/dev/null ||
	{ tail -n 30 "$WORK/server.log" >&2; die "the server did not start"; }
psql_su <<EOF
CREATE EXTENSION datastreams;
SELECT datastreams.create_account('bench') \\g /dev/null
-- day streams: no retention of their own (the pruning session sets
-- datastreams.default_retention); throughput streams: 2 seconds
INSERT INTO datastreams.streams (id, account_id, name, symbol, status)
SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'bench', 'day ' || n, 'D' || n, 'active'
  FROM generate_series(1, $STREAMS) AS n;
INSERT INTO datastreams.streams (id, account_id, name, symbol, status, retention)
SELECT ('00000000-0000-4000-8000-' || lpad((100 + n)::text, 12, '0'))::uuid, 'bench', 'ingest ' || n, 'I' || n, 'active', '2 seconds'
  FROM generate_series(0, $CLIENTS - 1) AS n;
-- day 1 starts CYCLES days ago
CREATE TABLE bench_clock AS SELECT date_trunc('day', now()) - interval '$CYCLES days' AS t0;
EOF

# --------------------------------------------------------------------------
# 1. Bloat over ingest + prune cycles
# --------------------------------------------------------------------------
PER_STREAM=$((PER_DAY / STREAMS))
declare -a ROWS_TABLE=()
declare -a TOTALS=()
say "bloat: $CYCLES days of $PER_DAY frames over $STREAMS streams, keeping $KEEP_DAYS days"
for c in $(seq 1 "$CYCLES"); do
	start=$(date +%s.%N)
	# one INSERT per stream and chunk, each its own transaction
	psql_su <<EOF
SELECT format(\$\$INSERT INTO datastreams.frames (stream_id, payload, latency_ms, created_at)
SELECT %L, jsonb_build_object('i', g, 'price', round((random() * 1000)::numeric, 2), 'qty', (random() * 100)::int), g %% 200,
       t0 + interval '$((c - 1)) days' + (g - 1) * (interval '1 day' / $PER_STREAM)
  FROM bench_clock, generate_series(%s, %s) AS g\$\$,
       ('00000000-0000-4000-8000-' || lpad(s::text, 12, '0')), k + 1, least(k + $CHUNK, $PER_STREAM))
  FROM generate_series(1, $STREAMS) AS s, generate_series(0, $PER_STREAM - 1, $CHUNK) AS k
 ORDER BY k, s
\\gexec
EOF
	mid=$(date +%s.%N)
	# keep days c-KEEP+1 .. c: the cutoff is the start of day c-KEEP+1
	pruned=$(psql_su -At <<EOF
SELECT set_config('datastreams.default_retention',
                  (now() - (t0 + interval '$((c - KEEP_DAYS)) days') + interval '1 minute')::text, false)
  FROM bench_clock \\g /dev/null
CALL datastreams.prune_all();
EOF
)
	end=$(date +%s.%N)
	pruned_at=$(q "SELECT now()")
	# wait (at most 120 s) for an autovacuum of the table that ended after the
	# prune, if there was something to reclaim
	dead=$(q "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'datastreams.frames'::regclass")
	waited=0
	if [ "${pruned:-0}" -gt 0 ]; then
		while [ "$waited" -lt 120 ]; do
			[ "$(q "SELECT coalesce(last_autovacuum > '$pruned_at', false) FROM pg_stat_user_tables
			        WHERE relid = 'datastreams.frames'::regclass")" = t ] && break
			sleep 1
			waited=$((waited + 1))
		done
	fi
	read -r live total heap idx < <(q "SELECT (SELECT count(*) FROM datastreams.frames),
	    pg_total_relation_size('datastreams.frames'), pg_relation_size('datastreams.frames'),
	    pg_indexes_size('datastreams.frames')" | tr '|' ' ')
	ingest_rate=$(awk -v n="$PER_DAY" -v a="$start" -v b="$mid" 'BEGIN { printf "%.0f", n / (b - a) }')
	prune_rate=$(awk -v n="${pruned:-0}" -v a="$mid" -v b="$end" 'BEGIN { if (n == 0) print "-"; else printf "%.0f", n / (b - a) }')
	ROWS_TABLE+=("| $c | $live | ${pruned:-0} | $(mb "$total") | $(mb "$heap") | $(mb "$idx") | $ingest_rate | $prune_rate | $([ "$waited" -ge 120 ] && echo "no ($dead dead)" || echo "${waited}s") |")
	say "day $c: $live frames, pruned ${pruned:-0}, total $(mb "$total") MB"
	TOTALS[c]=$total
done

# plateau: the largest size once the window was full (from day KEEP+2 on,
# after the first autovacuum that had something to reclaim) against the
# size on the last day
first_full=$((KEEP_DAYS + 2))
PLATEAU="n/a (fewer than $((first_full + 1)) days)"
GROWTH=""
if [ "$CYCLES" -gt "$first_full" ]; then
	ref=${TOTALS[$first_full]}
	last=${TOTALS[$CYCLES]}
	GROWTH=$(awk -v a="$ref" -v b="$last" 'BEGIN { printf "%+.1f", (b - a) * 100 / a }')
	if awk -v g="$GROWTH" 'BEGIN { exit !(g <= 10) }'; then
		PLATEAU="met: size on day $CYCLES is ${GROWTH}% of day $first_full's"
	else
		PLATEAU="NOT met: size on day $CYCLES is ${GROWTH}% of day $first_full's"
	fi
fi

# --------------------------------------------------------------------------
# 2. Ingest throughput, alone and while the prune worker runs every second
# --------------------------------------------------------------------------
cat >"$WORK/one.sql" <<'EOF'
INSERT INTO datastreams.frames (stream_id, payload, latency_ms)
VALUES (('00000000-0000-4000-8000-' || lpad((100 + :client_id)::text, 12, '0'))::uuid,
        jsonb_build_object('price', random() * 1000, 'qty', 7), 5);
EOF
cat >"$WORK/batch.sql" <<'EOF'
INSERT INTO datastreams.frames (stream_id, payload, latency_ms)
SELECT ('00000000-0000-4000-8000-' || lpad((100 + :client_id)::text, 12, '0'))::uuid,
       jsonb_build_object('price', random() * 1000, 'qty', g), 5
  FROM generate_series(1, 100) AS g;
EOF
chmod 644 "$WORK"/*.sql

set_worker() {
	q "ALTER SYSTEM SET datastreams.prune_interval = '$1'" >/dev/null
	q "SELECT pg_reload_conf()" >/dev/null
	sleep 1
}

# CPU time (clock ticks) the server has used: the postmaster and its live
# children, plus the children it has reaped (backends, autovacuum workers)
server_cpu() {
	local pm child total
	pm=$(head -n 1 "$WORK/data/postmaster.pid")
	total=$(sed -E 's/^.*\) //' "/proc/$pm/stat" | awk '{ print $12 + $13 + $14 + $15 }')
	for child in $(pgrep -P "$pm"); do
		total=$((total + $(sed -E 's/^.*\) //' "/proc/$child/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0)))
	done
	echo "$total"
}

# run_pgbench SCRIPT FRAMES_PER_XACT TAIL -> "frames/s server-CPU-ms-per-1000-frames"
# The CPU window ends TAIL seconds after pgbench, so that it includes the
# worker pruning the run's last frames (retention 2 s + the interval).
run_pgbench() {
	local out tps xacts cpu0 cpu1
	cpu0=$(server_cpu)
	out=$(cd "$WORK" && timeout -k 5 $((SECS + 60)) "$PGBIN/pgbench" -n -h "$WORK" -p "$PORT" -U postgres \
		-c "$CLIENTS" -j "$CLIENTS" -T "$SECS" -f "$WORK/$1" "$DB" 2>"$WORK/pgbench.err")
	sleep "$3"
	cpu1=$(server_cpu)
	tps=$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' <<<"$out")
	xacts=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' <<<"$out")
	[ -n "$tps" ] && [ -n "$xacts" ] || { cat "$WORK/pgbench.err" >&2; die "pgbench failed"; }
	awk -v t="$tps" -v x="$xacts" -v n="$2" -v c=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" \
		'BEGIN { printf "%.0f %.1f\n", t * n, c * 1000 / hz * 1000 / (x * n) }'
}

# Start each run alike: what earlier runs ingested pruned, the table vacuumed
drain() {
	sleep 2
	psql_su -At -c "CALL datastreams.prune_all()" >/dev/null
	psql_su -c "VACUUM datastreams.frames"
}

pruned_by_worker() {
	# sum of the worker's LOG lines so far
	sed -nE 's/.*datastreams prune worker removed ([0-9]+) frames.*/\1/p' "$WORK/server.log" |
		awk '{ s += $1 } END { print s + 0 }'
}

median1() {
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.1f\n", m }'
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.0f\n", m }'
}

declare -a TP_TABLE=()
RATIO_OK=1
# script:frames per transaction:worker interval (s)
WORKLOADS="one:1:1 batch:100:1 batch:100:10"
[ "${RET_BLOAT_ONLY:-0}" = 1 ] && WORKLOADS=""
for w in $WORKLOADS; do
	IFS=: read -r script per interval <<<"$w"
	tail=$((interval + 3))
	alone=()
	pruning=()
	alone_cpu=()
	pruning_cpu=()
	pruned_total=0
	for r in $(seq 1 "$ROUNDS"); do
		say "ingest ($script), round $r: alone"
		set_worker 0
		drain
		read -r f c < <(run_pgbench "$script.sql" "$per" "$tail")
		alone+=("$f")
		alone_cpu+=("$c")
		drain
		say "ingest ($script), round $r: with the prune worker every ${interval}s"
		before=$(pruned_by_worker)
		set_worker "${interval}s"
		read -r f c < <(run_pgbench "$script.sql" "$per" "$tail")
		pruning+=("$f")
		pruning_cpu+=("$c")
		set_worker 0
		pruned_total=$((pruned_total + $(pruned_by_worker) - before))
	done
	a=$(median "${alone[@]}")
	p=$(median "${pruning[@]}")
	ratio=$(awk -v a="$a" -v p="$p" 'BEGIN { printf "%.2f", p / a }')
	ac=$(median1 "${alone_cpu[@]}")
	pc=$(median1 "${pruning_cpu[@]}")
	cpu_ratio=$(awk -v a="$ac" -v p="$pc" 'BEGIN { printf "%.2f", a / p }')
	awk -v r="$ratio" 'BEGIN { exit !(r >= 0.8) }' || RATIO_OK=0
	label="$([ "$per" = 1 ] && echo "1 frame per transaction" || echo "100 frames per INSERT"), worker every ${interval}s"
	TP_TABLE+=("| $label | $a | $p | $ratio | $pruned_total | $ac | $pc | $cpu_ratio |")
done
set_worker 0
if [ -z "$WORKLOADS" ]; then
	RATIO_VERDICT="not measured (RET_BLOAT_ONLY=1)"
elif [ "$RATIO_OK" = 1 ]; then
	RATIO_VERDICT="met (every workload >= 0.8x)"
else
	RATIO_VERDICT="NOT met (a workload is below 0.8x)"
fi

# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
report() {
	echo "### Bloat: $CYCLES days of $PER_DAY frames ($STREAMS streams), $KEEP_DAYS days kept"
	echo
	echo "| day | frames kept | pruned | total MB | heap MB | indexes MB | ingest frames/s | prune frames/s | autovacuum after |"
	echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	printf '%s\n' "${ROWS_TABLE[@]}"
	echo
	echo "Plateau (size from day $first_full on within +10%): $PLATEAU"
	echo
	if [ -n "$WORKLOADS" ]; then
		echo "### Ingest while pruning: $CLIENTS clients, ${SECS}s runs, median of $ROUNDS"
		echo
		echo "| workload | frames/s alone | frames/s, prune worker on | ratio | frames pruned meanwhile | server CPU ms per 1000 frames, alone | same, pruning | CPU ratio |"
		echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
		printf '%s\n' "${TP_TABLE[@]}"
		echo
	fi
	echo "Ingest while pruning >= 0.8x alone: $RATIO_VERDICT"
	if [ -n "$WORKLOADS" ]; then
		echo
		echo "The CPU columns count the server's processes only (backends, the prune"
		echo "worker, autovacuum, WAL writer...), from the start of a run until 3 s plus"
		echo "the worker interval after it; their ratio is the throughput ratio to expect"
		echo "when the server's CPU is the bottleneck, and unlike frames/s it hardly"
		echo "depends on other load on the machine."
	fi
}

report
{
	echo "# Retention benchmark results"
	echo
	echo "Produced by \`test/bench/retention.sh\`$([ "$QUICK" = 1 ] && echo " (RET_QUICK=1)") on $(date -u '+%Y-%m-%d %H:%M UTC');"
	echo "$(nproc) CPUs ($(sed -nE 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(free -g | awk '/^Mem:/ { print $2 }') GB RAM;"
	echo "$("$PGBIN/postgres" --version); default settings except shared_preload_libraries = 'datastreams', autovacuum_naptime = 5s."
	echo
	report
} >"$OUT"
say "results written to $OUT"
if [ "${RET_ASSERT:-0}" = 1 ] && [ "${PLATEAU#met}" = "$PLATEAU" ]; then
	die "plateau target not met: $PLATEAU"
fi
