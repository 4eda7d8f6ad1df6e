/* Unit tests for rmodel.c: Redis key names and card records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rmodel.h"

static void test_keys(void **state)
{
    (void)state;
    char k[RMODEL_KEY_MAX];
    assert_int_equal(rmodel_card_key(k, "cw", "k1", "00ff"), 15);
    assert_string_equal(k, "cw:card:k1:00ff");
    assert_true(rmodel_breach_key(k, "cw", "b-1") > 0);
    assert_string_equal(k, "cw:breach:b-1");
    assert_true(rmodel_breach_cards_key(k, "cw", "b-1") > 0);
    assert_string_equal(k, "cw:breach:b-1:cards");
    assert_true(rmodel_breaches_key(k, "x") > 0);
    assert_string_equal(k, "x:breaches");
    assert_true(rmodel_delivered_key(k, "cw", "ab12") > 0);
    assert_string_equal(k, "cw:delivered:ab12");
    assert_true(rmodel_alert_key(k, "cw", "ab12") > 0);
    assert_string_equal(k, "cw:alert:ab12");
    assert_true(rmodel_feed_key(k, "cw", "acme") > 0);
    assert_string_equal(k, "cw:feed:acme");
    assert_true(rmodel_feedstats_key(k, "cw", "acme") > 0);
    assert_string_equal(k, "cw:feedstats:acme");
    assert_true(rmodel_feed_channel(k, "cw") > 0);
    assert_string_equal(k, "cw:feed");
    char big[RMODEL_KEY_MAX + 10];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(rmodel_card_key(k, "cw", "k1", big), -1);
    assert_string_equal(k, "");
    /* every other key too: -1 and an empty key, never a cut one (a cut
     * breach id could name another breach) */
    strcpy(k, "x");
    assert_int_equal(rmodel_breach_cards_key(k, "cw", big), -1);
    assert_string_equal(k, "");
    strcpy(k, "x");
    assert_int_equal(rmodel_alert_key(k, big, "ab12"), -1);
    assert_string_equal(k, "");
    big[RMODEL_KEY_MAX - 1 - strlen("cw:breach:")] = '\0'; /* just fits */
    assert_int_equal(rmodel_breach_key(k, "cw", big), RMODEL_KEY_MAX - 1);
    assert_int_equal(rmodel_breach_cards_key(k, "cw", big), -1);
}

static void test_record_parse(void **state)
{
    (void)state;
    struct rmodel_entry e[4];
    const char *rec = "a=0123456789abcdef;b.2=";
    assert_int_equal(rmodel_record_parse(rec, strlen(rec), e, 4), 2);
    assert_string_equal(e[0].breach_id, "a");
    assert_string_equal(e[0].exptag, "0123456789abcdef");
    assert_string_equal(e[1].breach_id, "b.2");
    assert_string_equal(e[1].exptag, "");
    /* Capacity: extra entries are ignored, not overflowed. */
    assert_int_equal(rmodel_record_parse(rec, strlen(rec), e, 1), 1);
    /* Empty record, stray separators. */
    assert_int_equal(rmodel_record_parse("", 0, e, 4), 0);
    assert_int_equal(rmodel_record_parse(";;x=;", 5, e, 4), 1);
    assert_string_equal(e[0].breach_id, "x");
    assert_int_equal(e[0].retired, 0);
    /* A trailing '!' retires the entry (the issuer replaced the card). */
    const char *ret = "a=0123456789abcdef!;b=!;c=0123456789abcdef";
    assert_int_equal(rmodel_record_parse(ret, strlen(ret), e, 4), 3);
    assert_string_equal(e[0].exptag, "0123456789abcdef");
    assert_int_equal(e[0].retired, 1);
    assert_string_equal(e[1].exptag, "");
    assert_int_equal(e[1].retired, 1);
    assert_int_equal(e[2].retired, 0);
}

static void test_record_malformed(void **state)
{
    (void)state;
    struct rmodel_entry e[4];
    const char *bad[] = {"nobreach", "=0123456789abcdef", "a=123",
                         "a=0123456789abcdef0", "a=123!",
                         "a=0123456789abcdef!!"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(rmodel_record_parse(bad[i], strlen(bad[i]), e, 4),
                         -1);
    }
    char longid[200];
    memset(longid, 'x', 100);
    strcpy(longid + 100, "=");
    assert_int_equal(rmodel_record_parse(longid, strlen(longid), e, 4), -1);
}

static void test_breach_status_and_counts(void **state)
{
    (void)state;
    char key[RMODEL_KEY_MAX], why[128];
    assert_int_equal(rmodel_exposed_key(key, "cw"), 10);
    assert_string_equal(key, "cw:exposed");
    /* No status field: data from before staged loads counts as committed;
     * anything unknown is never visible by mistake. */
    assert_int_equal(rmodel_breach_status(NULL), RMODEL_B_COMMITTED);
    assert_int_equal(rmodel_breach_status("committed"), RMODEL_B_COMMITTED);
    assert_int_equal(rmodel_breach_status("loading"), RMODEL_B_LOADING);
    assert_int_equal(rmodel_breach_status("unloading"), RMODEL_B_UNLOADING);
    assert_int_equal(rmodel_breach_status("Committed"), RMODEL_B_LOADING);
    assert_int_equal(rmodel_breach_status(""), RMODEL_B_LOADING);
    /* Present >= recorded is intact; fewer names the breach and counts. */
    assert_int_equal(rmodel_breach_intact("b1", "1000", 1000, why, 128), 1);
    assert_int_equal(rmodel_breach_intact("b1", "1000", 1200, why, 128), 1);
    assert_int_equal(rmodel_breach_intact("b1", "1000", 999, why, 128), 0);
    assert_string_equal(why, "breach b1 has 999 of 1000 cards in Redis");
    assert_int_equal(rmodel_breach_intact("b1", "1000", 0, why, 128), 0);
    assert_string_equal(why, "breach b1 has 0 of 1000 cards in Redis");
    /* Nothing (or nonsense) recorded: nothing to compare against. */
    assert_int_equal(rmodel_breach_intact("b1", NULL, 0, why, 128), 1);
    assert_int_equal(rmodel_breach_intact("b1", "12x", 0, why, 128), 1);
    assert_int_equal(rmodel_breach_intact("b1", "-5", 0, why, 128), 1);
    assert_int_equal(rmodel_breach_intact("b1", "abc", 0, why, 128), 1);
    assert_int_equal(rmodel_breach_intact("b1", "", 0, why, 128), 1);
}

/* The layout's keys and the fingerprint forms. */
static void test_layout_keys_and_fingerprints(void **state)
{
    (void)state;
    char k[RMODEL_KEY_MAX];
    assert_int_equal(rmodel_layout_key(k, "cw", "k1"), 12);
    assert_string_equal(k, "cw:layout:k1");
    assert_true(rmodel_bucket_prefix(k, "cw", "k1") > 0);
    assert_string_equal(k, "cw:cards:k1:");
    assert_true(rmodel_bucket_key(k, "cw", "k1", 4097) > 0);
    assert_string_equal(k, "cw:cards:k1:4097");
    uint8_t bin[RMODEL_FP_BIN];
    char hex[33];
    const char *fp = "00ff10aBcdef0123456789abcdef0123";
    assert_int_equal(rmodel_fp_bin(fp, bin), 0);
    assert_int_equal(bin[0], 0x00);
    assert_int_equal(bin[1], 0xff);
    assert_int_equal(bin[3], 0xab);
    rmodel_fp_hex(bin, hex);
    assert_string_equal(hex, "00ff10abcdef0123456789abcdef0123");
    /* not 32 hex digits: refused */
    assert_int_equal(rmodel_fp_bin("00ff", bin), -1);
    assert_int_equal(rmodel_fp_bin("00ff10abcdef0123456789abcdef012g", bin),
                     -1);
    assert_int_equal(rmodel_fp_bin("00ff10abcdef0123456789abcdef01234", bin),
                     -1);
}

/* Linear hashing: with level L and split s, the buckets are 0 .. 2^L + s
 * - 1; a bucket below the split uses one more bit. Every fingerprint
 * lands in range, and a split of bucket s sends each of its cards either
 * to s or to s + 2^L (what RMODEL_LUA_SPLIT moves). */
static void test_bucket_linear_hashing(void **state)
{
    (void)state;
    uint8_t fp[RMODEL_FP_BIN] = {0x12, 0x34, 0x56, 0x78};
    uint64_t h = 0x12345678;
    assert_int_equal(rmodel_bucket(fp, 0, 0), 0);
    assert_int_equal(rmodel_bucket(fp, 4, 0), h % 16);
    assert_int_equal(rmodel_bucket(fp, 4, 9), h % 32); /* 8 < 9: split */
    assert_int_equal(rmodel_bucket(fp, 4, 8), h % 16); /* 8 not yet */
    uint32_t x = 2463534242u;
    for (int level = 0; level < 20; level++) {
        for (uint64_t split = 0; split < (UINT64_C(1) << level);
             split += 1 + (split >> 2)) {
            for (int i = 0; i < 200; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                fp[0] = (uint8_t)(x >> 24);
                fp[1] = (uint8_t)(x >> 16);
                fp[2] = (uint8_t)(x >> 8);
                fp[3] = (uint8_t)x;
                uint64_t b = rmodel_bucket(fp, level, split);
                assert_true(b < (UINT64_C(1) << level) + split);
                uint64_t after = rmodel_bucket(fp, level, split + 1);
                if (b != split) {
                    assert_int_equal(after, b);
                } else {
                    assert_true(after == split ||
                                after == split + (UINT64_C(1) << level));
                }
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_layout_keys_and_fingerprints),
        cmocka_unit_test(test_bucket_linear_hashing),
        cmocka_unit_test(test_record_parse),
        cmocka_unit_test(test_record_malformed),
        cmocka_unit_test(test_breach_status_and_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
