/* Unit tests for metrics.c: counting and the Prometheus text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alert.h"
#include "metrics.h"

static char *render(struct metrics *m, const char *extra)
{
    char *text = NULL;
    long n = metrics_render(m, extra, &text);
    assert_true(n > 0);
    assert_non_null(text);
    assert_int_equal((size_t)n, strlen(text));
    return text;
}

static void has(const char *text, const char *line)
{
    char want[512];
    snprintf(want, sizeof(want), "\n%s\n", line);
    if (strstr(text, want) == NULL) {
        fail_msg("missing line: %s", line);
    }
}

static void test_counters_and_labels(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    metrics_event(m, METRICS_CLEAN, 98);
    metrics_event(m, METRICS_ALERTED, 2);
    metrics_dead_letter(m, TXN_ERR_LUHN);
    metrics_alert_issuer(m, "acme");
    metrics_alert_issuer(m, "acme");
    metrics_alert_severity(m, SEVERITY_HIGH);
    metrics_alert_severity(m, SEVERITY_CRITICAL);
    metrics_alert_severity(m, SEVERITY_HIGH);
    metrics_alert_severity(m, SEVERITY_NONE); /* not a severity: not counted */
    metrics_alert_severity(m, 99);
    metrics_alert(m, "acme", "cnp-use");
    metrics_alert(m, "acme", "cnp-use");
    metrics_alert(m, "acme", "velocity");
    metrics_rule_suppressed(m, "velocity");
    metrics_late_event(m);
    metrics_rules_reload(m, 0);
    metrics_rules_reload(m, 1);
    metrics_gauge(m, METRICS_G_CONSUMER_LAG, 1234);
    metrics_redis_rtt(m, 0.0003);
    metrics_redis_rtt(m, 0.02);
    assert_int_equal(metrics_events(m, METRICS_CLEAN), 98);
    assert_int_equal(metrics_alerts_total(m), 2);
    assert_int_equal(metrics_dead_letters(m, TXN_ERR_LUHN), 1);
    assert_int_equal(metrics_dead_letters(m, TXN_ERR_EXPIRY), 0);
    assert_int_equal(metrics_dead_letters(m, (enum txn_status)-1), 0);
    char *t = render(m, "cardwatch_extra 1\n");
    has(t, "cardwatch_events_total{outcome=\"clean\"} 98");
    has(t, "cardwatch_events_total{outcome=\"alerted\"} 2");
    has(t, "cardwatch_dead_letters_total{reason=\"luhn\"} 1");
    has(t, "cardwatch_dead_letters_total{reason=\"expiry\"} 0");
    has(t, "cardwatch_alerts_total{issuer=\"acme\"} 2");
    has(t, "cardwatch_alerts_by_severity_total{severity=\"high\"} 2");
    has(t, "cardwatch_alerts_by_severity_total{severity=\"critical\"} 1");
    has(t, "cardwatch_alerts_by_severity_total{severity=\"medium\"} 0");
    has(t, "cardwatch_alerts_by_severity_total{severity=\"low\"} 0");
    has(t, "cardwatch_rule_hits_total{rule=\"cnp-use\",issuer=\"acme\"} 2");
    has(t, "cardwatch_rule_hits_total{rule=\"velocity\",issuer=\"acme\"} 1");
    has(t, "cardwatch_suppressed_hits_total{rule=\"velocity\"} 1");
    has(t, "cardwatch_late_events_total 1");
    has(t, "cardwatch_rules_reloads_total{result=\"ok\"} 1");
    has(t, "cardwatch_rules_reloads_total{result=\"refused\"} 1");
    has(t, "cardwatch_consumer_lag 1234");
    /* histogram buckets are cumulative */
    has(t, "cardwatch_redis_rtt_seconds_bucket{le=\"0.00025\"} 0");
    has(t, "cardwatch_redis_rtt_seconds_bucket{le=\"0.0005\"} 1");
    has(t, "cardwatch_redis_rtt_seconds_bucket{le=\"0.025\"} 2");
    has(t, "cardwatch_redis_rtt_seconds_bucket{le=\"+Inf\"} 2");
    has(t, "cardwatch_redis_rtt_seconds_count 2");
    assert_non_null(strstr(t, "cardwatch_extra 1\n"));
    /* every sample line belongs to a family announced by # TYPE */
    assert_non_null(strstr(t, "# TYPE cardwatch_events_total counter\n"));
    assert_non_null(
        strstr(t, "# TYPE cardwatch_redis_rtt_seconds histogram\n"));
    free(t);
    metrics_destroy(m);
}

struct seen {
    int n;
    uint64_t total;
};

static void each_hit(void *arg, const char *issuer, const char *rule,
                     uint64_t n)
{
    struct seen *s = arg;
    (void)issuer;
    (void)rule;
    s->n++;
    s->total += n;
}

static void test_each_hit(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    for (int i = 0; i < 100; i++) {
        char rule[16];
        snprintf(rule, sizeof(rule), "r%d", i % 20);
        metrics_alert(m, i % 2 ? "a" : "b", rule);
    }
    struct seen s = {0, 0};
    metrics_each_hit(m, each_hit, &s);
    assert_int_equal(s.n, 20); /* r0..r19, each with one issuer */
    assert_int_equal(s.total, 100);
    metrics_destroy(m);
    metrics_destroy(NULL);
}

struct issuers_seen {
    int n;
    char names[4][64];
    uint64_t counts[4];
};

static void each_issuer(void *arg, const char *issuer, uint64_t n)
{
    struct issuers_seen *s = arg;
    assert_true(s->n < 4);
    snprintf(s->names[s->n], sizeof(s->names[0]), "%s", issuer);
    s->counts[s->n++] = n;
}

/* The plain counters and totals the summaries and /metrics use, and
 * labels longer than their field: cut to it, and counted on one row (a
 * label that does not fit must not add a row on every call). */
static void test_totals_and_long_labels(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    char longer[80];
    struct issuers_seen s = {0};

    metrics_event(m, METRICS_CLEAN, 5);
    metrics_event(m, METRICS_EXPOSED, 3);
    metrics_event(m, METRICS_DEAD_LETTER, 2);
    metrics_event(m, (enum metrics_outcome)99, 7); /* ignored */
    assert_int_equal(metrics_events_total(m), 10);
    metrics_redis_reconnect(m);
    metrics_redis_reconnect(m);
    metrics_delivery_retry(m);

    metrics_alert_issuer(m, "acme");
    metrics_alert_issuer(m, "beta");
    metrics_alert_issuer(m, "acme");
    /* 40 characters: ISSUER_ID_MAX is 32; 70: RULE_ID_MAX is 63 */
    memset(longer, 'i', 40);
    longer[40] = '\0';
    metrics_alert_issuer(m, longer);
    metrics_alert_issuer(m, longer);
    assert_int_equal(metrics_alerts_total(m), 5);
    metrics_each_issuer(m, each_issuer, &s);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.names[0], "acme");
    assert_int_equal(s.counts[0], 2);
    assert_string_equal(s.names[1], "beta");
    assert_int_equal(s.counts[1], 1);
    assert_int_equal(strlen(s.names[2]), 32);
    assert_int_equal(s.counts[2], 2);

    memset(longer, 'r', 70);
    longer[70] = '\0';
    metrics_rule_suppressed(m, longer);
    metrics_rule_suppressed(m, longer);
    metrics_alert(m, "acme", longer);
    metrics_alert(m, "acme", longer);
    struct seen h = {0, 0};
    metrics_each_hit(m, each_hit, &h);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.total, 2);

    char *t = render(m, NULL);
    has(t, "cardwatch_redis_reconnects_total 2");
    has(t, "cardwatch_delivery_retries_total 1");
    has(t, "cardwatch_events_total{outcome=\"exposed\"} 3");
    has(t, "cardwatch_alerts_total{issuer="
           "\"iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii\"} 2");
    longer[63] = '\0';
    char want[128];
    snprintf(want, sizeof(want),
             "cardwatch_suppressed_hits_total{rule=\"%s\"} 2", longer);
    has(t, want);
    free(t);
    metrics_destroy(m);
}

/* Values outside the enums (a caller's bug) change nothing: a dead letter
 * with reason TXN_STATUS_COUNT, a gauge METRICS_GAUGE_COUNT; an outcome
 * out of range reads 0. The output is the same as before the calls. */
static void test_out_of_range_ignored(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    assert_non_null(m);
    metrics_event(m, METRICS_CLEAN, 3);
    char *before = render(m, NULL);
    metrics_dead_letter(m, TXN_STATUS_COUNT);
    metrics_gauge(m, METRICS_GAUGE_COUNT, 77);
    metrics_gauge(m, (enum metrics_gauge)-1, 78);
    assert_int_equal(metrics_events(m, METRICS_OUTCOME_COUNT), 0);
    assert_int_equal(metrics_events(m, METRICS_CLEAN), 3);
    char *after = render(m, NULL);
    assert_string_equal(before, after);
    free(before);
    free(after);
    metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_and_labels),
        cmocka_unit_test(test_each_hit),
        cmocka_unit_test(test_totals_and_long_labels),
        cmocka_unit_test(test_out_of_range_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
