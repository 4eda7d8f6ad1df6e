/* loader.h - `cardwatch load | breaches | unload`: the exposed-card lists
 * in Redis (command-line tools: each call waits for its answer on a
 * redis_conn connection, so AUTH, TLS and Sentinel work here too).
 *
 * Only keyed fingerprints and expiry tags are written (see rmodel.h).
 * Loading is pipelined and idempotent: loading the same list twice
 * changes nothing. A load is staged: the breach is "loading" (invisible
 * to lookups) until its last card is in, then committed in one step with
 * its card count and a new generation marker (what `cardwatch run` checks
 * the set against). SIGTERM/SIGINT stop a load between chunks with a
 * message; running the same load again finishes it. Command-line
 * plumbing is in loader.c (load) and loader_admin.c (the rest).
 */
#ifndef CARDWATCH_LOADER_H
#define CARDWATCH_LOADER_H

#include "config.h"

struct load_opts {
    const char *breach_id;
    const char *window_start; /* YYYY-MM-DD */
    const char *window_end;   /* YYYY-MM-DD */
    const char *elements;     /* pan,expiry,cvv2,... */
    const char *description;  /* may be NULL */
    const char *list_path;    /* CSV with header; "-" = stdin */
    int progress;             /* progress line on stderr */
    int suspected;            /* the breach is suspected (cpp), not known */
};

/* Loads a breach list: card numbers, or fingerprints "<key_id>:<32 hex>"
 * (listcsv.h), which load as they are. Invalid rows are reported as
 * "file:line: ..." with the PAN masked and skipped; the rest load. A
 * fingerprint under a key id other than the configured [card] key's stops
 * the load (file:line, both key ids): when it is the first card, before
 * anything is written to Redis (nothing is written before the first
 * card); later in the list (a list mixing keys), as any load that stops
 * (staged, not committed). o->suspected records the breach as suspected
 * (its hash's field suspected = "1"; a load without it writes "0").
 * Returns the exit status: 0 when the list was loaded (even with rejected
 * rows), 1 on a bad argument, an unreadable or refused file, a fingerprint
 * of another key, a missing key or a Redis failure, 128 + the signal of an
 * interrupted load. */
int loader_load(const struct config *c, const struct load_opts *o);

/* Prints the loaded breaches (table, or JSON lines when json is 1).
 * Returns the exit status: 1 when Redis did not answer for a breach or the
 * set's marker (logged; the rows it could read are printed). */
int loader_list(const struct config *c, int json);

/* `breaches --confirm`: records the breaches now committed in Redis as the
 * exposed-card set (their counts now, a new marker), after an operator
 * checked that what Redis holds is what must be monitored (e.g. nothing,
 * on a fresh install, or after a deliberate FLUSH). Returns the exit
 * status. */
int loader_confirm(const struct config *c);

/* Removes a breach and its cards (cards listed by other breaches stay
 * exposed through those). Returns the exit status (1 when unknown). */
int loader_unload(const struct config *c, const char *breach_id,
                  int progress);

/* Moves exposed cards of the first data layout (one key per card, a set
 * per breach: cardwatch before 2026-12) to the current one (rmodel.h),
 * then sets a new marker. Idempotent and resumable: a second run finds
 * nothing left; SIGTERM/SIGINT stop it between batches. The service
 * refuses the first layout (it pauses intake and says to run this).
 * Returns the exit status. */
int loader_migrate(const struct config *c, int progress);

#endif
