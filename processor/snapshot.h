/* snapshot.h - an in-memory copy of the exposed-card set, for replay.
 *
 * A replay reads history at a rate Redis could not answer one lookup per
 * event for, and it wants one fixed answer for the whole run (a card
 * loaded half-way through a live service's day would otherwise make two
 * replays of the same input differ). So a replay copies the exposed set
 * once at start: the card fingerprints of every loaded breach (or of one
 * breach), each with its breach entries, read through the exposure
 * module's connection (the fingerprints of every card bucket, then
 * their records by exposure_lookup, so breach metadata and record parsing
 * are the live path's). Lookups are then a hash probe, answered before they return.
 *
 * Memory: about 100 bytes per exposed card (7,455 cards: under 1 MB).
 */
#ifndef CARDWATCH_SNAPSHOT_H
#define CARDWATCH_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "exposure.h"
#include "redis_conn.h"

struct snapshot;

/* Called once when loading ended: status 0, or -1 with a message (the
 * breach is not loaded, out of memory, the exposure module went away, or
 * "Redis ADDR refused <what>: <Redis's error reply>"). */
typedef void (*snapshot_done_cb)(void *arg, int status, const char *err);

/* Starts copying the exposed set through x (borrowed; it must outlive the
 * snapshot, which points at its cached breach metadata), listing cards on
 * the connection rc (borrowed; x's connection). breach: one
 * breach id, or NULL for every loaded breach; with a breach id only that
 * breach's entries are kept (a card also listed by another breach is
 * exposed through this one alone). Returns the snapshot (not usable
 * before cb reported 0), or NULL with a message in errbuf. */
struct snapshot *snapshot_load(struct exposure *x, struct rconn *rc,
                               const char *prefix,
                               const char *key_id, const char *breach,
                               snapshot_done_cb cb, void *arg, char *errbuf,
                               size_t errlen);

/* Looks up n fingerprints (32-hex strings) and fills *res, whose arrays
 * belong to the snapshot and stay valid until the next call. Returns 0,
 * or -1 on allocation failure. */
int snapshot_lookup(struct snapshot *s, const char *const *fps, size_t n,
                    struct exposure_result *res);

/* Exposed cards held. */
size_t snapshot_cards(const struct snapshot *s);

/* Frees. A load still running is abandoned (its callback does not fire);
 * call it before the exposure module is destroyed. NULL is a no-op. */
void snapshot_destroy(struct snapshot *s);

#endif
