/* sink_kafka.h - alerts and dead letters to Kafka with an idempotent
 * producer; delivery reports go back to the pipeline.
 *
 * Delivery reports are served on the libevent loop (the producer's queue
 * signals a pipe). A failure that is not fatal (a timeout, a topic that
 * refuses the message) is produced again with the same opaque after a
 * back-off (100 ms doubling to 5 s while failures go on in a row; one
 * warning per 10 s), so the pipeline only hears "delivered" or "failed for
 * good". A fatal producer error (librdkafka's, e.g. idempotence refused
 * by the cluster) is logged once and sink_kafka_fatal() turns 1.
 */
#ifndef CARDWATCH_SINK_KAFKA_H
#define CARDWATCH_SINK_KAFKA_H

#include <stddef.h>

#include "config.h"
#include "kafka_health.h"
#include "metrics.h"
#include "pipeline.h"

struct event_base;
struct sink_kafka;

/* Called once per produced message: err 0 = delivered. */
typedef void (*sink_kafka_cb)(void *arg, void *opaque, int err);

/* Creates the producer. health (borrowed, may be NULL) hears its error
 * events and statistics. Returns NULL with a message in errbuf on a bad
 * configuration. */
struct sink_kafka *sink_kafka_new(struct event_base *base,
                                  const struct config *c, const char *brokers,
                                  struct metrics *metrics,
                                  struct kafka_health *health,
                                  sink_kafka_cb cb, void *cb_arg, char *errbuf,
                                  size_t errlen);

/* Matches pipeline_sink_ops.produce (ctx = the sink). Copies everything.
 * Returns 0, or -1 when the message could not be queued (logged). */
int sink_kafka_produce(void *ctx, const struct sink_msg *m, void *opaque);

/* 1 once the producer hit a fatal error (idempotence broken): the caller
 * must shut down. */
int sink_kafka_fatal(const struct sink_kafka *s);

/* Sends the waiting retries at once and waits up to timeout_ms for
 * outstanding deliveries (shutdown only: it blocks; a retry that fails
 * again meanwhile is not tried once more). Returns 0 when all were
 * reported, -1 otherwise. */
int sink_kafka_flush(struct sink_kafka *s, int timeout_ms);

/* Destroys the producer; unreported messages are lost for the pipeline
 * (their inputs stay unacknowledged). NULL is a no-op. */
void sink_kafka_destroy(struct sink_kafka *s);

#endif
