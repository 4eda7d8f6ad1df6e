/* test_sim.c - the simulated history with an injected breach: order,
 * determinism, the skimmed cards and their frauds, the truth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "card.h"
#include "sim.h"
#include "txn.h"

#define DAY INT64_C(86400000)

static const char *const prefixes[] = {"400000", "5100001"};

/* A small history: 2,000 cards, 1,000 merchants, 400,000 transactions
 * over a year (200 a card), the breach over days 91-150. */
static void small(struct sim_opts *o, uint64_t seed)
{
    sim_opts_init(o);
    o->seed = seed;
    o->prefixes = prefixes;
    o->n_prefixes = 2;
    o->count = 400000;
    o->cards = 2000;
    o->merchants = 1000;
    o->background_frauds = 20;
}

static struct sim *make(const struct sim_opts *o)
{
    char err[256] = "";
    struct sim *s = sim_new(o, err, sizeof(err));
    if (s == NULL) {
        fail_msg("sim_new: %s", err);
    }
    return s;
}

/* What a whole run showed, per card. */
struct seen {
    int64_t *cnp_at_breach;  /* first CNP at the breach in the window */
    int64_t *first_fraud;    /* first fraud transaction */
    int *fraud_txns;
    uint8_t *popular;        /* bit r: visited popular merchant r */
    int *linked;             /* kind of its fraud: 1 linked, 0 background */
    uint64_t *by_merchant;   /* cardholder transactions by merchant no. */
    uint64_t popular_txns, txns;
};

static void seen_free(struct seen *v)
{
    free(v->cnp_at_breach);
    free(v->first_fraud);
    free(v->fraud_txns);
    free(v->popular);
    free(v->linked);
    free(v->by_merchant);
}

/* Runs s to the end, checking every transaction on the way (valid, in
 * event-time order, fraud on F merchants abroad only) into *v. */
static void run(struct sim *s, const struct sim_opts *o, struct seen *v)
{
    uint32_t n = sim_cards(s);
    v->cnp_at_breach = malloc(n * sizeof(int64_t));
    v->first_fraud = malloc(n * sizeof(int64_t));
    v->fraud_txns = calloc(n, sizeof(int));
    v->popular = calloc(n, 1);
    v->linked = calloc(n, sizeof(int));
    v->by_merchant = calloc(o->merchants, sizeof(uint64_t));
    assert_non_null(v->by_merchant);
    assert_non_null(v->cnp_at_breach);
    assert_non_null(v->first_fraud);
    for (uint32_t i = 0; i < n; i++) {
        v->cnp_at_breach[i] = v->first_fraud[i] = -1;
    }
    v->popular_txns = v->txns = 0;
    struct sim_truth tr;
    sim_truth(s, &tr);
    int64_t prev = 0;
    struct txn t;
    sim_card_no c;
    enum sim_kind k;
    while ((k = sim_next(s, &t, &c)) != SIM_DONE) {
        v->txns++;
        assert_true(t.event_time_ms >= prev);
        assert_true(t.event_time_ms >= o->start_ms);
        assert_true(t.event_time_ms < o->start_ms + o->days * DAY);
        prev = t.event_time_ms;
        assert_string_equal(t.pan, sim_card(s, c)->pan);
        assert_int_equal(txn_validate(&t), TXN_OK);
        int cnp = t.channel == TXN_CHANNEL_ECOMMERCE ||
                  t.channel == TXN_CHANNEL_MOTO;
        if (k != SIM_CARDHOLDER) {
            assert_int_equal(t.merchant_id[0], 'F');
            assert_true(cnp);
            assert_null(strstr("DE FR NL AT US GB ES IT PL",
                               t.merchant_country));
            if (v->first_fraud[c] < 0) {
                v->first_fraud[c] = t.event_time_ms;
                v->linked[c] = k == SIM_FRAUD_LINKED;
            }
            assert_int_equal(v->linked[c], k == SIM_FRAUD_LINKED);
            v->fraud_txns[c]++;
            continue;
        }
        assert_int_equal(t.merchant_id[0], 'M');
        unsigned long mn = strtoul(t.merchant_id + 1, NULL, 10);
        assert_true(mn < o->merchants);
        v->by_merchant[mn]++;
        for (int r = 0; r < SIM_POPULAR; r++) {
            if (strcmp(t.merchant_id, tr.popular[r]) == 0) {
                v->popular[c] |= (uint8_t)(1u << r);
                v->popular_txns++;
            }
        }
        if (tr.breach && cnp && strcmp(t.merchant_id, tr.merchant) == 0 &&
            t.event_time_ms >= tr.window_start_ms &&
            t.event_time_ms <= tr.window_end_ms &&
            v->cnp_at_breach[c] < 0) {
            v->cnp_at_breach[c] = t.event_time_ms;
        }
    }
    assert_int_equal(v->txns, o->count);
    assert_int_equal(sim_next(s, &t, &c), SIM_DONE);
}

static void test_same_seed_same_history(void **state)
{
    (void)state;
    struct sim_opts o;
    small(&o, 42);
    struct sim *a = make(&o), *b = make(&o);
    o.seed = 43;
    struct sim *c = make(&o);
    int differs = 0;
    struct txn ta, tb, tc;
    while (sim_next(a, &ta, NULL) != SIM_DONE) {
        assert_int_not_equal(sim_next(b, &tb, NULL), SIM_DONE);
        assert_memory_equal(&ta, &tb, sizeof(ta));
        if (sim_next(c, &tc, NULL) != SIM_DONE) {
            differs |= strcmp(ta.pan, tc.pan) != 0;
        }
    }
    assert_true(differs);
    struct sim_truth x, y;
    sim_truth(a, &x);
    sim_truth(b, &y);
    assert_memory_equal(&x, &y, sizeof(x));
    const struct sim_fraud *fa, *fb;
    size_t na = sim_frauds(a, &fa);
    assert_int_equal(sim_frauds(b, &fb), na);
    assert_memory_equal(fa, fb, na * sizeof(*fa));
    sim_destroy(a);
    sim_destroy(b);
    sim_destroy(c);
}

static void test_breach_skims_and_frauds_follow(void **state)
{
    (void)state;
    struct sim_opts o;
    small(&o, 7);
    struct sim *s = make(&o);
    struct seen v;
    run(s, &o, &v);
    struct sim_truth tr;
    sim_truth(s, &tr);
    assert_true(tr.breach);
    assert_int_equal(strlen(tr.merchant), 7);
    assert_int_equal(tr.window_start_ms, o.start_ms + 91 * DAY);
    assert_int_equal(tr.window_end_ms, o.start_ms + 151 * DAY - 1);
    assert_int_equal(tr.transactions, o.count);
    /* skimmed = exactly the cards used card-not-present at the breached
     * merchant in the window, at their first such use */
    const sim_card_no *sk;
    size_t n_sk = sim_skimmed(s, &sk);
    assert_int_equal(n_sk, tr.skimmed);
    assert_true(n_sk >= 30);
    size_t cnp_cards = 0;
    for (uint32_t c = 0; c < sim_cards(s); c++) {
        assert_int_equal(sim_skim_ms(s, c), v.cnp_at_breach[c]);
        cnp_cards += v.cnp_at_breach[c] >= 0;
    }
    assert_int_equal(cnp_cards, n_sk);
    for (size_t i = 0; i < n_sk; i++) {
        assert_true(v.cnp_at_breach[sk[i]] >= 0);
    }
    /* the frauds: in first-fraud order, each as the data shows it; linked
     * ones 14-60 days after the card's skim */
    const struct sim_fraud *f;
    size_t nf = sim_frauds(s, &f), linked = 0;
    assert_int_equal(nf, tr.defrauded + tr.background);
    size_t made = 0;
    for (uint32_t c = 0; c < sim_cards(s); c++) {
        made += v.first_fraud[c] >= 0;
    }
    assert_int_equal(made, nf);
    for (size_t i = 0; i < nf; i++) {
        sim_card_no c = f[i].card;
        assert_true(i == 0 || f[i].first_fraud_ms >= f[i - 1].first_fraud_ms);
        assert_int_equal(f[i].first_fraud_ms, v.first_fraud[c]);
        assert_int_equal(f[i].linked, v.linked[c]);
        assert_in_range(v.fraud_txns[c], 1, 5);
        if (f[i].linked) {
            linked++;
            int64_t d = f[i].first_fraud_ms - sim_skim_ms(s, c);
            assert_in_range(d, 14 * DAY, 60 * DAY);
            if (linked == 1) {
                assert_int_equal(tr.first_linked_fraud_ms, f[i].first_fraud_ms);
            }
        }
    }
    assert_int_equal(linked, tr.defrauded);
    /* about half of the skimmed, far from none or all */
    assert_true(linked * 5 > n_sk && linked * 5 < n_sk * 4);
    assert_in_range(tr.background, 15, 20);
    seen_free(&v);
    sim_destroy(s);
}

static void test_every_skimmed_card_defrauded_at_share_one(void **state)
{
    (void)state;
    struct sim_opts o;
    small(&o, 9);
    o.fraud_share = 1;
    o.count = 200000;
    struct sim *s = make(&o);
    struct seen v;
    run(s, &o, &v);
    struct sim_truth tr;
    sim_truth(s, &tr);
    /* the window ends on day 151, every fraud starts by day 211: each
     * skimmed card is defrauded, unless it has a background fraud */
    const sim_card_no *sk;
    size_t n_sk = sim_skimmed(s, &sk), other = 0;
    assert_true(n_sk > 0);
    for (size_t i = 0; i < n_sk; i++) {
        other += v.first_fraud[sk[i]] >= 0 && !v.linked[sk[i]];
        assert_true(v.first_fraud[sk[i]] >= 0);
    }
    assert_int_equal(tr.defrauded, n_sk - other);
    seen_free(&v);
    sim_destroy(s);
}

static void test_no_breach_no_linked_fraud(void **state)
{
    (void)state;
    struct sim_opts o;
    small(&o, 7);
    o.breach = 0;
    o.breach_start_ms = 0; /* ignored without a breach */
    o.count = 200000;
    struct sim *s = make(&o);
    struct seen v;
    run(s, &o, &v);
    struct sim_truth tr;
    sim_truth(s, &tr);
    assert_false(tr.breach);
    assert_string_equal(tr.merchant, "");
    assert_int_equal(tr.skimmed, 0);
    assert_int_equal(tr.defrauded, 0);
    assert_int_equal(tr.first_linked_fraud_ms, -1);
    assert_in_range(tr.background, 15, 20);
    const struct sim_fraud *f;
    size_t nf = sim_frauds(s, &f);
    for (size_t i = 0; i < nf; i++) {
        assert_false(f[i].linked);
    }
    seen_free(&v);
    sim_destroy(s);
}

static void test_popular_merchants_visited_by_most_cards(void **state)
{
    (void)state;
    struct sim_opts o;
    small(&o, 11);
    struct sim *s = make(&o);
    struct seen v;
    run(s, &o, &v);
    struct sim_truth tr;
    sim_truth(s, &tr);
    /* ~25% of all transactions */
    assert_in_range(v.popular_txns * 100 / v.txns, 23, 27);
    for (int r = 0; r < SIM_POPULAR; r++) {
        uint32_t visited = 0;
        for (uint32_t c = 0; c < sim_cards(s); c++) {
            visited += (v.popular[c] >> r) & 1;
        }
        assert_true(visited * 10 >= sim_cards(s) * 9);
        for (int q = 0; q < r; q++) {
            assert_string_not_equal(tr.popular[q], tr.popular[r]);
        }
        assert_string_not_equal(tr.popular[r], tr.merchant);
    }
    /* and they are the five most used, in order */
    uint64_t least = UINT64_MAX;
    for (int r = 0; r < SIM_POPULAR; r++) {
        uint64_t n = v.by_merchant[strtoul(tr.popular[r] + 1, NULL, 10)];
        assert_true(n < least);
        least = n;
    }
    for (uint32_t m = 0, other = 0; m < o.merchants; m++) {
        other = 0;
        for (int r = 0; r < SIM_POPULAR; r++) {
            other |= strtoul(tr.popular[r] + 1, NULL, 10) == m;
        }
        if (!other) {
            assert_true(v.by_merchant[m] < least);
        }
    }
    seen_free(&v);
    sim_destroy(s);
}

static void test_late_frauds_not_listed(void **state)
{
    (void)state;
    /* a breach in the last 10 days of the period: every linked fraud
     * would start after its end, so none is listed nor in the data */
    struct sim_opts o;
    small(&o, 5);
    o.count = 200000;
    o.fraud_share = 1;
    o.background_frauds = 0;
    o.breach_days = 10;
    o.breach_start_ms = o.start_ms + 355 * DAY;
    struct sim *s = make(&o);
    struct seen v;
    run(s, &o, &v);
    struct sim_truth tr;
    sim_truth(s, &tr);
    assert_true(tr.skimmed > 0);
    assert_int_equal(tr.defrauded, 0);
    assert_int_equal(tr.background, 0);
    for (uint32_t c = 0; c < sim_cards(s); c++) {
        assert_int_equal(v.fraud_txns[c], 0);
    }
    seen_free(&v);
    sim_destroy(s);
}

static void test_bad_options(void **state)
{
    (void)state;
    struct sim_opts o;
    char err[256];
    small(&o, 1);
    o.breach_start_ms = o.start_ms - DAY; /* before the period */
    assert_null(sim_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "breach window"));
    small(&o, 1);
    o.breach_start_ms = o.start_ms + 320 * DAY; /* ends after it */
    assert_null(sim_new(&o, err, sizeof(err)));
    small(&o, 1);
    o.merchants = 9;
    assert_null(sim_new(&o, err, sizeof(err)));
    small(&o, 1);
    o.background_frauds = o.cards + 1;
    assert_null(sim_new(&o, err, sizeof(err)));
    small(&o, 1);
    o.count = 0;
    assert_null(sim_new(&o, err, sizeof(err)));
    /* more cards than an 8-digit prefix holds (10^7) */
    static const char *const narrow[] = {"51000012"};
    small(&o, 1);
    o.prefixes = narrow;
    o.n_prefixes = 1;
    o.cards = 10000001;
    assert_null(sim_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "distinct cards"));
    /* the window may end exactly at the period's end */
    small(&o, 1);
    o.count = 10;
    o.breach_start_ms = o.start_ms + 305 * DAY;
    struct sim *s = make(&o);
    sim_destroy(s);
    sim_destroy(NULL);
}

static void test_one_card_one_transaction(void **state)
{
    (void)state;
    struct sim_opts o;
    small(&o, 3);
    o.cards = 1;
    o.count = 1;
    o.days = 1;
    o.merchants = 10;
    o.background_frauds = 1;
    o.breach = 0;
    struct sim *s = make(&o);
    struct txn t;
    sim_card_no c = 99;
    assert_int_not_equal(sim_next(s, &t, &c), SIM_DONE);
    assert_int_equal(c, 0);
    assert_int_equal(sim_next(s, &t, &c), SIM_DONE);
    sim_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_history),
        cmocka_unit_test(test_breach_skims_and_frauds_follow),
        cmocka_unit_test(test_every_skimmed_card_defrauded_at_share_one),
        cmocka_unit_test(test_no_breach_no_linked_fraud),
        cmocka_unit_test(test_popular_merchants_visited_by_most_cards),
        cmocka_unit_test(test_late_frauds_not_listed),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_one_card_one_transaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
