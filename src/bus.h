/*-------------------------------------------------------------------------
 *
 * bus.h
 *	  Publishing committed frames with NOTIFY: the path a transaction's
 *	  frames take (bus.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef DS_BUS_H
#define DS_BUS_H

#include "ledger.h"

extern bool ds_bus_pre_commit(LedgerStream **streams, int count);
extern void ds_bus_commit(LedgerStream **streams, int count);
extern void ds_bus_abort(void);
extern void ds_bus_init(void);

#endif							/* DS_BUS_H */
