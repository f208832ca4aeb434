# shellcheck shell=bash
# shellcheck disable=SC2034  # constants are used by the scripts sourcing this
# Shared helpers for scripts/test.sh and scripts/demo.sh.
#
# Sourced, never executed.  Callers are expected to run with
# `set -euo pipefail`.  Everything here is prefixed ds_ / DS_.

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------
DS_PG_MAJOR=15
# DATASTREAMS_PG_ROOT=DIR: build, install and test in a private copy of the
# PostgreSQL installation under DIR (made on first use; PostgreSQL's Debian
# build is relocatable), leaving the system's extension directories alone.
DS_PG_ROOT=${DATASTREAMS_PG_ROOT:-}
DS_PGBIN=${DS_PG_ROOT}/usr/lib/postgresql/${DS_PG_MAJOR}/bin
DS_PG_CONFIG=${DS_PGBIN}/pg_config
DS_PGXS_DIR=${DS_PG_ROOT}/usr/lib/postgresql/${DS_PG_MAJOR}/lib/pgxs
DS_PG_REGRESS=${DS_PGXS_DIR}/src/test/regress/pg_regress
DS_PG_ISOLATION_REGRESS=${DS_PGXS_DIR}/src/test/isolation/pg_isolation_regress
DS_PG_PERL_LIB=${DS_PGXS_DIR}/src/test/perl

# Packages needed to build and test (checked one by one with dpkg).
DS_PACKAGES=(
	postgresql-15
	postgresql-server-dev-15
	uuid-dev
	libipc-run-perl
	build-essential
	make
	gcc
	prometheus
	prometheus-postgres-exporter
	postgresql-15-cron
	libmicrohttpd-dev
	curl
	chromium
	postgresql-15-plproxy
	pgbouncer
	postgresql-15-auto-failover
	libjson-perl
)

# Repository root, derived from this file's location (scripts/lib.sh).
DS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

export PATH="${DS_PGBIN}:${PATH}"

# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------
ds_say()  { printf '%s\n' "$*"; }
ds_info() { printf '==> %s\n' "$*"; }
ds_warn() { printf 'WARNING: %s\n' "$*" >&2; }
ds_die()  { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Header for a phase, e.g. "==== regression (pg_regress) ====".
ds_phase() {
	printf '\n==================== %s ====================\n' "$*"
}

ds_is_root() { [ "$(id -u)" -eq 0 ]; }

# --------------------------------------------------------------------------
# Packages
# --------------------------------------------------------------------------
ds_pkg_installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

# Install (as root) or report (otherwise) whatever is missing.
ds_ensure_packages() {
	local missing=() p
	for p in "${DS_PACKAGES[@]}"; do
		ds_pkg_installed "$p" || missing+=("$p")
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		ds_info "all required packages are installed"
		return 0
	fi
	if ! ds_is_root; then
		printf 'ERROR: missing packages: %s\n' "${missing[*]}" >&2
		printf 'Install them with:\n  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends %s\n' \
			"${missing[*]}" >&2
		printf '(or run this script as root, which installs them itself)\n' >&2
		exit 1
	fi
	ds_info "installing missing packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	for p in "${missing[@]}"; do
		ds_pkg_installed "$p" || ds_die "package $p still not installed after apt-get install"
	done
	ds_info "packages installed"
}

# --------------------------------------------------------------------------
# Users: the server and pg_regress never run as root.
# --------------------------------------------------------------------------
# DS_PG_USER is the OS user that owns clusters and runs tests.
ds_pick_os_user() {
	if ds_is_root; then
		id postgres >/dev/null 2>&1 ||
			ds_die "OS user 'postgres' does not exist (is postgresql-15 installed?)"
		DS_PG_USER=postgres
	else
		DS_PG_USER=$(id -un)
	fi
}

# Run a command as DS_PG_USER (runuser when root, directly otherwise).
# The current directory must be accessible to that user.
ds_as_pg() {
	if ds_is_root; then
		runuser -u "$DS_PG_USER" -- "$@"
	else
		"$@"
	fi
}

# Give DS_PG_USER a path (recursively) when we are root.
ds_give_to_pg() {
	if ds_is_root; then
		chown -R "$DS_PG_USER": "$@"
	fi
}

# --------------------------------------------------------------------------
# Build + install
# --------------------------------------------------------------------------
ds_build_install() {
	local jobs
	if [ -n "$DS_PG_ROOT" ] && [ ! -x "$DS_PG_CONFIG" ]; then
		ds_info "private copy of PostgreSQL $DS_PG_MAJOR in $DS_PG_ROOT"
		mkdir -p "$DS_PG_ROOT/usr/lib/postgresql" "$DS_PG_ROOT/usr/share/postgresql"
		cp -a "/usr/lib/postgresql/$DS_PG_MAJOR" "$DS_PG_ROOT/usr/lib/postgresql/"
		cp -a "/usr/share/postgresql/$DS_PG_MAJOR" "$DS_PG_ROOT/usr/share/postgresql/"
		mkdir -p "$DS_PG_ROOT/usr/include"
		cp -a /usr/include/postgresql "$DS_PG_ROOT/usr/include/"
	fi
	jobs=$(nproc 2>/dev/null || echo 2)
	ds_info "building (make -j$jobs PG_CONFIG=$DS_PG_CONFIG)"
	make -C "$DS_ROOT" -s -j"$jobs" PG_CONFIG="$DS_PG_CONFIG"
	ds_info "installing into the PostgreSQL $DS_PG_MAJOR directories"
	if ds_is_root; then
		make -C "$DS_ROOT" -s PG_CONFIG="$DS_PG_CONFIG" install
	elif [ -w "$("$DS_PG_CONFIG" --pkglibdir)" ] && [ -w "$("$DS_PG_CONFIG" --sharedir)/extension" ] &&
		[ -w "$("$DS_PG_CONFIG" --bindir)" ]; then
		make -C "$DS_ROOT" -s PG_CONFIG="$DS_PG_CONFIG" install
	elif command -v sudo >/dev/null 2>&1; then
		ds_info "not root: using sudo make install"
		sudo make -C "$DS_ROOT" -s PG_CONFIG="$DS_PG_CONFIG" install
	else
		ds_die "'make install' needs root (writes to $("$DS_PG_CONFIG" --pkglibdir)) and sudo is not available; run this script as root"
	fi
}

# --------------------------------------------------------------------------
# Clusters
# --------------------------------------------------------------------------
# Is something listening on 127.0.0.1:PORT?
ds_port_busy() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ds_cluster_init DATADIR SOCKDIR PORT [EXTRA_CONF_FILE...]
# initdb as DS_PG_USER (superuser 'postgres', trust auth, C locale) and
# write the private settings.  DATASTREAMS_PRELOAD=0 leaves the
# extension out of shared_preload_libraries.
ds_cluster_init() {
	local datadir=$1 sockdir=$2 port=$3 f
	shift 3
	ds_info "initdb $datadir"
	ds_as_pg "$DS_PGBIN/initdb" -D "$datadir" -U postgres --auth=trust \
		--no-locale -E UTF8 --no-sync >"$datadir.initdb.log" 2>&1 ||
		{ cat "$datadir.initdb.log" >&2; ds_die "initdb failed"; }
	{
		echo
		echo "# ---- datastreams private cluster (scripts/lib.sh) ----"
		echo "port = $port"
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = '$sockdir'"
		echo "max_connections = 100"
		echo "max_prepared_transactions = 10"
		if [ "${DATASTREAMS_PRELOAD:-1}" != 0 ]; then
			echo "shared_preload_libraries = 'datastreams'"
		else
			echo "# shared_preload_libraries left empty (DATASTREAMS_PRELOAD=0)"
		fi
		for f in "$@"; do
			[ -f "$f" ] || continue
			echo "# ---- from $f ----"
			cat "$f"
		done
	} >>"$datadir/postgresql.conf"
}

ds_cluster_running() {
	ds_as_pg "$DS_PGBIN/pg_ctl" -D "$1" status >/dev/null 2>&1
}

# ds_cluster_start DATADIR LOGFILE
ds_cluster_start() {
	local datadir=$1 logfile=$2
	ds_info "starting server (data $datadir, log $logfile)"
	if ! ds_as_pg "$DS_PGBIN/pg_ctl" -D "$datadir" -l "$logfile" -w -t 60 start >/dev/null; then
		ds_warn "server failed to start; tail of $logfile:"
		tail -n 40 "$logfile" >&2 || true
		return 1
	fi
}

# ds_cluster_stop DATADIR (quiet, never fails)
ds_cluster_stop() {
	local datadir=$1
	if [ -f "$datadir/postmaster.pid" ]; then
		ds_as_pg "$DS_PGBIN/pg_ctl" -D "$datadir" -m fast -w -t 60 stop >/dev/null 2>&1 ||
			ds_as_pg "$DS_PGBIN/pg_ctl" -D "$datadir" -m immediate -w stop >/dev/null 2>&1 || true
	fi
}

# ds_psql SOCKDIR PORT [psql args...] -- run psql as DS_PG_USER.
ds_psql() {
	local sockdir=$1 port=$2
	shift 2
	ds_as_pg "$DS_PGBIN/psql" -X -v ON_ERROR_STOP=1 -h "$sockdir" -p "$port" "$@"
}
