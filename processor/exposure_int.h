/* exposure_int.h - private to exposure.c (lookups, breach metadata),
 * exposure_guard.c (the exposed-card set guard), exposure_filter.c (the
 * in-process filter) and exposure_cmd.c (commands on the connection):
 * the module's state and what they share. Calls go one way, in that
 * order; the guard reaches the lookups only through x->issue_held. */
#ifndef CARDWATCH_EXPOSURE_INT_H
#define CARDWATCH_EXPOSURE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "exposure.h"
#include "log.h"
#include "rmodel.h"

#define TICK_MS 100
#define REFRESH_MS 30000 /* full check of the set; breach metadata is
                          * fetched again when the marker changed (every
                          * load and unload sets a new one) */
#define MARKER_MS 1000 /* how often an idle instance looks at the marker */
#define RETRY_MS 200   /* after an error reply to a lookup */

struct event;
struct xfilter;

/* The exposed-card set guard. A lookup is answered only from a Redis whose
 * set passed the full check under the marker value the lookup read
 * (in the same script, atomically with the cards), so a
 * set that vanished (FLUSHALL, a restart without persistence, a failover
 * to an empty replica) or shrank never answers "clean". */
enum guard { G_UNCHECKED, G_OK, G_BAD };


enum bstate { B_UNKNOWN, B_FETCHING, B_KNOWN, B_MISSING };

struct bentry {
    struct breach b;
    enum bstate state;
};

/* A lookup: held until the guard allows it, issued on the connection,
 * then answered (parsed, perhaps waiting for breach metadata). */
enum rstate { R_HELD, R_ISSUED, R_ANSWERED };

struct xreq {
    struct xreq *prev, *next;
    size_t n; /* cards; the lookup also reads the marker */
    uint8_t *keybuf; /* their binary fingerprints */
    uint32_t *cand;  /* the cards sent (ascending), n_cand of them */
    size_t n_cand;
    int filtered;    /* the filter chose them (built under fgen) */
    char fgen[72];
    const char **argv;
    size_t *argvlen;
    exposure_cb cb;
    void *arg;
    enum rstate state;
    struct rmodel_entry *ents;
    size_t n_ents;
    uint32_t *first;
    uint16_t *count;
};

struct exposure;

/* One command on the connection. The connection answers every command
 * exactly once, possibly after this module is gone: then x is NULL and
 * the answer only frees the context. */
struct xctx {
    struct xctx *prev, *next;
    struct exposure *x;
    void (*fn)(struct exposure *x, const redisReply *r, void *arg);
    void *arg;
};

struct exposure {
    struct event_base *base;
    struct rconn *rc; /* borrowed */
    int link_up;
    struct event *tick;
    struct event *retry;
    char prefix[32];
    char kid[CARD_KEY_ID_MAX + 1];
    struct metrics *metrics;
    exposure_state_cb on_state;
    void *state_arg;
    const char *while_down;
    int reported_up;
    struct xreq *head, *tail; /* all pending lookups, in issue order */
    size_t n_pending;
    struct xctx *ctxs; /* commands the connection still owes us */
    struct bentry **breaches;
    size_t n_breaches, cap_breaches;
    /* exposed-card set guard */
    char xkey[RMODEL_KEY_MAX]; /* <p>:exposed, the marker */
    size_t xkey_len;
    char lkey[RMODEL_KEY_MAX]; /* <p>:layout:<kid> */
    size_t lkey_len;
    char bprefix[RMODEL_KEY_MAX]; /* <p>:cards:<kid>: */
    size_t bprefix_len;
    enum guard guard;
    int checking;          /* a check is in flight */
    int marker_asked;      /* an idle marker GET is in flight */
    char gen[72];          /* marker value of the last good check */
    /* The presence count after a check: the cards in every bucket,
     * summed PASS_BUCKETS at a time, against the layout's committed
     * count; the check's verdict waits for it. */
    int passing;           /* a count call is in flight */
    int pass_paced;        /* a periodic count waits for the next tick */
    uint64_t pass_next;    /* next bucket */
    long long pass_sum, pass_want;
    char pass_gen[72];     /* marker the count started under */
    char pass_seen[200];
    long long pass_cards;
    size_t pass_breaches;
    char seen[200];        /* what it held: "b1 7455 cards, b2 12 cards" */
    char why[768];         /* why the set is not trusted (G_BAD) */
    uint64_t last_check_ns, last_marker_ns;
    int warned_persistence, want_save_config;
    char policy[32]; /* maxmemory-policy from INFO */
    char refused[256]; /* Redis's error answer to the last lookup, "" when
                          the last one was answered */
    struct log_limit limit;
    char meta_refused[256]; /* the same for the breach metadata (HGETALL) */
    struct log_limit meta_limit;
    /* the in-process filter (exposure_filter.c) */
    int want_filter;           /* exposure_opts.filter */
    struct xfilter *filter;    /* NULL until the first build */
    char filter_gen[72];       /* the marker it was built under */
    struct xbuild *build;      /* a build under way, or NULL */
    /* issues every held lookup, in order (exposure.c; the guard calls it
     * once it approved a marker) */
    void (*issue_held)(struct exposure *x);
};

/* Sends one command; fn(x, reply, arg) runs when it is answered (reply
 * NULL: the connection was destroyed first). Returns 0, or -1 on
 * allocation failure (fn is then not called). (exposure_cmd.c) */
int xp_cmd(struct exposure *x, int argc, const char *const *argv,
           const size_t *lens,
           void (*fn)(struct exposure *, const redisReply *, void *),
           void *arg);

/* Tells the user when lookups can (1) or cannot (0) be answered: the link
 * is up and the exposed-card set passed its check. (exposure_cmd.c) */
void xp_report_state(struct exposure *x);

/* 1 when lookups may ask Redis only for the cards the filter cannot rule
 * out: a filter built under the marker the guard approved.
 * (exposure_filter.c) */
int xp_filter_current(const struct exposure *x);

/* After the guard approved a marker: builds the filter for it in the
 * background unless it is current or being built (the cards are read
 * from the buckets on the connection, the filter made on a thread, then
 * swapped in on the loop). (exposure_filter.c) */
void xp_filter_want(struct exposure *x);

/* Drops a build under way (its thread is waited for) and the filter;
 * call once the connection's contexts no longer reach x.
 * (exposure_filter.c) */
void xp_filter_free(struct exposure *x);

/* Runs the full check unless one is in flight. (exposure_guard.c) */
void xp_start_check(struct exposure *x);

/* The guard's share of the 100 ms tick: checks due, the idle marker
 * read. (exposure_guard.c) */
void xp_guard_tick(struct exposure *x, uint64_t now);

/* 1 when reply element el is the marker value the last check approved.
 * (exposure_guard.c) */
int xp_marker_ok(const struct exposure *x, const redisReply *el);

#endif
