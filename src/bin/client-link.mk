# client-link.mk: included by each client program's Makefile after PGXS.
#
# Debian installs PostgreSQL's programs in /usr/lib/postgresql/N/bin, which
# is not on PATH (psql and friends reach PATH through postgresql-common's
# wrapper, which knows only PostgreSQL's own programs).  So an installation
# into that directory also links the program into /usr/local/bin, the
# directory for software installed locally outside the package manager.
# Nothing is linked when DESTDIR is set (a package being built: links are
# the package's business) or when bindir is anything else (a private or
# source-built PostgreSQL, whose bindir its owner puts on PATH).  Set
# CLIENT_LINKDIR to choose the directory, or to nothing for no link.

ifeq ($(DESTDIR),)
ifneq ($(filter /usr/lib/postgresql/%/bin,$(bindir)),)
CLIENT_LINKDIR ?= /usr/local/bin
endif
endif

ifneq ($(CLIENT_LINKDIR),)
install: install-link
uninstall: uninstall-link
endif

# Never replace a file that is not a link; uninstall removes the link only
# if it still points at this installation's program.
install-link: installdirs
	@if [ -e '$(DESTDIR)$(CLIENT_LINKDIR)/$(PROGRAM)' ] && [ ! -L '$(DESTDIR)$(CLIENT_LINKDIR)/$(PROGRAM)' ]; then \
		echo "$(DESTDIR)$(CLIENT_LINKDIR)/$(PROGRAM) exists and is not a symbolic link; not replaced" >&2; \
	else \
		$(MKDIR_P) '$(DESTDIR)$(CLIENT_LINKDIR)' && \
		ln -sfn '$(bindir)/$(PROGRAM)$(X)' '$(DESTDIR)$(CLIENT_LINKDIR)/$(PROGRAM)'; \
	fi

uninstall-link:
	@if [ "$$(readlink '$(DESTDIR)$(CLIENT_LINKDIR)/$(PROGRAM)' 2>/dev/null)" = '$(bindir)/$(PROGRAM)$(X)' ]; then \
		rm -f '$(DESTDIR)$(CLIENT_LINKDIR)/$(PROGRAM)'; \
	fi

.PHONY: install-link uninstall-link
