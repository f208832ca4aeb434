#!/usr/bin/env bash
# Where single-row ingest spends CPU, per process and per frame, against the
# plain twin.  Measures; asserts nothing.
#
#   sudo test/bench/cpu.sh                  about 6 minutes on 2 cores
#   sudo BENCH_CALLGRIND=0 test/bench/cpu.sh   without the instruction counts
#
# 1. per-process CPU: BENCH_CLIENTS single-row writers (a stream each) run
#    pgbench; over a window of BENCH_SECONDS the CPU time of every server
#    process (/proc/<pid>/schedstat, ns) is summed by kind (the writers'
#    backends, the publisher, the prune worker, the WAL writer, ...) and
#    divided by the frames written; plain twin and datastreams.frames
#    interleaved, BENCH_RUNS times each, medians.  CPU per frame is far
#    less disturbed by other load on the machine than throughput is.
# 2. instructions per transaction (callgrind; this machine's perf has no
#    hardware counters): a second cluster runs under valgrind
#    --tool=callgrind; one writer runs BENCH_TX single-row transactions on
#    a fresh connection, and its backend's instruction count at exit,
#    divided by BENCH_TX, is the writer's; the publisher's is the
#    difference of its count over a frames run and over a plain run (the
#    publisher is restarted before each, so both include one start-up).
#    With one writer the publisher handles one frame per batch: its worst
#    case.  Exact and repeatable, but user space only (no system calls).
# 3. on the callgrind cluster: the writer's instructions per insert alone,
#    and while another tenant loops at BENCH_CHURN_RATE calls/s either a
#    one-row UPDATE of a table of its own or update_stream() on its own
#    stream: what the stream changes cost other backends, without the
#    competition for the CPU that throughput ratios include.
#
# Like run.sh it starts throwaway clusters owned by 'postgres' with default
# settings except shared_preload_libraries = 'datastreams', built from this
# tree into a private installation (or BENCH_PGBIN), and loads
# test/bench/plpgsql_baseline.sql and setup.sql (the twin bench.frames_plain).
#
# Environment:
#   BENCH_CLIENTS=N    writers of section 1 (default 4)
#   BENCH_SECONDS=N    measured window per run (default 8)
#   BENCH_RUNS=N       runs per variant (default 3)
#   BENCH_TX=N         transactions of the callgrind run (default 1000)
#   BENCH_CALLGRIND=0  skip sections 2 and 3
#   BENCH_CHURN_RATE=N calls/s of tenant B's loops in section 3 (default 100)
#   BENCH_PORT=N       port of the cluster (default 56320; callgrind's +1)
#   BENCH_PGBIN=DIR    PostgreSQL bin directory with the extension installed
#   BENCH_OUT=FILE     results (default test/bench/cpu-results.md)
#   BENCH_LABEL=TEXT   appended to the results header
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -Eeuo pipefail

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_SRC/../.." && pwd)
CLIENTS=${BENCH_CLIENTS:-4}
DUR=${BENCH_SECONDS:-8}
RUNS=${BENCH_RUNS:-3}
NTX=${BENCH_TX:-1000}
CALLGRIND=${BENCH_CALLGRIND:-1}
CHURN_RATE=${BENCH_CHURN_RATE:-100}
PORT=${BENCH_PORT:-56320}
OUT=${BENCH_OUT:-$BENCH_SRC/cpu-results.md}
PGBIN=${BENCH_PGBIN:-}
DB=postgres
export PGOPTIONS="-c baseline.account_id=bench"

WORK=""
BG_PIDS=()
BUILD_COMMIT=""

cleanup() {
	local rc=$? pid d
	set +e
	for pid in "${BG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for d in "$WORK/data" "$WORK/cg/data"; do
		[ -n "$WORK" ] && [ -f "$d/postmaster.pid" ] &&
			as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w -t 60 stop >/dev/null 2>&1
	done
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ "$rc" -ne 0 ] || [ "${BENCH_KEEP:-0}" = 1 ]; then
			printf 'scratch directory kept: %s\n' "$WORK" >&2
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" -eq 0 ] || die "run as root (the servers run as postgres)"
WORK=$(mktemp -d /var/tmp/datastreams-cpu.XXXXXX)
chmod 755 "$WORK"
chown postgres: "$WORK"
say "scratch directory $WORK"

if [ -z "$PGBIN" ]; then
	inst=$WORK/install
	BUILD_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
	[ -z "$(git -C "$ROOT" status --porcelain -- src sql Makefile 2>/dev/null)" ] ||
		BUILD_COMMIT+=" + uncommitted changes"
	say "building the extension from $ROOT ($BUILD_COMMIT)"
	make -C "$ROOT" -s -j"$(nproc)" PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >"$WORK/build.log" 2>&1 ||
		die "the build failed (see $WORK/build.log)"
	mkdir -p "$inst/usr/lib/postgresql" "$inst/usr/share/postgresql"
	cp -a /usr/lib/postgresql/15 "$inst/usr/lib/postgresql/"
	cp -a /usr/share/postgresql/15 "$inst/usr/share/postgresql/"
	make -C "$ROOT" -s install DESTDIR="$inst" PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >>"$WORK/build.log" 2>&1 ||
		die "make install failed (see $WORK/build.log)"
	PGBIN=$inst/usr/lib/postgresql/15/bin
else
	BUILD_COMMIT="as installed in $PGBIN"
fi

# new_cluster DIR PORT [WRAPPER...]: initdb, start (under WRAPPER), load the schema
new_cluster() {
	local dir=$1 port=$2
	shift 2
	mkdir -p "$dir"
	chown postgres: "$dir"
	as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
		die "initdb failed"
	cat >>"$dir/data/postgresql.conf" <<-EOF
		port = $port
		listen_addresses = ''
		unix_socket_directories = '$dir'
		shared_preload_libraries = 'datastreams'
	EOF
	if [ $# -eq 0 ]; then
		as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null || die "the server did not start"
	else
		as_pg bash -c "$(printf '%q ' "$@") $PGBIN/postgres -D $dir/data >$dir/server.log 2>&1 &"
		for _ in $(seq 1 300); do
			"$PGBIN/psql" -X -h "$dir" -p "$port" -U postgres -d "$DB" -c 'SELECT 1' >/dev/null 2>&1 && break
			sleep 1
		done
	fi
	sql "$dir" "$port" -c "CREATE EXTENSION datastreams" >/dev/null
	sql "$dir" "$port" -f "$BENCH_SRC/plpgsql_baseline.sql" >/dev/null
	sql "$dir" "$port" -f "$BENCH_SRC/setup.sql" >/dev/null
}

# sql DIR PORT psql-args...
sql() {
	local dir=$1 port=$2
	shift 2
	timeout -k 5 600 "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d "$DB" "$@"
}

# the pgbench scripts: a stream per client, the payload of run.sh
write_scripts() {
	local t head
	head=$'\\set sid :client_id + 1\n\\set v random(1, 1000000)\n\\set lat random(0, 200)'
	for t in plain ds; do
		local table=datastreams.frames
		[ $t = plain ] && table=bench.frames_plain
		printf '%s\nINSERT INTO %s (stream_id, payload, latency_ms) VALUES (bench.stream_uuid(:sid), jsonb_build_object('"'"'t'"'"', (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, '"'"'v'"'"', CAST(:v AS integer)), :lat);\n' \
			"$head" "$table" >"$WORK/$t.sql"
	done
	chmod 644 "$WORK"/*.sql
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ---------------------------------------------------------------------------
# 1. per-process CPU
# ---------------------------------------------------------------------------
KINDS="writers publisher prune_worker walwriter checkpointer background_writer other"
declare -A ACC

# one_run plain|ds: accumulates ACC[variant.kind] (µs per frame), ACC[variant.tps]
one_run() {
	local v=$1 table=datastreams.frames pid kind bp n0 n1 t0 t1 frames el
	[ "$v" = plain ] && table=bench.frames_plain
	sql "$WORK" "$PORT" -c "TRUNCATE datastreams.frames, datastreams.stream_state, bench.frames_plain" -c CHECKPOINT >/dev/null
	timeout -k 5 $((DUR + 60)) "$PGBIN/pgbench" -n -M prepared -h "$WORK" -p "$PORT" -U bench_tenant \
		-c "$CLIENTS" -j "$((CLIENTS < 2 ? CLIENTS : 2))" -T $((DUR + 3)) -f "$WORK/$v.sql" "$DB" >"$WORK/pgbench.out" 2>&1 &
	bp=$!
	BG_PIDS+=("$bp")
	sleep 1.5
	sql "$WORK" "$PORT" -F ' ' -c "SELECT pid, CASE WHEN application_name = 'pgbench' THEN 'writers'
			WHEN application_name LIKE 'datastreams publisher%' THEN 'publisher'
			WHEN application_name LIKE 'datastreams prune%' THEN 'prune_worker'
			WHEN backend_type IN ('walwriter', 'checkpointer', 'background writer') THEN replace(backend_type, ' ', '_')
			ELSE 'other' END
		FROM pg_stat_activity WHERE pid <> pg_backend_pid()" >"$WORK/procs"
	snap() { while read -r pid kind; do echo "$pid $kind $(cut -d' ' -f1 "/proc/$pid/schedstat" 2>/dev/null || echo 0)"; done <"$WORK/procs"; }
	n0=$(sql "$WORK" "$PORT" -c "SELECT count(*) FROM $table")
	t0=$(date +%s.%N)
	snap >"$WORK/s0"
	sleep "$DUR"
	snap >"$WORK/s1"
	t1=$(date +%s.%N)
	n1=$(sql "$WORK" "$PORT" -c "SELECT count(*) FROM $table")
	wait "$bp" || true
	frames=$((n1 - n0))
	el=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
	ACC[$v.tps]+="$(awk -v f="$frames" -v e="$el" 'BEGIN { printf "%.0f", f / e }') "
	while read -r kind us; do
		ACC[$v.$kind]+="$us "
	done < <(paste "$WORK/s0" "$WORK/s1" | awk -v f="$frames" -v k="$KINDS" '
		BEGIN { n = split(k, ks, " "); for (i = 1; i <= n; i++) by[ks[i]] = 0 }
		{ by[$2] += ($6 - $3) / 1000 }
		END { for (i = 1; i <= n; i++) printf "%s %.2f\n", ks[i], by[ks[i]] / f }')
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
new_cluster "$WORK" "$PORT"
write_scripts
say "1. per-process CPU: $CLIENTS writers, ${DUR}s windows, $RUNS runs of plain and frames"
for ((r = 1; r <= RUNS; r++)); do
	one_run plain
	one_run ds
done
LOAD_MID=$(cut -d' ' -f1-3 /proc/loadavg)
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null

# ---------------------------------------------------------------------------
# 2. instructions per transaction
# ---------------------------------------------------------------------------
declare -A IR
if [ "$CALLGRIND" = 1 ] && command -v valgrind >/dev/null; then
	CG=$WORK/cg
	CGPORT=$((PORT + 1))
	say "2. instructions: a cluster under callgrind, 1 writer x $NTX transactions of plain and frames"
	mkdir -p "$CG/out"
	chown -R postgres: "$CG"
	new_cluster "$CG" "$CGPORT" valgrind --tool=callgrind --trace-children=yes --vgdb=no \
		"--callgrind-out-file=$CG/out/cg.%p"
	pubpid() { sql "$CG" "$CGPORT" -c "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'datastreams publisher%'"; }
	# restart_publisher: end it (it writes its counts), wait for the launcher's new one
	restart_publisher() {
		local old new
		old=$(pubpid)
		sql "$CG" "$CGPORT" -c "SELECT pg_terminate_backend($old)" >/dev/null
		for _ in $(seq 1 240); do
			new=$(pubpid)
			[ -n "$new" ] && [ "$new" != "$old" ] && break
			sleep 0.5
		done
		sleep 3
		echo "$new"
	}
	counted() {
		for _ in $(seq 1 120); do
			grep -qs '^totals:' "$CG/out/cg.$1" && break
			sleep 0.5
		done
		awk '/^totals:/ { print $2; exit }' "$CG/out/cg.$1"
	}
	for v in plain ds; do
		sql "$CG" "$CGPORT" -c "TRUNCATE datastreams.frames, datastreams.stream_state, bench.frames_plain" -c CHECKPOINT >/dev/null
		# warm up the tables, then measure on a fresh connection
		"$PGBIN/pgbench" -n -M prepared -h "$CG" -p "$CGPORT" -U bench_tenant -c 1 -t 200 -f "$WORK/$v.sql" "$DB" >/dev/null 2>&1
		pub=$(restart_publisher)
		before=$(ls "$CG/out")
		"$PGBIN/pgbench" -n -M prepared -h "$CG" -p "$CGPORT" -U bench_tenant -c 1 -t "$NTX" -f "$WORK/$v.sql" "$DB" >"$WORK/cg-pgbench.out" 2>&1
		sleep 3
		restart_publisher >/dev/null
		# the writer's backend: the busiest of the client backends that ended
		# meanwhile (not an autovacuum worker, nor the publisher)
		IR[$v.writer]=$(comm -13 <(echo "$before") <(ls "$CG/out") | grep -v "^cg.$pub\$" |
			while read -r f; do
				grep -q PostgresMain "$CG/out/$f" && awk '/^totals:/ { print $2; exit }' "$CG/out/$f"
			done |
			sort -g | tail -n 1 | awk -v n="$NTX" '{ printf "%.0f", $1 / n }')
		IR[$v.publisher]=$(counted "$pub")
	done
	IR[ds.publisher.per]=$(awk -v a="${IR[ds.publisher]}" -v b="${IR[plain.publisher]}" -v n="$NTX" 'BEGIN { printf "%.0f", (a - b) / n }')

	# 3. what another tenant's stream changes cost a writer: its
	# instructions per insert while tenant B loops, at CHURN_RATE calls/s,
	# update_stream() on its own stream or a one-row UPDATE of a table of
	# its own (the control)
	say "3. instructions per insert while another tenant loops update_stream() / a plain UPDATE at ${CHURN_RATE}/s"
	sql "$CG" "$CGPORT" >/dev/null <<-'EOF'
		CREATE ROLE bench_churner LOGIN;
		SELECT datastreams.create_account('churn', 'bench_churner');
		INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms)
		VALUES (bench.stream_uuid(900), 'churn', 'churn', 'C', 'active', 100);
		CREATE TABLE bench.control (id integer PRIMARY KEY, v integer);
		INSERT INTO bench.control VALUES (1, 0);
		GRANT SELECT, UPDATE ON bench.control TO PUBLIC;
		CREATE FUNCTION bench.control_update(v integer) RETURNS integer
		LANGUAGE plpgsql AS $$ BEGIN UPDATE bench.control SET v = $1 WHERE id = 1; RETURN 1; END $$;
	EOF
	printf '%s\n' '\set sla random(100, 200)' \
		"SELECT 1 FROM datastreams.update_stream(bench.stream_uuid(900), jsonb_build_object('sla_ms', CAST(:sla AS integer)));" >"$WORK/churn_us.sql"
	printf '%s\n' '\set sla random(100, 200)' "SELECT bench.control_update(CAST(:sla AS integer));" >"$WORK/churn_ctl.sql"
	chmod 644 "$WORK"/churn_*.sql
	for c in none ctl us; do
		sql "$CG" "$CGPORT" -c "TRUNCATE datastreams.frames, datastreams.stream_state" -c CHECKPOINT >/dev/null
		"$PGBIN/pgbench" -n -M prepared -h "$CG" -p "$CGPORT" -U bench_tenant -c 1 -t 200 -f "$WORK/ds.sql" "$DB" >/dev/null 2>&1
		cpid=""
		if [ "$c" != none ]; then
			"$PGBIN/pgbench" -n -M prepared -h "$CG" -p "$CGPORT" -U bench_churner -c 1 -T 30 -R "$CHURN_RATE" \
				-f "$WORK/churn_$c.sql" "$DB" >"$WORK/churn.out" 2>&1 &
			cpid=$!
			BG_PIDS+=("$cpid")
			sleep 5
		fi
		before=$(ls "$CG/out")
		"$PGBIN/pgbench" -n -M prepared -h "$CG" -p "$CGPORT" -U bench_tenant -c 1 -t "$NTX" -f "$WORK/ds.sql" "$DB" >"$WORK/cg-pgbench.out" 2>&1
		IR[churn.$c.tps]=$(awk '/^tps = / { printf "%.0f", $3 }' "$WORK/cg-pgbench.out")
		sleep 3
		IR[churn.$c]=$(comm -13 <(echo "$before") <(ls "$CG/out") |
			while read -r f; do
				grep -q PostgresMain "$CG/out/$f" && awk '/^totals:/ { print $2; exit }' "$CG/out/$f"
			done | sort -g | tail -n 1 | awk -v n="$NTX" '{ printf "%.0f", $1 / n }')
		[ -z "$cpid" ] || wait "$cpid" || true
	done
fi

# ---------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a !~ /^[0-9.]+$/) print ""; else printf "%.2f", a / b }'; }
{
	echo "# Where single-row ingest spends CPU"
	echo
	echo "Made by \`test/bench/cpu.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); extension $BUILD_COMMIT${BENCH_LABEL:+ — $BENCH_LABEL}."
	echo "$(nproc) cores, PostgreSQL $("$PGBIN/postgres" -V | awk '{ print $3 }'), default settings + shared_preload_libraries; load average at start $LOAD_START, after section 1 $LOAD_MID, at the end $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "## 1. CPU per frame by process, $CLIENTS single-row writers (µs, medians of $RUNS runs of ${DUR} s)"
	echo
	echo "| process | plain twin | datastreams.frames | difference |"
	echo "|---|---:|---:|---:|"
	tp=0
	td=0
	for k in $KINDS; do
		# shellcheck disable=SC2086
		p=$(median ${ACC[plain.$k]})
		# shellcheck disable=SC2086
		d=$(median ${ACC[ds.$k]})
		tp=$(awk -v a="$tp" -v b="$p" 'BEGIN { print a + b }')
		td=$(awk -v a="$td" -v b="$d" 'BEGIN { print a + b }')
		echo "| $k | $p | $d | $(awk -v a="$d" -v b="$p" 'BEGIN { printf "%+.2f", a - b }') |"
	done
	echo "| **all** | $tp | $td | $(awk -v a="$td" -v b="$tp" 'BEGIN { printf "%+.2f", a - b }') (×$(ratio "$td" "$tp")) |"
	# shellcheck disable=SC2086
	echo "| throughput (tx/s; the machine's other load moves it) | $(median ${ACC[plain.tps]}) | $(median ${ACC[ds.tps]}) | ×$(ratio "$(median ${ACC[ds.tps]})" "$(median ${ACC[plain.tps]})") |"
	if [ -n "${IR[ds.writer]:-}" ]; then
		echo
		echo "## 2. Instructions per single-row transaction (callgrind, 1 writer, $NTX transactions)"
		echo
		echo "| | plain twin | datastreams.frames | ratio |"
		echo "|---|---:|---:|---:|"
		echo "| writer backend | ${IR[plain.writer]} | ${IR[ds.writer]} | $(ratio "${IR[ds.writer]}" "${IR[plain.writer]}") |"
		echo "| publisher, per frame (one frame per batch) | | ${IR[ds.publisher.per]} | |"
		echo "| both | ${IR[plain.writer]} | $((IR[ds.writer] + IR[ds.publisher.per])) | $(ratio "$((IR[ds.writer] + IR[ds.publisher.per]))" "${IR[plain.writer]}") |"
		echo
		echo "## 3. A writer's instructions per insert while tenant B loops at $CHURN_RATE calls/s (callgrind, $NTX inserts)"
		echo
		echo "| tenant B | writer's instructions per insert | ÷ alone | writer's tx/s under callgrind |"
		echo "|---|---:|---:|---:|"
		echo "| nothing | ${IR[churn.none]} | 1.00 | ${IR[churn.none.tps]} |"
		echo "| a one-row UPDATE of its own table (control) | ${IR[churn.ctl]} | $(ratio "${IR[churn.ctl]}" "${IR[churn.none]}") | ${IR[churn.ctl.tps]} |"
		echo "| update_stream() on its own stream | ${IR[churn.us]} | $(ratio "${IR[churn.us]}" "${IR[churn.none]}") | ${IR[churn.us.tps]} |"
	fi
} >"$OUT"
cat "$OUT"
