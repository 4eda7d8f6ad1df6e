/* exposure.c - see exposure.h. */
#include "exposure.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "alert.h"
#include "clock.h"
#include "log.h"
#include "rmodel.h"

#define MOD "exposure"
#define TICK_MS 100
#define REFRESH_MS 30000
#define MARKER_MS 1000 /* how often an idle instance looks at the marker */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_UP };

/* The exposed-card set guard. A lookup is answered only from a Redis whose
 * set passed the full check under the marker value the lookup's MGET saw
 * (the marker is read in the same MGET, atomically with the cards), so a
 * set that vanished (FLUSHALL, a restart without persistence, a failover
 * to an empty replica) or shrank never answers "clean". */
enum guard { G_UNCHECKED, G_OK, G_BAD };

/* One answer of the check script: per breach id, status, recorded count,
 * cards present. */
static const char CHECK_LUA[] =
    "local out = {redis.call('GET', KEYS[1]) or false}\n"
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
    "  local h = ARGV[1] .. id\n"
    "  local v = redis.call('HMGET', h, 'status', 'cards')\n"
    "  out[#out + 1] = {id, v[1] or '', v[2] or '',\n"
    "    redis.call('SCARD', h .. ':cards')}\n"
    "end\n"
    "return out\n";
enum bstate { B_UNKNOWN, B_FETCHING, B_KNOWN, B_MISSING };

struct bentry {
    struct breach b;
    enum bstate state;
};

struct xreq {
    struct xreq *prev, *next;
    struct exposure *x;
    size_t n;    /* cards of a lookup (its MGET also reads the marker) */
    int argc;    /* words of the command */
    char *keybuf;
    const char **argv;
    size_t *argvlen;
    exposure_cb cb;
    exposure_reply_cb raw_cb; /* set for exposure_command() requests */
    void *arg;
    int sent;       /* command written to the current connection */
    int answered;   /* entries parsed; maybe waiting for metadata */
    uint64_t sent_ns;
    struct rmodel_entry *ents;
    size_t n_ents;
    uint32_t *first;
    uint16_t *count;
};

struct mfetch {
    struct exposure *x;
    size_t bidx;
};

struct exposure {
    struct event_base *base;
    redisAsyncContext *ac;
    enum conn_state state;
    uint64_t state_since_ns;
    int backoff_ms;
    struct event *tick;
    struct event *reconnect;
    struct event *retry;
    char *host;
    int port;
    char prefix[32];
    char kid[CARD_KEY_ID_MAX + 1];
    int timeout_ms;
    struct metrics *metrics;
    exposure_state_cb on_state;
    void *state_arg;
    const char *while_down;
    int reported_up;
    struct xreq *head, *tail; /* all pending, in issue order */
    size_t n_pending;
    struct bentry **breaches;
    size_t n_breaches, cap_breaches;
    uint64_t last_refresh_ns;
    int destroying;
    /* exposed-card set guard */
    char xkey[RMODEL_KEY_MAX]; /* <p>:exposed, the marker */
    size_t xkey_len;
    enum guard guard;
    int checking;          /* a check is in flight */
    int marker_asked;      /* an idle marker GET is in flight */
    char gen[72];          /* marker value of the last good check */
    char why[768];         /* why the set is not trusted (G_BAD) */
    uint64_t last_check_ns, last_marker_ns;
    int warned_persistence, want_save_config;
    char policy[32]; /* maxmemory-policy from INFO */
};

static void connect_now(struct exposure *x);
static void send_pending(struct exposure *x);
static void start_check(struct exposure *x);
static void on_info(void *arg, const redisReply *r);

/* Tells the user when lookups can (1) or cannot (0) be answered: the link
 * is up and the exposed-card set passed its check. */
static void report_state(struct exposure *x)
{
    int up = x->state == CONN_UP && x->guard == G_OK;
    if (up != x->reported_up) {
        x->reported_up = up;
        if (x->on_state != NULL && !x->destroying) {
            x->on_state(x->state_arg, up);
        }
    }
}

static void set_state(struct exposure *x, enum conn_state s)
{
    x->state = s;
    x->state_since_ns = clock_mono_ns();
    if (s != CONN_UP) {
        x->guard = G_UNCHECKED; /* checked again after the reconnect */
        x->checking = 0;
        x->marker_asked = 0;
    }
    if (x->metrics != NULL) {
        metrics_gauge(x->metrics, METRICS_G_REDIS_UP, s == CONN_UP);
    }
    report_state(x);
}

static void schedule_reconnect(struct exposure *x)
{
    struct timeval tv = {x->backoff_ms / 1000, (x->backoff_ms % 1000) * 1000};
    evtimer_add(x->reconnect, &tv);
    x->backoff_ms *= 2;
    if (x->backoff_ms > BACKOFF_MAX_MS) {
        x->backoff_ms = BACKOFF_MAX_MS;
    }
}

/* The connection is gone (already freed or being freed by hiredis): mark
 * every request unsent and every in-flight metadata fetch unknown. */
static void conn_lost(struct exposure *x, const char *why)
{
    if (x->state == CONN_UP) {
        log_warn(MOD, "Redis %s:%d lost (%s); %s, commands will be "
                 "re-sent after the reconnect", x->host, x->port, why,
                 x->while_down);
    } else {
        log_debug(MOD, "Redis %s:%d not reachable (%s)", x->host, x->port,
                  why);
    }
    x->ac = NULL;
    for (struct xreq *r = x->head; r != NULL; r = r->next) {
        r->sent = 0;
    }
    for (size_t i = 0; i < x->n_breaches; i++) {
        if (x->breaches[i]->state == B_FETCHING) {
            x->breaches[i]->state = B_UNKNOWN;
        }
    }
    set_state(x, CONN_DOWN);
    if (!x->destroying) {
        schedule_reconnect(x);
    }
}

static void on_ping(redisAsyncContext *ac, void *r, void *privdata)
{
    struct exposure *x = privdata;
    redisReply *reply = r;
    if (reply == NULL || ac != x->ac) {
        return; /* the connection went away; conn_lost handles it */
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* e.g. LOADING after a restart: not ready yet, ask again. */
        log_info(MOD, "Redis %s:%d answered '%s'; waiting", x->host, x->port,
                 reply->str);
        x->state_since_ns = clock_mono_ns();
        redisAsyncCommand(ac, on_ping, x, "PING");
        return;
    }
    log_info(MOD, "Redis %s:%d connected", x->host, x->port);
    x->backoff_ms = BACKOFF_MIN_MS;
    if (x->metrics != NULL) {
        metrics_redis_reconnect(x->metrics);
    }
    set_state(x, CONN_UP);
    start_check(x);
    send_pending(x);
}

/* A TCP connection is not an answering Redis (a stopped server's kernel
 * still accepts): the link counts as up only once PING is answered. */
static void on_connect(const redisAsyncContext *ac, int status)
{
    struct exposure *x = ac->data;
    if (x == NULL || ac != x->ac) {
        return;
    }
    if (status != REDIS_OK) {
        conn_lost(x, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    redisAsyncCommand((redisAsyncContext *)ac, on_ping, x, "PING");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct exposure *x = ac->data;
    if (x == NULL || ac != x->ac) {
        return; /* we freed it ourselves and already handled it */
    }
    conn_lost(x, status == REDIS_OK ? "closed" : ac->errstr);
}

static void connect_now(struct exposure *x)
{
    if (x->ac != NULL || x->destroying) {
        return;
    }
    redisAsyncContext *ac = redisAsyncConnect(x->host, x->port);
    if (ac == NULL) {
        conn_lost(x, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        conn_lost(x, why);
        return;
    }
    ac->data = x;
    x->ac = ac;
    redisLibeventAttach(ac, x->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    set_state(x, CONN_CONNECTING);
}

/* Drops the current connection from outside hiredis callbacks. */
static void drop_connection(struct exposure *x, const char *why)
{
    redisAsyncContext *ac = x->ac;
    x->ac = NULL; /* callbacks from the free see a stale context */
    if (ac != NULL) {
        redisAsyncFree(ac);
    }
    conn_lost(x, why);
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
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

static void on_meta(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct mfetch *mf = privdata;
    struct exposure *x = mf->x;
    redisReply *reply = r;
    struct bentry *e = x->breaches[mf->bidx];
    free(mf);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        if (reply != NULL) {
            log_warn(MOD, "breach metadata for '%s': unexpected reply",
                     e->b.id);
        }
        e->state = B_UNKNOWN; /* fetched again on reconnect / retry */
        return;
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
    if (x->state != CONN_UP || e->state == B_FETCHING) {
        return;
    }
    char key[RMODEL_KEY_MAX];
    if (rmodel_breach_key(key, x->prefix, e->b.id) < 0) {
        e->state = B_MISSING;
        return;
    }
    struct mfetch *mf = malloc(sizeof(*mf));
    if (mf == NULL) {
        return;
    }
    mf->x = x;
    mf->bidx = idx;
    if (redisAsyncCommand(x->ac, on_meta, mf, "HGETALL %s", key) !=
        REDIS_OK) {
        free(mf);
        return;
    }
    e->state = B_FETCHING;
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
    x->n_pending--;
}

static void free_req(struct xreq *r)
{
    free(r->keybuf);
    free(r->argv);
    free(r->argvlen);
    free(r->ents);
    free(r->first);
    free(r->count);
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
        if (r->answered && resolved(x, r)) {
            finish_req(x, r);
        }
        r = next;
    }
}

static int parse_reply(struct xreq *r, redisReply *reply)
{
    r->first = calloc(r->n, sizeof(*r->first));
    r->count = calloc(r->n, sizeof(*r->count));
    if (r->first == NULL || r->count == NULL) {
        return -1;
    }
    size_t cap = 0;
    for (size_t i = 0; i < r->n; i++) {
        redisReply *el = reply->element[i];
        r->first[i] = (uint32_t)r->n_ents;
        if (el->type != REDIS_REPLY_STRING) {
            continue;
        }
        struct rmodel_entry tmp[ALERT_MAX_BREACHES];
        int k = rmodel_record_parse(el->str, el->len, tmp, ALERT_MAX_BREACHES);
        if (k < 0) {
            log_warn(MOD, "malformed card record in Redis (fingerprint "
                     "%.12s...); treated as not exposed", r->argv[i + 1] +
                     r->argvlen[i + 1] - CARD_FP_HEX_LEN);
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

static void on_mget(redisAsyncContext *ac, void *rp, void *privdata)
{
    (void)ac;
    struct xreq *r = privdata;
    struct exposure *x = r->x;
    redisReply *reply = rp;
    if (reply == NULL) {
        r->sent = 0; /* connection gone: re-sent after reconnect */
        return;
    }
    if (x->metrics != NULL) {
        metrics_redis_rtt(x->metrics,
                          (double)(clock_mono_ns() - r->sent_ns) / 1e9);
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != r->n + 1) {
        log_warn(MOD, "exposure lookup answered %s; retrying",
                 reply->type == REDIS_REPLY_ERROR ? reply->str
                                                  : "unexpectedly");
        r->sent = 0;
        struct timeval tv = {0, 200000};
        evtimer_add(x->retry, &tv);
        return;
    }
    const redisReply *mk = reply->element[r->n];
    if (x->guard != G_OK || mk->type != REDIS_REPLY_STRING ||
        mk->len != strlen(x->gen) || memcmp(mk->str, x->gen, mk->len) != 0) {
        /* Not the set the last check approved: hold the lookup (re-sent
         * once a check passes) and check now. */
        r->sent = 0;
        if (x->guard == G_OK) {
            x->guard = G_UNCHECKED;
            report_state(x);
        }
        start_check(x);
        return;
    }
    if (parse_reply(r, reply) != 0) {
        log_error(MOD, "out of memory parsing a lookup; retrying");
        free(r->ents);
        free(r->first);
        free(r->count);
        r->ents = NULL;
        r->first = NULL;
        r->count = NULL;
        r->n_ents = 0;
        r->sent = 0;
        struct timeval tv = {0, 200000};
        evtimer_add(x->retry, &tv);
        return;
    }
    r->answered = 1;
    if (resolved(x, r)) {
        finish_req(x, r);
    }
}

static void on_raw(redisAsyncContext *ac, void *rp, void *privdata)
{
    (void)ac;
    struct xreq *r = privdata;
    if (rp == NULL) {
        r->sent = 0; /* connection gone: re-sent after reconnect */
        return;
    }
    unlink_req(r->x, r);
    r->raw_cb(r->arg, rp);
    free_req(r);
}

static void send_req(struct exposure *x, struct xreq *r)
{
    if (redisAsyncCommandArgv(x->ac, r->raw_cb ? on_raw : on_mget, r,
                              r->argc, r->argv, r->argvlen) != REDIS_OK) {
        return; /* stays unsent; the connection is going down */
    }
    r->sent = 1;
    r->sent_ns = clock_mono_ns();
}

static void send_pending(struct exposure *x)
{
    if (x->state != CONN_UP || x->ac == NULL) {
        return;
    }
    for (struct xreq *r = x->head; r != NULL; r = r->next) {
        if (r->answered) {
            (void)resolved(x, r); /* re-fetch metadata lost with the link */
        } else if (!r->sent && (r->raw_cb != NULL || x->guard == G_OK)) {
            send_req(x, r);
        }
    }
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct exposure *x = arg;
    send_pending(x);
    complete_waiting(x);
}

static void refresh_breaches(struct exposure *x)
{
    for (size_t i = 0; i < x->n_breaches; i++) {
        enum bstate old = x->breaches[i]->state;
        if (old == B_KNOWN || old == B_MISSING) {
            x->breaches[i]->state = B_UNKNOWN;
            fetch_breach(x, i);
            if (x->breaches[i]->state == B_UNKNOWN) {
                x->breaches[i]->state = old; /* not sent; keep */
            }
        }
    }
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

/* INFO on every connect: a Redis that may evict can drop exposed cards
 * one by one, which no count would notice in time; no persistence means
 * a restart empties it (the guard then pauses intake: said once). */
static void on_info(void *arg, const redisReply *r)
{
    struct exposure *x = arg;
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
static void on_save_config(void *arg, const redisReply *r)
{
    struct exposure *x = arg;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[1]->len == 0) {
        log_warn(MOD, "Redis %s:%d has no persistence (appendonly no, save "
                 "\"\"): a restart empties it, and cardwatch then pauses "
                 "until the breaches are loaded again", x->host, x->port);
    }
}

static void on_check(void *arg, const redisReply *r)
{
    struct exposure *x = arg;
    if (r == NULL) {
        return; /* destroyed */
    }
    x->checking = 0;
    x->last_check_ns = clock_mono_ns();
    char why[sizeof(x->why)];
    if (x->want_save_config) {
        x->want_save_config = 0;
        const char *argv[] = {"CONFIG", "GET", "save"};
        size_t lens[] = {6, 3, 4};
        (void)exposure_command(x, 3, argv, lens, on_save_config, x);
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "cannot check the exposed-card set in "
                 "Redis %s:%d: %s", x->host, x->port, r->str);
        guard_bad(x, why);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        guard_bad(x, "the exposed-card set check got an unexpected reply");
        return;
    }
    if (x->policy[0] != '\0' && strcmp(x->policy, "noeviction") != 0) {
        snprintf(why, sizeof(why), "Redis %s:%d has maxmemory-policy %s: "
                 "it may evict exposed cards; set maxmemory-policy "
                 "noeviction", x->host, x->port, x->policy);
        guard_bad(x, why);
        return;
    }
    const redisReply *mk = r->element[0];
    if (mk->type != REDIS_REPLY_STRING) {
        snprintf(why, sizeof(why), "the exposed-card set is gone from Redis "
                 "%s:%d (no marker %s%s%s): Redis was emptied (restart "
                 "without persistence, FLUSHALL, failover to an empty "
                 "replica) or nothing was ever loaded; run `cardwatch load` "
                 "for every breach (or `cardwatch breaches --confirm`)",
                 x->host, x->port, x->xkey, x->gen[0] ? ", last seen " : "",
                 x->gen);
        guard_bad(x, why);
        return;
    }
    long long cards = 0;
    size_t n_breaches = 0;
    for (size_t i = 1; i < r->elements; i++) {
        const redisReply *b = r->element[i];
        if (b->type != REDIS_REPLY_ARRAY || b->elements != 4 ||
            b->element[0]->type != REDIS_REPLY_STRING ||
            b->element[3]->type != REDIS_REPLY_INTEGER) {
            continue;
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
            return;
        }
        cards += b->element[3]->integer;
        n_breaches++;
    }
    int changed = mk->len != strlen(x->gen) ||
                  memcmp(mk->str, x->gen, mk->len) != 0;
    if (x->guard == G_BAD || changed) {
        log_info(MOD, "exposed-card set in Redis %s:%d checked: %zu "
                 "breaches, %lld cards (generation %.*s)", x->host, x->port,
                 n_breaches, cards, (int)mk->len, mk->str);
    }
    if (changed) {
        snprintf(x->gen, sizeof(x->gen), "%.*s", (int)mk->len, mk->str);
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
        metrics_gauge(x->metrics, METRICS_G_EXPOSED_CARDS, (double)cards);
    }
    report_state(x);
    send_pending(x);
}

/* Runs the full check unless one is in flight: INFO (eviction policy,
 * persistence), then one script (marker, every breach's status, recorded
 * count and present count); the answers come in that order. */
static void start_check(struct exposure *x)
{
    if (x->checking || x->state != CONN_UP) {
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
    (void)exposure_command(x, 1, info, info_len, on_info, x);
    const char *argv[] = {"EVAL", CHECK_LUA, "2", x->xkey, lkey, bkey};
    size_t lens[] = {4, sizeof(CHECK_LUA) - 1, 1, x->xkey_len,
                     (size_t)llen, (size_t)blen};
    if (exposure_command(x, 6, argv, lens, on_check, x) == 0) {
        x->checking = 1;
    }
}

/* Between full checks an instance reads the marker alone (a lookup reads
 * it in every MGET; this is for an idle instance and the feed). */
static void on_marker(void *arg, const redisReply *r)
{
    struct exposure *x = arg;
    if (r == NULL) {
        return;
    }
    x->marker_asked = 0;
    if (x->guard != G_OK) {
        return;
    }
    if (r->type != REDIS_REPLY_STRING || r->len != strlen(x->gen) ||
        memcmp(r->str, x->gen, r->len) != 0) {
        x->guard = G_UNCHECKED;
        report_state(x);
        start_check(x);
    }
}

static void guard_tick(struct exposure *x, uint64_t now)
{
    if (x->checking) {
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
        if (exposure_command(x, 2, argv, lens, on_marker, x) == 0) {
            x->marker_asked = 1;
        }
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct exposure *x = arg;
    uint64_t now = clock_mono_ns();
    uint64_t limit = (uint64_t)x->timeout_ms * 1000000ull;
    if (x->state == CONN_CONNECTING && now - x->state_since_ns > limit) {
        drop_connection(x, "connect timed out");
        return;
    }
    if (x->state != CONN_UP) {
        return;
    }
    for (struct xreq *r = x->head; r != NULL; r = r->next) {
        if (r->sent && !r->answered && now - r->sent_ns > limit) {
            char why[96];
            snprintf(why, sizeof(why), "no answer within %d ms",
                     x->timeout_ms);
            drop_connection(x, why);
            return;
        }
    }
    if (now - x->last_refresh_ns > (uint64_t)REFRESH_MS * 1000000ull) {
        x->last_refresh_ns = now;
        refresh_breaches(x);
    }
    guard_tick(x, now);
}

struct exposure *exposure_new(struct event_base *base,
                              const struct exposure_opts *o, char *errbuf,
                              size_t errlen)
{
    struct exposure *x = NULL;
    if (o->host == NULL || o->host[0] == '\0' || o->port <= 0 ||
        o->port > 65535 || o->prefix == NULL ||
        strlen(o->prefix) >= sizeof(x->prefix) || o->key_id == NULL ||
        strlen(o->key_id) > CARD_KEY_ID_MAX || o->timeout_ms <= 0) {
        snprintf(errbuf, errlen, "exposure: bad Redis options");
        return NULL;
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        goto oom;
    }
    x->base = base;
    x->host = strdup(o->host);
    x->port = o->port;
    snprintf(x->prefix, sizeof(x->prefix), "%s", o->prefix);
    snprintf(x->kid, sizeof(x->kid), "%s", o->key_id);
    x->timeout_ms = o->timeout_ms;
    int xl = rmodel_exposed_key(x->xkey, x->prefix);
    x->xkey_len = xl > 0 ? (size_t)xl : 0;
    x->while_down = o->while_down ? o->while_down : "commands wait";
    x->metrics = o->metrics;
    x->on_state = o->on_state;
    x->state_arg = o->state_arg;
    x->backoff_ms = BACKOFF_MIN_MS;
    x->last_refresh_ns = clock_mono_ns();
    x->tick = event_new(base, -1, EV_PERSIST, on_tick, x);
    x->reconnect = evtimer_new(base, on_reconnect, x);
    x->retry = evtimer_new(base, on_retry, x);
    if (x->host == NULL || x->tick == NULL || x->reconnect == NULL ||
        x->retry == NULL) {
        goto oom;
    }
    struct timeval tv = {0, TICK_MS * 1000};
    event_add(x->tick, &tv);
    connect_now(x);
    return x;
oom:
    snprintf(errbuf, errlen, "exposure: out of memory");
    exposure_destroy(x);
    return NULL;
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
    if (x->state == CONN_UP && x->ac != NULL &&
        (r->raw_cb != NULL || x->guard == G_OK)) {
        send_req(x, r);
    }
}

int exposure_lookup(struct exposure *x, const char *const *fps, size_t n,
                    exposure_cb cb, void *arg)
{
    struct xreq *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return -1;
    }
    r->x = x;
    r->n = n;
    r->cb = cb;
    r->arg = arg;
    r->argc = (int)n + 2;
    r->argv = malloc((n + 2) * sizeof(*r->argv));
    r->argvlen = malloc((n + 2) * sizeof(*r->argvlen));
    r->keybuf = malloc(n * RMODEL_KEY_MAX + 1);
    if (r->argv == NULL || r->argvlen == NULL || r->keybuf == NULL) {
        free_req(r);
        return -1;
    }
    r->argv[0] = "MGET";
    r->argvlen[0] = 4;
    char *p = r->keybuf;
    for (size_t i = 0; i < n; i++) {
        int len = rmodel_card_key(p, x->prefix, x->kid, fps[i]);
        if (len < 0) {
            free_req(r);
            return -1;
        }
        r->argv[i + 1] = p;
        r->argvlen[i + 1] = (size_t)len;
        p += len + 1;
    }
    r->argv[n + 1] = x->xkey;
    r->argvlen[n + 1] = x->xkey_len;
    enqueue(x, r);
    return 0;
}

int exposure_command(struct exposure *x, int argc, const char *const *argv,
                     const size_t *argvlen, exposure_reply_cb cb, void *arg)
{
    size_t total = 0;
    for (int i = 0; i < argc; i++) {
        total += argvlen[i] + 1;
    }
    struct xreq *r = argc > 0 ? calloc(1, sizeof(*r)) : NULL;
    if (r == NULL) {
        return -1;
    }
    r->x = x;
    r->n = (size_t)argc - 1;
    r->argc = argc;
    r->raw_cb = cb;
    r->arg = arg;
    r->argv = malloc((size_t)argc * sizeof(*r->argv));
    r->argvlen = malloc((size_t)argc * sizeof(*r->argvlen));
    r->keybuf = malloc(total);
    if (r->argv == NULL || r->argvlen == NULL || r->keybuf == NULL) {
        free_req(r);
        return -1;
    }
    char *p = r->keybuf;
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i], argvlen[i]);
        p[argvlen[i]] = '\0';
        r->argv[i] = p;
        r->argvlen[i] = argvlen[i];
        p += argvlen[i] + 1;
    }
    enqueue(x, r);
    return 0;
}

int exposure_is_up(const struct exposure *x)
{
    return x->state == CONN_UP && x->guard == G_OK;
}

int exposure_set_bad(const struct exposure *x)
{
    return x->state == CONN_UP && x->guard == G_BAD;
}

int exposure_link_up(const struct exposure *x)
{
    return x->state == CONN_UP;
}

int exposure_health(const struct exposure *x, char *why, size_t whylen)
{
    if (x->state != CONN_UP) {
        snprintf(why, whylen, "Redis %s:%d unavailable", x->host, x->port);
        return 0;
    }
    if (x->guard == G_BAD) {
        snprintf(why, whylen, "%s", x->why);
        return 0;
    }
    if (x->guard != G_OK) {
        snprintf(why, whylen, "checking the exposed-card set in Redis "
                 "%s:%d", x->host, x->port);
        return 0;
    }
    return 1;
}

size_t exposure_pending(const struct exposure *x)
{
    return x->n_pending;
}

void exposure_destroy(struct exposure *x)
{
    if (x == NULL) {
        return;
    }
    x->destroying = 1;
    if (x->ac != NULL) {
        redisAsyncContext *ac = x->ac;
        x->ac = NULL;
        redisAsyncFree(ac);
    }
    while (x->head != NULL) {
        struct xreq *r = x->head;
        unlink_req(x, r);
        if (r->raw_cb != NULL) {
            r->raw_cb(r->arg, NULL);
        } else {
            r->cb(r->arg, -1, NULL);
        }
        free_req(r);
    }
    if (x->tick != NULL) {
        event_free(x->tick);
    }
    if (x->reconnect != NULL) {
        event_free(x->reconnect);
    }
    if (x->retry != NULL) {
        event_free(x->retry);
    }
    for (size_t i = 0; i < x->n_breaches; i++) {
        free(x->breaches[i]);
    }
    free(x->breaches);
    free(x->host);
    free(x);
}
