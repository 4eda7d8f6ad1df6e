/* Unit tests for app_token() (app_feed.c, `cardwatch token`): the first
 * line is a new 43-character base64url token (32 random bytes), the second
 * "token_sha256 = " and the SHA-256 of that line in lower-case hex
 * (computed here with OpenSSL, independently of feed_auth.c); two calls
 * give two different tokens; the hint on where each line goes is written
 * only when a hint stream is given (the command passes stderr, a caller
 * may pass NULL for none). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "app_feed.h"

/* Everything written to f (a tmpfile) so far, NUL-terminated, into buf. */
static void slurp(FILE *f, char *buf, size_t cap)
{
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
}

/* Checks that text is "<token>\ntoken_sha256 = <sha256 of token>\n" and
 * copies the token into tok (44 bytes). */
static void check_token_lines(const char *text, char tok[44])
{
    const char *nl = strchr(text, '\n');
    assert_non_null(nl);
    assert_int_equal(nl - text, 43);
    for (const char *p = text; p < nl; p++) {
        int ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                 (*p >= '0' && *p <= '9') || *p == '-' || *p == '_';
        assert_true(ok);
    }
    memcpy(tok, text, 43);
    tok[43] = '\0';
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)tok, 43, md);
    char want[128];
    int at = snprintf(want, sizeof(want), "token_sha256 = ");
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        at += snprintf(want + at, sizeof(want) - (size_t)at, "%02x", md[i]);
    }
    snprintf(want + at, sizeof(want) - (size_t)at, "\n");
    assert_string_equal(nl + 1, want);
}

static void test_token_without_hint(void **state)
{
    (void)state;
    FILE *out = tmpfile();
    assert_non_null(out);
    assert_int_equal(app_token(out, NULL), 0);
    char text[512], tok[44];
    slurp(out, text, sizeof(text));
    check_token_lines(text, tok); /* the two lines and nothing else */
    fclose(out);
}

static void test_token_with_hint_and_fresh_each_time(void **state)
{
    (void)state;
    FILE *out = tmpfile(), *hint = tmpfile();
    assert_non_null(out);
    assert_non_null(hint);
    assert_int_equal(app_token(out, hint), 0);
    char text[512], tok1[44], tok2[44];
    slurp(out, text, sizeof(text));
    check_token_lines(text, tok1);
    slurp(hint, text, sizeof(text));
    assert_non_null(strstr(text, "give the first line to the issuer"));
    assert_non_null(strstr(text, "[issuer ID] section"));
    fclose(out);

    out = tmpfile();
    assert_non_null(out);
    assert_int_equal(app_token(out, NULL), 0);
    slurp(out, text, sizeof(text));
    check_token_lines(text, tok2);
    assert_string_not_equal(tok1, tok2);
    fclose(out);
    fclose(hint);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_without_hint),
        cmocka_unit_test(test_token_with_hint_and_fresh_each_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
