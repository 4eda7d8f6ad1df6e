/* kafka_check.h - the start-up check of a Kafka cluster: the brokers
 * answer through the configured security settings, and every topic a
 * command reads or writes exists.
 *
 * Production brokers do not create topics on first use
 * (auto.create.topics.enable=false), and librdkafka retries a failed
 * authentication or TLS handshake forever: without this check a command
 * would wait in silence (a consumer of a missing topic sees nothing, a
 * producer's messages time out after minutes). Every command that uses
 * Kafka calls kafka_check() before it starts its pipeline.
 */
#ifndef CARDWATCH_KAFKA_CHECK_H
#define CARDWATCH_KAFKA_CHECK_H

#include <stddef.h>

#include "config.h"

/* One topic to check, and where it comes from (for the message). */
struct kafka_check_topic {
    char name[CONFIG_STR_MAX + 40];
    char what[64]; /* e.g. "[kafka] transactions_topic", "issuer acme" */
};

/* Outcome of kafka_check(). */
enum kafka_check_status {
    KCHECK_OK = 0,
    KCHECK_AUTH,     /* SASL authentication failed */
    KCHECK_TLS,      /* TLS handshake failed (CA, name, protocol) */
    KCHECK_TIMEOUT,  /* no metadata from any broker in time */
    KCHECK_MISSING,  /* a topic does not exist (or is not visible) */
    KCHECK_ERROR,    /* a bad property, out of memory */
};

/* Connects to `brokers` with the config's [kafka.common] and
 * [kafka.producer] properties (the security settings live there) on a
 * short-lived handle of its own, and waits up to timeout_ms for the
 * cluster's metadata. An authentication or TLS failure ends the wait at
 * once: librdkafka would retry it forever, and it does not heal itself.
 * Then checks that each of the n topics exists.
 *
 * Blocks: call it at start-up, before the event loop runs.
 * Returns KCHECK_OK, or another status with a one-line message in errbuf
 * that names the brokers, the failure and what to check, e.g.
 *   "Kafka at h:9093: SASL authentication failed: ... (check
 *    [kafka.common] sasl.username and sasl.password)"
 *   "Kafka at h:9092: topics missing: cardwatch.alerts.acme (issuer
 *    acme); ... create them first: the brokers do not create topics on
 *    first use"
 * The message holds librdkafka's reason, never a property value. */
enum kafka_check_status kafka_check(const struct config *c,
                                    const char *brokers,
                                    const struct kafka_check_topic *topics,
                                    size_t n, int timeout_ms, char *errbuf,
                                    size_t errlen);

/* Which of the config's topics kafka_check_topics() lists. */
enum {
    KCHECK_T_INPUT = 1,        /* [kafka] transactions_topic */
    KCHECK_T_DEAD_LETTER = 2,  /* [kafka] dead_letter_topic */
    KCHECK_T_REPLAY_DL = 4,    /* [replay] dead_letter_topic */
    KCHECK_T_ALERTS = 8,       /* fallback topic + every issuer's topic */
};

/* kafka_check() of the config's topics chosen by flags (KCHECK_T_*,
 * alert topics with `suffix`), plus `extra` (NULL: none) described as
 * extra_what, waiting [kafka] connect_timeout_s. One topic alone:
 * flags 0 and extra. */
enum kafka_check_status kafka_check_config(const struct config *c,
                                           const char *brokers,
                                           unsigned flags, const char *suffix,
                                           const char *extra,
                                           const char *extra_what,
                                           char *errbuf, size_t errlen);

/* Fills out (room for max entries; c->n_issuers + 4 always suffices) with
 * the config's topics chosen by flags (KCHECK_T_*), alert topics with
 * `suffix` appended ("" for the live ones, [replay] topic_suffix for a
 * replay's). Returns how many were written. Call after config_check()
 * (it fills in the issuers' default topics). */
size_t kafka_check_topics(const struct config *c, unsigned flags,
                          const char *suffix, struct kafka_check_topic *out,
                          size_t max);

#endif
