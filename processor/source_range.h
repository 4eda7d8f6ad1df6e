/* source_range.h - a fixed range of a Kafka topic as a pipeline source,
 * for replay.
 *
 * The consumer joins no group: partitions are assigned directly at their
 * start offsets and nothing is ever committed, so a replay never moves
 * the live service's group. Each partition is read up to (excluding) its
 * end offset; a partition whose range is empty is not assigned at all.
 * Consumer calls run on the libevent loop thread, like source_kafka.
 *
 * Use: source_range_new() creates the consumer; the caller resolves the
 * range with kafka_seek_range() on source_range_handle(); then
 * source_range_start() assigns and starts reading.
 */
#ifndef CARDWATCH_SOURCE_RANGE_H
#define CARDWATCH_SOURCE_RANGE_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "kafka_seek.h"
#include "pipeline.h"

struct event_base;
struct source_range;

struct source_range_opts {
    const struct config *config; /* borrowed; [kafka.*] properties */
    const char *brokers;
    const char *topic;
    int batch_size;
    size_t (*capacity)(void *arg);
    int (*intake)(void *arg, const struct pipeline_record *recs, size_t n);
    void *arg;
};

/* Creates the consumer (no group membership). Returns NULL with a
 * message in errbuf on a bad configuration. */
struct source_range *source_range_new(struct event_base *base,
                                      const struct source_range_opts *o,
                                      char *errbuf, size_t errlen);

/* The consumer handle, for kafka_seek_range() before start. Borrowed. */
rd_kafka_t *source_range_handle(struct source_range *s);

/* Assigns every partition with start < end at start and starts reading.
 * parts is copied. Returns 0, or -1 with a message. */
int source_range_start(struct source_range *s, const struct kseek_part *parts,
                       size_t n, char *errbuf, size_t errlen);

/* pipeline_source_ops entries (ctx = the source). store() records how far
 * each partition is done; nothing is committed. */
void source_range_store(void *ctx, int32_t partition, int64_t offset);
void source_range_set_paused(void *ctx, int paused);
void source_range_kick(void *ctx);

/* 1 once every partition was read to its end. */
int source_range_at_end(const struct source_range *s);

/* Messages in the range, and messages handed on so far. */
uint64_t source_range_total(const struct source_range *s);
uint64_t source_range_taken(const struct source_range *s);

/* Stops reading (shutdown). */
void source_range_stop(struct source_range *s);

/* Closes the consumer and frees. NULL is a no-op. */
void source_range_destroy(struct source_range *s);

#endif
