/* exposure.h - asynchronous exposed-card lookup in Redis.
 *
 * One read-only Lua call per batch of fingerprints (the records in their
 * hash buckets and the marker, rmodel.h): one round trip per batch, never
 * per event; with a filter (exposure_opts.filter), only the cards it
 * cannot rule out are sent (exposure_filter.c). Breach metadata is cached and fetched on first sight of a breach
 * id. Commands ride a Redis connection (redis_conn.h) the caller owns:
 * it re-sends every unanswered command after a reconnect, so a lookup is
 * never lost; this module's state callback tells the pipeline to pause
 * intake while lookups cannot be answered.
 *
 * It also guards against an exposed-card set that is gone or incomplete
 * (Redis restarted empty, flushed, failed over to an empty replica): every
 * lookup reads the generation marker that `cardwatch load` sets with the
 * cards, and a lookup is answered only when the marker is the one whose
 * set passed the full check (see exposure_is_up). Otherwise the lookup is
 * held, the state callback reports down, and an ERROR line says why.
 */
#ifndef CARDWATCH_EXPOSURE_H
#define CARDWATCH_EXPOSURE_H

#include <stddef.h>
#include <stdint.h>

#include "breach.h"
#include "card.h"
#include "metrics.h"

struct event_base;
struct exposure;
struct rconn;

struct exposure_hit {
    const struct breach *breach; /* cached metadata; borrowed */
    char exptag[CARD_EXPTAG_SIZE]; /* "" when the list had no expiry */
    int retired; /* the issuer reissued or blocked the card (outcome) */
};

/* Card i of a lookup has hits[first[i] .. first[i] + count[i]). A clean
 * card has count 0. */
struct exposure_result {
    size_t n_cards;
    const uint32_t *first;
    const uint16_t *count;
    const struct exposure_hit *hits;
};

/* Called exactly once per lookup: status 0 with the result, or -1 with
 * res == NULL when the module is destroyed first. res and everything it
 * points to are borrowed for the duration of the call. */
typedef void (*exposure_cb)(void *arg, int status,
                            const struct exposure_result *res);

/* Called when the connection comes up (1) or goes down (0). */
typedef void (*exposure_state_cb)(void *arg, int up);

struct exposure_opts {
    const char *prefix; /* key namespace */
    const char *key_id; /* fingerprint key id */
    /* What a missing set means to the user, for the ERROR line (e.g.
     * "intake pauses"); NULL = "lookups wait". Not copied: a literal. */
    const char *while_down;
    struct metrics *metrics;  /* may be NULL */
    /* 1: keep an in-process filter of the exposed fingerprints, built in
     * the background for each marker the guard approves, so that lookups
     * send Redis only the cards it cannot rule out (the service); 0: no
     * filter (a replay copies the set once, the feed looks nothing up). */
    int filter;
    exposure_state_cb on_state;
    void *state_arg;
};

/* Creates the module on the connection rc (borrowed; destroy rc first, or
 * after: either order is safe). Strings in opts are copied. Returns NULL
 * with a message in errbuf on a bad option or allocation failure. */
struct exposure *exposure_new(struct event_base *base, struct rconn *rc,
                              const struct exposure_opts *opts, char *errbuf,
                              size_t errlen);

/* The connection's state callback must forward here (up = 1 / 0): after
 * every reconnect the set is checked again before a lookup is answered. */
void exposure_link_state(struct exposure *x, int up);

/* Looks up n fingerprints (32-hex strings, copied). cb fires once, when
 * Redis answered (after any reconnects). Returns 0, or -1 on allocation
 * failure (cb is then not called). */
int exposure_lookup(struct exposure *x, const char *const *fps, size_t n,
                    exposure_cb cb, void *arg);

/* 1 when lookups can be answered: the connection is up and the
 * exposed-card set passed its check (marker present and unchanged since
 * the check, every committed breach holding at least the cards its load
 * recorded, maxmemory-policy noeviction). The state callback follows
 * this value. */
int exposure_is_up(const struct exposure *x);

/* 1 when Redis answers and its exposed-card set failed the check (gone,
 * incomplete, or an evicting Redis): a verdict, not a transient state. */
int exposure_set_bad(const struct exposure *x);

/* exposure_is_up() with the reason when 0, e.g. "Redis 127.0.0.1:6379
 * unavailable" or "the exposed-card set is gone from Redis ..."; also 0
 * while Redis answers lookups with an error (an ACL that refuses EVAL or
 * HGET): "Redis ADDR answered the exposure lookup <error>; lookups retried every
 * 200 ms" (they are, until the first one is answered), or the breach
 * metadata with an error (an ACL that refuses HGETALL): "Redis ADDR
 * answered the breach metadata lookup <error>; retried every 100 ms". */
int exposure_health(const struct exposure *x, char *why, size_t whylen);

/* Frees; pending lookups get status -1. NULL is a no-op. Must not be
 * called from inside an exposure callback. */
void exposure_destroy(struct exposure *x);

#endif
