/* Unit tests for timeline.c (a replay's counts per breach and UTC day)
 * and report_html.c's page rendering (the markers replaced, the data kept
 * from closing its script element). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "report_html.h"
#include "timeline.h"

#define DAY 86400000LL
#define D(n) (19800LL * DAY + (n) * DAY) /* 2024-03-18 + n days */

struct got {
    char id[4][64];
    int64_t start[4];
    struct timeline_day days[4][16];
    size_t n[4];
    int count;
};

static void collect(void *arg, const char *id, int64_t start_ms,
                    int64_t end_ms, const struct timeline_day *days, size_t n)
{
    struct got *g = arg;
    (void)end_ms;
    assert_true(g->count < 4 && n <= 16);
    snprintf(g->id[g->count], sizeof(g->id[0]), "%s", id);
    g->start[g->count] = start_ms;
    memcpy(g->days[g->count], days, n * sizeof(*days));
    g->n[g->count] = n;
    g->count++;
}

/* Days in time order whatever the order of the events; a day's counts
 * add up; events before the window start are not counted. */
static void test_days_in_order(void **state)
{
    (void)state;
    struct timeline *t = timeline_new();
    assert_non_null(t);
    int64_t at[] = {D(3) + 5, D(1) + 7, D(3) + 86399999, D(2), D(1)};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(timeline_count(t, "b1", D(1), D(30), at[i], 0), 0);
    }
    assert_int_equal(timeline_count(t, "b1", D(1), D(30), D(3) + 1, 1), 0);
    assert_int_equal(timeline_count(t, "b1", D(1), D(30), D(1) - 1, 0), 0);
    struct got g = {0};
    timeline_each(t, collect, &g);
    assert_int_equal(g.count, 1);
    assert_string_equal(g.id[0], "b1");
    assert_int_equal(g.n[0], 3);
    int64_t want_day[] = {D(1), D(2), D(3)};
    uint64_t want_exp[] = {2, 1, 2}, want_al[] = {0, 0, 1};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(g.days[0][i].day_ms, want_day[i]);
        assert_int_equal(g.days[0][i].exposed, want_exp[i]);
        assert_int_equal(g.days[0][i].alerts, want_al[i]);
    }
    timeline_destroy(t);
}

/* Breaches apart, in the order first counted; a breach with nothing
 * counted (every event before its start) is not listed; times before
 * 1970 fall on their own day. */
static void test_breaches_apart(void **state)
{
    (void)state;
    struct timeline *t = timeline_new();
    assert_int_equal(timeline_count(t, "late", D(10), D(20), D(5), 0), 0);
    assert_int_equal(timeline_count(t, "b2", D(0), D(9), D(4), 1), 0);
    assert_int_equal(timeline_count(t, "old", -3 * DAY, 0, -DAY - 1, 0), 0);
    assert_int_equal(timeline_count(t, "b1", D(0), D(9), D(4), 0), 0);
    struct got g = {0};
    timeline_each(t, collect, &g);
    assert_int_equal(g.count, 3);
    assert_string_equal(g.id[0], "b2");
    assert_string_equal(g.id[1], "old");
    assert_int_equal(g.days[1][0].day_ms, -2 * DAY);
    assert_string_equal(g.id[2], "b1");
    assert_int_equal(g.days[0][0].alerts, 1);
    assert_int_equal(g.days[2][0].exposed, 1);
    timeline_destroy(t);
    timeline_destroy(NULL);
}

struct many {
    size_t n;
    int ok;
};

static void check_many(void *arg, const char *id, int64_t s, int64_t e,
                       const struct timeline_day *days, size_t n)
{
    (void)id;
    (void)s;
    (void)e;
    struct many *r = arg;
    r->n = n;
    for (size_t i = 0; i < n; i++) {
        r->ok &= days[i].day_ms == (int64_t)i * DAY && days[i].exposed == 1;
    }
}

/* Many days, inserted out of order: still sorted, none lost. */
static void test_many_days(void **state)
{
    (void)state;
    struct timeline *t = timeline_new();
    for (int i = 0; i < 1000; i++) {
        int64_t day = (i * 379) % 1000;
        assert_int_equal(timeline_count(t, "b", 0, D(2000), day * DAY, 0),
                         0);
    }
    struct many r = {0, 1};
    timeline_each(t, check_many, &r);
    assert_int_equal(r.n, 1000);
    assert_true(r.ok);
    timeline_destroy(t);
}

/* The page: Chart.js and the data in place of the markers, every '<' of
 * the data written as \u003c (a "</script>" in a breach description or a
 * file name cannot end the element); replay's page and cpp's; an unknown
 * page is -1. */
static void test_render(void **state)
{
    (void)state;
    const char *json = "{\"input\":{\"file\":\"</script><b>x\"},\"n\":1}";
    char *page = NULL;
    size_t n = 0;
    assert_int_equal(report_html_render(json, strlen(json), &page, &n), 0);
    assert_int_equal(strlen(page), n);
    assert_null(strstr(page, "/*@CHART_JS@*/"));
    assert_null(strstr(page, "/*@REPORT_DATA@*/"));
    assert_non_null(strstr(page, "Chart.js v"));
    const char *d = strstr(page, "id=\"report-data\">");
    assert_non_null(d);
    assert_non_null(strstr(d, "{\"input\":{\"file\":\"\\u003c/script>"
                              "\\u003cb>x\"},\"n\":1}</script>"));
    assert_null(strstr(page, "</script><b>"));
    free(page);

    /* cpp's page: its own template, the same Chart.js and escaping */
    assert_int_equal(report_html_render_page(REPORT_PAGE_CPP, json,
                                             strlen(json), &page, &n),
                     0);
    assert_non_null(strstr(page, "<title>cardwatch cpp report</title>"));
    assert_non_null(strstr(page, "Chart.js v"));
    assert_null(strstr(page, "/*@REPORT_DATA@*/"));
    assert_non_null(strstr(page, "\\u003c/script>\\u003cb>x"));
    assert_null(strstr(page, "</script><b>"));
    free(page);
    page = NULL;
    assert_int_equal(report_html_render_page((enum report_page)7, json,
                                             strlen(json), &page, &n),
                     -1);
    assert_null(page);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_days_in_order),
        cmocka_unit_test(test_breaches_apart),
        cmocka_unit_test(test_many_days),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
