/* Unit tests for http_admin.c, in one process on one event loop: every
 * request ends in exactly one answer - 200 for what it serves, 404 for a
 * path it does not (or an operation not offered), 405 for a method it
 * does not take, 422 for a refused reload, 500 when the metrics cannot be
 * made - and a bad or taken listen address is refused with a message
 * naming it; "[::1]:0" binds to IPv6. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "http_admin.h"

struct fake {
    int ready, reload_ok, metrics_ok, reloads;
};

static int fake_ready(void *arg, char *why, size_t whylen)
{
    struct fake *f = arg;
    snprintf(why, whylen, "redis down");
    return f->ready;
}

static char *fake_metrics(void *arg)
{
    struct fake *f = arg;
    return f->metrics_ok ? strdup("cardwatch_up 1\n") : NULL;
}

static int fake_reload(void *arg, char *msg, size_t msglen)
{
    struct fake *f = arg;
    f->reloads++;
    snprintf(msg, msglen, "%s", f->reload_ok ? "v2" : "x.rules:3: bad");
    return f->reload_ok ? 0 : -1;
}

static const char *fake_version(void *arg)
{
    (void)arg;
    return "v1";
}

struct answer {
    struct event_base *base;
    int code;
    char body[256];
};

static void on_answer(struct evhttp_request *req, void *arg)
{
    struct answer *a = arg;
    a->code = req ? evhttp_request_get_response_code(req) : -1;
    a->body[0] = '\0';
    if (req != NULL) {
        struct evbuffer *b = evhttp_request_get_input_buffer(req);
        size_t n = evbuffer_get_length(b);
        n = n < sizeof(a->body) - 1 ? n : sizeof(a->body) - 1;
        evbuffer_remove(b, a->body, n);
        a->body[n] = '\0';
    }
    event_base_loopexit(a->base, NULL);
}

/* One request to the listener on host:port; returns the status and fills
 * body. */
static int ask(struct event_base *base, const char *host, int port,
               enum evhttp_cmd_type method, const char *path, char *body,
               size_t bodylen)
{
    struct answer a = {base, 0, ""};
    struct evhttp_connection *c =
        evhttp_connection_base_new(base, NULL, host, (ev_uint16_t)port);
    assert_non_null(c);
    struct evhttp_request *req = evhttp_request_new(on_answer, &a);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "t");
    assert_int_equal(evhttp_make_request(c, req, method, path), 0);
    event_base_dispatch(base);
    evhttp_connection_free(c);
    snprintf(body, bodylen, "%s", a.body);
    return a.code;
}

static void test_answers(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct fake f = {0, 1, 1, 0};
    struct http_admin_ops ops = {fake_ready, fake_metrics, fake_reload,
                                 fake_version, &f};
    char err[256] = "";
    struct http_admin *h = http_admin_new(base, "127.0.0.1:0", &ops, err,
                                          sizeof(err));
    assert_non_null(h);
    int port = http_admin_port(h);
    assert_true(port > 0);
    static const struct {
        enum evhttp_cmd_type m;
        const char *path;
        int code;
        const char *body;
    } cases[] = {
        {EVHTTP_REQ_GET, "/healthz", 200, "ok\n"},
        {EVHTTP_REQ_GET, "/readyz", 503, "not ready: redis down\n"},
        {EVHTTP_REQ_GET, "/metrics?x=1", 200, "cardwatch_up 1\n"},
        {EVHTTP_REQ_GET, "/admin/rules", 200, "v1\n"},
        {EVHTTP_REQ_POST, "/admin/rules/reload", 200, "reloaded: v2\n"},
        {EVHTTP_REQ_GET, "/admin/rules/reload", 405, "use POST\n"},
        {EVHTTP_REQ_POST, "/healthz", 405, "method not allowed\n"},
        {EVHTTP_REQ_DELETE, "/metrics", 405, "method not allowed\n"},
        {EVHTTP_REQ_GET, "/nope", 404, "not found\n"},
        {EVHTTP_REQ_GET,
         "/healthz-and-a-path-longer-than-the-sixty-four-bytes-it-compares",
         404, "not found\n"},
    };
    char body[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int code = ask(base, "127.0.0.1", port, cases[i].m, cases[i].path,
                       body, sizeof(body));
        if (code != cases[i].code || strcmp(body, cases[i].body) != 0) {
            fail_msg("%s: %d \"%s\", want %d \"%s\"", cases[i].path, code,
                     body, cases[i].code, cases[i].body);
        }
    }
    /* ready; a refused reload; metrics that cannot be made */
    f.ready = 1;
    f.reload_ok = 0;
    f.metrics_ok = 0;
    assert_int_equal(ask(base, "127.0.0.1", port, EVHTTP_REQ_GET, "/readyz",
                         body, sizeof(body)),
                     200);
    assert_int_equal(ask(base, "127.0.0.1", port, EVHTTP_REQ_POST,
                         "/admin/rules/reload", body, sizeof(body)),
                     422);
    assert_string_equal(body, "refused: x.rules:3: bad\n");
    assert_int_equal(ask(base, "127.0.0.1", port, EVHTTP_REQ_GET, "/metrics",
                         body, sizeof(body)),
                     500);
    assert_string_equal(body, "metrics unavailable\n");
    assert_int_equal(f.reloads, 2);
    http_admin_destroy(h);

    /* without rules (the feed): /admin/rules and the reload are 404 */
    struct http_admin_ops bare = {fake_ready, fake_metrics, NULL, NULL, &f};
    h = http_admin_new(base, "127.0.0.1:0", &bare, err, sizeof(err));
    assert_non_null(h);
    port = http_admin_port(h);
    assert_int_equal(ask(base, "127.0.0.1", port, EVHTTP_REQ_GET,
                         "/admin/rules", body, sizeof(body)),
                     404);
    assert_int_equal(ask(base, "127.0.0.1", port, EVHTTP_REQ_POST,
                         "/admin/rules/reload", body, sizeof(body)),
                     404);
    http_admin_destroy(h);
    http_admin_destroy(NULL);
    event_base_free(base);
}

static int have_ipv6_loopback(void)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    a.sin6_addr = in6addr_loopback;
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

static void test_listen_addresses(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct fake f = {1, 1, 1, 0};
    struct http_admin_ops ops = {fake_ready, fake_metrics, NULL, NULL, &f};
    char err[256] = "";
    assert_null(http_admin_new(base, "no-port", &ops, err, sizeof(err)));
    assert_string_equal(err, "http: bad listen address 'no-port'");

    /* a host of 256 characters or more does not fit: refused as bad */
    char longhost[300];
    memset(longhost, 'h', 256);
    snprintf(longhost + 256, sizeof(longhost) - 256, ":80");
    assert_null(http_admin_new(base, longhost, &ops, err, sizeof(err)));
    assert_memory_equal(err, "http: bad listen address 'hhh", 29);

    /* "[::1:0": an unclosed bracket is kept as part of the host, which
     * is then no address (the config check refuses it first in cardwatch) */
    assert_null(http_admin_new(base, "[::1:0", &ops, err, sizeof(err)));
    assert_string_equal(err, "http: cannot listen on [::1:0 (in use or not "
                             "a local address)");

    struct http_admin *h =
        http_admin_new(base, "127.0.0.1:0", &ops, err, sizeof(err));
    assert_non_null(h);
    char taken[64];
    snprintf(taken, sizeof(taken), "127.0.0.1:%d", http_admin_port(h));
    assert_null(http_admin_new(base, taken, &ops, err, sizeof(err)));
    char want[128];
    snprintf(want, sizeof(want), "http: cannot listen on %s (in use", taken);
    assert_memory_equal(err, want, strlen(want));
    http_admin_destroy(h);

    /* IPv6 as the config writes it (where the machine has ::1) */
    if (!have_ipv6_loopback()) {
        event_base_free(base);
        skip();
    }
    h = http_admin_new(base, "[::1]:0", &ops, err, sizeof(err));
    if (h == NULL) {
        fail_msg("[::1]:0: %s", err);
    }
    char body[256];
    assert_int_equal(ask(base, "::1", http_admin_port(h), EVHTTP_REQ_GET,
                         "/healthz", body, sizeof(body)),
                     200);
    http_admin_destroy(h);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_listen_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
