#!/usr/bin/env bash
# Retention without bloat (issue 7), the short form of the retention
# benchmark: six compressed "days" of frames, two kept, pruned with
# prune_all() after each day; fails when the frames table keeps growing
# once the retention window is full.  The long measurements (and ingest
# throughput while pruning) are in test/bench/retention.sh.
set -euo pipefail
src=${DATASTREAMS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
RET_QUICK=1 RET_BLOAT_ONLY=1 RET_ASSERT=1 RET_OUT="$out" "$src/test/bench/retention.sh"
