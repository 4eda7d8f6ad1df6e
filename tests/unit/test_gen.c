/* Unit tests for gen.c: synthetic cards and transactions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_cards_are_valid_and_under_a_prefix),
        cmocka_unit_test(test_same_seed_same_stream),
        cmocka_unit_test(test_exposed_share_and_invalid_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
