#!/usr/bin/env bash
# datastreams-listen's install rule (src/bin/listen/Makefile, docs/clients.md):
# an installation into Debian's /usr/lib/postgresql/N/bin links the program
# into /usr/local/bin, one with DESTDIR or another bindir does not; the link
# works by name and "make uninstall" removes it only while it points at the
# program it uninstalls.  Nothing is installed outside a temporary directory:
# the system case is checked with "make -n".
set -euo pipefail
src=${DATASTREAMS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mk() { make -s -C "$src/src/bin/listen" PG_CONFIG="${PG_CONFIG:-pg_config}" "$@"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

mk
debian_bin=/usr/lib/postgresql/15/bin
mk -n install bindir="$debian_bin" | grep -q "ln -sfn '$debian_bin/datastreams-listen' '/usr/local/bin/datastreams-listen'" ||
	fail "no /usr/local/bin link planned for an installation into $debian_bin"
! mk -n install bindir="$debian_bin" DESTDIR="$tmp/pkg" | grep -q "ln -s" ||
	fail "a link planned although DESTDIR is set"
! mk -n install bindir="$tmp/private/bin" | grep -q "ln -s" ||
	fail "a link planned for a bindir that is not Debian's"
! mk -n install bindir="$debian_bin" CLIENT_LINKDIR= | grep -q "ln -s" ||
	fail "a link planned although CLIENT_LINKDIR is empty"

# a real installation, with the link directory given
mk install bindir="$tmp/bin" CLIENT_LINKDIR="$tmp/links"
[ "$(readlink "$tmp/links/datastreams-listen")" = "$tmp/bin/datastreams-listen" ] ||
	fail "no link to the installed program"
PATH="$tmp/links:$PATH" datastreams-listen --version | grep -q '^datastreams-listen (datastreams) ' ||
	fail "datastreams-listen does not run by name through the link"
mk uninstall bindir="$tmp/bin" CLIENT_LINKDIR="$tmp/links"
[ ! -e "$tmp/links/datastreams-listen" ] && [ ! -L "$tmp/links/datastreams-listen" ] ||
	fail "make uninstall left the link"
[ ! -e "$tmp/bin/datastreams-listen" ] || fail "make uninstall left the program"

# another installation's link, and a file that is not a link, stay
ln -s /elsewhere/datastreams-listen "$tmp/links/datastreams-listen"
mk uninstall bindir="$tmp/bin" CLIENT_LINKDIR="$tmp/links"
[ -L "$tmp/links/datastreams-listen" ] || fail "make uninstall removed another installation's link"
rm "$tmp/links/datastreams-listen"
echo "not a link" >"$tmp/links/datastreams-listen"
mk install bindir="$tmp/bin" CLIENT_LINKDIR="$tmp/links" 2>/dev/null
grep -q "not a link" "$tmp/links/datastreams-listen" || fail "make install replaced a file that is not a link"
echo "listen_install: ok"
