/* card.c - Luhn, masking, key loading and keyed fingerprints.
 *
 * Key material lives in two places only: the file buffer while the key file
 * is parsed (wiped right after) and the precomputed HMAC pad states inside
 * struct card_key (wiped by card_key_destroy). The key file is read by
 * secret_file_read with read(2), not stdio, so no unwiped stdio buffer
 * ever holds it.
 */
#include "card.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SHA256_Init/Update/Final are deprecated in OpenSSL 3 but are the only
 * way to copy a precomputed HMAC pad state as a plain struct; that copy is
 * what makes a fingerprint cost two SHA-256 compressions (~0.3 us) instead
 * of a full EVP_MAC round (~1 us). */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/sha.h>

#include "secret_file.h"
#include "text.h"

#define CARD_KEY_MIN 16
#define CARD_KEY_MAX 64
/* A key file is a few lines; anything larger is not a key file. */
#define CARD_KEY_FILE_MAX 65536

struct card_key {
    char id[CARD_KEY_ID_MAX + 1];
    SHA256_CTX inner; /* state after hashing key ^ ipad */
    SHA256_CTX outer; /* state after hashing key ^ opad */
};

static const char hexdig[] = "0123456789abcdef";

static int all_digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!text_is_digit(s[i])) {
            return 0;
        }
    }
    return 1;
}

/* Luhn sum of digits[0..len); when double_last is 1 the rightmost digit is
 * doubled (as when a check digit is still to be appended). */
static unsigned luhn_sum(const char *digits, size_t len, int double_last)
{
    unsigned sum = 0;
    int dbl = double_last;

    for (size_t i = len; i > 0; i--) {
        unsigned d = (unsigned)(digits[i - 1] - '0');
        if (dbl) {
            d *= 2;
            if (d > 9) {
                d -= 9;
            }
        }
        sum += d;
        dbl = !dbl;
    }
    return sum;
}

int card_luhn_ok(const char *pan, size_t len)
{
    if (pan == NULL || len < CARD_PAN_MIN || len > CARD_PAN_MAX ||
        !all_digits(pan, len)) {
        return 0;
    }
    return luhn_sum(pan, len, 0) % 10 == 0;
}

char card_luhn_digit(const char *digits, size_t len)
{
    unsigned sum = luhn_sum(digits, len, 1);
    return (char)('0' + (10 - sum % 10) % 10);
}

void card_mask(const char *pan, size_t len, char out[CARD_MASK_SIZE])
{
    if (pan == NULL || len < CARD_PAN_MIN || len > CARD_PAN_MAX ||
        !all_digits(pan, len)) {
        memcpy(out, "invalid", sizeof("invalid"));
        return;
    }
    memcpy(out, pan, 6);
    memset(out + 6, '*', len - 10);
    memcpy(out + len - 4, pan + len - 4, 4);
    out[len] = '\0';
}

int card_key_id_valid(const char *id, size_t len)
{
    if (len < 1 || len > CARD_KEY_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || text_is_digit(c) ||
              c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

struct card_key *card_key_new(const char *key_id, const uint8_t *key,
                              size_t keylen)
{
    struct card_key *k = NULL;
    uint8_t pad[64];

    if (key_id == NULL || key == NULL ||
        !card_key_id_valid(key_id, strlen(key_id)) || keylen < CARD_KEY_MIN ||
        keylen > CARD_KEY_MAX) {
        return NULL;
    }
    k = calloc(1, sizeof(*k));
    if (k == NULL) {
        return NULL;
    }
    memcpy(k->id, key_id, strlen(key_id) + 1);
    /* HMAC (RFC 2104) with a key of at most one block: pads are the key
     * XOR 0x36 / 0x5c, zero-extended to 64 bytes. */
    memset(pad, 0, sizeof(pad));
    memcpy(pad, key, keylen);
    for (size_t i = 0; i < sizeof(pad); i++) {
        pad[i] ^= 0x36;
    }
    if (!SHA256_Init(&k->inner) || !SHA256_Update(&k->inner, pad, 64)) {
        goto err;
    }
    for (size_t i = 0; i < sizeof(pad); i++) {
        pad[i] ^= 0x36 ^ 0x5c;
    }
    if (!SHA256_Init(&k->outer) || !SHA256_Update(&k->outer, pad, 64)) {
        goto err;
    }
    OPENSSL_cleanse(pad, sizeof(pad));
    return k;

err:
    OPENSSL_cleanse(pad, sizeof(pad));
    card_key_destroy(k);
    return NULL;
}

void card_key_destroy(struct card_key *key)
{
    if (key == NULL) {
        return;
    }
    OPENSSL_cleanse(key, sizeof(*key));
    free(key);
}

const char *card_key_id(const struct card_key *key)
{
    return key != NULL ? key->id : "";
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Parses the key file text. On success writes the id and key bytes and
 * returns 0; on error returns -1 with a message that names the line but
 * never echoes it. */
static int parse_key_text(const char *path, const char *text, size_t len,
                          char id[CARD_KEY_ID_MAX + 1],
                          uint8_t key[CARD_KEY_MAX], size_t *keylen,
                          char *errbuf, size_t errlen)
{
    size_t pos = 0;
    unsigned lineno = 0;
    int found = 0;

    while (pos < len) {
        size_t end = pos;
        size_t b;
        size_t e;
        size_t id_b;
        size_t id_e;
        size_t hex_b;
        size_t hex_e;

        while (end < len && text[end] != '\n') {
            end++;
        }
        lineno++;
        b = pos;
        e = end;
        pos = end + 1;
        while (b < e && is_blank(text[b])) {
            b++;
        }
        while (e > b && is_blank(text[e - 1])) {
            e--;
        }
        if (b == e || text[b] == '#') {
            continue;
        }
        if (found) {
            text_errf(errbuf, errlen, "key file %s: line %u: more than one key",
                      path, lineno);
            return -1;
        }
        id_b = b;
        id_e = b;
        while (id_e < e && !is_blank(text[id_e])) {
            id_e++;
        }
        hex_b = id_e;
        while (hex_b < e && is_blank(text[hex_b])) {
            hex_b++;
        }
        hex_e = hex_b;
        while (hex_e < e && !is_blank(text[hex_e])) {
            hex_e++;
        }
        if (hex_b == id_e || hex_b == e || hex_e != e) {
            text_errf(errbuf, errlen,
                      "key file %s: line %u: expected \"<key_id> <hex key>\"",
                      path, lineno);
            return -1;
        }
        if (!card_key_id_valid(text + id_b, id_e - id_b)) {
            text_errf(errbuf, errlen,
                      "key file %s: line %u: key id must be 1-%d of "
                      "[A-Za-z0-9_-]",
                      path, lineno, CARD_KEY_ID_MAX);
            return -1;
        }
        if ((hex_e - hex_b) % 2 != 0 || hex_e - hex_b < 2 * CARD_KEY_MIN ||
            hex_e - hex_b > 2 * CARD_KEY_MAX) {
            text_errf(errbuf, errlen,
                      "key file %s: line %u: key must be %d..%d hex digits "
                      "(even count)",
                      path, lineno, 2 * CARD_KEY_MIN, 2 * CARD_KEY_MAX);
            return -1;
        }
        for (size_t i = 0; i < (hex_e - hex_b) / 2; i++) {
            int hi = text_hex_val(text[hex_b + 2 * i]);
            int lo = text_hex_val(text[hex_b + 2 * i + 1]);
            if (hi < 0 || lo < 0) {
                text_errf(errbuf, errlen,
                          "key file %s: line %u: key is not hex", path, lineno);
                return -1;
            }
            key[i] = (uint8_t)(hi << 4 | lo);
        }
        *keylen = (hex_e - hex_b) / 2;
        memcpy(id, text + id_b, id_e - id_b);
        id[id_e - id_b] = '\0';
        found = 1;
    }
    if (!found) {
        text_errf(errbuf, errlen, "key file %s: no key line", path);
        return -1;
    }
    return 0;
}

struct card_key *card_key_load(const char *path, char *errbuf, size_t errlen)
{
    struct card_key *k = NULL;
    char *text = NULL;
    size_t len = 0;
    uint8_t key[CARD_KEY_MAX];
    size_t keylen = 0;
    char id[CARD_KEY_ID_MAX + 1];

    if (path == NULL) {
        text_errf(errbuf, errlen, "key file: no path");
        return NULL;
    }
    text = calloc(1, CARD_KEY_FILE_MAX + 1);
    if (text == NULL) {
        text_errf(errbuf, errlen, "key file %s: out of memory", path);
        goto out;
    }
    if (secret_file_read(path, "key file", text, CARD_KEY_FILE_MAX, &len,
                         errbuf, errlen) != 0) {
        goto out;
    }
    if (parse_key_text(path, text, len, id, key, &keylen, errbuf, errlen) !=
        0) {
        goto out;
    }
    errno = 0;
    k = card_key_new(id, key, keylen);
    if (k == NULL) {
        /* the id and length are valid here: no memory, or OpenSSL */
        text_errf(errbuf, errlen, "key file %s: %s", path,
                  errno == ENOMEM ? "out of memory"
                                  : "cannot set up HMAC-SHA256");
    }

out:
    if (text != NULL) {
        OPENSSL_cleanse(text, CARD_KEY_FILE_MAX + 1);
        free(text);
    }
    OPENSSL_cleanse(key, sizeof(key));
    return k;
}

static void to_hex(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdig[in[i] >> 4];
        out[2 * i + 1] = hexdig[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

/* HMAC over up to four parts from the precomputed pad states; 32 bytes
 * to mac. */
static int key_mac(struct card_key *key, const void *const parts[],
                   const size_t lens[], size_t nparts, uint8_t mac[32])
{
    SHA256_CTX c;
    uint8_t ih[32];
    int ok;

    if (key == NULL) {
        return -1;
    }
    c = key->inner;
    ok = 1;
    for (size_t i = 0; i < nparts; i++) {
        ok &= SHA256_Update(&c, parts[i], lens[i]);
    }
    ok &= SHA256_Final(ih, &c);
    c = key->outer;
    ok &= SHA256_Update(&c, ih, sizeof(ih));
    ok &= SHA256_Final(mac, &c);
    OPENSSL_cleanse(&c, sizeof(c));
    OPENSSL_cleanse(ih, sizeof(ih));
    return ok ? 0 : -1;
}

int card_fingerprint(struct card_key *key, const char *pan, size_t len,
                     char out[CARD_FP_SIZE])
{
    uint8_t mac[32];
    const void *parts[1] = {pan};
    size_t lens[1] = {len};

    if (key_mac(key, parts, lens, 1, mac) != 0) {
        out[0] = '\0';
        return -1;
    }
    to_hex(mac, CARD_FP_HEX_LEN / 2, out);
    OPENSSL_cleanse(mac, sizeof(mac));
    return 0;
}

int card_expiry_tag(struct card_key *key, const char *fingerprint,
                    const char expiry[4], char out[CARD_EXPTAG_SIZE])
{
    uint8_t mac[32];
    const void *parts[4] = {"exp:", fingerprint, ":", expiry};
    size_t lens[4] = {4, strlen(fingerprint), 1, 4};

    if (key_mac(key, parts, lens, 4, mac) != 0) {
        out[0] = '\0';
        return -1;
    }
    to_hex(mac, CARD_EXPTAG_HEX_LEN / 2, out);
    OPENSSL_cleanse(mac, sizeof(mac));
    return 0;
}

struct card_key *card_key_derive(struct card_key *key, const char *label)
{
    uint8_t sub[32];
    const void *parts[1] = {label};
    size_t lens[1] = {label != NULL ? strlen(label) : 0};
    struct card_key *k;

    if (label == NULL || key_mac(key, parts, lens, 1, sub) != 0) {
        return NULL;
    }
    k = card_key_new(key->id, sub, sizeof(sub));
    OPENSSL_cleanse(sub, sizeof(sub));
    return k;
}

int card_mac_hex(struct card_key *key, const void *data, size_t len,
                 char out[CARD_MAC_SIZE])
{
    uint8_t mac[32];
    const void *parts[1] = {data != NULL ? data : ""};
    size_t lens[1] = {data != NULL ? len : 0};

    if (key_mac(key, parts, lens, 1, mac) != 0) {
        out[0] = '\0';
        return -1;
    }
    to_hex(mac, sizeof(mac), out);
    OPENSSL_cleanse(mac, sizeof(mac));
    return 0;
}

int card_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *data,
                     size_t datalen, uint8_t out[32])
{
    unsigned int outl = 0;
    static const uint8_t empty[1];

    if (keylen > INT_MAX) {
        return -1;
    }
    if (data == NULL) {
        data = empty;
        datalen = 0;
    }
    if (HMAC(EVP_sha256(), key != NULL ? key : empty, (int)keylen, data,
             datalen, out, &outl) == NULL ||
        outl != 32) {
        return -1;
    }
    return 0;
}
