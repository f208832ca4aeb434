# test/bench/lib.sh: the helpers every benchmark script uses.  Sourced, not run.

# progress on stderr, with the seconds since the script started
say() { printf '==> [%3ds] %s\n' "$SECONDS" "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
	printf 'ERROR: %s\n' "$*" >&2
	exit 1
}

# PostgreSQL refuses to run as root: servers and their clients run as postgres
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}
