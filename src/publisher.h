/*-------------------------------------------------------------------------
 *
 * publisher.h
 *	  The per-database publisher: writers hand their committed frames over
 *	  to it, and it announces them (publisher.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef DS_PUBLISHER_H
#define DS_PUBLISHER_H

#include "ledger.h"

extern bool ds_publisher_reserve(LedgerStream **streams, int count);
extern void ds_publisher_hand_over(LedgerStream **streams, int count);
extern void ds_publisher_release(void);
extern bool ds_publisher_usable(void);
extern void ds_publisher_init(void);
extern PGDLLEXPORT void datastreams_publisher_main(Datum main_arg);

#endif							/* DS_PUBLISHER_H */
