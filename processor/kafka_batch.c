/* kafka_batch.c - see kafka_batch.h. */
#include "kafka_batch.h"

#include <assert.h>
#include <stdlib.h>
#include <sys/types.h>

#include "clock.h"
#include "log.h"

#define MOD "source"

int kafka_batch_init(struct kafka_batch *b, size_t cap)
{
    b->msgs = calloc(cap, sizeof(*b->msgs));
    b->recs = calloc(cap, sizeof(*b->recs));
    b->cap = cap;
    if (b->msgs == NULL || b->recs == NULL) {
        kafka_batch_free(b);
        return -1;
    }
    return 0;
}

void kafka_batch_free(struct kafka_batch *b)
{
    free(b->msgs);
    free(b->recs);
    b->msgs = NULL;
    b->recs = NULL;
    b->cap = 0;
}

enum kafka_batch_turn kafka_batch_turn(struct kafka_batch *b,
                                       rd_kafka_queue_t *q,
                                       const struct kafka_batch_ops *ops,
                                       size_t *taken)
{
    *taken = 0;
    size_t want = b->cap;
    if (ops->capacity != NULL) {
        size_t room = ops->capacity(ops->arg);
        if (room == 0) {
            return KAFKA_BATCH_NO_ROOM;
        }
        if (room < want) {
            want = room;
        }
    }
    assert(want >= 1);
    ssize_t n = rd_kafka_consume_batch_queue(q, 0, b->msgs, want);
    if (n <= 0) {
        return KAFKA_BATCH_DRAINED;
    }
    size_t nr = 0;
    for (ssize_t i = 0; i < n; i++) {
        const rd_kafka_message_t *m = b->msgs[i];
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            ops->eof(ops->src, m->partition, m->offset);
            continue;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            log_warn(MOD, "consumer: %s", rd_kafka_message_errstr(m));
            continue;
        }
        if (!ops->admit(ops->src, m->partition, m->offset)) {
            continue;
        }
        b->recs[nr] = (struct pipeline_record){
            .partition = m->partition,
            .offset = m->offset,
            .payload = m->payload,
            .len = m->len,
        };
        nr++;
    }
    int rc = nr > 0 ? ops->intake(ops->arg, b->recs, nr) : 0;
    if (rc != 0) {
        /* Not taken: rewind so that nothing is skipped. */
        log_error(MOD, "pipeline refused a batch (out of memory); "
                  "seeking back");
        ops->refused(ops->src, b->recs, nr);
    }
    for (ssize_t i = 0; i < n; i++) {
        rd_kafka_message_destroy(b->msgs[i]);
    }
    if (rc != 0) {
        return KAFKA_BATCH_REFUSED;
    }
    *taken = nr;
    return (size_t)n < want ? KAFKA_BATCH_DRAINED : KAFKA_BATCH_FULL;
}

int kafka_batch_drain(struct kafka_batch *b, rd_kafka_queue_t *q,
                      const struct kafka_batch_ops *ops, int max_rounds,
                      uint64_t budget_ns, uint64_t *taken)
{
    uint64_t t0 = budget_ns > 0 ? clock_mono_ns() : 0;
    for (int round = 0; round < max_rounds; round++) {
        if (round > 0 && budget_ns > 0 && clock_mono_ns() - t0 > budget_ns) {
            return 1;
        }
        size_t n;
        enum kafka_batch_turn t = kafka_batch_turn(b, q, ops, &n);
        *taken += n;
        if (t != KAFKA_BATCH_FULL) {
            return 0; /* NO_ROOM: the pipeline kicks the source */
        }
    }
    return 1;
}
