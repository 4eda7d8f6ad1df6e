/* source_range.c - see source_range.h. */
#include "source_range.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
#include "kafka_batch.h"
#include "kafka_loop.h"
#include "kconf.h"
#include "log.h"

#define MOD "source"
#define TICK_MS 100
/* Batches per loop turn, and the time a turn may take (a batch of invalid
 * events costs far more than one of clean ones: see source_file.c), so
 * that signals, timers and Redis replies are never kept waiting. */
#define MAX_ROUNDS 64
#define DRAIN_NS (10 * 1000000ull)

struct rpart {
    int32_t partition;
    int64_t start, end;
    int64_t next; /* next offset expected */
    int64_t done; /* stored: everything below is finished */
    int finished; /* read up to end */
};

struct source_range {
    struct source_range_opts o;
    char topic[256];
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    struct kafka_loop_watch *watch;
    struct event *tick;
    struct event *kick_ev;
    struct kafka_batch batch;
    struct rpart *parts;
    size_t n_parts;
    uint64_t total, taken;
    int started, paused, stopped;
};

static struct rpart *find_part(struct source_range *s, int32_t partition)
{
    for (size_t i = 0; i < s->n_parts; i++) {
        if (s->parts[i].partition == partition) {
            return &s->parts[i];
        }
    }
    return NULL;
}

/* Pauses a partition that reached its end (messages past it are not
 * ours to read). */
static void finish_part(struct source_range *s, struct rpart *p)
{
    if (p->finished) {
        return;
    }
    p->finished = 1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, s->topic, p->partition);
    rd_kafka_pause_partitions(s->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    log_debug(MOD, "%s/%" PRId32 ": range read to offset %" PRId64, s->topic,
              p->partition, p->end);
}

static void batch_eof(void *arg, int32_t partition, int64_t offset)
{
    struct source_range *s = arg;
    struct rpart *p = find_part(s, partition);
    if (p != NULL && offset >= p->end) {
        finish_part(s, p);
    }
}

/* Only the range's messages are taken, each once: a message at or past a
 * partition's end finishes it; one below what was read is a redelivery
 * after a seek. */
static int batch_admit(void *arg, int32_t partition, int64_t offset)
{
    struct source_range *s = arg;
    struct rpart *p = find_part(s, partition);
    if (p == NULL || p->finished || offset < p->next || offset >= p->end) {
        if (p != NULL && offset >= p->end) {
            finish_part(s, p);
        }
        return 0;
    }
    p->next = offset + 1;
    if (p->next >= p->end) {
        finish_part(s, p);
    }
    return 1;
}

/* Read again from the first refused record of each partition. */
static void batch_refused(void *arg, const struct pipeline_record *recs,
                          size_t n)
{
    struct source_range *s = arg;
    for (size_t i = n; i-- > 0;) {
        struct rpart *p = find_part(s, recs[i].partition);
        p->next = recs[i].offset;
        p->finished = 0;
    }
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new((int)s->n_parts);
    for (size_t i = 0; i < s->n_parts; i++) {
        rd_kafka_topic_partition_list_add(l, s->topic, s->parts[i].partition)
            ->offset = s->parts[i].next;
    }
    rd_kafka_error_t *e = rd_kafka_seek_partitions(s->rk, l, -1);
    if (e != NULL) {
        log_error(MOD, "seek: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_resume_partitions(s->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Reads what the pipeline has room for (the queue's watch calls it
 * directly, the event callbacks through it). */
static void drain(void *arg)
{
    struct source_range *s = arg;
    if (!s->started || s->stopped || s->paused) {
        return;
    }
    const struct kafka_batch_ops ops = {
        .eof = batch_eof,
        .admit = batch_admit,
        .refused = batch_refused,
        .src = s,
        .capacity = s->o.capacity,
        .intake = s->o.intake,
        .arg = s->o.arg,
    };
    if (!kafka_batch_drain(&s->batch, s->q, &ops, MAX_ROUNDS, DRAIN_NS,
                           &s->taken)) {
        return;
    }
    source_range_kick(s);
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    drain(arg);
}

struct source_range *source_range_new(struct event_base *base,
                                      const struct source_range_opts *o,
                                      char *errbuf, size_t errlen)
{
    char group[64];
    /* librdkafka wants a group id to assign; it is never joined or
     * committed to (no subscribe, auto commit off). */
    snprintf(group, sizeof(group), "cardwatch-replay-%ld", (long)getpid());
    const char *const props[] = {
        "group.id", group,
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "enable.partition.eof", "true",
        "auto.offset.reset", "earliest",
        "client.id", "cardwatch-replay",
        "queued.min.messages", "1000000",
        /* The time search probes partitions one message at a time; a
         * fetch held at a partition's end by the broker (default 500 ms)
         * would stall every probe round (5.7 s vs 0.12 s per search). */
        "fetch.wait.max.ms", "10",
        NULL};
    struct source_range *s = calloc(1, sizeof(*s));
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
    s->rk = kconf_new(o->config, o->brokers, RD_KAFKA_CONSUMER, props, NULL,
                      errbuf, errlen);
    if (s->rk == NULL) {
        goto err;
    }
    rd_kafka_poll_set_consumer(s->rk);
    s->q = rd_kafka_queue_get_consumer(s->rk);
    s->tick = event_new(base, -1, EV_PERSIST, on_event, s);
    s->kick_ev = event_new(base, -1, 0, on_event, s);
    if (s->q == NULL || s->tick == NULL || s->kick_ev == NULL) {
        snprintf(errbuf, errlen, "source: out of memory");
        goto err;
    }
    s->watch = kafka_loop_watch(base, s->q, drain, s, kerr, sizeof(kerr));
    if (s->watch == NULL) {
        snprintf(errbuf, errlen, "source: %s", kerr);
        goto err;
    }
    return s;
err:
    source_range_destroy(s);
    return NULL;
}

rd_kafka_t *source_range_handle(struct source_range *s)
{
    return s->rk;
}

int source_range_start(struct source_range *s, const struct kseek_part *parts,
                       size_t n, char *errbuf, size_t errlen)
{
    s->parts = calloc(n ? n : 1, sizeof(*s->parts));
    if (s->parts == NULL) {
        snprintf(errbuf, errlen, "source: out of memory");
        return -1;
    }
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        struct rpart *p = &s->parts[s->n_parts++];
        p->partition = parts[i].partition;
        p->start = p->next = p->done = parts[i].start;
        p->end = parts[i].end;
        if (p->start >= p->end) {
            p->finished = 1;
            continue;
        }
        s->total += (uint64_t)(p->end - p->start);
        rd_kafka_topic_partition_list_add(l, s->topic, p->partition)->offset =
            p->start;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(s->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errbuf, errlen, "assign %s: %s", s->topic,
                 rd_kafka_err2str(err));
        return -1;
    }
    s->started = 1;
    struct timeval tv = {0, TICK_MS * 1000};
    event_add(s->tick, &tv);
    source_range_kick(s);
    return 0;
}

void source_range_store(void *ctx, int32_t partition, int64_t offset)
{
    struct source_range *s = ctx;
    struct rpart *p = find_part(s, partition);
    if (p != NULL && offset > p->done) {
        p->done = offset;
    }
}

void source_range_set_paused(void *ctx, int paused)
{
    struct source_range *s = ctx;
    s->paused = paused;
    if (!paused) {
        source_range_kick(s);
    }
}

void source_range_kick(void *ctx)
{
    struct source_range *s = ctx;
    if (s->kick_ev != NULL) {
        event_active(s->kick_ev, 0, 0);
    }
}

int source_range_at_end(const struct source_range *s)
{
    if (!s->started) {
        return 0;
    }
    for (size_t i = 0; i < s->n_parts; i++) {
        if (!s->parts[i].finished) {
            return 0;
        }
    }
    return 1;
}

uint64_t source_range_total(const struct source_range *s)
{
    return s->total;
}

uint64_t source_range_taken(const struct source_range *s)
{
    return s->taken;
}

void source_range_stop(struct source_range *s)
{
    s->stopped = 1;
}

void source_range_destroy(struct source_range *s)
{
    if (s == NULL) {
        return;
    }
    kafka_loop_unwatch(s->watch); /* before its queue goes */
    if (s->rk != NULL) {
        rd_kafka_assign(s->rk, NULL);
    }
    struct event *evs[] = {s->tick, s->kick_ev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (evs[i] != NULL) {
            event_free(evs[i]);
        }
    }
    if (s->q != NULL) {
        rd_kafka_queue_destroy(s->q);
    }
    if (s->rk != NULL) {
        /* No group was joined: close only stops the fetchers. */
        rd_kafka_consumer_close(s->rk);
        rd_kafka_destroy(s->rk);
    }
    kafka_batch_free(&s->batch);
    free(s->parts);
    free(s);
}
