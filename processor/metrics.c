/* metrics.c - see metrics.h. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"

#define RTT_BUCKETS 12
static const double rtt_bounds[RTT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,   0.025,   0.05,   0.1,   0.5,    1.0};

/* A histogram over rtt_bounds (seconds). */
struct hist {
    uint64_t buckets[RTT_BUCKETS];
    uint64_t count;
    double sum;
};

static void hist_add(struct hist *h, double seconds)
{
    for (int i = 0; i < RTT_BUCKETS; i++) {
        if (seconds <= rtt_bounds[i]) {
            h->buckets[i]++;
        }
    }
    h->count++;
    h->sum += seconds;
}

struct pair {
    char issuer[ISSUER_ID_MAX + 1];
    char rule[RULE_ID_MAX + 1];
    uint64_t n;
};

struct metrics {
    uint64_t events[METRICS_OUTCOME_COUNT];
    uint64_t dead[TXN_STATUS_COUNT];
    struct pair *hits; /* rule hits by issuer and rule */
    size_t n_hits, cap_hits;
    struct pair *issuers; /* alerts by issuer (rule unused) */
    size_t n_issuers, cap_issuers;
    uint64_t alerts_total;
    uint64_t severity[SEVERITY_CRITICAL + 1]; /* alerts by severity */
    struct pair *supp; /* suppressed hits by rule (issuer unused) */
    size_t n_supp, cap_supp;
    uint64_t late_events;
    uint64_t reloads[2]; /* refused, ok */
    struct hist rtt;
    struct hist loop_lag;
    uint64_t redis_reconnects;
    uint64_t lookup_cards, lookup_sent;
    char filter_gen[72]; /* marker of the exposure filter, "" = none */
    uint64_t delivery_retries;
    double gauges[METRICS_GAUGE_COUNT];
};

struct metrics *metrics_new(void)
{
    return calloc(1, sizeof(struct metrics));
}

void metrics_destroy(struct metrics *m)
{
    if (m == NULL) {
        return;
    }
    free(m->hits);
    free(m->issuers);
    free(m->supp);
    free(m);
}

void metrics_event(struct metrics *m, enum metrics_outcome o, uint64_t n)
{
    if ((unsigned)o < METRICS_OUTCOME_COUNT) {
        m->events[o] += n;
    }
}

void metrics_dead_letter(struct metrics *m, enum txn_status reason)
{
    if ((unsigned)reason < TXN_STATUS_COUNT) {
        m->dead[reason]++;
    }
}

uint64_t metrics_dead_letters(const struct metrics *m, enum txn_status reason)
{
    return (unsigned)reason < TXN_STATUS_COUNT ? m->dead[reason] : 0;
}

/* Counts one for (issuer, rule). A label longer than its field is cut to
 * it, and found again as cut: it counts on one row, never one per call. */
static int bump(struct pair **arr, size_t *n, size_t *cap, const char *issuer,
                const char *rule)
{
    struct pair key;

    snprintf(key.issuer, sizeof(key.issuer), "%s", issuer);
    snprintf(key.rule, sizeof(key.rule), "%s", rule);
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*arr)[i].issuer, key.issuer) == 0 &&
            strcmp((*arr)[i].rule, key.rule) == 0) {
            (*arr)[i].n++;
            return 0;
        }
    }
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct pair *np = realloc(*arr, ncap * sizeof(*np));
        if (np == NULL) {
            return -1;
        }
        *arr = np;
        *cap = ncap;
    }
    key.n = 1;
    (*arr)[(*n)++] = key;
    return 0;
}

int metrics_alert(struct metrics *m, const char *issuer, const char *rule)
{
    return bump(&m->hits, &m->n_hits, &m->cap_hits, issuer, rule);
}

int metrics_alert_issuer(struct metrics *m, const char *issuer)
{
    m->alerts_total++;
    return bump(&m->issuers, &m->n_issuers, &m->cap_issuers, issuer, "");
}

void metrics_alert_severity(struct metrics *m, int severity)
{
    if (severity >= SEVERITY_LOW && severity <= SEVERITY_CRITICAL) {
        m->severity[severity]++;
    }
}

int metrics_rule_suppressed(struct metrics *m, const char *rule)
{
    return bump(&m->supp, &m->n_supp, &m->cap_supp, "", rule);
}

void metrics_late_event(struct metrics *m)
{
    m->late_events++;
}

void metrics_rules_reload(struct metrics *m, int ok)
{
    m->reloads[ok ? 1 : 0]++;
}

void metrics_redis_rtt(struct metrics *m, double seconds)
{
    hist_add(&m->rtt, seconds);
}

void metrics_loop_lag(struct metrics *m, double seconds)
{
    hist_add(&m->loop_lag, seconds < 0 ? 0 : seconds);
}

void metrics_exposure_lookup(struct metrics *m, uint64_t cards,
                             uint64_t sent)
{
    m->lookup_cards += cards;
    m->lookup_sent += sent;
}

void metrics_filter_generation(struct metrics *m, const char *gen)
{
    snprintf(m->filter_gen, sizeof(m->filter_gen), "%s", gen);
}

void metrics_redis_reconnect(struct metrics *m)
{
    m->redis_reconnects++;
}

void metrics_delivery_retry(struct metrics *m)
{
    m->delivery_retries++;
}

void metrics_gauge(struct metrics *m, enum metrics_gauge g, double v)
{
    if ((unsigned)g < METRICS_GAUGE_COUNT) {
        m->gauges[g] = v;
    }
}

uint64_t metrics_events(const struct metrics *m, enum metrics_outcome o)
{
    return (unsigned)o < METRICS_OUTCOME_COUNT ? m->events[o] : 0;
}

uint64_t metrics_alerts_total(const struct metrics *m)
{
    return m->alerts_total;
}

void metrics_each_hit(const struct metrics *m,
                      void (*fn)(void *, const char *, const char *, uint64_t),
                      void *arg)
{
    for (size_t i = 0; i < m->n_hits; i++) {
        fn(arg, m->hits[i].issuer, m->hits[i].rule, m->hits[i].n);
    }
}

void metrics_each_issuer(const struct metrics *m,
                         void (*fn)(void *, const char *, uint64_t), void *arg)
{
    for (size_t i = 0; i < m->n_issuers; i++) {
        fn(arg, m->issuers[i].issuer, m->issuers[i].n);
    }
}

/* A growable string; on allocation failure it sets failed and stops. */
struct sbuf {
    char *p;
    size_t len, cap;
    int failed;
};

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *b,
                                                            const char *fmt,
                                                            ...)
{
    if (b->failed) {
        return;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *np = realloc(b->p, ncap);
        if (np == NULL) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

/* A histogram as Prometheus text: name_bucket{le}, _sum, _count. */
static void render_hist(struct sbuf *b, const char *name, const char *help,
                        const struct hist *h)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < RTT_BUCKETS; i++) {
        sb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, rtt_bounds[i],
                  (unsigned long long)h->buckets[i]);
    }
    sb_printf(b,
              "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n",
              name, (unsigned long long)h->count, name, h->sum, name,
              (unsigned long long)h->count);
}

static const char *const outcome_names[METRICS_OUTCOME_COUNT] = {
    "clean", "exposed", "alerted", "dead_letter"};

static const struct {
    const char *name;
    const char *help;
} gauge_info[METRICS_GAUGE_COUNT] = {
    {"cardwatch_in_flight_events",
     "Events consumed and not yet acknowledged."},
    {"cardwatch_consumer_lag", "Messages behind the high watermark, summed."},
    {"cardwatch_assigned_partitions", "Input partitions assigned."},
    {"cardwatch_redis_up", "1 when the Redis connection is up."},
    {"cardwatch_consumption_paused", "1 while intake is paused."},
    {"cardwatch_ready", "1 when the processor is ready."},
    {"cardwatch_exposed_set_ok",
     "1 when the exposed-card set in Redis is present and complete."},
    {"cardwatch_exposed_cards",
     "Cards of committed breaches in Redis, at the last check."},
    {"cardwatch_exposure_filter_current",
     "1 when the in-process exposure filter was built under the exposed-card "
     "set's current marker (else every card goes to Redis)."},
    {"cardwatch_exposure_filter_cards", "Cards in the exposure filter."},
    {"cardwatch_exposure_filter_bytes", "Memory of the exposure filter."},
    {"cardwatch_exposure_filter_build_seconds",
     "Duration of the last filter build (reading the cards and making it)."},
    {"cardwatch_exposure_filter_built_timestamp_seconds",
     "When the current filter was swapped in (Unix time)."},
};

long metrics_render(const struct metrics *m, const char *extra, char **out)
{
    struct sbuf b = {0};
    sb_printf(&b, "# HELP cardwatch_events_total Input events by outcome.\n"
                  "# TYPE cardwatch_events_total counter\n");
    for (int i = 0; i < METRICS_OUTCOME_COUNT; i++) {
        sb_printf(&b, "cardwatch_events_total{outcome=\"%s\"} %llu\n",
                  outcome_names[i], (unsigned long long)m->events[i]);
    }
    sb_printf(&b, "# HELP cardwatch_dead_letters_total Invalid events sent "
                  "to the dead-letter topic, by reason.\n"
                  "# TYPE cardwatch_dead_letters_total counter\n");
    for (int i = 1; i < TXN_STATUS_COUNT; i++) {
        sb_printf(&b, "cardwatch_dead_letters_total{reason=\"%s\"} %llu\n",
                  txn_status_name((enum txn_status)i),
                  (unsigned long long)m->dead[i]);
    }
    sb_printf(&b, "# HELP cardwatch_alerts_total Alerts produced, by "
                  "issuer.\n# TYPE cardwatch_alerts_total counter\n");
    for (size_t i = 0; i < m->n_issuers; i++) {
        sb_printf(&b, "cardwatch_alerts_total{issuer=\"%s\"} %llu\n",
                  m->issuers[i].issuer, (unsigned long long)m->issuers[i].n);
    }
    sb_printf(&b, "# HELP cardwatch_alerts_by_severity_total Alerts produced, "
                  "by their severity (the highest of their rule hits).\n"
                  "# TYPE cardwatch_alerts_by_severity_total counter\n");
    for (int s = SEVERITY_LOW; s <= SEVERITY_CRITICAL; s++) {
        sb_printf(&b, "cardwatch_alerts_by_severity_total{severity=\"%s\"} "
                      "%llu\n",
                  severity_name((enum severity)s),
                  (unsigned long long)m->severity[s]);
    }
    sb_printf(&b, "# HELP cardwatch_rule_hits_total Rule hits in produced "
                  "alerts, by rule and issuer.\n"
                  "# TYPE cardwatch_rule_hits_total counter\n");
    for (size_t i = 0; i < m->n_hits; i++) {
        sb_printf(&b,
                  "cardwatch_rule_hits_total{rule=\"%s\",issuer=\"%s\"} "
                  "%llu\n",
                  m->hits[i].rule, m->hits[i].issuer,
                  (unsigned long long)m->hits[i].n);
    }
    render_hist(&b, "cardwatch_redis_rtt_seconds",
                "Exposure lookup round trip (one pipelined batch).",
                &m->rtt);
    render_hist(&b, "cardwatch_event_loop_lag_seconds",
                "How late the 50 ms tick ran: the longest the event loop "
                "was busy elsewhere (a stall delays every event).",
                &m->loop_lag);
    sb_printf(&b,
              "# HELP cardwatch_redis_reconnects_total Redis reconnects.\n"
              "# TYPE cardwatch_redis_reconnects_total counter\n"
              "cardwatch_redis_reconnects_total %llu\n"
              "# HELP cardwatch_delivery_retries_total Alerts or dead "
              "letters produced again after a failed delivery.\n"
              "# TYPE cardwatch_delivery_retries_total counter\n"
              "cardwatch_delivery_retries_total %llu\n",
              (unsigned long long)m->redis_reconnects,
              (unsigned long long)m->delivery_retries);
    sb_printf(&b,
              "# HELP cardwatch_exposure_cards_total Cards looked up.\n"
              "# TYPE cardwatch_exposure_cards_total counter\n"
              "cardwatch_exposure_cards_total %llu\n"
              "# HELP cardwatch_exposure_candidates_total Cards looked up in "
              "Redis: those the filter could not rule out (all while it is "
              "not current).\n"
              "# TYPE cardwatch_exposure_candidates_total counter\n"
              "cardwatch_exposure_candidates_total %llu\n",
              (unsigned long long)m->lookup_cards,
              (unsigned long long)m->lookup_sent);
    if (m->filter_gen[0] != '\0') {
        sb_printf(&b, "# HELP cardwatch_exposure_filter_info The exposed-card "
                      "set generation (marker) the filter was built under.\n"
                      "# TYPE cardwatch_exposure_filter_info gauge\n"
                      "cardwatch_exposure_filter_info{generation=\"%s\"} 1\n",
                  m->filter_gen);
    }
    sb_printf(&b, "# HELP cardwatch_suppressed_hits_total Rule hits not "
                  "alerted because the rule fired on the card within its "
                  "suppress span.\n"
                  "# TYPE cardwatch_suppressed_hits_total counter\n");
    for (size_t i = 0; i < m->n_supp; i++) {
        sb_printf(&b, "cardwatch_suppressed_hits_total{rule=\"%s\"} %llu\n",
                  m->supp[i].rule, (unsigned long long)m->supp[i].n);
    }
    sb_printf(&b,
              "# HELP cardwatch_late_events_total Events older than the "
              "newest event of their card minus the allowed lateness.\n"
              "# TYPE cardwatch_late_events_total counter\n"
              "cardwatch_late_events_total %llu\n"
              "# HELP cardwatch_rules_reloads_total Rule reloads by "
              "result (refused: the running set stayed).\n"
              "# TYPE cardwatch_rules_reloads_total counter\n"
              "cardwatch_rules_reloads_total{result=\"ok\"} %llu\n"
              "cardwatch_rules_reloads_total{result=\"refused\"} %llu\n",
              (unsigned long long)m->late_events,
              (unsigned long long)m->reloads[1],
              (unsigned long long)m->reloads[0]);
    for (int i = 0; i < METRICS_GAUGE_COUNT; i++) {
        sb_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n",
                  gauge_info[i].name, gauge_info[i].help, gauge_info[i].name,
                  gauge_info[i].name, m->gauges[i]);
    }
    if (extra != NULL) {
        sb_printf(&b, "%s", extra);
    }
    if (b.failed) {
        free(b.p);
        *out = NULL;
        return -1;
    }
    *out = b.p;
    return (long)b.len;
}

uint64_t metrics_events_total(const struct metrics *m)
{
    uint64_t t = 0;
    for (int i = 0; i < METRICS_OUTCOME_COUNT; i++) {
        t += m->events[i];
    }
    return t;
}
