/* kafka_batch.h - one batch from a consumer queue into the pipeline: the
 * read loop that the live source (source_kafka.c) and the replay's range
 * source (source_range.c) share.
 *
 * A turn takes up to a batch of messages off the queue without waiting
 * (no more than the pipeline has room for),
 * hands partition ends and each message's position to the source
 * (which decides what is its to take), gives the taken records to the
 * pipeline in one call, and when the pipeline refuses them (out of
 * memory) lets the source rewind so that nothing is skipped. Consumer
 * errors are logged and passed over (librdkafka retries them itself).
 */
#ifndef CARDWATCH_KAFKA_BATCH_H
#define CARDWATCH_KAFKA_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "pipeline.h"

struct kafka_batch {
    rd_kafka_message_t **msgs;
    struct pipeline_record *recs;
    size_t cap;
};

/* What a turn needs from its source (src is passed to eof, admit and
 * refused) and from the pipeline (arg is passed to capacity and intake,
 * as the source's own options give them). */
struct kafka_batch_ops {
    /* The end of partition was reached at offset (enable.partition.eof). */
    void (*eof)(void *src, int32_t partition, int64_t offset);
    /* 1 when the message at (partition, offset) is to be taken, 0 when it
     * is passed over (outside the source's range). */
    int (*admit)(void *src, int32_t partition, int64_t offset);
    /* The pipeline refused recs[0..n) (logged already): make the consumer
     * read them again (seek back to the first of each partition). */
    void (*refused)(void *src, const struct pipeline_record *recs, size_t n);
    void *src;
    /* How many records the pipeline takes now (0: none; it kicks the
     * source when it has room); NULL: no limit (intake is paused, so
     * nothing new arrives but what was fetched before). */
    size_t (*capacity)(void *arg);
    /* pipeline_intake(): 0 when taken, -1 when refused. */
    int (*intake)(void *arg, const struct pipeline_record *recs, size_t n);
    void *arg;
};

enum kafka_batch_turn {
    KAFKA_BATCH_DRAINED = 0, /* fewer than asked: the queue is empty */
    KAFKA_BATCH_FULL = 1,    /* as many as asked: more may be waiting */
    KAFKA_BATCH_REFUSED = 2, /* the pipeline refused the batch */
    KAFKA_BATCH_NO_ROOM = 3, /* capacity() was 0: nothing was read */
};

/* Room for cap messages (cap >= 1). Returns 0, or -1 when out of memory
 * (b is then empty: kafka_batch_free is still safe). */
int kafka_batch_init(struct kafka_batch *b, size_t cap);

/* Frees what init allocated; a zeroed or freed b is a no-op. */
void kafka_batch_free(struct kafka_batch *b);

/* One turn of up to b's cap messages from q (fewer when the pipeline's
 * capacity is lower), as described above. *taken is the number of
 * records the pipeline took (0 unless KAFKA_BATCH_DRAINED or
 * KAFKA_BATCH_FULL). */
enum kafka_batch_turn kafka_batch_turn(struct kafka_batch *b,
                                       rd_kafka_queue_t *q,
                                       const struct kafka_batch_ops *ops,
                                       size_t *taken);

/* Turns one after the other, at most max_rounds, until one is not full
 * or (budget_ns > 0) budget_ns passed since the first: one loop turn's
 * worth of reading, so that signals, timers and Redis replies are not
 * kept waiting. Adds the records taken to *taken. Returns 1 when the
 * last turn was full (more may be waiting: the caller schedules another
 * round on the next loop turn), else 0. */
int kafka_batch_drain(struct kafka_batch *b, rd_kafka_queue_t *q,
                      const struct kafka_batch_ops *ops, int max_rounds,
                      uint64_t budget_ns, uint64_t *taken);

#endif
