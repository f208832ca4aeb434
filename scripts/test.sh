#!/usr/bin/env bash
# Run every datastreams test: pg_regress, isolation, TAP and scripted tests.
#
#   scripts/test.sh          (as root: installs packages, runs tests as 'postgres')
#
# Environment:
#   DATASTREAMS_TEST_PORT    port of the shared test cluster (default 54329)
#   DATASTREAMS_PRELOAD      1 (default) = shared_preload_libraries='datastreams'
#   DATASTREAMS_KEEP_SCRATCH 1 = keep the scratch directory even on success
#   DATASTREAMS_SKIP_BUILD   1 = do not run make / make install
#   DATASTREAMS_TEST_TIMEOUT seconds allowed per pg_regress/isolation run,
#                            TAP file or script (default 1200)
#   PG_TEST_EXTRA, PG_TEST_NOCLEAN, PG_TEST_TIMEOUT_DEFAULT, TEMP_CONFIG and
#   PROVE_FLAGS are passed to the TAP tests as PGXS would.
#
# Tests are discovered, never listed: sql/*.sql (minus sql/datastreams--*.sql)
# with expected/*.out; test/isolation/specs/*.spec with
# test/isolation/expected/*.out; test/t/*.pl (prove, one file at a time,
# PostgreSQL::Test::Cluster available); executable test/scripts/*.sh.
# Everything runs as the OS user 'postgres' in a scratch copy of the tree,
# against one shared cluster (test/postgresql.conf, if present, is appended
# to its postgresql.conf).  TAP tests and scripts get, besides what PGXS sets
# (TESTDIR, PG_REGRESS, PATH, PGPORT): DATASTREAMS_TEST_HOST (socket dir),
# DATASTREAMS_TEST_ADDR (127.0.0.1), DATASTREAMS_TEST_PORT,
# DATASTREAMS_TEST_USER (postgres), DATASTREAMS_TEST_LOG (server log),
# DATASTREAMS_SRC (scratch source dir) and PG_CONFIG.
#
# Ends with one line "N passed, N failed"; exits non-zero if anything failed
# or if no test ran.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PASSED=0
FAILED=0
SKIPPED=0
FAILED_NAMES=()
SCRATCH=""
SRC=""
DATADIR=""
SERVER_LOG=""
PORT=""
TIMEOUT=${DATASTREAMS_TEST_TIMEOUT:-1200}

# --------------------------------------------------------------------------
summary_and_exit() {
	local total=$((PASSED + FAILED)) rc=0
	ds_phase "summary"
	if [ "${#FAILED_NAMES[@]}" -gt 0 ]; then
		show_server_log_tail
		ds_say "failed:"
		printf '  %s\n' "${FAILED_NAMES[@]}"
		rc=1
	fi
	if [ "$total" -eq 0 ]; then
		ds_say "no test ran"
		rc=1
	fi
	# stop the server and deal with the scratch dir now, so that the
	# summary line really is the last line printed
	trap - EXIT
	finish "$rc"
	if [ "$SKIPPED" -gt 0 ]; then
		ds_say "$PASSED passed, $FAILED failed, $SKIPPED skipped"
	else
		ds_say "$PASSED passed, $FAILED failed"
	fi
	exit "$rc"
}

# finish RC -- stop the shared cluster; remove the scratch dir on success.
finish() {
	local rc=$1
	set +e
	if [ -n "$DATADIR" ]; then
		ds_cluster_stop "$DATADIR"
		DATADIR=""
	fi
	# servers left behind by a killed (timed-out) TAP test
	if [ -n "$SCRATCH" ] && [ -d "$SCRATCH" ]; then
		local pidfile
		while IFS= read -r pidfile; do
			ds_warn "stopping leftover server $(dirname "$pidfile")"
			(cd "$SCRATCH" && ds_cluster_stop "$(dirname "$pidfile")")
		done < <(find "$SCRATCH" -name postmaster.pid 2>/dev/null)
	fi
	if [ -n "$SCRATCH" ] && [ -d "$SCRATCH" ]; then
		if [ "$rc" -eq 0 ] && [ "${DATASTREAMS_KEEP_SCRATCH:-0}" = 0 ]; then
			rm -rf "$SCRATCH"
		else
			ds_say "scratch directory kept: $SCRATCH"
		fi
		SCRATCH=""
	fi
	set -e
}

# shellcheck disable=SC2317  # called through trap
cleanup() {
	local rc=$?
	finish "$rc"
	exit "$rc"
}

record_fail() {
	FAILED=$((FAILED + 1))
	FAILED_NAMES+=("$1")
}

show_server_log_tail() {
	if [ -n "$SERVER_LOG" ] && [ -f "$SERVER_LOG" ]; then
		ds_say "---- tail of server log $SERVER_LOG ----"
		tail -n 60 "$SERVER_LOG" || true
		ds_say "---- end of server log ----"
	fi
}

# --------------------------------------------------------------------------
# Setup: scratch copy of the tree + shared cluster
# --------------------------------------------------------------------------
setup_scratch() {
	SCRATCH=$(mktemp -d /tmp/datastreams-test.XXXXXX)
	chmod 755 "$SCRATCH"
	SRC=$SCRATCH/src
	DATADIR=$SCRATCH/data
	SERVER_LOG=$SCRATCH/server.log
	mkdir -p "$SRC"
	ds_info "copying the source tree to $SRC"
	tar -C "$DS_ROOT" \
		--exclude=./.git --exclude=./results --exclude=./tmp_check \
		--exclude=./log --exclude=./regression.diffs --exclude=./regression.out \
		--exclude=./test/bench/out \
		-cf - . | tar -C "$SRC" -xf -
	ds_give_to_pg "$SCRATCH"
}

pick_port() {
	if [ -n "${DATASTREAMS_TEST_PORT:-}" ]; then
		PORT=$DATASTREAMS_TEST_PORT
		! ds_port_busy "$PORT" ||
			ds_die "port $PORT (DATASTREAMS_TEST_PORT) is already in use"
		return
	fi
	PORT=54329
	while ds_port_busy "$PORT"; do
		PORT=$((PORT + 1))
		[ "$PORT" -lt 54400 ] || ds_die "no free port in 54329..54399; set DATASTREAMS_TEST_PORT"
	done
}

start_shared_cluster() {
	(cd "$SCRATCH" && ds_cluster_init "$DATADIR" "$SCRATCH" "$PORT" "$SRC/test/postgresql.conf")
	(cd "$SCRATCH" && ds_cluster_start "$DATADIR" "$SERVER_LOG") || {
		record_fail "server start"
		summary_and_exit
	}
	ds_info "shared test cluster: host $SCRATCH (or 127.0.0.1), port $PORT, user postgres"
}

# --------------------------------------------------------------------------
# pg_regress / pg_isolation_regress
# --------------------------------------------------------------------------
# count_regress_output LOG LABEL RC -- add ok/FAILED lines to the totals.
count_regress_output() {
	local log=$1 label=$2 rc=$3 ok failed ignored
	ok=$(grep -cE '^(test +| +)?[^ ]+ +\.\.\. ok( |$)' "$log" || true)
	failed=$(grep -cE '^(test +| +)?[^ ]+ +\.\.\. FAILED( |$)' "$log" || true)
	ignored=$(grep -cE '^(test +| +)?[^ ]+ +\.\.\. failed \(ignored\)' "$log" || true)
	PASSED=$((PASSED + ok))
	SKIPPED=$((SKIPPED + ignored))
	local name
	while IFS= read -r name; do
		record_fail "$label: $name"
	done < <(sed -nE 's/^(test +| +)?([^ ]+) +\.\.\. FAILED( .*|$)/\2/p' "$log")
	if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
		# e.g. CREATE EXTENSION failed, or the server went away
		if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
			record_fail "$label: timed out after ${TIMEOUT}s"
		else
			record_fail "$label: pg_regress exited with status $rc"
		fi
	fi
	[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
}

# has_expected DIR NAME -- DIR/NAME.out or an alternative DIR/NAME_N.out exists
has_expected() {
	local f
	for f in "$1/$2.out" "$1/$2"_[0-9].out; do
		[ -e "$f" ] && return 0
	done
	return 1
}

# split_by_expected EXPECTED_DIR NAMES... -- sets RUN_NAMES and NOEXP_NAMES
split_by_expected() {
	local dir=$1 n
	shift
	RUN_NAMES=()
	NOEXP_NAMES=()
	for n in "$@"; do
		if has_expected "$dir" "$n"; then RUN_NAMES+=("$n"); else NOEXP_NAMES+=("$n"); fi
	done
}

# report_no_expected LABEL EXPECTED_DIR RESULTS_DIR CMD... -- run the tests
# that have no expected output (so their output exists to copy), show it,
# and count each as failed.
report_no_expected() {
	local label=$1 expdir=$2 resdir=$3 n
	shift 3
	[ "${#NOEXP_NAMES[@]}" -gt 0 ] || return 0
	ds_say "tests without an expected output file: ${NOEXP_NAMES[*]}"
	(cd "$SRC" && ds_as_pg "$@" "${NOEXP_NAMES[@]}") >/dev/null 2>&1 || true
	for n in "${NOEXP_NAMES[@]}"; do
		record_fail "$label: $n (missing $expdir/$n.out)"
		ds_say "---- $n: no $expdir/$n.out; actual output ($resdir/$n.out) ----"
		cat "$SRC/$resdir/$n.out" 2>/dev/null || ds_say "(no output produced)"
		ds_say "---- end of $n ----"
	done
}

# Drop pg_regress's per-statement chatter from the console (the log keeps it).
quiet_regress() {
	grep -vxE 'SET|DROP DATABASE|CREATE DATABASE|ALTER DATABASE|CREATE EXTENSION' || true
}

show_diffs() {
	local diffs=$1
	if [ -s "$diffs" ]; then
		ds_say "---- $diffs ----"
		cat "$diffs"
		ds_say "---- end of diffs ----"
	fi
}

run_regress() {
	ds_phase "regression tests (pg_regress)"
	local names=() f b
	for f in "$SRC"/sql/*.sql; do
		[ -e "$f" ] || continue
		b=$(basename "$f" .sql)
		case "$b" in datastreams--*) continue ;; esac
		names+=("$b")
	done
	if [ "${#names[@]}" -eq 0 ]; then
		ds_say "no sql/*.sql regression tests: skipped"
		return 0
	fi
	mapfile -t names < <(printf '%s\n' "${names[@]}" | LC_ALL=C sort)
	local cmd=("$DS_PG_REGRESS" --bindir="$DS_PGBIN"
		--host="$SCRATCH" --port="$PORT" --user=postgres
		--inputdir=. --outputdir=results --load-extension=datastreams
		--dbname=contrib_regression)
	split_by_expected "$SRC/expected" "${names[@]}"
	local log=$SCRATCH/regress.log rc=0 okay=1
	if [ "${#RUN_NAMES[@]}" -gt 0 ]; then
		(cd "$SRC" && ds_as_pg timeout -k 30 "$TIMEOUT" "${cmd[@]}" "${RUN_NAMES[@]}") 2>&1 | tee "$log" | quiet_regress || rc=$?
		count_regress_output "$log" regress "$rc" || okay=0
		[ "$okay" = 1 ] || show_diffs "$SRC/results/regression.diffs"
	fi
	if [ "${#NOEXP_NAMES[@]}" -gt 0 ]; then
		okay=0
		report_no_expected regress expected results/results "${cmd[@]}"
	fi
}

run_isolation() {
	ds_phase "isolation tests (pg_isolation_regress)"
	local names=() f
	for f in "$SRC"/test/isolation/specs/*.spec; do
		[ -e "$f" ] || continue
		names+=("$(basename "$f" .spec)")
	done
	if [ "${#names[@]}" -eq 0 ]; then
		ds_say "no test/isolation/specs/*.spec: skipped"
		return 0
	fi
	mapfile -t names < <(printf '%s\n' "${names[@]}" | LC_ALL=C sort)
	local cmd=("$DS_PG_ISOLATION_REGRESS" --bindir="$DS_PGBIN"
		--host="$SCRATCH" --port="$PORT" --user=postgres
		--inputdir=test/isolation --outputdir=results/isolation
		--load-extension=datastreams --dbname=isolation_regression)
	split_by_expected "$SRC/test/isolation/expected" "${names[@]}"
	local log=$SCRATCH/isolation.log rc=0 okay=1
	if [ "${#RUN_NAMES[@]}" -gt 0 ]; then
		(cd "$SRC" && ds_as_pg timeout -k 30 "$TIMEOUT" "${cmd[@]}" "${RUN_NAMES[@]}") 2>&1 | tee "$log" | quiet_regress || rc=$?
		count_regress_output "$log" isolation "$rc" || okay=0
		[ "$okay" = 1 ] || show_diffs "$SRC/results/isolation/regression.diffs"
	fi
	if [ "${#NOEXP_NAMES[@]}" -gt 0 ]; then
		okay=0
		report_no_expected isolation test/isolation/expected results/isolation/results "${cmd[@]}"
	fi
}

# --------------------------------------------------------------------------
# TAP and scripted tests
# --------------------------------------------------------------------------
# Environment for TAP and scripted tests: what PGXS's prove_installcheck sets
# (TESTDIR, PATH, PGPORT, PG_REGRESS) plus the datastreams variables.
test_env() {
	local perl5lib=$DS_PG_PERL_LIB:$SRC
	[ -d "$SRC/test/perl" ] && perl5lib=$perl5lib:$SRC/test/perl
	[ -n "${PERL5LIB:-}" ] && perl5lib=$perl5lib:$PERL5LIB
	local v
	printf '%s\n' \
		"PATH=$DS_PGBIN:$SRC:$PATH" \
		"TESTDIR=$SRC" \
		"PGPORT=65432" \
		"PG_REGRESS=$DS_PG_REGRESS" \
		"PG_CONFIG=$DS_PG_CONFIG" \
		"PERL5LIB=$perl5lib" \
		"DATASTREAMS_SRC=$SRC" \
		"DATASTREAMS_TEST_HOST=$SCRATCH" \
		"DATASTREAMS_TEST_ADDR=127.0.0.1" \
		"DATASTREAMS_TEST_PORT=$PORT" \
		"DATASTREAMS_TEST_USER=postgres" \
		"DATASTREAMS_TEST_LOG=$SERVER_LOG"
	for v in PG_TEST_EXTRA PG_TEST_NOCLEAN PG_TEST_TIMEOUT_DEFAULT TEMP_CONFIG CI; do
		if [ -n "${!v:-}" ]; then printf '%s=%s\n' "$v" "${!v}"; fi
	done
}

run_with_test_env() {
	local envv=()
	mapfile -t envv < <(test_env)
	(cd "$SRC" && ds_as_pg env "${envv[@]}" timeout -k 30 "$TIMEOUT" "$@")
}

run_tap() {
	ds_phase "TAP tests (prove, PostgreSQL::Test::Cluster)"
	local files=() f
	for f in "$SRC"/test/t/*.pl; do
		[ -e "$f" ] && files+=("test/t/$(basename "$f")")
	done
	if [ "${#files[@]}" -eq 0 ]; then
		ds_say "no test/t/*.pl: skipped"
		return 0
	fi
	# as PGXS prove_installcheck: fresh tmp_check in TESTDIR
	rm -rf "$SRC/tmp_check"
	mkdir -p "$SRC/tmp_check" "$SCRATCH/tap"
	ds_give_to_pg "$SRC/tmp_check" "$SCRATCH/tap"
	local t base out err rc ok notok todo skip start secs npass fails
	for t in "${files[@]}"; do
		base=$(basename "$t" .pl)
		out=$SCRATCH/tap/$base.out
		err=$SCRATCH/tap/$base.err
		start=$SECONDS
		rc=0
		# shellcheck disable=SC2086
		run_with_test_env prove -v -I "$DS_PG_PERL_LIB/" -I . ${PROVE_FLAGS:-} "$t" \
			>"$out" 2>"$err" || rc=$?
		secs=$((SECONDS - start))
		# top-level TAP lines only (subtest lines are indented)
		ok=$(grep -cE '^ok [0-9]+' "$out" || true)
		skip=$(grep -ciE '^ok [0-9]+.*# *skip' "$out" || true)
		notok=$(grep -cE '^not ok [0-9]+' "$out" || true)
		todo=$(grep -ciE '^not ok [0-9]+.*# *todo' "$out" || true)
		npass=$((ok - skip + todo))
		PASSED=$((PASSED + npass))
		if grep -qiE '^1\.\.0 *# *skip|\.\. skipped: ' "$out"; then
			skip=$((skip + 1)) # the whole file was skipped
		fi
		SKIPPED=$((SKIPPED + skip))
		fails=$((notok - todo))
		FAILED=$((FAILED + fails))
		if [ "$fails" -gt 0 ]; then
			local n
			while IFS= read -r n; do
				FAILED_NAMES+=("tap: $t: $n")
			done < <(grep -E '^not ok [0-9]+' "$out" | grep -viE '# *todo')
		fi
		if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
			record_fail "tap: $t: timed out after ${TIMEOUT}s"
			fails=$((fails + 1))
		elif [ "$rc" -ne 0 ] && [ "$fails" -eq 0 ]; then
			record_fail "tap: $t: prove exited with status $rc (died, bad plan or parse error)"
			fails=1
		fi
		if [ "$fails" -eq 0 ]; then
			printf '%-50s ok      %3d passed, %d skipped, %ds\n' "$t" "$npass" "$skip" "$secs"
		else
			printf '%-50s FAILED  %3d failed of %d, %ds\n' "$t" "$fails" "$((ok + notok))" "$secs"
			ds_say "---- prove output ($out) ----"
			cat "$out"
			ds_say "---- stderr ($err) ----"
			cat "$err"
			local rl=$SRC/tmp_check/log/regress_log_$base
			if [ -f "$rl" ]; then
				ds_say "---- tail of $rl ----"
				tail -n 80 "$rl"
			fi
			ds_say "---- end of $t ----"
		fi
	done
}

run_scripts() {
	ds_phase "scripted tests (test/scripts/*.sh)"
	local files=() f
	for f in "$SRC"/test/scripts/*.sh; do
		[ -e "$f" ] || continue
		if [ -x "$f" ]; then
			files+=("$f")
		else
			ds_warn "$f is not executable: not run (chmod +x it)"
		fi
	done
	if [ "${#files[@]}" -eq 0 ]; then
		ds_say "no executable test/scripts/*.sh: skipped"
		return 0
	fi
	mkdir -p "$SCRATCH/scripts"
	ds_give_to_pg "$SCRATCH/scripts"
	local log rc name start secs
	for f in "${files[@]}"; do
		name=test/scripts/$(basename "$f")
		log=$SCRATCH/scripts/$(basename "$f" .sh).log
		start=$SECONDS
		rc=0
		run_with_test_env "$f" </dev/null >"$log" 2>&1 || rc=$?
		secs=$((SECONDS - start))
		if [ "$rc" -eq 0 ]; then
			PASSED=$((PASSED + 1))
			printf '%-50s ok      %ds\n' "$name" "$secs"
		else
			if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
				record_fail "script: $name (timed out after ${TIMEOUT}s)"
			else
				record_fail "script: $name (exit $rc)"
			fi
			printf '%-50s FAILED  exit %d, %ds\n' "$name" "$rc" "$secs"
			ds_say "---- output ($log) ----"
			tail -n 100 "$log"
			ds_say "---- end of $name ----"
		fi
	done
}

# --------------------------------------------------------------------------
main() {
	cd "$DS_ROOT"
	ds_phase "setup"
	ds_info "repository: $DS_ROOT"
	ds_ensure_packages
	ds_pick_os_user
	if [ "${DATASTREAMS_SKIP_BUILD:-0}" = 0 ]; then
		if ! (ds_build_install); then
			record_fail "build / install"
			summary_and_exit
		fi
	fi
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	pick_port
	setup_scratch
	start_shared_cluster

	run_regress
	run_isolation
	run_tap
	run_scripts

	summary_and_exit
}

main "$@"
