/* exposure.c - see exposure.h. */
#include "exposure.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "alert.h"
#include "clock.h"
#include "log.h"
#include "redis_conn.h"
#include "rmodel.h"

#define MOD "exposure"
#define TICK_MS 100
#define REFRESH_MS 30000 /* full check of the set; breach metadata is
                          * fetched again when the marker changed (every
                          * load and unload sets a new one) */
#define MARKER_MS 1000 /* how often an idle instance looks at the marker */
#define RETRY_MS 200   /* after an error reply to a lookup */
/* EVAL, the script, 2, marker, layout, bucket prefix: then the cards. */
#define LOOKUP_ARGS 6

/* The exposed-card set guard. A lookup is answered only from a Redis whose
 * set passed the full check under the marker value the lookup's MGET saw
 * (the marker is read in the same MGET, atomically with the cards), so a
 * set that vanished (FLUSHALL, a restart without persistence, a failover
 * to an empty replica) or shrank never answers "clean". */
enum guard { G_UNCHECKED, G_OK, G_BAD };

/* The check: the marker, the layout (version, entries, committed), then
 * per breach id its status, recorded count, members and whether it still
 * has a set of the first layout, read in one atomic step. */
static const char CHECK_LUA[] =
    "local out = {redis.call('GET', KEYS[1]) or false,\n"
    "  redis.call('HMGET', KEYS[3], 'version', 'entries', 'committed')}\n"
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
    "  local h = ARGV[1] .. id\n"
    "  local v = redis.call('HMGET', h, 'status', 'cards', 'members')\n"
    "  out[#out + 1] = {id, v[1] or '', v[2] or '',\n"
    "    tonumber(v[3] or '0'), redis.call('EXISTS', h .. ':cards')}\n"
    "end\n"
    "return out\n";

/* The presence count reads this many buckets per call (a few ms of
 * Redis time each). */
#define PASS_BUCKETS 4096

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
};

static void start_check(struct exposure *x);
static void issue_held(struct exposure *x);

/* ---- commands ---- */

static void on_ctx_reply(void *arg, const redisReply *r)
{
    struct xctx *c = arg;
    struct exposure *x = c->x;
    if (x != NULL) {
        if (c->prev != NULL) {
            c->prev->next = c->next;
        } else {
            x->ctxs = c->next;
        }
        if (c->next != NULL) {
            c->next->prev = c->prev;
        }
        c->fn(x, r, c->arg); /* r NULL: the connection is going away */
    }
    free(c);
}

/* Sends one command; fn(x, reply, arg) runs when it is answered (reply
 * NULL: the connection was destroyed first). Returns 0, or -1 on
 * allocation failure (fn is then not called). */
static int xcmd(struct exposure *x, int argc, const char *const *argv,
                const size_t *lens,
                void (*fn)(struct exposure *, const redisReply *, void *),
                void *arg)
{
    struct xctx *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return -1;
    }
    c->x = x;
    c->fn = fn;
    c->arg = arg;
    if (rconn_command(x->rc, argc, argv, lens, on_ctx_reply, c) != 0) {
        free(c);
        return -1;
    }
    c->next = x->ctxs;
    if (x->ctxs != NULL) {
        x->ctxs->prev = c;
    }
    x->ctxs = c;
    return 0;
}

/* Tells the user when lookups can (1) or cannot (0) be answered: the link
 * is up and the exposed-card set passed its check. */
static void report_state(struct exposure *x)
{
    int up = x->link_up && x->guard == G_OK;
    if (up != x->reported_up) {
        x->reported_up = up;
        if (x->on_state != NULL) {
            x->on_state(x->state_arg, up);
        }
    }
}

/* ---- breach metadata cache ---- */

static struct bentry *find_breach(struct exposure *x, const char *id,
                                  size_t *idx)
{
    for (size_t i = 0; i < x->n_breaches; i++) {
        if (strcmp(x->breaches[i]->b.id, id) == 0) {
            if (idx != NULL) {
                *idx = i;
            }
            return x->breaches[i];
        }
    }
    return NULL;
}

static struct bentry *add_breach(struct exposure *x, const char *id)
{
    if (x->n_breaches == x->cap_breaches) {
        size_t ncap = x->cap_breaches ? x->cap_breaches * 2 : 8;
        struct bentry **nb = realloc(x->breaches, ncap * sizeof(*nb));
        if (nb == NULL) {
            return NULL;
        }
        x->breaches = nb;
        x->cap_breaches = ncap;
    }
    struct bentry *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return NULL;
    }
    snprintf(e->b.id, sizeof(e->b.id), "%s", id);
    e->state = B_UNKNOWN;
    x->breaches[x->n_breaches++] = e;
    return e;
}

static void complete_waiting(struct exposure *x);

static void on_meta(struct exposure *x, const redisReply *reply, void *arg)
{
    struct bentry *e = x->breaches[(size_t)(uintptr_t)arg];
    if (reply == NULL) {
        e->state = B_UNKNOWN;
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY) {
        /* an ACL refusal: the lookups of its cards wait (said once a
         * minute, and by readiness); fetched again on the next tick */
        const char *ans = reply->type == REDIS_REPLY_ERROR ? reply->str
                                                           : "unexpectedly";
        if (log_limit_ok(&x->meta_limit, ans, 60)) {
            log_warn(MOD, "breach metadata for '%s' answered %s; retrying "
                     "every %d ms (the events of its cards wait)", e->b.id,
                     ans, TICK_MS);
        }
        snprintf(x->meta_refused, sizeof(x->meta_refused), "%s", ans);
        e->state = B_UNKNOWN;
        return;
    }
    if (x->meta_refused[0] != '\0') {
        log_info(MOD, "Redis %s answers breach metadata again",
                 rconn_address(x->rc));
        x->meta_refused[0] = '\0';
        log_limit_reset(&x->meta_limit);
    }
    if (reply->elements == 0) {
        e->state = B_MISSING;
        complete_waiting(x);
        return;
    }
    struct breach nb = e->b;
    int have_start = 0, have_end = 0, staged = 0;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const char *k = reply->element[i]->str;
        const char *v = reply->element[i + 1]->str;
        if (k == NULL || v == NULL) {
            continue;
        }
        if (strcmp(k, "window_start_ms") == 0) {
            nb.window_start_ms = strtoll(v, NULL, 10);
            have_start = 1;
        } else if (strcmp(k, "window_end_ms") == 0) {
            nb.window_end_ms = strtoll(v, NULL, 10);
            have_end = 1;
        } else if (strcmp(k, "elements") == 0) {
            char err[64];
            uint32_t mask = 0;
            if (breach_elements_parse(v, &mask, err, sizeof(err)) == 0) {
                nb.elements = mask;
            }
        } else if (strcmp(k, "description") == 0) {
            snprintf(nb.description, sizeof(nb.description), "%s", v);
        } else if (strcmp(k, "loaded_at_ms") == 0) {
            nb.loaded_at_ms = strtoll(v, NULL, 10);
        } else if (strcmp(k, "status") == 0 &&
                   rmodel_breach_status(v) != RMODEL_B_COMMITTED) {
            staged = 1; /* staged or being removed: not visible */
        }
    }
    if (staged) {
        log_debug(MOD, "breach '%s' is not committed; its cards are "
                  "ignored until its load completes", e->b.id);
        e->state = B_MISSING;
    } else if (!have_start || !have_end) {
        log_warn(MOD, "breach '%s' has no window in Redis; its cards are "
                 "ignored until it is loaded again", e->b.id);
        e->state = B_MISSING;
    } else {
        e->b = nb;
        e->state = B_KNOWN;
    }
    complete_waiting(x);
}

static void fetch_breach(struct exposure *x, size_t idx)
{
    struct bentry *e = x->breaches[idx];
    if (e->state == B_FETCHING) {
        return;
    }
    char key[RMODEL_KEY_MAX];
    int len = rmodel_breach_key(key, x->prefix, e->b.id);
    if (len < 0) {
        e->state = B_MISSING;
        return;
    }
    const char *argv[] = {"HGETALL", key};
    size_t lens[] = {7, (size_t)len};
    if (xcmd(x, 2, argv, lens, on_meta, (void *)(uintptr_t)idx) == 0) {
        e->state = B_FETCHING;
    }
}

/* ---- lookups ---- */

static void unlink_req(struct exposure *x, struct xreq *r)
{
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        x->head = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    } else {
        x->tail = r->prev;
    }
    assert(x->n_pending > 0);
    x->n_pending--;
}

static void reset_answer(struct xreq *r)
{
    free(r->ents);
    free(r->first);
    free(r->count);
    r->ents = NULL;
    r->first = NULL;
    r->count = NULL;
    r->n_ents = 0;
}

static void free_req(struct xreq *r)
{
    reset_answer(r);
    free(r->keybuf);
    free(r->argv);
    free(r->argvlen);
    free(r);
}

/* 1 when every entry's breach is known or known to be missing; fetches
 * the unknown ones. */
static int resolved(struct exposure *x, struct xreq *r)
{
    int ok = 1;
    for (size_t i = 0; i < r->n_ents; i++) {
        size_t idx;
        struct bentry *e = find_breach(x, r->ents[i].breach_id, &idx);
        if (e == NULL) {
            e = add_breach(x, r->ents[i].breach_id);
            if (e == NULL) {
                return 0;
            }
            idx = x->n_breaches - 1;
        }
        if (e->state == B_UNKNOWN) {
            fetch_breach(x, idx);
        }
        if (e->state != B_KNOWN && e->state != B_MISSING) {
            ok = 0;
        }
    }
    return ok;
}

static void finish_req(struct exposure *x, struct xreq *r)
{
    struct exposure_hit *hits = NULL;
    uint32_t *first = r->first;
    uint16_t *count = r->count;
    size_t nh = 0;
    if (r->n_ents > 0) {
        hits = malloc(r->n_ents * sizeof(*hits));
    }
    if (r->n_ents > 0 && hits == NULL) {
        return; /* retried on the next tick */
    }
    /* Resolve breach ids; drop entries of breaches no longer loaded. */
    size_t e = 0;
    for (size_t i = 0; i < r->n; i++) {
        uint32_t f = (uint32_t)nh;
        for (uint16_t k = 0; k < count[i]; k++, e++) {
            struct bentry *be = find_breach(x, r->ents[e].breach_id, NULL);
            if (be == NULL || be->state != B_KNOWN) {
                continue;
            }
            hits[nh].breach = &be->b;
            memcpy(hits[nh].exptag, r->ents[e].exptag, CARD_EXPTAG_SIZE);
            hits[nh].retired = r->ents[e].retired;
            nh++;
        }
        count[i] = (uint16_t)(nh - f);
        first[i] = f;
    }
    struct exposure_result res = {r->n, first, count, hits};
    unlink_req(x, r);
    r->cb(r->arg, 0, &res);
    free(hits);
    free_req(r);
}

static void complete_waiting(struct exposure *x)
{
    struct xreq *r = x->head;
    while (r != NULL) {
        struct xreq *next = r->next;
        if (r->state == R_ANSWERED && resolved(x, r)) {
            finish_req(x, r);
        }
        r = next;
    }
}

static int parse_reply(struct xreq *r, const redisReply *reply)
{
    r->first = calloc(r->n, sizeof(*r->first));
    r->count = calloc(r->n, sizeof(*r->count));
    if (r->first == NULL || r->count == NULL) {
        return -1;
    }
    size_t cap = 0;
    for (size_t i = 0; i < r->n; i++) {
        const redisReply *el = reply->element[i + 1];
        r->first[i] = (uint32_t)r->n_ents;
        if (el->type != REDIS_REPLY_STRING) {
            continue;
        }
        struct rmodel_entry tmp[ALERT_MAX_BREACHES];
        int k = rmodel_record_parse(el->str, el->len, tmp, ALERT_MAX_BREACHES);
        if (k < 0) {
            char hex[CARD_FP_SIZE];
            rmodel_fp_hex(r->keybuf + i * RMODEL_FP_BIN, hex);
            log_warn(MOD, "malformed card record in Redis (fingerprint "
                     "%.12s...); treated as not exposed", hex);
            continue;
        }
        if (r->n_ents + (size_t)k > cap) {
            size_t ncap = cap ? cap * 2 : 64;
            while (ncap < r->n_ents + (size_t)k) {
                ncap *= 2;
            }
            struct rmodel_entry *ne = realloc(r->ents, ncap * sizeof(*ne));
            if (ne == NULL) {
                return -1;
            }
            r->ents = ne;
            cap = ncap;
        }
        memcpy(r->ents + r->n_ents, tmp, (size_t)k * sizeof(*tmp));
        r->n_ents += (size_t)k;
        r->count[i] = (uint16_t)k;
    }
    return 0;
}

static void retry_later(struct exposure *x)
{
    struct timeval tv = {0, RETRY_MS * 1000};
    evtimer_add(x->retry, &tv);
}

/* 1 when reply element el is the marker value the last check approved. */
static int marker_ok(const struct exposure *x, const redisReply *el)
{
    return x->guard == G_OK && el->type == REDIS_REPLY_STRING &&
           el->len == strlen(x->gen) && memcmp(el->str, x->gen, el->len) == 0;
}

static void on_lookup(struct exposure *x, const redisReply *reply,
                      void *arg)
{
    struct xreq *r = arg;
    if (reply == NULL) {
        r->state = R_HELD; /* the connection is going away */
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != r->n + 1) {
        /* an ACL refusal, a Redis busy with a script...: the lookups wait
         * (said once a minute, and by readiness) */
        const char *ans = reply->type == REDIS_REPLY_ERROR ? reply->str
                                                           : "unexpectedly";
        if (log_limit_ok(&x->limit, ans, 60)) {
            log_warn(MOD, "exposure lookup answered %s; retrying every %d ms "
                     "(the events wait)", ans, RETRY_MS);
        }
        snprintf(x->refused, sizeof(x->refused), "%s", ans);
        r->state = R_HELD;
        retry_later(x);
        return;
    }
    if (x->refused[0] != '\0') {
        log_info(MOD, "Redis %s answers exposure lookups again",
                 rconn_address(x->rc));
        x->refused[0] = '\0';
        log_limit_reset(&x->limit);
    }
    if (!marker_ok(x, reply->element[0])) {
        /* Not the set the last check approved: hold the lookup (issued
         * again once a check passes) and check now. */
        r->state = R_HELD;
        if (x->guard == G_OK) {
            x->guard = G_UNCHECKED;
            report_state(x);
        }
        start_check(x);
        return;
    }
    if (parse_reply(r, reply) != 0) {
        log_error(MOD, "out of memory parsing a lookup; retrying");
        reset_answer(r);
        r->state = R_HELD;
        retry_later(x);
        return;
    }
    r->state = R_ANSWERED;
    if (resolved(x, r)) {
        finish_req(x, r);
    }
}

static void issue(struct exposure *x, struct xreq *r)
{
    if (xcmd(x, (int)(r->n + LOOKUP_ARGS), r->argv, r->argvlen, on_lookup,
             r) == 0) {
        r->state = R_ISSUED;
    } else {
        retry_later(x);
    }
}

/* Issues every held lookup, in order, when the guard allows it. */
static void issue_held(struct exposure *x)
{
    if (x->guard != G_OK) {
        return;
    }
    for (struct xreq *r = x->head; r != NULL; r = r->next) {
        if (r->state == R_HELD) {
            issue(x, r);
        }
    }
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct exposure *x = arg;
    issue_held(x);
    complete_waiting(x);
}

/* ---- the exposed-card set guard ---- */

static void guard_bad(struct exposure *x, const char *why)
{
    if (x->guard != G_BAD || strcmp(x->why, why) != 0) {
        log_error(MOD, "%s; %s until it is back", why, x->while_down);
    }
    snprintf(x->why, sizeof(x->why), "%s", why);
    x->guard = G_BAD;
    if (x->metrics != NULL) {
        metrics_gauge(x->metrics, METRICS_G_EXPOSED_SET_OK, 0);
    }
    report_state(x);
}

/* INFO with every check: a Redis that may evict can drop exposed cards
 * one by one, which no count would notice in time; no persistence means
 * a restart empties it (the guard then pauses intake: said once). */
static void on_info(struct exposure *x, const redisReply *r, void *arg)
{
    (void)arg;
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        return; /* destroyed, or INFO not allowed: nothing to say */
    }
    const char *p = strstr(r->str, "\nmaxmemory_policy:");
    if (p != NULL) {
        p += strlen("\nmaxmemory_policy:");
        size_t len = strcspn(p, "\r\n");
        snprintf(x->policy, sizeof(x->policy), "%.*s", (int)len, p);
    }
    if (strstr(r->str, "\naof_enabled:0") != NULL &&
        !x->warned_persistence) {
        x->warned_persistence = 1;
        x->want_save_config = 1;
    }
}

/* CONFIG GET save, asked when AOF is off: empty = no persistence at all.
 * Refused by an ACL that does not grant CONFIG GET: then nothing is said. */
static void on_save_config(struct exposure *x, const redisReply *r,
                           void *arg)
{
    (void)arg;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[1]->len == 0) {
        log_warn(MOD, "Redis %s has no persistence (appendonly no, save "
                 "\"\"): a restart empties it, and cardwatch then pauses "
                 "until the breaches are loaded again", rconn_address(x->rc));
    }
}

/* The check passed: the set under marker gen is the one lookups answer
 * from. */
static void approve(struct exposure *x)
{
    const char *addr = rconn_address(x->rc);
    int changed = strcmp(x->pass_gen, x->gen) != 0;
    if (x->guard == G_BAD || changed) {
        log_info(MOD, "exposed-card set in Redis %s checked: %zu breaches, "
                 "%lld cards (generation %s)", addr, x->pass_breaches,
                 x->pass_cards, x->pass_gen);
    }
    snprintf(x->seen, sizeof(x->seen), "%s", x->pass_seen);
    if (changed) {
        snprintf(x->gen, sizeof(x->gen), "%s", x->pass_gen);
        /* Loads or unloads happened: breach metadata is fetched again. */
        for (size_t i = 0; i < x->n_breaches; i++) {
            if (x->breaches[i]->state != B_FETCHING) {
                x->breaches[i]->state = B_UNKNOWN;
            }
        }
    }
    x->guard = G_OK;
    x->why[0] = '\0';
    if (x->metrics != NULL) {
        metrics_gauge(x->metrics, METRICS_G_EXPOSED_SET_OK, 1);
        metrics_gauge(x->metrics, METRICS_G_EXPOSED_CARDS,
                      (double)x->pass_cards);
    }
    report_state(x);
    issue_held(x);
}

static void pass_step(struct exposure *x);

/* One count call answered: {buckets, cards in the range, marker}. */
static void on_pass(struct exposure *x, const redisReply *r, void *arg)
{
    (void)arg;
    x->passing = 0;
    if (r == NULL) {
        return; /* the connection is going away */
    }
    if (r->type == REDIS_REPLY_ERROR) {
        char why[sizeof(x->why)];
        snprintf(why, sizeof(why), "cannot count the exposed cards in Redis "
                 "%s: %s", rconn_address(x->rc), r->str);
        guard_bad(x, why);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_INTEGER) {
        guard_bad(x, "the exposed-card count got an unexpected reply");
        return;
    }
    const redisReply *mk = r->element[2];
    if (mk->type != REDIS_REPLY_STRING || strlen(x->pass_gen) != mk->len ||
        memcmp(mk->str, x->pass_gen, mk->len) != 0) {
        start_check(x); /* a load or unload committed meanwhile */
        return;
    }
    uint64_t buckets = strtoull(r->element[0]->str, NULL, 10);
    x->pass_sum += r->element[1]->integer;
    x->pass_next += PASS_BUCKETS;
    if (x->pass_next < buckets) {
        pass_step(x);
        return;
    }
    if (x->pass_sum < x->pass_want) {
        char why[sizeof(x->why)];
        snprintf(why, sizeof(why), "the exposed-card set in Redis %s holds "
                 "%lld of the %lld cards committed (cards were deleted, or "
                 "Redis lost data); load the breaches again", 
                 rconn_address(x->rc), x->pass_sum, x->pass_want);
        guard_bad(x, why);
        return;
    }
    approve(x);
}

static void pass_step(struct exposure *x)
{
    char first[24], count[24];
    snprintf(first, sizeof(first), "%" PRIu64, x->pass_next);
    snprintf(count, sizeof(count), "%d", PASS_BUCKETS);
    const char *argv[] = {"EVAL", RMODEL_LUA_SCAN, "2", x->lkey, x->xkey,
                          x->bprefix, first, count, "count"};
    size_t lens[] = {4, strlen(RMODEL_LUA_SCAN), 1, x->lkey_len,
                     x->xkey_len, x->bprefix_len, strlen(first),
                     strlen(count), 5};
    if (xcmd(x, 9, argv, lens, on_pass, NULL) == 0) {
        x->passing = 1;
    }
}

/* Reads the breaches of a check reply r (elements 2..): their statuses
 * against recorded counts, into x->pass_seen / pass_cards /
 * pass_breaches. Returns 0, or -1 after guard_bad. */
static int check_breaches(struct exposure *x, const redisReply *r)
{
    char why[sizeof(x->why)];
    x->pass_cards = 0;
    x->pass_breaches = 0;
    x->pass_seen[0] = '\0';
    for (size_t i = 2; i < r->elements; i++) {
        const redisReply *b = r->element[i];
        if (b->type != REDIS_REPLY_ARRAY || b->elements != 5 ||
            b->element[0]->type != REDIS_REPLY_STRING ||
            b->element[3]->type != REDIS_REPLY_INTEGER) {
            continue;
        }
        if (b->element[4]->integer == 1) {
            snprintf(why, sizeof(why), "Redis %s holds breach %s in the "
                     "first data layout (cardwatch before 2026-12), which "
                     "this version does not read; run `cardwatch migrate`",
                     rconn_address(x->rc), b->element[0]->str);
            guard_bad(x, why);
            return -1;
        }
        const char *st = b->element[1]->str;
        if (rmodel_breach_status(st && st[0] ? st : NULL) !=
            RMODEL_B_COMMITTED) {
            continue; /* staged: not part of the set yet */
        }
        const char *rec = b->element[2]->str;
        if (!rmodel_breach_intact(b->element[0]->str,
                                  rec && rec[0] ? rec : NULL,
                                  b->element[3]->integer, why, sizeof(why))) {
            size_t len = strlen(why);
            snprintf(why + len, sizeof(why) - len, " (recorded by `cardwatch "
                     "load`; the set is incomplete): load it again");
            guard_bad(x, why);
            return -1;
        }
        x->pass_cards += b->element[3]->integer;
        x->pass_breaches++;
        size_t sl = strlen(x->pass_seen);
        if (sl + 1 < sizeof(x->pass_seen)) {
            snprintf(x->pass_seen + sl, sizeof(x->pass_seen) - sl,
                     "%s%s %lld cards", sl ? ", " : "", b->element[0]->str,
                     b->element[3]->integer);
        }
    }
    return 0;
}

/* The layout element of a check reply: {version, entries, committed}.
 * Returns 0 with the committed count in x->pass_want, or -1 after
 * guard_bad. */
static int check_layout(struct exposure *x, const redisReply *lay)
{
    char why[sizeof(x->why)];
    if (lay->type != REDIS_REPLY_ARRAY || lay->elements != 3) {
        guard_bad(x, "the exposed-card set check got an unexpected reply");
        return -1;
    }
    const redisReply *ver = lay->element[0];
    x->pass_want = lay->element[2]->type == REDIS_REPLY_STRING
                       ? strtoll(lay->element[2]->str, NULL, 10)
                       : 0;
    if (ver->type == REDIS_REPLY_STRING &&
        strcmp(ver->str, RMODEL_LAYOUT_VERSION) != 0) {
        snprintf(why, sizeof(why), "Redis %s holds the exposed cards in data "
                 "layout %s, which this version (layout %s) does not read: "
                 "run the cardwatch that wrote it", rconn_address(x->rc),
                 ver->str, RMODEL_LAYOUT_VERSION);
        guard_bad(x, why);
        return -1;
    }
    return 0;
}

static void on_check(struct exposure *x, const redisReply *r, void *arg)
{
    (void)arg;
    x->checking = 0;
    if (r == NULL) {
        return; /* the connection is going away */
    }
    x->last_check_ns = clock_mono_ns();
    const char *addr = rconn_address(x->rc);
    char why[sizeof(x->why)];
    if (x->want_save_config) {
        x->want_save_config = 0;
        const char *argv[] = {"CONFIG", "GET", "save"};
        size_t lens[] = {6, 3, 4};
        (void)xcmd(x, 3, argv, lens, on_save_config, NULL);
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "cannot check the exposed-card set in "
                 "Redis %s: %s", addr, r->str);
        guard_bad(x, why);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
        guard_bad(x, "the exposed-card set check got an unexpected reply");
        return;
    }
    if (x->policy[0] != '\0' && strcmp(x->policy, "noeviction") != 0) {
        snprintf(why, sizeof(why), "Redis %s has maxmemory-policy %s: it "
                 "may evict exposed cards; set maxmemory-policy noeviction",
                 addr, x->policy);
        guard_bad(x, why);
        return;
    }
    const redisReply *mk = r->element[0];
    if (mk->type != REDIS_REPLY_STRING) {
        snprintf(why, sizeof(why), "the exposed-card set is gone from Redis "
                 "%s (no marker %s%s%s%s%s%s): Redis was emptied (restart "
                 "without persistence, FLUSHALL, failover to an empty "
                 "replica) or nothing was ever loaded; run `cardwatch load` "
                 "for every breach (or `cardwatch breaches --confirm`)",
                 addr, x->xkey, x->gen[0] ? ", last seen " : "", x->gen,
                 x->gen[0] ? " holding " : "", x->gen[0] ? x->seen : "",
                 x->gen[0] && x->seen[0] == '\0' ? "no breach" : "");
        guard_bad(x, why);
        return;
    }
    if (check_layout(x, r->element[1]) != 0 || check_breaches(x, r) != 0) {
        return;
    }
    snprintf(x->pass_gen, sizeof(x->pass_gen), "%.*s", (int)mk->len,
             mk->str);
    x->pass_next = 0;
    x->pass_sum = 0;
    if (!x->passing) {
        pass_step(x);
    }
}

/* Runs the full check unless one is in flight: INFO (eviction policy,
 * persistence), then one script (marker, every breach's status, recorded
 * count and present count); the answers come in that order. */
static void start_check(struct exposure *x)
{
    if (x->checking || x->passing || !x->link_up) {
        return;
    }
    char bkey[RMODEL_KEY_MAX], lkey[RMODEL_KEY_MAX];
    int blen = rmodel_breach_key(bkey, x->prefix, "");
    int llen = rmodel_breaches_key(lkey, x->prefix);
    if (blen < 0 || llen < 0) {
        return;
    }
    const char *info[] = {"INFO"};
    size_t info_len[] = {4};
    (void)xcmd(x, 1, info, info_len, on_info, NULL);
    const char *argv[] = {"EVAL", CHECK_LUA, "3", x->xkey, lkey, x->lkey,
                          bkey};
    size_t lens[] = {4, sizeof(CHECK_LUA) - 1, 1, x->xkey_len,
                     (size_t)llen, x->lkey_len, (size_t)blen};
    if (xcmd(x, 7, argv, lens, on_check, NULL) == 0) {
        x->checking = 1;
    }
}

/* Between full checks an instance reads the marker alone (a lookup reads
 * it in every MGET; this is for an idle instance and the feed). */
static void on_marker(struct exposure *x, const redisReply *r, void *arg)
{
    (void)arg;
    x->marker_asked = 0;
    if (r == NULL || x->guard != G_OK) {
        return;
    }
    if (!marker_ok(x, r)) {
        x->guard = G_UNCHECKED;
        report_state(x);
        start_check(x);
    }
}

static void guard_tick(struct exposure *x, uint64_t now)
{
    if (x->checking || x->passing || !x->link_up) {
        return;
    }
    uint64_t since = now - x->last_check_ns;
    if (since > (uint64_t)REFRESH_MS * 1000000ull ||
        (x->guard != G_OK && since > (uint64_t)MARKER_MS * 1000000ull)) {
        start_check(x);
        return;
    }
    if (x->guard == G_OK && !x->marker_asked &&
        now - x->last_marker_ns > (uint64_t)MARKER_MS * 1000000ull) {
        const char *argv[] = {"GET", x->xkey};
        size_t lens[] = {3, x->xkey_len};
        x->last_marker_ns = now;
        if (xcmd(x, 2, argv, lens, on_marker, NULL) == 0) {
            x->marker_asked = 1;
        }
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct exposure *x = arg;
    if (!x->link_up) {
        return;
    }
    uint64_t now = clock_mono_ns();
    guard_tick(x, now);
    complete_waiting(x); /* metadata that failed to fetch: again */
}

/* ---- public ---- */

struct exposure *exposure_new(struct event_base *base, struct rconn *rc,
                              const struct exposure_opts *o, char *errbuf,
                              size_t errlen)
{
    struct exposure *x = NULL;
    if (rc == NULL || o->prefix == NULL ||
        strlen(o->prefix) >= sizeof(x->prefix) || o->key_id == NULL ||
        strlen(o->key_id) > CARD_KEY_ID_MAX) {
        snprintf(errbuf, errlen, "exposure: bad options");
        return NULL;
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        goto oom;
    }
    x->base = base;
    x->rc = rc;
    snprintf(x->prefix, sizeof(x->prefix), "%s", o->prefix);
    snprintf(x->kid, sizeof(x->kid), "%s", o->key_id);
    int xl = rmodel_exposed_key(x->xkey, x->prefix);
    x->xkey_len = xl > 0 ? (size_t)xl : 0;
    int ll = rmodel_layout_key(x->lkey, x->prefix, x->kid);
    x->lkey_len = ll > 0 ? (size_t)ll : 0;
    int bl = rmodel_bucket_prefix(x->bprefix, x->prefix, x->kid);
    x->bprefix_len = bl > 0 ? (size_t)bl : 0;
    x->while_down = o->while_down ? o->while_down : "lookups wait";
    x->metrics = o->metrics;
    x->on_state = o->on_state;
    x->state_arg = o->state_arg;
    x->tick = event_new(base, -1, EV_PERSIST, on_tick, x);
    x->retry = evtimer_new(base, on_retry, x);
    if (x->tick == NULL || x->retry == NULL) {
        goto oom;
    }
    struct timeval tv = {0, TICK_MS * 1000};
    event_add(x->tick, &tv);
    if (x->metrics != NULL) {
        metrics_gauge(x->metrics, METRICS_G_EXPOSED_SET_OK, 0);
    }
    exposure_link_state(x, rconn_is_up(rc));
    return x;
oom:
    snprintf(errbuf, errlen, "exposure: out of memory");
    exposure_destroy(x);
    return NULL;
}

void exposure_link_state(struct exposure *x, int up)
{
    x->link_up = up;
    if (!up) {
        /* Whatever Redis answers after the reconnect (a restarted, flushed
         * or promoted server) is checked again before any lookup counts. */
        x->guard = G_UNCHECKED;
        x->checking = 0;
        x->passing = 0;
        x->marker_asked = 0;
    } else {
        start_check(x);
    }
    report_state(x);
}

static void enqueue(struct exposure *x, struct xreq *r)
{
    r->prev = x->tail;
    if (x->tail != NULL) {
        x->tail->next = r;
    } else {
        x->head = r;
    }
    x->tail = r;
    x->n_pending++;
    r->state = R_HELD;
    if (x->guard == G_OK) {
        issue(x, r);
    }
}

int exposure_lookup(struct exposure *x, const char *const *fps, size_t n,
                    exposure_cb cb, void *arg)
{
    struct xreq *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return -1;
    }
    r->n = n;
    r->cb = cb;
    r->arg = arg;
    r->argv = malloc((n + LOOKUP_ARGS) * sizeof(*r->argv));
    r->argvlen = malloc((n + LOOKUP_ARGS) * sizeof(*r->argvlen));
    r->keybuf = malloc(n * RMODEL_FP_BIN + 1);
    if (r->argv == NULL || r->argvlen == NULL || r->keybuf == NULL) {
        free_req(r);
        return -1;
    }
    r->argv[0] = "EVAL";
    r->argvlen[0] = 4;
    r->argv[1] = RMODEL_LUA_LOOKUP;
    r->argvlen[1] = strlen(RMODEL_LUA_LOOKUP);
    r->argv[2] = "2";
    r->argvlen[2] = 1;
    r->argv[3] = x->xkey;
    r->argvlen[3] = x->xkey_len;
    r->argv[4] = x->lkey;
    r->argvlen[4] = x->lkey_len;
    r->argv[5] = x->bprefix;
    r->argvlen[5] = x->bprefix_len;
    uint8_t *p = r->keybuf;
    for (size_t i = 0; i < n; i++, p += RMODEL_FP_BIN) {
        if (rmodel_fp_bin(fps[i], p) != 0) {
            free_req(r);
            return -1;
        }
        r->argv[LOOKUP_ARGS + i] = (const char *)p;
        r->argvlen[LOOKUP_ARGS + i] = RMODEL_FP_BIN;
    }
    enqueue(x, r);
    return 0;
}

int exposure_is_up(const struct exposure *x)
{
    return x->link_up && x->guard == G_OK;
}

int exposure_set_bad(const struct exposure *x)
{
    return x->link_up && x->guard == G_BAD;
}

int exposure_health(const struct exposure *x, char *why, size_t whylen)
{
    if (!x->link_up) {
        const char *msg = NULL;
        (void)rconn_error(x->rc, &msg);
        snprintf(why, whylen, "Redis %s unavailable%s%s",
                 rconn_address(x->rc), msg && msg[0] ? ": " : "",
                 msg ? msg : "");
        return 0;
    }
    if (x->guard == G_BAD) {
        snprintf(why, whylen, "%s", x->why);
        return 0;
    }
    if (x->guard != G_OK) {
        snprintf(why, whylen, "checking the exposed-card set in Redis %s",
                 rconn_address(x->rc));
        return 0;
    }
    if (x->refused[0] != '\0') {
        snprintf(why, whylen, "Redis %s answered the exposure lookup %s; "
                 "lookups retried every %d ms", rconn_address(x->rc),
                 x->refused, RETRY_MS);
        return 0;
    }
    if (x->meta_refused[0] != '\0') {
        snprintf(why, whylen, "Redis %s answered the breach metadata lookup "
                 "%s; retried every %d ms", rconn_address(x->rc),
                 x->meta_refused, TICK_MS);
        return 0;
    }
    return 1;
}

void exposure_destroy(struct exposure *x)
{
    if (x == NULL) {
        return;
    }
    /* Commands the connection still owes us are answered into nothing. */
    for (struct xctx *c = x->ctxs; c != NULL; c = c->next) {
        c->x = NULL;
    }
    while (x->head != NULL) {
        struct xreq *r = x->head;
        unlink_req(x, r);
        r->cb(r->arg, -1, NULL);
        free_req(r);
    }
    if (x->tick != NULL) {
        event_free(x->tick);
    }
    if (x->retry != NULL) {
        event_free(x->retry);
    }
    for (size_t i = 0; i < x->n_breaches; i++) {
        free(x->breaches[i]);
    }
    free(x->breaches);
    free(x);
}
