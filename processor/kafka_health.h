/* kafka_health.h - what the service knows about its Kafka connections,
 * for readiness, metrics and the log.
 *
 * librdkafka reports trouble in two ways, both on the loop thread (they
 * are served by the same polls that serve messages): error events
 * (error_cb: a broker went away, authentication failed, all brokers
 * down) and, every statistics.interval.ms, a JSON document with the state
 * of every broker connection (stats_cb). This module turns them into
 *   - readiness: not ready while a client has no broker connection up
 *     (after the first statistics of that client);
 *   - metrics: cardwatch_kafka_brokers_up{client},
 *     cardwatch_kafka_errors_total{client,error};
 *   - log lines: one WARN per client and error code per 10 s at most, so
 *     that a broker outage does not flood the log.
 * Pure apart from logging: the callbacks' bodies are plain functions
 * over (code, text), unit tested with made-up statistics.
 */
#ifndef CARDWATCH_KAFKA_HEALTH_H
#define CARDWATCH_KAFKA_HEALTH_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

enum kafka_client {
    KH_CONSUMER = 0,
    KH_PRODUCER,
    KH_CLIENTS
};

/* librdkafka property for the statistics this module reads (ms). */
#define KAFKA_HEALTH_STATS_MS "1000"

struct kafka_health;

/* Returns a tracker with no client seen yet, or NULL on allocation
 * failure. */
struct kafka_health *kafka_health_new(void);

/* Frees. NULL is a no-op. */
void kafka_health_destroy(struct kafka_health *h);

/* An error event of client c (librdkafka's error code and text, which
 * holds no secret). Counts it, remembers it as the client's last error
 * and logs it (rate-limited per client and code). now_ms: a monotonic
 * clock for the rate limit. */
void kafka_health_error(struct kafka_health *h, enum kafka_client c, int err,
                        const char *reason, uint64_t now_ms);

/* A statistics document of client c (not NUL-terminated; len bytes).
 * Counts the client's broker connections that are UP (real brokers
 * only: not the bootstrap entries nor the logical coordinator). Returns
 * 0, or -1 when the document does not parse (nothing changes). */
int kafka_health_stats(struct kafka_health *h, enum kafka_client c,
                       const char *json, size_t len);

/* Brokers up for client c as of its last statistics, or -1 before any. */
int kafka_health_brokers_up(const struct kafka_health *h, enum kafka_client c);

/* 1 when every client that reported statistics has a broker up; else 0
 * with "Kafka: no broker reachable by the producer (last error: ...)" in
 * why. */
int kafka_health_ok(const struct kafka_health *h, char *why, size_t whylen);

/* Writes the metrics as Prometheus text to out. */
void kafka_health_metrics(const struct kafka_health *h, FILE *out);

#endif
