/* cli_kafka.h - simple blocking Kafka helpers for the command-line tools
 * (gen, send, tail). Never used on the processor's event loop.
 */
#ifndef CARDWATCH_CLI_KAFKA_H
#define CARDWATCH_CLI_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct cli_producer;

/* The brokers of c (config_brokers: [kafka] brokers or brokers_file) into
 * brokers[blen], checked with kafka_check_config: they answer and topic
 * exists (named topic_what in the message, e.g. "--topic"). Blocks up to
 * [kafka] connect_timeout_s. Returns 0, or -1 with a message in errbuf. */
int cli_kafka_target(const struct config *c, const char *topic,
                     const char *topic_what, char *brokers, size_t blen,
                     char *errbuf, size_t errlen);

/* An idempotent producer. Returns NULL with a message in errbuf. */
struct cli_producer *cli_producer_new(const struct config *c,
                                      const char *brokers, char *errbuf,
                                      size_t errlen);

/* Queues one message (copied), waiting while the local queue is full.
 * timestamp_ms 0 = now. Returns 0, or -1 after logging. */
int cli_produce(struct cli_producer *p, const char *topic, const void *key,
                size_t keylen, const void *value, size_t vallen,
                int64_t timestamp_ms);

/* Flushes (up to 60 s), frees, and returns the number of messages that
 * failed delivery (0 = all delivered), or -1 when the flush timed out. */
long cli_producer_close(struct cli_producer *p);

/* Reads every partition of topic from the beginning (or the end when
 * from_end), calling fn for each message; stops at the end of all
 * partitions when exit_at_end, else runs until *stop becomes non-zero.
 * Returns 0, or -1 with a message logged. */
int cli_consume(const struct config *c, const char *brokers,
                const char *topic, int from_end, int exit_at_end,
                volatile int *stop,
                void (*fn)(void *arg, int32_t partition, int64_t offset,
                           const void *key, size_t keylen, const void *val,
                           size_t vallen),
                void *arg);

#endif
