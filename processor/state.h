/* state.h - per-card rule state: window entries and suppression, kept
 * in process for the cards this instance sees and written behind to
 * Redis, where it is shared with every processor instance:
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
 * horizon, suppression horizon, grace and 1 h without a write. The rules
 * are cardstate.h's (the Redis script this module ran per event until
 * issue 14, as a C function); the values are the script's, so an instance
 * of either version reads what the other wrote.
 *
 * Cache and write-behind: a card is read from Redis (HGETALL of both
 * hashes; the cards of one state_run() in one script call, one round
 * trip) the first time an event needs it, then answered in process. The
 * changes of the events evaluated go to Redis as one script call plus one
 * HSET per suppression record, sent together (one round trip for all of
 * them); one such write is with Redis at a time and the next carries what
 * was evaluated meanwhile, so Redis sees the changes in evaluation order.
 * A card whose event recorded a suppression runs its next event only once
 * that record is written. An event's acks (state_release,
 * state_suppressed_by) fire only when the write holding its changes is
 * answered, and the pipeline acknowledges the event's offset only then:
 * a crash loses nothing that was acknowledged, and a re-processed event
 * finds in Redis every change of the events acknowledged before it. Cards with nothing
 * pending are evicted when idle for their longest horizon (at least
 * 1 min, at most half the key TTL) or least recent first above 256 MiB.
 *
 * Ownership: the cache is right only while this instance is the only
 * writer of its cards, which holds when the input is keyed by card (a
 * card's events are on one partition, owned by one instance).
 * state_forget() (any partition revoked) drops every card once its writes
 * are answered, so what a new owner writes is read again. LIMIT: when one
 * card's events are spread over partitions that different instances own
 * (input not keyed by card), each instance sees only its own arrivals of
 * that card until its cache of the card is dropped; the Redis-per-event
 * script made the first arrival in Redis decide. Key the input by card.
 *
 * One card's events are serialized: the callback for an event runs only
 * after the previous event of the same card was released with
 * state_release(). Callbacks run from state_run() and from Redis replies,
 * never from state_observe(). Commands ride the service's Redis
 * connection (redis_conn.h: in order, re-sent after a reconnect until
 * answered); all of them are idempotent. An error reply (an ACL that
 * refuses the command, Redis out of memory) is logged and the command
 * sent again every 200 ms until Redis accepts it; events wait meanwhile
 * (never evaluated without their window, never acknowledged before their
 * write) and state_health() says why.
 */
#ifndef CARDWATCH_STATE_H
#define CARDWATCH_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "card.h"
#include "redis_conn.h"
#include "windows.h"

struct event_base;
struct state;

/* Suppression record of one rule on the card. */
struct state_sup {
    const char *rule_id; /* borrowed for the callback */
    int64_t last_ms;
    const char *txn_id; /* borrowed for the callback */
};

/* What the card holds after this event was added. Borrowed for the
 * duration of the callback. */
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
 * first or ran out of memory evaluating it (logged). The callee must
 * call state_release(fp) once it wrote its suppressions (status 0
 * only). */
typedef void (*state_cb)(void *arg, int status, const struct state_view *v);

/* Called when a write is acknowledged (err 0) or failed for good. */
typedef void (*state_ack_cb)(void *arg, int err);

/* Creates the module on the connection rc (borrowed; destroy rc before
 * the state) and the loop base (borrowed: a read that finds no memory is
 * tried again on a timer). ns: "live" or a replay namespace ([a-z0-9_-]{1,40}).
 * grace_ms: how long (wall clock) after its first arrival an event may be
 * evaluated again and must find its window intact (the service: [rules]
 * reprocess_grace_ms; a replay, which never re-processes: 0). Returns
 * NULL on a bad argument or out of memory. */
struct state *state_new(struct event_base *base, struct rconn *rc,
                        const char *prefix, const char *key_id,
                        const char *ns, int64_t grace_ms);

/* Frees; pending callbacks get status -1. NULL is a no-op. */
void state_destroy(struct state *s);

/* Queues entry e (idempotent by txn_id: the first arrival counts) for
 * card fp's window: at its turn (state_run, or when the card is read) it
 * is added, the window is pruned (horizon_ms: longest window + allowed
 * lateness; sup_horizon_ms: longest suppression + allowed lateness, 0
 * when no rule suppresses) and cb gets the view of this event (see
 * above). Never calls cb from inside. Returns 0, or -1 on allocation
 * failure (cb not called). */
int state_observe(struct state *s, const char *fp, const struct win_entry *e,
                  int64_t horizon_ms, int64_t sup_horizon_ms, state_cb cb,
                  void *arg);

/* Evaluates the queued events whose cards are cached (their callbacks run
 * from here), sends one read for the cards that are not, and the write
 * when none is with Redis. The pipeline calls it once per batch, after
 * its state_observe() calls. */
void state_run(struct state *s);

/* Records that rule_id raised an alert at event_ms for txn_id on card fp
 * (for suppress); seq is the event's state_view seq. Call only from the
 * card's observe callback. The card's next event runs once it is written
 * (an error reply is retried as above). ack fires once: err 0 when
 * written to Redis, 1 when the module is destroyed first. Returns 0, or
 * -1 on allocation failure or a rule id with '|' (ack not called). */
int state_suppressed_by(struct state *s, const char *fp, const char *rule_id,
                        int64_t event_ms, const char *txn_id, int64_t seq,
                        state_ack_cb ack, void *arg);

/* Releases card fp: its next queued event may be observed. Call once per
 * successful observe callback, after its state_suppressed_by() calls.
 * ack fires once, err 0 when every change of the card so far (this
 * event's entry and pruning included) is written to Redis (at once when
 * none is pending), 1 when the module is destroyed first. Returns 0, or
 * -1 on allocation failure (the card is released; ack not called). */
int state_release(struct state *s, const char *fp, state_ack_cb ack, void *arg);

/* A partition was revoked: every cached card is dropped once its writes
 * are answered (the cache does not know a card's partition), so that its
 * next event reads what the partition's new owner wrote. */
void state_forget(struct state *s);

/* 1 when no command waits for a retry after an error reply; else 0 with
 * "Redis ADDR refused the window update: <Redis's answer>; N waiting,
 * retried every 200 ms" in why. */
int state_health(const struct state *s, char *why, size_t whylen);

#endif
