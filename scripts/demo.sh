#!/usr/bin/env bash
# Set up datastreams and run a short live demo.
#
#   sudo scripts/demo.sh
#
# Installs missing packages, builds and installs the extension, starts (or
# reuses) a persistent local PostgreSQL 15 cluster owned by 'postgres' in
# /var/tmp/datastreams-demo, recreates the database datastreams_demo and
# streams a few frames while the LISTEN client datastreams-listen watches.
# Re-runnable; the server is left running at the end.
#
# Environment:
#   DATASTREAMS_DEMO_DIR    cluster + socket directory (default /var/tmp/datastreams-demo)
#   DATASTREAMS_DEMO_PORT   port (default 54330)
#   DATASTREAMS_PRELOAD     1 (default) = shared_preload_libraries='datastreams'
#   DATASTREAMS_SKIP_BUILD  1 = do not run make / make install
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEMO_DIR=${DATASTREAMS_DEMO_DIR:-/var/tmp/datastreams-demo}
DEMO_PORT=${DATASTREAMS_DEMO_PORT:-54330}
DEMO_DB=datastreams_demo
# the role and account scripts/demo-setup.sql creates
DEMO_ROLE=demo_app
DEMO_ACCOUNT=demo
DATADIR=$DEMO_DIR/data
SERVER_LOG=$DEMO_DIR/server.log
LISTEN_OUT=$DEMO_DIR/listen.out
LISTEN_PID=$DEMO_DIR/listen.pid
LISTEN_BIN=$("$DS_PG_CONFIG" --bindir)/datastreams-listen

# --------------------------------------------------------------------------
ensure_cluster() {
	mkdir -p "$DEMO_DIR"
	chmod 755 "$DEMO_DIR"
	ds_give_to_pg "$DEMO_DIR"
	cd "$DEMO_DIR"
	if [ ! -f "$DATADIR/PG_VERSION" ]; then
		ds_cluster_init "$DATADIR" "$DEMO_DIR" "$DEMO_PORT" "$DS_ROOT/test/postgresql.conf"
	fi
	if ds_cluster_running "$DATADIR"; then
		local lib
		lib=$("$DS_PG_CONFIG" --pkglibdir)/datastreams.so
		if [ -f "$lib" ] && [ "$lib" -nt "$DATADIR/postmaster.pid" ]; then
			ds_info "reusing the running demo server; restarting it to load the freshly installed datastreams.so"
			ds_as_pg "$DS_PGBIN/pg_ctl" -D "$DATADIR" -l "$SERVER_LOG" -m fast -w -t 60 restart >/dev/null ||
				{ tail -n 40 "$SERVER_LOG" >&2; ds_die "restart failed"; }
		else
			ds_info "reusing the running demo server ($DATADIR)"
		fi
	else
		! ds_port_busy "$DEMO_PORT" ||
			ds_die "port $DEMO_PORT is in use by something else; set DATASTREAMS_DEMO_PORT"
		ds_cluster_start "$DATADIR" "$SERVER_LOG" || ds_die "could not start the demo server"
	fi
}

# psql as superuser 'postgres' (args: psql options)
su_psql() { ds_psql "$DEMO_DIR" "$DEMO_PORT" -U postgres "$@"; }
# psql as the application role, acting for the demo account
app_psql() {
	ds_as_pg env PGOPTIONS="-c datastreams.account_id=$DEMO_ACCOUNT" \
		"$DS_PGBIN/psql" -X -v ON_ERROR_STOP=1 -P pager=off \
		-h "$DEMO_DIR" -p "$DEMO_PORT" -U "$DEMO_ROLE" -d "$DEMO_DB" "$@"
}

stop_listener() {
	if [ -f "$LISTEN_PID" ]; then
		local pid
		pid=$(cat "$LISTEN_PID")
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			for _ in 1 2 3 4 5 6 7 8 9 10; do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.2
			done
		fi
		rm -f "$LISTEN_PID"
	fi
}

setup_database() {
	ds_info "recreating database $DEMO_DB"
	su_psql -d postgres -q <<-SQL
		DROP DATABASE IF EXISTS $DEMO_DB WITH (FORCE);
		CREATE DATABASE $DEMO_DB;
	SQL
	ds_phase "setup (as superuser postgres): scripts/demo-setup.sql"
	# the same file sets up the database of the documentation's examples
	su_psql -d "$DEMO_DB" -e -P pager=off <"$DS_ROOT/scripts/demo-setup.sql"
}

create_stream() {
	ds_phase "create a stream (as $DEMO_ROLE, datastreams.account_id = '$DEMO_ACCOUNT')"
	local sql="SELECT * FROM datastreams.create_stream(name => 'Market Data Feed',
	symbol => 'eth-usd', description => 'ETH/USD ticks', sla_ms => 1000, status => 'active')"
	local out
	ds_say "$sql;"
	out=$(app_psql -Atq -c "SELECT s.id, jsonb_pretty(to_jsonb(s)) FROM ($sql) s")
	STREAM_ID=$(printf '%s\n' "$out" | head -n 1 | cut -d'|' -f1)
	printf '%s\n' "$out" | sed '1s/^[^|]*|//'
	[ -n "$STREAM_ID" ] || ds_die "create_stream returned no id"
	app_psql -e -c "SELECT datastreams.channel('$STREAM_ID')"
}

start_listener() {
	ds_phase "start the LISTEN client"
	[ -x "$LISTEN_BIN" ] || ds_die "$LISTEN_BIN not found (did make install run?)"
	: >"$LISTEN_OUT"
	ds_say "$LISTEN_BIN --account $DEMO_ACCOUNT --stream $STREAM_ID  (output: $LISTEN_OUT)"
	# a plain libpq client: it may run as any OS user
	PGHOST="$DEMO_DIR" PGPORT="$DEMO_PORT" PGDATABASE="$DEMO_DB" PGUSER="$DEMO_ROLE" \
		"$LISTEN_BIN" --account "$DEMO_ACCOUNT" --stream "$STREAM_ID" \
		>>"$LISTEN_OUT" 2>&1 </dev/null &
	echo $! >"$LISTEN_PID"
	disown $! # no "Terminated" job message when it is stopped
	sleep 1 # let it connect and LISTEN
	if ! kill -0 "$(cat "$LISTEN_PID" 2>/dev/null || echo 0)" 2>/dev/null; then
		ds_warn "the LISTEN client exited early; its output:"
		cat "$LISTEN_OUT" >&2
	fi
}

ingest_frames() {
	ds_phase "ingest frames (SLA 1000 ms; the 1500 ms one is late)"
	local latencies=(45 52 38 1500 41) prices=(1850.5 1851.25 1849.75 1852.0 1853.1) i
	for i in "${!latencies[@]}"; do
		app_psql -e -c "SELECT sequence, status, latency_ms, payload, created_at FROM datastreams.create_frame('$STREAM_ID', NULL, '{\"price\": ${prices[$i]}}'::jsonb, ${latencies[$i]})"
		sleep 0.3
	done
}

show_frames() {
	ds_phase "read them back"
	app_psql -e -c "SELECT sequence, status, latency_ms, payload, created_at FROM datastreams.list_frames('$STREAM_ID')" \
		-c "SELECT sequence, status, latency_ms, payload, created_at FROM datastreams.latest_frame('$STREAM_ID')"
}

show_listener() {
	sleep 1 # let the last notifications arrive
	stop_listener
	ds_phase "what the LISTEN client received"
	cat "$LISTEN_OUT"
}

what_next() {
	local as_pg=""
	ds_is_root && as_pg="runuser -u $DS_PG_USER -- "
	ds_phase "what next"
	cat <<-EOF
		The demo server is still running (data $DATADIR, log $SERVER_LOG).

		Connect as superuser:
		  psql -h $DEMO_DIR -p $DEMO_PORT -U postgres -d $DEMO_DB
		Connect as the application role, acting for account '$DEMO_ACCOUNT':
		  PGOPTIONS='-c datastreams.account_id=$DEMO_ACCOUNT' psql -h $DEMO_DIR -p $DEMO_PORT -U $DEMO_ROLE -d $DEMO_DB
		Watch the stream live (Ctrl-C to stop):
		  PGHOST=$DEMO_DIR PGPORT=$DEMO_PORT PGDATABASE=$DEMO_DB PGUSER=$DEMO_ROLE datastreams-listen --account $DEMO_ACCOUNT --stream $STREAM_ID
		Stop the server:
		  ${as_pg}$DS_PGBIN/pg_ctl -D $DATADIR stop
		Run the demo again (recreates database $DEMO_DB):
		  $DS_ROOT/scripts/demo.sh
	EOF
}

main() {
	cd "$DS_ROOT"
	ds_phase "setup: packages, build, install"
	ds_ensure_packages
	ds_pick_os_user
	if [ "${DATASTREAMS_SKIP_BUILD:-0}" = 0 ]; then
		ds_build_install
	fi
	ensure_cluster
	stop_listener # from an earlier run
	trap stop_listener EXIT
	setup_database
	create_stream
	start_listener
	ingest_frames
	show_frames
	show_listener
	trap - EXIT
	what_next
}

main "$@"
