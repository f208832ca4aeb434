#!/usr/bin/env bash
# Move one partition of a sharded datastreams deployment to another shard,
# live (docs/scale-out.md, "Moving a partition").
#
#   scripts/move-partition.sh --source CONNINFO --destination CONNINFO \
#       --proxy CONNINFO [--proxy CONNINFO ...] [--map-conninfo CONNINFO] PARTITION
#
# CONNINFO are libpq connection strings of a superuser on the source shard,
# the destination shard and every proxy database.  The destination
# subscribes to the source with the --source string, so it must work from
# the destination's host too.  --map-conninfo is what the proxies' map
# datastreams_cluster gets for the partition (default: the destination
# string; give one without credentials).
#
# Steps: hide the partition on the destination; copy its streams, frames
# and pointers with native logical replication (row filters on the
# routing hash); cut over on the source in one transaction (wait for the
# writes already past the gate, mark the partition moved out, write a
# barrier token, tell listeners {"moved": true}); wait for the token on the
# destination; copy the durable consumers' positions of the partition;
# unhide it there and switch the map on every proxy; drop the
# replication and delete the partition's streams from the source.  Calls
# for the partition get 40001 between the cutover and the map switch
# (printed as unavailable_ms); no other partition is disturbed.
set -euo pipefail

SOURCE=
DEST=
MAP_CONNINFO=
PROXIES=()
PARTITION=

die() { printf 'move-partition: %s\n' "$*" >&2; exit 1; }
say() { printf 'move-partition: %s\n' "$*"; }

while [ $# -gt 0 ]; do
	case $1 in
	--source) SOURCE=$2; shift 2 ;;
	--destination) DEST=$2; shift 2 ;;
	--proxy) PROXIES+=("$2"); shift 2 ;;
	--map-conninfo) MAP_CONNINFO=$2; shift 2 ;;
	-h | --help) sed -n '2,24p' "$0"; exit 0 ;;
	-*) die "unknown option $1" ;;
	*) [ -z "$PARTITION" ] || die "one partition at a time"; PARTITION=$1; shift ;;
	esac
done
[ -n "$SOURCE" ] && [ -n "$DEST" ] && [ "${#PROXIES[@]}" -gt 0 ] && [ -n "$PARTITION" ] ||
	die "usage: move-partition.sh --source CONNINFO --destination CONNINFO --proxy CONNINFO [--map-conninfo CONNINFO] PARTITION"
[[ $PARTITION =~ ^[0-9]+$ ]] || die "partition must be a number"
MAP_CONNINFO=${MAP_CONNINFO:-$DEST}

# q CONNINFO SQL [psql -v assignments...]: one value, unaligned
q() {
	local conninfo=$1 sql=$2
	shift 2
	PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" \
		psql -X -q -A -t -v ON_ERROR_STOP=1 "$@" -d "$conninfo" -c "$sql"
}
now_ms() { date +%s%3N; }

PARTITIONS=$(q "${PROXIES[0]}" 'SELECT datastreams_proxy.partition_count()')
for p in "${PROXIES[@]:1}"; do
	[ "$(q "$p" 'SELECT datastreams_proxy.partition_count()')" = "$PARTITIONS" ] ||
		die "the proxies' maps have different partition counts"
done
[ "$PARTITION" -lt "$PARTITIONS" ] || die "partition $PARTITION does not exist (the map has $PARTITIONS)"
MASK=$((PARTITIONS - 1))
NAME=datastreams_move_p$PARTITION
TOKEN=$NAME-$(date +%s%N)
# The routing hash's low 16 bits are the id's bytes 2 and 3; a row filter
# may only use built-in immutable functions, so the hash is spelled out.
# (Partition counts above 65536 are not supported.)
[ "$PARTITIONS" -le 65536 ] || die "at most 65536 partitions"
in_partition() {
	printf '(((get_byte(uuid_send(%s), 2) << 8) | get_byte(uuid_send(%s), 3)) & %d) = %d' "$1" "$1" "$MASK" "$PARTITION"
}

[ "$(q "$DEST" "SELECT count(*) FROM pg_subscription WHERE subname LIKE 'datastreams_move_%'")" = 0 ] ||
	die "the destination has a subscription of an unfinished move (datastreams_move_*): finish or drop it first"
[ "$(q "$SOURCE" "SELECT count(*) FROM pg_publication WHERE pubname LIKE 'datastreams_move_%'")" = 0 ] ||
	die "the source has a publication of an unfinished move (datastreams_move_*): finish or drop it first"
[ "$(q "$SOURCE" "SELECT count(*) FROM datastreams_shard.hidden WHERE mask = $MASK AND value = $PARTITION")" = 0 ] ||
	die "partition $PARTITION is not served by the source (it is marked in datastreams_shard.hidden there)"

say "partition $PARTITION of $PARTITIONS: hiding it on the destination"
q "$DEST" "INSERT INTO datastreams_shard.hidden (mask, value, state) VALUES ($MASK, $PARTITION, 'moving_in')
	ON CONFLICT (mask, value) DO UPDATE SET state = 'moving_in', since = now()" >/dev/null

say "copying with logical replication"
# Frames are immutable; only their inserts are published, so the source's
# prune (DELETE) is not bound by the row filter's replica identity rule.
q "$SOURCE" "CREATE PUBLICATION ${NAME}_rows FOR
	TABLE datastreams.streams WHERE ($(in_partition id)),
	TABLE datastreams.stream_state WHERE ($(in_partition stream_id)),
	TABLE datastreams_shard.move_barrier;
CREATE PUBLICATION ${NAME}_frames FOR
	TABLE datastreams.frames WHERE ($(in_partition stream_id))
	WITH (publish = 'insert')" >/dev/null
q "$DEST" "CREATE SUBSCRIPTION $NAME CONNECTION '${SOURCE//\'/\'\'}'
	PUBLICATION ${NAME}_rows, ${NAME}_frames" >/dev/null

until [ "$(q "$DEST" "SELECT count(*) FILTER (WHERE srsubstate IN ('r', 's')) = count(*) AND count(*) = 4
		FROM pg_subscription_rel AS r JOIN pg_subscription AS s ON s.oid = r.srsubid
	   WHERE s.subname = '$NAME'")" = t ]; do
	sleep 0.05
done
say "initial copy done"

# The cutover: the partition's gate buckets taken exclusively (this waits
# for every call already past the gate), the moved_out mark, the barrier
# token and the listeners' notice, in one transaction.
T_GATE=$(now_ms)
q "$SOURCE" "BEGIN;
SELECT count(pg_advisory_xact_lock(17492, b)) FROM generate_series(0, 1023) AS b
 WHERE (b & $MASK) = ($PARTITION & 1023);
INSERT INTO datastreams_shard.hidden (mask, value, state) VALUES ($MASK, $PARTITION, 'moved_out');
INSERT INTO datastreams_shard.move_barrier (token) VALUES ('$TOKEN');
SELECT count(pg_notify(datastreams.channel(s.id), '{\"moved\": true}'))
  FROM datastreams.streams AS s WHERE $(in_partition s.id);
COMMIT;" >/dev/null

until [ "$(q "$DEST" "SELECT count(*) FROM datastreams_shard.move_barrier WHERE token = '$TOKEN'")" = 1 ]; do
	sleep 0.005
done
T_CAUGHT_UP=$(now_ms)

# Durable consumers' positions of the partition's streams, copied now: no
# ack or seek of them can commit on the source after the cutover (they
# pass the gate), and none reaches the destination before it is opened.
# They are not replicated because the destination makes positions of its
# own for the copied streams (a consumer of every stream gets one when it
# is polled); the copy overwrites those.  Positions of consumers the
# destination lacks (a create_consumer that failed there) are left out
# and counted.
POSITIONS=$(psql -X -q -v ON_ERROR_STOP=1 -d "$SOURCE" -c "COPY (
	SELECT p.* FROM datastreams.consumer_positions AS p WHERE $(in_partition p.stream_id)) TO STDOUT" |
	PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$DEST" \
		-c "CREATE TEMPORARY TABLE moved_positions (LIKE datastreams.consumer_positions)" \
		-c "COPY moved_positions FROM STDIN" \
		-c "WITH copied AS (
			INSERT INTO datastreams.consumer_positions AS p
			SELECT m.* FROM moved_positions AS m
			 WHERE EXISTS (SELECT FROM datastreams.consumers AS c
							WHERE c.account_id = m.account_id AND c.name = m.consumer)
			ON CONFLICT (account_id, consumer, stream_id) DO UPDATE
			   SET acknowledged_sequence = excluded.acknowledged_sequence,
				   acknowledged_at = excluded.acknowledged_at,
				   frames_missed = excluded.frames_missed,
				   missed_since_ack = excluded.missed_since_ack
			RETURNING 1)
		SELECT count(*) || ' ' || (SELECT count(*) FROM moved_positions) - count(*) FROM copied")
read -r COPIED LEFT_OUT <<<"$POSITIONS"
say "consumer positions copied: $COPIED${LEFT_OUT:+, left out (consumer missing on the destination): $LEFT_OUT}"

q "$DEST" "DELETE FROM datastreams_shard.hidden WHERE mask = $MASK AND value = $PARTITION" >/dev/null
for p in "${PROXIES[@]}"; do
	q "$p" "ALTER SERVER datastreams_cluster OPTIONS (SET p$PARTITION '${MAP_CONNINFO//\'/\'\'}')" >/dev/null
done
T_OPEN=$(now_ms)
say "caught_up_ms=$((T_CAUGHT_UP - T_GATE)) unavailable_ms=$((T_OPEN - T_GATE))"

say "cleaning up"
q "$DEST" "DROP SUBSCRIPTION $NAME" >/dev/null
q "$SOURCE" "DROP PUBLICATION ${NAME}_rows, ${NAME}_frames" >/dev/null
MOVED=$(q "$SOURCE" "WITH gone AS (DELETE FROM datastreams.streams WHERE $(in_partition id) RETURNING 1)
	SELECT count(*) FROM gone")
q "$SOURCE" "DELETE FROM datastreams_shard.move_barrier WHERE token = '$TOKEN'" >/dev/null
q "$DEST" "DELETE FROM datastreams_shard.move_barrier WHERE token = '$TOKEN'" >/dev/null
say "done: $MOVED streams of partition $PARTITION moved"
