#!/usr/bin/env bash
# Benchmarks of the bulk path, the stream cache and pruning.  Measures;
# asserts nothing (the verdict column says whether a target was met).
# Ratios are against baselines measured in the same run.
#
#   sudo test/bench/ingest.sh                  full run, about 4 minutes on 2 cores
#   sudo BENCH_QUICK=1 test/bench/ingest.sh    smoke run, about 1 minute
#
# Like run.sh it starts a throwaway PostgreSQL 15 cluster owned by
# 'postgres' with DEFAULT settings except shared_preload_libraries =
# 'datastreams', builds the extension from this tree into a private copy of
# the PostgreSQL installation in its scratch directory (or uses BENCH_PGBIN),
# and writes one markdown table to test/bench/ingest-results.md.
#
# Sections (BENCH_SECTIONS, default "cache prune bulk memory cancel profile"):
#   cache    4 single-row writers of one tenant, alone and while another
#            tenant loops, at the same rate: a one-row UPDATE of a table of
#            its own (the control: what any looping tenant costs the others
#            on this machine) or update_stream() on its own stream (the
#            same, plus the cache invalidations)
#   prune    steady ingest of 5,000 frames/s into streams with a retention
#            while the prune worker runs (prune_interval 10 s): the worker's
#            CPU from /proc/<pid>/stat; then the cost of one prune() step
#            deleting 100 frames from a stream that retains 10^4 .. 10^6
#   bulk     ingest() of 10^5 frames as a tenant (RLS on) against COPY of
#            the same rows into the plain twin table (superuser), and COPY
#            into datastreams.frames
#   memory   peak private memory (RssAnon) of one ingest() of 10^6 frames
#            against the size of its JSON argument
#   cancel   pg_cancel_backend() during an ingest() of 10^6 frames: time to
#            the error, SQLSTATE, frames left behind
#   profile  perf record -g of the backend during ingest() and COPY
#
# Environment:
#   BENCH_QUICK=1          1 run per cell, shorter windows, 10^5 instead of 10^6
#   BENCH_RUNS=N           runs per cell (default 5; quick 1); medians reported
#   BENCH_SECONDS=N        seconds per pgbench run of the cache section (default 5; quick 2)
#   BENCH_PRUNE_SECONDS=N  steady-ingest window of the prune section (default 60; quick 20)
#   BENCH_BULK=N           frames of the bulk section (default 100000)
#   BENCH_BIG=N            frames of the memory and cancel sections (default 10^6; quick 10^5)
#   BENCH_SECTIONS="..."   sections to run
#   BENCH_PORT=N           port of the throwaway cluster (default 56610; Unix socket only)
#   BENCH_OUT=FILE         results file (default test/bench/ingest-results.md)
#   BENCH_KEEP=1           keep the scratch directory (cluster, logs, perf data)
#   BENCH_PGBIN=DIR        PostgreSQL bin directory with the extension installed
#                          (skips the build; e.g. a DESTDIR copy of another commit)
#   BENCH_LABEL=TEXT       appended to the results header
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -Eeuo pipefail

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_SRC/../.." && pwd)

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
	RUNS=${BENCH_RUNS:-1}
	DUR=${BENCH_SECONDS:-2}
	PRUNE_SECS=${BENCH_PRUNE_SECONDS:-20}
	BIG=${BENCH_BIG:-100000}
	CANCEL_AFTER=0.2
else
	RUNS=${BENCH_RUNS:-5}
	DUR=${BENCH_SECONDS:-5}
	PRUNE_SECS=${BENCH_PRUNE_SECONDS:-60}
	BIG=${BENCH_BIG:-1000000}
	CANCEL_AFTER=1
fi
BULK=${BENCH_BULK:-100000}
SECTIONS=" ${BENCH_SECTIONS:-cache prune bulk memory cancel profile} "
PORT=${BENCH_PORT:-56610}
OUT=${BENCH_OUT:-$BENCH_SRC/ingest-results.md}
PGBIN=${BENCH_PGBIN:-}
DB=postgres
TENANT=bench_tenant
CHURNER=bench_churner
PRUNE_RATE=5000			# frames/s of the prune section's steady ingest
PRUNE_STREAMS=4
PRUNE_RETENTION=60		# seconds
PRUNE_INTERVAL=10		# seconds

WORK=""
BUILD_COMMIT=""
BG_PIDS=()
FAILED=0
ROWS=""
NOTES=""

want() { [[ $SECTIONS = *" $1 "* ]]; }
log() { printf '%s\n' "$*" >>"$WORK/bench.log"; }

cleanup() {
	local rc=$? pid
	trap - ERR
	set +e
	for pid in "${BG_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${BG_PIDS[@]}"; do
		wait "$pid" 2>/dev/null
	done
	if [ -n "$WORK" ] && [ -f "$WORK/data/postmaster.pid" ]; then
		as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate -w -t 30 stop >/dev/null 2>&1
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; then
			printf 'scratch directory kept: %s (bench.log, server.log)\n' "$WORK" >&2
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap '[[ $- != *e* ]] || printf "ERROR: ingest.sh line %s: %s failed\n" "$LINENO" "$BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# median of the numeric arguments (NA when none)
median() {
	printf '%s\n' "$@" | { grep -E '^[0-9.eE+-]+$' || true; } | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# min–max of the numeric arguments, empty for fewer than two
spread() {
	printf '%s\n' "$@" | { grep -E '^[0-9.eE+-]+$' || true; } | sort -g |
		awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR > 1) printf "%s–%s", lo, hi }'
}

# calc EXPR: awk arithmetic on numbers, "NA" when an operand is missing
calc() {
	awk "BEGIN { printf \"%s\", ($1) }" 2>/dev/null || echo NA
}

ratio() {
	awk -v a="${1:-NA}" -v b="${2:-NA}" 'BEGIN {
		if (a !~ /^[0-9.eE+-]+$/ || b !~ /^[0-9.eE+-]+$/ || b + 0 == 0) { print "NA"; exit }
		printf "%.2f", a / b }'
}

fmt() {
	awk -v v="${1:-NA}" 'BEGIN {
		if (v !~ /^[0-9.eE+-]+$/) { print v; exit }
		if (v >= 100) printf "%.0f", v; else if (v >= 10) printf "%.1f", v;
		else if (v >= 1) printf "%.2f", v; else printf "%.3f", v }'
}

# row WHAT VALUE SPREAD UNIT RATIO TARGET VERDICT
row() {
	ROWS+="| $1 | $(fmt "$2") | $3 | $4 | $5 | $6 | $7 |"$'\n'
}

# verdict VALUE OP LIMIT -> met / NOT met
verdict() {
	if awk -v v="$1" -v l="$3" "BEGIN { exit !(v ~ /^[0-9.eE+-]+\$/ && v $2 l) }"; then echo met; else echo "**NOT met**"; fi
}

# --------------------------------------------------------------------------
# Cluster
# --------------------------------------------------------------------------
private_build() {
	local inst=$WORK/install sys_lib=/usr/lib/postgresql/15 sys_share=/usr/share/postgresql/15
	BUILD_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [ -n "$(git -C "$ROOT" status --porcelain -- src sql Makefile 2>/dev/null)" ]; then
		BUILD_COMMIT+=" + uncommitted changes"
	fi
	say "building the extension from $ROOT ($BUILD_COMMIT) into $inst"
	make -C "$ROOT" -s -j"$(nproc)" PG_CONFIG="$sys_lib/bin/pg_config" >>"$WORK/bench.log" 2>&1 ||
		die "the build failed (see $WORK/bench.log)"
	mkdir -p "$inst/usr/lib/postgresql" "$inst/usr/share/postgresql"
	cp -a "$sys_lib" "$inst/usr/lib/postgresql/"
	cp -a "$sys_share" "$inst/usr/share/postgresql/"
	rm -f "$inst$sys_lib/lib/datastreams.so" "$inst$sys_share/extension/datastreams"*
	make -C "$ROOT" -s install DESTDIR="$inst" PG_CONFIG="$sys_lib/bin/pg_config" >>"$WORK/bench.log" 2>&1 ||
		die "make install DESTDIR=$inst failed (see $WORK/bench.log)"
	PGBIN=$inst$sys_lib/bin
}

start_cluster() {
	WORK=$(mktemp -d /var/tmp/datastreams-ingest-bench.XXXXXX)
	chmod 755 "$WORK"
	if [ "$(id -u)" -eq 0 ]; then chown postgres: "$WORK"; fi
	: >"$WORK/bench.log"
	chmod 666 "$WORK/bench.log"
	say "scratch directory $WORK"
	if [ -z "$PGBIN" ]; then
		private_build
	else
		BUILD_COMMIT="as installed in $PGBIN"
	fi
	[ -x "$PGBIN/pgbench" ] || die "pgbench is not installed ($PGBIN/pgbench)"
	as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --no-locale \
		>"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
	cat >>"$WORK/data/postgresql.conf" <<-EOF

		# ---- datastreams ingest benchmark: defaults except these ----
		port = $PORT
		listen_addresses = ''
		unix_socket_directories = '$WORK'
		shared_preload_libraries = 'datastreams'
		datastreams.prune_interval = 0
	EOF
	as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w -t 60 start >/dev/null ||
		{ tail -n 30 "$WORK/server.log" >&2; die "the server did not start"; }
}

su_psql() {
	timeout -k 5 "${PSQL_TIMEOUT:-900}" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
		-h "$WORK" -p "$PORT" -U postgres -d "$DB" "$@"
}
q() { su_psql -At -c "$1"; }

stream_uuid() { printf '00000000-0000-4000-8000-%012d' "$1"; }

load_schema() {
	su_psql >/dev/null <<-EOF
		CREATE EXTENSION datastreams;
		CREATE ROLE $TENANT LOGIN;
		CREATE ROLE $CHURNER LOGIN;
		SELECT datastreams.create_account('bench', '$TENANT');
		SELECT datastreams.create_account('churn', '$CHURNER');
		CREATE SCHEMA bench;
		GRANT USAGE ON SCHEMA bench TO PUBLIC;
		CREATE FUNCTION bench.stream_uuid(n integer) RETURNS uuid
		LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
		AS \$\$ SELECT ('00000000-0000-4000-8000-' || lpad(\$1::text, 12, '0'))::uuid \$\$;
		-- 1..8: cache writers; 11..: pruned streams; 100: bulk; 900: the churner's
		INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms)
		SELECT bench.stream_uuid(n), 'bench', 'bench ' || n, 'B' || n, 'active', 150
		  FROM (SELECT generate_series(1, 8) UNION ALL VALUES (100), (101)) AS g(n);
		INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms, retention)
		SELECT bench.stream_uuid(10 + n), 'bench', 'pruned ' || n, 'P' || n, 'active', 150,
		       interval '$PRUNE_RETENTION seconds'
		  FROM generate_series(1, $PRUNE_STREAMS) AS n;
		INSERT INTO datastreams.streams (id, account_id, name, symbol, status, sla_ms)
		VALUES (bench.stream_uuid(900), 'churn', 'churn', 'C', 'active', 100);
		-- the ceiling: the frames table without trigger, foreign key or RLS
		CREATE TABLE bench.frames_plain (LIKE datastreams.frames INCLUDING ALL);
		CREATE SEQUENCE bench.frames_plain_sequence AS bigint;
		ALTER TABLE bench.frames_plain
			ALTER COLUMN id SET DEFAULT datastreams.uuid_v7(),
			ALTER COLUMN sequence SET DEFAULT nextval('bench.frames_plain_sequence'),
			ALTER COLUMN account_id SET DEFAULT 'bench',
			ALTER COLUMN created_at SET DEFAULT now();
		GRANT SELECT, INSERT ON bench.frames_plain TO PUBLIC;
		GRANT USAGE ON SEQUENCE bench.frames_plain_sequence TO PUBLIC;
		-- the cache section's control: a tenant's loop of one-row UPDATEs
		-- that change no stream
		CREATE TABLE bench.control (id integer PRIMARY KEY, v integer);
		INSERT INTO bench.control VALUES (1, 0);
		GRANT SELECT, UPDATE ON bench.control TO PUBLIC;
		CREATE FUNCTION bench.control_update(v integer) RETURNS integer
		LANGUAGE plpgsql AS \$\$ BEGIN UPDATE bench.control SET v = \$1 WHERE id = 1; RETURN 1; END \$\$;
	EOF
}

# Empty the frames tables and checkpoint, so each run starts alike
reset_tables() {
	q "TRUNCATE datastreams.frames, datastreams.stream_state, bench.frames_plain" >/dev/null
	q "CHECKPOINT" >/dev/null
}

# pgbench_run SCRIPT CLIENTS ROLE [pgbench args...]: sets TPS (NA on failure)
pgbench_run() {
	local script=$1 clients=$2 role=$3 jobs out rc
	shift 3
	jobs=$((clients < 2 ? clients : 2))
	set +e
	out=$(timeout -k 5 $((DUR + PRUNE_SECS + 120)) "$PGBIN/pgbench" -n -M prepared -h "$WORK" -p "$PORT" -U "$role" \
		-c "$clients" -j "$jobs" "$@" -f "$WORK/$script" "$DB" 2>&1)
	rc=$?
	set -e
	log "--- pgbench $script -c $clients $* (rc $rc)"
	log "$out"
	TPS=$(awk '/^tps = / { print $3 }' <<<"$out")
	XACTS=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' <<<"$out")
	if [ "$rc" -ne 0 ] || [ -z "$TPS" ]; then
		warn "pgbench $script -c $clients failed (rc $rc); see $WORK/bench.log"
		FAILED=1
		TPS=NA
		XACTS=NA
	fi
}

# reaped_ticks: CPU clock ticks of the server's children that have exited
# (the postmaster's cutime + cstime): backends of finished pgbench runs
reaped_ticks() {
	sed -E 's/^.*\) //' "/proc/$(head -n 1 "$WORK/data/postmaster.pid")/stat" | awk '{ print $14 + $15 }'
}

# writers_run SCRIPT CLIENTS ROLE [pgbench args...]: pgbench_run, and CPU_US,
# the CPU time its backends used per transaction (µs)
writers_run() {
	local c0 c1
	c0=$(reaped_ticks)
	pgbench_run "$@"
	sleep 0.5	# until the postmaster has reaped the backends
	c1=$(reaped_ticks)
	CPU_US=$(awk -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v x="$XACTS" \
		'BEGIN { if (x ~ /^[0-9]+$/ && x > 0) printf "%.1f", c / hz * 1000000 / x; else print "NA" }')
}

# cpu_ticks PID: user + system clock ticks the process has used
cpu_ticks() {
	sed -E 's/^.*\) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# --------------------------------------------------------------------------
# cache: one tenant's writers while another tenant changes its stream
# --------------------------------------------------------------------------
section_cache() {
	local r v order cpid rate c0 c1
	declare -A acc
	cat >"$WORK/cache_write.sql" <<-'EOF'
		\set v random(1, 1000000)
		\set lat random(0, 200)
		INSERT INTO datastreams.frames (stream_id, payload, latency_ms)
		VALUES (bench.stream_uuid(:client_id + 1), jsonb_build_object('v', CAST(:v AS integer)), CAST(:lat AS integer));
	EOF
	cat >"$WORK/cache_us.sql" <<-'EOF'
		\set sla random(100, 200)
		SELECT 1 FROM datastreams.update_stream(bench.stream_uuid(900), jsonb_build_object('sla_ms', CAST(:sla AS integer)));
	EOF
	cat >"$WORK/cache_ctl.sql" <<-'EOF'
		\set sla random(100, 200)
		SELECT bench.control_update(CAST(:sla AS integer));
	EOF
	chmod 644 "$WORK"/cache_*.sql

	# The loop's rate: as fast as tenant B's update_stream() loop goes while
	# the writers run, less a tenth so that both loops can hold it.  Both
	# loops then run at this rate (pgbench -R): the same competition for the
	# 2 cores and the WAL, only one of them invalidating caches.
	reset_tables
	(pgbench_run cache_us.sql 1 "$CHURNER" -T $((DUR + 2)) && echo "$TPS" >"$WORK/churn.tps") &
	cpid=$!
	BG_PIDS+=("$cpid")
	sleep 1
	pgbench_run cache_write.sql 4 "$TENANT" -T "$DUR"
	wait "$cpid" || true
	rate=$(awk -v t="$(cat "$WORK/churn.tps" 2>/dev/null)" 'BEGIN { if (t ~ /^[0-9.]+$/ && t >= 20) printf "%d", t * 0.9; else print 100 }')
	say "cache: 4 writers alone / while tenant B loops a one-row UPDATE / update_stream(), both loops at $rate/s, $RUNS x ${DUR}s"

	for ((r = 1; r <= RUNS; r++)); do
		# rotate the order, so that drift hits every variant alike
		order="alone ctl us"
		for ((i = 1; i < r; i++)); do order="${order#* } ${order%% *}"; done
		for v in $order; do
			reset_tables
			if [ "$v" = alone ]; then
				writers_run cache_write.sql 4 "$TENANT" -T "$DUR"
				acc[alone]+="$TPS "
				acc[alone.cpu]+="$CPU_US "
				continue
			fi
			rm -f "$WORK/churn.tps" "$WORK/churn.cpu"
			(pgbench_run "cache_$v.sql" 1 "$CHURNER" -T $((DUR + 2)) -R "$rate" && echo "$TPS" >"$WORK/churn.tps") &
			cpid=$!
			BG_PIDS+=("$cpid")
			sleep 1
			writers_run cache_write.sql 4 "$TENANT" -T "$DUR"
			acc[$v]+="$TPS "
			acc[$v.cpu]+="$CPU_US "
			c0=$(reaped_ticks)
			wait "$cpid" || true
			sleep 0.5	# until the postmaster has reaped tenant B's backend
			c1=$(reaped_ticks)
			acc[$v.churn]+="$(cat "$WORK/churn.tps" 2>/dev/null || echo NA) "
			# tenant B's backend: CPU per call (µs), from its exit
			acc[$v.churncpu]+="$(awk -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v t="$(cat "$WORK/churn.tps" 2>/dev/null)" -v d="$((DUR + 2))" \
				'BEGIN { if (t ~ /^[0-9.]+$/ && t > 0) printf "%.1f", c / hz * 1000000 / (t * d); else print "NA" }') "
		done
	done
	local a label
	# shellcheck disable=SC2086
	for v in alone ctl us; do
		case $v in
			alone) label="4 single-row writers (tenant A), alone" ;;
			ctl) label="same, while tenant B loops a one-row UPDATE of a table of its own at $rate/s (the control: same competition, no invalidation; $(fmt "$(median ${acc[ctl.churn]})") tx/s, $(fmt "$(median ${acc[ctl.churncpu]})") µs CPU each)" ;;
			us) label="same, while tenant B loops update_stream() on its stream at $rate/s ($(fmt "$(median ${acc[us.churn]})") calls/s, $(fmt "$(median ${acc[us.churncpu]})") µs CPU each)" ;;
		esac
		row "$label: throughput" "$(median ${acc[$v]})" "$(spread ${acc[$v]})" "tx/s" \
			"$(ratio "$(median ${acc[$v]})" "$(median ${acc[alone]})")" "" ""
		row "$label: the writers' backends' CPU per insert" "$(median ${acc[$v.cpu]})" "$(spread ${acc[$v.cpu]})" "µs" \
			"$(ratio "$(median ${acc[alone.cpu]})" "$(median ${acc[$v.cpu]})")" "" ""
	done
	a=$(ratio "$(median ${acc[us]})" "$(median ${acc[ctl]})")
	row "what the invalidations cost the writers: throughput with the update_stream() loop ÷ with the control loop" \
		"$a" "" "ratio" "$a" "≥ 0.90" "$(verdict "$a" '>=' 0.90)"
	a=$(ratio "$(median ${acc[ctl.cpu]})" "$(median ${acc[us.cpu]})")
	row "the same in the writers' CPU per insert: with the control loop ÷ with the update_stream() loop" \
		"$a" "" "ratio" "$a" "≥ 0.90" "$(verdict "$a" '>=' 0.90)"
	NOTES+="- cache: both of tenant B's loops run at the same rate ($rate/s: 0.9 × what its update_stream() loop reached alongside the writers in a first run), so they compete alike for the 2 cores and the WAL; the ratio of the writers' throughput with the update_stream() loop to that with the control loop is what the invalidations cost (target ≥ 0.90). Ratios against \"alone\" include the competition any busy tenant brings on 2 cores."$'\n'
}

# --------------------------------------------------------------------------
# prune: the worker under steady ingest, and the cost of one step
# --------------------------------------------------------------------------
section_prune() {
	local per_stream per_tx=25 rate wpid t0 t1 c0 c1 hz log0 runs steps removed frames0 frames1 cpu r n
	hz=$(getconf CLK_TCK)
	per_stream=$((PRUNE_RATE * PRUNE_RETENTION / PRUNE_STREAMS))
	rate=$((PRUNE_RATE / per_tx))
	say "prune: ${PRUNE_RATE} frames/s into $PRUNE_STREAMS streams (retention ${PRUNE_RETENTION}s, full window preloaded), worker every ${PRUNE_INTERVAL}s, ${PRUNE_SECS}s"
	reset_tables
	# the retention window full from the start: frames aged 0..RETENTION s
	q "INSERT INTO datastreams.frames (stream_id, sequence, payload, latency_ms, created_at)
	   SELECT bench.stream_uuid(10 + s), g, jsonb_build_object('v', g), g % 200,
	          now() - interval '$PRUNE_RETENTION seconds' * (1 - g::float8 / $per_stream)
	     FROM generate_series(1, $PRUNE_STREAMS) AS s, generate_series(1, $per_stream) AS g" >/dev/null
	q "VACUUM ANALYZE datastreams.frames" >/dev/null
	q "CHECKPOINT" >/dev/null
	cat >"$WORK/prune_write.sql" <<-EOF
		INSERT INTO datastreams.frames (stream_id, payload, latency_ms)
		SELECT bench.stream_uuid(10 + :client_id + 1), jsonb_build_object('v', g), g % 200
		  FROM generate_series(1, $per_tx) AS g;
	EOF
	chmod 644 "$WORK/prune_write.sql"
	frames0=$(q "SELECT count(*) FROM datastreams.frames")
	q "ALTER SYSTEM SET datastreams.prune_interval = '${PRUNE_INTERVAL}s'" >/dev/null
	q "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 1 50); do
		wpid=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'datastreams prune worker' LIMIT 1")
		[ -n "$wpid" ] && break
		sleep 0.1
	done
	[ -n "$wpid" ] || { warn "no prune worker"; FAILED=1; return 0; }
	log0=$(wc -c <"$WORK/server.log")
	t0=$(date +%s.%N)
	c0=$(cpu_ticks "$wpid")
	pgbench_run prune_write.sql "$PRUNE_STREAMS" "$TENANT" -T "$PRUNE_SECS" -R "$rate"
	c1=$(cpu_ticks "$wpid")
	t1=$(date +%s.%N)
	q "ALTER SYSTEM SET datastreams.prune_interval = 0" >/dev/null
	q "SELECT pg_reload_conf()" >/dev/null
	frames1=$(q "SELECT count(*) FROM datastreams.frames")
	tail -c +$((log0 + 1)) "$WORK/server.log" >"$WORK/prune.log"
	read -r runs steps removed < <(awk '/datastreams prune worker removed/ { runs++; for (i = 1; i <= NF; i++) if ($i == "removed") removed += $(i + 1) }
		/DETAIL: +[0-9]+ steps? in/ { for (i = 1; i <= NF; i++) if ($i ~ /^steps?$/) steps += $(i - 1) }
		END { print runs + 0, steps + 0, removed + 0 }' "$WORK/prune.log")
	cpu=$(awk -v c=$((c1 - c0)) -v hz="$hz" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", c / hz / (b - a) * 100 }')
	row "prune worker CPU under ${PRUNE_RATE} frames/s (achieved $(fmt "$(calc "${TPS:-0} * $per_tx")") frames/s), retention ${PRUNE_RETENTION}s, prune_interval ${PRUNE_INTERVAL}s: $runs runs, $steps steps, $removed frames removed in ${PRUNE_SECS}s; frames table $frames0 → $frames1" \
		"$cpu" "" "% of a core" "" "≤ 10" "$(verdict "$cpu" '<=' 10)"

	# One step's cost against the retained count: 100 expired frames at the
	# start of a stream that retains N frames; prune() in a transaction
	# rolled back, so every run deletes the same frames.
	say "prune: one prune() step deleting 100 frames, 10^4 .. $BIG frames retained"
	local base_ms="" base_blocks="" ms_runs blocks_runs ms blocks
	for n in $(printf '%s\n' 10000 100000 "$BIG" | sort -nu); do
		reset_tables
		q "INSERT INTO datastreams.frames (stream_id, sequence, created_at)
		   SELECT bench.stream_uuid(11), g, CASE WHEN g <= 100 THEN now() - interval '1 day' ELSE now() END
		     FROM generate_series(1, $n + 100) AS g" >/dev/null
		# the counters include every frame (as the publisher keeps them), so
		# that what is measured is the step's own walk
		q "SELECT datastreams.fold_stream_state(bench.stream_uuid(11))" >/dev/null
		q "VACUUM ANALYZE datastreams.frames" >/dev/null
		ms_runs=()
		blocks_runs=()
		for ((r = 1; r <= RUNS + 1; r++)); do
			read -r ms blocks < <(su_psql -At -F ' ' <<-'EOF' | tail -n 1
				BEGIN;
				SELECT clock_timestamp() AS t0 \gset
				SELECT datastreams.prune() \gset
				SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000, 3),
				       (SELECT sum(pg_stat_get_xact_blocks_fetched(c.oid))
				          FROM pg_class AS c
				         WHERE c.oid = 'datastreams.frames'::regclass
				            OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'datastreams.frames'::regclass))
				ROLLBACK;
			EOF
			)
			# the first run sets hint bits: not counted
			[ "$r" -eq 1 ] && continue
			ms_runs+=("$ms")
			blocks_runs+=("$blocks")
		done
		ms=$(median "${ms_runs[@]}")
		blocks=$(median "${blocks_runs[@]}")
		[ -n "$base_ms" ] || { base_ms=$ms; base_blocks=$blocks; }
		row "one prune() step deleting 100 frames, $n frames retained: time" "$ms" "$(spread "${ms_runs[@]}")" "ms" \
			"$(ratio "$ms" "$base_ms")" "flat" ""
		row "same: buffers of frames and its indexes read" "$blocks" "" "blocks" "$(ratio "$blocks" "$base_blocks")" "flat" ""
	done
}

# --------------------------------------------------------------------------
# bulk: ingest() against COPY into the plain twin
# --------------------------------------------------------------------------

# json_table NAME N: bench.NAME holds one jsonb array of N frames
json_table() {
	q "DROP TABLE IF EXISTS bench.$1" >/dev/null
	q "CREATE TABLE bench.$1 AS
	   SELECT jsonb_agg(jsonb_build_object('payload', jsonb_build_object('v', g), 'latency_ms', g % 200) ORDER BY g) AS frames
	     FROM generate_series(1, $2) AS g" >/dev/null
	q "GRANT SELECT ON bench.$1 TO PUBLIC" >/dev/null
}

# timed_sql ROLE SQL: sets MS, the statement's time by psql's \timing (NA on error)
timed_sql() {
	local role=$1 sql=$2 out rc
	set +e
	out=$(timeout -k 5 900 "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U "$role" -d "$DB" \
		-c '\timing on' -c "$sql" 2>&1)
	rc=$?
	set -e
	log "--- $role: $sql (rc $rc)"
	log "$out"
	MS=$(awk '/^Time: / { print $2 }' <<<"$out" | tail -n 1)
	if [ "$rc" -ne 0 ] || [ -z "$MS" ]; then
		warn "failed: $sql (see $WORK/bench.log)"
		FAILED=1
		MS=NA
	fi
}

section_bulk() {
	local r ingest=() copy_plain=() copy_ds=() i c p d
	say "bulk: ingest() of $BULK frames (tenant) vs COPY of $BULK rows (superuser), $RUNS runs"
	json_table batch_bulk "$BULK"
	awk -v s="$(stream_uuid 100)" -v n="$BULK" 'BEGIN { for (g = 1; g <= n; g++) printf "%s\t{\"v\": %d}\t%d\n", s, g, g % 200 }' \
		>"$WORK/bulk.tsv"
	chmod 644 "$WORK/bulk.tsv"
	for ((r = 1; r <= RUNS; r++)); do
		reset_tables
		timed_sql "$TENANT" "SELECT datastreams.ingest(bench.stream_uuid(100), (SELECT b.frames FROM bench.batch_bulk AS b))"
		ingest+=("$MS")
		reset_tables
		timed_sql postgres "COPY bench.frames_plain (stream_id, payload, latency_ms) FROM '$WORK/bulk.tsv'"
		copy_plain+=("$MS")
		reset_tables
		timed_sql postgres "COPY datastreams.frames (stream_id, payload, latency_ms) FROM '$WORK/bulk.tsv'"
		copy_ds+=("$MS")
	done
	i=$(median "${ingest[@]}")
	p=$(median "${copy_plain[@]}")
	d=$(median "${copy_ds[@]}")
	row "COPY of $BULK rows into the plain twin (superuser)" "$(calc "$BULK / $p * 1000")" "$(spread "${copy_plain[@]}") ms" "rows/s" "1.00" "" ""
	row "**ingest() of $BULK frames** (tenant, RLS on)" "$(calc "$BULK / $i * 1000")" "$(spread "${ingest[@]}") ms" "rows/s" \
		"$(ratio "$p" "$i")" "≥ 0.90" "$(verdict "$(ratio "$p" "$i")" '>=' 0.90)"
	row "COPY of $BULK rows into datastreams.frames (superuser, trigger)" "$(calc "$BULK / $d * 1000")" "$(spread "${copy_ds[@]}") ms" "rows/s" \
		"$(ratio "$p" "$d")" "" ""
}

# --------------------------------------------------------------------------
# memory: one ingest() of BIG frames
# --------------------------------------------------------------------------
section_memory() {
	local pid="" max=0 base k v rc sampler jsonb_bytes text_bytes
	say "memory: one ingest() of $BIG frames"
	reset_tables
	json_table batch_big "$BIG"
	read -r jsonb_bytes text_bytes < <(q "SELECT pg_column_size(frames OPERATOR(pg_catalog.||) '[]'::jsonb), octet_length(frames::text) FROM bench.batch_big" | tr '|' ' ')
	rm -f "$WORK/mem.pid" "$WORK/mem.after" "$WORK/mem.before"
	cat >"$WORK/mem.sql" <<-EOF
		SELECT pg_backend_pid() AS pid \gset
		\setenv BENCH_PID :pid
		\! echo "\$BENCH_PID" > $WORK/mem.pid
		SELECT pg_sleep(0.5);
		\! cat /proc/\$BENCH_PID/status > $WORK/mem.before
		SELECT datastreams.ingest(bench.stream_uuid(101), (SELECT b.frames FROM bench.batch_big AS b));
		\! cat /proc/\$BENCH_PID/status > $WORK/mem.after
	EOF
	chmod 644 "$WORK/mem.sql"
	timeout -k 5 900 "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U "$TENANT" -d "$DB" \
		-f "$WORK/mem.sql" >"$WORK/mem.out" 2>>"$WORK/bench.log" &
	sampler=$!
	BG_PIDS+=("$sampler")
	for _ in $(seq 1 100); do
		[ -s "$WORK/mem.pid" ] && break
		sleep 0.05
	done
	pid=$(cat "$WORK/mem.pid" 2>/dev/null || true)
	while [ -n "$pid" ] && kill -0 "$sampler" 2>/dev/null && [ ! -s "$WORK/mem.after" ]; do
		while read -r k v _; do
			if [ "$k" = RssAnon: ]; then
				[ "$v" -gt "$max" ] && max=$v
				break
			fi
		done <"/proc/$pid/status" 2>/dev/null || true
		sleep 0.01
	done
	set +e
	wait "$sampler"
	rc=$?
	set -e
	if [ "$rc" -ne 0 ] || [ ! -s "$WORK/mem.after" ]; then
		warn "the big ingest() failed; see $WORK/bench.log"
		FAILED=1
		return 0
	fi
	v=$(awk '/^RssAnon:/ { print $2 }' "$WORK/mem.after")
	[ "${v:-0}" -gt "$max" ] && max=$v
	base=$(awk '/^RssAnon:/ { print $2 }' "$WORK/mem.before")
	log "--- memory: jsonb $jsonb_bytes bytes, text $text_bytes bytes, RssAnon before ${base} kB, peak ${max} kB; $(grep -E 'VmHWM' "$WORK/mem.after")"
	row "ingest() of $BIG frames: its JSON argument (jsonb; as text $(fmt "$(calc "$text_bytes / 1048576")") MiB)" \
		"$(calc "$jsonb_bytes / 1048576")" "" "MiB" "1.00" "" ""
	row "same: peak private memory of the backend (RssAnon; $(fmt "$(calc "$base / 1024")") MiB before the call)" \
		"$(calc "$max / 1024")" "" "MiB" "$(ratio "$(calc "$max * 1024")" "$jsonb_bytes")" "≤ 2.00" \
		"$(verdict "$(ratio "$(calc "$max * 1024")" "$jsonb_bytes")" '<=' 2)"
}

# --------------------------------------------------------------------------
# cancel: pg_cancel_backend() during an ingest() of BIG frames
# --------------------------------------------------------------------------
section_cancel() {
	local r pid t0 t1 ms=() out state left
	say "cancel: pg_cancel_backend() $CANCEL_AFTER s into an ingest() of $BIG frames, $RUNS runs"
	[ -n "$(q "SELECT to_regclass('bench.batch_big')")" ] || json_table batch_big "$BIG"
	for ((r = 1; r <= RUNS; r++)); do
		reset_tables
		rm -f "$WORK/cancel.out"
		timeout -k 5 900 "$PGBIN/psql" -X -q -h "$WORK" -p "$PORT" -U "$TENANT" -d "$DB" \
			-v VERBOSITY=verbose -c "SET application_name = 'bench_cancel'" \
			-c "SELECT datastreams.ingest(bench.stream_uuid(101), (SELECT b.frames FROM bench.batch_big AS b))" \
			>"$WORK/cancel.out" 2>&1 &
		pid=$!
		BG_PIDS+=("$pid")
		sleep "$CANCEL_AFTER"
		t0=$(date +%s%N)
		q "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'bench_cancel'" >/dev/null
		wait "$pid" || true
		t1=$(date +%s%N)
		ms+=("$(calc "($t1 - $t0) / 1000000")")
		state=$(grep -oE 'ERROR: +[0-9A-Z]{5}' "$WORK/cancel.out" | awk '{ print $2 }' | head -n 1 || true)
		left=$(q "SELECT count(*) FROM datastreams.frames")
		log "--- cancel run $r: $(calc "($t1 - $t0) / 1000000") ms, SQLSTATE ${state:-none}, $left frames left; $(head -c 300 "$WORK/cancel.out")"
		out+="${state:-none}/$left "
	done
	local m
	m=$(median "${ms[@]}")
	row "ingest() of $BIG frames cancelled after $CANCEL_AFTER s: pg_cancel_backend() to the client's error (SQLSTATE/frames left per run: $out)" \
		"$m" "$(spread "${ms[@]}")" "ms" "" "< 100, 57014, 0 left" "$(verdict "$m" '<' 100)"
}

# --------------------------------------------------------------------------
# profile: perf record of the backend during ingest() and COPY
# --------------------------------------------------------------------------
PROFILE_TEXT=""
# functions whose inclusive time tells where a bulk load's time goes
PROFILE_SYMBOLS='datastreams_ingest|SPI_execute_plan|ExecInsertIndexTuples|heap_insert|heap_multi_insert|ExecBRInsertTriggers|datastreams_frames_trigger|ds_apply_frame_rules|jsonb_array_elements|getIthJsonbValueFromContainer|JsonbValueToJsonb|numeric_int8|ds_lookup_stream|ds_ledger_stream|ds_ledger_record_frame|ds_normalize_metadata|ds_generate_uuid_v7|ExecConstraints|ExecWithCheckOptions|ExecComputeStoredGenerated|CopyFrom|NextCopyFrom|jsonb_in|nextval_internal|XLogInsert|CommitTransactionCommand|detoast_attr|pglz_decompress'
profile_one() {
	local id=$1 label=$2 role=$3 sql=$4 bpid pid
	reset_tables
	cat >"$WORK/profile_$id.sql" <<-EOF
		SET application_name = 'bench_profile';
		SELECT pg_sleep(1);
		$sql
		$sql
		$sql
		$sql
		$sql
	EOF
	chmod 644 "$WORK/profile_$id.sql"
	timeout -k 5 900 "$PGBIN/psql" -X -q -h "$WORK" -p "$PORT" -U "$role" -d "$DB" -f "$WORK/profile_$id.sql" \
		>>"$WORK/bench.log" 2>&1 &
	bpid=$!
	BG_PIDS+=("$bpid")
	sleep 0.5
	pid=$(q "SELECT pid FROM pg_stat_activity WHERE application_name = 'bench_profile'")
	if [ -n "$pid" ] && timeout -k 5 600 perf record -q -g -p "$pid" -o "$WORK/perf.$id" >>"$WORK/bench.log" 2>&1 & then
		local ppid=$!
		wait "$bpid" || true
		kill -INT "$ppid" 2>/dev/null || true
		wait "$ppid" || true
		PROFILE_TEXT+=$'\n'"### $label"$'\n\n```\n'"$(
			perf report -i "$WORK/perf.$id" --no-children --sort dso,sym --stdio -g none --percent-limit 1.5 2>/dev/null |
				grep -E '^ +[0-9]' | head -25 | sed 's/ *$//'
			echo "inclusive time (children, self) of selected functions:"
			perf report -i "$WORK/perf.$id" --children --sort sym --stdio -g none 2>/dev/null |
				grep -E '^ +[0-9]' | grep -E "\] ($PROFILE_SYMBOLS) *\$" | head -30 | sed 's/ *$//'
		)"$'\n```\n'
	else
		wait "$bpid" || true
		warn "perf record failed for $label"
	fi
}

section_profile() {
	command -v perf >/dev/null || { warn "perf is not installed: no profile"; return 0; }
	say "profile: perf record -g of the backend, 5 x ingest() / COPY of $BULK"
	[ -n "$(q "SELECT to_regclass('bench.batch_bulk')")" ] || json_table batch_bulk "$BULK"
	[ -f "$WORK/bulk.tsv" ] || awk -v s="$(stream_uuid 100)" -v n="$BULK" 'BEGIN { for (g = 1; g <= n; g++) printf "%s\t{\"v\": %d}\t%d\n", s, g, g % 200 }' \
		>"$WORK/bulk.tsv"
	chmod 644 "$WORK/bulk.tsv"
	profile_one ingest "ingest() of $BULK frames, tenant" "$TENANT" \
		"SELECT datastreams.ingest(bench.stream_uuid(100), (SELECT b.frames FROM bench.batch_bulk AS b)); TRUNCATE datastreams.frames;"
	profile_one copy "COPY of $BULK rows into the plain twin" postgres \
		"COPY bench.frames_plain (stream_id, payload, latency_ms) FROM '$WORK/bulk.tsv'; TRUNCATE bench.frames_plain;"
}

# --------------------------------------------------------------------------
write_results() {
	local started=$1 version settings cpu
	version=$(q "SHOW server_version")
	settings=$(q "SELECT string_agg(format('\`%s = %s\`', name, current_setting(name)), ', ' ORDER BY name) FROM pg_settings
		WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'wal_level', 'max_wal_size', 'work_mem',
		               'shared_preload_libraries', 'datastreams.prune_batch_size')")
	cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	{
		echo "# datastreams ingest, cache and pruning benchmark results"
		echo
		echo "Made by \`$(env | grep -E '^BENCH_[A-Z_]+=' | grep -vE '^BENCH_(OUT|LABEL)=' | sort | sed 's/$/ /' | tr -d '\n')test/bench/ingest.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), started $started; extension built at $BUILD_COMMIT${BENCH_LABEL:+ — $BENCH_LABEL}."
		echo
		echo "- Machine: $(nproc) cores ($cpu), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM; load average at start $LOAD_START, at the end $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "- PostgreSQL $version, fresh cluster, default settings except: $settings"
		echo "- Medians of $RUNS run(s); frames tables truncated and CHECKPOINT before each run."
		echo
		echo "| measurement | median | runs: min–max | unit | ratio | target | verdict |"
		echo "|---|---:|---:|---|---:|---|---|"
		printf '%s' "$ROWS"
		[ -z "$NOTES" ] || printf '\n%s' "$NOTES"
		if [ -n "$PROFILE_TEXT" ]; then
			echo
			echo "## Profiles"
			echo
			echo "\`perf record -g -p <backend>\` over 5 statements; self time by shared object and symbol (≥ 1.5 %), then the inclusive time of selected functions (percent of all samples of the backend)."
			printf '%s\n' "$PROFILE_TEXT"
		fi
		[ "$FAILED" -eq 0 ] || printf '\n**Some measurements failed (NA); see the harness log.**\n'
	} >"$OUT"
}

main() {
	local started
	started=$(date -u '+%H:%M UTC')
	LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
	command -v cc >/dev/null || true
	start_cluster
	load_schema
	if want cache; then section_cache; fi
	if want prune; then section_prune; fi
	if want bulk; then section_bulk; fi
	if want memory; then section_memory; fi
	if want cancel; then section_cancel; fi
	if want profile; then section_profile; fi
	write_results "$started"
	cat "$OUT"
	say "results written to $OUT"
}

main "$@"
