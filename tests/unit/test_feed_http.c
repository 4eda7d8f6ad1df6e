/* test_feed_http.c - the request-head gate of the issuer feed: what it
 * accepts, every ambiguous framing it refuses (with status and message),
 * and that the answer does not depend on how the bytes are split.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "feed_http.h"

/* Parses s[0..n) in pieces of `step` bytes (0: at once). Returns the
 * result; *used = bytes of s taken in all. */
static enum feed_http_result parse_n(struct feed_http_head *h, const char *s,
                                     size_t n, size_t step, size_t *used)
{
    feed_http_head_init(h);
    size_t at = 0;
    enum feed_http_result r = FEED_HTTP_MORE;
    while (at < n && r == FEED_HTTP_MORE) {
        size_t k = step == 0 || n - at < step ? n - at : step, u = 0;
        r = feed_http_head_parse(h, s + at, k, &u);
        at += u;
        if (r == FEED_HTTP_MORE) {
            assert_int_equal(u, k);
        }
    }
    *used = at;
    return r;
}

static enum feed_http_result parse(struct feed_http_head *h, const char *s,
                                   size_t *used)
{
    return parse_n(h, s, strlen(s), 0, used);
}

/* s is refused with status and a message containing want. */
static void refused(const char *s, size_t n, int status, const char *want)
{
    struct feed_http_head h;
    size_t used;
    for (size_t step = 0; step <= 3; step += 3) {
        enum feed_http_result r = parse_n(&h, s, n, step, &used);
        if (r != FEED_HTTP_BAD) {
            fail_msg("accepted (%d): %.*s", r, (int)(n < 60 ? n : 60), s);
        }
        assert_int_equal(h.status, status);
        assert_non_null(h.error);
        if (strstr(h.error, want) == NULL) {
            fail_msg("message \"%s\" lacks \"%s\"", h.error, want);
        }
    }
}

#define REFUSED(lit, status, want) refused(lit, sizeof(lit) - 1, status, want)

static void test_accepts(void **state)
{
    (void)state;
    struct feed_http_head h;
    size_t used;
    const char *req = "GET /v1/alerts?after=1-0&wait=5 HTTP/1.1\r\n"
                      "Host: feed\r\n"
                      "Authorization: Bearer abc\r\n"
                      "X-Name: caf\xc3\xa9\t(tab) \r\n"
                      "X-Empty:\r\n"
                      "\r\n"
                      "NEXT";
    assert_int_equal(parse(&h, req, &used), FEED_HTTP_DONE);
    assert_int_equal(used, strlen(req) - 4); /* up to the empty line */
    assert_string_equal(h.method, "GET");
    assert_string_equal(h.path, "/v1/alerts"); /* no query string */
    assert_int_equal(h.content_length, 0);
    assert_int_equal(h.skip, 0);
    /* a body's length; spaces around the digits are fine */
    const char *post = "POST /v1/alerts/x/outcome HTTP/1.0\r\n"
                       "content-length: \t 24 \r\n\r\n{}";
    assert_int_equal(parse(&h, post, &used), FEED_HTTP_DONE);
    assert_int_equal(h.content_length, 24);
    assert_int_equal(used, strlen(post) - 2);
    assert_string_equal(h.method, "POST");
    /* empty lines before the request line are skipped (and counted) */
    assert_int_equal(parse(&h, "\r\n\r\nGET / HTTP/1.1\r\n\r\n", &used),
                     FEED_HTTP_DONE);
    assert_int_equal(h.skip, 4);
    assert_string_equal(h.path, "/");
    /* any amount of whitespace after the digits */
    assert_int_equal(parse(&h, "POST / HTTP/1.1\r\nContent-Length: 5 \t  \r\n"
                               "\r\n",
                           &used),
                     FEED_HTTP_DONE);
    assert_int_equal(h.content_length, 5);
    /* HEAD with Content-Length: 0 has no body: fine */
    assert_int_equal(parse(&h, "HEAD / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                           &used),
                     FEED_HTTP_DONE);
    /* a long name that starts like a watched one is another header */
    assert_int_equal(parse(&h,
                           "GET / HTTP/1.1\r\nContent-Length-Note: x\r\n"
                           "Content-Length: 3\r\n\r\n",
                           &used),
                     FEED_HTTP_DONE);
    assert_int_equal(h.content_length, 3);
    /* more digits than any body: the feed answers 413 */
    assert_int_equal(parse(&h,
                           "POST / HTTP/1.1\r\nContent-Length: "
                           "99999999999999999999999\r\n\r\n",
                           &used),
                     FEED_HTTP_DONE);
    assert_true(h.content_length == FEED_HTTP_BODY_HUGE);
    /* after the end nothing more is taken */
    assert_int_equal(feed_http_head_parse(&h, "GET", 3, &used),
                     FEED_HTTP_DONE);
    assert_int_equal(used, 0);
    /* a long path is cut for the log */
    char big[400];
    snprintf(big, sizeof(big), "GET /%0200d HTTP/1.1\r\n\r\n", 0);
    assert_int_equal(parse(&h, big, &used), FEED_HTTP_DONE);
    assert_int_equal(strlen(h.path), FEED_HTTP_PATH_KEEP - 1);
}

static void test_framing_refused(void **state)
{
    (void)state;
    REFUSED("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            400, "duplicate Content-Length");
    REFUSED("POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
            400, "duplicate Content-Length");
    REFUSED("POST / HTTP/1.1\r\nContent-Length: +24\r\n\r\n", 400,
            "Content-Length");
    REFUSED("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400,
            "Content-Length");
    REFUSED("POST / HTTP/1.1\r\nContent-Length: 24, 24\r\n\r\n", 400,
            "Content-Length");
    REFUSED("POST / HTTP/1.1\r\nContent-Length: 2 4\r\n\r\n", 400,
            "Content-Length");
    REFUSED("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400,
            "Content-Length");
    REFUSED("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400,
            "Content-Length");
    REFUSED("POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", 400,
            "before the colon");
    REFUSED("POST / HTTP/1.1\r\nContent-Length\t: 5\r\n\r\n", 400,
            "before the colon");
    REFUSED("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
            "Content-Length: 5\r\n\r\n",
            400, "Transfer-Encoding together with Content-Length");
    REFUSED("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411,
            "Content-Length");
    REFUSED("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n"
            "Transfer-Encoding: chunked\r\n\r\n",
            400, "duplicate Transfer-Encoding");
    REFUSED("HEAD / HTTP/1.1\r\nContent-Length: 30\r\n\r\n", 400,
            "cannot have a body");
    REFUSED("TRACE / HTTP/1.1\r\nContent-Length: 1\r\n\r\n", 400,
            "cannot have a body");
}

static void test_headers_refused(void **state)
{
    (void)state;
    REFUSED("GET / HTTP/1.1\r\nAuthorization: Bearer a\r\n"
            "AUTHORIZATION: Bearer b\r\n\r\n",
            400, "duplicate Authorization");
    REFUSED("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400,
            "duplicate Host");
    REFUSED("GET / HTTP/1.1\r\nLast-Event-ID: 1-0\r\n"
            "Last-Event-ID: 2-0\r\n\r\n",
            400, "duplicate Last-Event-ID");
    REFUSED("GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", 400, "folded");
    REFUSED("GET / HTTP/1.1\r\nX-A: a\r\n\tContent-Length: 5\r\n\r\n", 400,
            "folded");
    REFUSED("GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400, "folded");
    REFUSED("GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n", 400, "control character");
    REFUSED("GET / HTTP/1.1\r\nContent-Length: 5\0 99\r\n\r\n", 400,
            "control character");
    REFUSED("GET / HTTP/1.1\r\nX-A: \x7f\r\n\r\n", 400, "control character");
    REFUSED("GET / HTTP/1.1\r\nX-A: \x01\r\n\r\n", 400, "control character");
    REFUSED("GET / HTTP/1.1\r\nX\0A: b\r\n\r\n", 400, "control character");
    REFUSED("GET / HTTP/1.1\r\nX(A): b\r\n\r\n", 400, "header name");
    REFUSED("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400, "without a colon");
    /* a line that does not start with a name */
    REFUSED("GET / HTTP/1.1\r\n: b\r\n\r\n", 400, "header name");
    REFUSED("GET / HTTP/1.1\r\n(A): b\r\n\r\n", 400, "header name");
    REFUSED("GET / HTTP/1.1\r\nHost: x\r\n\x01A: b\r\n\r\n", 400,
            "control character in a header line");
    REFUSED("GET / HTTP/1.1\r\n\x7f\r\n\r\n", 400,
            "control character in a header line");
    REFUSED("GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400, "bare LF");
    REFUSED("GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400, "bare CR");
    REFUSED("GET / HTTP/1.1\r\nHost: x\r\n\n", 400, "bare LF");
    REFUSED("GET / HTTP/1.1\r\nHost: x\r\n\rX", 400, "bare CR");
}

static void test_request_line_refused(void **state)
{
    (void)state;
    REFUSED("GET / HTTP/1.1\n\r\n", 400, "bare LF");
    REFUSED("GET / HTTP/1.1\rX\n\r\n", 400, "bare CR");
    REFUSED("GET /v1/alerts\0 HTTP/1.1\r\n\r\n", 400, "request line");
    REFUSED("GET\0 / HTTP/1.1\r\n\r\n", 400, "request line");
    REFUSED("GET  / HTTP/1.1\r\n\r\n", 400, "request line");
    REFUSED("GET / HTTP/1.1 \r\n\r\n", 400, "request line");
    REFUSED("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", 400, "request line");
    REFUSED("GET / HTTP/1.2\r\n\r\n", 400, "HTTP/1.1");
    REFUSED("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "HTTP/1.1");
    REFUSED("GET / http/1.1\r\n\r\n", 400, "HTTP/1.1");
    REFUSED("GET /\r\n\r\n", 400, "request line");
    REFUSED("ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n", 400, "request line");
    REFUSED("G(T / HTTP/1.1\r\n\r\n", 400, "request line");
    REFUSED("\x16\x03\x01\x02\x00", 400, "request line");
    REFUSED("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", 400, "empty lines");
    REFUSED("\nGET / HTTP/1.1\r\n\r\n", 400, "bare LF");
    REFUSED("\rGET / HTTP/1.1\r\n\r\n", 400, "bare CR");
    REFUSED("\r\n\r\rGET / HTTP/1.1\r\n\r\n", 400, "bare CR");
    REFUSED("GET /v1/alerts\nHost: x\r\n\r\n", 400, "bare LF");
    REFUSED("GET \n HTTP/1.1\r\n\r\n", 400, "bare LF");
}

/* The request line byte by byte at each state's edge: which message a
 * bare LF, a control byte or another wrong byte gets in the method, the
 * target, the version and a header name, and that a '#' ends the path
 * as '?' does. */
static void test_request_line_edges(void **state)
{
    (void)state;
    REFUSED("(GET / HTTP/1.1\r\n\r\n", 400, "malformed request line");
    REFUSED("\001GET / HTTP/1.1\r\n\r\n", 400,
            "control character in the request line");
    REFUSED("GET\n", 400, "bare LF");
    REFUSED("GE\001T / HTTP/1.1\r\n\r\n", 400,
            "control character in the request line");
    REFUSED("GET / \n", 400, "bare LF");
    REFUSED("GET / \001HTTP/1.1\r\n\r\n", 400,
            "control character in the request line");
    REFUSED("GET / HTTP/1.\001\r\n\r\n", 400,
            "control character in the request line");
    REFUSED("GET / HTTP/1.1\001\r\n\r\n", 400,
            "control character in the request line");
    REFUSED("GET / HTTP/1.1\r\nHost\n", 400, "header line without a colon");
    REFUSED("GET / HTTP/1.1\r\nHost\r\n", 400, "header line without a colon");

    struct feed_http_head h;
    size_t used;
    assert_int_equal(parse(&h, "GET /v1/alerts#frag HTTP/1.1\r\n\r\n", &used),
                     FEED_HTTP_DONE);
    assert_string_equal(h.path, "/v1/alerts");
}

static void test_size_limit(void **state)
{
    (void)state;
    size_t n = FEED_HTTP_HEAD_MAX + 100;
    char *s = malloc(n);
    assert_non_null(s);
    memset(s, 'a', n);
    memcpy(s, "GET / HTTP/1.1\r\nX-Big: ", 23);
    refused(s, n, 431, "too large");
    /* exactly FEED_HTTP_HEAD_MAX bytes are fine */
    size_t head = FEED_HTTP_HEAD_MAX;
    memcpy(s + head - 4, "\r\n\r\n", 4);
    struct feed_http_head h;
    size_t used;
    assert_int_equal(parse_n(&h, s, head, 0, &used), FEED_HTTP_DONE);
    assert_int_equal(used, head);
    free(s);
}

/* Any split of the bytes gives the same answer and the same end. */
static void test_any_split(void **state)
{
    (void)state;
    static const char *const reqs[] = {
        ("POST /v1/alerts/x/outcome HTTP/1.1\r\nHost: x\r\n"
         "Content-Length: 24\r\n\r\n{\"outcome\":\"legitimate\"}"),
        "GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
        "\r\nGET /v1/stats HTTP/1.0\r\nAuthorization: Bearer t\r\n\r\nGET",
        "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        struct feed_http_head whole, part;
        size_t uw, up;
        enum feed_http_result rw = parse(&whole, reqs[i], &uw);
        for (size_t step = 1; step < 12; step++) {
            enum feed_http_result rp =
                parse_n(&part, reqs[i], strlen(reqs[i]), step, &up);
            assert_int_equal(rp, rw);
            assert_int_equal(up, uw);
            assert_int_equal(part.status, whole.status);
            assert_int_equal(part.content_length, whole.content_length);
            assert_string_equal(part.path, whole.path);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_framing_refused),
        cmocka_unit_test(test_headers_refused),
        cmocka_unit_test(test_request_line_refused),
        cmocka_unit_test(test_request_line_edges),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_any_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
