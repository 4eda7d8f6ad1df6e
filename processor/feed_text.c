/* feed_text.c - see feed_text.h. */
#include "feed_text.h"

#include <openssl/evp.h>

int feed_text_sha256(const void *p, size_t len, uint8_t out[FEED_SHA256_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(p, len, out, &n, EVP_sha256(), NULL) != 1 ||
        n != FEED_SHA256_LEN) {
        return -1;
    }
    return 0;
}

int feed_text_hex_val(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* Parses s[0..len) as a decimal uint64 (digits only). */
int feed_text_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Replaces every byte of s that is not printable ASCII (or is a quote or
 * backslash) with '?', so that it can be echoed in a message. */
void feed_text_ascii_only(char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
            *s = '?';
        }
    }
}
