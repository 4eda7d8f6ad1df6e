/* Unit tests for redis_conn.c's set-up: rconn_new() does no network I/O
 * (the first connect runs from the event loop), so what it accepts and
 * refuses is tested here without a Redis. A bad option - no address, a
 * sentinel list entry that is not host:port (IPv6 needs brackets, the
 * port must be 1-65535), sentinels without a master name, a timeout of 0,
 * TLS without a CA file, a TLS server name too long to send, a
 * subscription without a message callback, a user without a password -
 * gives NULL and one message naming it. A connection in subscriber mode
 * refuses commands. Everything that needs a server (connect, TLS, AUTH,
 * ROLE, sentinels, reconnects) is tests/e2e/test_redis_conn.py's and
 * test_redis_edges.py's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "log.h"
#include "redis_conn.h"

static struct event_base *base;

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR); /* the module logs nothing here anyway */
    base = event_base_new();
    return base != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    event_base_free(base);
    return 0;
}

static struct rconn_opts direct(void)
{
    struct rconn_opts o;
    memset(&o, 0, sizeof(o));
    o.name = "t";
    o.host = "127.0.0.1";
    o.port = 6379;
    o.timeout_ms = 1000;
    return o;
}

static struct rconn_opts via(const char *sentinels)
{
    struct rconn_opts o = direct();
    o.host = NULL;
    o.port = 0;
    o.sentinels = sentinels;
    o.master_name = "cw";
    return o;
}

/* rconn_new(o) must fail with a message holding want. */
static void refused(const struct rconn_opts *o, const char *want)
{
    char err[512] = "";
    struct rconn *c = rconn_new(base, o, err, sizeof(err));
    if (c != NULL) {
        rconn_destroy(c);
        fail_msg("accepted, expected a refusal with '%s'", want);
    }
    if (strstr(err, want) == NULL) {
        fail_msg("message '%s' lacks '%s'", err, want);
    }
}

/* rconn_new(o) must succeed; returns the connection. */
static struct rconn *accepted(const struct rconn_opts *o)
{
    char err[512] = "";
    struct rconn *c = rconn_new(base, o, err, sizeof(err));
    if (c == NULL) {
        fail_msg("refused: %s", err);
    }
    return c;
}

static void test_sentinel_lists(void **state)
{
    (void)state;
    static const char *const good[] = {
        "127.0.0.1:26379",
        " 127.0.0.1:1 ,\t[::1]:2 ,localhost:65535",
        "[fe80::1]:26379,sentinel-1.example:7",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct rconn_opts o = via(good[i]);
        struct rconn *c = accepted(&o);
        /* nothing tried yet: no error, no address */
        const char *msg = NULL;
        assert_int_equal(rconn_error(c, &msg), RCONN_OK);
        assert_string_equal(msg, "");
        assert_int_equal(rconn_is_up(c), 0);
        rconn_destroy(c);
    }
    /* each entry that is not host:port is named in the message */
    static const struct {
        const char *list, *bad;
    } bad[] = {
        {"127.0.0.1", "'127.0.0.1'"},             /* no port */
        {"::1:26379", "'::1:26379'"},             /* v6 needs brackets */
        {"[::1]", "'[::1]'"},                     /* brackets, no port */
        {"[::1]26379", "'[::1]26379'"},           /* no colon after ']' */
        {"[::1:26379", "'[::1:26379'"},           /* no ']' */
        {"[]:26379", "'[]:26379'"},               /* empty host */
        {"h:1,[::1]:", "'[::1]:'"},               /* empty port */
        {"h:1, :26379", "' :26379'"},             /* empty host */
        {"h:", "'h:'"},
        {"h:26a79", "'h:26a79'"},                 /* not a number */
        {"h:0", "'h:0'"},                         /* out of range */
        {"h:65536", "'h:65536'"},
        {"h:123456", "'h:123456'"},               /* over 5 digits */
        {"h:1,,h:2", "''"},                       /* an empty entry */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rconn_opts o = via(bad[i].list);
        char want[128];
        snprintf(want, sizeof(want), "bad sentinel list '%s': %s is not "
                 "host:port", bad[i].list, bad[i].bad);
        refused(&o, want);
    }
    /* a host name longer than any DNS name */
    char list[400];
    memset(list, 'a', 300);
    snprintf(list + 300, sizeof(list) - 300, ":1");
    struct rconn_opts o = via(list);
    refused(&o, "t: bad sentinel list 'aaaa");
}

static void test_bad_options(void **state)
{
    (void)state;
    struct rconn_opts o = direct();
    o.host = NULL;
    refused(&o, "t: Redis needs a host and a port (1-65535)");
    o = direct();
    o.port = 65536;
    refused(&o, "needs a host and a port");
    o = via("127.0.0.1:26379");
    o.master_name = "";
    refused(&o, "t: Redis sentinels need a master name");
    o = direct();
    o.timeout_ms = 0;
    refused(&o, "t: the Redis timeout must be positive");
    o = direct();
    o.tls = 1;
    refused(&o, "t: Redis TLS needs a CA file");
    o = direct();
    o.subscribe = "cw:feed";
    refused(&o, "t: a Redis subscription needs on_message");
    o = direct();
    o.username = "cw";
    refused(&o, "t: Redis user 'cw' has no password");
    o = direct();
    o.name = NULL; /* the default name */
    o.port = 0;
    refused(&o, "redis: Redis needs a host and a port");
}

/* SNI carries at most 255 bytes (RFC 6066): a longer name can never be
 * verified, so it is a bad option, not a connection that fails forever. */
static void test_tls_server_name_length(void **state)
{
    (void)state;
    char name[300];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    struct rconn_opts o = direct();
    o.tls = 1;
    o.tls_ca_file = "/nonexistent/ca.crt"; /* checked after the name */
    o.tls_server_name = name;
    refused(&o, "t: the Redis TLS server name is longer than 255 "
                "characters");
}

static void on_message(void *arg, const char *payload, size_t len)
{
    (void)arg;
    (void)payload;
    (void)len;
}

static void on_reply(void *arg, const struct redisReply *r)
{
    (void)r;
    (*(int *)arg)++;
}

/* Subscriber mode: commands are refused (the callback never runs);
 * rconn_destroy() with nothing queued calls nothing back. */
static void test_subscriber_refuses_commands(void **state)
{
    (void)state;
    struct rconn_opts o = direct();
    o.subscribe = "cw:feed";
    o.on_message = on_message;
    struct rconn *c = accepted(&o);
    const char *argv[] = {"GET", "k"};
    const size_t lens[] = {3, 1};
    int calls = 0;
    assert_int_equal(rconn_command(c, 2, argv, lens, on_reply, &calls), -1);
    assert_int_equal(
        rconn_command_later(c, 100, 2, argv, lens, on_reply, &calls), -1);
    assert_int_equal(rconn_pending(c), 0);
    rconn_destroy(c);
    assert_int_equal(calls, 0);
    rconn_destroy(NULL);
}

/* Queued commands wait for the loop; destroying the connection first
 * answers each exactly once with NULL, the delayed ones too. */
static void test_destroy_answers_queued_commands(void **state)
{
    (void)state;
    struct rconn_opts o = direct();
    o.host = "::1"; /* an IPv6 address is shown in brackets */
    struct rconn *c = accepted(&o);
    assert_string_equal(rconn_address(c), "[::1]:6379");
    const char *argv[] = {"PING"};
    const size_t lens[] = {4};
    int calls = 0;
    assert_int_equal(rconn_command(c, 1, argv, lens, on_reply, &calls), 0);
    assert_int_equal(
        rconn_command_later(c, 60000, 1, argv, lens, on_reply, &calls), 0);
    assert_int_equal(rconn_pending(c), 2);
    /* a command without a callback or arguments is refused */
    assert_int_equal(rconn_command(c, 1, argv, lens, NULL, NULL), -1);
    assert_int_equal(rconn_command(c, 0, argv, lens, on_reply, &calls), -1);
    rconn_destroy(c);
    assert_int_equal(calls, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sentinel_lists),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_tls_server_name_length),
        cmocka_unit_test(test_subscriber_refuses_commands),
        cmocka_unit_test(test_destroy_answers_queued_commands),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
