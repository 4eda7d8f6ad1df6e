/* test_feed_auth.c - the pure parts of the issuer feed: token hashing and
 * constant-time matching, the Authorization header, [feed] checks, cursors
 * and query parameters, the rate limiter, the per-peer throttle of failed
 * authentications, outcome bodies and notes, what
 * an outcome reads from an alert, statistics, the page's CSP, its
 * Chart.js file and If-None-Match.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "feed_config.h"
#include "feed_outcome.h"
#include "feed_query.h"
#include "feed_token.h"
#include "feed_triage.h"

/* SHA-256 of "abc", "token-b" and "token-b2" (hashlib...hexdigest()). */
#define H_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define H_TOKB                                                                 \
    "49e2bb7eab54cf09b409ffafd3fa8a8a955a60eb972faacaefbed3dbd3207132"
#define H_TOKB_ALT                                                             \
    "1a02af42de2714a6e8cd41cd71cd19c46224dd4cad20247685bf57a6b7e88a99"

/* Loads text as a config file into c (config_init'ed here). */
static void load(struct config *c, const char *text)
{
    char path[] = "/tmp/cw-feed-auth-XXXXXX";
    char err[512];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(config_init(c), 0);
    int rc = config_load(c, path, err, sizeof(err));
    unlink(path);
    if (rc != 0) {
        fail_msg("config_load: %s", err);
    }
}

static void test_hash_and_encode(void **state)
{
    (void)state;
    char hex[FEED_HASH_HEX + 1];
    assert_int_equal(feed_token_hash_hex("abc", 3, hex), 0);
    assert_string_equal(hex, H_ABC);

    uint8_t z[32] = {0};
    char out[64];
    assert_int_equal(feed_token_encode(z, 32, out, sizeof(out)), 43);
    assert_int_equal(strspn(out, "A"), 43);
    const uint8_t b[] = {0xfb, 0xff, 0xbf};
    assert_int_equal(feed_token_encode(b, 3, out, sizeof(out)), 4);
    assert_string_equal(out, "-_-_");
    assert_int_equal(feed_token_encode(b, 2, out, sizeof(out)), 3);
    assert_string_equal(out, "-_8");
    assert_int_equal(feed_token_encode(b, 1, out, sizeof(out)), 2);
    assert_string_equal(out, "-w");
    assert_int_equal(feed_token_encode(z, 32, out, 43), -1); /* no NUL room */
}

static void test_tokens_match(void **state)
{
    (void)state;
    struct config c;
    char err[512];
    char tokb_hex[FEED_HASH_HEX + 1];
    assert_int_equal(feed_token_hash_hex("token-b", 7, tokb_hex), 0);
    assert_string_equal(tokb_hex, H_TOKB);
    load(&c, "[issuer acme]\nhome_country = DE\nbins = 400000\n"
             "token_sha256 = " H_ABC "\n"
             "[issuer none]\nhome_country = DE\nbins = 400001\n"
             "[issuer beta]\nhome_country = GB\nbins = 510000\n"
             "token_sha256 = " H_TOKB "," H_TOKB_ALT "\n");
    struct feed_tokens *t = feed_tokens_new(&c, err, sizeof(err));
    assert_non_null(t);
    assert_int_equal(feed_tokens_count(t), 3);
    long e = feed_tokens_match(t, "abc", 3);
    assert_int_equal(e, 0);
    assert_string_equal(c.issuers[feed_tokens_issuer(t, (size_t)e)].id, "acme");
    e = feed_tokens_match(t, "token-b", 7);
    assert_true(e >= 1);
    assert_string_equal(c.issuers[feed_tokens_issuer(t, (size_t)e)].id, "beta");
    /* A trailing byte, a missing byte, another case: another token. */
    assert_int_equal(feed_tokens_match(t, "abcx", 4), -1);
    assert_int_equal(feed_tokens_match(t, "ab", 2), -1);
    assert_int_equal(feed_tokens_match(t, "ABC", 3), -1);
    assert_int_equal(feed_tokens_match(t, "", 0), -1);
    char big[FEED_TOKEN_MAX + 2];
    memset(big, 'a', sizeof(big));
    assert_int_equal(feed_tokens_match(t, big, sizeof(big)), -1);
    feed_tokens_destroy(t);
    feed_tokens_destroy(NULL);
    config_free(&c);
}

static void test_tokens_errors(void **state)
{
    (void)state;
    struct config c;
    char err[512];
    /* The same hash for two issuers is refused. */
    load(&c, "[issuer acme]\nhome_country = DE\nbins = 400000\n"
             "token_sha256 = " H_ABC "\n"
             "[issuer beta]\nhome_country = GB\nbins = 510000\n"
             "token_sha256 = " H_TOKB "," H_ABC "\n");
    assert_null(feed_tokens_new(&c, err, sizeof(err)));
    assert_non_null(strstr(err, "[issuer acme] and [issuer beta] have the "
                                "same token hash"));
    assert_int_equal(feed_config_check(&c, err, sizeof(err)), -1);
    config_free(&c);
    /* ... and twice for one. */
    load(&c, "[issuer acme]\nhome_country = DE\nbins = 400000\n"
             "token_sha256 = " H_ABC "," H_ABC "\n");
    assert_null(feed_tokens_new(&c, err, sizeof(err)));
    assert_non_null(strstr(err, "same hash twice"));
    config_free(&c);
    /* Hashes the config parser would have refused, set directly: the
     * table refuses them too, naming the issuer. */
    load(&c, "[issuer acme]\nhome_country = DE\nbins = 400000\n");
    static const struct {
        const char *hashes, *want;
    } bad[] = {
        {"abc", "[issuer acme] token_sha256: each hash is 64 lower-case hex"},
        {H_ABC "0", "each hash is 64 lower-case hex digits"},
        {"BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
         "[issuer acme] token_sha256: not lower-case hex"},
        {H_TOKB ",ba7816bf8f01cfea414140de5dae2223"
                "b00361a396177a9cb410ff61f20015ag",
         "not lower-case hex"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(c.issuers[0].token_sha256, sizeof(c.issuers[0].token_sha256),
                 "%s", bad[i].hashes);
        err[0] = '\0';
        assert_null(feed_tokens_new(&c, err, sizeof(err)));
        if (strstr(err, bad[i].want) == NULL) {
            fail_msg("hashes %zu: \"%s\" lacks \"%s\"", i, err, bad[i].want);
        }
    }
    config_free(&c);
}

static void test_config_check(void **state)
{
    (void)state;
    struct config c;
    char err[512];
    load(&c, "[issuer acme]\nhome_country = DE\nbins = 400000\n");
    assert_int_equal(feed_config_check(&c, err, sizeof(err)), 0);
    /* A listener without any token. */
    snprintf(c.feed_listen, sizeof(c.feed_listen), "127.0.0.1:8443");
    assert_int_equal(feed_config_check(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no [issuer ID] has a token_sha256"));
    snprintf(c.issuers[0].token_sha256, sizeof(c.issuers[0].token_sha256), "%s",
             H_ABC);
    assert_int_equal(feed_config_check(&c, err, sizeof(err)), 0);
    /* tls_cert and tls_key: both or neither. */
    snprintf(c.feed_tls_cert, sizeof(c.feed_tls_cert), "/x/cert.pem");
    assert_int_equal(feed_config_check(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "tls_cert and tls_key go together"));
    snprintf(c.feed_tls_key, sizeof(c.feed_tls_key), "/x/key.pem");
    assert_int_equal(feed_config_check(&c, err, sizeof(err)), 0);
    c.feed_tls_cert[0] = '\0';
    assert_int_equal(feed_config_check(&c, err, sizeof(err)), -1);
    config_free(&c);
}

static void test_bearer(void **state)
{
    (void)state;
    const char *t;
    size_t n;
    assert_int_equal(feed_bearer("Bearer abc", &t, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(t, "abc", 3);
    assert_int_equal(feed_bearer("bearer   a b", &t, &n), 0);
    assert_int_equal(n, 3); /* taken as it is: "a b" */
    assert_int_equal(feed_bearer("BEARER x", &t, &n), 0);
    assert_int_equal(feed_bearer("Basic abc", &t, &n), -1);
    assert_int_equal(feed_bearer("Bearerabc", &t, &n), -1);
    assert_int_equal(feed_bearer("Bearer", &t, &n), -1);
    assert_int_equal(feed_bearer("Bearer   ", &t, &n), -1);
    assert_int_equal(feed_bearer(NULL, &t, &n), -1);
}

static void test_cursor(void **state)
{
    (void)state;
    struct feed_cursor c, d;
    char buf[FEED_CURSOR_SIZE];
    assert_int_equal(feed_cursor_parse("0-0", 3, &c), 0);
    assert_true(c.ms == 0 && c.seq == 0);
    assert_int_equal(feed_cursor_parse("1722470400000-17", 16, &c), 0);
    assert_true(c.ms == 1722470400000ull && c.seq == 17);
    assert_int_equal(feed_cursor_format(&c, buf, sizeof(buf)), 16);
    assert_string_equal(buf, "1722470400000-17");
    const char *bad[] = {"",
                         "-",
                         "1",
                         "1-",
                         "-1",
                         "1--2",
                         "+1-2",
                         " 1-2",
                         "1-2 ",
                         "a-1",
                         "1-b",
                         "1-2-3",
                         "18446744073709551616-0",
                         "18446744073709551615-18446744073709551615"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (feed_cursor_parse(bad[i], strlen(bad[i]), &c) == 0) {
            fail_msg("cursor '%s' accepted", bad[i]);
        }
    }
    assert_int_equal(feed_cursor_parse("18446744073709551615-0", 22, &c), 0);
    assert_true(c.ms == UINT64_MAX);
    assert_int_equal(feed_cursor_parse("5-1", 3, &c), 0);
    assert_int_equal(feed_cursor_parse("5-2", 3, &d), 0);
    assert_true(feed_cursor_cmp(&c, &d) < 0);
    assert_true(feed_cursor_cmp(&d, &c) > 0);
    assert_int_equal(feed_cursor_cmp(&c, &c), 0);
    assert_int_equal(feed_cursor_parse("4-9", 3, &d), 0);
    assert_true(feed_cursor_cmp(&c, &d) > 0);
}

static void test_params(void **state)
{
    (void)state;
    struct feed_params p;
    char err[160];
    assert_int_equal(feed_params_parse(NULL, 60, 0, &p, err, sizeof(err)), 0);
    assert_int_equal(p.has_after, 0);
    assert_int_equal(p.limit, FEED_LIMIT_DEFAULT);
    assert_int_equal(p.wait_s, 0);
    assert_int_equal(feed_params_parse("", 60, 0, &p, err, sizeof(err)), 0);
    assert_int_equal(feed_params_parse("after=5-1&limit=1000&wait=60", 60, 0,
                                       &p, err, sizeof(err)),
                     0);
    assert_true(p.has_after && p.after.ms == 5 && p.after.seq == 1);
    assert_int_equal(p.limit, 1000);
    assert_int_equal(p.wait_s, 60);
    /* percent-encoding, empty pairs */
    assert_int_equal(feed_params_parse("after=7%2D3&&limit=%31", 60, 0, &p, err,
                                       sizeof(err)),
                     0);
    assert_true(p.after.ms == 7 && p.after.seq == 3 && p.limit == 1);
    assert_int_equal(feed_params_parse("wait=0", 60, 0, &p, err, sizeof(err)),
                     0);
    assert_int_equal(p.newest, 0);
    /* newest first, paging back with before, bounded below by after */
    assert_int_equal(feed_params_parse("order=newest&before=9-2&after=3-0", 60,
                                       0, &p, err, sizeof(err)),
                     0);
    assert_true(p.newest && p.has_before && p.before.ms == 9 &&
                p.before.seq == 2 && p.has_after && p.after.ms == 3);
    assert_int_equal(feed_params_parse("order=newest&wait=0", 60, 0, &p, err,
                                       sizeof(err)),
                     0);
    assert_true(p.newest && !p.has_before);
    assert_int_equal(feed_params_parse("order=oldest&wait=5", 60, 0, &p, err,
                                       sizeof(err)),
                     0);
    assert_true(!p.newest && p.wait_s == 5 && !p.outcomes);
    assert_int_equal(feed_params_parse("include=outcome&order=newest", 60, 0,
                                       &p, err, sizeof(err)),
                     0);
    assert_true(p.outcomes && p.newest);

    struct {
        const char *q;
        int stream;
        const char *msg;
    } bad[] = {
        {"limit=0", 0, "limit must be 1 to 1000"},
        {"limit=1001", 0, "limit must be 1 to 1000"},
        {"limit=-1", 0, "limit must be 1 to 1000"},
        {"limit=", 0, "limit must be 1 to 1000"},
        {"limit=1x", 0, "limit must be 1 to 1000"},
        {"wait=61", 0, "wait must be 0 to 60 seconds"},
        {"wait=1.5", 0, "wait must be 0 to 60 seconds"},
        {"after=", 0, "after must be a cursor"},
        {"after", 0, "after must be a cursor"},
        {"after=x", 0, "after must be a cursor"},
        {"after=1-1&after=2-2", 0, "'after' given twice"},
        {"cursor=1-1", 0, "unknown query parameter 'cursor'"},
        {"limit=5", 1, "unknown query parameter 'limit'"},
        {"x%0a=1", 0, "unknown query parameter 'x?'"},
        {"after=%zz", 0, "after must be a cursor"},
        {"order=", 0, "order must be oldest or newest"},
        {"order=NEWEST", 0, "order must be oldest or newest"},
        {"order=newest1", 0, "order must be oldest or newest"},
        {"order=newest&order=newest", 0, "'order' given twice"},
        {"before=5-0", 0, "use it with order=newest"},
        {"before=5-0&order=oldest", 0, "use it with order=newest"},
        {"order=newest&before=x", 0, "before must be a cursor"},
        {"order=newest&before=", 0, "before must be a cursor"},
        {"order=newest&wait=1", 0, "order=newest answers at once"},
        {"order=newest", 1, "unknown query parameter 'order'"},
        {"before=1-0", 1, "unknown query parameter 'before'"},
        {"include=", 0, "include must be outcome"},
        {"include=outcomes", 0, "include must be outcome"},
        {"include=outcome&include=outcome", 0, "'include' given twice"},
        {"include=outcome", 1, "unknown query parameter 'include'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (feed_params_parse(bad[i].q, 60, bad[i].stream, &p, err,
                              sizeof(err)) == 0) {
            fail_msg("query '%s' accepted", bad[i].q);
        }
        if (strstr(err, bad[i].msg) == NULL) {
            fail_msg("query '%s': '%s' lacks '%s'", bad[i].q, err, bad[i].msg);
        }
    }
    assert_int_equal(
        feed_params_parse("after=3-4", 60, 1, &p, err, sizeof(err)), 0);
    assert_true(p.has_after && p.after.ms == 3);
}

static void test_alert_id(void **state)
{
    (void)state;
    const char *ok = "0123456789abcdef0123456789abcdef";
    assert_int_equal(feed_alert_id_valid(ok, 32), 1);
    assert_int_equal(feed_alert_id_valid(ok, 31), 0);
    assert_int_equal(
        feed_alert_id_valid("0123456789ABCDEF0123456789abcdef", 32), 0);
    assert_int_equal(
        feed_alert_id_valid("0123456789abcdef0123456789abcdeg", 32), 0);
    assert_int_equal(feed_alert_id_valid("stream", 6), 0);
}

static void test_bucket(void **state)
{
    (void)state;
    struct feed_bucket b = {0};
    uint64_t t = 1000000000ull;
    /* burst 3, 1 per second: three at once, then wait a second */
    assert_int_equal(feed_bucket_take(&b, t, 1, 3), 0);
    assert_int_equal(feed_bucket_take(&b, t, 1, 3), 0);
    assert_int_equal(feed_bucket_take(&b, t, 1, 3), 0);
    assert_int_equal(feed_bucket_take(&b, t, 1, 3), 1);
    assert_int_equal(feed_bucket_take(&b, t + 500000000ull, 1, 3), 1);
    assert_int_equal(feed_bucket_take(&b, t + 1000000000ull, 1, 3), 0);
    assert_int_equal(feed_bucket_take(&b, t + 1000000000ull, 1, 3), 1);
    /* refills to the burst, not beyond */
    t += 100000000000ull;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(feed_bucket_take(&b, t, 1, 3), 0);
    }
    assert_int_equal(feed_bucket_take(&b, t, 1, 3), 1);
    /* a slow rate: Retry-After rounds up */
    struct feed_bucket s = {0};
    assert_int_equal(feed_bucket_take(&s, t, 0.25, 1), 0);
    assert_int_equal(feed_bucket_take(&s, t, 0.25, 1), 4);
    /* a clock that goes back does not add requests */
    assert_int_equal(feed_bucket_take(&s, t - 50000000000ull, 0.25, 1), 4);
}

static void test_peer_key(void **state)
{
    (void)state;
    uint8_t a[FEED_PEER_KEY], b[FEED_PEER_KEY];
    static const uint8_t v4[FEED_PEER_KEY] = {0, 0, 0, 0, 0, 0, 0, 0, 0,
                                              0, 0xff, 0xff, 10, 0, 0, 1};
    assert_int_equal(feed_peer_key("10.0.0.1", a), 0);
    assert_memory_equal(a, v4, FEED_PEER_KEY);
    /* the same IPv4 peer on a dual-stack socket */
    assert_int_equal(feed_peer_key("::ffff:10.0.0.1", b), 0);
    assert_memory_equal(a, b, FEED_PEER_KEY);
    assert_int_equal(feed_peer_key("10.0.0.2", b), 0);
    assert_memory_not_equal(a, b, FEED_PEER_KEY);
    /* IPv6: one /64 is one peer */
    assert_int_equal(feed_peer_key("2001:db8::1", a), 0);
    assert_int_equal(feed_peer_key("2001:db8::ffff:1234:5678:9abc", b), 0);
    assert_memory_equal(a, b, FEED_PEER_KEY);
    assert_int_equal(feed_peer_key("2001:db8:0:1::1", b), 0);
    assert_memory_not_equal(a, b, FEED_PEER_KEY);
    assert_int_equal(feed_peer_key("not an address", a), -1);
    assert_int_equal(feed_peer_key("", a), -1);
    assert_int_equal(feed_peer_key(NULL, a), -1);
}

static void key_of(uint8_t k[FEED_PEER_KEY], unsigned n)
{
    char addr[32];
    snprintf(addr, sizeof(addr), "10.%u.%u.%u", (n >> 16) & 255,
             (n >> 8) & 255, n & 255);
    assert_int_equal(feed_peer_key(addr, k), 0);
}

static void test_throttle(void **state)
{
    (void)state;
    uint64_t s = 1000000000ull, t = 5 * s;
    uint8_t a[FEED_PEER_KEY], b[FEED_PEER_KEY];
    key_of(a, 1);
    key_of(b, 2);
    /* 3 failures per 30 s: the allowance comes back at one per 10 s */
    struct feed_throttle *th = feed_throttle_new(100, 3, 30, 42);
    assert_non_null(th);
    assert_int_equal(feed_throttle_wait(th, a, t), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(feed_throttle_wait(th, a, t), 0);
        assert_int_equal(feed_throttle_fail(th, a, t), 0);
    }
    assert_int_equal(feed_throttle_wait(th, a, t), 10);
    assert_int_equal(feed_throttle_wait(th, a, t), 10); /* takes nothing */
    assert_int_equal(feed_throttle_wait(th, a, t + 4 * s), 6);
    /* another peer is not affected */
    assert_int_equal(feed_throttle_wait(th, b, t), 0);
    assert_int_equal(feed_throttle_peers(th), 1);
    /* one failure's worth after 10 s */
    assert_int_equal(feed_throttle_wait(th, a, t + 10 * s), 0);
    assert_int_equal(feed_throttle_fail(th, a, t + 10 * s), 0);
    assert_int_equal(feed_throttle_wait(th, a, t + 10 * s), 10);
    /* whole again after the window: swept */
    feed_throttle_sweep(th, t + 39 * s);
    assert_int_equal(feed_throttle_peers(th), 1);
    feed_throttle_sweep(th, t + 40 * s);
    assert_int_equal(feed_throttle_peers(th), 0);
    assert_int_equal(feed_throttle_wait(th, a, t + 40 * s), 0);
    /* a clock that goes back does not give failures back */
    assert_int_equal(feed_throttle_fail(th, b, t + 50 * s), 0);
    assert_int_equal(feed_throttle_fail(th, b, t + 50 * s), 0);
    assert_int_equal(feed_throttle_fail(th, b, t + 50 * s), 0);
    assert_int_equal(feed_throttle_wait(th, b, t + 20 * s), 10);
    feed_throttle_destroy(th);
    feed_throttle_destroy(NULL);
}

/* A peer that comes back after a long quiet time (before a sweep forgot
 * it) has its whole allowance again, and no more: the refill stops at
 * auth_failures, so it is throttled after exactly that many failures. */
static void test_throttle_refill_capped(void **state)
{
    (void)state;
    uint64_t s = 1000000000ull, t = 5 * s;
    uint8_t a[FEED_PEER_KEY];
    key_of(a, 7);
    struct feed_throttle *th = feed_throttle_new(100, 3, 30, 43);
    assert_non_null(th);
    assert_int_equal(feed_throttle_fail(th, a, t), 0); /* 2 left */
    /* 25 s later: 2 + 2.5 refilled, capped at 3 */
    assert_int_equal(feed_throttle_wait(th, a, t + 25 * s), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(feed_throttle_wait(th, a, t + 25 * s), 0);
        assert_int_equal(feed_throttle_fail(th, a, t + 25 * s), 0);
    }
    assert_int_equal(feed_throttle_wait(th, a, t + 25 * s), 10);
    /* a day later, without a sweep: still 3, not thousands */
    uint64_t d = t + 25 * s + 86400 * s;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(feed_throttle_fail(th, a, d), 0);
    }
    assert_int_equal(feed_throttle_wait(th, a, d), 10);
    feed_throttle_destroy(th);
}

static void test_throttle_bounded(void **state)
{
    (void)state;
    uint64_t t = 1000000000ull;
    uint8_t k[FEED_PEER_KEY];
    /* room for 100 peers, one failure each: the 150 that fail keep the
     * table at 100, the oldest 50 are forgotten */
    struct feed_throttle *th = feed_throttle_new(100, 1, 60, 7);
    assert_non_null(th);
    for (unsigned i = 0; i < 150; i++) {
        key_of(k, i);
        assert_int_equal(feed_throttle_fail(th, k, t + i), 0);
        assert_true(feed_throttle_peers(th) <= 100);
    }
    assert_int_equal(feed_throttle_peers(th), 100);
    assert_int_equal(feed_throttle_evicted(th), 50);
    for (unsigned i = 0; i < 150; i++) {
        key_of(k, i);
        assert_int_equal(feed_throttle_wait(th, k, t + 200) > 0, i >= 50);
    }
    /* a peer that fails again becomes the newest: not the next evicted */
    key_of(k, 50);
    assert_int_equal(feed_throttle_fail(th, k, t + 300), 0);
    key_of(k, 1000);
    assert_int_equal(feed_throttle_fail(th, k, t + 301), 0);
    key_of(k, 50);
    assert_true(feed_throttle_wait(th, k, t + 302) > 0);
    key_of(k, 51);
    assert_int_equal(feed_throttle_wait(th, k, t + 302), 0);
    /* many peers, many slots: still all found */
    struct feed_throttle *big = feed_throttle_new(20000, 2, 60, 9);
    assert_non_null(big);
    for (unsigned i = 0; i < 20000; i++) {
        key_of(k, i);
        assert_int_equal(feed_throttle_fail(big, k, t), 0);
        assert_int_equal(feed_throttle_fail(big, k, t), 0);
    }
    for (unsigned i = 0; i < 20000; i += 997) {
        key_of(k, i);
        assert_true(feed_throttle_wait(big, k, t) > 0);
    }
    assert_int_equal(feed_throttle_evicted(big), 0);
    feed_throttle_destroy(big);
    feed_throttle_destroy(th);
}

/* The small edges of the token, throttle and outcome helpers: a token of
 * more random bytes than 64 is refused, a NULL table counts 0 peers and
 * 0 evictions, an outcome out of range is named "?", and a table asked
 * for 0 peers / 0 burst / a 0 s window works as 1 / 1 / 1 s. */
static void test_small_edges(void **state)
{
    (void)state;
    uint8_t z[65] = {0};
    char out[128];
    assert_int_equal(feed_token_encode(z, 65, out, sizeof(out)), -1);
    assert_int_equal(feed_token_encode(z, 64, out, sizeof(out)), 86);
    assert_int_equal(feed_throttle_peers(NULL), 0);
    assert_int_equal(feed_throttle_evicted(NULL), 0);
    assert_string_equal(feed_outcome_name(FEED_OUTCOME_COUNT), "?");
    assert_string_equal(feed_outcome_name((enum feed_outcome)99), "?");

    uint64_t s = 1000000000ull, t = 7 * s;
    uint8_t a[FEED_PEER_KEY], b[FEED_PEER_KEY];
    key_of(a, 1);
    key_of(b, 2);
    struct feed_throttle *th = feed_throttle_new(0, 0, 0, 11);
    assert_non_null(th);
    assert_int_equal(feed_throttle_fail(th, a, t), 0);
    assert_int_equal(feed_throttle_wait(th, a, t), 1); /* 1 per 1 s */
    /* room for one peer: the next one evicts it */
    assert_int_equal(feed_throttle_fail(th, b, t), 0);
    assert_int_equal(feed_throttle_peers(th), 1);
    assert_int_equal(feed_throttle_evicted(th), 1);
    assert_int_equal(feed_throttle_wait(th, a, t), 0);
    assert_int_equal(feed_throttle_wait(th, b, t), 1);
    /* a clock behind the last failure forgets nothing */
    feed_throttle_sweep(th, t - 5 * s);
    assert_int_equal(feed_throttle_peers(th), 1);
    /* the window is 1 s */
    feed_throttle_sweep(th, t + s - 1);
    assert_int_equal(feed_throttle_peers(th), 1);
    feed_throttle_sweep(th, t + s);
    assert_int_equal(feed_throttle_peers(th), 0);
    feed_throttle_destroy(th);
}

/* A table of exactly 64 peers (the table's first size): the 64 are all
 * held and throttled, the 65th evicts the oldest, the first one. */
static void test_throttle_exactly_64(void **state)
{
    (void)state;
    uint64_t t = 1000000000ull;
    uint8_t k[FEED_PEER_KEY];
    struct feed_throttle *th = feed_throttle_new(64, 1, 60, 5);
    assert_non_null(th);
    for (unsigned i = 0; i < 64; i++) {
        key_of(k, i);
        assert_int_equal(feed_throttle_fail(th, k, t + i), 0);
    }
    assert_int_equal(feed_throttle_peers(th), 64);
    assert_int_equal(feed_throttle_evicted(th), 0);
    for (unsigned i = 0; i < 64; i++) {
        key_of(k, i);
        assert_true(feed_throttle_wait(th, k, t + 100) > 0);
    }
    key_of(k, 64);
    assert_int_equal(feed_throttle_fail(th, k, t + 100), 0);
    assert_int_equal(feed_throttle_peers(th), 64);
    assert_int_equal(feed_throttle_evicted(th), 1);
    key_of(k, 0);
    assert_int_equal(feed_throttle_wait(th, k, t + 100), 0);
    key_of(k, 1);
    assert_true(feed_throttle_wait(th, k, t + 100) > 0);
    feed_throttle_destroy(th);
}

static void test_outcomes(void **state)
{
    (void)state;
    enum feed_outcome o;
    assert_int_equal(feed_outcome_parse("card_blocked", 12, &o), 0);
    assert_int_equal(o, FEED_CARD_BLOCKED);
    assert_string_equal(feed_outcome_name(o), "card_blocked");
    assert_int_equal(feed_outcome_parse("legit", 5, &o), -1);
    assert_int_equal(feed_outcome_parse("legitimatex", 11, &o), -1);
    assert_int_equal(feed_outcome_retires(FEED_CARD_REISSUED), 1);
    assert_int_equal(feed_outcome_retires(FEED_CARD_BLOCKED), 1);
    assert_int_equal(feed_outcome_retires(FEED_CONFIRMED_FRAUD), 0);
    assert_int_equal(feed_outcome_retires(FEED_LEGITIMATE), 0);
}

static void test_note(void **state)
{
    (void)state;
    char buf[2100];
    assert_int_equal(feed_note_valid("", 0), 1);
    assert_int_equal(feed_note_valid("called, confirmed", 17), 1);
    memset(buf, 'x', 501);
    assert_int_equal(feed_note_valid(buf, 500), 1);
    assert_int_equal(feed_note_valid(buf, 501), 0);
    /* 500 characters of two bytes each are fine */
    for (int i = 0; i < 501; i++) {
        memcpy(buf + 2 * i, "\xc3\xa9", 2); /* e acute */
    }
    assert_int_equal(feed_note_valid(buf, 1000), 1);
    assert_int_equal(feed_note_valid(buf, 1002), 0);
    const char *bad[] = {"a\nb",         "a\tb",         "a\rb",
                         "\x7f",         "\xc2\x85",     "\xe2\x80\xa8",
                         "\xe2\x80\xae", "\xe2\x81\xa6", "\xff",
                         "\xc3",         "\xed\xa0\x80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (feed_note_valid(bad[i], strlen(bad[i]))) {
            fail_msg("note %zu accepted", i);
        }
    }
    assert_int_equal(feed_note_valid("a\0b", 3), 0);
    /* the ends of each refused range, and their neighbours */
    const char *edge_bad[] = {"\x1f",         "\xc2\x80",     "\xc2\x9f",
                              "\xe2\x80\xa9", "\xe2\x80\xaa", "\xe2\x81\xa9"};
    for (size_t i = 0; i < sizeof(edge_bad) / sizeof(edge_bad[0]); i++) {
        if (feed_note_valid(edge_bad[i], strlen(edge_bad[i]))) {
            fail_msg("edge note %zu accepted", i);
        }
    }
    const char *edge_ok[] = {" ",
                             "~",
                             "\xc2\xa0",
                             "\xe2\x80\xa7",
                             "\xe2\x80\xaf",
                             "\xe2\x81\xa5",
                             "\xe2\x81\xaa"};
    for (size_t i = 0; i < sizeof(edge_ok) / sizeof(edge_ok[0]); i++) {
        if (!feed_note_valid(edge_ok[i], strlen(edge_ok[i]))) {
            fail_msg("edge note %zu refused", i);
        }
    }
}

static void test_outcome_body(void **state)
{
    (void)state;
    enum feed_outcome o;
    char note[FEED_NOTE_BYTES], err[200];
    const char *b = "{\"outcome\":\"legitimate\",\"note\":\"cardholder ok\"}";
    assert_int_equal(
        feed_outcome_body(b, strlen(b), &o, note, err, sizeof(err)), 0);
    assert_int_equal(o, FEED_LEGITIMATE);
    assert_string_equal(note, "cardholder ok");
    b = "{\"note\":null,\"outcome\":\"card_reissued\"}";
    assert_int_equal(
        feed_outcome_body(b, strlen(b), &o, note, err, sizeof(err)), 0);
    assert_int_equal(o, FEED_CARD_REISSUED);
    assert_string_equal(note, "");

    struct {
        const char *body;
        const char *msg;
    } bad[] = {
        {"", "not valid JSON"},
        {"[]", "must be a JSON object"},
        {"{\"outcome\":", "not valid JSON"},
        {"{}", "outcome is required"},
        {"{\"note\":\"x\"}", "outcome is required"},
        {"{\"outcome\":\"fraud\"}", "outcome must be one of"},
        {"{\"outcome\":1}", "outcome must be one of"},
        {"{\"outcome\":\"legitimate\",\"note\":5}", "note must be"},
        {"{\"outcome\":\"legitimate\",\"note\":\"a\\nb\"}", "note must be"},
        {"{\"outcome\":\"legitimate\",\"note\":\"a\\u0000b\"}",
         "not valid JSON"},
        {"{\"outcome\":\"legitimate\",\"x\":1}", "unknown member 'x'"},
        {"{\"outcome\":\"legitimate\",\"outcome\":\"legitimate\"}",
         "duplicate object key"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (feed_outcome_body(bad[i].body, strlen(bad[i].body), &o, note, err,
                              sizeof(err)) == 0) {
            fail_msg("body '%s' accepted", bad[i].body);
        }
        if (strstr(err, bad[i].msg) == NULL) {
            fail_msg("body '%s': '%s' lacks '%s'", bad[i].body, err,
                     bad[i].msg);
        }
    }
    /* a note of 501 characters */
    char big[700];
    int n =
        snprintf(big, sizeof(big), "{\"outcome\":\"legitimate\",\"note\":\"");
    memset(big + n, 'y', 501);
    snprintf(big + n + 501, sizeof(big) - (size_t)n - 501, "\"}");
    assert_int_equal(
        feed_outcome_body(big, strlen(big), &o, note, err, sizeof(err)), -1);
}

static const char ALERT[] =
    "{\"alert_id\":\"2562efeec6e1dab2aa668964a2840386\",\"issuer_id\":"
    "\"acme_bank\",\"card_fingerprint\":\"k1:aefbc535089aa3e345a140a391ceacc6"
    "\",\"pan_masked\":\"400008******2619\",\"severity\":\"high\",\"hits\":["
    "{\"rule_id\":\"cnp-use\",\"severity\":\"high\"},{\"rule_id\":"
    "\"cross-border-cnp\",\"severity\":\"medium\"}],\"breaches\":[{"
    "\"breach_id\":\"shop-2024\"},{\"breach_id\":\"b.2\"}],\"mode\":\"live\"}";

static void test_alert_facts(void **state)
{
    (void)state;
    struct feed_alert_facts f;
    assert_int_equal(feed_alert_facts_parse(ALERT, strlen(ALERT), &f), 0);
    assert_string_equal(f.rules, "cnp-use,cross-border-cnp");
    assert_string_equal(f.breaches, "shop-2024,b.2");
    assert_string_equal(f.kid, "k1");
    assert_string_equal(f.fp, "aefbc535089aa3e345a140a391ceacc6");

    const char *bad[] = {
        "not json",
        "{\"hits\":[],\"breaches\":[]}",
        "{\"hits\":[],\"breaches\":[],\"card_fingerprint\":\"k1:abc\"}",
        "{\"hits\":[],\"breaches\":[],\"card_fingerprint\":"
        "\"aefbc535089aa3e345a140a391ceacc6\"}",
        "{\"hits\":[],\"breaches\":[],\"card_fingerprint\":"
        "\"k 1:aefbc535089aa3e345a140a391ceacc6\"}",
        "{\"hits\":[{\"rule_id\":\"a,b\"}],\"breaches\":[],"
        "\"card_fingerprint\":\"k1:aefbc535089aa3e345a140a391ceacc6\"}",
        "{\"hits\":[{}],\"breaches\":[],"
        "\"card_fingerprint\":\"k1:aefbc535089aa3e345a140a391ceacc6\"}",
        "{\"hits\":[],\"breaches\":[{\"breach_id\":\"x;y\"}],"
        "\"card_fingerprint\":\"k1:aefbc535089aa3e345a140a391ceacc6\"}",
        /* an empty rule id */
        "{\"hits\":[{\"rule_id\":\"\"}],\"breaches\":[],"
        "\"card_fingerprint\":\"k1:aefbc535089aa3e345a140a391ceacc6\"}",
        /* no key id, or a longer one than a key id can be */
        "{\"hits\":[],\"breaches\":[],\"card_fingerprint\":"
        "\":aefbc535089aa3e345a140a391ceacc6\"}",
        "{\"hits\":[],\"breaches\":[],\"card_fingerprint\":"
        "\"k123456789012345678901234567890123:"
        "aefbc535089aa3e345a140a391ceacc6\"}",
        /* a fingerprint that is not hex */
        "{\"hits\":[],\"breaches\":[],\"card_fingerprint\":"
        "\"k1:aefbc535089aa3e345a140a391ceaccz\"}",
        "{\"hits\":[],\"breaches\":[],\"card_fingerprint\":"
        "\"k1:AEFBC535089AA3E345A140A391CEACC6\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (feed_alert_facts_parse(bad[i], strlen(bad[i]), &f) == 0) {
            fail_msg("alert %zu accepted", i);
        }
    }
    /* More hits than an alert has (ALERT_MAX_HITS) with the longest rule
     * ids: their list would not fit, refused; as many as an alert has
     * fit. */
    char rid[RULE_ID_MAX + 1];
    memset(rid, 'r', RULE_ID_MAX);
    rid[RULE_ID_MAX] = '\0';
    for (int n = ALERT_MAX_HITS; n <= ALERT_MAX_HITS + 1; n++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        assert_non_null(m);
        fputs("{\"hits\":[", m);
        for (int i = 0; i < n; i++) {
            fprintf(m, "%s{\"rule_id\":\"%s\"}", i ? "," : "", rid);
        }
        fputs("],\"breaches\":[],\"card_fingerprint\":"
              "\"k1:aefbc535089aa3e345a140a391ceacc6\"}",
              m);
        assert_int_equal(fclose(m), 0);
        assert_int_equal(feed_alert_facts_parse(buf, len, &f),
                         n <= ALERT_MAX_HITS ? 0 : -1);
        if (n <= ALERT_MAX_HITS) {
            assert_int_equal(strlen(f.rules),
                             (size_t)n * (RULE_ID_MAX + 1) - 1);
        }
        free(buf);
    }
}

static void add(struct feed_stats *s, const char *f, const char *v)
{
    assert_int_equal(feed_stats_add(s, f, strlen(f), v, strlen(v)), 0);
}

#define FP_OK "\"card_fingerprint\":\"k1:aefbc535089aa3e345a140a391ceacc6\""

/* What an outcome reads from a stored alert, at the edges of its shape:
 * every member missing or of the wrong type is refused, as are hits and
 * breaches that are not objects with a string id, a rule id one longer
 * than RULE_ID_MAX, a breach id with a NUL in it; ids with the other
 * allowed characters ('.', '_' in rule ids, '_' in key ids) are read. */
static void test_alert_facts_shapes(void **state)
{
    (void)state;
    struct feed_alert_facts f;
    const char *ok =
        "{\"hits\":[{\"rule_id\":\"r_1\"},{\"rule_id\":\"r.2\"}],"
        "\"breaches\":[{\"breach_id\":\"b_1\"}],\"card_fingerprint\":"
        "\"k_1:aefbc535089aa3e345a140a391ceacc6\"}";
    assert_int_equal(feed_alert_facts_parse(ok, strlen(ok), &f), 0);
    assert_string_equal(f.rules, "r_1,r.2");
    assert_string_equal(f.breaches, "b_1");
    assert_string_equal(f.kid, "k_1");

    char longid[RULE_ID_MAX + 2];
    memset(longid, 'r', RULE_ID_MAX + 1);
    longid[RULE_ID_MAX + 1] = '\0';
    char too_long[RULE_ID_MAX + 200];
    snprintf(too_long, sizeof(too_long),
             "{\"hits\":[{\"rule_id\":\"%s\"}],\"breaches\":[]," FP_OK "}",
             longid);
    const char *bad[] = {
        "[]",
        "{\"breaches\":[]," FP_OK "}",
        "{\"hits\":{},\"breaches\":[]," FP_OK "}",
        "{\"hits\":[]," FP_OK "}",
        "{\"hits\":[],\"breaches\":{}," FP_OK "}",
        "{\"hits\":[],\"breaches\":[],\"card_fingerprint\":5}",
        "{\"hits\":[5],\"breaches\":[]," FP_OK "}",
        "{\"hits\":[{\"rule_id\":5}],\"breaches\":[]," FP_OK "}",
        "{\"hits\":[{\"rule_id\":\"r/3\"}],\"breaches\":[]," FP_OK "}",
        "{\"hits\":[],\"breaches\":[{}]," FP_OK "}",
        "{\"hits\":[],\"breaches\":[5]," FP_OK "}",
        "{\"hits\":[],\"breaches\":[{\"breach_id\":5}]," FP_OK "}",
        "{\"hits\":[],\"breaches\":[{\"breach_id\":\"a\\u0000b\"}]," FP_OK "}",
        "{\"hits\":[],\"breaches\":[{\"breach_id\":\"a~b\"}]," FP_OK "}",
        "{\"hits\":[],\"breaches\":[],\"card_fingerprint\":"
        "\"k.1:aefbc535089aa3e345a140a391ceacc6\"}",
        too_long,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (feed_alert_facts_parse(bad[i], strlen(bad[i]), &f) == 0) {
            fail_msg("alert %zu accepted: %s", i, bad[i]);
        }
    }
    /* the longest rule id is fine */
    longid[RULE_ID_MAX] = '\0';
    snprintf(too_long, sizeof(too_long),
             "{\"hits\":[{\"rule_id\":\"%s\"}],\"breaches\":[]," FP_OK "}",
             longid);
    assert_int_equal(feed_alert_facts_parse(too_long, strlen(too_long), &f), 0);
    assert_string_equal(f.rules, longid);

    /* As many breaches as an alert has, with the longest ids, fit; one
     * more is refused. */
    char bid[BREACH_ID_MAX + 1];
    memset(bid, 'b', BREACH_ID_MAX);
    bid[BREACH_ID_MAX] = '\0';
    for (int n = ALERT_MAX_BREACHES; n <= ALERT_MAX_BREACHES + 1; n++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        assert_non_null(m);
        fputs("{\"hits\":[],\"breaches\":[", m);
        for (int i = 0; i < n; i++) {
            fprintf(m, "%s{\"breach_id\":\"%s\"}", i ? "," : "", bid);
        }
        fputs("]," FP_OK "}", m);
        assert_int_equal(fclose(m), 0);
        assert_int_equal(feed_alert_facts_parse(buf, len, &f),
                         n <= ALERT_MAX_BREACHES ? 0 : -1);
        if (n <= ALERT_MAX_BREACHES) {
            assert_int_equal(strlen(f.breaches),
                             (size_t)n * (BREACH_ID_MAX + 1) - 1);
        }
        free(buf);
    }
}

/* Statistics fields at the edges: a six-letter field that is not
 * "alerts", two severities of one length, more severities than the eight
 * kept (the ninth is dropped), an unknown outcome, a rule outcome with no
 * rule part; a count over INT64_MAX is shown as INT64_MAX in JSON. */
static void test_stats_edges(void **state)
{
    (void)state;
    struct feed_stats s = {0};
    add(&s, "alertz", "5");                  /* ignored */
    add(&s, "outcome:bogus", "5");           /* ignored */
    add(&s, "rule_outcome:legitimate", "5"); /* no rule: ignored */
    add(&s, "alerts", "18446744073709551615");
    add(&s, "severity:high", "1");
    add(&s, "severity:lows", "2");
    const char *more[] = {"a", "b", "c", "d", "e", "f", "g"};
    for (size_t i = 0; i < 7; i++) {
        char f[32];
        snprintf(f, sizeof(f), "severity:%s", more[i]);
        add(&s, f, "3");
    }
    assert_int_equal(s.n_sev, 8);
    assert_string_equal(s.sev[0].name, "high");
    assert_int_equal(s.sev[0].n, 1);
    assert_string_equal(s.sev[1].name, "lows");
    assert_int_equal(s.sev[1].n, 2);
    assert_string_equal(s.sev[7].name, "f");
    for (int o = 0; o < FEED_OUTCOME_COUNT; o++) {
        assert_int_equal(s.outcome[o], 0);
    }
    assert_int_equal(s.n_rules, 0);
    feed_stats_finish(&s);
    char *j = feed_stats_json(&s, "acme");
    assert_non_null(j);
    assert_non_null(strstr(j, "\"alerts\":9223372036854775807,"));
    assert_null(strstr(j, "\"g\""));
    free(j);
    feed_stats_free(&s);
}

static void test_stats(void **state)
{
    (void)state;
    struct feed_stats s = {0};
    add(&s, "alerts", "10");
    add(&s, "severity:high", "7");
    add(&s, "severity:critical", "3");
    add(&s, "rule:velocity", "4");
    add(&s, "rule:cnp-use", "9");
    add(&s, "outcome:confirmed_fraud", "3");
    add(&s, "outcome:legitimate", "1");
    add(&s, "rule_outcome:cnp-use:confirmed_fraud", "2");
    add(&s, "rule_outcome:cnp-use:legitimate", "1");
    add(&s, "rule_outcome:velocity:card_blocked", "1");
    add(&s, "rule_outcome:velocity:bogus", "1"); /* ignored */
    add(&s, "something:else", "1");              /* ignored */
    add(&s, "rule:x", "not a number");           /* ignored */
    feed_stats_finish(&s);
    assert_int_equal(s.n_rules, 2);
    assert_string_equal(s.rules[0].rule, "cnp-use");
    assert_true(feed_rule_precision(&s.rules[0]) > 0.666 &&
                feed_rule_precision(&s.rules[0]) < 0.667);
    assert_true(feed_rule_precision(&s.rules[1]) < 0);

    char *j = feed_stats_json(&s, "acme");
    assert_non_null(j);
    assert_string_equal(
        j, "{\"issuer\":\"acme\",\"alerts\":10,\"by_severity\":{\"high\":7,"
           "\"critical\":3},\"by_outcome\":{\"confirmed_fraud\":3,"
           "\"legitimate\":1,\"card_reissued\":0,\"card_blocked\":0},"
           "\"by_rule\":{\"cnp-use\":{\"alerts\":9,\"confirmed_fraud\":2,"
           "\"legitimate\":1,\"card_reissued\":0,\"card_blocked\":0,"
           "\"precision\":0.666667},\"velocity\":{\"alerts\":4,"
           "\"confirmed_fraud\":0,\"legitimate\":0,\"card_reissued\":0,"
           "\"card_blocked\":1,\"precision\":null}}}");
    free(j);

    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    feed_stats_prom(m, &s, "acme", 0);
    feed_stats_prom(m, &s, "acme", 1);
    fclose(m);
    assert_non_null(strstr(buf, "cardwatch_rule_outcomes_total{issuer="
                                "\"acme\",rule=\"cnp-use\",outcome="
                                "\"confirmed_fraud\"} 2\n"));
    assert_non_null(strstr(buf, "cardwatch_rule_outcomes_total{issuer="
                                "\"acme\",rule=\"velocity\",outcome="
                                "\"card_blocked\"} 1\n"));
    assert_non_null(strstr(buf, "cardwatch_rule_precision{issuer=\"acme\","
                                "rule=\"cnp-use\"} 0.666667\n"));
    assert_null(strstr(buf, "cardwatch_rule_precision{issuer=\"acme\","
                            "rule=\"velocity\"}"));
    free(buf);
    feed_stats_free(&s);
    assert_int_equal(s.n_rules, 0);

    /* empty stats */
    j = feed_stats_json(&s, "none");
    assert_string_equal(j, "{\"issuer\":\"none\",\"alerts\":0,"
                           "\"by_severity\":{},\"by_outcome\":{"
                           "\"confirmed_fraud\":0,\"legitimate\":0,"
                           "\"card_reissued\":0,\"card_blocked\":0},"
                           "\"by_rule\":{}}");
    free(j);
}

/* Fields the stats hash should not hold are ignored, a severity given
 * twice keeps the last count, label values are escaped. */
static void test_stats_odd_fields(void **state)
{
    (void)state;
    struct feed_stats s = {0};
    add(&s, "severity:high", "7");
    add(&s, "severity:high", "9");                  /* again: replaced */
    add(&s, "severity:a-name-far-too-long", "1");   /* ignored */
    add(&s, "rule:bad id", "5");                    /* not a rule id */
    add(&s, "rule_outcome:bad id:legitimate", "2"); /* ignored */
    add(&s, "rule_outcome::legitimate", "2");       /* ignored */
    add(&s, "rule:ok", "3");
    feed_stats_finish(&s);
    assert_int_equal(s.n_sev, 1);
    assert_string_equal(s.sev[0].name, "high");
    assert_int_equal(s.sev[0].n, 9);
    assert_int_equal(s.n_rules, 1);
    assert_string_equal(s.rules[0].rule, "ok");
    assert_int_equal(s.rules[0].alerts, 3);
    assert_int_equal(s.rules[0].outcome[FEED_LEGITIMATE], 0);
    /* label values: backslash, quote and newline escaped (issuer ids
     * cannot hold them today; the exposition format must not break if
     * one ever does) */
    add(&s, "rule_outcome:ok:legitimate", "1");
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    assert_non_null(m);
    feed_stats_prom(m, &s, "a\"b\\c\nd", 0);
    feed_stats_prom(m, &s, "a\"b\\c\nd", 1);
    assert_int_equal(fclose(m), 0);
    assert_non_null(strstr(buf, "cardwatch_rule_outcomes_total{issuer="
                                "\"a\\\"b\\\\c\\nd\",rule=\"ok\",outcome="
                                "\"legitimate\"} 1\n"));
    assert_non_null(strstr(buf, "cardwatch_rule_precision{issuer="
                                "\"a\\\"b\\\\c\\nd\",rule=\"ok\"} 0\n"));
    assert_null(strchr(buf, '\r'));
    for (const char *p = buf; (p = strchr(p, '\n')) != NULL; p++) {
        /* every line is a whole sample: no raw newline inside a label */
        assert_true(p[1] == '\0' || strncmp(p + 1, "cardwatch_", 10) == 0);
    }
    free(buf);
    feed_stats_free(&s);
}

static void test_csp(void **state)
{
    (void)state;
    /* sha256("alert(1)") and sha256("b{}") in base64 */
    const char page[] = "<html><head><style>b{}</style>"
                        "<script src=\"/x.js\"></script>"
                        "<SCRIPT type=\"module\">alert(1)</SCRIPT>"
                        "</head></html>";
    char *csp = feed_csp(page, strlen(page));
    assert_non_null(csp);
    assert_non_null(strstr(csp, "default-src 'self'"));
    assert_non_null(strstr(csp,
                           "script-src 'self' 'sha256-"
                           "bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"));
    assert_non_null(strstr(csp, "style-src 'self' 'sha256-"));
    assert_non_null(strstr(csp, "frame-ancestors 'none'"));
    assert_null(strstr(csp, "unsafe-inline"));
    /* the external script is not hashed: exactly one script hash */
    const char *s = strstr(csp, "script-src");
    const char *e = strchr(s, ';');
    int hashes = 0;
    for (const char *p = s; p < e; p++) {
        hashes += strncmp(p, "'sha256-", 8) == 0;
    }
    assert_int_equal(hashes, 1);
    free(csp);
    /* a tag that only starts like <script> is another tag; an element
     * without its '>' or its closing tag ends the scan (the page is ours:
     * not hashed means not allowed, which fails safe) */
    static const struct {
        const char *page;
        int scripts, styles;
    } odd[] = {
        {"<scripts>alert(1)</scripts><script>alert(1)</script>", 1, 0},
        {"<style>b{}</style><script", 0, 1},
        {"<style>b{}</style><script>alert(1)", 0, 1},
        {"<stylesheet>x</stylesheet>", 0, 0},
    };
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        char *c = feed_csp(odd[i].page, strlen(odd[i].page));
        assert_non_null(c);
        const char *ss = strstr(c, "script-src"), *st = strstr(c, "style-src");
        const char *se = strchr(ss, ';'), *te = strchr(st, ';');
        int nscript = 0, nstyle = 0;
        for (const char *p = ss; p < se; p++) {
            nscript += strncmp(p, "'sha256-", 8) == 0;
        }
        for (const char *p = st; p < te; p++) {
            nstyle += strncmp(p, "'sha256-", 8) == 0;
        }
        if (nscript != odd[i].scripts || nstyle != odd[i].styles) {
            fail_msg("page %zu: %d script and %d style hashes: %s", i, nscript,
                     nstyle, c);
        }
        if (odd[i].scripts) {
            assert_non_null(strstr(
                c, "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"));
        }
        free(c);
    }
    csp = feed_csp("", 0);
    assert_string_equal(
        csp, "default-src 'self'; script-src 'self'; style-src 'self'; "
             "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
             "base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
    free(csp);
}

/* The page's Chart.js: the path names the version the file says it is,
 * the ETag is the quoted base64url SHA-256 (43 characters, no padding). */
static void test_asset_chartjs(void **state)
{
    (void)state;
    struct feed_asset a;
    char head[64];
    assert_int_equal(feed_asset_chartjs(&a), 0);
    assert_true(a.len > 100000);
    assert_int_equal(strncmp(a.path, "/assets/chart-", 14), 0);
    size_t pl = strlen(a.path);
    assert_true(pl > 14 + 7);
    assert_string_equal(a.path + pl - 7, ".umd.js");
    snprintf(head, sizeof(head), "/*!\n * Chart.js v%.*s\n", (int)(pl - 21),
             a.path + 14);
    assert_int_equal(strncmp(a.body, head, strlen(head)), 0);
    assert_int_equal(strlen(a.etag), 2 + 7 + 43);
    assert_int_equal(strncmp(a.etag, "\"sha256-", 8), 0);
    assert_int_equal(a.etag[strlen(a.etag) - 1], '"');
    assert_null(strpbrk(a.etag + 1, "+/=,"));
    struct feed_asset b;
    assert_int_equal(feed_asset_chartjs(&b), 0);
    assert_string_equal(a.etag, b.etag); /* stable across starts */
}

/* If-None-Match: a list, weak tags, "*", blanks; near misses do not. */
static void test_etag_match(void **state)
{
    (void)state;
    const char *e = "\"sha256-abc\"";
    assert_true(feed_etag_match("\"sha256-abc\"", e));
    assert_true(feed_etag_match("W/\"sha256-abc\"", e));
    assert_true(feed_etag_match("\"x\", \"sha256-abc\"", e));
    assert_true(feed_etag_match(" \"x\" ,\t\"sha256-abc\" \t", e));
    assert_true(feed_etag_match("*", e));
    assert_true(feed_etag_match("\"x\", *", e));
    assert_false(feed_etag_match(NULL, e));
    assert_false(feed_etag_match("", e));
    assert_false(feed_etag_match(" , ,", e));
    assert_false(feed_etag_match("sha256-abc", e)); /* unquoted */
    assert_false(feed_etag_match("\"sha256-ab\"", e));
    assert_false(feed_etag_match("\"sha256-abcd\"", e));
    assert_false(feed_etag_match("\"x\",\"y\"", e));
    assert_false(feed_etag_match("W/", e));
    assert_false(feed_etag_match("**", e));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_and_encode),
        cmocka_unit_test(test_tokens_match),
        cmocka_unit_test(test_tokens_errors),
        cmocka_unit_test(test_config_check),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_alert_id),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_peer_key),
        cmocka_unit_test(test_throttle),
        cmocka_unit_test(test_throttle_refill_capped),
        cmocka_unit_test(test_throttle_bounded),
        cmocka_unit_test(test_small_edges),
        cmocka_unit_test(test_throttle_exactly_64),
        cmocka_unit_test(test_outcomes),
        cmocka_unit_test(test_note),
        cmocka_unit_test(test_outcome_body),
        cmocka_unit_test(test_alert_facts),
        cmocka_unit_test(test_alert_facts_shapes),
        cmocka_unit_test(test_stats_edges),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_stats_odd_fields),
        cmocka_unit_test(test_csp),
        cmocka_unit_test(test_asset_chartjs),
        cmocka_unit_test(test_etag_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
