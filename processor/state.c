/* state.c - see state.h. */
#include "state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "log.h"
#include "rmodel.h"

#define MOD "state"
#define BUCKETS 4096
#define MAX_TRIES 3

/* Adds the entry (HSETNX: a redelivered txn id counts once), prunes what
 * is older than the newest event time minus the horizon, refreshes the
 * TTLs and returns {entries, suppression hash, newest event time}.
 * Stored values are "<event ms>:<win_entry record>".
 * KEYS: win, sup. ARGV: txn_id, value, event ms, horizon ms, ttl ms. */
static const char LUA_OBSERVE[] =
    "redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "local newest = tonumber(ARGV[3])\n"
    "for i = 2, #all, 2 do\n"
    "  local t = tonumber(string.match(all[i], '^(%-?%d+):'))\n"
    "  if t and t > newest then newest = t end\n"
    "end\n"
    "local cut = newest - tonumber(ARGV[4])\n"
    "local out = {}\n"
    "for i = 1, #all, 2 do\n"
    "  local t = tonumber(string.match(all[i + 1], '^(%-?%d+):'))\n"
    "  if t == nil or t < cut then redis.call('HDEL', KEYS[1], all[i])\n"
    "  else out[#out + 1] = all[i + 1] end\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
    "local sup = redis.call('HGETALL', KEYS[2])\n"
    "if #sup > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[5]) end\n"
    "return {out, sup, newest}\n";

struct sreq {
    struct state *s;
    struct cardq *cq;
    struct sreq *next;
    char value[512];
    size_t value_len;
    char txn_id[TXN_ID_MAX + 1];
    char event_ms[24];
    char horizon[24];
    char ttl[24];
    state_cb cb;
    void *arg;
    int tries;
};

struct cardq {
    char fp[CARD_FP_SIZE];
    struct cardq *next; /* bucket chain */
    struct sreq *head, *tail;
    int busy; /* head is with Redis or its callback */
};

struct ack {
    struct state *s;
    state_ack_cb cb;
    void *arg;
};

struct state {
    struct rconn *rc;
    char prefix[32];
    char kid[CARD_KEY_ID_MAX + 1];
    char ns[48];
    char sha[41];
    struct cardq *buckets[BUCKETS];
    size_t pending;
    int destroying;
};

static unsigned bucket_of(const char *fp)
{
    unsigned h = 2166136261u;
    for (const char *p = fp; *p; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    return h % BUCKETS;
}

static struct cardq *find_card(struct state *s, const char *fp, int create)
{
    unsigned b = bucket_of(fp);
    for (struct cardq *c = s->buckets[b]; c != NULL; c = c->next) {
        if (strcmp(c->fp, fp) == 0) {
            return c;
        }
    }
    if (!create) {
        return NULL;
    }
    struct cardq *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    snprintf(c->fp, sizeof(c->fp), "%s", fp);
    c->next = s->buckets[b];
    s->buckets[b] = c;
    return c;
}

static void drop_card(struct state *s, struct cardq *c)
{
    unsigned b = bucket_of(c->fp);
    for (struct cardq **pp = &s->buckets[b]; *pp != NULL;
         pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            free(c);
            return;
        }
    }
}

static int key_of(char *buf, size_t len, const struct state *s,
                  const char *kind, const char *fp)
{
    int n = snprintf(buf, len, "%s:%s:%s:%s:%s", s->prefix, s->ns, kind,
                     s->kid, fp);
    return n > 0 && (size_t)n < len ? n : -1;
}

struct state *state_new(struct rconn *rc, const char *prefix,
                        const char *key_id, const char *ns)
{
    if (rc == NULL || prefix == NULL || key_id == NULL || ns == NULL ||
        strlen(prefix) >= 32 || strlen(key_id) > CARD_KEY_ID_MAX ||
        strlen(ns) == 0 || strlen(ns) > 40 ||
        strspn(ns, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(ns)) {
        return NULL;
    }
    struct state *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->rc = rc;
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    snprintf(s->kid, sizeof(s->kid), "%s", key_id);
    snprintf(s->ns, sizeof(s->ns), "%s", ns);
    /* SHA-1 of the script, for EVALSHA; EVAL loads it when Redis lost
     * its script cache (NOSCRIPT after a restart). */
    unsigned char d[20];
    unsigned int dl = 0;
    if (!EVP_Digest(LUA_OBSERVE, strlen(LUA_OBSERVE), d, &dl, EVP_sha1(),
                    NULL) ||
        dl != 20) {
        free(s);
        return NULL;
    }
    for (int i = 0; i < 20; i++) {
        snprintf(s->sha + 2 * i, 3, "%02x", d[i]);
    }
    return s;
}

static void issue(struct state *s, struct sreq *r, int use_eval);

static int parse_view(struct sreq *r, const redisReply *rep,
                      struct win_entry **entries, size_t *n,
                      struct state_sup **sups, size_t *ns, int64_t *newest)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_ARRAY ||
        rep->element[1]->type != REDIS_REPLY_ARRAY ||
        rep->element[2]->type != REDIS_REPLY_INTEGER) {
        return -1;
    }
    const redisReply *ents = rep->element[0];
    const redisReply *sup = rep->element[1];
    *entries = calloc(ents->elements + 1, sizeof(**entries));
    *sups = calloc(sup->elements / 2 + 1, sizeof(**sups));
    if (*entries == NULL || *sups == NULL) {
        return -1;
    }
    *n = 0;
    for (size_t i = 0; i < ents->elements; i++) {
        const redisReply *e = ents->element[i];
        const char *colon =
            e->type == REDIS_REPLY_STRING ? memchr(e->str, ':', e->len) : NULL;
        if (colon == NULL ||
            win_entry_decode(colon + 1, e->len - (size_t)(colon + 1 - e->str),
                             &(*entries)[*n]) != 0) {
            log_warn(MOD, "skipping a malformed window entry");
            continue;
        }
        (*n)++;
    }
    *ns = 0;
    for (size_t i = 0; i + 1 < sup->elements; i += 2) {
        const redisReply *k = sup->element[i];
        const redisReply *v = sup->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            continue;
        }
        char *bar = memchr(v->str, '|', v->len);
        if (bar == NULL) {
            continue;
        }
        (*sups)[*ns].rule_id = k->str;
        (*sups)[*ns].last_ms = strtoll(v->str, NULL, 10);
        (*sups)[*ns].txn_id = bar + 1;
        (*ns)++;
    }
    *newest = (int64_t)rep->element[2]->integer;
    (void)r;
    return 0;
}

static void on_observe(void *arg, const redisReply *rep)
{
    struct sreq *r = arg;
    struct state *s = r->s;
    struct cardq *c = r->cq;
    if (rep == NULL) {
        /* Destroyed before Redis answered. */
        c->busy = 0;
        c->head = r->next;
        s->pending--;
        r->cb(r->arg, -1, NULL);
        free(r);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        int noscript = strncmp(rep->str, "NOSCRIPT", 8) == 0;
        if (!noscript) {
            log_error(MOD, "window update failed: %s", rep->str);
        }
        if (++r->tries < MAX_TRIES) {
            issue(s, r, 1);
            return;
        }
        log_error(MOD, "window state of a card unavailable after %d tries; "
                  "evaluating with this transaction alone", MAX_TRIES);
    }
    struct win_entry *entries = NULL;
    struct state_sup *sups = NULL;
    size_t n = 0, ns = 0;
    int64_t newest = strtoll(r->event_ms, NULL, 10);
    struct win_entry self;
    if (rep->type == REDIS_REPLY_ERROR ||
        parse_view(r, rep, &entries, &n, &sups, &ns, &newest) != 0) {
        free(entries);
        free(sups);
        entries = NULL;
        sups = NULL;
        n = ns = 0;
        if (win_entry_decode(r->value + strcspn(r->value, ":") + 1,
                             r->value_len - strcspn(r->value, ":") - 1,
                             &self) == 0) {
            entries = &self;
            n = 1;
        }
    }
    struct state_view v = {entries, n, sups, ns, newest};
    c->head = r->next;
    if (c->head == NULL) {
        c->tail = NULL;
    }
    s->pending--;
    r->cb(r->arg, 0, &v); /* calls state_release(): c may be gone now */
    if (entries != &self) {
        free(entries);
    }
    free(sups);
    free(r);
}

static void issue(struct state *s, struct sreq *r, int use_eval)
{
    char win[RMODEL_KEY_MAX], sup[RMODEL_KEY_MAX];
    key_of(win, sizeof(win), s, "win", r->cq->fp);
    key_of(sup, sizeof(sup), s, "sup", r->cq->fp);
    const char *argv[] = {use_eval ? "EVAL" : "EVALSHA",
                          use_eval ? LUA_OBSERVE : s->sha,
                          "2",
                          win,
                          sup,
                          r->txn_id,
                          r->value,
                          r->event_ms,
                          r->horizon,
                          r->ttl};
    size_t lens[10];
    for (int i = 0; i < 10; i++) {
        lens[i] = strlen(argv[i]);
    }
    lens[6] = r->value_len;
    r->cq->busy = 1;
    if (rconn_command(s->rc, 10, argv, lens, on_observe, r) != 0) {
        log_error(MOD, "out of memory queuing a window update");
    }
}

int state_observe(struct state *s, const char *fp, const struct win_entry *e,
                  int64_t horizon_ms, state_cb cb, void *arg)
{
    struct sreq *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return -1;
    }
    int off = snprintf(r->value, sizeof(r->value), "%" PRId64 ":",
                       e->event_time_ms);
    int len = win_entry_encode(e, r->value + off, sizeof(r->value) - (size_t)off);
    struct cardq *c = len < 0 ? NULL : find_card(s, fp, 1);
    if (c == NULL) {
        free(r);
        return -1;
    }
    r->value_len = (size_t)(off + len);
    r->s = s;
    r->cq = c;
    r->cb = cb;
    r->arg = arg;
    snprintf(r->txn_id, sizeof(r->txn_id), "%s", e->txn_id);
    snprintf(r->event_ms, sizeof(r->event_ms), "%" PRId64, e->event_time_ms);
    snprintf(r->horizon, sizeof(r->horizon), "%" PRId64, horizon_ms);
    /* Wall-clock TTL as a safety net; pruning is by event time. */
    snprintf(r->ttl, sizeof(r->ttl), "%" PRId64,
             horizon_ms > 3600000 ? horizon_ms : 3600000);
    if (c->tail != NULL) {
        c->tail->next = r;
    } else {
        c->head = r;
    }
    c->tail = r;
    s->pending++;
    if (!c->busy) {
        issue(s, r, 0);
    }
    return 0;
}

static void on_ack(void *arg, const redisReply *rep)
{
    struct ack *a = arg;
    int err = rep == NULL || rep->type == REDIS_REPLY_ERROR;
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
        log_error(MOD, "suppression write failed: %s", rep->str);
    }
    a->cb(a->arg, err);
    free(a);
}

int state_suppressed_by(struct state *s, const char *fp, const char *rule_id,
                        int64_t event_ms, const char *txn_id,
                        state_ack_cb cb, void *arg)
{
    char sup[RMODEL_KEY_MAX], val[128];
    struct ack *a = malloc(sizeof(*a));
    if (a == NULL || key_of(sup, sizeof(sup), s, "sup", fp) < 0) {
        free(a);
        return -1;
    }
    a->s = s;
    a->cb = cb;
    a->arg = arg;
    snprintf(val, sizeof(val), "%" PRId64 "|%s", event_ms, txn_id);
    const char *argv[] = {"HSET", sup, rule_id, val};
    size_t lens[] = {4, strlen(sup), strlen(rule_id), strlen(val)};
    if (rconn_command(s->rc, 4, argv, lens, on_ack, a) != 0) {
        free(a);
        return -1;
    }
    return 0;
}

void state_release(struct state *s, const char *fp)
{
    struct cardq *c = find_card(s, fp, 0);
    if (c == NULL) {
        return;
    }
    c->busy = 0;
    if (c->head != NULL) {
        issue(s, c->head, 0);
    } else {
        drop_card(s, c);
    }
}

size_t state_pending(const struct state *s)
{
    return s->pending;
}

void state_destroy(struct state *s)
{
    if (s == NULL) {
        return;
    }
    /* Requests with Redis are answered (status -1) by rconn_destroy(),
     * which the owner calls first; what is left only waits for its turn. */
    for (size_t b = 0; b < BUCKETS; b++) {
        struct cardq *c = s->buckets[b];
        while (c != NULL) {
            struct cardq *next = c->next;
            /* A busy head is still owned by the Redis connection
             * (state_destroy must come after rconn_destroy). */
            struct sreq *r = c->busy && c->head ? c->head->next : c->head;
            while (r != NULL) {
                struct sreq *rn = r->next;
                r->cb(r->arg, -1, NULL);
                free(r);
                r = rn;
            }
            free(c);
            c = next;
        }
    }
    free(s);
}
