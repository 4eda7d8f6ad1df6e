/* test_card.c - Luhn, masking, HMAC-SHA256 (RFC 4231), fingerprints and
 * key files. Only synthetic test card numbers; no PAN is ever printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "card.h"

#define S(s) (s), strlen(s)

static void test_luhn_table(void **state)
{
    static const struct {
        const char *pan;
        int ok;
    } cases[] = {
        {"4111111111111111", 1},
        {"5555555555554444", 1},
        {"378282246310005", 1},
        {"6011111111111117", 1},
        {"3530111333300000", 1},
        {"4222222222222", 1},
        {"4111111111111111110", 1},
        {"4111111111111112", 0},
        {"5555555555554445", 0},
        {"378282246310006", 0},
        {"411111111111", 0},         /* 12 digits: too short */
        {"41111111111111111110", 0}, /* 20 digits: too long */
        {"", 0},
        {"4111a11111111111", 0},
        {"4111 1111 1111 1111", 0},
        {"-4111111111111111", 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (card_luhn_ok(S(cases[i].pan)) != cases[i].ok) {
            fail_msg("luhn case %zu", i);
        }
    }
    assert_int_equal(card_luhn_ok(NULL, 16), 0);
    /* Only the first len bytes count. */
    assert_int_equal(card_luhn_ok("4111111111111111XYZ", 16), 1);
}

static void test_luhn_digit(void **state)
{
    (void)state;
    assert_int_equal(card_luhn_digit(S("7992739871")), '3');
    assert_int_equal(card_luhn_digit(S("411111111111111")), '1');
    assert_int_equal(card_luhn_digit(S("555555555555444")), '4');
    assert_int_equal(card_luhn_digit(S("37828224631000")), '5');
    assert_int_equal(card_luhn_digit(S("411111111111111111")), '0');
    assert_int_equal(card_luhn_digit(S("400000000000")), '6');
    assert_int_equal(card_luhn_digit(S("0")), '0');

    /* Every completed number passes the check. */
    char pan[CARD_PAN_MAX + 1];
    for (size_t len = CARD_PAN_MIN; len <= CARD_PAN_MAX; len++) {
        for (size_t i = 0; i < len - 1; i++) {
            pan[i] = (char)('0' + (i * 7 + len) % 10);
        }
        pan[len - 1] = card_luhn_digit(pan, len - 1);
        pan[len] = '\0';
        assert_int_equal(card_luhn_ok(pan, len), 1);
        pan[len - 1] = (char)('0' + (pan[len - 1] - '0' + 1) % 10);
        assert_int_equal(card_luhn_ok(pan, len), 0);
    }
}

static void test_mask(void **state)
{
    char out[CARD_MASK_SIZE];
    (void)state;

    card_mask(S("4222222222222"), out);
    assert_string_equal(out, "422222***2222");
    card_mask(S("4111111111111111"), out);
    assert_string_equal(out, "411111******1111");
    card_mask(S("4111111111111111110"), out);
    assert_string_equal(out, "411111*********1110");
    /* Luhn is not the masker's business: 13..19 digits is enough. */
    card_mask(S("4111111111111112"), out);
    assert_string_equal(out, "411111******1112");

    card_mask(S("411111111111"), out);
    assert_string_equal(out, "invalid");
    card_mask(S("41111111111111111110"), out);
    assert_string_equal(out, "invalid");
    card_mask(S("4111x11111111111"), out);
    assert_string_equal(out, "invalid");
    card_mask(S(""), out);
    assert_string_equal(out, "invalid");
    card_mask(NULL, 16, out);
    assert_string_equal(out, "invalid");
}

static size_t unhex(const char *hex, uint8_t *out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void tohex(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(out + 2 * i, 3, "%02x", in[i]);
    }
}

static void test_hmac_rfc4231(void **state)
{
    uint8_t key[200];
    uint8_t data[200];
    uint8_t mac[32];
    char hex[65];
    size_t klen;
    size_t dlen;
    (void)state;

    /* Test case 1 */
    memset(key, 0x0b, 20);
    assert_int_equal(
        card_hmac_sha256(key, 20, (const uint8_t *)"Hi There", 8, mac), 0);
    tohex(mac, 32, hex);
    assert_string_equal(
        hex,
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    /* Test case 2 */
    assert_int_equal(
        card_hmac_sha256((const uint8_t *)"Jefe", 4,
                         (const uint8_t *)"what do ya want for nothing?", 28,
                         mac),
        0);
    tohex(mac, 32, hex);
    assert_string_equal(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    /* Test case 3 */
    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    assert_int_equal(card_hmac_sha256(key, 20, data, 50, mac), 0);
    tohex(mac, 32, hex);
    assert_string_equal(
        hex,
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

    /* Test case 4 */
    klen = unhex("0102030405060708090a0b0c0d0e0f10111213141516171819", key);
    memset(data, 0xcd, 50);
    assert_int_equal(card_hmac_sha256(key, klen, data, 50, mac), 0);
    tohex(mac, 32, hex);
    assert_string_equal(
        hex,
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");

    /* Test case 6 */
    memset(key, 0xaa, 131);
    {
        const char *d =
            "Test Using Larger Than Block-Size Key - Hash Key First";
        dlen = strlen(d);
        assert_int_equal(
            card_hmac_sha256(key, 131, (const uint8_t *)d, dlen, mac), 0);
    }
    tohex(mac, 32, hex);
    assert_string_equal(
        hex,
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    /* Test case 7 */
    {
        const char *d = "This is a test using a larger than block-size key "
                        "and a larger than block-size data. The key needs "
                        "to be hashed before being used by the HMAC "
                        "algorithm.";
        dlen = strlen(d);
        assert_int_equal(
            card_hmac_sha256(key, 131, (const uint8_t *)d, dlen, mac), 0);
    }
    tohex(mac, 32, hex);
    assert_string_equal(
        hex,
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

static const uint8_t test_key[32] = {
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
    0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
    0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
};
static const char test_key_hex[] =
    "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210";

static void test_key_new(void **state)
{
    struct card_key *k;
    (void)state;

    k = card_key_new("k1", test_key, sizeof(test_key));
    assert_non_null(k);
    assert_string_equal(card_key_id(k), "k1");
    card_key_destroy(k);
    card_key_destroy(NULL);

    assert_null(card_key_new("k1", test_key, 15));
    assert_null(card_key_new("k1", test_key, 65));
    assert_null(card_key_new("", test_key, 16));
    assert_null(card_key_new("bad id", test_key, 16));
    assert_null(card_key_new("k1:x", test_key, 16));
    assert_null(card_key_new("abcdefghijklmnopqrstuvwxyz0123456", test_key,
                             16)); /* 33 chars */
    k = card_key_new("abcdefghijklmnopqrstuvwxyz-_0123", test_key, 16);
    assert_non_null(k);
    card_key_destroy(k);
}

/* Key ids take [A-Za-z0-9_-] only: the bytes just outside each range are
 * refused; a NULL id or key is refused; card_key_id(NULL) is "". */
static void test_key_id_edges(void **state)
{
    (void)state;
    const char *bad[] = {"a@b", "a[b", "a`b", "a{b", "a~b",
                         "a/b", "a:b", "a b", "a.b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct card_key *k = card_key_new(bad[i], test_key, sizeof(test_key));
        if (k != NULL) {
            fail_msg("key id \"%s\" accepted", bad[i]);
        }
    }
    const char *good[] = {"A", "Z", "a", "z", "0", "9", "_", "-"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct card_key *k = card_key_new(good[i], test_key, sizeof(test_key));
        if (k == NULL) {
            fail_msg("key id \"%s\" refused", good[i]);
        }
        assert_string_equal(card_key_id(k), good[i]);
        card_key_destroy(k);
    }
    assert_null(card_key_new(NULL, test_key, sizeof(test_key)));
    assert_null(card_key_new("k1", NULL, sizeof(test_key)));
    assert_string_equal(card_key_id(NULL), "");
}

/* HMAC-SHA256 with no key and no data is the published value for an
 * empty key and an empty message. */
static void test_hmac_empty(void **state)
{
    (void)state;
    uint8_t out[32];
    char hex[65];
    assert_int_equal(card_hmac_sha256(NULL, 0, NULL, 0, out), 0);
    tohex(out, 32, hex);
    assert_string_equal(
        hex,
        "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static void test_fingerprint(void **state)
{
    static const char *pans[] = {"4111111111111111", "5555555555554444",
                                 "378282246310005", "4222222222222"};
    struct card_key *k = card_key_new("k1", test_key, sizeof(test_key));
    char fp[CARD_FP_SIZE];
    char fp2[CARD_FP_SIZE];
    char want[65];
    uint8_t mac[32];
    (void)state;

    assert_non_null(k);
    for (size_t i = 0; i < sizeof(pans) / sizeof(pans[0]); i++) {
        assert_int_equal(card_fingerprint(k, S(pans[i]), fp), 0);
        assert_int_equal(strlen(fp), CARD_FP_HEX_LEN);
        assert_int_equal(card_hmac_sha256(test_key, sizeof(test_key),
                                          (const uint8_t *)pans[i],
                                          strlen(pans[i]), mac),
                         0);
        tohex(mac, 16, want);
        assert_string_equal(fp, want);
        /* The keyed context is re-initialised: same input, same output. */
        assert_int_equal(card_fingerprint(k, S(pans[i]), fp2), 0);
        assert_string_equal(fp, fp2);
    }
    assert_int_equal(card_fingerprint(k, S("4111111111111111"), fp), 0);
    assert_int_equal(card_fingerprint(k, S("5555555555554444"), fp2), 0);
    assert_string_not_equal(fp, fp2);

    /* A different key gives a different fingerprint. */
    {
        uint8_t other[32];
        struct card_key *k2;
        memcpy(other, test_key, sizeof(other));
        other[0] ^= 1;
        k2 = card_key_new("k2", other, sizeof(other));
        assert_non_null(k2);
        assert_int_equal(card_fingerprint(k2, S("4111111111111111"), fp2), 0);
        assert_int_equal(card_fingerprint(k, S("4111111111111111"), fp), 0);
        assert_string_not_equal(fp, fp2);
        card_key_destroy(k2);
    }
    card_key_destroy(k);
}

static void test_expiry_tag(void **state)
{
    struct card_key *k = card_key_new("k1", test_key, sizeof(test_key));
    char t1[CARD_EXPTAG_SIZE];
    char t2[CARD_EXPTAG_SIZE];
    char t3[CARD_EXPTAG_SIZE];
    char want[65];
    char fp[CARD_FP_SIZE];
    char msg[64];
    uint8_t mac[32];
    (void)state;

    assert_non_null(k);
    assert_int_equal(card_fingerprint(k, S("4111111111111111"), fp), 0);
    snprintf(msg, sizeof(msg), "exp:%s:2612", fp);
    assert_int_equal(card_expiry_tag(k, fp, "2612", t1), 0);
    assert_int_equal(strlen(t1), CARD_EXPTAG_HEX_LEN);
    assert_int_equal(card_expiry_tag(k, fp, "2701", t2), 0);
    assert_string_not_equal(t1, t2);
    assert_int_equal(card_expiry_tag(k, fp, "2612", t3), 0);
    assert_string_equal(t1, t3);
    assert_int_equal(card_hmac_sha256(test_key, sizeof(test_key),
                                      (const uint8_t *)msg, strlen(msg), mac),
                     0);
    tohex(mac, 8, want);
    assert_string_equal(t1, want);
    /* Same PAN, tag and fingerprint differ in kind and length. */
    card_key_destroy(k);
}

static void test_derived_key_mac(void **state)
{
    static const char label[] = "cardwatch dead-letter v1";
    static const char pan[] = "4111111111111111";
    struct card_key *k = card_key_new("k1", test_key, sizeof(test_key));
    struct card_key *dk;
    uint8_t sub[32], mac[32];
    char got[CARD_MAC_SIZE], want[65], fp[CARD_FP_SIZE], plain[65];
    (void)state;

    assert_non_null(k);
    dk = card_key_derive(k, label);
    assert_non_null(dk);
    assert_string_equal(card_key_id(dk), "k1");
    /* dk = HMAC(key, label); mac = HMAC(dk, data) */
    assert_int_equal(card_hmac_sha256(test_key, sizeof(test_key),
                                      (const uint8_t *)label, strlen(label),
                                      sub),
                     0);
    assert_int_equal(card_hmac_sha256(sub, sizeof(sub), (const uint8_t *)pan,
                                      strlen(pan), mac),
                     0);
    tohex(mac, 32, want);
    assert_int_equal(card_mac_hex(dk, S(pan), got), 0);
    assert_int_equal(strlen(got), CARD_MAC_HEX_LEN);
    assert_string_equal(got, want);
    /* neither the fingerprint nor the MAC under the card key itself */
    assert_int_equal(card_fingerprint(k, S(pan), fp), 0);
    assert_int_not_equal(strncmp(got, fp, CARD_FP_HEX_LEN), 0);
    assert_int_equal(card_mac_hex(k, S(pan), plain), 0);
    assert_string_not_equal(got, plain);
    assert_int_equal(strncmp(plain, fp, CARD_FP_HEX_LEN), 0);
    /* empty data (and NULL with length 0) is a MAC too */
    assert_int_equal(card_hmac_sha256(sub, sizeof(sub), NULL, 0, mac), 0);
    tohex(mac, 32, want);
    assert_int_equal(card_mac_hex(dk, NULL, 0, got), 0);
    assert_string_equal(got, want);
    assert_int_equal(card_mac_hex(dk, "", 0, got), 0);
    assert_string_equal(got, want);
    /* NULL key or label */
    assert_null(card_key_derive(NULL, label));
    assert_null(card_key_derive(k, NULL));
    assert_int_equal(card_mac_hex(NULL, S(pan), got), -1);
    assert_string_equal(got, "");
    /* without a key no fingerprint or expiry tag either: "" and -1, so
     * a caller that ignores the -1 still writes no stale value */
    memset(fp, 'x', sizeof(fp));
    assert_int_equal(card_fingerprint(NULL, S(pan), fp), -1);
    assert_string_equal(fp, "");
    {
        char tag[CARD_EXPTAG_SIZE];
        memset(tag, 'x', sizeof(tag));
        assert_int_equal(card_expiry_tag(NULL, want, "2812", tag), -1);
        assert_string_equal(tag, "");
    }
    /* a key length HMAC() cannot take (an int) is refused, not cut */
    assert_int_equal(card_hmac_sha256(test_key, (size_t)INT_MAX + 1,
                                      (const uint8_t *)pan, strlen(pan), mac),
                     -1);
    card_key_destroy(dk);
    card_key_destroy(k);
}

/* ---- key files ---- */

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_card.XXXXXX");
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text, mode_t mode)
{
    static char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static void assert_refused(const char *path, const char *hex)
{
    char err[256];
    struct card_key *k;

    err[0] = '\0';
    k = card_key_load(path, err, sizeof(err));
    assert_null(k);
    assert_true(strlen(err) > 0);
    if (hex != NULL && strstr(err, hex) != NULL) {
        fail_msg("error message contains key material");
    }
    /* Nor any 32-char prefix of it. */
    if (hex != NULL && strlen(hex) >= 32) {
        char part[33];
        memcpy(part, hex, 32);
        part[32] = '\0';
        assert_null(strstr(err, part));
    }
}

static void test_key_file_good(void **state)
{
    char text[256];
    char err[256];
    char fp[CARD_FP_SIZE];
    char fp2[CARD_FP_SIZE];
    struct card_key *k;
    struct card_key *k2;
    const char *path;
    (void)state;

    snprintf(text, sizeof(text),
             "# cardwatch fingerprint key\n\n  \t\nprod-2024_a %s\n# end\n",
             test_key_hex);
    path = write_file("good.key", text, 0600);
    err[0] = '\0';
    k = card_key_load(path, err, sizeof(err));
    assert_non_null(k);
    assert_string_equal(card_key_id(k), "prod-2024_a");
    k2 = card_key_new("prod-2024_a", test_key, sizeof(test_key));
    assert_non_null(k2);
    assert_int_equal(card_fingerprint(k, S("4111111111111111"), fp), 0);
    assert_int_equal(card_fingerprint(k2, S("4111111111111111"), fp2), 0);
    assert_string_equal(fp, fp2);
    card_key_destroy(k);
    card_key_destroy(k2);

    /* 0400, CRLF, upper-case hex and a 64-byte key are fine too. */
    path =
        write_file("crlf.key", "K2 00112233445566778899AABBCCDDEEFF\r\n", 0400);
    k = card_key_load(path, err, sizeof(err));
    assert_non_null(k);
    assert_string_equal(card_key_id(k), "K2");
    card_key_destroy(k);
    memset(text, 0, sizeof(text));
    memcpy(text, "k64 ", 4);
    memset(text + 4, 'a', 128);
    path = write_file("long.key", text, 0600);
    k = card_key_load(path, err, sizeof(err));
    assert_non_null(k);
    card_key_destroy(k);
}

static void test_key_file_refused(void **state)
{
    char err[256];
    char text[512];
    const char *path;
    char sub[128];
    (void)state;

    snprintf(text, sizeof(text), "k1 %s\n", test_key_hex);
    assert_refused(write_file("open.key", text, 0644), test_key_hex);
    assert_refused(write_file("grp.key", text, 0640), test_key_hex);
    assert_refused(write_file("grpw.key", text, 0620), test_key_hex);
    assert_refused(write_file("oth.key", text, 0604), test_key_hex);

    snprintf(sub, sizeof(sub), "%s/missing.key", tmpdir);
    assert_refused(sub, NULL);
    assert_refused(tmpdir, NULL); /* a directory */
    assert_refused("/dev/null", NULL);

    /* Malformed. */
    assert_refused(write_file("empty.key", "", 0600), NULL);
    assert_refused(write_file("comments.key", "# only\n\n", 0600), NULL);
    snprintf(text, sizeof(text), "%s\n", test_key_hex); /* no id */
    assert_refused(write_file("noid.key", text, 0600), test_key_hex);
    snprintf(text, sizeof(text), "k1 %s extra\n", test_key_hex);
    assert_refused(write_file("extra.key", text, 0600), test_key_hex);
    snprintf(text, sizeof(text), "k1 %s\nk2 %s\n", test_key_hex, test_key_hex);
    assert_refused(write_file("two.key", text, 0600), test_key_hex);
    snprintf(text, sizeof(text), "bad:id %s\n", test_key_hex);
    assert_refused(write_file("badid.key", text, 0600), test_key_hex);
    snprintf(text, sizeof(text), "k1 %.62sxz\n", test_key_hex);
    assert_refused(write_file("nothex.key", text, 0600), test_key_hex);
    snprintf(text, sizeof(text), "k1 %.63s\n", test_key_hex); /* odd */
    assert_refused(write_file("odd.key", text, 0600), test_key_hex);

    /* Not hex: a byte below '0', one between '9' and 'A', in the high
     * and in the low digit of a byte; the message says so. */
    const char *nothex[] = {"+", ":", "0+", "0:", "@", "0G"};
    for (size_t i = 0; i < sizeof(nothex) / sizeof(nothex[0]); i++) {
        size_t n = strlen(nothex[i]);
        snprintf(text, sizeof(text), "k1 %s%.*s\n", nothex[i], 64 - (int)n,
                 test_key_hex);
        path = write_file("nothex2.key", text, 0600);
        assert_refused(path, NULL);
        struct card_key *k = card_key_load(path, err, sizeof(err));
        assert_null(k);
        if (strstr(err, "key is not hex") == NULL) {
            fail_msg("\"%s\": %s", nothex[i], err);
        }
    }

    /* Short key: 15 bytes. */
    snprintf(text, sizeof(text), "k1 %.30s\n", test_key_hex);
    assert_refused(write_file("short.key", text, 0600), test_key_hex);
    /* Too long: 65 bytes. */
    memset(text, 0, sizeof(text));
    memcpy(text, "k1 ", 3);
    memset(text + 3, 'b', 130);
    path = write_file("toolong.key", text, 0600);
    assert_refused(path, text + 3);

    /* No crash without an error buffer. */
    assert_null(card_key_load(sub, NULL, 0));
    /* No path at all. */
    assert_null(card_key_load(NULL, err, sizeof(err)));
    assert_string_equal(err, "key file: no path");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_luhn_table),
        cmocka_unit_test(test_luhn_digit),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_key_new),
        cmocka_unit_test(test_key_id_edges),
        cmocka_unit_test(test_hmac_empty),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_expiry_tag),
        cmocka_unit_test(test_derived_key_mac),
        cmocka_unit_test(test_key_file_good),
        cmocka_unit_test(test_key_file_refused),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
