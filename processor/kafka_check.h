/* kafka_check.h - the start-up check of a Kafka cluster: the brokers
 * answer through the configured security settings, and every topic a
 * command reads or writes exists.
 *
 * Production brokers do not create topics on first use
 * (auto.create.topics.enable=false), and librdkafka retries a failed
 * authentication or TLS handshake forever: without this check a command
 * would wait in silence (a consumer of a missing topic sees nothing, a
 * producer's messages time out after minutes). Every command that uses
 * Kafka calls kafka_check_config() before it starts its pipeline.
 */
#ifndef CARDWATCH_KAFKA_CHECK_H
#define CARDWATCH_KAFKA_CHECK_H

#include <stddef.h>

#include "config.h"

/* Outcome of kafka_check_config(). */
enum kafka_check_status {
    KCHECK_OK = 0,
    KCHECK_AUTH,     /* SASL authentication failed */
    KCHECK_TLS,      /* TLS handshake failed (CA, name, protocol) */
    KCHECK_TIMEOUT,  /* no metadata from any broker in time */
    KCHECK_MISSING,  /* a topic does not exist (or is not visible) */
    KCHECK_ERROR,    /* a bad property, out of memory */
};

/* Which of the config's topics kafka_check_config() checks. */
enum {
    KCHECK_T_INPUT = 1,        /* [kafka] transactions_topic */
    KCHECK_T_DEAD_LETTER = 2,  /* [kafka] dead_letter_topic */
    KCHECK_T_REPLAY_DL = 4,    /* [replay] dead_letter_topic */
    KCHECK_T_ALERTS = 8,       /* fallback topic + every issuer's topic */
};

/* Connects to `brokers` with the config's [kafka.common] and
 * [kafka.producer] properties (the security settings live there) on a
 * short-lived handle of its own, and waits up to [kafka]
 * connect_timeout_s for the cluster's metadata. An authentication or TLS
 * failure ends the wait at once: librdkafka would retry it forever, and
 * it does not heal itself. Then checks that the topics exist: the
 * config's topics chosen by flags (KCHECK_T_*; alert topics with `suffix`
 * appended, "" for the live ones), plus `extra` (NULL: none) described
 * as extra_what. One topic alone: flags 0 and extra. Call after
 * config_check() (it fills in the issuers' default topics).
 *
 * Blocks: call it at start-up, before the event loop runs.
 * Returns KCHECK_OK, or another status with a one-line message in errbuf
 * that names the brokers, the failure and what to check, e.g.
 *   "Kafka at h:9093: SASL authentication failed: ... (check
 *    [kafka.common] sasl.mechanisms, sasl.username and sasl.password)"
 *   "Kafka at h:9092: 1 topic(s) missing: cardwatch.alerts.acme (issuer
 *    acme). Create them first ..."
 * The message holds librdkafka's reason, never a property value. */
enum kafka_check_status kafka_check_config(const struct config *c,
                                           const char *brokers,
                                           unsigned flags, const char *suffix,
                                           const char *extra,
                                           const char *extra_what,
                                           char *errbuf, size_t errlen);

#endif
