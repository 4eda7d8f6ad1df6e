/* ledger.c - see ledger.h. */
#include "ledger.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "clock.h"
#include "log.h"
#include "rmodel.h"

#define MOD "ledger"
#define LEDGER_ALERT_JSON_MAX 16384
/* A record Redis answered with an error (an ACL refusal, OOM) is sent
 * again this long after; its alert's input offset waits meanwhile. */
#define RETRY_MS 200
/* Buckets of the table of alerts on their way (chained, each entry with
 * its hash; the pipeline holds at most [pipeline] max_in_flight events,
 * and their alerts wait here until recorded). */
#define INFLIGHT_BUCKETS 8192
/* Delivered alerts recorded per script call (queued on one loop turn). */
#define BATCH_MAX 128

struct ledger {
    struct ledger_opts o;
    char prefix[32];
    char ttl[32];
    char maxlen[32];
    char sha[41]; /* of RMODEL_LUA_RECORD_DELIVERY, for EVALSHA */
    char channel[RMODEL_KEY_MAX];
    uint64_t skipped;
    size_t n_refused;  /* records waiting to be sent again */
    char refused[256]; /* Redis's last error answer to one */
    struct log_limit limit;
    struct lreq *inflight[INFLIGHT_BUCKETS]; /* alerts on their way */
    /* delivered alerts waiting for the next record call, in order */
    struct lreq *qhead, *qtail;
    size_t n_queued;
    struct event *flush_ev; /* sends them, on the next loop turn */
    char json[LEDGER_ALERT_JSON_MAX]; /* scratch of ledger_produce */
};

/* Alerts recorded in one script call; sent again whole after an error. */
struct lbatch {
    struct ledger *l;
    int evaled;  /* the script was sent in full (after NOSCRIPT) */
    int refused; /* the last answer was an error: counted in n_refused */
    size_t n;
    struct lreq *r[];
};

/* One alert on its way: checked, produced, recorded. */
struct lreq {
    struct ledger *l;
    void *opaque; /* the pipeline's */
    int passthrough;
    char alert_id[ALERT_ID_SIZE];
    uint32_t hash; /* of alert_id */
    char issuer[ISSUER_ID_MAX + 1];
    char severity[16];
    char rules[ALERT_MAX_HITS * (RULE_ID_MAX + 1)]; /* comma list */
    char *json; /* the alert as JSON, for the issuer's feed */
    struct lreq *qnext; /* in the queue of alerts to record */
    /* copy of the message, kept while the check runs */
    char *topic;
    void *key, *value;
    size_t keylen, vallen;
    /* in the table of alerts on their way (from the check until reported) */
    int listed;
    struct lreq *hnext;
    /* copies of this alert produced meanwhile (the same alert id, from a
     * transaction the input held twice): reported with this one, never
     * produced; only l and opaque are set */
    struct lreq *copies;
};

static uint32_t id_hash(const char *alert_id)
{
    uint32_t h = 2166136261u;
    for (const char *p = alert_id; *p; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    return h;
}

static struct lreq **bucket(struct ledger *l, uint32_t hash)
{
    return &l->inflight[hash % INFLIGHT_BUCKETS];
}

static struct lreq *find_inflight(struct ledger *l, const char *alert_id,
                                  uint32_t hash)
{
    struct lreq *r = *bucket(l, hash);
    while (r != NULL &&
           (r->hash != hash || strcmp(r->alert_id, alert_id) != 0)) {
        r = r->hnext;
    }
    return r;
}

static void unlist(struct lreq *r)
{
    struct lreq **pp = bucket(r->l, r->hash);
    while (*pp != r) {
        assert(*pp != NULL); /* a listed request is in its bucket */
        pp = &(*pp)->hnext;
    }
    *pp = r->hnext;
    r->listed = 0;
}

static void free_req(struct lreq *r)
{
    free(r->json);
    free(r->topic);
    free(r->key);
    free(r->value);
    free(r);
}

/* Reports r, then its copies: delivered (err 0) counts them as skipped,
 * a failure fails them too (their input offsets wait, as r's does). */
static void report(struct lreq *r, int err)
{
    struct ledger *l = r->l;
    void *opaque = r->opaque;
    struct lreq *c = r->copies;
    if (r->listed) {
        unlist(r);
    }
    free_req(r);
    l->o.delivered(l->o.arg, opaque, err);
    while (c != NULL) {
        struct lreq *next = c->copies;
        void *co = c->opaque;
        free(c);
        if (err == 0) {
            l->skipped++;
        }
        l->o.delivered(l->o.arg, co, err);
        c = next;
    }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg);

struct ledger *ledger_new(const struct ledger_opts *o)
{
    if (o->base == NULL || o->prefix == NULL || strlen(o->prefix) >= 32 || o->ttl_days <= 0) {
        return NULL;
    }
    struct ledger *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return NULL;
    }
    l->o = *o;
    snprintf(l->prefix, sizeof(l->prefix), "%s", o->prefix);
    snprintf(l->ttl, sizeof(l->ttl), "%lld", (long long)o->ttl_days * 86400);
    snprintf(l->maxlen, sizeof(l->maxlen), "%d",
             o->feed_max_alerts > 0 ? o->feed_max_alerts : 1000000);
    rmodel_feed_channel(l->channel, l->prefix);
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    if (!EVP_Digest(RMODEL_LUA_RECORD_DELIVERY,
                    strlen(RMODEL_LUA_RECORD_DELIVERY), d, &dl, EVP_sha1(),
                    NULL) ||
        dl != 20) {
        free(l);
        return NULL;
    }
    for (unsigned int i = 0; i < dl; i++) {
        snprintf(l->sha + 2 * i, 3, "%02x", d[i]);
    }
    l->flush_ev = event_new(o->base, -1, 0, flush_cb, l);
    if (l->flush_ev == NULL) {
        free(l);
        return NULL;
    }
    return l;
}

static void delivered_key(const struct ledger *l, const char *id,
                          char *buf, size_t len)
{
    (void)len;
    rmodel_delivered_key(buf, l->prefix, id);
}

static int produce_inner(struct lreq *r)
{
    struct sink_msg m = {
        .kind = SINK_ALERT,
        .topic = r->topic,
        .key = r->key,
        .keylen = r->keylen,
        .value = r->value,
        .vallen = r->vallen,
        .issuer = r->issuer,
    };
    return r->l->o.inner.produce(r->l->o.inner.ctx, &m, r);
}

static void on_exists(void *arg, const struct redisReply *reply)
{
    struct lreq *r = arg;
    if (reply == NULL) {
        report(r, -1); /* shutting down: stays unacknowledged */
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        r->l->skipped++;
        log_debug(MOD, "alert %s was delivered before; not sent again",
                  r->alert_id);
        report(r, 0);
        return;
    }
    if (reply->type != REDIS_REPLY_INTEGER) {
        log_warn(MOD, "delivered check for alert %s answered %s; sending it",
                 r->alert_id,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "oddly");
    }
    if (produce_inner(r) != 0) {
        report(r, -1);
    }
}

int ledger_produce(void *ctx, const struct sink_msg *m, void *opaque)
{
    struct ledger *l = ctx;
    struct lreq *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        log_error(MOD, "out of memory queuing a message for %s", m->topic);
        return -1;
    }
    r->l = l;
    r->opaque = opaque;
    if (m->kind != SINK_ALERT || m->alert == NULL) {
        r->passthrough = 1;
        struct sink_msg copy = *m;
        if (l->o.inner.produce(l->o.inner.ctx, &copy, r) != 0) {
            free_req(r); /* the sink said why */
            return -1;
        }
        return 0;
    }
    snprintf(r->alert_id, sizeof(r->alert_id), "%s", m->alert->alert_id);
    r->hash = id_hash(r->alert_id);
    struct lreq *first = find_inflight(l, r->alert_id, r->hash);
    if (first != NULL) {
        /* The same alert is on its way: this copy is reported with it. */
        log_debug(MOD, "alert %s is on its way already; not sent again",
                  r->alert_id);
        r->copies = first->copies;
        first->copies = r;
        return 0;
    }
    snprintf(r->issuer, sizeof(r->issuer), "%s", m->issuer ? m->issuer : "");
    snprintf(r->severity, sizeof(r->severity), "%s",
             severity_name(m->alert->severity));
    size_t rl = 0;
    for (size_t i = 0; i < m->alert->n_hits; i++) {
        rl += (size_t)snprintf(r->rules + rl, sizeof(r->rules) - rl, "%s%s",
                               i ? "," : "", m->alert->hits[i].rule_id);
    }
    /* encoded in the scratch, kept at its size: a 16 KB buffer per alert
     * on its way cost page faults of a growing heap */
    int jl = alert_encode_json(m->alert, l->json, sizeof(l->json));
    if (jl < 0) {
        log_error(MOD, "alert %s does not fit in %d bytes of JSON",
                  r->alert_id, LEDGER_ALERT_JSON_MAX);
        free_req(r);
        return -1;
    }
    r->json = malloc((size_t)jl + 1);
    if (r->json == NULL) {
        goto oom;
    }
    memcpy(r->json, l->json, (size_t)jl + 1);
    r->topic = strdup(m->topic);
    r->key = malloc(m->keylen ? m->keylen : 1);
    r->value = malloc(m->vallen ? m->vallen : 1);
    if (r->topic == NULL || r->key == NULL || r->value == NULL) {
        goto oom;
    }
    memcpy(r->key, m->key, m->keylen);
    memcpy(r->value, m->value, m->vallen);
    r->keylen = m->keylen;
    r->vallen = m->vallen;
    char key[RMODEL_KEY_MAX];
    delivered_key(l, r->alert_id, key, sizeof(key));
    const char *argv[] = {"EXISTS", key};
    size_t lens[] = {6, strlen(key)};
    struct lreq **b = bucket(l, r->hash);
    r->hnext = *b;
    *b = r;
    r->listed = 1;
    if (rconn_command(l->o.redis, 2, argv, lens, on_exists, r) != 0) {
        goto oom;
    }
    return 0;
oom:
    log_error(MOD, "out of memory queuing alert %s for %s", r->alert_id,
              m->topic);
    if (r->listed) {
        unlist(r); /* no copy joined it: nothing ran in between */
    }
    free_req(r);
    return -1;
}

static void send_batch(struct lbatch *b, int delay_ms);

/* Reports every alert of b with err and frees b. */
static void report_batch(struct lbatch *b, int err)
{
    for (size_t i = 0; i < b->n; i++) {
        report(b->r[i], err);
    }
    free(b);
}

static void on_recorded(void *arg, const struct redisReply *reply)
{
    struct lbatch *b = arg;
    struct ledger *l = b->l;
    if (reply == NULL) {
        report_batch(b, -1); /* shutting down: stays unacknowledged */
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR && !b->evaled &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        b->evaled = 1; /* Redis lost its script cache: send it whole */
        send_batch(b, 0);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != b->n) {
        /* Delivered, but not recorded: not in their issuer's feed, and
         * sent again after a restart. Held (their input offsets wait) and
         * sent again until Redis accepts them. */
        const char *why = reply->type == REDIS_REPLY_ERROR
                              ? reply->str
                              : "an answer of the wrong shape";
        if (log_limit_ok(&l->limit, why, 60)) {
            char more[40] = "";
            if (b->n > 1) {
                snprintf(more, sizeof(more), " and %zu more", b->n - 1);
            }
            log_error(MOD, "recording delivered alert %s%s failed: %s; "
                      "retrying every %d ms until Redis accepts it (its "
                      "input offset waits)", b->r[0]->alert_id, more, why,
                      RETRY_MS);
        }
        snprintf(l->refused, sizeof(l->refused), "%s", why);
        if (!b->refused) {
            b->refused = 1;
            l->n_refused += b->n;
        }
        b->evaled = 0; /* EVALSHA again; NOSCRIPT still leads to EVAL */
        send_batch(b, RETRY_MS);
        return;
    }
    if (b->refused) {
        l->n_refused -= b->n;
        if (l->n_refused == 0) {
            log_info(MOD, "Redis %s accepts the records of delivered "
                     "alerts again", rconn_address(l->o.redis));
            log_limit_reset(&l->limit);
        }
    }
    report_batch(b, 0);
}

/* The keys of one alert (delivered, alert, feed, feedstats) into k. */
static void alert_keys(const struct ledger *l, const struct lreq *r,
                       char (*k)[RMODEL_KEY_MAX])
{
    const char *who = r->issuer[0] ? r->issuer : "unrouted";
    delivered_key(l, r->alert_id, k[0], RMODEL_KEY_MAX);
    rmodel_alert_key(k[1], l->prefix, r->alert_id);
    rmodel_feed_key(k[2], l->prefix, who);
    rmodel_feedstats_key(k[3], l->prefix, who);
}

/* Runs the delivery script for the alerts of b: EVALSHA, or the whole
 * script with EVAL once Redis said NOSCRIPT (a restart emptied its script
 * cache) - ~1.5 KB that need not travel (nor be hashed by Redis) with
 * every call. On allocation failure the alerts are reported delivered
 * unrecorded (logged): their delivery is not held back by the feed. */
static void send_batch(struct lbatch *b, int delay_ms)
{
    struct ledger *l = b->l;
    size_t argc = 3 + 4 * b->n + 4 + 5 * b->n;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    char (*keys)[RMODEL_KEY_MAX] = malloc(4 * b->n * sizeof(*keys));
    char nkeys[24], minid[32];
    int rc = -1;
    if (argv != NULL && lens != NULL && keys != NULL) {
        snprintf(nkeys, sizeof(nkeys), "%zu", 4 * b->n);
        snprintf(minid, sizeof(minid), "%lld",
                 (long long)(clock_wall_ms() -
                             (int64_t)l->o.feed_retention_days * 86400000));
        size_t a = 0;
        argv[a++] = b->evaled ? "EVAL" : "EVALSHA";
        argv[a++] = b->evaled ? RMODEL_LUA_RECORD_DELIVERY : l->sha;
        argv[a++] = nkeys;
        for (size_t i = 0; i < b->n; i++) {
            alert_keys(l, b->r[i], &keys[4 * i]);
            for (int k = 0; k < 4; k++) {
                argv[a++] = keys[4 * i + (size_t)k];
            }
        }
        argv[a++] = l->ttl;
        argv[a++] = l->maxlen;
        argv[a++] = minid;
        argv[a++] = l->channel;
        for (size_t i = 0; i < b->n; i++) {
            struct lreq *r = b->r[i];
            argv[a++] = r->issuer;
            argv[a++] = r->alert_id;
            argv[a++] = r->json;
            argv[a++] = r->severity;
            argv[a++] = r->rules;
        }
        for (size_t i = 0; i < argc; i++) {
            lens[i] = strlen(argv[i]);
        }
        rc = delay_ms > 0 ? rconn_command_later(l->o.redis, delay_ms,
                                                (int)argc, argv, lens,
                                                on_recorded, b)
                          : rconn_command(l->o.redis, (int)argc, argv, lens,
                                          on_recorded, b);
    }
    free(argv);
    free(lens);
    free(keys);
    if (rc != 0) {
        log_warn(MOD, "out of memory recording delivered alert %s (%zu in "
                 "the call)", b->r[0]->alert_id, b->n);
        if (b->refused) {
            l->n_refused -= b->n;
        }
        report_batch(b, 0);
    }
}

/* Sends the queued alerts, BATCH_MAX per script call. */
static void flush(struct ledger *l)
{
    while (l->qhead != NULL) {
        size_t n = l->n_queued < BATCH_MAX ? l->n_queued : BATCH_MAX;
        struct lbatch *b = calloc(1, sizeof(*b) + n * sizeof(b->r[0]));
        if (b == NULL) {
            /* one at a time: the smallest call there is */
            n = 1;
            b = calloc(1, sizeof(*b) + sizeof(b->r[0]));
        }
        if (b == NULL) {
            struct lreq *r = l->qhead;
            l->qhead = r->qnext;
            l->n_queued--;
            log_warn(MOD, "out of memory recording delivered alert %s",
                     r->alert_id);
            report(r, 0);
            continue;
        }
        b->l = l;
        for (b->n = 0; b->n < n; b->n++) {
            b->r[b->n] = l->qhead;
            l->qhead = l->qhead->qnext;
        }
        l->n_queued -= n;
        if (l->qhead == NULL) {
            l->qtail = NULL;
        }
        send_batch(b, 0);
    }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush(arg);
}

void ledger_inner_delivered(struct ledger *l, void *opaque, int err)
{
    struct lreq *r = opaque;
    if (err != 0 || r->passthrough) {
        report(r, err);
        return;
    }
    /* recorded with the other reports of this loop turn, in one call */
    r->qnext = NULL;
    if (l->qtail != NULL) {
        l->qtail->qnext = r;
    } else {
        l->qhead = r;
    }
    l->qtail = r;
    if (++l->n_queued >= BATCH_MAX) {
        flush(l);
    } else {
        event_active(l->flush_ev, EV_TIMEOUT, 0); /* once, however often */
    }
}

uint64_t ledger_skipped(const struct ledger *l)
{
    return l->skipped;
}

int ledger_health(const struct ledger *l, char *why, size_t whylen)
{
    if (l->n_refused == 0) {
        return 1;
    }
    snprintf(why, whylen, "Redis %s refused the record of delivered alerts: "
             "%s; %zu waiting, retried every %d ms",
             rconn_address(l->o.redis), l->refused, l->n_refused, RETRY_MS);
    return 0;
}

void ledger_destroy(struct ledger *l)
{
    if (l == NULL) {
        return;
    }
    /* queued, never sent: they stay unacknowledged, as at any shutdown */
    while (l->qhead != NULL) {
        struct lreq *r = l->qhead;
        l->qhead = r->qnext;
        report(r, -1);
    }
    event_free(l->flush_ev);
    free(l);
}
