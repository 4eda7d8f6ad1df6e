/* state.h - per-card rule state in Redis: window entries and suppression.
 *
 * Kept only for exposed cards, keyed by card fingerprint, shared by every
 * processor instance:
 *   <p>:<ns>:win:<kid>:<fp>  hash  txn_id ->
 *                            "<event ms>:<seq>:<newest ms>:<seen ms>:<entry>"
 *   <p>:<ns>:sup:<kid>:<fp>  hash  "<rule id>|<txn_id>" -> "<event ms>|<seq>"
 * <ns> is "live" for the service (replays use their own namespace).
 *
 * Same event, same answer: seq is the card's arrival order, given the
 * first time a txn id is observed; a window sees only entries that
 * arrived before the event (lower seq) and that were not yet below its
 * floor (the card's newest event time at its first arrival minus the
 * horizon: longest window + allowed lateness); suppression sees only
 * records of earlier arrivals. A re-processed event (crash, rebalance,
 * redelivery) therefore gets the view it got the first time, whatever
 * arrived after it. Entries below the card's current floor are deleted,
 * except those an entry first seen within the grace (wall clock) may
 * still need when it is evaluated again; keys expire after the longest of
 * horizon, suppression horizon, grace and 1 h without an event.
 *
 * Across instances, arrival order is the order of the Lua calls in Redis:
 * when one card's events are spread over partitions that different
 * instances own, the first arrival decides (keying the input by card
 * keeps it the input order).
 *
 * One card's events are serialized: state_observe() calls back for an
 * event only after the previous event of the same card was released with
 * state_release(), so its window sees every earlier event of the card and
 * its suppression writes. Commands ride the service's Redis connection
 * (redis_conn.h: in order, re-sent after a reconnect until answered); all
 * of them are idempotent, so a re-send after a reconnect is harmless.
 * An error reply (an ACL that refuses the command, Redis out of memory)
 * is logged and the command sent again every 200 ms until Redis accepts
 * it; the card's events wait meanwhile (never evaluated without their
 * window) and state_health() says why.
 */
#ifndef CARDWATCH_STATE_H
#define CARDWATCH_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "card.h"
#include "redis_conn.h"
#include "windows.h"

struct state;

/* Suppression record of one rule on the card. */
struct state_sup {
    const char *rule_id;  /* borrowed for the callback */
    int64_t last_ms;
    const char *txn_id;   /* borrowed for the callback */
};

/* What Redis holds for the card after this event was added. Borrowed for
 * the duration of the callback. */
struct state_view {
    const struct win_entry *entries; /* every kept entry, this one included */
    size_t n_entries;
    const struct state_sup *sups;
    size_t n_sups;
    int64_t newest_ms; /* newest event time on the card at this event's
                          first arrival */
    int64_t seq;       /* this event's arrival number on the card (for
                          state_suppressed_by) */
};

/* status 0 with view, or -1 (view NULL) when the module is destroyed
 * before Redis answered. The callee must call state_release(fp) once it
 * wrote its suppressions (status 0 only). */
typedef void (*state_cb)(void *arg, int status, const struct state_view *v);

/* Called when a write is acknowledged (err 0) or failed for good. */
typedef void (*state_ack_cb)(void *arg, int err);

/* Creates the module on the connection rc (borrowed; destroy rc before
 * the state). ns: "live" or a replay namespace ([a-z0-9_-]{1,40}).
 * grace_ms: how long (wall clock) after its first arrival an event may be
 * evaluated again and must find its window intact (the service: [rules]
 * reprocess_grace_ms; a replay, which never re-processes: 0). Returns
 * NULL on a bad argument or out of memory. */
struct state *state_new(struct rconn *rc, const char *prefix,
                        const char *key_id, const char *ns, int64_t grace_ms);

/* Frees; pending callbacks get status -1. NULL is a no-op. */
void state_destroy(struct state *s);

/* Adds entry e (idempotent by txn_id: the first arrival counts) to card
 * fp's window, prunes it (horizon_ms: longest window + allowed lateness;
 * sup_horizon_ms: longest suppression + allowed lateness, 0 when no rule
 * suppresses), and calls cb with the view of this event (see above) once
 * it is this event's turn. Returns 0, or -1 on allocation failure (cb not
 * called). */
int state_observe(struct state *s, const char *fp, const struct win_entry *e,
                  int64_t horizon_ms, int64_t sup_horizon_ms, state_cb cb,
                  void *arg);

/* Records that rule_id raised an alert at event_ms for txn_id on card fp
 * (for suppress); seq is the event's state_view seq. The card's next
 * event goes to Redis only after this write is acknowledged (an error
 * reply is retried as above). ack fires once: err 0 when written, 1 when
 * the module is destroyed first. Returns 0, or -1 on allocation failure
 * or a rule id with '|' (ack not called). */
int state_suppressed_by(struct state *s, const char *fp, const char *rule_id,
                        int64_t event_ms, const char *txn_id, int64_t seq,
                        state_ack_cb ack, void *arg);

/* Releases card fp: its next queued event may be observed. Call once per
 * successful observe callback, after its state_suppressed_by() calls. */
void state_release(struct state *s, const char *fp);

/* 1 when no command waits for a retry after an error reply; else 0 with
 * "Redis ADDR refused the window update: <Redis's answer>; N waiting,
 * retried every 200 ms" in why. */
int state_health(const struct state *s, char *why, size_t whylen);

#endif
