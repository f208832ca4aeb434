#!/usr/bin/env bash
# The datastreams benchmark harness (issue 6).  Measures; asserts nothing.
#
#   sudo test/bench/run.sh                 full run, about 8 minutes on 2 cores
#   sudo BENCH_QUICK=1 test/bench/run.sh   smoke run, about 1 minute
#
# Starts a throwaway PostgreSQL 15 cluster owned by 'postgres' with DEFAULT
# settings except shared_preload_libraries = 'datastreams' (so fsync and
# synchronous_commit are on), loads the extension, a plain untriggered copy
# of the frames table (the ceiling) and a PL/pgSQL implementation of the
# same rules (test/bench/plpgsql_baseline.sql), measures everything side by
# side, prints ONE markdown table of medians and ratios and writes it, with
# a header naming the machine and settings, to test/bench/results.md.
#
# When scripts/lib.sh exists and we are root, it first installs missing
# packages (scripts/lib.sh), builds the extension from this tree and installs
# it into a private copy of the PostgreSQL installation in its scratch
# directory (the system's installation is left alone); with BENCH_SKIP_BUILD=1,
# or otherwise, the extension installed in PostgreSQL's directories is used.
#
# Environment:
#   BENCH_QUICK=1          1 run x 1 s per cell, 5*10^4 instead of 10^6 rows
#   BENCH_RUNS=N           runs per cell (default 5; quick 1); the median is reported
#                          (many short interleaved runs resist bursts of other load
#                          on the machine better than a few long ones)
#   BENCH_SECONDS=N        seconds per pgbench run (default 3; quick 1)
#   BENCH_BIG=N            rows of the big stream and big statement (default 10^6;
#                          quick 5*10^4); the smaller statement has a tenth of it
#   BENCH_COPY_BATCHES=N   1000-row COPY statements per COPY run (default 50; quick 20)
#   BENCH_PROFILE=0|1      perf profile of single-row and batch ingest
#                          (default: 1 in a full run when perf works)
#   BENCH_SECTIONS="..."   sections to run, default "1 2 3 4 5 profile"
#   BENCH_PORT=N           port of the throwaway cluster (default 55700; it
#                          listens on a private Unix socket only)
#   BENCH_OUT=FILE         results file (default test/bench/results.md)
#   BENCH_KEEP=1           keep the scratch directory (cluster, logs)
#   BENCH_SKIP_BUILD=1     do not install packages or build; use the installed extension
#   BENCH_LABEL=TEXT       appended to the results header (e.g. what was built)
#   BENCH_PGBIN=DIR        PostgreSQL bin directory (default /usr/lib/postgresql/15/bin;
#                          e.g. a DESTDIR copy with another build of the extension)
#
# The harness never hangs: every client runs under timeout(1), and the
# cluster and every background process it started are stopped on exit.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -Eeuo pipefail

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_SRC/../.." && pwd)

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
	RUNS=${BENCH_RUNS:-1}
	DUR=${BENCH_SECONDS:-1}
	BIG=${BENCH_BIG:-50000}
	COPY_BATCHES=${BENCH_COPY_BATCHES:-20}
	PROFILE=${BENCH_PROFILE:-0}
else
	RUNS=${BENCH_RUNS:-5}
	DUR=${BENCH_SECONDS:-3}
	BIG=${BENCH_BIG:-1000000}
	COPY_BATCHES=${BENCH_COPY_BATCHES:-50}
	PROFILE=${BENCH_PROFILE:-auto}
fi
SMALL=$((BIG / 10))
UUID_CALLS=$((BIG / 10))
SECTIONS=" ${BENCH_SECTIONS:-1 2 3 4 5 profile} "
PORT=${BENCH_PORT:-55700}
OUT=${BENCH_OUT:-$BENCH_SRC/results.md}
PGBIN=${BENCH_PGBIN:-/usr/lib/postgresql/15/bin}
PG_CONFIG=$PGBIN/pg_config
# the postgres database: the extension's background workers connect to it by default
DB=postgres
TENANT=bench_tenant
# the baseline's tenancy setting, sent by every connection
export PGOPTIONS="-c baseline.account_id=bench"

WORK=""
BUILT_HERE=0
BUILD_COMMIT=""
BG_PIDS=()
FAILED=0

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
# (only where errexit is on: set +e marks failures that are handled)
trap '[[ $- != *e* ]] || printf "ERROR: run.sh line %s: %s failed\n" "$LINENO" "$BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------------------
# Statistics helpers
# --------------------------------------------------------------------------

# median of the numeric arguments ("NA" ones ignored; NA when none)
median() {
	printf '%s\n' "$@" | { grep -E '^[0-9.eE+-]+$' || true; } | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# summarize KEY VALUES...: M[KEY] = their median, M[KEY.spread] = "min–max"
# when there is more than one
summarize() {
	local key=$1 lo hi
	shift
	M[$key]=$(median "$@")
	lo=""
	hi=""
	read -r lo hi < <(printf '%s\n' "$@" | { grep -E '^[0-9.eE+-]+$' || true; } | sort -g |
		awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR > 1) print lo, hi }') || true
	if [ -n "${lo:-}" ]; then M[$key.spread]="$(fmt "$lo")–$(fmt "$hi")"; fi
}

# a / b with 2 decimals; "" when either is missing
ratio() {
	awk -v a="${1:-NA}" -v b="${2:-NA}" 'BEGIN {
		if (a !~ /^[0-9.eE+-]+$/ || b !~ /^[0-9.eE+-]+$/ || b + 0 == 0) { print ""; exit }
		printf "%.2f", a / b }'
}

# round for display: >= 100 as an integer, else 3 significant digits
fmt() {
	awk -v v="${1:-NA}" 'BEGIN {
		if (v !~ /^[0-9.eE+-]+$/) { print v; exit }
		if (v >= 100) printf "%.0f", v; else if (v >= 10) printf "%.1f", v;
		else if (v >= 1) printf "%.2f", v; else printf "%.3f", v }'
}

declare -A M		# measured medians, by key

# --------------------------------------------------------------------------
# Cluster
# --------------------------------------------------------------------------

make_workdir() {
	WORK=$(mktemp -d /var/tmp/datastreams-bench.XXXXXX)
	chmod 755 "$WORK"
	if [ "$(id -u)" -eq 0 ]; then chown postgres: "$WORK"; fi
	: >"$WORK/bench.log"
	chmod 666 "$WORK/bench.log"
	say "scratch directory $WORK"
}

# Build the extension from this tree and install it into a private copy of
# the PostgreSQL 15 installation in the scratch directory, so that the run
# measures exactly this tree, unaffected by (and not affecting) anyone else
# installing the extension meanwhile, and perf can resolve its symbols.
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
	PG_CONFIG=$PGBIN/pg_config
	BUILT_HERE=1
}

prepare() {
	if [ "${BENCH_SKIP_BUILD:-0}" != 1 ] && [ -z "${BENCH_PGBIN:-}" ] && [ -f "$ROOT/scripts/lib.sh" ] &&
		[ "$(id -u)" -eq 0 ]; then
		# shellcheck source=/dev/null
		. "$ROOT/scripts/lib.sh"
		ds_ensure_packages >&2
		private_build
	fi
	[ -x "$PGBIN/postgres" ] || die "PostgreSQL 15 is not installed ($PGBIN)"
	[ -x "$PGBIN/pgbench" ] || die "pgbench is not installed ($PGBIN/pgbench)"
	[ -f "$("$PG_CONFIG" --pkglibdir)/datastreams.so" ] ||
		die "the datastreams extension is not installed (make install)"
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || die "OS user 'postgres' does not exist"
	fi
	command -v cc >/dev/null || die "a C compiler (cc) is needed for the benchmark listener"
}

start_cluster() {
	as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --no-locale \
		>"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
	cat >>"$WORK/data/postgresql.conf" <<-EOF

		# ---- datastreams benchmark: defaults except the preload ----
		port = $PORT
		listen_addresses = ''
		unix_socket_directories = '$WORK'
		shared_preload_libraries = 'datastreams'
	EOF
	as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w -t 60 start >/dev/null ||
		{ tail -n 30 "$WORK/server.log" >&2; die "the server did not start"; }
}

# psql as the superuser; extra arguments passed on
su_psql() {
	timeout -k 5 "${PSQL_TIMEOUT:-900}" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
		-h "$WORK" -p "$PORT" -U postgres -d "$DB" "$@"
}

load_schema() {
	su_psql -c "CREATE EXTENSION datastreams" >/dev/null
	su_psql -f "$BENCH_SRC/plpgsql_baseline.sql" >/dev/null
	su_psql -f "$BENCH_SRC/setup.sql" >/dev/null
	HAVE_INGEST=$(su_psql -At -c "SELECT to_regprocedure('datastreams.ingest(uuid, jsonb)') IS NOT NULL")
}

build_listener() {
	local inc libdir
	inc=$("$PG_CONFIG" --includedir)
	libdir=$("$PG_CONFIG" --libdir)
	[ -f "$inc/libpq-fe.h" ] || inc=/usr/include/postgresql
	[ -d "$libdir" ] || libdir=/usr/lib/x86_64-linux-gnu
	cc -O2 -Wall -I"$inc" "$BENCH_SRC/notify_delay.c" -L"$libdir" -lpq -o "$WORK/notify_delay" 2>>"$WORK/bench.log" ||
		die "could not compile test/bench/notify_delay.c (see $WORK/bench.log)"
}

# Empty every frames table and checkpoint, so each run starts alike
reset_tables() {
	su_psql -c "TRUNCATE datastreams.frames, datastreams.stream_state, bench.frames_plain,
				bench.frames_plain_fk, baseline.frames, baseline.stream_state" >/dev/null
	# (a quick run saves the time)
	[ "$QUICK" = 1 ] || su_psql -c "CHECKPOINT" >/dev/null
}

stream_uuid() { printf '00000000-0000-4000-8000-%012d' "$1"; }

# --------------------------------------------------------------------------
# pgbench
# --------------------------------------------------------------------------

# Scripts: payloads carry "t" (the INSERT's clock in Unix microseconds)
PAYLOAD="jsonb_build_object('t', (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, 'v', CAST(:v AS integer))"
VALUES_ROW="bench.stream_uuid(:sid), $PAYLOAD, :lat"
BATCH_SELECT="SELECT bench.stream_uuid(100), jsonb_build_object('v', g), g % 200 FROM generate_series(1, 1000) AS g"

write_scripts() {
	local d=$WORK/scripts sid
	mkdir -p "$d"
	for mode in own one; do
		if [ "$mode" = own ]; then sid='\set sid :client_id + 1'; else sid='\set sid 0'; fi
		head="$sid"$'\n''\set v random(1, 1000000)'$'\n''\set lat random(0, 200)'
		printf '%s\n%s\n' "$head" \
			"INSERT INTO bench.frames_plain (stream_id, payload, latency_ms) VALUES ($VALUES_ROW);" \
			>"$d/plain_$mode.sql"
		printf '%s\n%s\n' "$head" \
			"INSERT INTO datastreams.frames (stream_id, payload, latency_ms) VALUES ($VALUES_ROW);" \
			>"$d/ds_insert_$mode.sql"
		printf '%s\n%s\n' "$head" \
			"SELECT datastreams.create_frame(stream_id => bench.stream_uuid(:sid), payload => $PAYLOAD, latency_ms => :lat);" \
			>"$d/ds_create_$mode.sql"
		printf '%s\n%s\n' "$head" \
			"INSERT INTO baseline.frames (stream_id, payload, latency_ms) VALUES ($VALUES_ROW);" \
			>"$d/plpgsql_$mode.sql"
	done
	echo "INSERT INTO bench.frames_plain (stream_id, payload, latency_ms) $BATCH_SELECT;" >"$d/batch_plain.sql"
	echo "INSERT INTO datastreams.frames (stream_id, payload, latency_ms) $BATCH_SELECT;" >"$d/batch_ds.sql"
	echo "INSERT INTO baseline.frames (stream_id, payload, latency_ms) $BATCH_SELECT;" >"$d/batch_plpgsql.sql"
	echo "SELECT datastreams.ingest(bench.stream_uuid(100), (SELECT b.frames FROM bench.batch_json AS b));" \
		>"$d/batch_ingest.sql"
	echo "SELECT datastreams.latest_frame(bench.stream_uuid(:sid));" >"$d/read_latest.sql"
	echo "SELECT * FROM datastreams.list_frames(bench.stream_uuid(:sid), 25);" >"$d/read_list.sql"

	# COPY: one 1000-row file, loaded COPY_BATCHES times, one transaction each
	awk -v s="$(stream_uuid 100)" 'BEGIN { for (g = 1; g <= 1000; g++) printf "%s\t{\"v\": %d}\t%d\n", s, g, g % 200 }' \
		>"$WORK/copy1000.tsv"
	chmod 644 "$WORK/copy1000.tsv"
	local t
	for t in bench.frames_plain datastreams.frames baseline.frames; do
		{
			printf '%s\n' '\timing on'
			for ((i = 0; i < COPY_BATCHES; i++)); do
				echo "COPY $t (stream_id, payload, latency_ms) FROM '$WORK/copy1000.tsv';"
			done
		} >"$d/copy_$t.sql"
	done
}

# pgbench_run SCRIPT CLIENTS [pgbench args...]: sets TPS and LAT (ms), NA on failure
pgbench_run() {
	local script=$1 clients=$2 jobs out rc
	shift 2
	jobs=$((clients < 2 ? clients : 2))
	set +e
	out=$(timeout -k 5 $((DUR + 120)) "$PGBIN/pgbench" -n -M prepared -h "$WORK" -p "$PORT" -U "$TENANT" \
		-c "$clients" -j "$jobs" -T "$DUR" "$@" -f "$WORK/scripts/$script" "$DB" 2>&1)
	rc=$?
	set -e
	log "--- pgbench $script -c $clients $* (rc $rc)"
	log "$out"
	if [ "$rc" -ne 0 ] || ! grep -q '^tps = ' <<<"$out"; then
		warn "pgbench $script -c $clients failed (rc $rc); see $WORK/bench.log"
		FAILED=1
		TPS=NA
		LAT=NA
		return 0
	fi
	TPS=$(awk '/^tps = / { print $3 }' <<<"$out")
	LAT=$(awk '/^latency average = / { print $4 }' <<<"$out")
}

# --------------------------------------------------------------------------
# 1. single-row ingest
# --------------------------------------------------------------------------
SINGLE_VARIANTS="plain ds_insert ds_create plpgsql"
SINGLE_CELLS="1:own 4:own 8:own 8:one"

section_single() {
	local r cell clients mode v
	declare -A acc
	say "1. single-row ingest: $(wc -w <<<"$SINGLE_VARIANTS") paths x 4 client settings x $RUNS runs x ${DUR}s"
	for ((r = 1; r <= RUNS; r++)); do
		for cell in $SINGLE_CELLS; do
			clients=${cell%%:*}
			mode=${cell##*:}
			for v in $SINGLE_VARIANTS; do
				reset_tables
				pgbench_run "${v}_$mode.sql" "$clients"
				acc[$v.$cell]+="$TPS "
			done
		done
	done
	for cell in $SINGLE_CELLS; do
		for v in $SINGLE_VARIANTS; do
			# shellcheck disable=SC2086
			summarize "single.$v.$cell" ${acc[$v.$cell]}
		done
	done
}

# --------------------------------------------------------------------------
# 2. batch ingest
# --------------------------------------------------------------------------

# copy_run TABLE: sets RATE, rows/s of COPY_BATCHES 1000-row COPYs (as the
# superuser, one transaction each), timed by psql per statement
copy_run() {
	local t=$1 out rc
	set +e
	out=$(su_psql -f "$WORK/scripts/copy_$t.sql" 2>&1)
	rc=$?
	set -e
	log "--- COPY into $t x $COPY_BATCHES (rc $rc)"
	log "$out"
	RATE=$(awk -v n="$COPY_BATCHES" '/^Time: / { ms += $2; k++ } END { if (k == n && ms > 0) printf "%.1f\n", n * 1000 / (ms / 1000); else print "NA" }' <<<"$out")
	if [ "$rc" -ne 0 ] || [ "$RATE" = NA ]; then
		warn "COPY into $t failed; see $WORK/bench.log"
		FAILED=1
		RATE=NA
	fi
}

section_batch() {
	local r v t f
	declare -A acc
	local variants="plain ds plpgsql"
	[ "$HAVE_INGEST" = t ] && variants+=" ingest"
	say "2. batch ingest: 1000-row INSERT ... SELECT ($variants) and COPY, $RUNS runs"
	for ((r = 1; r <= RUNS; r++)); do
		for v in $variants; do
			reset_tables
			pgbench_run "batch_$v.sql" 1
			acc[insert.$v]+="$(awk -v t="$TPS" 'BEGIN { if (t ~ /^[0-9.]+$/) print t * 1000; else print "NA" }') "
		done
		for t in bench.frames_plain datastreams.frames baseline.frames; do
			reset_tables
			copy_run "$t"
			acc[copy.$t]+="$RATE "
		done
	done
	for v in $variants; do
		# shellcheck disable=SC2086
		summarize "batch.insert.$v" ${acc[insert.$v]}
	done
	# what a frame id costs: the id default of every frames table here
	for ((r = 1; r <= RUNS; r++)); do
		for f in datastreams.uuid_v7 gen_random_uuid; do
			acc[uuid.$f]+="$(su_psql -c '\timing on' -c "SELECT count($f()) FROM generate_series(1, $UUID_CALLS)" |
				awk -v n="$UUID_CALLS" '/^Time: / { printf "%.3f", $2 * 1000 / n }') "
		done
	done
	# shellcheck disable=SC2086
	summarize "batch.uuid.v7" ${acc[uuid.datastreams.uuid_v7]}
	# shellcheck disable=SC2086
	summarize "batch.uuid.pg" ${acc[uuid.gen_random_uuid]}
	# shellcheck disable=SC2086
	summarize "batch.copy.plain" ${acc[copy.bench.frames_plain]}
	# shellcheck disable=SC2086
	summarize "batch.copy.ds" ${acc[copy.datastreams.frames]}
	# shellcheck disable=SC2086
	summarize "batch.copy.plpgsql" ${acc[copy.baseline.frames]}
}

# --------------------------------------------------------------------------
# 4. notifications with a listener attached
# --------------------------------------------------------------------------

# notify_run MODE CLIENTS: sets TPS, RECV, P50, P99 (CLIENTS writers, a
# stream each, one listener on every channel)
notify_run() {
	local mode=$1 clients=$2 channels=() n lpid line rc saved=$PGOPTIONS
	for n in $(seq 1 "$clients"); do channels+=("datastreams_$(stream_uuid "$n")"); done
	reset_tables
	rm -f "$WORK/listener.out"
	"$WORK/notify_delay" "host=$WORK port=$PORT user=$TENANT dbname=$DB" $((DUR + 60)) \
		"${channels[@]}" >"$WORK/listener.out" 2>>"$WORK/bench.log" &
	lpid=$!
	BG_PIDS+=("$lpid")
	for n in $(seq 1 100); do
		grep -q '^listening' "$WORK/listener.out" 2>/dev/null && break
		kill -0 "$lpid" 2>/dev/null || break
		sleep 0.1
	done
	# with notifications off every transaction gets a WARNING: not to the client
	[ "$mode" = off ] && PGOPTIONS="$PGOPTIONS -c client_min_messages=error"
	pgbench_run ds_insert_own.sql "$clients"
	PGOPTIONS=$saved
	sleep 1 # let the last notifications arrive
	kill -TERM "$lpid" 2>/dev/null || true
	set +e
	wait "$lpid"
	rc=$?
	set -e
	line=$(grep '^received=' "$WORK/listener.out" || true)
	log "--- listener ($mode, $clients writers, rc $rc): $line"
	RECV=NA
	P50=NA
	P99=NA
	if [ -n "$line" ]; then
		RECV=$(sed -E 's/.*received=([0-9]+).*/\1/' <<<"$line")
		if [ "$mode" != off ]; then
			P50=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$line")
			P99=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$line")
		fi
	else
		warn "the listener reported nothing ($mode); see $WORK/bench.log"
		FAILED=1
	fi
}

# set_notifications publisher|commit|off
set_notifications() {
	local sql=(-c "ALTER SYSTEM RESET datastreams.notify_queue_limit" -c "ALTER SYSTEM RESET log_min_messages"
		-c "ALTER SYSTEM RESET datastreams.notify_via_worker")
	case $1 in
		off)
			# the publisher then announces nothing (writers still hand their
			# frames over, and it still folds the counters); keep its
			# WARNINGs out of the server log so only the bus is measured
			sql+=(-c "ALTER SYSTEM SET datastreams.notify_queue_limit = 0"
				-c "ALTER SYSTEM SET log_min_messages = error") ;;
		commit)
			sql+=(-c "ALTER SYSTEM SET datastreams.notify_via_worker = off") ;;
	esac
	su_psql "${sql[@]}" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 1
}

NOTIFY_MODES="publisher off commit"
NOTIFY_CLIENTS="4 8"

section_notify() {
	local r mode k c
	declare -A acc
	say "4. 4 and 8 writers with a LISTEN client, notifications $NOTIFY_MODES, $RUNS runs"
	for ((r = 1; r <= RUNS; r++)); do
		for c in $NOTIFY_CLIENTS; do
			for mode in $NOTIFY_MODES; do
				set_notifications "$mode"
				notify_run "$mode" "$c"
				acc[tps.$mode.$c]+="$TPS "
				acc[p50.$mode.$c]+="$P50 "
				acc[p99.$mode.$c]+="$P99 "
				acc[recv.$mode.$c]+="$RECV "
				# frames written, to compare with notifications received
				acc[frames.$mode.$c]+="$(su_psql -At -c "SELECT count(*) FROM datastreams.frames") "
			done
		done
	done
	set_notifications publisher
	for c in $NOTIFY_CLIENTS; do
		for mode in $NOTIFY_MODES; do
			for k in tps p50 p99 recv frames; do
				# shellcheck disable=SC2086
				summarize "notify.$k.$mode.$c" ${acc[$k.$mode.$c]}
			done
		done
	done
}

# --------------------------------------------------------------------------
# 5. backend memory of one big INSERT ... SELECT (also its speed)
# --------------------------------------------------------------------------

# mem_run TABLE STREAM ROWS: sets SEC, HWM_KB and ANON_KB (peak RssAnon)
mem_run() {
	local table=$1 stream=$2 rows=$3 sampler pid="" max=0 k v rc
	rm -f "$WORK/mem.pid" "$WORK/mem.after" "$WORK/mem.peak"
	cat >"$WORK/mem.sql" <<-EOF
		SELECT pg_backend_pid() AS pid \gset
		\setenv BENCH_PID :pid
		\! echo "\$BENCH_PID" > $WORK/mem.pid
		SET ROLE $TENANT;
		SELECT pg_sleep(0.3);
		SELECT clock_timestamp() AS t0 \gset
		INSERT INTO $table (stream_id, payload, latency_ms)
		SELECT bench.stream_uuid($stream), jsonb_build_object('v', g), g % 200
		  FROM generate_series(1, $rows) AS g;
		SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS elapsed \gset
		\! cat /proc/\$BENCH_PID/status > $WORK/mem.after
		\echo ELAPSED :elapsed
	EOF
	su_psql -f "$WORK/mem.sql" >"$WORK/mem.out" 2>>"$WORK/bench.log" &
	sampler=$!
	BG_PIDS+=("$sampler")
	for _ in $(seq 1 100); do
		[ -s "$WORK/mem.pid" ] && break
		sleep 0.05
	done
	pid=$(cat "$WORK/mem.pid" 2>/dev/null || true)
	# sample the backend's private memory until the INSERT is done
	while [ -n "$pid" ] && kill -0 "$sampler" 2>/dev/null && [ ! -s "$WORK/mem.after" ]; do
		while read -r k v _; do
			if [ "$k" = RssAnon: ]; then
				[ "$v" -gt "$max" ] && max=$v
				break
			fi
		done <"/proc/$pid/status" 2>/dev/null || true
		sleep 0.02
	done
	set +e
	wait "$sampler"
	rc=$?
	set -e
	if [ "$rc" -ne 0 ] || [ ! -s "$WORK/mem.after" ]; then
		warn "big INSERT into $table failed; see $WORK/bench.log"
		FAILED=1
		SEC=NA
		HWM_KB=NA
		ANON_KB=NA
		return 0
	fi
	# the last sample may have missed the very end
	v=$(awk '/^RssAnon:/ { print $2 }' "$WORK/mem.after")
	[ "${v:-0}" -gt "$max" ] && max=$v
	log "--- big INSERT $table $rows rows: $(grep ELAPSED "$WORK/mem.out") $(grep -E 'VmHWM|RssAnon' "$WORK/mem.after" | tr -s ' \n' ' ')"
	SEC=$(awk '/^ELAPSED/ { print $2 }' "$WORK/mem.out")
	HWM_KB=$(awk '/^VmHWM:/ { print $2 }' "$WORK/mem.after")
	ANON_KB=$max
}

# mem_record KEY ROWS: store the results of the last mem_run
mem_record() {
	M[$1.rate]=$(awk -v s="$SEC" -v n="$2" 'BEGIN { if (s ~ /^[0-9.]+$/ && s > 0) print n / s; else print "NA" }')
	M[$1.hwm]=$(awk -v k="$HWM_KB" 'BEGIN { if (k ~ /^[0-9]+$/) print k / 1024; else print "NA" }')
	M[$1.anon]=$(awk -v k="$ANON_KB" 'BEGIN { if (k ~ /^[0-9]+$/) print k / 1024; else print "NA" }')
}

section_memory() {
	local rows stream
	say "5. backend memory: one INSERT ... SELECT of $SMALL and $BIG rows, plain table (+ foreign key) and datastreams.frames"
	reset_tables
	for rows in $SMALL $BIG; do
		mem_run bench.frames_plain 1001 "$rows"
		mem_record "mem.plain.$rows" "$rows"
		mem_run bench.frames_plain_fk 1001 "$rows"
		mem_record "mem.plainfk.$rows" "$rows"
		# the big one stays in stream 1001 for the read benchmark
		if [ "$rows" = "$BIG" ]; then stream=1001; else stream=1002; fi
		mem_run datastreams.frames "$stream" "$rows"
		mem_record "mem.ds.$rows" "$rows"
		su_psql -c "CHECKPOINT" >/dev/null
	done
}

# --------------------------------------------------------------------------
# 3. reads on a small and a big stream (after section 5 filled stream 1001)
# --------------------------------------------------------------------------
section_reads() {
	local r s q
	declare -A acc
	say "3. latest_frame() and list_frames(25) on 10^3 vs $BIG frames, $RUNS runs"
	# section 5 leaves BIG frames in stream 1001; without it, write them here
	su_psql -c "INSERT INTO datastreams.frames (stream_id, payload, latency_ms)
				SELECT bench.stream_uuid(1001), jsonb_build_object('v', g), g % 200
				  FROM generate_series(1, $BIG - (SELECT count(*) FROM datastreams.frames
												 WHERE stream_id = bench.stream_uuid(1001))) AS g" >/dev/null
	su_psql -c "INSERT INTO datastreams.frames (stream_id, payload, latency_ms)
				SELECT bench.stream_uuid(1000), jsonb_build_object('v', g), g % 200 FROM generate_series(1, 1000) AS g" \
		-c "VACUUM ANALYZE datastreams.frames" -c "VACUUM ANALYZE datastreams.stream_state" -c "CHECKPOINT" >/dev/null
	M[reads.count.1000]=$(su_psql -At -c "SELECT count(*) FROM datastreams.frames WHERE stream_id = bench.stream_uuid(1000)")
	M[reads.count.1001]=$(su_psql -At -c "SELECT count(*) FROM datastreams.frames WHERE stream_id = bench.stream_uuid(1001)")
	for ((r = 1; r <= RUNS; r++)); do
		for q in latest list; do
			for s in 1000 1001; do
				DUR=$(((DUR + 1) / 2)) pgbench_run "read_$q.sql" 1 -D sid="$s"
				acc[$q.$s]+="$LAT "
			done
		done
	done
	for q in latest list; do
		for s in 1000 1001; do
			# shellcheck disable=SC2086
			summarize "reads.$q.$s" ${acc[$q.$s]}
		done
	done
}

# --------------------------------------------------------------------------
# Profile (perf), not timed
# --------------------------------------------------------------------------
PROFILE_TEXT=""

# symbols whose inclusive time (with their callees) tells where time goes
PROFILE_SYMBOLS='CommitTransactionCommand|XLogFlush|PreCommit_Notify|LockSharedObject|AtCommit_Notify|standard_ExecutorRun|ExecInsertIndexTuples|heap_insert|ExecBRInsertTriggers|AfterTriggerEndQuery|RI_FKey_check_ins|ExecWithCheckOptions|datastreams_frames_trigger|datastreams_frames_statement_trigger|ds_progress_flush|ds_progress_for|ds_notify_frame|ds_lookup_stream|datastreams_uuid_v7|ds_generate_uuid_v7|plpgsql_exec_trigger|CopyFrom|jsonb_build_object'

perf_report() {
	local data=$1
	{
		echo "self time, by shared object and symbol:"
		perf report -i "$data" --no-children --sort dso,sym --stdio -g none --percent-limit 1.2 2>/dev/null |
			grep -E '^ +[0-9]' | head -20 | sed 's/ *$//'
		echo "inclusive time (children, self) of selected functions:"
		perf report -i "$data" --children --sort dso,sym --stdio -g none 2>/dev/null |
			grep -E '^ +[0-9]' | grep -E "\] ($PROFILE_SYMBOLS) *\$" | head -25 | sed 's/ *$//'
		echo "self time in datastreams.so (percent of all samples of these backends):"
		perf report -i "$data" --no-children --dsos datastreams.so --percentage absolute \
			--sort sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -10 | sed 's/ *$//'
	} || true
}

# profile_one ID LABEL SCRIPT CLIENTS: perf record the backends serving pgbench
profile_one() {
	local id=$1 label=$2 script=$3 clients=$4 bpid pids=""
	reset_tables
	(DUR=$((PDUR + 4)) pgbench_run "$script" "$clients") &
	bpid=$!
	BG_PIDS+=("$bpid")
	for _ in $(seq 1 50); do
		sleep 0.1
		pids=$(su_psql -At -c "SELECT string_agg(pid::text, ',') FROM pg_stat_activity
								WHERE application_name = 'pgbench' AND backend_type = 'client backend'")
		[ -n "$pids" ] && [ "$(tr ',' '\n' <<<"$pids" | wc -l)" -ge "$clients" ] && break
	done
	sleep 1
	if [ -n "$pids" ] && timeout -k 5 $((PDUR + 30)) perf record -q -g -p "$pids" -o "$WORK/perf.$id" \
		-- sleep "$PDUR" >>"$WORK/bench.log" 2>&1; then
		PROFILE_TEXT+=$'\n'"### $label"$'\n\n```\n'"$(perf_report "$WORK/perf.$id")"$'\n```\n'
	else
		warn "perf record failed for $label"
	fi
	wait "$bpid" || true
}

section_profile() {
	if [ "$PROFILE" = auto ]; then
		if command -v perf >/dev/null && perf record -q -o "$WORK/perf.test" -- true >/dev/null 2>&1; then
			PROFILE=1
		else
			PROFILE=0
		fi
	fi
	[ "$PROFILE" = 1 ] || return 0
	PDUR=$((DUR > 5 ? DUR : 5))
	say "profile: perf record -g of the backends during single-row and batch ingest (${PDUR}s each)"
	profile_one single "single-row INSERT into datastreams.frames, 4 clients" ds_insert_own.sql 4
	profile_one batch "1000-row INSERT ... SELECT into datastreams.frames, 1 client" batch_ds.sql 1
	profile_one plainbatch "1000-row INSERT ... SELECT into the plain table (ceiling), 1 client" batch_plain.sql 1
}

# --------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------
ROWS=""

# m KEY: a measured median, NA when it was not measured
m() { printf '%s' "${M[$1]:-NA}"; }

# r A_KEY B_KEY: ratio of two measured medians
r() { ratio "$(m "$1")" "$(m "$2")"; }

# row SECTION WORKLOAD VARIANT CLIENTS KEY UNIT RATIO AGAINST VS_PLPGSQL
row() {
	local spread=${M[$5.spread]:-}
	ROWS+="| $1 | $2 | $3 | $4 | $(fmt "$(m "$5")") | $spread | $6 | $7 | $8 | $9 |"$'\n'
}

build_table() {
	local cell clients label q mode rows k what n
	if want 1; then
		for cell in $SINGLE_CELLS; do
			clients=${cell%%:*}
			if [ "${cell##*:}" = one ]; then
				label="single-row ingest, all clients on ONE stream"
			else
				label="single-row ingest, a stream per client"
			fi
			n=single.plain.$cell
			row 1 "$label" "plain table INSERT (ceiling)" "$clients" "$n" "tx/s" "1.00" "ceiling" ""
			for k in ds_insert ds_create; do
				if [ $k = ds_insert ]; then what="**INSERT INTO datastreams.frames**"; else what="**SELECT datastreams.create_frame()**"; fi
				row 1 "$label" "$what" "$clients" "single.$k.$cell" "tx/s" "$(r "single.$k.$cell" "$n")" "ceiling" \
					"$(r "single.$k.$cell" "single.plpgsql.$cell")"
			done
			row 1 "$label" "PL/pgSQL trigger (baseline)" "$clients" "single.plpgsql.$cell" "tx/s" \
				"$(r "single.plpgsql.$cell" "$n")" "ceiling" "1.00"
		done
	fi

	if want 2; then
		label="batch: 1000-row INSERT ... SELECT per transaction"
		row 2 "$label" "plain table (ceiling)" 1 batch.insert.plain "rows/s" "1.00" "ceiling" ""
		row 2 "$label" "**datastreams.frames**" 1 batch.insert.ds "rows/s" "$(r batch.insert.ds batch.insert.plain)" "ceiling" \
			"$(r batch.insert.ds batch.insert.plpgsql)"
		row 2 "$label" "PL/pgSQL trigger (baseline)" 1 batch.insert.plpgsql "rows/s" \
			"$(r batch.insert.plpgsql batch.insert.plain)" "ceiling" "1.00"
		label="batch: 1000-row COPY per transaction (superuser)"
		row 2 "$label" "COPY into plain table (ceiling)" 1 batch.copy.plain "rows/s" "1.00" "plain COPY" ""
		row 2 "$label" "**COPY into datastreams.frames**" 1 batch.copy.ds "rows/s" "$(r batch.copy.ds batch.copy.plain)" \
			"plain COPY" "$(r batch.copy.ds batch.copy.plpgsql)"
		row 2 "$label" "COPY into PL/pgSQL baseline" 1 batch.copy.plpgsql "rows/s" \
			"$(r batch.copy.plpgsql batch.copy.plain)" "plain COPY" "1.00"
		label="batch: datastreams.ingest(stream, 1000-frame jsonb) per transaction"
		if [ "$HAVE_INGEST" = t ]; then
			row 2 "$label" "**datastreams.ingest()**" 1 batch.insert.ingest "rows/s" \
				"$(r batch.insert.ingest batch.copy.plain)" "plain COPY" "$(r batch.insert.ingest batch.copy.plpgsql)"
		else
			M[placeholder]="—"
			row 2 "$label" "**datastreams.ingest() — PLACEHOLDER: not implemented yet**" 1 placeholder "rows/s" "" "plain COPY" ""
		fi
		label="frame id generation (the id default), SELECT count(f()) of $UUID_CALLS"
		row 2 "$label" "gen_random_uuid() (PostgreSQL, v4)" 1 batch.uuid.pg "µs/call" "1.00" "gen_random_uuid" ""
		row 2 "$label" "**datastreams.uuid_v7()** (libuuid)" 1 batch.uuid.v7 "µs/call" "$(r batch.uuid.v7 batch.uuid.pg)" \
			"gen_random_uuid" ""
	fi
	if want 5; then
		label="batch: one INSERT ... SELECT of $BIG rows"
		row 2 "$label" "plain table (ceiling)" 1 "mem.plain.$BIG.rate" "rows/s" "1.00" "ceiling" ""
		row 2 "$label" "plain table + the foreign key to streams" 1 "mem.plainfk.$BIG.rate" "rows/s" \
			"$(r "mem.plainfk.$BIG.rate" "mem.plain.$BIG.rate")" "ceiling" ""
		row 2 "$label" "**datastreams.frames**" 1 "mem.ds.$BIG.rate" "rows/s" \
			"$(r "mem.ds.$BIG.rate" "mem.plain.$BIG.rate")" "ceiling" ""
	fi

	if want 3; then
		for q in latest list; do
			if [ $q = latest ]; then label="read: datastreams.latest_frame()"; else label="read: datastreams.list_frames(limit 25)"; fi
			row 3 "$label" "stream with $(m reads.count.1000) frames" 1 "reads.$q.1000" "ms/call" "1.00" "small stream" ""
			row 3 "$label" "stream with $(m reads.count.1001) frames" 1 "reads.$q.1001" "ms/call" \
				"$(r "reads.$q.1001" "reads.$q.1000")" "small stream" ""
		done
	fi

	if want 4; then
		for c in $NOTIFY_CLIENTS; do
			label="$c single-row writers (a stream each) + 1 LISTEN client on every channel"
			row 4 "$label" "notifications off (notify_queue_limit = 0)" "$c" "notify.tps.off.$c" "tx/s" "1.00" "off" ""
			row 4 "$label" "**the publisher** (default, preloaded)" "$c" "notify.tps.publisher.$c" "tx/s" \
				"$(r "notify.tps.publisher.$c" "notify.tps.off.$c")" "off" ""
			row 4 "$label" "NOTIFY at commit (notify_via_worker = off)" "$c" "notify.tps.commit.$c" "tx/s" \
				"$(r "notify.tps.commit.$c" "notify.tps.off.$c")" "off" ""
			row 4 "$label" "plain table INSERT (twin, no notifications)" "$c" "single.plain.$c:own" "tx/s" \
				"$(r "single.plain.$c:own" "notify.tps.off.$c")" "off" ""
			for mode in publisher commit; do
				if [ "$mode" = publisher ]; then label="delay INSERT → receipt, the publisher, $c writers"; else label="delay INSERT → receipt, NOTIFY at commit, $c writers"; fi
				row 4 "$label" "p50 ($(fmt "$(m "notify.recv.$mode.$c")") notifications for $(fmt "$(m "notify.frames.$mode.$c")") frames)" "$c" \
					"notify.p50.$mode.$c" "ms" "" "" ""
				row 4 "$label" "p99" "$c" "notify.p99.$mode.$c" "ms" "" "" ""
			done
		done
	fi

	if want 5; then
		for rows in $SMALL $BIG; do
			label="backend memory after one INSERT ... SELECT of $rows rows"
			for k in hwm anon; do
				if [ $k = hwm ]; then what="peak RSS (VmHWM)"; else what="peak private RSS (RssAnon)"; fi
				row 5 "$label" "$what, plain table" 1 "mem.plain.$rows.$k" "MiB" "1.00" "plain" ""
				row 5 "$label" "$what, plain table + the foreign key" 1 "mem.plainfk.$rows.$k" "MiB" \
					"$(r "mem.plainfk.$rows.$k" "mem.plain.$rows.$k")" "plain" ""
				row 5 "$label" "**$what, datastreams.frames**" 1 "mem.ds.$rows.$k" "MiB" \
					"$(r "mem.ds.$rows.$k" "mem.plain.$rows.$k")" "plain" ""
			done
		done
	fi
	return 0
}

write_results() {
	local version settings cpu commit started=$1 finished
	finished=$(date -u '+%Y-%m-%d %H:%M UTC')
	version=$(su_psql -At -c "SHOW server_version")
	settings=$(su_psql -At -c "SELECT string_agg(format('\`%s = %s\`', name, current_setting(name)), ', ' ORDER BY name) FROM pg_settings
		WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'wal_sync_method', 'full_page_writes',
		               'wal_level', 'max_wal_size', 'checkpoint_timeout', 'wal_buffers', 'commit_delay',
		               'shared_preload_libraries', 'max_connections', 'datastreams.notify_payload',
		               'datastreams.notify_queue_limit')")
	cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	if [ "$BUILT_HERE" = 1 ]; then
		commit="extension built from this tree at $BUILD_COMMIT"
	else
		commit="extension as installed in $("$PG_CONFIG" --pkglibdir) (datastreams.so of $(date -u -r "$("$PG_CONFIG" --pkglibdir)/datastreams.so" '+%Y-%m-%d %H:%M UTC'))"
	fi
	commit+=", version $(su_psql -At -c "SELECT extversion FROM pg_extension WHERE extname = 'datastreams'")"
	[ -z "${BENCH_LABEL:-}" ] || commit+=" — $BENCH_LABEL"
	{
		echo "# datastreams benchmark results"
		echo
		echo "Made by \`$(env | grep -E '^BENCH_[A-Z_]+=' | grep -vE '^BENCH_(OUT|LABEL)=' | sort | sed 's/$/ /' | tr -d '\n')test/bench/run.sh\` (as $(id -un)) on $finished, started $started; $commit."
		echo
		echo "- Machine: $(nproc) cores ($cpu), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r); load average at start $LOAD_START, at the end $(cut -d' ' -f1-3 /proc/loadavg) (anything else running on the machine skews the numbers)"
		echo "- PostgreSQL $version, a fresh cluster (initdb --no-locale, database \`postgres\`) with default settings except \`shared_preload_libraries\`: $settings"
		echo "- Method: medians of $RUNS run(s) per cell; pgbench -M prepared, ${DUR} s per run (reads $(((DUR + 1) / 2)) s), COPY runs of $COPY_BATCHES × 1000 rows, -j 2 for 4 and 8 clients; every frames table truncated$([ "$QUICK" = 1 ] || echo " and CHECKPOINT") before each run; runs of the variants interleaved."
		echo "  Single-row and 1000-row INSERTs run as a tenant role (row-level security on); COPY runs as the superuser (PostgreSQL refuses COPY FROM under RLS); one payload per frame \`{\"t\": <µs>, \"v\": <int>}\`, latency 0..200 ms against an SLA of 150 ms."
		echo "- Ceiling = \`bench.frames_plain\`, the frames table copied with LIKE … INCLUDING ALL (same columns, defaults, checks, primary key, unique (stream_id, sequence)) without trigger, foreign key or RLS, sequences from a bigint sequence. PL/pgSQL = \`test/bench/plpgsql_baseline.sql\`: the same rules in one PL/pgSQL BEFORE ROW trigger (per-row latest-frame upsert and pg_notify) on another copy, with the foreign key and RLS."
		echo "- **ratio** = this row ÷ the row named in **against** (throughput: higher is better; 3. latency: 10^6-frame stream ÷ 10^3-frame stream; 5. memory: ÷ plain table). **× PL/pgSQL** = throughput ÷ the PL/pgSQL baseline in the same workload."
		echo "- Section 4: notifications off = \`ALTER SYSTEM SET datastreams.notify_queue_limit = 0\` (the publisher announces nothing; + \`log_min_messages = error\` to keep its WARNINGs out of the log), reloaded; NOTIFY at commit = \`ALTER SYSTEM SET datastreams.notify_via_worker = off\`. The delay is measured by a libpq listener (\`test/bench/notify_delay.c\`) from the INSERT of the oldest frame a notification announces — the \`clock_timestamp()\` the writer put in the payload, or for payload-less wake-ups the trigger-generated sequence (Unix ns at INSERT) — to receipt, so it includes the commit (WAL flush and any wait for the notify lock); medians over runs of each run's p50/p99."
		echo "- Section 5: VmHWM of the backend (includes the shared buffers it touched) read from /proc after the statement; RssAnon (private memory) sampled every 20 ms during it. \"Plain table + the foreign key\" is the ceiling with the frames table's foreign key to streams (\`bench.frames_plain_fk\`): what PostgreSQL itself spends per row on the RI check and its after-trigger queue."
		echo
		echo "| # | workload | variant | clients | median | runs: min–max | unit | ratio | against | × PL/pgSQL |"
		echo "|---|---|---|---:|---:|---:|---|---:|---|---:|"
		printf '%s' "$ROWS"
		if [ -n "$PROFILE_TEXT" ]; then
			echo
			echo "## Profiles"
			echo
			echo "\`perf record -g -p <the pgbench backends>\` for ${PDUR} s during each workload (not during the timed runs); percentages of all samples of those backends."
			printf '%s\n' "$PROFILE_TEXT"
		fi
		if [ "$FAILED" -ne 0 ]; then
			echo
			echo "**Some measurements failed (NA); see the harness log.**"
		fi
	} >"$OUT"
}

# --------------------------------------------------------------------------
main() {
	local started t0
	started=$(date -u '+%H:%M UTC')
	LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
	t0=$(date +%s)
	make_workdir
	prepare
	start_cluster
	build_listener
	load_schema
	write_scripts
	say "PostgreSQL $(su_psql -At -c 'SHOW server_version'), $(nproc) cores; $RUNS run(s) x ${DUR}s per cell$([ "$QUICK" = 1 ] && echo ' (quick)')"
	[ "$HAVE_INGEST" = t ] || say "datastreams.ingest(uuid, jsonb) does not exist yet: its row is a placeholder"
	if want 1; then section_single; fi
	if want 2; then section_batch; fi
	if want 4; then section_notify; fi
	if want 5; then section_memory; fi
	if want 3; then section_reads; fi
	if want profile; then section_profile; fi
	build_table
	write_results "$started"
	cat "$OUT"
	say "results written to $OUT ($(($(date +%s) - t0)) s)"
}

main "$@"
