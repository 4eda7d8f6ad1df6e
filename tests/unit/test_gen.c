/* Unit tests for gen.c: synthetic cards and transactions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "card.h"
#include "gen.h"
#include "txn.h"

static const char *const prefixes[] = {"400000", "5100001", "37000012"};

static struct gen *make(uint64_t seed, const struct gen_card *ex, size_t n,
                        double share, double invalid)
{
    struct gen_opts o = {
        .seed = seed,
        .prefixes = prefixes,
        .n_prefixes = 3,
        .exposed = ex,
        .n_exposed = n,
        .exposed_share = share,
        .invalid_share = invalid,
        .start_ms = 1722470400000LL,
        .step_ms = 1000,
        .clean_pool = 2000,
    };
    return gen_new(&o);
}

static void test_bad_options(void **state)
{
    (void)state;
    const char *const bad[] = {"40000"};
    struct gen_opts o = {.seed = 1, .prefixes = bad, .n_prefixes = 1};
    assert_null(gen_new(&o));
    o.n_prefixes = 0;
    assert_null(gen_new(&o));
}

static void test_cards_are_valid_and_under_a_prefix(void **state)
{
    (void)state;
    struct gen *g = make(7, NULL, 0, 0, 0);
    assert_non_null(g);
    for (int i = 0; i < 2000; i++) {
        struct gen_card c;
        gen_card(g, &c);
        size_t len = strlen(c.pan);
        assert_true(card_luhn_ok(c.pan, len));
        int under = 0;
        for (size_t p = 0; p < 3; p++) {
            under |= strncmp(c.pan, prefixes[p], strlen(prefixes[p])) == 0;
        }
        assert_true(under);
        /* 34/37 prefixes make 15-digit cards, the rest 16 */
        assert_int_equal(len, c.pan[0] == '3' ? 15 : 16);
        assert_int_equal(strlen(c.expiry), 4);
    }
    gen_destroy(g);
}

static void test_same_seed_same_stream(void **state)
{
    (void)state;
    struct gen *a = make(42, NULL, 0, 0, 0.01);
    struct gen *b = make(42, NULL, 0, 0, 0.01);
    struct gen *c = make(43, NULL, 0, 0, 0.01);
    int differs = 0;
    for (int i = 0; i < 500; i++) {
        struct txn ta, tb, tc;
        char ka[16], kb[16], kc[16];
        int ia, ib, ic;
        gen_next(a, &ta, ka, &ia);
        gen_next(b, &tb, kb, &ib);
        gen_next(c, &tc, kc, &ic);
        assert_memory_equal(&ta, &tb, sizeof(ta));
        assert_string_equal(ka, kb);
        assert_int_equal(ia, ib);
        differs |= strcmp(ta.pan, tc.pan) != 0;
    }
    assert_true(differs);
    gen_destroy(a);
    gen_destroy(b);
    gen_destroy(c);
}

static void test_exposed_share_and_invalid_events(void **state)
{
    (void)state;
    struct gen *maker = make(5, NULL, 0, 0, 0);
    struct gen_card ex[200];
    for (int i = 0; i < 200; i++) {
        gen_card(maker, &ex[i]);
        ex[i].index = (uint32_t)i;
        ex[i].exposed = 1;
    }
    gen_destroy(maker);
    struct gen *g = make(9, ex, 200, 0.02, 0.01);
    int n = 50000, on_exposed = 0, invalid = 0, last_time_ok = 1;
    int64_t prev = 0;
    for (int i = 0; i < n; i++) {
        struct txn t;
        char key[16];
        int bad;
        gen_next(g, &t, key, &bad);
        int exposed = 0;
        for (int k = 0; k < 200 && !exposed; k++) {
            exposed = strcmp(t.pan, ex[k].pan) == 0;
        }
        on_exposed += exposed;
        /* the key names the card without its number */
        assert_int_equal(key[0], exposed ? 'x' : 'c');
        assert_null(strstr(key, t.pan));
        last_time_ok &= t.event_time_ms >= prev;
        prev = t.event_time_ms;
        if (bad) {
            invalid++;
            assert_int_not_equal(txn_validate(&t), TXN_OK);
        } else {
            assert_int_equal(txn_validate(&t), TXN_OK);
        }
    }
    /* ~2% on exposed cards, ~1% broken, event time never goes back */
    assert_in_range(on_exposed, n / 100, n * 4 / 100);
    assert_in_range(invalid, n / 200, n * 2 / 100);
    assert_true(last_time_ok);
    gen_destroy(g);
}

/* ---- distinct cards ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Cards as numbers (15-16 digits fit), sorted: returns how many repeat an
 * earlier one. */
static size_t repeats(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    size_t d = 0;
    for (size_t i = 1; i < n; i++) {
        d += v[i] == v[i - 1];
    }
    return d;
}

static uint64_t as_number(const char *pan)
{
    return strtoull(pan, NULL, 10);
}

/* The red team's count: 2,000,000 cards had 299 repeats under the demo's
 * prefixes. Small spaces (an 8-digit prefix leaves 10^6 15-digit cards)
 * make repeats certain without the fix. */
static void test_two_million_cards_are_distinct(void **state)
{
    (void)state;
    static const char *const p[] = {"400000", "5100001", "37000012",
                                    "45100000"};
    struct gen_opts o = {.seed = 11, .prefixes = p, .n_prefixes = 4,
                         .clean_pool = 1};
    struct gen *g = gen_new(&o);
    assert_non_null(g);
    size_t n = 2000000;
    uint64_t *v = malloc(n * sizeof(*v));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        struct gen_card c;
        assert_int_equal(gen_card(g, &c), 0);
        v[i] = as_number(c.pan);
    }
    assert_int_equal(repeats(v, n), 0);
    free(v);
    gen_destroy(g);
}

/* A prefix inside another (400050 holds 40005000): a card is made under
 * one of them only, never twice. */
static void test_nested_prefixes_share_no_card(void **state)
{
    (void)state;
    static const char *const p[] = {"400050", "40005000", "40005001"};
    struct gen_opts o = {.seed = 3, .prefixes = p, .n_prefixes = 3,
                         .clean_pool = 1};
    struct gen *g = gen_new(&o);
    assert_non_null(g);
    size_t n = 200000;
    uint64_t *v = malloc(n * sizeof(*v));
    assert_non_null(v);
    size_t under[3] = {0};
    for (size_t i = 0; i < n; i++) {
        struct gen_card c;
        assert_int_equal(gen_card(g, &c), 0);
        v[i] = as_number(c.pan);
        under[strncmp(c.pan, "40005000", 8) == 0   ? 1
              : strncmp(c.pan, "40005001", 8) == 0 ? 2
                                                   : 0]++;
    }
    assert_int_equal(repeats(v, n), 0);
    /* each prefix gets its share */
    for (int k = 0; k < 3; k++) {
        assert_in_range(under[k], n / 4, n / 2);
    }
    free(v);
    gen_destroy(g);
}

/* When the prefixes' cards run out, gen_card says so instead of
 * repeating one; the space counts each card once. */
/* Prefixes: 9 digits or a non-digit are refused; a prefix given twice is
 * the same as given once (same cards, same count left); 34 and 37 make
 * 15-digit cards, 35 (no Amex) 16. */
static void test_prefix_edges(void **state)
{
    (void)state;
    const char *const nine[] = {"123456789"};
    const char *const alpha[] = {"12345a"};
    struct gen_opts o = {.seed = 3, .prefixes = nine, .n_prefixes = 1,
                         .clean_pool = 10};
    assert_null(gen_new(&o));
    o.prefixes = alpha;
    assert_null(gen_new(&o));

    const char *const once[] = {"400000"};
    const char *const twice[] = {"400000", "400000"};
    o.prefixes = once;
    struct gen *a = gen_new(&o);
    o.prefixes = twice;
    o.n_prefixes = 2;
    struct gen *b = gen_new(&o);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(gen_cards_left(a), gen_cards_left(b));
    for (int i = 0; i < 100; i++) {
        struct gen_card ca, cb;
        assert_int_equal(gen_card(a, &ca), 0);
        assert_int_equal(gen_card(b, &cb), 0);
        assert_string_equal(ca.pan, cb.pan);
    }
    gen_destroy(a);
    gen_destroy(b);

    const struct {
        const char *prefix;
        size_t len;
    } lens[] = {{"340000", 15}, {"370000", 15}, {"350000", 16},
                {"300000", 16}};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        const char *const p[] = {lens[i].prefix};
        struct gen_opts ol = {.seed = 9, .prefixes = p, .n_prefixes = 1,
                              .clean_pool = 10};
        struct gen *g = gen_new(&ol);
        assert_non_null(g);
        struct gen_card c;
        assert_int_equal(gen_card(g, &c), 0);
        assert_int_equal(strlen(c.pan), lens[i].len);
        assert_true(card_luhn_ok(c.pan, lens[i].len));
        assert_memory_equal(c.pan, lens[i].prefix, 6);
        gen_destroy(g);
    }
}

/* Seed 0 is a seed like any other (the same stream each time), and a
 * step of 0 ms keeps every event at the start time. */
static void test_seed_zero_and_no_step(void **state)
{
    (void)state;
    struct gen_opts o = {.seed = 0, .prefixes = prefixes, .n_prefixes = 3,
                         .start_ms = 1722470400000LL, .step_ms = 0,
                         .clean_pool = 100};
    struct gen *a = gen_new(&o);
    struct gen *b = gen_new(&o);
    assert_non_null(a);
    assert_non_null(b);
    for (int i = 0; i < 200; i++) {
        struct txn ta, tb;
        char ka[16], kb[16];
        int ia, ib;
        gen_next(a, &ta, ka, &ia);
        gen_next(b, &tb, kb, &ib);
        assert_string_equal(ka, kb);
        assert_string_equal(ta.pan, tb.pan);
        assert_int_equal(ta.amount_minor, tb.amount_minor);
        assert_int_equal(ta.event_time_ms, 1722470400000LL);
        assert_int_equal(tb.event_time_ms, 1722470400000LL);
    }
    gen_destroy(a);
    gen_destroy(b);
}

static void test_space_runs_out(void **state)
{
    (void)state;
    static const char *const amex[] = {"37000012"};
    struct gen_opts o = {.seed = 5, .prefixes = amex, .n_prefixes = 1,
                         .clean_pool = 1};
    struct gen *g = gen_new(&o);
    assert_non_null(g);
    /* 10^6 15-digit cards, one taken by the clean pool */
    assert_int_equal(gen_cards_left(g), 999999);
    size_t n = 999999;
    uint64_t *v = malloc(n * sizeof(*v));
    assert_non_null(v);
    struct gen_card c;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(gen_card(g, &c), 0);
        v[i] = as_number(c.pan);
    }
    assert_int_equal(gen_cards_left(g), 0);
    assert_int_equal(gen_card(g, &c), -1);
    assert_int_equal(repeats(v, n), 0);
    free(v);
    gen_destroy(g);

    static const char *const nested[] = {"40005000", "400050", "4000500"};
    o.prefixes = nested;
    o.n_prefixes = 3;
    g = gen_new(&o);
    assert_non_null(g);
    /* the union: 400050's 10^9 16-digit cards, less the clean pool's */
    assert_int_equal(gen_cards_left(g), 1000000000ull - 1);
    gen_destroy(g);
}

/* The clean cards of `gen txns` are not cards `gen cards` made: with the
 * same seed never, with another seed not in a sample of this size. */
static void test_clean_pool_is_not_gen_cards(void **state)
{
    (void)state;
    static const char *const p[] = {"45100000", "45100001"};
    for (uint64_t txn_seed = 7; txn_seed <= 8; txn_seed++) {
        struct gen_opts oc = {.seed = 7, .prefixes = p, .n_prefixes = 2,
                              .clean_pool = 1};
        struct gen *cards = gen_new(&oc);
        struct gen_opts ot = {.seed = txn_seed, .prefixes = p,
                              .n_prefixes = 2, .clean_pool = 50000,
                              .step_ms = 1000};
        struct gen *txns = gen_new(&ot);
        assert_non_null(cards);
        assert_non_null(txns);
        size_t nc = 50000, nt = 200000;
        uint64_t *v = malloc((nc + nt) * sizeof(*v));
        assert_non_null(v);
        for (size_t i = 0; i < nc; i++) {
            struct gen_card c;
            assert_int_equal(gen_card(cards, &c), 0);
            v[i] = as_number(c.pan);
        }
        assert_int_equal(repeats(v, nc), 0);
        /* the pool's cards, each once */
        size_t k = nc;
        char seen[50000] = {0};
        for (size_t i = 0; i < nt; i++) {
            struct txn t;
            char key[16];
            int bad;
            gen_next(txns, &t, key, &bad);
            unsigned idx = (unsigned)atoi(key + 1);
            assert_true(idx < 50000);
            if (!seen[idx]) {
                seen[idx] = 1;
                v[k++] = as_number(t.pan);
            }
        }
        assert_int_equal(repeats(v, k), 0);
        free(v);
        gen_destroy(cards);
        gen_destroy(txns);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_cards_are_valid_and_under_a_prefix),
        cmocka_unit_test(test_same_seed_same_stream),
        cmocka_unit_test(test_exposed_share_and_invalid_events),
        cmocka_unit_test(test_two_million_cards_are_distinct),
        cmocka_unit_test(test_nested_prefixes_share_no_card),
        cmocka_unit_test(test_prefix_edges),
        cmocka_unit_test(test_seed_zero_and_no_step),
        cmocka_unit_test(test_space_runs_out),
        cmocka_unit_test(test_clean_pool_is_not_gen_cards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
