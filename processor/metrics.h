/* metrics.h - counters, gauges and a latency histogram, rendered as
 * Prometheus text (pure; the HTTP edge serves the text).
 *
 * Hot-path counters are arrays indexed by enum; the labelled alert counter
 * is a short list (rules x issuers). Single-threaded: the loop thread owns
 * it.
 */
#ifndef CARDWATCH_METRICS_H
#define CARDWATCH_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "txn.h"

/* What became of one input event. */
enum metrics_outcome {
    METRICS_CLEAN = 0,   /* valid, card not exposed */
    METRICS_EXPOSED,     /* exposed card, no rule fired */
    METRICS_ALERTED,     /* exposed card, alert produced */
    METRICS_DEAD_LETTER, /* invalid, sent to the dead-letter topic */
    METRICS_OUTCOME_COUNT
};

enum metrics_gauge {
    METRICS_G_IN_FLIGHT = 0,
    METRICS_G_CONSUMER_LAG,
    METRICS_G_ASSIGNED_PARTITIONS,
    METRICS_G_REDIS_UP,
    METRICS_G_PAUSED,
    METRICS_G_READY,
    METRICS_G_EXPOSED_SET_OK, /* the exposed-card set passed its check */
    METRICS_G_EXPOSED_CARDS,  /* cards of committed breaches in Redis */
    METRICS_G_FILTER_CURRENT, /* the in-process filter is current */
    METRICS_G_FILTER_CARDS,   /* cards in the filter */
    METRICS_G_FILTER_BYTES,   /* its size */
    METRICS_G_FILTER_BUILD_SECONDS, /* its last build (read + make) */
    METRICS_G_FILTER_BUILT_AT, /* when it was swapped in (Unix s) */
    METRICS_GAUGE_COUNT
};

struct metrics;

/* Returns zeroed metrics, or NULL on allocation failure. */
struct metrics *metrics_new(void);

/* Frees. NULL is a no-op. */
void metrics_destroy(struct metrics *m);

/* Counts n events with outcome o. */
void metrics_event(struct metrics *m, enum metrics_outcome o, uint64_t n);

/* Counts a dead letter by its reason. */
void metrics_dead_letter(struct metrics *m, enum txn_status reason);

/* Dead letters counted with this reason so far (0 for a reason out of
 * range). */
uint64_t metrics_dead_letters(const struct metrics *m,
                              enum txn_status reason);

/* Counts one alert (issuer) and one hit per rule. Returns 0, or -1 when
 * a new label pair could not be allocated (the count is lost, not the
 * alert). */
int metrics_alert(struct metrics *m, const char *issuer, const char *rule);

/* Counts one alert per issuer (call once per alert). */
int metrics_alert_issuer(struct metrics *m, const char *issuer);

/* Counts one alert at its severity (enum severity, alert.h: 1 low .. 4
 * critical; anything else is not counted). Call once per alert. */
void metrics_alert_severity(struct metrics *m, int severity);

/* Counts a rule hit that was suppressed (suppress span) on a card. */
int metrics_rule_suppressed(struct metrics *m, const char *rule);

/* Counts an event later than the allowed lateness on its card. */
void metrics_late_event(struct metrics *m);

/* Counts a rule reload: ok 1 = loaded, 0 = refused (old set kept). */
void metrics_rules_reload(struct metrics *m, int ok);

/* Records one Redis round trip of the given duration. */
void metrics_redis_rtt(struct metrics *m, double seconds);

/* Records how late the event loop's periodic tick ran (seconds past
 * its due time): a stall of the loop shows here. */
void metrics_loop_lag(struct metrics *m, double seconds);

/* Counts an exposure lookup: cards asked, and of them those sent to
 * Redis (the rest the filter answered as not exposed). */
void metrics_exposure_lookup(struct metrics *m, uint64_t cards,
                             uint64_t sent);

/* The generation (the set's marker: 32 hex) the exposure filter was built
 * under, shown as cardwatch_exposure_filter_info{generation}. Copied. */
void metrics_filter_generation(struct metrics *m, const char *gen);

/* Counts a Redis reconnect / a delivery retry. */
void metrics_redis_reconnect(struct metrics *m);
void metrics_delivery_retry(struct metrics *m);

/* Sets a gauge. */
void metrics_gauge(struct metrics *m, enum metrics_gauge g, double v);

/* Totals for progress lines and summaries. */
uint64_t metrics_events(const struct metrics *m, enum metrics_outcome o);
uint64_t metrics_alerts_total(const struct metrics *m);
/* Events of every outcome: everything taken from the input. */
uint64_t metrics_events_total(const struct metrics *m);

/* Calls fn for each (issuer, rule, hits) pair, in insertion order. */
void metrics_each_hit(const struct metrics *m,
                      void (*fn)(void *arg, const char *issuer,
                                 const char *rule, uint64_t n),
                      void *arg);

/* Calls fn for each (issuer, alerts) pair. */
void metrics_each_issuer(const struct metrics *m,
                         void (*fn)(void *arg, const char *issuer,
                                    uint64_t n),
                         void *arg);

/* Renders everything as Prometheus text exposition format into a malloc'd
 * NUL-terminated string (*out, caller frees). extra (may be NULL) is
 * appended verbatim (lines already in exposition format). Returns the
 * length, or -1 on allocation failure. */
long metrics_render(const struct metrics *m, const char *extra, char **out);

#endif
