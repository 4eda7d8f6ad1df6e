/* test_windows.c - event-time window aggregates, records, durations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "windows.h"

#define T0 1700000000000LL /* the current transaction's event time */
#define MIN_MS 60000LL
#define W10M (10 * MIN_MS)

static struct win_entry entry(const char *id, int64_t t, int64_t amount,
                              int declined, const char *merchant,
                              const char *country)
{
    struct win_entry e;

    memset(&e, 0, sizeof(e));
    snprintf(e.txn_id, sizeof(e.txn_id), "%s", id);
    e.event_time_ms = t;
    e.amount_minor = amount;
    e.declined = declined;
    snprintf(e.merchant_id, sizeof(e.merchant_id), "%s", merchant);
    snprintf(e.merchant_country, sizeof(e.merchant_country), "%s", country);
    return e;
}

/* Aggregates one window; fails the test on an error. */
static struct win_stats agg1(const struct win_entry *es, size_t n,
                             const struct win_entry *cur, int64_t w)
{
    struct win_stats s;

    assert_int_equal(win_aggregate(es, n, cur, &w, 1, &s), 0);
    return s;
}

/* ---- durations ---- */

static void test_duration_parse(void **state)
{
    static const struct {
        const char *s;
        int64_t ms; /* -1: invalid */
    } cases[] = {
        {"500ms", 500},
        {"1ms", 1},
        {"30s", 30000},
        {"10m", 600000},
        {"1h", 3600000},
        {"24h", 86400000},
        {"7d", 604800000},
        {"010m", 600000},
        {"366d", 366LL * 86400000},
        {"8784h", 366LL * 86400000},
        {"31622400000ms", 31622400000LL},
        {"367d", -1},
        {"8785h", -1},
        {"31622400001ms", -1},
        {"99999999999999999999999d", -1},
        {"0s", -1},
        {"0ms", -1},
        {"", -1},
        {"10", -1},
        {"m", -1},
        {"10x", -1},
        {"10M", -1},
        {"10mm", -1},
        {"1.5h", -1},
        {"-1h", -1},
        {"+1h", -1},
        {" 1h", -1},
        {"1h ", -1},
        {"1 h", -1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = -7;
        int rc = win_duration_parse(cases[i].s, strlen(cases[i].s), &ms);
        if (cases[i].ms < 0) {
            if (rc != -1) {
                fail_msg("'%s' parsed", cases[i].s);
            }
            assert_int_equal(ms, -7);
        } else {
            if (rc != 0 || ms != cases[i].ms) {
                fail_msg("'%s': rc %d ms %lld", cases[i].s, rc, (long long)ms);
            }
        }
    }
    /* the length bounds the text: "10mX" read as "10m" */
    int64_t ms = 0;
    assert_int_equal(win_duration_parse("10mX", 3, &ms), 0);
    assert_int_equal(ms, 600000);
    assert_int_equal(win_duration_parse(NULL, 0, &ms), -1);
    assert_int_equal(win_duration_parse("10m", 3, NULL), -1);
}

static void test_duration_format(void **state)
{
    static const struct {
        int64_t ms;
        const char *s;
    } cases[] = {
        {500, "500ms"},    {1000, "1s"},     {1500, "1500ms"},
        {90000, "90s"},    {600000, "10m"},  {5400000, "90m"},
        {3600000, "1h"},   {86400000, "1d"}, {90000000, "25h"},
        {604800000, "7d"}, {0, "0ms"},       {-5, "-5ms"},
    };
    char buf[32];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        win_duration_format(cases[i].ms, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].s);
    }
    /* cut to fit, never past the buffer */
    win_duration_format(604800000, buf, 2);
    assert_string_equal(buf, "7");
    win_duration_format(1, NULL, 0);
    /* a zero-length buffer is not written to */
    strcpy(buf, "x");
    win_duration_format(1, buf, 0);
    assert_string_equal(buf, "x");
}

/* ---- aggregation ---- */

static void test_entry_from_txn(void **state)
{
    struct txn t;
    struct win_entry e;

    (void)state;
    memset(&t, 0, sizeof(t));
    snprintf(t.txn_id, sizeof(t.txn_id), "t-9");
    snprintf(t.pan, sizeof(t.pan), "4111111111111111");
    t.event_time_ms = T0;
    t.amount_minor = 1234;
    t.response = TXN_RESPONSE_DECLINED;
    snprintf(t.merchant_id, sizeof(t.merchant_id), "m-1");
    snprintf(t.merchant_country, sizeof(t.merchant_country), "FR");
    win_entry_from_txn(&e, &t);
    assert_string_equal(e.txn_id, "t-9");
    assert_int_equal(e.event_time_ms, T0);
    assert_int_equal(e.amount_minor, 1234);
    assert_int_equal(e.declined, 1);
    assert_string_equal(e.merchant_id, "m-1");
    assert_string_equal(e.merchant_country, "FR");
    t.response = TXN_RESPONSE_APPROVED;
    win_entry_from_txn(&e, &t);
    assert_int_equal(e.declined, 0);
}

/* (T - W, T]: exactly W before T is out, one millisecond later is in. */
static void test_window_edges(void **state)
{
    struct win_entry cur = entry("cur", T0, 100, 0, "m", "FR");
    struct win_entry es[] = {
        entry("out", T0 - W10M, 1, 0, "m-out", "DE"),
        entry("in", T0 - W10M + 1, 10, 0, "m-in", "FR"),
    };
    struct win_stats s = agg1(es, 2, &cur, W10M);

    (void)state;
    assert_int_equal(s.count, 2);
    assert_int_equal(s.sum_amount, 110);
    assert_int_equal(s.distinct_merchants, 2);
    assert_int_equal(s.distinct_countries, 1);

    /* same millisecond as the current one: in */
    es[0].event_time_ms = T0;
    s = agg1(es, 2, &cur, W10M);
    assert_int_equal(s.count, 3);

    /* after the current one (arrived earlier, later event time): out */
    es[0].event_time_ms = T0 + 1;
    s = agg1(es, 2, &cur, W10M);
    assert_int_equal(s.count, 2);

    /* a 1 ms window holds exactly the current millisecond */
    es[0].event_time_ms = T0;
    s = agg1(es, 2, &cur, 1);
    assert_int_equal(s.count, 2);
}

static void test_out_of_order(void **state)
{
    struct win_entry cur = entry("c", T0, 5, 0, "m1", "FR");
    /* received in this order; event times jumbled */
    struct win_entry es[] = {
        entry("a", T0 - 2 * MIN_MS, 1, 0, "m1", "FR"),
        entry("b", T0 - 20 * MIN_MS, 2, 1, "m2", "DE"),
        entry("d", T0 - 1 * MIN_MS, 3, 1, "m3", "US"),
        entry("e", T0 + 5 * MIN_MS, 4, 1, "m4", "GB"),
        entry("f", T0 - 9 * MIN_MS, 6, 0, "m2", "DE"),
    };
    int64_t w[] = {W10M, 30 * MIN_MS, 1};
    struct win_stats s[3];

    (void)state;
    assert_int_equal(win_aggregate(es, 5, &cur, w, 3, s), 0);
    /* 10m: c, a, d, f */
    assert_int_equal(s[0].count, 4);
    assert_int_equal(s[0].count_declined, 1);
    assert_int_equal(s[0].sum_amount, 5 + 1 + 3 + 6);
    assert_int_equal(s[0].distinct_merchants, 3); /* m1 m3 m2 */
    assert_int_equal(s[0].distinct_countries, 3); /* FR US DE */
    /* 30m: also b (m2, DE: no new merchant or country) */
    assert_int_equal(s[1].count, 5);
    assert_int_equal(s[1].count_declined, 2);
    assert_int_equal(s[1].sum_amount, 17);
    assert_int_equal(s[1].distinct_merchants, 3);
    assert_int_equal(s[1].distinct_countries, 3);
    /* 1ms: the current one only */
    assert_int_equal(s[2].count, 1);
    assert_int_equal(s[2].sum_amount, 5);
    assert_int_equal(s[2].distinct_merchants, 1);
}

static void test_redelivery_counted_once(void **state)
{
    struct win_entry cur = entry("c", T0, 100, 0, "m1", "FR");
    struct win_entry es[] = {
        entry("a", T0 - 1000, 7, 1, "m2", "DE"),
        entry("a", T0 - 1000, 7, 1, "m2", "DE"),
        entry("a", T0 - 1000, 7, 1, "m2", "DE"),
        entry("b", T0 - 2000, 3, 0, "m1", "FR"),
    };
    struct win_stats s = agg1(es, 4, &cur, W10M);

    (void)state;
    assert_int_equal(s.count, 3);
    assert_int_equal(s.count_declined, 1);
    assert_int_equal(s.sum_amount, 110);
    assert_int_equal(s.distinct_merchants, 2);
    assert_int_equal(s.distinct_countries, 2);
}

static void test_current_counted_once(void **state)
{
    struct win_entry cur = entry("c", T0, 100, 1, "m1", "FR");
    struct win_entry es[] = {
        entry("a", T0 - 1000, 1, 0, "m1", "FR"),
        entry("c", T0, 100, 1, "m1", "FR"),
    };
    struct win_stats s;

    (void)state;
    /* absent from the entries: added */
    s = agg1(es, 1, &cur, W10M);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.count_declined, 1);
    assert_int_equal(s.sum_amount, 101);
    /* present (already stored): still once */
    s = agg1(es, 2, &cur, W10M);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.count_declined, 1);
    assert_int_equal(s.sum_amount, 101);
    /* no entries at all: the current one */
    s = agg1(NULL, 0, &cur, W10M);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.count_declined, 1);
    assert_int_equal(s.sum_amount, 100);
    assert_int_equal(s.distinct_merchants, 1);
    assert_int_equal(s.distinct_countries, 1);
    /* a stored copy of the current id with another time: the current
     * transaction's own values win */
    es[1].event_time_ms = T0 - 2 * W10M;
    es[1].amount_minor = 5;
    s = agg1(es, 2, &cur, W10M);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.sum_amount, 101);
}

static void test_distinct_youngest_occurrence(void **state)
{
    struct win_entry cur = entry("c", T0, 1, 0, "m1", "FR");
    /* m2 seen 20 min ago and 5 min ago: in the 10m window */
    struct win_entry es[] = {
        entry("a", T0 - 20 * MIN_MS, 1, 0, "m2", "DE"),
        entry("b", T0 - 5 * MIN_MS, 1, 0, "m2", "DE"),
        entry("d", T0 - 15 * MIN_MS, 1, 0, "m3", "US"),
        entry("e", T0 - 1000, 1, 0, "", ""), /* unknown: not counted */
    };
    int64_t w[] = {W10M, 30 * MIN_MS};
    struct win_stats s[2];

    (void)state;
    assert_int_equal(win_aggregate(es, 4, &cur, w, 2, s), 0);
    assert_int_equal(s[0].distinct_merchants, 2);
    assert_int_equal(s[0].distinct_countries, 2);
    assert_int_equal(s[0].count, 3);
    assert_int_equal(s[1].distinct_merchants, 3);
    assert_int_equal(s[1].distinct_countries, 3);
    assert_int_equal(s[1].count, 5);
}

/* Keys that fill their whole field (entries may lack a NUL: windows.h
 * reads at most the field) are equal when their bytes are; keys that are
 * prefixes of one another are distinct, wherever the hash table puts
 * them. */
static void test_distinct_full_and_prefix_keys(void **state)
{
    struct win_entry cur = entry("c", T0, 1, 0, "m", "FR");
    struct win_entry es[12];
    int64_t w = W10M;
    struct win_stats s;

    (void)state;
    /* two entries whose merchant id and country fill their fields */
    for (int i = 0; i < 2; i++) {
        char id[8];
        snprintf(id, sizeof(id), "f%d", i);
        es[i] = entry(id, T0 - 1000, 1, 0, "", "");
        memset(es[i].merchant_id, 'x', sizeof(es[i].merchant_id));
        memset(es[i].merchant_country, 'Z', sizeof(es[i].merchant_country));
    }
    s = agg1(es, 2, &cur, w);
    assert_int_equal(s.count, 3);
    assert_int_equal(s.distinct_merchants, 2);
    assert_int_equal(s.distinct_countries, 2);

    /* merchants "pppppppppppp" down to "p": twelve distinct values, the
     * longer ones inserted first */
    for (int i = 0; i < 12; i++) {
        char id[8], m[16];
        snprintf(id, sizeof(id), "p%d", i);
        memset(m, 'p', sizeof(m));
        m[12 - i] = '\0';
        es[i] = entry(id, T0 - 1000 * (i + 1), 1, 0, m, "FR");
    }
    s = agg1(es, 12, &cur, w);
    assert_int_equal(s.count, 13);
    assert_int_equal(s.distinct_merchants, 13);
    assert_int_equal(s.distinct_countries, 1);
}

/* Sums saturate at the least 64-bit integer as at the greatest. */
static void test_sum_saturates_down(void **state)
{
    struct win_entry cur = entry("c", T0, -1, 0, "m", "FR");
    struct win_entry es[] = {entry("a", T0 - 1, INT64_MIN, 0, "m", "FR")};
    struct win_stats s = agg1(es, 1, &cur, W10M);

    (void)state;
    assert_int_equal(s.count, 2);
    assert_true(s.sum_amount == INT64_MIN);
}

static void test_many_entries(void **state)
{
    /* 4096 entries: the stack path; 6000: the heap path. Half of them
     * redeliveries, every third one declined, 100 merchants, 7
     * countries. */
    static const size_t sizes[] = {4096, 6000};
    static const char *const countries[] = {"FR", "DE", "US", "GB",
                                            "IT", "ES", "NL"};

    (void)state;
    for (size_t z = 0; z < 2; z++) {
        size_t n = sizes[z];
        struct win_entry *es = calloc(n, sizeof(*es));
        struct win_entry cur = entry("cur", T0, 0, 0, "m-cur", "FR");
        int64_t w[] = {W10M, 1000LL * (int64_t)n};
        struct win_stats s[2];
        size_t unique = n / 2;
        assert_non_null(es);
        for (size_t i = 0; i < n; i++) {
            char id[32], m[32];
            size_t k = i % unique;
            snprintf(id, sizeof(id), "t-%zu", k);
            snprintf(m, sizeof(m), "m-%zu", k % 100);
            /* t-k happened k seconds ago */
            es[i] = entry(id, T0 - 1000 * (int64_t)k, 1, k % 3 == 0, m,
                          countries[k % 7]);
        }
        assert_int_equal(win_aggregate(es, n, &cur, w, 2, s), 0);
        /* 10m: t-0 .. t-599 plus cur */
        assert_int_equal(s[0].count, 601);
        assert_int_equal(s[0].count_declined, 200);
        assert_int_equal(s[0].sum_amount, 600);
        assert_int_equal(s[0].distinct_merchants, 101);
        assert_int_equal(s[0].distinct_countries, 7);
        assert_int_equal(s[1].count, (int64_t)unique + 1);
        assert_int_equal(s[1].count_declined, (int64_t)(unique + 2) / 3);
        free(es);
    }
}

static void test_aggregate_args(void **state)
{
    struct win_entry cur = entry("c", T0, INT64_MAX, 0, "m", "FR");
    struct win_entry es[] = {entry("a", T0, INT64_MAX, 0, "m", "FR")};
    int64_t w[] = {W10M, 0, -5};
    struct win_stats s[3];

    (void)state;
    assert_int_equal(win_aggregate(es, 1, NULL, w, 1, s), -1);
    assert_int_equal(win_aggregate(NULL, 1, &cur, w, 1, s), -1);
    assert_int_equal(win_aggregate(es, 1, &cur, NULL, 1, s), -1);
    assert_int_equal(win_aggregate(es, 1, &cur, w, 1, NULL), -1);
    assert_int_equal(win_aggregate(es, 1, &cur, NULL, 0, NULL), 0);
    /* sums saturate; empty windows hold nothing */
    assert_int_equal(win_aggregate(es, 1, &cur, w, 3, s), 0);
    assert_int_equal(s[0].count, 2);
    assert_true(s[0].sum_amount == INT64_MAX);
    assert_int_equal(s[1].count, 0);
    assert_int_equal(s[2].count, 0);
    assert_int_equal(s[2].distinct_merchants, 0);
    /* extreme times do not overflow the age */
    es[0].event_time_ms = INT64_MIN;
    cur.event_time_ms = INT64_MAX;
    assert_int_equal(win_aggregate(es, 1, &cur, w, 1, s), 0);
    assert_int_equal(s[0].count, 1);
}

/* ---- records ---- */

static void test_record_round_trip(void **state)
{
    struct win_entry in[] = {
        entry("t-1", T0, 12345, 1, "shop-42", "FR"),
        entry("id|with%odd chars", -3, 0, 0, "caf\xc3\xa9 | 100%", "DE"),
        entry("x", 1, 9, 0, "", ""),
    };
    char buf[512];

    (void)state;
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        struct win_entry out;
        int n = win_entry_encode(&in[i], buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal((size_t)n, strlen(buf));
        assert_null(strchr(buf, '\n'));
        assert_int_equal(win_entry_decode(buf, (size_t)n, &out), 0);
        assert_string_equal(out.txn_id, in[i].txn_id);
        assert_int_equal(out.event_time_ms, in[i].event_time_ms);
        assert_int_equal(out.amount_minor, in[i].amount_minor);
        assert_int_equal(out.declined, in[i].declined);
        assert_string_equal(out.merchant_id, in[i].merchant_id);
        assert_string_equal(out.merchant_country, in[i].merchant_country);
    }
    assert_int_equal(win_entry_encode(&in[0], buf, sizeof(buf)), 39);
    assert_string_equal(buf, "w1|1700000000000|12345|1|FR|t-1|shop-42");
    /* too small: -1, never past the buffer */
    assert_int_equal(win_entry_encode(&in[0], buf, 39), -1);
    assert_int_equal(win_entry_encode(&in[0], buf, 0), -1);
}

static void test_record_decode_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "w1",
        "w2|1|2|0|FR|t|m",
        "w1|1|2|0|FR|t",
        "w1|1|2|0|FR|t|m|x",
        "w1|x|2|0|FR|t|m",
        "w1|1|-2|0|FR|t|m",
        "w1|1|2|2|FR|t|m",
        "w1|1||0|FR|t|m",
        "w1|99999999999999999999|2|0|FR|t|m",
        "w1|1|2|0|FRA|t|m",
        "w1|1|2|0|FR|t t|m",
        "w1|1|2|0|FR|t|%G0",
        "w1|1|2|0|FR|t|%0",
        "w1|1|2|0|FR|t|%00",
        /* a sign, a version of the wrong length, a bad declined flag */
        "w1|+5|2|0|FR|t|m",
        "w12|1|2|0|FR|t|m",
        "w1|1|2|x|FR|t|m",
        /* escapes with a non-hex digit below '0', between '9' and 'A',
         * after 'f'; a bad second digit; a raw byte above 0x7e */
        "w1|1|2|0|FR|t|%-1",
        "w1|1|2|0|FR|t|%:0",
        "w1|1|2|0|FR|t|%g0",
        "w1|1|2|0|FR|t|%4g",
        "w1|1|2|0|FR|t|m\x80",
        ("w1|1|2|0|FR|"
         "12345678901234567890123456789012345678901234567890123456789012345|m"),
    };
    struct win_entry e;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (win_entry_decode(bad[i], strlen(bad[i]), &e) != -1) {
            fail_msg("decoded '%s'", bad[i]);
        }
    }
    assert_int_equal(win_entry_decode("w1|-1|0|0|||", 12, &e), 0);
    assert_int_equal(e.event_time_ms, -1);
    assert_string_equal(e.txn_id, "");
    /* the length bounds the record */
    assert_int_equal(win_entry_decode("w1|5|6|1|FR|t|m|junk", 15, &e), 0);
    assert_string_equal(e.merchant_id, "m");
    assert_int_equal(win_entry_decode(NULL, 0, &e), -1);
    assert_int_equal(win_entry_decode("w1|5|6|1|FR|t|m", 15, NULL), -1);
    /* the least 64-bit integer is a valid time */
    assert_int_equal(win_entry_decode("w1|-9223372036854775808|0|0|||", 30, &e),
                     0);
    assert_true(e.event_time_ms == INT64_MIN);
    /* escapes in either case (encode writes upper case) */
    assert_int_equal(win_entry_decode("w1|1|2|0|FR|a%7cb|caf%c3%A9", 27, &e),
                     0);
    assert_string_equal(e.txn_id, "a|b");
    assert_string_equal(e.merchant_id, "caf\xc3\xa9");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_entry_from_txn),
        cmocka_unit_test(test_window_edges),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_redelivery_counted_once),
        cmocka_unit_test(test_current_counted_once),
        cmocka_unit_test(test_distinct_youngest_occurrence),
        cmocka_unit_test(test_many_entries),
        cmocka_unit_test(test_aggregate_args),
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_record_decode_rejects),
        cmocka_unit_test(test_distinct_full_and_prefix_keys),
        cmocka_unit_test(test_sum_saturates_down),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
