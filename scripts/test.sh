#!/usr/bin/env bash
# Run every datastreams test.
#
#   sudo scripts/test.sh
#
# Installs the Debian packages the tests need, builds and installs the
# extension, starts a throwaway preloaded server as the unprivileged user
# 'postgres' (PostgreSQL refuses to run as root) on a private port and socket
# directory, then runs, in a copy of the tree that user owns:
#   make installcheck         pg_regress (sql/, expected/) and isolation (test/isolation)
#   make prove_installcheck   TAP tests (test/t; each starts its own servers)
#   test/scripts/*.sh         scripted tests
# and ends with the line "N passed, N failed".
#
# Environment: DATASTREAMS_TEST_PORT (default 54329), PROVE_TESTS (a subset of
# test/t/*.pl), DATASTREAMS_SKIP_BUILD=1, DATASTREAMS_KEEP_SCRATCH=1.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=${DATASTREAMS_TEST_PORT:-54329}
PASSED=0
FAILED=0
FAILED_NAMES=()

fail() { FAILED=$((FAILED + 1)); FAILED_NAMES+=("$1"); }

# count_tap FILE -- add a TAP or pg_regress log's results to the totals
count_results() {
	local log=$1 label=$2 rc=$3 ok bad
	ok=$(grep -cE '^(ok [0-9]+|(test +| +)?[^ ]+ +\.\.\. ok( |$))' "$log" || true)
	bad=$(grep -cE '^(not ok [0-9]+|(test +| +)?[^ ]+ +\.\.\. FAILED( |$))' "$log" || true)
	PASSED=$((PASSED + ok))
	FAILED=$((FAILED + bad))
	if [ "$bad" -gt 0 ]; then
		FAILED_NAMES+=("$label: $(grep -E '^not ok|\.\.\. FAILED' "$log" | head -20 | tr '\n' ';')")
	elif [ "$rc" -ne 0 ]; then
		fail "$label: exited with status $rc (died, bad plan, or no server)"
	fi
}

ds_phase setup
ds_ensure_packages
ds_pick_os_user
[ "${DATASTREAMS_SKIP_BUILD:-0}" = 1 ] || ds_build_install

SCRATCH=$(mktemp -d /tmp/datastreams-test.XXXXXX)
SRC=$SCRATCH/src
DATADIR=$SCRATCH/data
mkdir -p "$SRC"
tar -C "$DS_ROOT" --exclude=./.git --exclude=./results --exclude=./tmp_check \
	--exclude=./output_iso --exclude=./test/bench/out -cf - . | tar -C "$SRC" -xf -
chmod 755 "$SCRATCH"
ds_give_to_pg "$SCRATCH"

cleanup() {
	local rc=$?
	ds_cluster_stop "$DATADIR"
	# servers a timed-out TAP test left behind
	find "$SCRATCH" -name postmaster.pid 2>/dev/null | while read -r pid; do
		ds_cluster_stop "$(dirname "$pid")"
	done
	if [ "$rc" -eq 0 ] && [ "${DATASTREAMS_KEEP_SCRATCH:-0}" = 0 ]; then
		rm -rf "$SCRATCH"
	else
		echo "scratch directory kept: $SCRATCH"
	fi
}
trap cleanup EXIT

while ds_port_busy "$PORT"; do PORT=$((PORT + 1)); done
cd "$SCRATCH"
ds_cluster_init "$DATADIR" "$SCRATCH" "$PORT" "$SRC/test/postgresql.conf"
ds_cluster_start "$DATADIR" "$SCRATCH/server.log" || { fail "server start"; DATADIR_FAILED=1; }

# as_pg_in_src CMD... -- run CMD as the test user in the copy, against the server
as_pg_in_src() {
	(cd "$SRC" && ds_as_pg env PGHOST="$SCRATCH" PGPORT="$PORT" PGUSER=postgres \
		PG_CONFIG="$DS_PG_CONFIG" DATASTREAMS_SRC="$SRC" PERL5LIB="$SRC/test/perl" \
		${PROVE_TESTS:+PROVE_TESTS="$PROVE_TESTS"} "$@")
}

if [ -z "${DATADIR_FAILED:-}" ]; then
	ds_phase "make installcheck (pg_regress, isolation)"
	rc=0
	as_pg_in_src make -s installcheck PG_CONFIG="$DS_PG_CONFIG" >"$SCRATCH/installcheck.log" 2>&1 || rc=$?
	grep -E '\.\.\. |^(\+\+\+|=+)' "$SCRATCH/installcheck.log" | grep -v '^=*$' || true
	count_results "$SCRATCH/installcheck.log" installcheck "$rc"
	for d in "$SRC/regression.diffs" "$SRC/output_iso/regression.diffs"; do
		[ ! -s "$d" ] || { echo "---- $d"; cat "$d"; }
	done
	[ "$rc" -eq 0 ] || tail -n 30 "$SCRATCH/server.log"
fi

ds_phase "make prove_installcheck (TAP)"
rc=0
as_pg_in_src make -s prove_installcheck PG_CONFIG="$DS_PG_CONFIG" PROVE_FLAGS="-I test/perl -v" \
	>"$SCRATCH/prove.log" 2>&1 || rc=$?
grep -E '^(test/t/|ok [0-9]+|not ok [0-9]+|#   Failed|Result:)' "$SCRATCH/prove.log" | grep -vE '^ok [0-9]+' || true
count_results "$SCRATCH/prove.log" prove "$rc"
if [ "$rc" -ne 0 ]; then
	grep -vE '^ *ok [0-9]+' "$SCRATCH/prove.log" | tail -n 80
	for f in "$SRC"/tmp_check/log/regress_log_*; do
		grep -q 'not ok' "$f" 2>/dev/null && { echo "---- $f"; tail -n 60 "$f"; }
	done
fi

ds_phase "scripted tests (test/scripts)"
for f in "$SRC"/test/scripts/*.sh; do
	[ -x "$f" ] || continue
	if (cd "$SRC" && DATASTREAMS_SRC="$SRC" "$f") >"$SCRATCH/$(basename "$f").log" 2>&1 </dev/null; then
		PASSED=$((PASSED + 1)); echo "$(basename "$f") ok"
	else
		fail "$(basename "$f")"; echo "$(basename "$f") FAILED"; tail -n 60 "$SCRATCH/$(basename "$f").log"
	fi
done

ds_phase summary
[ "${#FAILED_NAMES[@]}" -eq 0 ] || printf 'failed: %s\n' "${FAILED_NAMES[@]}"
[ $((PASSED + FAILED)) -gt 0 ] || fail "no test ran"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
