# Makefile for the datastreams extension (PGXS)

EXTENSION = datastreams
MODULE_big = datastreams
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA = $(sort $(wildcard sql/datastreams--*.sql))
PGFILEDESC = "datastreams - high-frequency data streams in PostgreSQL"

SHLIB_LINK += -luuid
PG_CPPFLAGS += -Isrc
PG_CFLAGS += -Wall -Werror

# Regression inputs are sql/<name>.sql; the extension's own scripts are
# sql/datastreams--<version>.sql and are never run by pg_regress.
REGRESS = $(sort $(filter-out datastreams--%,$(notdir $(basename $(wildcard sql/*.sql)))))
REGRESS_OPTS = --inputdir=. --outputdir=results --load-extension=datastreams

ISOLATION = $(sort $(notdir $(basename $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=results/isolation --load-extension=datastreams

TAP_TESTS = 1

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): src/datastreams.h

# The LISTEN client, a libpq program installed beside psql.
LISTEN_CLIENT = src/bin/datastreams-listen
EXTRA_CLEAN += $(LISTEN_CLIENT)

all: $(LISTEN_CLIENT)

$(LISTEN_CLIENT): src/bin/datastreams_listen.c
	$(CC) $(CFLAGS) -Wall -Werror -I$(includedir) $< -L$(libdir) -lpq -o $@

install: install-listen-client

install-listen-client: $(LISTEN_CLIENT)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(LISTEN_CLIENT) '$(DESTDIR)$(bindir)/datastreams-listen'

.PHONY: install-listen-client
