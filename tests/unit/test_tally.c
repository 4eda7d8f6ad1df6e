/* Unit tests for tally.c: alerts by rule, severity and issuer; distinct
 * cards; an alert id counted once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tally.h"

static void mk(struct alert *a, const char *issuer, const char *fp,
               enum severity sev, const char *r1, const char *r2)
{
    static unsigned serial;
    memset(a, 0, sizeof(*a));
    snprintf(a->alert_id, sizeof(a->alert_id), "%032x", ++serial);
    snprintf(a->issuer_id, sizeof(a->issuer_id), "%s", issuer);
    snprintf(a->card_fingerprint, sizeof(a->card_fingerprint), "%s", fp);
    a->severity = sev;
    snprintf(a->hits[0].rule_id, sizeof(a->hits[0].rule_id), "%s", r1);
    a->n_hits = 1;
    if (r2 != NULL) {
        snprintf(a->hits[1].rule_id, sizeof(a->hits[1].rule_id), "%s", r2);
        a->n_hits = 2;
    }
}

struct seen {
    char names[8][32];
    uint64_t n[8];
    int count;
};

static void collect(void *arg, const char *name, uint64_t n)
{
    struct seen *s = arg;
    snprintf(s->names[s->count], sizeof(s->names[0]), "%s", name);
    s->n[s->count++] = n;
}

static void test_counts(void **state)
{
    (void)state;
    struct tally *t = tally_new();
    struct alert a;
    mk(&a, "acme", "k:aa", SEVERITY_HIGH, "cnp-use", "velocity");
    assert_int_equal(tally_alert(t, &a), 1);
    mk(&a, "acme", "k:aa", SEVERITY_HIGH, "cnp-use", NULL);
    assert_int_equal(tally_alert(t, &a), 1);
    mk(&a, "", "k:bb", SEVERITY_CRITICAL, "velocity", NULL);
    assert_int_equal(tally_alert(t, &a), 1);
    mk(&a, "globex", "k:cc", SEVERITY_LOW, "zeta", NULL);
    assert_int_equal(tally_alert(t, &a), 1);
    assert_int_equal(tally_alerts(t), 4);
    assert_int_equal(tally_cards(t), 3);
    assert_int_equal(tally_severity(t, SEVERITY_HIGH), 2);
    assert_int_equal(tally_severity(t, SEVERITY_CRITICAL), 1);
    assert_int_equal(tally_severity(t, SEVERITY_LOW), 1);
    assert_int_equal(tally_severity(t, SEVERITY_MEDIUM), 0);
    struct seen s = {0};
    tally_each_rule(t, collect, &s);
    /* most first, ties by name */
    assert_int_equal(s.count, 3);
    assert_string_equal(s.names[0], "cnp-use");
    assert_int_equal(s.n[0], 2);
    assert_string_equal(s.names[1], "velocity");
    assert_int_equal(s.n[1], 2);
    assert_string_equal(s.names[2], "zeta");
    memset(&s, 0, sizeof(s));
    tally_each_issuer(t, collect, &s);
    assert_int_equal(s.count, 3);
    assert_string_equal(s.names[0], "acme");
    assert_int_equal(s.n[0], 2);
    assert_string_equal(s.names[1], "globex");
    assert_string_equal(s.names[2], "unrouted");
    tally_destroy(t);
}

/* The same alert id again (a transaction the input holds twice) is a
 * repeat: not an alert, rule hit, issuer or card more. An alert without
 * an id is always counted. */
static void test_repeats(void **state)
{
    (void)state;
    struct tally *t = tally_new();
    struct alert a, b;
    mk(&a, "acme", "k:aa", SEVERITY_HIGH, "cnp-use", NULL);
    mk(&b, "globex", "k:bb", SEVERITY_LOW, "zeta", NULL);
    assert_int_equal(tally_alert(t, &a), 1);
    assert_int_equal(tally_alert(t, &a), 0);
    assert_int_equal(tally_alert(t, &b), 1);
    assert_int_equal(tally_alert(t, &a), 0);
    assert_int_equal(tally_alerts(t), 2);
    assert_int_equal(tally_repeats(t), 2);
    assert_int_equal(tally_cards(t), 2);
    assert_int_equal(tally_severity(t, SEVERITY_HIGH), 1);
    struct seen s = {0};
    tally_each_rule(t, collect, &s);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.n[0], 1);
    assert_int_equal(s.n[1], 1);
    a.alert_id[0] = '\0';
    assert_int_equal(tally_alert(t, &a), 1);
    assert_int_equal(tally_alert(t, &a), 1);
    assert_int_equal(tally_alerts(t), 4);
    assert_int_equal(tally_repeats(t), 2);
    tally_destroy(t);
}

static void test_many_cards(void **state)
{
    (void)state;
    struct tally *t = tally_new();
    struct alert a;
    char fp[64];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 50000; i++) {
            snprintf(fp, sizeof(fp), "k:%032x", i);
            mk(&a, "acme", fp, SEVERITY_MEDIUM, "r", NULL);
            assert_int_equal(tally_alert(t, &a), 1);
        }
    }
    assert_int_equal(tally_cards(t), 50000);
    assert_int_equal(tally_alerts(t), 100000);
    assert_int_equal(tally_repeats(t), 0);
    tally_destroy(t);
    tally_destroy(NULL);
}

/* An alert with a severity out of range is counted as an alert but under
 * no severity; one without a card fingerprint adds no card; asking for a
 * severity out of range gives 0. */
static void test_odd_alerts(void **state)
{
    (void)state;
    struct tally *t = tally_new();
    struct alert a;
    mk(&a, "acme", "", SEVERITY_HIGH, "cnp-use", NULL);
    assert_int_equal(tally_alert(t, &a), 1);
    mk(&a, "acme", "k:bb", (enum severity)(SEVERITY_CRITICAL + 1), "r", NULL);
    assert_int_equal(tally_alert(t, &a), 1);
    assert_int_equal(tally_alerts(t), 2);
    assert_int_equal(tally_cards(t), 1);
    assert_int_equal(tally_severity(t, SEVERITY_HIGH), 1);
    uint64_t sum = 0;
    for (int s = 0; s <= SEVERITY_CRITICAL; s++) {
        sum += tally_severity(t, (enum severity)s);
    }
    assert_int_equal(sum, 1);
    assert_int_equal(tally_severity(t, (enum severity)(SEVERITY_CRITICAL + 1)),
                     0);
    tally_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_repeats),
        cmocka_unit_test(test_many_cards),
        cmocka_unit_test(test_odd_alerts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
