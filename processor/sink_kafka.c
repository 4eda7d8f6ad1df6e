/* sink_kafka.c - see sink_kafka.h. */
#include "sink_kafka.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "kafka_loop.h"
#include "kconf.h"
#include "log.h"

#define MOD "sink"

/* Retries of refused deliveries wait RETRY_MIN_MS, doubling per failure in
 * a row up to RETRY_MAX_MS (a topic that refuses every try must not turn
 * the loop into a spin); one warning per RETRY_LOG_MS says how many. */
#define RETRY_MIN_MS 100u
#define RETRY_MAX_MS 5000u
#define RETRY_LOG_MS 10000u

/* A refused message waiting for its retry (copies; the pipeline's opaque). */
struct retry {
    struct retry *next;
    char *topic;
    void *key, *value;
    size_t keylen, vallen;
    rd_kafka_headers_t *hdrs;
    void *opaque;
};

struct sink_kafka {
    rd_kafka_t *rk;
    rd_kafka_queue_t *mainq;
    struct kafka_loop_watch *watch; /* mainq signals the loop */
    struct event *tick;
    struct metrics *metrics;
    struct kafka_health *health; /* borrowed; may be NULL */
    sink_kafka_cb cb;
    void *cb_arg;
    int fatal;
    struct retry *retry_head, **retry_tail; /* in failure order */
    int n_retry;
    uint32_t backoff_ms;   /* 0 after a delivery; grows with failures */
    uint64_t retry_at_ms;  /* monotonic: the waiting ones go then */
    uint64_t warned_at_ms; /* last warning; failures not logged since: */
    uint64_t unlogged;
};

static void on_error(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque)
{
    (void)rk;
    struct sink_kafka *s = opaque;
    kafka_health_error(s->health, KH_PRODUCER, err, reason,
                       clock_mono_ns() / 1000000u);
}

static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    struct sink_kafka *s = opaque;
    kafka_health_stats(s->health, KH_PRODUCER, json, len);
    return 0; /* librdkafka frees json */
}

/* Marks the producer failed for good once librdkafka says so (logged
 * once): from a delivery report, a refused produce call or the periodic
 * check, since a fatal error at start-up (InitProducerId refused) comes
 * with no delivery report at all. Returns s->fatal. */
static int check_fatal(struct sink_kafka *s)
{
    char why[512];
    if (!s->fatal && rd_kafka_fatal_error(s->rk, why, sizeof(why)) !=
                         RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_error(MOD, "producer fatal error: %s; shutting down", why);
        s->fatal = 1;
    }
    return s->fatal;
}

static int produce_raw(struct sink_kafka *s, const char *topic,
                       const void *key, size_t keylen, const void *value,
                       size_t vallen, rd_kafka_headers_t *hdrs, void *opaque);

static void free_retry(struct retry *r)
{
    free(r->topic);
    free(r->key);
    free(r->value);
    free(r);
}

/* Produces every waiting retry (all at once: they failed for the same
 * cause, most likely). A retry that cannot be queued is reported failed. */
static void run_retries(struct sink_kafka *s)
{
    struct retry *r = s->retry_head;
    s->retry_head = NULL;
    s->retry_tail = &s->retry_head;
    s->n_retry = 0;
    while (r != NULL) {
        struct retry *next = r->next;
        if (produce_raw(s, r->topic, r->key, r->keylen, r->value, r->vallen,
                        r->hdrs, r->opaque) != 0) {
            s->cb(s->cb_arg, r->opaque, -1);
        }
        free_retry(r); /* the headers went to produce_raw */
        r = next;
    }
}

static void serve(void *arg)
{
    struct sink_kafka *s = arg;
    while (rd_kafka_poll(s->rk, 0) > 0) {
    }
    if (!check_fatal(s) && s->retry_head != NULL &&
        clock_mono_ns() / 1000000u >= s->retry_at_ms) {
        run_retries(s);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    serve(arg);
}

static int produce_raw(struct sink_kafka *s, const char *topic,
                       const void *key, size_t keylen, const void *value,
                       size_t vallen, rd_kafka_headers_t *hdrs, void *opaque)
{
    rd_kafka_resp_err_t err = rd_kafka_producev(
        s->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
        RD_KAFKA_V_VALUE((void *)value, vallen),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (!check_fatal(s)) {
            log_error(MOD, "produce to %s failed: %s", topic,
                      rd_kafka_err2str(err));
        }
        if (hdrs != NULL) {
            rd_kafka_headers_destroy(hdrs);
        }
        return -1;
    }
    return 0;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
    (void)rk;
    struct sink_kafka *s = opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        s->backoff_ms = 0;
        s->cb(s->cb_arg, m->_private, 0);
        return;
    }
    const char *topic = rd_kafka_topic_name(m->rkt);
    if (check_fatal(s)) {
        s->cb(s->cb_arg, m->_private, m->err);
        return;
    }
    /* Not fatal (a message timed out while brokers were away, a topic
     * refusing it): send it again after a back-off, for as long as it
     * takes - the input is not committed meanwhile, and the alert id makes
     * a duplicate harmless downstream. */
    uint64_t now = clock_mono_ns() / 1000000u;
    if (s->warned_at_ms == 0 || now - s->warned_at_ms >= RETRY_LOG_MS) {
        if (s->unlogged > 0) {
            log_warn(MOD, "delivery to %s failed (%s); producing again "
                     "(%llu more failed deliveries not logged in the last "
                     "%u s)", topic, rd_kafka_err2str(m->err),
                     (unsigned long long)s->unlogged, RETRY_LOG_MS / 1000u);
        } else {
            log_warn(MOD, "delivery to %s failed (%s); producing again",
                     topic, rd_kafka_err2str(m->err));
        }
        s->warned_at_ms = now;
        s->unlogged = 0;
    } else {
        s->unlogged++;
    }
    if (s->metrics != NULL) {
        metrics_delivery_retry(s->metrics);
    }
    struct retry *r = calloc(1, sizeof(*r));
    rd_kafka_headers_t *old = NULL;
    if (r != NULL) {
        r->topic = strdup(topic);
        r->key = malloc(m->key_len ? m->key_len : 1);
        r->value = malloc(m->len ? m->len : 1);
        r->keylen = m->key_len;
        r->vallen = m->len;
        r->opaque = m->_private;
    }
    if (r == NULL || r->topic == NULL || r->key == NULL || r->value == NULL) {
        log_error(MOD, "out of memory keeping a delivery to %s for its retry",
                  topic);
        if (r != NULL) {
            free_retry(r);
        }
        s->cb(s->cb_arg, m->_private, m->err);
        return;
    }
    if (m->key_len > 0) {
        memcpy(r->key, m->key, m->key_len);
    }
    if (m->len > 0) {
        memcpy(r->value, m->payload, m->len);
    }
    if (rd_kafka_message_headers(m, &old) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        old != NULL) {
        r->hdrs = rd_kafka_headers_copy(old);
    }
    if (s->retry_head == NULL) {
        s->backoff_ms = s->backoff_ms == 0 ? RETRY_MIN_MS
                        : s->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS
                                                            : s->backoff_ms * 2;
        s->retry_at_ms = now + s->backoff_ms;
    }
    *s->retry_tail = r;
    s->retry_tail = &r->next;
    s->n_retry++;
}

struct sink_kafka *sink_kafka_new(struct event_base *base,
                                  const struct config *c, const char *brokers,
                                  struct metrics *metrics,
                                  struct kafka_health *health,
                                  sink_kafka_cb cb, void *cb_arg, char *errbuf,
                                  size_t errlen)
{
    char qmax[32];
    snprintf(qmax, sizeof(qmax), "%d",
             c->max_in_flight * 2 > 100000 ? c->max_in_flight * 2 : 100000);
    const char *const base_props[] = {
        "enable.idempotence", "true",
        "acks", "all",
        "linger.ms", "5",
        "batch.num.messages", "10000",
        "queue.buffering.max.messages", qmax,
        "message.timeout.ms", "300000",
        "client.id", "cardwatch-sink",
        /* the list ends here without a health tracker */
        health != NULL ? "statistics.interval.ms" : NULL,
        KAFKA_HEALTH_STATS_MS,
        NULL};
    struct sink_kafka *s = calloc(1, sizeof(*s));
    char kerr[512];
    if (s == NULL) {
        snprintf(errbuf, errlen, "sink: out of memory");
        return NULL;
    }
    s->metrics = metrics;
    s->health = health;
    s->retry_tail = &s->retry_head;
    s->cb = cb;
    s->cb_arg = cb_arg;
    const struct kconf_hooks hooks = {
        .dr_msg_cb = on_delivery,
        .error_cb = health != NULL ? on_error : NULL,
        .stats_cb = health != NULL ? on_stats : NULL,
        .opaque = s};
    s->rk = kconf_new(c, brokers, RD_KAFKA_PRODUCER, base_props, &hooks,
                      errbuf, errlen);
    if (s->rk == NULL) {
        goto err;
    }
    s->mainq = rd_kafka_queue_get_main(s->rk);
    s->watch = kafka_loop_watch(base, s->mainq, serve, s, kerr, sizeof(kerr));
    if (s->watch == NULL) {
        snprintf(errbuf, errlen, "sink: %s", kerr);
        goto err;
    }
    s->tick = event_new(base, -1, EV_PERSIST, on_tick, s);
    if (s->tick == NULL) {
        snprintf(errbuf, errlen, "sink: out of memory");
        goto err;
    }
    struct timeval tv = {0, 100000};
    event_add(s->tick, &tv);
    return s;
err:
    sink_kafka_destroy(s);
    return NULL;
}

int sink_kafka_produce(void *ctx, const struct sink_msg *m, void *opaque)
{
    struct sink_kafka *s = ctx;
    rd_kafka_headers_t *h = NULL;
    if (m->n_hdrs > 0) {
        h = rd_kafka_headers_new(m->n_hdrs);
        for (size_t i = 0; i < m->n_hdrs; i++) {
            rd_kafka_header_add(h, m->hdrs[i].name, -1, m->hdrs[i].value,
                                -1);
        }
    }
    return produce_raw(s, m->topic, m->key, m->keylen, m->value, m->vallen,
                       h, opaque);
}

int sink_kafka_fatal(const struct sink_kafka *s)
{
    return s->fatal;
}

int sink_kafka_flush(struct sink_kafka *s, int timeout_ms)
{
    if (!s->fatal) {
        run_retries(s); /* no back-off left: this is the last chance */
    }
    return rd_kafka_flush(s->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                   s->n_retry == 0
               ? 0
               : -1;
}

void sink_kafka_destroy(struct sink_kafka *s)
{
    if (s == NULL) {
        return;
    }
    kafka_loop_unwatch(s->watch); /* before its queue goes */
    while (s->retry_head != NULL) { /* inputs stay unacknowledged */
        struct retry *r = s->retry_head;
        s->retry_head = r->next;
        if (r->hdrs != NULL) {
            rd_kafka_headers_destroy(r->hdrs);
        }
        free_retry(r);
    }
    if (s->tick != NULL) {
        event_free(s->tick);
    }
    if (s->mainq != NULL) {
        rd_kafka_queue_destroy(s->mainq);
    }
    if (s->rk != NULL) {
        rd_kafka_destroy(s->rk);
    }
    free(s);
}
