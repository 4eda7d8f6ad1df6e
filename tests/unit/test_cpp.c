/* Unit tests for cpp.c: the binomial tail against direct sums, a planted
 * breach found with its window, cash-out and popular merchants left out,
 * no suspect without a breach, the look-back's edges, distinct counts,
 * the per-day uses a report draws. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cpp.h"
#include "failalloc.h"

#define DAY (86400000LL)

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t below(uint32_t n)
{
    return (uint32_t)(rnd() % n);
}

/* Card i's fingerprint: stands in for the HMAC (any 16 bytes do). */
static void fp_of(uint32_t i, uint8_t fp[CPP_FP_LEN])
{
    uint64_t a = i * 0x9e3779b97f4a7c15ULL + 7, b = ~a * 31;
    memcpy(fp, &a, 8);
    memcpy(fp + 8, &b, 8);
}

static struct cpp *make(int64_t lookback_days)
{
    struct cpp_opts o = {lookback_days * DAY, 0.001, 3};
    struct cpp *c = cpp_new(&o);
    assert_non_null(c);
    return c;
}

static void see(struct cpp *c, uint32_t card, const char *m, int64_t t)
{
    uint8_t fp[CPP_FP_LEN];
    fp_of(card, fp);
    assert_int_equal(cpp_observe(c, fp, m, strlen(m), t), 0);
}

static double direct_tail(uint64_t k, uint64_t n, double p)
{
    double s = 0;
    for (uint64_t i = k; i <= n; i++) {
        s += exp(lgamma((double)n + 1) - lgamma((double)i + 1) -
                 lgamma((double)(n - i) + 1) + (double)i * log(p) +
                 (double)(n - i) * log1p(-p));
    }
    return log10(s);
}

static void test_binomial_tail(void **state)
{
    (void)state;
    static const struct {
        uint64_t k, n;
        double p;
    } cases[] = {{1, 1, 0.5},    {3, 10, 0.1},   {10, 10, 0.3},
                 {50, 200, 0.01}, {5, 1000, 0.004}, {400, 1000, 0.45},
                 {2, 100, 0.9},  {120, 5000, 0.002}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double got = cpp_log10_binom_tail(cases[i].k, cases[i].n, cases[i].p);
        double want = direct_tail(cases[i].k, cases[i].n, cases[i].p);
        assert_true(fabs(got - want) < 1e-6 * (1 + fabs(want)));
    }
    assert_true(cpp_log10_binom_tail(0, 10, 0.1) == 0.0);
    assert_true(cpp_log10_binom_tail(3, 10, 1.0) == 0.0);
    assert_true(isinf(cpp_log10_binom_tail(11, 10, 0.5)));
    assert_true(isinf(cpp_log10_binom_tail(1, 10, 0.0)));
    /* far in the tail: no underflow to -inf, ordered */
    double a = cpp_log10_binom_tail(300, 1000, 0.01);
    double b = cpp_log10_binom_tail(400, 1000, 0.01);
    assert_true(isfinite(a) && isfinite(b) && b < a && a < -300);
}

/* A world: cards 0..n_cards, merchants "M0".."M<n>", 3 popular merchants
 * every card visits, a day of traffic per card every few days. */
struct world {
    uint32_t n_cards, n_merchants;
    int64_t days;
};

static void background(struct cpp *c, const struct world *w)
{
    char m[16];
    for (uint32_t card = 0; card < w->n_cards; card++) {
        for (int64_t d = 0; d < w->days; d += 1 + below(6)) {
            int64_t t = d * DAY + below(86400) * 1000LL;
            if (below(4) == 0) {
                snprintf(m, sizeof(m), "POP%u", below(3));
            } else {
                snprintf(m, sizeof(m), "M%u", below(w->n_merchants));
            }
            see(c, card, m, t);
        }
    }
}

/* Background cases: n random cards (from `from`), first fraud uniform in
 * [lo, hi) days, each defrauded at the shared cash-out merchant after. */
static void background_cases(struct cpp *c, uint32_t from, uint32_t n,
                             int64_t lo, int64_t hi, int64_t *ff)
{
    for (uint32_t i = 0; i < n; i++) {
        uint8_t fp[CPP_FP_LEN];
        fp_of(from + i, fp);
        ff[from + i] = (lo + below((uint32_t)(hi - lo))) * DAY;
        assert_int_equal(cpp_add_case(c, fp, ff[from + i]), 0);
    }
}

static void test_planted_breach_ranks_first_with_its_window(void **state)
{
    (void)state;
    rng_state = 1;
    struct world w = {4000, 800, 300};
    struct cpp *c = make(120);
    int64_t *ff = calloc(w.n_cards, sizeof(*ff));
    assert_non_null(ff);
    /* cards 0..199 bought at BREACH on days 100-130; 100 of them defrauded
     * 20-50 days after; 40 background cases among cards 1000.. */
    int64_t skim[200];
    for (uint32_t i = 0; i < 200; i++) {
        skim[i] = (100 + below(30)) * DAY + below(86400) * 1000LL;
    }
    for (uint32_t i = 0; i < 100; i++) {
        uint8_t fp[CPP_FP_LEN];
        fp_of(i, fp);
        ff[i] = skim[i] + (20 + below(30)) * DAY;
        assert_int_equal(cpp_add_case(c, fp, ff[i]), 0);
    }
    background_cases(c, 1000, 40, 60, 299, ff);
    assert_int_equal(cpp_seal(c), 140);
    background(c, &w);
    for (uint32_t i = 0; i < 200; i++) {
        see(c, i, "BREACH", skim[i]);
    }
    for (uint32_t i = 0; i < w.n_cards; i++) {
        if (ff[i] != 0) { /* the fraud: every case at the cash-out */
            see(c, i, "CASHOUT", ff[i]);
            see(c, i, "CASHOUT", ff[i] + DAY);
        }
    }
    struct cpp_suspect top[10];
    size_t n;
    struct cpp_summary sum;
    assert_int_equal(cpp_rank(c, top, 10, &n, &sum), 0);
    assert_true(n >= 1);
    assert_string_equal(top[0].merchant, "BREACH");
    assert_true(top[0].significant);
    assert_int_equal(top[0].cases, 100);
    assert_int_equal(top[0].cards, 200);
    /* the estimate lies within a few days inside the true [100, 130) */
    assert_true(top[0].window_start_ms >= 100 * DAY);
    assert_true(top[0].window_start_ms < 103 * DAY);
    assert_true(top[0].window_end_ms < 130 * DAY);
    assert_true(top[0].window_end_ms >= 127 * DAY);
    for (size_t i = 1; i < (n < 10 ? n : 10); i++) {
        assert_false(top[i].significant);
        assert_string_not_equal(top[i].merchant, "CASHOUT");
    }
    assert_int_equal(sum.cases, 140);
    assert_int_equal(sum.cases_seen, 140);
    assert_true(sum.merchants >= 800 && sum.merchants <= 805);
    assert_true(fabs((double)sum.cards - 4000) < 4000 * 0.03);
    free(ff);
    cpp_destroy(c);
}

static void test_no_breach_no_suspect(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 5; seed++) {
        rng_state = seed * 1000;
        struct world w = {3000, 500, 200};
        struct cpp *c = make(90);
        int64_t *ff = calloc(w.n_cards, sizeof(*ff));
        assert_non_null(ff);
        background_cases(c, 0, 150, 30, 199, ff);
        cpp_seal(c);
        background(c, &w);
        struct cpp_suspect top[5];
        size_t n;
        assert_int_equal(cpp_rank(c, top, 5, &n, NULL), 0);
        /* popular merchants: every case used them, no surprise */
        for (size_t i = 0; i < (n < 5 ? n : 5); i++) {
            assert_false(top[i].significant);
        }
        free(ff);
        cpp_destroy(c);
    }
}

static void test_lookback_edges_and_duplicates(void **state)
{
    (void)state;
    struct cpp *c = make(10);
    uint8_t fp[CPP_FP_LEN];
    for (uint32_t i = 0; i < 3; i++) {
        fp_of(i, fp);
        assert_int_equal(cpp_add_case(c, fp, 50 * DAY), 0);
    }
    fp_of(0, fp);
    assert_int_equal(cpp_add_case(c, fp, 60 * DAY), 0); /* keeps 50 */
    assert_int_equal(cpp_add_case(c, fp, 0), -2); /* no time to look back from */
    assert_int_equal(cpp_add_case(c, fp, INT64_MIN), -2);
    assert_int_equal(cpp_add_case(c, fp, CPP_TIME_MAX_MS + 1), -2);
    assert_int_equal(cpp_seal(c), 3);
    assert_int_equal(cpp_add_case(c, fp, DAY), -1);
    int64_t from, to;
    cpp_period(c, &from, &to);
    assert_true(from == 40 * DAY && to == 50 * DAY);
    see(c, 0, "EDGE", 40 * DAY);      /* first instant of the look-back */
    see(c, 0, "EDGE", 45 * DAY);      /* same pair again */
    see(c, 1, "EDGE", 50 * DAY - 1);  /* last instant */
    see(c, 2, "EDGE", 50 * DAY);      /* the fraud instant: not counted */
    see(c, 2, "EDGE", 40 * DAY - 1);  /* before the period */
    see(c, 2, "OTHER", 49 * DAY);
    struct cpp_suspect s[4];
    size_t n;
    struct cpp_summary sum;
    assert_int_equal(cpp_rank(c, s, 4, &n, &sum), 0);
    assert_int_equal(n, 0); /* EDGE has 2 cases, below min_cases 3 */
    assert_int_equal(sum.txns, 6);
    assert_int_equal(sum.txns_in_period, 4);
    assert_int_equal(sum.cases_seen, 3);
    cpp_destroy(c);

    struct cpp_opts o = {10 * DAY, 0.01, 1};
    c = cpp_new(&o);
    assert_non_null(c);
    fp_of(0, fp);
    assert_int_equal(cpp_observe(c, fp, "X", 1, 0), -1); /* not sealed */
    cpp_add_case(c, fp, 50 * DAY);
    cpp_seal(c);
    see(c, 0, "EDGE", 40 * DAY);
    see(c, 0, "EDGE", 45 * DAY);
    assert_int_equal(cpp_rank(c, s, 4, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(s[0].cases, 1);
    assert_int_equal(s[0].cards, 1);
    assert_true(s[0].first_use_ms == 40 * DAY && s[0].last_use_ms == 45 * DAY);
    cpp_destroy(c);
}

static void test_distinct_cards_exact_then_estimated(void **state)
{
    (void)state;
    struct cpp_opts o = {1000 * DAY, 0.01, 1};
    struct cpp *c = cpp_new(&o);
    uint8_t fp[CPP_FP_LEN];
    fp_of(0, fp);
    cpp_add_case(c, fp, 1000 * DAY);
    cpp_seal(c);
    for (uint32_t i = 0; i < 128; i++) {
        see(c, i, "SMALL", DAY);
        see(c, i, "SMALL", 2 * DAY); /* again: not a new card */
    }
    for (uint32_t i = 0; i < 20000; i++) {
        see(c, i, "BIG", DAY);
    }
    see(c, 0, "BIG", 3 * DAY);
    struct cpp_suspect s[4];
    size_t n;
    assert_int_equal(cpp_rank(c, s, 4, &n, NULL), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s[i].merchant, "SMALL") == 0) {
            assert_int_equal(s[i].cards, 128);
        } else {
            assert_true(fabs((double)s[i].cards - 20000) < 20000 * 0.05);
        }
    }
    cpp_destroy(c);
}

/* The batch path counts exactly what single calls count. */
static void test_batch_equals_single_calls(void **state)
{
    (void)state;
    enum { N = 20000 };
    struct cpp_obs *obs = calloc(N, sizeof(*obs));
    static char names[N][8];
    assert_non_null(obs);
    struct cpp *one = make(60), *many = make(60);
    rng_state = 99;
    for (uint32_t i = 0; i < 300; i++) {
        uint8_t fp[CPP_FP_LEN];
        fp_of(i, fp);
        int64_t ff = (40 + below(60)) * DAY;
        cpp_add_case(one, fp, ff);
        cpp_add_case(many, fp, ff);
    }
    cpp_seal(one);
    cpp_seal(many);
    for (size_t i = 0; i < N; i++) {
        fp_of(below(2000), obs[i].fp);
        snprintf(names[i], sizeof(names[i]), "M%u", below(i < N / 2 ? 50 : 3000));
        obs[i].merchant = names[i];
        obs[i].mlen = strlen(names[i]);
        obs[i].t_ms = below(120) * DAY; /* some outside the period */
        assert_int_equal(cpp_observe(one, obs[i].fp, obs[i].merchant,
                                     obs[i].mlen, obs[i].t_ms), 0);
    }
    assert_int_equal(cpp_observe_batch(many, obs, 7), 0);
    assert_int_equal(cpp_observe_batch(many, obs + 7, N - 7), 0);
    struct cpp_suspect a[50], b[50];
    size_t na, nb;
    struct cpp_summary sa, sb;
    assert_int_equal(cpp_rank(one, a, 50, &na, &sa), 0);
    assert_int_equal(cpp_rank(many, b, 50, &nb, &sb), 0);
    assert_true(na == nb && na > 10);
    assert_memory_equal(a, b, (na < 50 ? na : 50) * sizeof(a[0]));
    assert_true(sa.txns == N && sa.txns == sb.txns &&
                sa.txns_in_period == sb.txns_in_period &&
                sa.cards == sb.cards && sa.cases_seen == sb.cases_seen);
    free(obs);
    cpp_destroy(one);
    cpp_destroy(many);
}

/* cpp_uses_by_day: the window's points (each case's first use and its
 * last when later; never a middle use, a non-case's use or one outside
 * the look-back) per UTC day, in order; nothing for a merchant no case
 * used or never seen; -1 (nothing handed out) when out of memory. */
static void test_uses_by_day(void **state)
{
    (void)state;
    struct cpp *c = make(30);
    uint8_t fp[CPP_FP_LEN];
    for (uint32_t i = 0; i < 3; i++) {
        fp_of(i, fp);
        assert_int_equal(cpp_add_case(c, fp, 50 * DAY), 0);
    }
    cpp_seal(c);
    see(c, 0, "M", 40 * DAY + 5);        /* last (given first: any order) */
    see(c, 0, "M", 30 * DAY + 3600000);  /* first */
    see(c, 0, "M", 35 * DAY);            /* a middle use: not a point */
    see(c, 1, "M", 30 * DAY + 7200000);  /* its only use */
    see(c, 2, "M", 40 * DAY + 1);        /* first and last, one day */
    see(c, 2, "M", 41 * DAY - 1);
    see(c, 2, "M", 50 * DAY);            /* the fraud itself */
    see(c, 9, "M", 33 * DAY);            /* not a case */
    see(c, 9, "QUIET", 33 * DAY);        /* no case used it */
    struct cpp_day *d = NULL;
    size_t n = 99;
    assert_int_equal(cpp_uses_by_day(c, "M", 1, &d, &n), 0);
    assert_int_equal(n, 2);
    assert_true(d[0].day_ms == 30 * DAY && d[0].uses == 2);
    assert_true(d[1].day_ms == 40 * DAY && d[1].uses == 3);
    free(d);
    /* the same points as the ranking's first and last use */
    struct cpp_suspect s[1];
    struct cpp_summary sum;
    assert_int_equal(cpp_rank(c, s, 1, &n, &sum), 0);
    assert_true(s[0].first_use_ms == 30 * DAY + 3600000 &&
                s[0].last_use_ms == 41 * DAY - 1);
    assert_int_equal(cpp_uses_by_day(c, "QUIET", 5, &d, &n), 0);
    assert_true(n == 0 && d == NULL);
    assert_int_equal(cpp_uses_by_day(c, "NEVER", 5, &d, &n), 0);
    assert_true(n == 0 && d == NULL);
    for (long k = 1;; k++) {
        failalloc_at(k);
        int rc = cpp_uses_by_day(c, "M", 1, &d, &n);
        int fired = failalloc_failed();
        failalloc_at(0);
        if (!fired) {
            assert_int_equal(rc, 0);
            assert_int_equal(n, 2);
            free(d);
            break;
        }
        assert_int_equal(rc, -1);
        assert_true(d == NULL && n == 0);
    }
    cpp_destroy(c);
}

/* More cases than the initial table holds (1024 slots, half used): the
 * table grows three times and every case is still found afterwards - a
 * second add keeps the earlier first fraud instead of adding a case, and
 * each card's use before its first fraud counts while one after it does
 * not. */
static void test_many_cases_survive_growth(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct cpp *c = make(60);
    uint8_t fp[CPP_FP_LEN];
    for (uint32_t i = 0; i < N; i++) {
        fp_of(i, fp);
        assert_int_equal(cpp_add_case(c, fp, 200 * DAY), 0);
    }
    for (uint32_t i = 0; i < N; i++) { /* after the growth: found again */
        fp_of(i, fp);
        assert_int_equal(cpp_add_case(c, fp, 300 * DAY), 0);
    }
    assert_int_equal(cpp_seal(c), N);
    for (uint32_t i = 0; i < N; i++) {
        see(c, i, "BEFORE", 199 * DAY);
        see(c, i, "AFTER", 250 * DAY); /* after the kept first fraud */
    }
    for (uint32_t i = N; i < 4 * N; i++) {
        see(c, i, i % 2 ? "BEFORE" : "OTHER", 190 * DAY);
    }
    struct cpp_suspect top[4];
    size_t n;
    struct cpp_summary sum;
    assert_int_equal(cpp_rank(c, top, 4, &n, &sum), 0);
    assert_int_equal(sum.cases, N);
    assert_int_equal(sum.cases_seen, N);
    assert_int_equal(n, 1);
    assert_string_equal(top[0].merchant, "BEFORE");
    assert_int_equal(top[0].cases, N);
    cpp_destroy(c);
}

static void test_bad_options(void **state)
{
    (void)state;
    struct cpp_opts bad[] = {{0, 0.01, 1}, {DAY, 0, 1}, {DAY, 1, 1},
                             {DAY, 0.01, 0}, {DAY, NAN, 1}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(cpp_new(&bad[i]));
    }
    assert_null(cpp_new(NULL));
    cpp_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binomial_tail),
        cmocka_unit_test(test_planted_breach_ranks_first_with_its_window),
        cmocka_unit_test(test_no_breach_no_suspect),
        cmocka_unit_test(test_lookback_edges_and_duplicates),
        cmocka_unit_test(test_distinct_cards_exact_then_estimated),
        cmocka_unit_test(test_batch_equals_single_calls),
        cmocka_unit_test(test_uses_by_day),
        cmocka_unit_test(test_many_cases_survive_growth),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
