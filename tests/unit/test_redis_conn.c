/* Unit tests for redis_conn.c's set-up: rconn_new() does no network I/O
 * (the first connect runs from the event loop), so what it accepts and
 * refuses is tested here without a Redis. A bad option - no address, a
 * sentinel list entry that is not host:port (IPv6 needs brackets, the
 * port must be 1-65535), sentinels without a master name, a timeout of 0,
 * TLS without a CA file, a TLS server name too long to send, a
 * subscription without a message callback, a user without a password -
 * gives NULL and one message naming it. A connection in subscriber mode
 * refuses commands. Empty strings count as options not given; a client
 * certificate needs its key. Every allocation of rconn_new() and
 * rconn_command() is failed in turn (failalloc.h): NULL / -1 with "out of
 * memory", nothing leaked. Everything that needs a server (connect, TLS, AUTH,
 * ROLE, sentinels, reconnects) is tests/e2e/test_redis_conn.py's and
 * test_redis_edges.py's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "failalloc.h"
#include "log.h"
#include "redis_conn.h"

static char tmpdir[] = "/tmp/cw_redis_conn_XXXXXX";
#include "scratch.h"

static struct event_base *base;

static char ca_file[128]; /* a self-signed CA made by setup() */

static int setup(void **state)
{
    log_set_level(LOG_ERROR); /* the module logs nothing here anyway */
    base = event_base_new();
    if (base == NULL || scratch_setup(state) != 0) {
        return -1;
    }
    snprintf(ca_file, sizeof(ca_file), "%s/ca.crt", tmpdir);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt "
             "ec_paramgen_curve:P-256 -nodes -keyout %s/ca.key -out %s "
             "-days 1 -subj /CN=cw-unit >/dev/null 2>&1",
             tmpdir, ca_file);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    event_base_free(base);
    return scratch_teardown(state);
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
        assert_string_equal(rconn_address(c), ""); /* no sentinel asked */
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

/* A NULL answer (destroy) whose callback queues another command: refused,
 * so destroy ends with nothing left. */
static struct rconn *dying;
static void requeue(void *arg, const struct redisReply *r)
{
    const char *argv[] = {"PING"};
    const size_t lens[] = {4};
    assert_null(r);
    assert_int_equal(rconn_command(dying, 1, argv, lens, on_reply, arg), -1);
    (*(int *)arg)++;
}

static void test_command_refused_while_destroying(void **state)
{
    (void)state;
    struct rconn_opts o = direct();
    dying = accepted(&o);
    const char *argv[] = {"PING"};
    const size_t lens[] = {4};
    int calls = 0;
    assert_int_equal(rconn_command(dying, 1, argv, lens, requeue, &calls), 0);
    /* no arguments or no lengths: refused */
    assert_int_equal(rconn_command(dying, 1, NULL, lens, on_reply, &calls), -1);
    assert_int_equal(rconn_command(dying, 1, argv, NULL, on_reply, &calls), -1);
    rconn_destroy(dying);
    assert_int_equal(calls, 1);
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


/* The edges of each option: an empty string counts as not given (no
 * name: "redis"; no sentinels: the direct address; an empty user: the
 * default user), a host longer than any host name or a missing master
 * name is refused, and so is a TLS client certificate without its key or
 * a key without its certificate, even as an empty string. A sentinel
 * entry may end in a tab; a port holding a character below '0' is not a
 * number. */
static void test_option_edges(void **state)
{
    (void)state;
    struct rconn_opts o = direct();
    o.name = "";
    o.sentinels = "";       /* no sentinels: the direct address */
    o.username = "";        /* the default user: no password needed */
    o.tls = 1;
    o.tls_ca_file = ca_file;
    o.tls_server_name = ""; /* verify the host itself */
    o.tls_cert_file = "";
    o.tls_key_file = "";
    struct rconn *c = accepted(&o);
    assert_string_equal(rconn_address(c), "127.0.0.1:6379");
    rconn_destroy(c);

    o = direct();
    o.host = "";
    refused(&o, "t: Redis needs a host and a port");
    char host[300];
    memset(host, 'h', sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    o.host = host;
    refused(&o, "t: Redis needs a host and a port");
    o = via("127.0.0.1:26379");
    o.master_name = NULL;
    refused(&o, "t: Redis sentinels need a master name");
    o = direct();
    o.tls = 1;
    o.tls_ca_file = "";
    refused(&o, "t: Redis TLS needs a CA file");
    static const char *const halves[][2] = {
        {"/some/client.crt", ""}, {"", "/some/client.key"},
        {"/some/client.crt", NULL}, {NULL, "/some/client.key"}};
    for (size_t i = 0; i < sizeof(halves) / sizeof(halves[0]); i++) {
        o = direct();
        o.tls = 1;
        o.tls_ca_file = ca_file;
        o.tls_cert_file = halves[i][0];
        o.tls_key_file = halves[i][1];
        refused(&o, "t: a Redis TLS client certificate needs its key and "
                    "the key its certificate (set both or neither)");
    }
    o = via("h:1\t, h:2\t");
    c = accepted(&o);
    rconn_destroy(c);
    o = via("h:2/");
    refused(&o, "t: bad sentinel list 'h:2/': 'h:2/' is not host:port");
}

/* rconn_new(o) with its 1st, 2nd, ... allocation failing until one runs
 * without a failure (then it must succeed): each failing run answers
 * NULL with "out of memory". Returns how many allocations were failed. */
static int new_failing_each_allocation(const struct rconn_opts *o)
{
    for (long n = 1;; n++) {
        char err[256] = "";
        failalloc_at(n);
        struct rconn *c = rconn_new(base, o, err, sizeof(err));
        int fired = failalloc_failed();
        failalloc_at(0);
        if (!fired) {
            assert_non_null(c);
            rconn_destroy(c);
            return (int)n - 1;
        }
        assert_null(c);
        assert_string_equal(err, "t: out of memory");
    }
}

/* Every allocation rconn_new() and rconn_command() make, failed in turn
 * (tests/unit/failalloc.h): NULL / -1 with "out of memory", nothing
 * leaked (ASan), no callback for a refused command; with no failure left
 * to inject, the connection is made and the command queued. */
static void test_out_of_memory(void **state)
{
    (void)state;
    struct rconn_opts o = via("127.0.0.1:26379,[::1]:26380");
    o.username = "cw";
    o.password = "pw";
    o.tls = 1;
    o.tls_ca_file = ca_file;
    o.tls_server_name = "redis.example";
    assert_true(new_failing_each_allocation(&o) >= 6); /* c, name, ... */

    o = direct();
    o.subscribe = "cw:feed";
    o.on_message = on_message;
    assert_true(new_failing_each_allocation(&o) >= 1);

    o = direct();
    struct rconn *c = accepted(&o);
    const char *argv[] = {"GET", "k"};
    const size_t lens[] = {3, 1};
    int calls = 0;
    failalloc_at(1);
    assert_int_equal(rconn_command(c, 2, argv, lens, on_reply, &calls), -1);
    assert_true(failalloc_failed());
    failalloc_at(1);
    assert_int_equal(
        rconn_command_later(c, 10, 2, argv, lens, on_reply, &calls), -1);
    assert_true(failalloc_failed());
    failalloc_at(0);
    assert_int_equal(rconn_pending(c), 0);
    rconn_destroy(c);
    assert_int_equal(calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sentinel_lists),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_tls_server_name_length),
        cmocka_unit_test(test_subscriber_refuses_commands),
        cmocka_unit_test(test_destroy_answers_queued_commands),
        cmocka_unit_test(test_option_edges),
        cmocka_unit_test(test_command_refused_while_destroying),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
