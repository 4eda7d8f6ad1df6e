/* cardstate.h - one card's window entries and suppression records, and
 * what an event makes of them (pure: no I/O, no clock).
 *
 * This is the semantics of the Redis script that state.c used to run for
 * every exposed event (LUA_OBSERVE), as a C function over the card's
 * records as Redis holds them:
 *   win hash  txn_id -> "<event ms>:<seq>:<newest ms>:<seen ms>:<record>"
 *             (older "<event ms>:<record>": seq 0, no newest, seen 0)
 *   sup hash  "<rule id>|<txn_id>" -> "<event ms>|<seq>"
 *             (older "<rule id>" -> "<event ms>|<txn_id>": seq 0)
 * cardstate_observe() gives the event's view and reports each change it
 * makes to the records through an emit callback, in the order the script
 * made them (HSET of a new entry, then HDELs), so that the caller can
 * write the same changes to Redis later and Redis ends up holding what the
 * script would have left. Values are written in the script's format, so
 * an instance running the script reads them and vice versa.
 *
 * The view (same event, same view): seq is the card's arrival order, 1 +
 * the highest seq held, given when the txn id is first added; the window
 * holds the entries of lower seq whose event time is at or above the
 * event's floor (its newest at first arrival minus the horizon), plus the
 * event's own entry when it is not below the floor; per rule, the latest
 * earlier suppression record (lower seq, another txn, at or before the
 * event time). Entries below the card's current floor are deleted unless
 * an entry first seen within the grace (now - seen < grace) has a lower
 * floor; suppression records below the suppression horizon likewise.
 * Malformed values are deleted (cardstate_load_* reports them).
 *
 * Ownership: a struct cardstate owns its records; the view borrows from
 * the cardstate and the scratch until either is changed.
 */
#ifndef CARDSTATE_H
#define CARDSTATE_H

#include <stddef.h>
#include <stdint.h>

#include "windows.h"

/* One field of the win hash. */
struct cs_entry {
    char *field;  /* owned; the txn id */
    int64_t t;    /* event ms */
    int64_t q;    /* seq; 0 before sequence numbers */
    int64_t nw;   /* newest at first arrival (when has_nw) */
    int64_t seen; /* wall ms of first arrival; 0 before */
    int has_nw;   /* 0: written before sequence numbers */
    int rec_ok;   /* rec decoded (else kept, never in a view) */
    struct win_entry rec;
};

/* One field of the sup hash, parsed. */
struct cs_sup {
    char *field; /* owned */
    char *value; /* owned */
    char *rule;  /* owned copy of the rule id */
    char *stxn;  /* owned copy of the txn id */
    int64_t ms;
    int64_t q;
};

struct cardstate {
    struct cs_entry *e;
    size_t n, cap;
    struct cs_sup *s;
    size_t ns, caps;
};

/* Per rule, the suppression record an event sees. */
struct cs_view_sup {
    const char *rule_id; /* borrowed from the cardstate */
    int64_t last_ms;
    const char *txn_id; /* borrowed from the cardstate */
};

struct cs_view {
    const struct win_entry *entries; /* this event's own included */
    size_t n_entries;
    size_t n_bad; /* entries of the window whose record did not decode */
    const struct cs_view_sup *sups;
    size_t n_sups;
    int64_t newest_ms;
    int64_t seq;
};

/* Buffers a view is built in; reused across calls. Zero it before the
 * first use; cardstate_scratch_free() frees it. */
struct cs_scratch {
    struct win_entry *e;
    size_t cap_e;
    struct cs_view_sup *s;
    size_t cap_s;
};

/* What a change is made to. */
enum cs_op {
    CS_WIN_SET, /* HSET win field value */
    CS_WIN_DEL, /* HDEL win field */
    CS_SUP_SET, /* HSET sup field value */
    CS_SUP_DEL, /* HDEL sup field */
};

/* Receives one change (strings borrowed for the call; val NULL for a
 * delete). Returns 0, or -1 when it could not keep it. */
typedef int (*cs_emit_fn)(void *arg, enum cs_op op, const char *field,
                          size_t flen, const char *val, size_t vlen);

/* One event as LUA_OBSERVE took it. */
struct cs_event {
    const char *txn_id;
    int64_t event_ms;
    const char *record; /* win_entry_encode() of the event */
    size_t record_len;
    int64_t horizon_ms;     /* longest window + allowed lateness */
    int64_t sup_horizon_ms; /* longest suppression + lateness; 0: none */
    int64_t now_ms;         /* the caller's wall clock */
    int64_t grace_ms;       /* re-processing grace (0 in a replay) */
};

/* Adds one field of the win hash as Redis returned it (HGETALL). Returns
 * 0, 1 when the value is malformed (not added: the caller deletes it, as
 * the script did), or -1 out of memory. */
int cardstate_load_win(struct cardstate *cs, const char *field, size_t flen,
                       const char *val, size_t vlen);

/* Same for the sup hash. */
int cardstate_load_sup(struct cardstate *cs, const char *field, size_t flen,
                       const char *val, size_t vlen);

/* Applies event ev to the card: adds its entry if its txn id is new,
 * prunes, and fills *v with the event's view. Changes are reported
 * through emit in order. Returns 0, or -1 (out of memory, or emit refused
 * the new entry) with the card unchanged. A refused delete is ignored:
 * the record is then only left over in Redis, below every floor that can
 * still be asked for, and deleted there by whoever reads it next. */
int cardstate_observe(struct cardstate *cs, const struct cs_event *ev,
                      struct cs_scratch *sc, struct cs_view *v, cs_emit_fn emit,
                      void *arg);

/* Records that rule_id raised an alert at event_ms for txn_id (seq: the
 * event's view seq): HSET sup "<rule>|<txn>" "<ms>|<seq>". Returns 0, or
 * -1 (out of memory, or rule_id holds '|'; nothing changed). */
int cardstate_suppress(struct cardstate *cs, const char *rule_id,
                       const char *txn_id, int64_t event_ms, int64_t seq,
                       cs_emit_fn emit, void *arg);

/* Frees the records; cs is then empty and reusable. */
void cardstate_clear(struct cardstate *cs);

/* Bytes held by the card's records (for the cache bound). */
size_t cardstate_bytes(const struct cardstate *cs);

void cardstate_scratch_free(struct cs_scratch *sc);

#endif
