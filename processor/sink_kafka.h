/* sink_kafka.h - alerts and dead letters to Kafka with an idempotent
 * producer; delivery reports go back to the pipeline.
 *
 * Delivery reports are served on the libevent loop (the producer's queue
 * signals a pipe). A retriable failure is produced again with the same
 * opaque, so the pipeline only hears "delivered" or "failed for good".
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

/* Messages queued and not yet reported. */
int sink_kafka_outq_len(const struct sink_kafka *s);

/* Waits up to timeout_ms for outstanding deliveries (shutdown only: it
 * blocks). Returns 0 when all were reported, -1 otherwise. */
int sink_kafka_flush(struct sink_kafka *s, int timeout_ms);

/* Destroys the producer; unreported messages are lost for the pipeline
 * (their inputs stay unacknowledged). NULL is a no-op. */
void sink_kafka_destroy(struct sink_kafka *s);

#endif
