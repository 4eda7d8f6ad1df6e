/* test_xfilter.c - the binary fuse filter against the exact set: every
 * key built in answers 1 (for sets of many sizes and shapes, with
 * duplicates), absent keys answer 1 at about 1/256, the size per key,
 * the keys of card fingerprints in their two forms, and allocation
 * failure. Only synthetic test card numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card.h"
#include "failalloc.h"
#include "xfilter.h"

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Builds a filter of keys[0..n) (a copy: the call reorders it) and checks
 * against the exact set: the distinct count, every key answering 1, and
 * the documented reordering (distinct keys sorted first, the same values
 * as before). Returns the filter. */
static struct xfilter *build_checked(const uint64_t *keys, size_t n)
{
    uint64_t *work = malloc((n ? n : 1) * sizeof(*work));
    uint64_t *exact = malloc((n ? n : 1) * sizeof(*exact));
    assert_non_null(work);
    assert_non_null(exact);
    if (n > 0) {
        memcpy(work, keys, n * sizeof(*work));
        memcpy(exact, keys, n * sizeof(*exact));
    }
    qsort(exact, n, sizeof(*exact), cmp_u64);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || exact[i] != exact[i - 1]) {
            exact[distinct++] = exact[i];
        }
    }
    char err[256] = "";
    struct xfilter *f = xfilter_build(work, n, err, sizeof(err));
    if (f == NULL) {
        fail_msg("n=%zu: %s", n, err);
    }
    assert_int_equal(xfilter_keys(f), distinct);
    for (size_t i = 0; i < distinct; i++) {
        if (work[i] != exact[i]) {
            fail_msg("n=%zu: keys[%zu] is not the %zu-th distinct key", n, i,
                     i);
        }
        if (!xfilter_contains(f, exact[i])) {
            fail_msg("n=%zu: built-in key %zu answered 0", n, i);
        }
    }
    /* the whole input is still there: a permutation */
    qsort(work, n, sizeof(*work), cmp_u64);
    uint64_t *sorted = malloc((n ? n : 1) * sizeof(*sorted));
    assert_non_null(sorted);
    if (n > 0) {
        memcpy(sorted, keys, n * sizeof(*sorted));
    }
    qsort(sorted, n, sizeof(*sorted), cmp_u64);
    assert_true(n == 0 || memcmp(work, sorted, n * sizeof(*work)) == 0);
    free(sorted);
    free(work);
    free(exact);
    return f;
}

static uint64_t *random_keys(size_t n, uint64_t seed)
{
    uint64_t *k = malloc((n ? n : 1) * sizeof(*k));
    assert_non_null(k);
    for (size_t i = 0; i < n; i++) {
        k[i] = splitmix(&seed);
    }
    return k;
}

/* The empty set answers 0 for everything; no filter (NULL) answers 1 for
 * everything - it must never make a card look clean. */
static void test_empty_and_null(void **state)
{
    (void)state;
    char err[128];
    struct xfilter *f = xfilter_build(NULL, 0, err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(xfilter_keys(f), 0);
    assert_true(xfilter_bytes(f) > 0);
    uint64_t s = 1;
    for (int i = 0; i < 100000; i++) {
        uint64_t k = splitmix(&s);
        assert_int_equal(xfilter_contains(f, k), 0);
        assert_int_equal(xfilter_contains(NULL, k), 1);
    }
    assert_int_equal(xfilter_contains(f, 0), 0);
    xfilter_free(f);
    assert_int_equal(xfilter_keys(NULL), 0);
    assert_int_equal(xfilter_bytes(NULL), 0);
    xfilter_free(NULL);
}

/* Random sets of many sizes: the tiny ones (where segments are few and a
 * seed fails more often) many times over, each with every key answering
 * 1. */
static void test_every_key_found_at_many_sizes(void **state)
{
    (void)state;
    static const size_t sizes[] = {
        1,   2,   3,   5,    7,    11,   13,   17,    19,     23,
        29,  31,  37,  41,   43,   47,   53,   61,    97,     101,
        127, 251, 509, 1000, 1021, 4093, 8191, 65521, 100000, 1000000};
    uint64_t seed = 42;
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        int sets = n <= 100 ? 300 : n <= 10000 ? 20 : 1;
        for (int r = 0; r < sets; r++) {
            uint64_t *k = random_keys(n, splitmix(&seed));
            struct xfilter *f = build_checked(k, n);
            xfilter_free(f);
            free(k);
        }
    }
}

/* Every distinct size from 1 to 300 once: the segment length and count
 * formulas change along the way (rounding edges). */
static void test_every_size_up_to_300(void **state)
{
    (void)state;
    uint64_t seed = 7;
    for (size_t n = 1; n <= 300; n++) {
        uint64_t *k = random_keys(n, splitmix(&seed));
        xfilter_free(build_checked(k, n));
        free(k);
    }
}

/* Duplicates: each key one to four times, shuffled; and one key 1,000
 * times. Peeling can never finish with a key present twice, so this
 * fails unless they are removed first. */
static void test_duplicates(void **state)
{
    (void)state;
    size_t distinct = 10000;
    uint64_t seed = 99;
    uint64_t *base = random_keys(distinct, 1234);
    uint64_t *k = malloc(distinct * 4 * sizeof(*k));
    assert_non_null(k);
    size_t n = 0;
    for (size_t i = 0; i < distinct; i++) {
        size_t copies = 1 + splitmix(&seed) % 4;
        for (size_t c = 0; c < copies; c++) {
            k[n++] = base[i];
        }
    }
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = splitmix(&seed) % (i + 1);
        uint64_t t = k[i];
        k[i] = k[j];
        k[j] = t;
    }
    assert_true(n > distinct * 2);
    struct xfilter *f = build_checked(k, n);
    assert_int_equal(xfilter_keys(f), distinct);
    xfilter_free(f);

    for (size_t i = 0; i < 1000; i++) {
        k[i] = UINT64_C(0x0123456789abcdef);
    }
    f = build_checked(k, 1000);
    assert_int_equal(xfilter_keys(f), 1);
    xfilter_free(f);
    free(k);
    free(base);
}

/* Keys that differ only in their low bits, only in their high bits, in a
 * single bit, and the extremes: the hash must spread them all. */
static void test_structured_keys(void **state)
{
    (void)state;
    size_t n = 200000;
    uint64_t *k = malloc(n * sizeof(*k));
    assert_non_null(k);
    /* 0 .. n-1: only the low 18 bits differ */
    for (size_t i = 0; i < n; i++) {
        k[i] = i;
    }
    xfilter_free(build_checked(k, n));
    /* i << 46: only the high 18 bits differ */
    for (size_t i = 0; i < n; i++) {
        k[i] = (uint64_t)i << 46;
    }
    xfilter_free(build_checked(k, n));
    /* a common fingerprint prefix, counter in bits 16..33 */
    for (size_t i = 0; i < n; i++) {
        k[i] = UINT64_C(0xfeedface00000000) | (uint64_t)i << 16 | 0xbeef;
    }
    xfilter_free(build_checked(k, n));
    /* single bits and their complements, pairs that differ only in bit
     * 63, 0 and UINT64_MAX */
    size_t m = 0;
    for (int b = 0; b < 64; b++) {
        k[m++] = UINT64_C(1) << b;
        k[m++] = ~(UINT64_C(1) << b);
    }
    for (uint64_t i = 0; i < 1000; i++) {
        k[m++] = i * 0x10001;
        k[m++] = (i * 0x10001) | UINT64_C(1) << 63;
    }
    k[m++] = 0;
    k[m++] = UINT64_MAX;
    xfilter_free(build_checked(k, m));
    free(k);
}

/* Absent keys answer 1 at about 1/256 (0.39 %): measured on 1,000,000
 * keys known not to be in the set, below 0.5 % (a margin of ~18 standard
 * deviations) and above 0.25 % (an 8-bit fingerprint cannot do better:
 * far fewer would mean the filter does not check what it was built
 * from). */
static void test_false_positive_rate(void **state)
{
    (void)state;
    static const size_t sizes[] = {100000, 1000000};
    for (size_t s = 0; s < 2; s++) {
        size_t n = sizes[s];
        uint64_t *k = random_keys(n, 2024 + s);
        char err[128];
        struct xfilter *f = xfilter_build(k, n, err, sizeof(err));
        assert_non_null(f);
        /* k[0..n) is now the sorted set (random keys: all distinct) */
        assert_int_equal(xfilter_keys(f), n);
        uint64_t seed = 77 + s;
        size_t absent = 0, yes = 0;
        while (absent < 1000000) {
            uint64_t q = splitmix(&seed);
            if (bsearch(&q, k, n, sizeof(*k), cmp_u64) != NULL) {
                continue;
            }
            absent++;
            yes += (size_t)xfilter_contains(f, q);
        }
        double rate = (double)yes / (double)absent;
        print_message("n=%zu: %zu of %zu absent keys answered 1 (%.3f %%)\n", n,
                      yes, absent, rate * 100);
        assert_true(rate < 0.005);
        assert_true(rate > 0.0025);
        xfilter_free(f);
        free(k);
    }
}

/* At most 1.2 bytes per key from a million keys on (the paper: 1.125
 * plus two segments). */
static void test_bytes_per_key(void **state)
{
    (void)state;
    static const size_t sizes[] = {1000000, 3000000};
    for (size_t s = 0; s < 2; s++) {
        size_t n = sizes[s];
        uint64_t *k = random_keys(n, 555 + s);
        char err[128];
        struct xfilter *f = xfilter_build(k, n, err, sizeof(err));
        assert_non_null(f);
        double per = (double)xfilter_bytes(f) / (double)n;
        print_message("n=%zu: %.4f bytes per key\n", n, per);
        assert_true(per <= 1.2);
        assert_true(per >= 1.125);
        xfilter_free(f);
        free(k);
    }
}

/* The key of a fingerprint: the first 16 hex digits, big-endian; the
 * binary form gives the same key; a real card_fingerprint() too. */
static void test_keys_of_fingerprints(void **state)
{
    (void)state;
    assert_true(xfilter_key_hex("0123456789abcdef0000000000000000") ==
                UINT64_C(0x0123456789abcdef));
    assert_true(xfilter_key_hex("FEDCBA9876543210ffffffffffffffff") ==
                UINT64_C(0xfedcba9876543210));
    assert_true(xfilter_key_hex("ffffffffffffffff") == UINT64_MAX);
    /* stops at a NUL: the missing digits count as 0 */
    assert_true(xfilter_key_hex("12") == UINT64_C(0x1200000000000000));
    assert_true(xfilter_key_hex("") == 0);
    /* reads 16 characters and no more */
    assert_true(xfilter_key_hex("00000000000000019") == 1);
    /* a non-hex character counts as 0 */
    assert_true(xfilter_key_hex("x000000000000001") == 1);
    const uint8_t bin[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                             0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_true(xfilter_key_bin(bin) == UINT64_C(0x0123456789abcdef));

    /* real fingerprints: card_fingerprint()'s hex and the raw HMAC bytes
     * (its first 16) give the same key */
    static const uint8_t key[16] = "0123456789abcdef";
    struct card_key *ck = card_key_new("k1", key, sizeof(key));
    assert_non_null(ck);
    static const char *const pans[] = {"4111111111111111", "5555555555554444",
                                       "378282246310005", "6011111111111117"};
    for (size_t i = 0; i < 4; i++) {
        char hex[CARD_FP_SIZE];
        uint8_t mac[32];
        assert_int_equal(card_fingerprint(ck, pans[i], strlen(pans[i]), hex),
                         0);
        assert_int_equal(card_hmac_sha256(key, sizeof(key),
                                          (const uint8_t *)pans[i],
                                          strlen(pans[i]), mac),
                         0);
        char expect[CARD_FP_SIZE];
        for (int j = 0; j < 16; j++) {
            snprintf(expect + 2 * j, 3, "%02x", mac[j]);
        }
        assert_string_equal(hex, expect);
        assert_true(xfilter_key_hex(hex) == xfilter_key_bin(mac));
    }
    card_key_destroy(ck);
}

/* Every allocation of a build failed in turn: NULL and an out-of-memory
 * message each time, nothing leaked (ASan's leak check), then a build
 * that works. */
static void test_allocation_failure(void **state)
{
    (void)state;
    size_t n = 5000;
    uint64_t *k = random_keys(n, 31337);
    int runs = 0;
    for (long a = 1;; a++) {
        char err[256] = "";
        failalloc_at(a);
        struct xfilter *f = xfilter_build(k, n, err, sizeof(err));
        int fired = failalloc_failed();
        failalloc_at(0);
        if (!fired) {
            assert_non_null(f);
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(xfilter_contains(f, k[i]), 1);
            }
            xfilter_free(f);
            break;
        }
        assert_null(f);
        if (strstr(err, "out of memory") == NULL) {
            fail_msg("allocation %ld: %s", a, err);
        }
        runs++;
    }
    /* the struct, the array, six scratch arrays */
    assert_int_equal(runs, 8);
    free(k);
}

/* The same set in another order gives the same filter: the same answer
 * for every absent key (a rebuild of an unchanged set changes nothing). */
static void test_deterministic(void **state)
{
    (void)state;
    size_t n = 50000;
    uint64_t *a = random_keys(n, 8);
    uint64_t *b = malloc(n * sizeof(*b));
    assert_non_null(b);
    for (size_t i = 0; i < n; i++) {
        b[i] = a[n - 1 - i];
    }
    char err[128];
    struct xfilter *fa = xfilter_build(a, n, err, sizeof(err));
    struct xfilter *fb = xfilter_build(b, n, err, sizeof(err));
    assert_non_null(fa);
    assert_non_null(fb);
    uint64_t s = 3;
    size_t yes = 0;
    for (int i = 0; i < 200000; i++) {
        uint64_t q = splitmix(&s);
        int ra = xfilter_contains(fa, q);
        assert_int_equal(ra, xfilter_contains(fb, q));
        yes += (size_t)ra;
    }
    assert_true(yes > 0);
    xfilter_free(fa);
    xfilter_free(fb);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_every_key_found_at_many_sizes),
        cmocka_unit_test(test_every_size_up_to_300),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_structured_keys),
        cmocka_unit_test(test_false_positive_rate),
        cmocka_unit_test(test_bytes_per_key),
        cmocka_unit_test(test_keys_of_fingerprints),
        cmocka_unit_test(test_allocation_failure),
        cmocka_unit_test(test_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
