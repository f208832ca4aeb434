#!/usr/bin/env bash
# Durable consumer benchmark (issue 14).  Measures; asserts nothing.  Prints
# one markdown report and writes it to test/bench/consumers-results.md.
#
#   sudo test/bench/consumers.sh                 about 5 minutes on 2 cores
#   sudo CONS_QUICK=1 test/bench/consumers.sh    smoke run, under a minute
#
# 1. Draining.  A consumer drains CONS_FRAMES frames with poll() and one
#    ack() per stream and batch of CONS_BATCH (500) frames, one transaction
#    per batch, every column of every frame sent to the client
#    (test/bench/consumer_drain.c, libpq): with 1 member and with 2 members,
#    on one stream (where a second member can only wait: a stream is served
#    to one member at a time) and on CONS_STREAMS (10) streams sharing the
#    frames.  The baseline, measured in the same run on the same stream, is
#    what a client without consumers does: frames_since() with the position
#    kept in the client, CONS_BATCH frames per call.  Runs are interleaved,
#    CONS_RUNS of each; the table gives the median and the min-max.
# 2. Table size.  Milliseconds per poll()+ack() of CONS_BATCH frames on a
#    stream of CONS_SMALL frames while the frames table holds only it, and
#    again once it holds 2 x CONS_FRAMES more (the same stream, replayed with
#    seek()): the cost of a poll must not depend on the table's size.  Timed
#    inside the server (bench.poll_ms(): polls and acks in one transaction),
#    so that commits and the transfer to the client, which do not depend on
#    the table either, do not blur it; median of 5 x 200 polls after a
#    warm-up.  Also the plan of poll()'s frames query on the big table.
# 3. Retention.  What the trigger counting frames that consumers missed
#    costs prune(): CALL prune_all() of CONS_PRUNE expired frames with the
#    trigger disabled, enabled without consumers, and enabled with a consumer
#    that has acknowledged none of them (every deleted frame is counted).
#
# The cluster has PostgreSQL's default settings (fsync and synchronous_commit
# on) except shared_preload_libraries = 'datastreams' and
# datastreams.prune_interval = 0 (the prune worker paused); Unix socket only.
#
# Environment:
#   CONS_QUICK=1       small sizes, one run
#   CONS_FRAMES=N      frames drained (default 1000000; quick 50000)
#   CONS_STREAMS=N     streams of the multi-stream case (default 10)
#   CONS_BATCH=N       frames per poll (default 500)
#   CONS_RUNS=N        runs per cell (default 3; quick 1)
#   CONS_SMALL=N       frames of the table-size stream (default 100000)
#   CONS_PRUNE=N       expired frames pruned per variant (default 300000; quick 30000)
#   CONS_PORT=N        port of the throwaway cluster (default 55780)
#   CONS_OUT=FILE      results file (default test/bench/consumers-results.md)
#   CONS_KEEP=1        keep the scratch directory
#   BENCH_PGBIN=DIR    PostgreSQL bin directory (default: $DATASTREAMS_PG_ROOT's
#                      copy when set, else /usr/lib/postgresql/15/bin); the
#                      extension must be installed there
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -Eeuo pipefail

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

QUICK=${CONS_QUICK:-0}
if [ "$QUICK" = 1 ]; then
	FRAMES=${CONS_FRAMES:-50000}
	RUNS=${CONS_RUNS:-1}
	PRUNE=${CONS_PRUNE:-30000}
else
	FRAMES=${CONS_FRAMES:-1000000}
	RUNS=${CONS_RUNS:-3}
	PRUNE=${CONS_PRUNE:-300000}
fi
STREAMS=${CONS_STREAMS:-10}
BATCH=${CONS_BATCH:-500}
SMALL=${CONS_SMALL:-100000}
PORT=${CONS_PORT:-55780}
OUT=${CONS_OUT:-$BENCH_SRC/consumers-results.md}
if [ -n "${BENCH_PGBIN:-}" ]; then
	PGBIN=$BENCH_PGBIN
elif [ -n "${DATASTREAMS_PG_ROOT:-}" ]; then
	PGBIN=$DATASTREAMS_PG_ROOT/usr/lib/postgresql/15/bin
else
	PGBIN=/usr/lib/postgresql/15/bin
fi
PG_CONFIG=$PGBIN/pg_config
DB=postgres
TENANT=bench_tenant
CHUNK=100000				# frames per INSERT while loading

WORK=""

cleanup() {
	local rc=$?
	trap - ERR
	set +e
	if [ -n "$WORK" ] && [ -f "$WORK/data/postmaster.pid" ]; then
		as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate -w -t 30 stop >/dev/null 2>&1
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ "${CONS_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
			printf 'scratch directory kept: %s (server.log)\n' "$WORK" >&2
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'printf "ERROR: consumers.sh line %s: %s failed\n" "$LINENO" "$BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

psql_su() {
	timeout -k 5 1800 "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
		-h "$WORK" -p "$PORT" -U postgres -d "$DB" "$@"
}
q() { psql_su -At -c "$1"; }
# as the tenant, acting for its account (row-level security applies)
qt() { psql_su -At -c "SET ROLE $TENANT; $1"; }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s–%s", lo, hi }'; }
fmt() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }

# --------------------------------------------------------------------------
[ -x "$PGBIN/postgres" ] || die "PostgreSQL is not installed in $PGBIN"
[ -f "$("$PG_CONFIG" --pkglibdir)/datastreams.so" ] ||
	die "the datastreams extension is not installed in $PGBIN's PostgreSQL (make install)"
if [ "$(id -u)" -eq 0 ]; then
	id postgres >/dev/null 2>&1 || die "OS user 'postgres' does not exist"
fi
while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do PORT=$((PORT + 1)); done

WORK=$(mktemp -d /var/tmp/datastreams-consumers.XXXXXX)
chmod 755 "$WORK"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$WORK"; fi
say "scratch directory $WORK"
cc -O2 -Wall -I"$("$PG_CONFIG" --includedir)" "$BENCH_SRC/consumer_drain.c" \
	-L"$("$PG_CONFIG" --libdir)" -lpq -o "$WORK/consumer_drain" ||
	die "could not compile test/bench/consumer_drain.c"
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --no-locale \
	>"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
cat >>"$WORK/data/postgresql.conf" <<EOF

# ---- datastreams consumer benchmark: defaults except these ----
port = $PORT
listen_addresses = ''
unix_socket_directories = '$WORK'
shared_preload_libraries = 'datastreams'
# section 3 times prune() itself: the prune worker must not prune first
datastreams.prune_interval = 0
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w -t 60 start >/dev/null ||
	{ tail -n 30 "$WORK/server.log" >&2; die "server failed to start"; }

q "CREATE EXTENSION datastreams;
   CREATE ROLE $TENANT LOGIN;
   CREATE SCHEMA bench;
   GRANT USAGE ON SCHEMA bench TO PUBLIC;
   -- ms per poll() + ack() of one stream's batches, replayed from 0 with seek()
   CREATE FUNCTION bench.poll_ms(consumer text, stream uuid, polls integer, batch integer)
   RETURNS double precision LANGUAGE plpgsql AS \$\$
   DECLARE
   	t0 timestamptz;
   	last bigint;
   BEGIN
   	PERFORM datastreams.seek(consumer, stream, 0);
   	t0 := clock_timestamp();
   	FOR i IN 1 .. polls LOOP
   		SELECT max(f.sequence) INTO last FROM datastreams.poll(consumer, batch) AS f;
   		PERFORM datastreams.ack(consumer, stream, last);
   	END LOOP;
   	RETURN extract(epoch FROM clock_timestamp() - t0) * 1000 / polls;
   END
   \$\$;
   SELECT datastreams.create_account('bench', '$TENANT');" >/dev/null
CONN="host=$WORK port=$PORT user=$TENANT dbname=$DB"

# load_frames STREAM FIRST COUNT [CREATED_AT_SQL] -- as the superuser, in chunks
load_frames() {
	local stream=$1 first=$2 count=$3 created=${4:-now()} done=0 n
	while [ "$done" -lt "$count" ]; do
		n=$((count - done < CHUNK ? count - done : CHUNK))
		q "INSERT INTO datastreams.frames (stream_id, sequence, payload, created_at)
		   SELECT '$stream', g, jsonb_build_object('price', g, 'volume', g % 1000), $created
		     FROM generate_series($((first + done)), $((first + done + n - 1))) AS g;" >/dev/null
		done=$((done + n))
	done
}
new_stream() { qt "SELECT id FROM datastreams.create_stream('$1', '$1', status => 'active'${2:+, retention => '$2'});"; }
# rewind CONSUMER -- every position of the consumer back to 0
rewind() {
	qt "SELECT count(datastreams.seek('$1', p.stream_id, 0)) FROM datastreams.consumer_positions AS p WHERE p.consumer = '$1';" >/dev/null
	q "VACUUM datastreams.consumer_positions;"
}
# drain MEMBERS CONSUMER -- wall seconds until every member is done
drain() {
	local members=$1 consumer=$2 i start end
	start=$(date +%s.%N)
	for i in $(seq 1 "$members"); do
		timeout -k 5 1800 "$WORK/consumer_drain" "$CONN" consumer "$consumer" "$BATCH" \
			>"$WORK/drain.$i.out" &
	done
	wait
	end=$(date +%s.%N)
	cat "$WORK"/drain.*.out >>"$WORK/drain.log"
	[ "$(qt "SELECT coalesce(sum(frames_behind), 0) FROM datastreams.consumer_lag WHERE consumer = '$consumer';")" = 0 ] ||
		die "consumer $consumer was not drained"
	rm -f "$WORK"/drain.*.out
	awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}
baseline() {
	local start end
	start=$(date +%s.%N)
	timeout -k 5 1800 "$WORK/consumer_drain" "$CONN" since "$1" "$BATCH" >>"$WORK/drain.log"
	end=$(date +%s.%N)
	awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}

# --------------------------------------------------------------------------
say "section 2 (small table): $SMALL frames"
SMALL_ID=$(new_stream small)
load_frames "$SMALL_ID" 1 "$SMALL"
qt "SELECT datastreams.create_consumer('small', ARRAY['$SMALL_ID']::uuid[], 'earliest');" >/dev/null
q "VACUUM ANALYZE datastreams.frames;"
POLLS=$((SMALL / BATCH < 200 ? SMALL / BATCH : 200))
poll_ms() {
	local i
	qt "SELECT bench.poll_ms('small', '$SMALL_ID', $POLLS, $BATCH);" >/dev/null	# warm up
	for i in 1 2 3 4 5; do
		qt "SELECT bench.poll_ms('small', '$SMALL_ID', $POLLS, $BATCH);"
	done | median
}
MS_SMALL=$(poll_ms)

say "loading $FRAMES frames into one stream and $FRAMES into $STREAMS streams"
ONE_ID=$(new_stream one)
load_frames "$ONE_ID" 1 "$FRAMES"
MANY_IDS=()
for i in $(seq 1 "$STREAMS"); do
	MANY_IDS+=("$(new_stream "many$i")")
	load_frames "${MANY_IDS[-1]}" 1 $((FRAMES / STREAMS))
done
MANY_ARRAY=$(printf "'%s'," "${MANY_IDS[@]}")
qt "SELECT datastreams.create_consumer('one', ARRAY['$ONE_ID']::uuid[], 'earliest');
    SELECT datastreams.create_consumer('many', ARRAY[${MANY_ARRAY%,}]::uuid[], 'earliest');" >/dev/null
q "VACUUM ANALYZE datastreams.frames;"
q "CHECKPOINT;"
TABLE_FRAMES=$(q "SELECT count(*) FROM datastreams.frames;")

say "section 2 (big table): $TABLE_FRAMES frames"
MS_BIG=$(poll_ms)
rewind small
PLAN=$(qt "EXPLAIN (COSTS OFF) SELECT f.* FROM datastreams.frames AS f
            WHERE f.stream_id = '$SMALL_ID' AND f.account_id = 'bench' AND f.sequence > 0
            ORDER BY f.sequence LIMIT $BATCH;")
SCANS=$(psql_su -At -c "SET ROLE $TENANT; BEGIN; SELECT count(*) FROM datastreams.poll('small', $BATCH);
	  SELECT seq_scan || ' sequential, ' || idx_scan || ' index' FROM pg_stat_xact_user_tables
	   WHERE relid = 'datastreams.frames'::regclass; COMMIT;" | tail -n 1)

# --------------------------------------------------------------------------
declare -A T
for r in $(seq 1 "$RUNS"); do
	say "section 1, run $r of $RUNS"
	T[base]+=" $(baseline "$ONE_ID")"
	rewind one
	T[one1]+=" $(drain 1 one)"
	rewind one
	T[one2]+=" $(drain 2 one)"
	rewind many
	T[many1]+=" $(drain 1 many)"
	rewind many
	T[many2]+=" $(drain 2 many)"
	q "VACUUM datastreams.consumer_positions;"
done

rate() { awk -v n="$FRAMES" -v t="$1" 'BEGIN { printf "%.0f", n / t }'; }
rates() { for t in ${T[$1]}; do rate "$t"; echo; done; }
MED_BASE=$(rates base | median)
row() {
	local med
	med=$(rates "$1" | median)
	printf '| %s | %s | %s | %.2f |\n' "$2" "$(fmt "$med")" "$(rates "$1" | minmax)" \
		"$(awk -v a="$med" -v b="$MED_BASE" 'BEGIN { print a / b }')"
}

# --------------------------------------------------------------------------
say "section 3: prune() of $PRUNE expired frames"
PRUNE_ID=$(new_stream expiring '1 hour')
qt "SELECT datastreams.create_consumer('pc', ARRAY['$PRUNE_ID']::uuid[], 'earliest');" >/dev/null
# each run: PRUNE expired frames above the previous run's latest frame (which
# is recent and stays), then a new latest frame
NEXT_SEQ=1
prune_run() {
	load_frames "$PRUNE_ID" "$NEXT_SEQ" "$PRUNE" "now() - interval '2 hours'"
	q "INSERT INTO datastreams.frames (stream_id, sequence) VALUES ('$PRUNE_ID', $((NEXT_SEQ + PRUNE)));" >/dev/null
	q "VACUUM ANALYZE datastreams.frames;"
	q "CHECKPOINT;"
	local start end
	start=$(date +%s.%N)
	q "CALL datastreams.prune_all();" >/dev/null
	end=$(date +%s.%N)
	awk -v a="$start" -v b="$end" -v n="$PRUNE" 'BEGIN { printf "%.0f", n / (b - a) }'
}
declare -A P
for r in $(seq 1 "$RUNS"); do
	q "ALTER TABLE datastreams.frames DISABLE TRIGGER frames_missed_by_consumers;"
	P[off]+=" $(prune_run)"
	NEXT_SEQ=$((NEXT_SEQ + PRUNE + 1))
	q "ALTER TABLE datastreams.frames ENABLE TRIGGER frames_missed_by_consumers;"
	qt "SELECT datastreams.drop_consumer('pc');" >/dev/null
	P[none]+=" $(prune_run)"
	NEXT_SEQ=$((NEXT_SEQ + PRUNE + 1))
	qt "SELECT datastreams.create_consumer('pc', ARRAY['$PRUNE_ID']::uuid[], 'earliest');" >/dev/null
	P[counting]+=" $(prune_run)"
	NEXT_SEQ=$((NEXT_SEQ + PRUNE + 1))
	MISSED=$(qt "SELECT frames_missed FROM datastreams.consumer_lag WHERE consumer = 'pc';")
done
pmed() { printf '%s\n' ${P[$1]} | median; }
prow() {
	printf '| %s | %s | %s | %.2f |\n' "$2" "$(fmt "$(pmed "$1")")" "$(printf '%s\n' ${P[$1]} | minmax)" \
		"$(awk -v a="$(pmed "$1")" -v b="$(pmed off)" 'BEGIN { print a / b }')"
}

# --------------------------------------------------------------------------
{
	echo "# Durable consumer benchmark"
	echo
	echo "\`test/bench/consumers.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $("$PGBIN/postgres" --version),"
	echo "commit $(git -C "$BENCH_SRC" rev-parse --short HEAD 2>/dev/null || echo unknown); default settings"
	echo "(fsync, synchronous_commit on) + shared_preload_libraries, prune worker paused; CONS_FRAMES=$FRAMES CONS_STREAMS=$STREAMS"
	echo "CONS_BATCH=$BATCH CONS_RUNS=$RUNS; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "## 1. Draining $FRAMES frames ($BATCH per poll, one ack per stream and batch, one transaction per batch)"
	echo
	echo "| client | frames/s (median) | min–max | vs baseline |"
	echo "|---|---|---|---|"
	row base "baseline: frames_since(), position in the client, 1 stream"
	row one1 "consumer, 1 member, 1 stream"
	row one2 "consumer, 2 members, 1 stream"
	row many1 "consumer, 1 member, $STREAMS streams"
	row many2 "consumer, 2 members, $STREAMS streams"
	echo
	echo "## 2. Cost of a poll against the table size"
	echo
	echo "| frames in the table | ms per poll() + ack() of $BATCH frames, in the server |"
	echo "|---|---|"
	printf '| %s | %.3f |\n' "$SMALL" "$MS_SMALL"
	printf '| %s | %.3f |\n' "$TABLE_FRAMES" "$MS_BIG"
	echo
	echo "Scans of frames during one poll() (pg_stat_xact_user_tables): $SCANS."
	echo "Plan of poll()'s frames query on the big table:"
	echo
	echo '```'
	echo "$PLAN"
	echo '```'
	echo
	echo "## 3. prune() of $PRUNE expired frames, with the trigger counting missed frames"
	echo
	echo "| variant | frames pruned/s (median) | min–max | vs trigger disabled |"
	echo "|---|---|---|---|"
	prow off "trigger disabled"
	prow none "trigger, no consumer"
	prow counting "trigger, a consumer missing every frame"
	echo
	echo "frames_missed of that consumer after its last run: $MISSED ($PRUNE expected)."
} | tee "$OUT"
say "results written to $OUT"
