/* ledger.c - see ledger.h. */
#include "ledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "rmodel.h"

#define MOD "ledger"

struct ledger {
    struct ledger_opts o;
    char prefix[32];
    char ttl[32];
    uint64_t skipped, recorded;
};

/* One alert on its way: checked, produced, recorded. */
struct lreq {
    struct ledger *l;
    void *opaque; /* the pipeline's */
    int passthrough;
    char alert_id[ALERT_ID_SIZE];
    char issuer[ISSUER_ID_MAX + 1];
    /* copy of the message, kept while the check runs */
    char *topic;
    void *key, *value;
    size_t keylen, vallen;
};

static void free_req(struct lreq *r)
{
    free(r->topic);
    free(r->key);
    free(r->value);
    free(r);
}

static void report(struct lreq *r, int err)
{
    struct ledger *l = r->l;
    void *opaque = r->opaque;
    free_req(r);
    l->o.delivered(l->o.arg, opaque, err);
}

struct ledger *ledger_new(const struct ledger_opts *o)
{
    if (o->prefix == NULL || strlen(o->prefix) >= 32 || o->ttl_days <= 0) {
        return NULL;
    }
    struct ledger *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return NULL;
    }
    l->o = *o;
    snprintf(l->prefix, sizeof(l->prefix), "%s", o->prefix);
    snprintf(l->ttl, sizeof(l->ttl), "%lld", (long long)o->ttl_days * 86400);
    return l;
}

static void delivered_key(const struct ledger *l, const char *id,
                          char *buf, size_t len)
{
    snprintf(buf, len, "%s:delivered:%s", l->prefix, id);
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
        return -1;
    }
    r->l = l;
    r->opaque = opaque;
    if (m->kind != SINK_ALERT || m->alert == NULL) {
        r->passthrough = 1;
        struct sink_msg copy = *m;
        if (l->o.inner.produce(l->o.inner.ctx, &copy, r) != 0) {
            free_req(r);
            return -1;
        }
        return 0;
    }
    snprintf(r->alert_id, sizeof(r->alert_id), "%s", m->alert->alert_id);
    snprintf(r->issuer, sizeof(r->issuer), "%s", m->issuer ? m->issuer : "");
    if (!l->o.check) {
        struct sink_msg copy = *m;
        if (l->o.inner.produce(l->o.inner.ctx, &copy, r) != 0) {
            free_req(r);
            return -1;
        }
        return 0;
    }
    r->topic = strdup(m->topic);
    r->key = malloc(m->keylen ? m->keylen : 1);
    r->value = malloc(m->vallen ? m->vallen : 1);
    if (r->topic == NULL || r->key == NULL || r->value == NULL) {
        free_req(r);
        return -1;
    }
    memcpy(r->key, m->key, m->keylen);
    memcpy(r->value, m->value, m->vallen);
    r->keylen = m->keylen;
    r->vallen = m->vallen;
    char key[RMODEL_KEY_MAX];
    delivered_key(l, r->alert_id, key, sizeof(key));
    const char *argv[] = {"EXISTS", key};
    size_t lens[] = {6, strlen(key)};
    if (exposure_command(l->o.exposure, 2, argv, lens, on_exists, r) != 0) {
        free_req(r);
        return -1;
    }
    return 0;
}

static void on_recorded(void *arg, const struct redisReply *reply)
{
    struct lreq *r = arg;
    if (reply == NULL) {
        report(r, -1);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* Delivered, but not recorded: a later replay may send it again.
         * Not worth holding the stream for. */
        log_warn(MOD, "recording delivered alert %s: %s", r->alert_id,
                 reply->str);
    } else {
        r->l->recorded++;
    }
    report(r, 0);
}

void ledger_inner_delivered(struct ledger *l, void *opaque, int err)
{
    struct lreq *r = opaque;
    if (err != 0 || r->passthrough) {
        report(r, err);
        return;
    }
    char key[RMODEL_KEY_MAX];
    delivered_key(l, r->alert_id, key, sizeof(key));
    const char *issuer = r->issuer[0] ? r->issuer : "unrouted";
    const char *argv[] = {"SET", key, issuer, "EX", l->ttl};
    size_t lens[] = {3, strlen(key), strlen(issuer), 2, strlen(l->ttl)};
    if (exposure_command(l->o.exposure, 5, argv, lens, on_recorded, r) != 0) {
        log_warn(MOD, "out of memory recording delivered alert %s",
                 r->alert_id);
        report(r, 0);
    }
}

uint64_t ledger_skipped(const struct ledger *l)
{
    return l->skipped;
}

uint64_t ledger_recorded(const struct ledger *l)
{
    return l->recorded;
}

void ledger_destroy(struct ledger *l)
{
    free(l);
}
