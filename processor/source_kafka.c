/* source_kafka.c - see source_kafka.h. */
#include "source_kafka.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "kafka_batch.h"
#include "kafka_loop.h"
#include "kafka_wmark.h"
#include "kconf.h"
#include "log.h"

#define MOD "source"
#define TICK_MS 100
#define MAX_ROUNDS 64

struct spart {
    int32_t partition;
    int eof;
    int dirty;
    int64_t store;
};

struct source_kafka {
    struct source_kafka_opts o;
    int broken; /* an assigned partition could not be tracked */
    char topic[256];
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    struct kafka_loop_watch *watch; /* q signals the loop; NULL once closed */
    struct kafka_wmark *wmark; /* watermarks while paused; NULL once closed */
    struct event *tick;
    struct event *flush_ev;
    struct event *kick_ev;
    int flush_pending;
    struct kafka_batch batch;
    struct spart *parts;
    size_t n_parts, cap_parts;
    int paused;
    int stopped;
    int closed;
};

static struct spart *find_part(struct source_kafka *s, int32_t partition)
{
    for (size_t i = 0; i < s->n_parts; i++) {
        if (s->parts[i].partition == partition) {
            return &s->parts[i];
        }
    }
    return NULL;
}

static void flush_stores(struct source_kafka *s)
{
    s->flush_pending = 0;
    if (s->rk == NULL || s->closed) {
        return;
    }
    rd_kafka_topic_partition_list_t *l = NULL;
    for (size_t i = 0; i < s->n_parts; i++) {
        struct spart *p = &s->parts[i];
        if (!p->dirty) {
            continue;
        }
        if (l == NULL) {
            l = rd_kafka_topic_partition_list_new((int)s->n_parts);
        }
        rd_kafka_topic_partition_list_add(l, s->topic, p->partition)->offset =
            p->store;
        p->dirty = 0;
    }
    if (l == NULL) {
        return;
    }
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(s->rk, l);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* __STATE after a revoke: the next owner re-processes (no loss). */
        log_debug(MOD, "offsets_store: %s", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush_stores(arg);
}

void source_kafka_store(void *ctx, int32_t partition, int64_t offset)
{
    struct source_kafka *s = ctx;
    struct spart *p = find_part(s, partition);
    if (p == NULL) {
        return; /* revoked since */
    }
    if (offset > p->store) {
        p->store = offset;
        p->dirty = 1;
    }
    if (!s->flush_pending) {
        s->flush_pending = 1;
        event_active(s->flush_ev, 0, 0);
    }
}

static rd_kafka_topic_partition_list_t *assigned_list(struct source_kafka *s)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new((int)s->n_parts + 1);
    for (size_t i = 0; i < s->n_parts; i++) {
        rd_kafka_topic_partition_list_add(l, s->topic, s->parts[i].partition);
    }
    return l;
}

/* While intake is paused, the assigned partitions' watermarks are asked
 * from the brokers (kafka_wmark.h): the lag keeps counting what arrives. */
static void watch_watermarks(struct source_kafka *s)
{
    if (s->wmark == NULL) {
        return;
    }
    size_t n = s->paused ? s->n_parts : 0;
    int32_t *ids = n > 0 ? malloc(n * sizeof(*ids)) : NULL;
    if (n > 0 && ids == NULL) {
        return; /* the lag stays as librdkafka last saw it */
    }
    for (size_t i = 0; i < n; i++) {
        ids[i] = s->parts[i].partition;
    }
    kafka_wmark_watch(s->wmark, ids, n);
    free(ids);
}

void source_kafka_set_paused(void *ctx, int paused)
{
    struct source_kafka *s = ctx;
    if (s->paused == paused || s->rk == NULL || s->closed) {
        s->paused = paused;
        return;
    }
    s->paused = paused;
    if (s->n_parts > 0) {
        rd_kafka_topic_partition_list_t *l = assigned_list(s);
        rd_kafka_resp_err_t err = paused ? rd_kafka_pause_partitions(s->rk, l)
                                         : rd_kafka_resume_partitions(s->rk, l);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            log_warn(MOD, "%s: %s", paused ? "pause" : "resume",
                     rd_kafka_err2str(err));
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
    log_info(MOD, "intake %s",
             paused ? "paused until Redis answers with an intact "
                      "exposed-card set"
                    : "resumed");
    if (s->o.metrics != NULL) {
        metrics_gauge(s->o.metrics, METRICS_G_PAUSED, paused);
    }
    watch_watermarks(s);
    if (!paused) {
        source_kafka_kick(s);
    }
}

static void add_parts(struct source_kafka *s,
                      const rd_kafka_topic_partition_list_t *l)
{
    for (int i = 0; i < l->cnt; i++) {
        if (find_part(s, l->elems[i].partition) != NULL) {
            continue;
        }
        if (s->n_parts == s->cap_parts) {
            size_t ncap = s->cap_parts ? s->cap_parts * 2 : 16;
            struct spart *np = realloc(s->parts, ncap * sizeof(*np));
            if (np == NULL) {
                /* an assigned partition it cannot track would never be
                 * stored nor seen at its end: the service must stop */
                log_error(MOD, "out of memory tracking partition %" PRId32
                          "; stopping", l->elems[i].partition);
                s->broken = 1;
                return;
            }
            s->parts = np;
            s->cap_parts = ncap;
        }
        struct spart *p = &s->parts[s->n_parts++];
        memset(p, 0, sizeof(*p));
        p->partition = l->elems[i].partition;
        p->store = -1;
    }
}

static void remove_parts(struct source_kafka *s,
                         const rd_kafka_topic_partition_list_t *l)
{
    for (int i = 0; i < l->cnt; i++) {
        for (size_t k = 0; k < s->n_parts; k++) {
            if (s->parts[k].partition == l->elems[i].partition) {
                s->parts[k] = s->parts[--s->n_parts];
                break;
            }
        }
        if (s->o.revoke != NULL) {
            s->o.revoke(s->o.arg, l->elems[i].partition);
        }
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct source_kafka *s = opaque;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info(MOD, "assigned %d partition(s) of %s", parts->cnt, s->topic);
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e != NULL) {
                log_error(MOD, "incremental assign: %s",
                          rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            }
        } else {
            rd_kafka_assign(rk, parts);
        }
        add_parts(s, parts);
        if (s->paused) {
            rd_kafka_pause_partitions(rk, parts);
        }
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        log_info(MOD, "revoked %d partition(s) of %s", parts->cnt, s->topic);
        flush_stores(s); /* auto-commit commits them on unassign */
        remove_parts(s, parts);
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
            if (e != NULL) {
                rd_kafka_error_destroy(e);
            }
        } else {
            rd_kafka_assign(rk, NULL);
        }
    } else {
        log_error(MOD, "rebalance failed: %s", rd_kafka_err2str(err));
        flush_stores(s);
        remove_parts(s, parts);
        rd_kafka_assign(rk, NULL);
    }
    watch_watermarks(s);
    if (s->o.metrics != NULL) {
        metrics_gauge(s->o.metrics, METRICS_G_ASSIGNED_PARTITIONS,
                      (double)s->n_parts);
    }
}

static void on_error(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque)
{
    (void)rk;
    struct source_kafka *s = opaque;
    kafka_health_error(s->o.health, KH_CONSUMER, err, reason,
                       clock_mono_ns() / 1000000u);
}

static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    struct source_kafka *s = opaque;
    kafka_health_stats(s->o.health, KH_CONSUMER, json, len);
    return 0; /* librdkafka frees json */
}

static void batch_eof(void *arg, int32_t partition, int64_t offset)
{
    (void)offset;
    struct spart *p = find_part(arg, partition);
    if (p != NULL) {
        p->eof = 1;
    }
}

/* Every message is taken; it says its partition is not at its end. */
static int batch_admit(void *arg, int32_t partition, int64_t offset)
{
    (void)offset;
    struct spart *p = find_part(arg, partition);
    if (p != NULL) {
        p->eof = 0;
    }
    return 1;
}

/* Seek each partition of the refused batch back to its first record. */
static void batch_refused(void *arg, const struct pipeline_record *recs,
                          size_t n)
{
    struct source_kafka *s = arg;
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        if (rd_kafka_topic_partition_list_find(l, s->topic,
                                               recs[i].partition) == NULL) {
            rd_kafka_topic_partition_list_add(l, s->topic, recs[i].partition)
                ->offset = recs[i].offset;
        }
    }
    rd_kafka_error_t *e = rd_kafka_seek_partitions(s->rk, l, -1);
    if (e != NULL) {
        log_error(MOD, "seek: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Reads what the pipeline has room for (the queue's watch calls it
 * directly, the event callbacks through it). */
static void drain(void *arg)
{
    struct source_kafka *s = arg;
    if (s->stopped || s->closed) {
        return;
    }
    const struct kafka_batch_ops ops = {
        .eof = batch_eof,
        .admit = batch_admit,
        .refused = batch_refused,
        .src = s,
        .capacity = s->paused ? NULL : s->o.capacity,
        .intake = s->o.intake,
        .arg = s->o.arg,
    };
    uint64_t taken = 0;
    if (!kafka_batch_drain(&s->batch, s->q, &ops, MAX_ROUNDS, 0, &taken)) {
        return;
    }
    /* More may be waiting: continue on the next loop turn, after other
     * events (delivery reports, Redis replies) had their say. */
    source_kafka_kick(s);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    drain(arg);
}

void source_kafka_kick(void *ctx)
{
    struct source_kafka *s = ctx;
    if (s->kick_ev != NULL) {
        event_active(s->kick_ev, 0, 0);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    drain(arg);
}

struct source_kafka *source_kafka_new(struct event_base *base,
                                      const struct source_kafka_opts *o,
                                      char *errbuf, size_t errlen)
{
    char sto[32];
    snprintf(sto, sizeof(sto), "%d", o->config->session_timeout_ms);
    char hb[32];
    snprintf(hb, sizeof(hb), "%d",
             o->config->session_timeout_ms / 3 < 3000
                 ? o->config->session_timeout_ms / 3
                 : 3000);
    const char *const props[] = {
        "group.id", o->group,
        "enable.auto.offset.store", "false",
        "enable.auto.commit", "true",
        "auto.commit.interval.ms", "1000",
        "auto.offset.reset", "earliest",
        "enable.partition.eof", "true",
        "session.timeout.ms", sto,
        "heartbeat.interval.ms", hb,
        "client.id", "cardwatch",
        /* Keep the fetcher ahead of the pipeline: with the default
         * (100000) the fetch pauses whenever the application is slower
         * than the broker, halving throughput (measured; see README). */
        "queued.min.messages", "1000000",
        /* the list ends here without a health tracker */
        o->health != NULL ? "statistics.interval.ms" : NULL,
        KAFKA_HEALTH_STATS_MS,
        NULL};
    struct source_kafka *s = calloc(1, sizeof(*s));
    rd_kafka_topic_partition_list_t *sub = NULL;
    char kerr[512];
    if (s == NULL) {
        snprintf(errbuf, errlen, "source: out of memory");
        return NULL;
    }
    s->o = *o;
    snprintf(s->topic, sizeof(s->topic), "%s", o->topic);
    if (kafka_batch_init(&s->batch, (size_t)o->batch_size) != 0) {
        snprintf(errbuf, errlen, "source: out of memory");
        goto err;
    }
    const struct kconf_hooks hooks = {
        .rebalance_cb = on_rebalance,
        .error_cb = o->health != NULL ? on_error : NULL,
        .stats_cb = o->health != NULL ? on_stats : NULL,
        .opaque = s};
    s->rk = kconf_new(o->config, o->brokers, RD_KAFKA_CONSUMER, props, &hooks,
                      errbuf, errlen);
    if (s->rk == NULL) {
        goto err;
    }
    rd_kafka_poll_set_consumer(s->rk);
    s->wmark = kafka_wmark_new(s->rk, s->topic, errbuf, errlen);
    if (s->wmark == NULL) {
        goto err;
    }
    s->q = rd_kafka_queue_get_consumer(s->rk);
    s->watch = kafka_loop_watch(base, s->q, drain, s, kerr, sizeof(kerr));
    if (s->watch == NULL) {
        snprintf(errbuf, errlen, "source: %s", kerr);
        goto err;
    }
    s->tick = event_new(base, -1, EV_PERSIST, on_tick, s);
    s->flush_ev = event_new(base, -1, 0, on_flush, s);
    s->kick_ev = event_new(base, -1, 0, on_kick, s);
    if (s->tick == NULL || s->flush_ev == NULL || s->kick_ev == NULL) {
        snprintf(errbuf, errlen, "source: out of memory");
        goto err;
    }
    sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, s->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(s->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errbuf, errlen, "subscribe to %s: %s", s->topic,
                 rd_kafka_err2str(e));
        goto err;
    }
    struct timeval tv = {0, TICK_MS * 1000};
    event_add(s->tick, &tv);
    return s;
err:
    source_kafka_destroy(s);
    return NULL;
}

void source_kafka_stop(struct source_kafka *s)
{
    s->stopped = 1;
}

int source_kafka_broken(const struct source_kafka *s)
{
    return s->broken;
}

int source_kafka_at_end(const struct source_kafka *s)
{
    if (s->n_parts == 0) {
        return 0;
    }
    for (size_t i = 0; i < s->n_parts; i++) {
        if (!s->parts[i].eof) {
            return 0;
        }
    }
    return 1;
}

int source_kafka_assigned(const struct source_kafka *s)
{
    return (int)s->n_parts;
}

int64_t source_kafka_lag(struct source_kafka *s)
{
    if (s->n_parts == 0 || s->closed) {
        return 0;
    }
    rd_kafka_topic_partition_list_t *l = assigned_list(s);
    int64_t lag = 0;
    if (rd_kafka_position(s->rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < l->cnt; i++) {
            int64_t lo = -1, hi = -1;
            if (rd_kafka_get_watermark_offsets(s->rk, s->topic,
                                               l->elems[i].partition, &lo,
                                               &hi) != 0 ||
                hi < 0) {
                continue;
            }
            /* paused: librdkafka's cached watermark is frozen */
            int64_t asked = s->wmark != NULL
                                ? kafka_wmark_high(s->wmark,
                                                   l->elems[i].partition)
                                : -1;
            if (asked > hi) {
                hi = asked;
            }
            int64_t pos = l->elems[i].offset >= 0 ? l->elems[i].offset : lo;
            if (pos >= 0 && hi > pos) {
                lag += hi - pos;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return lag;
}

int source_kafka_close(struct source_kafka *s)
{
    if (s->closed || s->rk == NULL) {
        return 0;
    }
    s->stopped = 1;
    kafka_wmark_destroy(s->wmark); /* its queries use the consumer */
    s->wmark = NULL;
    flush_stores(s);
    rd_kafka_resp_err_t cerr = rd_kafka_commit(s->rk, NULL, 0);
    if (cerr != RD_KAFKA_RESP_ERR_NO_ERROR &&
        cerr != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        log_warn(MOD, "final commit: %s", rd_kafka_err2str(cerr));
    }
    /* The queue signals the loop no more: close serves it itself. */
    kafka_loop_unwatch(s->watch);
    s->watch = NULL;
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(s->rk);
    s->closed = 1;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_warn(MOD, "consumer close: %s", rd_kafka_err2str(err));
        return -1;
    }
    return cerr == RD_KAFKA_RESP_ERR_NO_ERROR ||
                   cerr == RD_KAFKA_RESP_ERR__NO_OFFSET
               ? 0
               : -1;
}

void source_kafka_destroy(struct source_kafka *s)
{
    if (s == NULL) {
        return;
    }
    if (s->rk != NULL && !s->closed) {
        source_kafka_close(s);
    }
    kafka_loop_unwatch(s->watch); /* before its queue goes */
    kafka_wmark_destroy(s->wmark); /* before the consumer goes */
    s->wmark = NULL;
    struct event *evs[] = {s->tick, s->flush_ev, s->kick_ev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (evs[i] != NULL) {
            event_free(evs[i]);
        }
    }
    if (s->q != NULL) {
        rd_kafka_queue_destroy(s->q);
    }
    if (s->rk != NULL) {
        rd_kafka_destroy(s->rk);
    }
    kafka_batch_free(&s->batch);
    free(s->parts);
    free(s);
}
