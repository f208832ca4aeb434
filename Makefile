# Makefile for the datastreams extension (PGXS)
#
#   make && sudo make install     build and install the extension and its clients
#   make installcheck             pg_regress and isolation tests against a running,
#                                 preloaded server (PGHOST, PGPORT, PGUSER)
#   make prove_installcheck       the TAP tests in test/t (each starts its own servers)

EXTENSION = datastreams
MODULE_big = datastreams
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
# The 1.2 upgrade script is assembled from one piece per subsystem
# (sql/1.1--1.2/NN_topic.sql), in file-name order.
UPGRADE_1_2 = sql/datastreams--1.1--1.2.sql
DATA = $(filter-out $(UPGRADE_1_2),$(sort $(wildcard sql/datastreams--*.sql)))
DATA_built = $(UPGRADE_1_2)
PGFILEDESC = "datastreams - high-frequency data streams in PostgreSQL"

SHLIB_LINK += -luuid
PG_CPPFLAGS += -Isrc
PG_CFLAGS += -Wall -Werror

# Regression inputs are sql/<name>.sql; the extension's own scripts are
# sql/datastreams--<version>.sql and are never run by pg_regress.
REGRESS = $(sort $(filter-out datastreams--%,$(notdir $(basename $(wildcard sql/*.sql)))))
REGRESS_OPTS = --load-extension=datastreams

ISOLATION = $(sort $(notdir $(basename $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=datastreams

# TAP tests live in test/t, not PGXS's default t/; TAP_TESTS stays unset so
# that installcheck runs only pg_regress and isolation, as the README says.
PROVE_TESTS ?= $(sort $(wildcard test/t/*.pl))
PROVE_FLAGS += -I test/perl

# The client programs, each its own PGXS PROGRAM module (like contrib/vacuumlo).
CLIENT_DIRS = $(sort $(dir $(wildcard src/bin/*/Makefile)))

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): $(wildcard src/*.h)

$(UPGRADE_1_2): $(sort $(wildcard sql/1.1--1.2/*.sql))
	cat $^ > $@

all: all-clients
install: install-clients
uninstall: uninstall-clients
clean: clean-clients

all-clients install-clients uninstall-clients clean-clients:
	@set -e; for d in $(CLIENT_DIRS); do \
		$(MAKE) -C $$d PG_CONFIG='$(PG_CONFIG)' $(patsubst %-clients,%,$@); \
	done

prove_installcheck:
	$(prove_installcheck)

# The SQL extensions of sharded deployments, each its own PGXS module.
CONTRIB_DIRS = $(sort $(dir $(wildcard contrib/*/Makefile)))

all: all-contrib
install: install-contrib
uninstall: uninstall-contrib
clean: clean-contrib

all-contrib install-contrib uninstall-contrib clean-contrib:
	@set -e; for d in $(CONTRIB_DIRS); do \
		$(MAKE) -C $$d PG_CONFIG='$(PG_CONFIG)' $(patsubst %-contrib,%,$@); \
	done

.PHONY: all-clients install-clients uninstall-clients clean-clients prove_installcheck
.PHONY: all-contrib install-contrib uninstall-contrib clean-contrib
