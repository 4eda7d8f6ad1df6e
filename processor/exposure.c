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
#include "exposure_int.h"
#include "xfilter.h"

#define MOD "exposure"
/* EVAL, the script, 2, marker, layout, bucket prefix: then the cards. */
#define LOOKUP_ARGS 6

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
    if (xp_cmd(x, 2, argv, lens, on_meta, (void *)(uintptr_t)idx) == 0) {
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
    free(r->cand);
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

static void issue(struct exposure *x, struct xreq *r);

static int parse_reply(struct xreq *r, const redisReply *reply)
{
    r->first = calloc(r->n, sizeof(*r->first));
    r->count = calloc(r->n, sizeof(*r->count));
    if (r->first == NULL || r->count == NULL) {
        return -1;
    }
    size_t cap = 0;
    for (size_t c = 0; c < r->n_cand; c++) {
        size_t i = r->cand[c]; /* ascending: entries stay in card order */
        const redisReply *el = reply->element[c + 1];
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


static void on_lookup(struct exposure *x, const redisReply *reply,
                      void *arg)
{
    struct xreq *r = arg;
    if (reply == NULL) {
        r->state = R_HELD; /* the connection is going away */
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != r->n_cand + 1) {
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
    const redisReply *mk = reply->element[0];
    if (r->filtered && xp_marker_ok(x, mk) &&
        (mk->len != strlen(r->fgen) || memcmp(mk->str, r->fgen, mk->len))) {
        /* The filter was built under another marker than the one this
         * lookup read: it may miss a card loaded since. Every card of the
         * lookup goes to Redis. */
        r->state = R_HELD;
        issue(x, r);
        return;
    }
    if (!xp_marker_ok(x, mk)) {
        /* Not the set the last check approved: hold the lookup (issued
         * again once a check passes) and check now. */
        r->state = R_HELD;
        if (x->guard == G_OK) {
            x->guard = G_UNCHECKED;
            xp_report_state(x);
        }
        xp_start_check(x);
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

/* Sends lookup r: only the cards the filter cannot rule out when the
 * filter is current (built under the marker the guard approved), else
 * every card; the reply's marker tells whether that held in Redis. */
static void issue(struct exposure *x, struct xreq *r)
{
    r->filtered = xp_filter_current(x);
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        const uint8_t *fp = r->keybuf + i * RMODEL_FP_BIN;
        if (r->filtered &&
            !xfilter_contains(x->filter, xfilter_key_bin(fp))) {
            continue;
        }
        r->cand[k] = (uint32_t)i;
        r->argv[LOOKUP_ARGS + k] = (const char *)fp;
        r->argvlen[LOOKUP_ARGS + k] = RMODEL_FP_BIN;
        k++;
    }
    r->n_cand = k;
    if (r->filtered) {
        snprintf(r->fgen, sizeof(r->fgen), "%s", x->filter_gen);
    }
    if (x->metrics != NULL) {
        metrics_exposure_lookup(x->metrics, r->n, k);
    }
    if (xp_cmd(x, (int)(k + LOOKUP_ARGS), r->argv, r->argvlen, on_lookup,
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

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct exposure *x = arg;
    if (!x->link_up) {
        return;
    }
    uint64_t now = clock_mono_ns();
    xp_guard_tick(x, now);
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
    x->want_filter = o->filter;
    x->issue_held = issue_held;
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
        x->pass_paced = 0;
        x->marker_asked = 0;
    } else {
        xp_start_check(x);
    }
    xp_report_state(x);
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
    r->cand = malloc((n + 1) * sizeof(*r->cand));
    if (r->argv == NULL || r->argvlen == NULL || r->keybuf == NULL ||
        r->cand == NULL) {
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
    xp_filter_free(x);
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
