/* source_kafka.h - the transactions consumer group, on the libevent loop.
 *
 * Intake uses rd_kafka_consume_batch_queue (5-6x faster than
 * rd_kafka_consumer_poll in librdkafka 2.0.x). That API is only safe when
 * seek, pause, resume and rebalances run in sequence with it on the same
 * thread and a rebalance_cb is set; this module guarantees both: every
 * librdkafka consumer call, the rebalance callback included, runs on the
 * loop thread. Pausing drops prefetched messages; nothing handed to the
 * pipeline is dropped, and resume continues after the last message handed
 * over, so a pause loses nothing.
 *
 * Offsets: enable.auto.offset.store=false; the pipeline stores an offset
 * only when everything the message caused is acknowledged, and
 * auto-commit commits what was stored.
 */
#ifndef CARDWATCH_SOURCE_KAFKA_H
#define CARDWATCH_SOURCE_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "kafka_health.h"
#include "metrics.h"
#include "pipeline.h"

struct event_base;
struct source_kafka;

struct source_kafka_opts {
    const struct config *config; /* borrowed; kafka props, limits */
    const char *brokers;
    const char *group;
    const char *topic;
    int batch_size;
    struct metrics *metrics; /* may be NULL */
    struct kafka_health *health; /* error events, statistics; may be NULL */
    /* Into the pipeline: how many records it takes now, take them, and a
     * partition was revoked. */
    size_t (*capacity)(void *arg);
    int (*intake)(void *arg, const struct pipeline_record *recs, size_t n);
    void (*revoke)(void *arg, int32_t partition);
    void *arg;
};

/* Creates the consumer and subscribes. Returns NULL with a message in
 * errbuf on a bad configuration. */
struct source_kafka *source_kafka_new(struct event_base *base,
                                      const struct source_kafka_opts *o,
                                      char *errbuf, size_t errlen);

/* pipeline_source_ops entries (ctx = the source). store() coalesces and
 * hands offsets to librdkafka once per loop turn. */
void source_kafka_store(void *ctx, int32_t partition, int64_t offset);
void source_kafka_set_paused(void *ctx, int paused);
void source_kafka_kick(void *ctx);

/* Stops taking records (shutdown); rebalances are still served by close. */
void source_kafka_stop(struct source_kafka *s);

/* 1 once an assigned partition could not be tracked (out of memory in a
 * rebalance): its events would never be acknowledged; the caller stops
 * (exit 1) so that the group gives the partition to another member. */
int source_kafka_broken(const struct source_kafka *s);

/* 1 when at least one partition is assigned and every assigned partition
 * reached its end with nothing newer consumed. */
int source_kafka_at_end(const struct source_kafka *s);

/* Assigned partitions, and the summed lag (high watermark minus position)
 * from librdkafka's cached watermarks or, while intake is paused (no
 * fetch refreshes that cache), the newer ones a worker thread asks the
 * brokers for every second (kafka_wmark.h). No network call here. */
int source_kafka_assigned(const struct source_kafka *s);
int64_t source_kafka_lag(struct source_kafka *s);

/* Hands stored offsets to librdkafka, leaves the group and commits
 * (blocks: shutdown only). Returns 0, or -1 when the commit failed. */
int source_kafka_close(struct source_kafka *s);

/* Frees the consumer (closing it first if needed). NULL is a no-op. */
void source_kafka_destroy(struct source_kafka *s);

#endif
