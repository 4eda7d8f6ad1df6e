/* test_rules.c - the built-in rule set: exposure at the event time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rules.h"

/* 2021-04-13T00:00:00.000Z, the first day of a breach window */
#define WINDOW_START 1618272000000LL

static int setup(void **state)
{
    *state = rules_builtin();
    return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    rules_destroy(*state);
    return 0;
}

static struct breach make_breach(const char *id, int64_t start)
{
    struct breach b;

    memset(&b, 0, sizeof(b));
    snprintf(b.id, sizeof(b.id), "%s", id);
    b.window_start_ms = start;
    b.window_end_ms = start + 86400000LL * 30 - 1;
    b.elements = BREACH_EL_PAN | BREACH_EL_EXPIRY | BREACH_EL_CVV2;
    return b;
}

static struct txn make_txn(int64_t event_time_ms)
{
    struct txn t;

    memset(&t, 0, sizeof(t));
    snprintf(t.txn_id, sizeof(t.txn_id), "t-1");
    t.event_time_ms = event_time_ms;
    return t;
}

static void test_version(void **state)
{
    assert_string_equal(rules_version(*state), "builtin-1");
    rules_destroy(NULL);
}

static void test_fires_at_window_start(void **state)
{
    struct breach b = make_breach("shop-2021", WINDOW_START);
    struct rule_match m = {.breach = &b};
    struct txn t = make_txn(WINDOW_START);
    struct rule_facts f = {.txn = &t, .matches = &m, .n_matches = 1};
    struct rule_hit hits[ALERT_MAX_HITS];
    int active[1] = {-1};

    assert_int_equal(rules_eval(*state, &f, hits, ALERT_MAX_HITS, active), 1);
    assert_string_equal(hits[0].rule_id, "exposed-card-use");
    assert_int_equal(hits[0].severity, SEVERITY_HIGH);
    assert_int_equal(active[0], 1);

    /* well after the start (and after the window end) still counts */
    t.event_time_ms = WINDOW_START + 86400000LL * 400;
    assert_int_equal(rules_eval(*state, &f, hits, ALERT_MAX_HITS, active), 1);
    assert_int_equal(active[0], 1);
}

static void test_not_before_window_start(void **state)
{
    struct breach b = make_breach("shop-2021", WINDOW_START);
    struct rule_match m = {.breach = &b};
    struct txn t = make_txn(WINDOW_START - 1);
    struct rule_facts f = {.txn = &t, .matches = &m, .n_matches = 1};
    struct rule_hit hits[ALERT_MAX_HITS];
    int active[1] = {-1};

    assert_int_equal(rules_eval(*state, &f, hits, ALERT_MAX_HITS, active), 0);
    assert_int_equal(active[0], 0);
}

static void test_multiple_breaches(void **state)
{
    struct breach early = make_breach("early", WINDOW_START);
    struct breach exact = make_breach("exact", WINDOW_START + 5000);
    struct breach later = make_breach("later", WINDOW_START + 5001);
    struct rule_match m[3] = {
        {.breach = &later}, {.breach = &early}, {.breach = &exact}};
    struct txn t = make_txn(WINDOW_START + 5000);
    struct rule_facts f = {.txn = &t, .matches = m, .n_matches = 3};
    struct rule_hit hits[ALERT_MAX_HITS];
    int active[3] = {-1, -1, -1};

    /* one rule, one hit, however many breaches are active */
    assert_int_equal(rules_eval(*state, &f, hits, ALERT_MAX_HITS, active), 1);
    assert_string_equal(hits[0].rule_id, "exposed-card-use");
    assert_int_equal(active[0], 0);
    assert_int_equal(active[1], 1);
    assert_int_equal(active[2], 1);

    /* before all of them: no hit, no active match */
    t.event_time_ms = WINDOW_START - 1;
    assert_int_equal(rules_eval(*state, &f, hits, ALERT_MAX_HITS, active), 0);
    assert_int_equal(active[0], 0);
    assert_int_equal(active[1], 0);
    assert_int_equal(active[2], 0);

    /* active may be NULL */
    t.event_time_ms = WINDOW_START + 6000;
    assert_int_equal(rules_eval(*state, &f, hits, ALERT_MAX_HITS, NULL), 1);
}

static void test_no_matches_and_limits(void **state)
{
    struct breach b = make_breach("shop-2021", WINDOW_START);
    struct rule_match m = {.breach = &b};
    struct txn t = make_txn(WINDOW_START);
    struct rule_facts none = {.txn = &t, .matches = NULL, .n_matches = 0};
    struct rule_facts f = {.txn = &t, .matches = &m, .n_matches = 1};
    struct rule_hit hits[1];
    int active[1] = {-1};

    assert_int_equal(rules_eval(*state, &none, hits, 1, NULL), 0);
    /* no room for hits: nothing written */
    assert_int_equal(rules_eval(*state, &f, hits, 0, active), 0);
    assert_int_equal(active[0], 1);
    assert_int_equal(rules_eval(*state, NULL, hits, 1, NULL), 0);
    /* a match without breach metadata is not an exposure */
    m.breach = NULL;
    assert_int_equal(rules_eval(*state, &f, hits, 1, active), 0);
    assert_int_equal(active[0], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fires_at_window_start, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_not_before_window_start, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_multiple_breaches, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_matches_and_limits, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
