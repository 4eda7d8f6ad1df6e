/* test_config.c - table-driven INI config: defaults, a full file, one test
 * per error kind (exact "file:line: message"), overrides, cross checks,
 * brokers_file, librdkafka passthrough and redaction.
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

#define MAX_FILES 8

struct fixture {
    char dir[64];
    char files[MAX_FILES][128];
    int n_files;
    struct config c;
    char err[1024];
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));

    if (fx == NULL) {
        return -1;
    }
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/cw-config-XXXXXX");
    if (mkdtemp(fx->dir) == NULL || config_init(&fx->c) != 0) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    config_free(&fx->c);
    for (int i = 0; i < fx->n_files; i++) {
        unlink(fx->files[i]);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* Writes text to dir/name and returns the path (owned by the fixture). */
static const char *write_file(struct fixture *fx, const char *name,
                              const char *text)
{
    char want[128];
    char *path = NULL;
    FILE *f;

    snprintf(want, sizeof(want), "%s/%s", fx->dir, name);
    for (int i = 0; i < fx->n_files; i++) {
        if (strcmp(fx->files[i], want) == 0) {
            path = fx->files[i];
        }
    }
    if (path == NULL) {
        assert_true(fx->n_files < MAX_FILES);
        path = fx->files[fx->n_files++];
        snprintf(path, sizeof(fx->files[0]), "%s", want);
    }
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* Loads text and expects exactly "path:line: msg". */
static void expect_load_error(struct fixture *fx, const char *text, int line,
                              const char *msg)
{
    const char *path = write_file(fx, "bad.ini", text);
    char want[1024];

    fx->err[0] = '\0';
    assert_int_equal(config_load(&fx->c, path, fx->err, sizeof(fx->err)), -1);
    snprintf(want, sizeof(want), "%s:%d: %s", path, line, msg);
    assert_string_equal(fx->err, want);
}

static void load_ok(struct fixture *fx, const char *name, const char *text)
{
    const char *path = write_file(fx, name, text);

    fx->err[0] = '\0';
    if (config_load(&fx->c, path, fx->err, sizeof(fx->err)) != 0) {
        fail_msg("config_load: %s", fx->err);
    }
}

static void set_ok(struct fixture *fx, const char *section, const char *name,
                   const char *value)
{
    if (config_set(&fx->c, section, name, value, fx->err, sizeof(fx->err)) !=
        0) {
        fail_msg("config_set(%s, %s): %s", section, name, fx->err);
    }
}

static void check_ok(struct fixture *fx)
{
    if (config_check(&fx->c, fx->err, sizeof(fx->err)) != 0) {
        fail_msg("config_check: %s", fx->err);
    }
}

static void expect_check_error(struct fixture *fx, const char *msg)
{
    fx->err[0] = '\0';
    assert_int_equal(config_check(&fx->c, fx->err, sizeof(fx->err)), -1);
    assert_string_equal(fx->err, msg);
}

/* Enough for config_check() to pass. */
static void set_minimum(struct fixture *fx)
{
    set_ok(fx, "kafka", "brokers", "127.0.0.1:9092");
    set_ok(fx, "card", "key_file", "/etc/cardwatch/fingerprint.key");
}

/* ---- defaults and a full file ---- */

static void test_defaults(void **state)
{
    struct fixture *fx = *state;
    struct config *c = &fx->c;

    assert_string_equal(c->path, "");
    assert_string_equal(c->brokers, "");
    assert_string_equal(c->brokers_file, "");
    assert_string_equal(c->group, "cardwatch");
    assert_string_equal(c->transactions_topic, "cardwatch.transactions");
    assert_string_equal(c->dead_letter_topic, "cardwatch.deadletter");
    assert_string_equal(c->alert_topic_prefix, "cardwatch.alerts.");
    assert_string_equal(c->fallback_topic, "cardwatch.alerts.unrouted");
    assert_int_equal(c->session_timeout_ms, 45000);
    assert_string_equal(c->redis_host, "127.0.0.1");
    assert_int_equal(c->redis_port, 6379);
    assert_string_equal(c->redis_prefix, "cw");
    assert_int_equal(c->redis_timeout_ms, 2000);
    assert_string_equal(c->key_file, "");
    assert_string_equal(c->rules_path, "");
    assert_int_equal(c->batch_size, 1000);
    assert_int_equal(c->max_in_flight, 20000);
    assert_int_equal(c->allowed_lateness_ms, 3600000);
    assert_int_equal(c->max_future_skew_ms, 300000);
    assert_int_equal(c->reprocess_grace_ms, 3600000);
    assert_string_equal(c->http_listen, "127.0.0.1:9180");
    assert_int_equal(c->n_issuers, 0);
    assert_non_null(c->routes);
    assert_int_equal(route_count(c->routes), 0);
    assert_int_equal(c->n_kafka_props, 0);
    assert_null(config_route(c, "4000001234567899", 16));

    /* defaults alone lack brokers and the key file */
    expect_check_error(fx,
                       "no Kafka brokers: set [kafka] brokers or brokers_file");
}

static const char full_ini[] =
    "; cardwatch test config\n"                               /* 1 */
    "[kafka]\n"                                               /* 2 */
    "brokers = k1.example:9092, k2.example:9093,[::1]:9094\n" /* 3 */
    "group = cw-test\n"                                       /* 4 */
    "transactions_topic = txns\n"                             /* 5 */
    "dead_letter_topic = txns.dlq\n"                          /* 6 */
    "alert_topic_prefix = alerts.\n"                          /* 7 */
    "fallback_topic = alerts.unrouted\n"                      /* 8 */
    "session_timeout_ms = 30000\n"                            /* 9 */
    "\n"                                                      /* 10 */
    "[redis]\n"                                               /* 11 */
    "address = redis.example:6380 ; inline comment\n"         /* 12 */
    "prefix = cw_test\n"                                      /* 13 */
    "timeout_ms = 500\n"                                      /* 14 */
    "[card]\n"                                                /* 15 */
    "key_file = /etc/cardwatch/fp.key\n"                      /* 16 */
    "[rules]\n"                                               /* 17 */
    "path = /etc/cardwatch/rules.cw\n"                        /* 18 */
    "[pipeline]\n"                                            /* 19 */
    "batch_size = 500\n"                                      /* 20 */
    "max_in_flight = 5000\n"                                  /* 21 */
    "[http]\n"                                                /* 22 */
    "listen = 0.0.0.0:9999\n"                                 /* 23 */
    "[issuer acme_bank]\n"                                    /* 24 */
    "name = ACME Bank plc\n"                                  /* 25 */
    "home_country = GB\n"                                     /* 26 */
    "bins = 400000-400099, 4001000\n"                         /* 27 */
    "[issuer beta-cu]\n"                                      /* 28 */
    "home_country = US\n"                                     /* 29 */
    "bins = 51000000-51000009,40005012\n"                     /* 30 */
    "topic = beta.alerts\n"                                   /* 31 */
    "[kafka.common]\n"                                        /* 32 */
    "security.protocol = SASL_SSL\n"                          /* 33 */
    "[kafka.consumer]\n"                                      /* 34 */
    "fetch.min.bytes = 1\n"                                   /* 35 */
    "[kafka.producer]\n"                                      /* 36 */
    "linger.ms = 5\n";                                        /* 37 */

static void test_full_file(void **state)
{
    struct fixture *fx = *state;
    struct config *c = &fx->c;
    const struct issuer *is;
    char brokers[CONFIG_STR_MAX];

    load_ok(fx, "full.ini", full_ini);
    assert_string_equal(c->path, fx->files[0]);
    assert_string_equal(c->brokers,
                        "k1.example:9092,k2.example:9093,[::1]:9094");
    assert_string_equal(c->group, "cw-test");
    assert_string_equal(c->transactions_topic, "txns");
    assert_string_equal(c->dead_letter_topic, "txns.dlq");
    assert_string_equal(c->alert_topic_prefix, "alerts.");
    assert_string_equal(c->fallback_topic, "alerts.unrouted");
    assert_int_equal(c->session_timeout_ms, 30000);
    assert_string_equal(c->redis_host, "redis.example");
    assert_int_equal(c->redis_port, 6380);
    assert_string_equal(c->redis_prefix, "cw_test");
    assert_int_equal(c->redis_timeout_ms, 500);
    assert_string_equal(c->key_file, "/etc/cardwatch/fp.key");
    assert_string_equal(c->rules_path, "/etc/cardwatch/rules.cw");
    assert_int_equal(c->batch_size, 500);
    assert_int_equal(c->max_in_flight, 5000);
    assert_string_equal(c->http_listen, "0.0.0.0:9999");

    assert_int_equal(c->n_issuers, 2);
    assert_string_equal(c->issuers[0].id, "acme_bank");
    assert_string_equal(c->issuers[0].name, "ACME Bank plc");
    assert_string_equal(c->issuers[0].home_country, "GB");
    assert_string_equal(c->issuers[0].topic, ""); /* until config_check */
    assert_string_equal(c->issuers[1].id, "beta-cu");
    assert_string_equal(c->issuers[1].name, "beta-cu"); /* default: id */
    assert_string_equal(c->issuers[1].topic, "beta.alerts");
    assert_int_equal(route_count(c->routes), 100 + 1 + 10 + 1);

    check_ok(fx);
    assert_string_equal(c->issuers[0].topic, "alerts.acme_bank");
    assert_string_equal(c->issuers[1].topic, "beta.alerts");

    /* routing: the longest prefix wins */
    is = config_route(c, "4000501234567890", 16);
    assert_non_null(is);
    assert_string_equal(is->id, "beta-cu");
    is = config_route(c, "4000511234567890", 16);
    assert_non_null(is);
    assert_string_equal(is->id, "acme_bank");
    is = config_route(c, "4001000234567890", 16);
    assert_non_null(is);
    assert_string_equal(is->id, "acme_bank");
    is = config_route(c, "5100000934567890", 16);
    assert_non_null(is);
    assert_string_equal(is->id, "beta-cu");
    assert_null(config_route(c, "5100001034567890", 16));
    assert_null(config_route(c, "4000", 4));

    /* passthrough properties keep scope, order and line */
    assert_int_equal(c->n_kafka_props, 3);
    assert_string_equal(c->kafka_props[0].scope, "common");
    assert_string_equal(c->kafka_props[0].name, "security.protocol");
    assert_string_equal(c->kafka_props[0].value, "SASL_SSL");
    assert_int_equal(c->kafka_props[0].line, 33);
    assert_string_equal(c->kafka_props[1].scope, "consumer");
    assert_string_equal(c->kafka_props[1].name, "fetch.min.bytes");
    assert_int_equal(c->kafka_props[1].line, 35);
    assert_string_equal(c->kafka_props[2].scope, "producer");
    assert_string_equal(c->kafka_props[2].value, "5");
    assert_int_equal(c->kafka_props[2].line, 37);

    assert_int_equal(
        config_brokers(c, brokers, sizeof(brokers), fx->err, sizeof(fx->err)),
        0);
    assert_string_equal(brokers, "k1.example:9092,k2.example:9093,[::1]:9094");
}

static void test_load_on_top_and_formats(void **state)
{
    struct fixture *fx = *state;
    struct config *c = &fx->c;

    /* UTF-8 BOM, CRLF line ends, ':' as separator, blank sections */
    load_ok(fx, "a.ini",
            "\xEF\xBB\xBF[redis]\r\n"
            "timeout_ms: 700\r\n"
            "\r\n"
            "[rules]\r\n"
            "  # indented comment\r\n"
            "[issuer acme]\r\n"
            "  home_country = DE\r\n" /* indented key right after a section */
            "bins = 400000\r\n");
    assert_int_equal(c->redis_timeout_ms, 700);
    assert_string_equal(c->issuers[0].home_country, "DE");

    /* a second file: values override, the same issuer is extended */
    load_ok(fx, "b.ini",
            "[redis]\n"
            "timeout_ms = 800\n"
            "[issuer acme]\n"
            "bins = 400001\n");
    assert_int_equal(c->redis_timeout_ms, 800);
    assert_int_equal(c->n_issuers, 1);
    assert_int_equal(route_count(c->routes), 2);
    assert_string_equal(c->path, fx->files[1]);
}

/* ---- one test per error kind ---- */

static void test_err_missing_file(void **state)
{
    struct fixture *fx = *state;
    char path[128];
    char want[256];

    snprintf(path, sizeof(path), "%s/none.ini", fx->dir);
    assert_int_equal(config_load(&fx->c, path, fx->err, sizeof(fx->err)), -1);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory",
             path);
    assert_string_equal(fx->err, want);
}

static void test_err_unknown_section(void **state)
{
    struct fixture *fx = *state;

    expect_load_error(fx,
                      "[kafka]\n"
                      "group = g\n"
                      "\n"
                      "[kafak]\n"
                      "group = g\n",
                      4, "unknown section [kafak]");
    /* also when the section holds no key */
    expect_load_error(fx, "; x\n[redis]\n[extra]\n", 3,
                      "unknown section [extra]");
}

static void test_err_unknown_key(void **state)
{
    struct fixture *fx = *state;

    expect_load_error(fx, "[redis]\naddress = 127.0.0.1:6379\nhost = x\n", 3,
                      "unknown key 'host' in [redis]");
    expect_load_error(fx, "[issuer acme]\nbin = 400000\n", 2,
                      "unknown key 'bin' in [issuer acme]");
    expect_load_error(fx, "group = g\n", 1,
                      "key 'group' is outside any [section]");
}

static void test_err_bad_int(void **state)
{
    struct fixture *fx = *state;

    expect_load_error(fx, "[redis]\ntimeout_ms = 12ab\n", 2,
                      "bad value '12ab' for 'timeout_ms' in [redis]: not an "
                      "integer");
    expect_load_error(fx, "[pipeline]\n\nbatch_size =\n", 3,
                      "bad value '' for 'batch_size' in [pipeline]: must not "
                      "be empty");
    expect_load_error(fx, "[pipeline]\nbatch_size = 1.5\n", 2,
                      "bad value '1.5' for 'batch_size' in [pipeline]: not an "
                      "integer");
}

/* [log]: plain/info by default; format and level load; a bad value
 * names file:line and says what is allowed (a typo must not silently
 * leave machine-read logs in the wrong format). */
static void test_log_section(void **state)
{
    struct fixture *fx = *state;

    assert_string_equal(fx->c.log_format, "plain");
    assert_string_equal(fx->c.log_level, "info");
    load_ok(fx, "log.ini", "[log]\nformat = json\nlevel = warn\n");
    assert_string_equal(fx->c.log_format, "json");
    assert_string_equal(fx->c.log_level, "warn");
    expect_load_error(fx, "[log]\nlevel = debug\nformat = JSON\n", 3,
                      "bad value 'JSON' for 'format' in [log]: must be plain "
                      "or json");
    expect_load_error(fx, "[log]\n\nlevel = verbose\n", 3,
                      "bad value 'verbose' for 'level' in [log]: must be "
                      "debug, info, warn or error");
    expect_load_error(fx, "[log]\nformat =\n", 2,
                      "bad value '' for 'format' in [log]: must not be "
                      "empty");
    expect_load_error(fx, "[log]\nlevels = info\n", 2,
                      "unknown key 'levels' in [log]");
}

static void test_err_int_out_of_range(void **state)
{
    struct fixture *fx = *state;

    expect_load_error(fx, "[pipeline]\nbatch_size = 0\n", 2,
                      "bad value '0' for 'batch_size' in [pipeline]: must be "
                      "1 to 100000");
    expect_load_error(fx, "[kafka]\nsession_timeout_ms = 300001\n", 2,
                      "bad value '300001' for 'session_timeout_ms' in "
                      "[kafka]: must be 1000 to 300000");
    expect_load_error(fx, "[redis]\ntimeout_ms = -5\n", 2,
                      "bad value '-5' for 'timeout_ms' in [redis]: must be 10 "
                      "to 60000");
    expect_load_error(fx, "[redis]\ntimeout_ms = 99999999999\n", 2,
                      "bad value '99999999999' for 'timeout_ms' in [redis]: "
                      "must be 10 to 60000");
}

static void test_err_bad_hostport(void **state)
{
    struct fixture *fx = *state;

    expect_load_error(fx, "[redis]\naddress = localhost\n", 2,
                      "bad value 'localhost' for 'address' in [redis]: must "
                      "be host:port");
    expect_load_error(fx, "[redis]\naddress = localhost:0\n", 2,
                      "bad value 'localhost:0' for 'address' in [redis]: port "
                      "must be 1 to 65535");
    expect_load_error(fx, "[redis]\naddress = localhost:65536\n", 2,
                      "bad value 'localhost:65536' for 'address' in [redis]: "
                      "port must be 1 to 65535");
    expect_load_error(fx, "[redis]\naddress = ::1:6379\n", 2,
                      "bad value '::1:6379' for 'address' in [redis]: write "
                      "an IPv6 address in brackets: [addr]:port");
    expect_load_error(fx, "[http]\nlisten = my host:80\n", 2,
                      "bad value 'my host:80' for 'listen' in [http]: bad "
                      "host name");
    expect_load_error(fx, "[kafka]\nbrokers = a:9092,,b:9092\n", 2,
                      "bad value 'a:9092,,b:9092' for 'brokers' in [kafka]: "
                      "empty entry in the list");
    expect_load_error(fx, "[kafka]\nbrokers = a:9092,b\n", 2,
                      "bad value 'a:9092,b' for 'brokers' in [kafka]: must be "
                      "host:port");
}

static void test_ipv6_and_empty_listen(void **state)
{
    struct fixture *fx = *state;

    load_ok(fx, "v6.ini", "[redis]\naddress = [::1]:7000\n[http]\nlisten =\n");
    assert_string_equal(fx->c.redis_host, "::1");
    assert_int_equal(fx->c.redis_port, 7000);
    assert_string_equal(fx->c.http_listen, "");
}

static void test_err_bad_issuer_id(void **state)
{
    struct fixture *fx = *state;

    expect_load_error(fx, "[kafka]\n[issuer Acme]\nbins = 400000\n", 2,
                      "bad issuer id in [issuer Acme]: must be 1 to 32 of a-z "
                      "0-9 _ -");
    expect_load_error(fx, "[issuer]\n", 1,
                      "bad issuer id in [issuer]: must be 1 to 32 of a-z 0-9 "
                      "_ -");
    expect_load_error(fx, "[issuer abcdefghijklmnopqrstuvwxyz0123456]\n", 1,
                      "bad issuer id in [issuer "
                      "abcdefghijklmnopqrstuvwxyz0123456]: must be 1 to 32 of "
                      "a-z 0-9 _ -");
}

static void test_err_duplicate_issuer(void **state)
{
    struct fixture *fx = *state;

    expect_load_error(fx,
                      "[issuer acme]\n"
                      "home_country = GB\n"
                      "bins = 400000\n"
                      "[issuer beta]\n"
                      "bins = 500000\n"
                      "[issuer acme]\n",
                      6, "duplicate section [issuer acme] (first at line 1)");
}

static void test_err_bad_home_country(void **state)
{
    struct fixture *fx = *state;

    expect_load_error(fx, "[issuer acme]\nhome_country = gb\n", 2,
                      "bad value 'gb' for 'home_country' in [issuer acme]: "
                      "must be 2 upper-case letters (ISO 3166-1)");
    expect_load_error(fx, "[issuer acme]\nhome_country = GBR\n", 2,
                      "bad value 'GBR' for 'home_country' in [issuer acme]: "
                      "must be 2 upper-case letters (ISO 3166-1)");
}

static void test_err_bad_bins(void **state)
{
    struct fixture *fx = *state;

    expect_load_error(fx, "[issuer acme]\nbins = 400000, 40x000\n", 2,
                      "bad value '400000, 40x000' for 'bins' in [issuer "
                      "acme]: BIN prefix '40x000' is not all digits");
    expect_load_error(fx, "[issuer acme]\nbins = 400000,\n", 2,
                      "bad value '400000,' for 'bins' in [issuer acme]: empty "
                      "entry in the list");
    expect_load_error(fx, "[issuer acme]\nbins = 40000\n", 2,
                      "bad value '40000' for 'bins' in [issuer acme]: BIN "
                      "prefix '40000' must be 6 to 8 digits");
    expect_load_error(fx, "[issuer acme]\nbins = 400100-400000\n", 2,
                      "bad value '400100-400000' for 'bins' in [issuer acme]: "
                      "BIN range '400100-400000' has its low end above its "
                      "high end");
}

static void test_err_bins_conflict(void **state)
{
    struct fixture *fx = *state;

    expect_load_error(fx,
                      "[issuer acme]\n"
                      "bins = 400000-400099\n"
                      "[issuer beta]\n"
                      "bins = 400099-400199\n",
                      4,
                      "bad value '400099-400199' for 'bins' in [issuer beta]: "
                      "BIN prefix 400099 is already routed to issuer index 0");
}

static void test_err_syntax(void **state)
{
    struct fixture *fx = *state;

    expect_load_error(fx, "[kafka]\ngroup = g\nbrokers\n", 3,
                      "syntax error: expected [section] or name = value");
    expect_load_error(fx, "[kafka\ngroup = g\n", 1,
                      "syntax error: expected [section] or name = value");
}

static void test_err_first_error_wins(void **state)
{
    struct fixture *fx = *state;

    /* our error first, inih's later */
    expect_load_error(fx, "[redis]\ntimeout_ms = x\nnonsense\n[foo]\n", 2,
                      "bad value 'x' for 'timeout_ms' in [redis]: not an "
                      "integer");
    /* inih's error first, ours later */
    expect_load_error(fx, "[redis]\nnonsense\ntimeout_ms = x\n", 2,
                      "syntax error: expected [section] or name = value");
}

static void test_err_continuation_and_long_line(void **state)
{
    struct fixture *fx = *state;
    char text[512];

    expect_load_error(fx,
                      "[issuer acme]\n"
                      "bins = 400000\n"
                      "    400001\n",
                      3,
                      "indented line continues the previous value; "
                      "continuation lines are not supported");
    /* any blank inih skips makes an indent, a vertical tab too */
    expect_load_error(fx,
                      "[issuer acme]\n"
                      "bins = 400000\n"
                      "\v400001\n",
                      3,
                      "indented line continues the previous value; "
                      "continuation lines are not supported");

    snprintf(text, sizeof(text), "[kafka]\ngroup = %0250d\n", 7);
    expect_load_error(fx, text, 2, "line too long (max 199 characters)");
}

/* ---- overrides ---- */

static void test_config_set(void **state)
{
    struct fixture *fx = *state;
    struct config *c = &fx->c;

    load_ok(fx, "base.ini",
            "[kafka]\nbrokers = file-broker:9092\ngroup = from-file\n"
            "[redis]\naddress = file-redis:6379\n");
    set_ok(fx, "kafka", "brokers", "flag-broker:9092");
    set_ok(fx, "redis", "address", "10.0.0.7:6390");
    set_ok(fx, "kafka", "group", "from-flag");
    assert_string_equal(c->brokers, "flag-broker:9092");
    assert_string_equal(c->redis_host, "10.0.0.7");
    assert_int_equal(c->redis_port, 6390);
    assert_string_equal(c->group, "from-flag");

    /* the same validators, with "section.name: " messages */
    assert_int_equal(
        config_set(c, "redis", "address", "nope", fx->err, sizeof(fx->err)),
        -1);
    assert_string_equal(fx->err,
                        "redis.address: bad value 'nope': must be host:port");
    assert_string_equal(c->redis_host, "10.0.0.7"); /* unchanged */
    assert_int_equal(
        config_set(c, "kafka", "group", "a b", fx->err, sizeof(fx->err)), -1);
    assert_string_equal(fx->err, "kafka.group: bad value 'a b': must not "
                                 "contain white space");
    assert_int_equal(config_set(c, "redis", "x", "1", fx->err, sizeof(fx->err)),
                     -1);
    assert_string_equal(fx->err, "redis.x: unknown key 'x' in [redis]");
    assert_int_equal(
        config_set(c, "nosuch", "x", "1", fx->err, sizeof(fx->err)), -1);
    assert_string_equal(fx->err, "nosuch.x: unknown section [nosuch]");
    assert_int_equal(
        config_set(c, "redis", "prefix", "CW", fx->err, sizeof(fx->err)), -1);
    assert_string_equal(fx->err,
                        "redis.prefix: bad value 'CW': must be 1 to 16 of "
                        "a-z 0-9 _");

    /* issuers can be created and extended from flags too */
    set_ok(fx, "issuer zeta", "bins", "600000-600009");
    set_ok(fx, "issuer zeta", "home_country", "NL");
    assert_int_equal(c->n_issuers, 1);
    assert_int_equal(config_set(c, "issuer Zeta", "bins", "600000", fx->err,
                                sizeof(fx->err)),
                     -1);
    assert_string_equal(fx->err, "issuer Zeta.bins: bad issuer id in [issuer "
                                 "Zeta]: must be 1 to 32 of a-z 0-9 _ -");
}

/* ---- lengths and limits ---- */

/* A value of n copies of ch (n < 1000). */
static const char *repeat(char *buf, char ch, size_t n, const char *tail)
{
    memset(buf, ch, n);
    snprintf(buf + n, 1000 - n, "%s", tail);
    return buf;
}

/* What config_set() says about a value of 64+ characters: the first 64
 * quoted, then "...". */
static void expect_set_error_long(struct fixture *fx, const char *section,
                                  const char *name, const char *value,
                                  const char *why)
{
    char want[512];

    fx->err[0] = '\0';
    assert_int_equal(
        config_set(&fx->c, section, name, value, fx->err, sizeof(fx->err)),
        -1);
    snprintf(want, sizeof(want), "%s.%s: bad value '%.64s...': %s", section,
             name, value, why);
    assert_string_equal(fx->err, want);
}

/* Every length limit of a value says which one it hit, and the field
 * keeps its value. */
static void test_err_lengths(void **state)
{
    struct fixture *fx = *state;
    struct config *c = &fx->c;
    char v[1000];
    size_t o = 0;

    /* Kafka's limit on a topic name, 249 */
    set_ok(fx, "kafka", "transactions_topic", repeat(v, 't', 249, ""));
    expect_set_error_long(fx, "kafka", "transactions_topic",
                          repeat(v, 't', 250, ""),
                          "a topic name has at most 249 characters");
    assert_int_equal(strlen(c->transactions_topic), 249);

    /* a host name longer than the 255 characters DNS allows: in a broker
     * list and in the Redis address */
    expect_set_error_long(fx, "kafka", "brokers",
                          repeat(v, 'h', 256, ".example:9092"),
                          "host name too long");
    set_ok(fx, "redis", "address", repeat(v, 'r', 255, ":6379"));
    assert_int_equal(strlen(c->redis_host), 255);
    expect_set_error_long(fx, "redis", "address", repeat(v, 'r', 256, ":6379"),
                          "host name too long");
    assert_int_equal(strlen(c->redis_host), 255);

    /* a broker list of valid entries that is longer than the field: the
     * blanks after the commas do not count */
    for (int i = 0; i < 40; i++) {
        o += (size_t)snprintf(v + o, sizeof(v) - o,
                              "%sbroker-%02d.example:9092", i ? ", " : "", i);
    }
    set_ok(fx, "kafka", "brokers", "k1:9092");
    expect_set_error_long(fx, "kafka", "brokers", v,
                          "too long (max 511 characters)");
    assert_string_equal(c->brokers, "k1:9092");
    /* 22 entries of 22 characters and 21 commas: 505, fits */
    v[22 * 24 - 2] = '\0';
    set_ok(fx, "kafka", "brokers", v);
    assert_int_equal(strlen(c->brokers), 22 * 23 - 1);

    /* an address that is not split into host and port: the whole value */
    expect_set_error_long(fx, "http", "listen", repeat(v, 'l', 600, ":80"),
                          "too long (max 511 characters)");
    assert_string_equal(c->http_listen, "127.0.0.1:9180");
}

/* An empty replay topic suffix would send replay alerts to the live
 * topics: the message says what to use instead (it said only "must not
 * be empty" before). */
static void test_err_empty_topic_suffix(void **state)
{
    struct fixture *fx = *state;

    assert_int_equal(config_set(&fx->c, "replay", "topic_suffix", "", fx->err,
                                sizeof(fx->err)),
                     -1);
    assert_string_equal(fx->err, "replay.topic_suffix: bad value '': must "
                                 "not be empty (--deliver is the way to send "
                                 "replay alerts to the live topics)");
    expect_load_error(fx, "[replay]\ntopic_suffix =\n", 2,
                      "bad value '' for 'topic_suffix' in [replay]: must not "
                      "be empty (--deliver is the way to send replay alerts "
                      "to the live topics)");
    assert_string_equal(fx->c.replay_topic_suffix, ".replay");
    set_ok(fx, "replay", "topic_suffix", "-rerun");
    expect_load_error(fx, "[replay]\ntopic_suffix = .re play\n", 2,
                      "bad value '.re play' for 'topic_suffix' in [replay]: "
                      "a topic name is made of A-Z a-z 0-9 . _ -");
    assert_string_equal(fx->c.replay_topic_suffix, "-rerun");
}

/* At most CONFIG_MAX_ISSUERS issuers, from flags or from a file. */
static void test_err_too_many_issuers(void **state)
{
    struct fixture *fx = *state;
    struct config *c = &fx->c;
    char sec[64];

    for (int i = 0; i < CONFIG_MAX_ISSUERS; i++) {
        snprintf(sec, sizeof(sec), "issuer i%d", i);
        set_ok(fx, sec, "home_country", "GB");
    }
    assert_int_equal(c->n_issuers, CONFIG_MAX_ISSUERS);
    assert_int_equal(config_set(c, "issuer one-more", "home_country", "GB",
                                fx->err, sizeof(fx->err)),
                     -1);
    assert_string_equal(fx->err, "issuer one-more.home_country: too many "
                                 "issuers (max 1024)");
    expect_load_error(fx, "[kafka]\n[issuer one-more]\nhome_country = GB\n",
                      2, "too many issuers (max 1024)");
    assert_int_equal(c->n_issuers, CONFIG_MAX_ISSUERS);
    /* an existing one can still be changed */
    set_ok(fx, "issuer i1023", "home_country", "FR");
    assert_string_equal(c->issuers[1023].home_country, "FR");
}

/* A config path that cannot be one, a file that cannot be read, and the
 * NULL arguments of each call. */
static void test_err_paths_and_arguments(void **state)
{
    struct fixture *fx = *state;
    struct config *c = &fx->c;
    char path[CONFIG_STR_MAX + 16];
    char want[CONFIG_STR_MAX + 64];
    char buf[64];

    memset(path, 'p', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    assert_int_equal(config_load(c, path, fx->err, sizeof(fx->err)), -1);
    assert_string_equal(fx->err, "config path too long");

    /* a directory opens but does not read */
    assert_int_equal(config_load(c, fx->dir, fx->err, sizeof(fx->err)), -1);
    snprintf(want, sizeof(want), "%s: read error: Is a directory", fx->dir);
    assert_string_equal(fx->err, want);
    set_ok(fx, "kafka", "brokers_file", fx->dir);
    assert_int_equal(
        config_brokers(c, buf, sizeof(buf), fx->err, sizeof(fx->err)), -1);
    snprintf(want, sizeof(want), "%s: read error", fx->dir);
    assert_string_equal(fx->err, want);

    assert_int_equal(config_init(NULL), -1);
    assert_int_equal(
        config_set(NULL, "kafka", "group", "g", fx->err, sizeof(fx->err)),
        -1);
    assert_string_equal(fx->err, "config_set: invalid argument");
    assert_int_equal(
        config_set(c, "kafka", "group", NULL, fx->err, sizeof(fx->err)), -1);
    assert_string_equal(fx->err, "config_set: invalid argument");
    assert_int_equal(config_check(NULL, fx->err, sizeof(fx->err)), -1);
    assert_string_equal(fx->err, "config_check: invalid argument");
    assert_int_equal(config_brokers(c, NULL, 0, fx->err, sizeof(fx->err)), -1);
    assert_string_equal(fx->err, "config_brokers: invalid argument");
    assert_int_equal(config_brokers(c, buf, 0, fx->err, sizeof(fx->err)), -1);
    assert_string_equal(fx->err, "config_brokers: invalid argument");
    assert_null(config_route(NULL, "4000001234567899", 16));
    /* every missing argument of config_set and config_brokers */
    assert_int_equal(
        config_set(c, NULL, "group", "g", fx->err, sizeof(fx->err)), -1);
    assert_string_equal(fx->err, "config_set: invalid argument");
    assert_int_equal(
        config_set(c, "kafka", NULL, "g", fx->err, sizeof(fx->err)), -1);
    assert_string_equal(fx->err, "config_set: invalid argument");
    assert_int_equal(
        config_brokers(NULL, buf, sizeof(buf), fx->err, sizeof(fx->err)), -1);
    assert_string_equal(fx->err, "config_brokers: invalid argument");
    config_free(NULL);
    /* a freed configuration takes no more settings */
    config_free(c);
    assert_int_equal(
        config_set(c, "kafka", "group", "g", fx->err, sizeof(fx->err)), -1);
    assert_string_equal(fx->err, "config_set: invalid argument");
    assert_int_equal(config_init(c), 0); /* for the teardown */
}

/* sasl.password in a [kafka.*] section and [kafka] sasl_password_file
 * exclude each other: config_check names where the property was set, the
 * file and line, or "(flags)" with line 0 for a command-line override. */
static void test_err_sasl_password_twice(void **state)
{
    struct fixture *fx = *state;
    struct config *c = &fx->c;
    const char *path;
    char want[512];

    set_minimum(fx);
    set_ok(fx, "kafka", "sasl_password_file", "/run/secrets/kafka");
    set_ok(fx, "kafka.common", "sasl.password", "x");
    expect_check_error(fx, "(flags):0: [kafka.common] sasl.password and "
                           "[kafka] sasl_password_file are both set: keep "
                           "one");

    config_free(c);
    assert_int_equal(config_init(c), 0);
    path = write_file(fx, "sasl.ini",
                      "[kafka]\nbrokers = 127.0.0.1:9092\n"
                      "sasl_password_file = /run/secrets/kafka\n"
                      "[card]\nkey_file = /etc/cardwatch/fingerprint.key\n"
                      "[kafka.consumer]\nsasl.password = x\n");
    assert_int_equal(config_load(c, path, fx->err, sizeof(fx->err)), 0);
    snprintf(want, sizeof(want),
             "%s:7: [kafka.consumer] sasl.password and [kafka] "
             "sasl_password_file are both set: keep one",
             path);
    expect_check_error(fx, want);
}

/* ---- cross-field checks ---- */

static void test_check_failures(void **state)
{
    struct fixture *fx = *state;
    struct config *c = &fx->c;

    set_ok(fx, "kafka", "brokers", "127.0.0.1:9092");
    expect_check_error(fx, "[card] key_file is required");
    set_ok(fx, "card", "key_file", "/k");
    check_ok(fx);

    set_ok(fx, "pipeline", "batch_size", "5000");
    set_ok(fx, "pipeline", "max_in_flight", "4999");
    expect_check_error(fx, "[pipeline] max_in_flight (4999) must be >= "
                           "batch_size (5000)");
    set_ok(fx, "pipeline", "max_in_flight", "5000");
    check_ok(fx);

    /* an event accepted further ahead than the lateness would prune */
    set_ok(fx, "rules", "allowed_lateness_ms", "60000");
    expect_check_error(fx, "[rules] max_future_skew_ms (300000) must not "
                           "exceed allowed_lateness_ms (60000): an event "
                           "accepted that far ahead would prune window "
                           "state the card's other events still need");
    set_ok(fx, "rules", "max_future_skew_ms", "60000");
    check_ok(fx);

    set_ok(fx, "kafka", "dead_letter_topic", "cardwatch.transactions");
    expect_check_error(fx, "topic 'cardwatch.transactions' is used twice: "
                           "[kafka] transactions_topic and [kafka] "
                           "dead_letter_topic");
    set_ok(fx, "kafka", "dead_letter_topic", "cardwatch.deadletter");

    set_ok(fx, "issuer acme", "home_country", "GB");
    expect_check_error(fx, "[issuer acme] has no bins");
    set_ok(fx, "issuer acme", "bins", "400000");
    check_ok(fx);
    assert_string_equal(c->issuers[0].topic, "cardwatch.alerts.acme");

    set_ok(fx, "issuer beta", "bins", "500000");
    expect_check_error(fx, "[issuer beta] home_country is required");
    set_ok(fx, "issuer beta", "home_country", "FR");
    set_ok(fx, "issuer beta", "topic", "cardwatch.alerts.unrouted");
    expect_check_error(fx, "topic 'cardwatch.alerts.unrouted' is used twice: "
                           "[kafka] fallback_topic and [issuer beta] topic");
    set_ok(fx, "issuer beta", "topic", "cardwatch.alerts.acme");
    expect_check_error(fx, "topic 'cardwatch.alerts.acme' is used twice: "
                           "[issuer acme] topic and [issuer beta] topic");
}

static void test_redis_security_keys(void **state)
{
    struct fixture *fx = *state;
    struct config *c = &fx->c;
    set_minimum(fx);
    /* off by default; on/yes/1 turn TLS on */
    assert_int_equal(c->redis_tls, 0);
    set_ok(fx, "redis", "tls", "yes");
    assert_int_equal(c->redis_tls, 1);
    expect_check_error(fx, "[redis] tls = on needs tls_ca_file (the CA that "
                           "signed the server's certificate)");
    set_ok(fx, "redis", "tls_ca_file", "/etc/cardwatch/redis-ca.crt");
    check_ok(fx);
    set_ok(fx, "redis", "tls_cert_file", "/etc/cardwatch/client.crt");
    expect_check_error(fx, "[redis] tls_cert_file and tls_key_file go "
                           "together (mutual TLS)");
    set_ok(fx, "redis", "tls_key_file", "/etc/cardwatch/client.key");
    check_ok(fx);
    set_ok(fx, "redis", "tls", "off");
    expect_check_error(fx, "[redis] tls_* settings are given but tls is off: "
                           "set tls = on (or remove them)");
    set_ok(fx, "redis", "tls", "on");
    fx->err[0] = '\0';
    assert_int_equal(config_set(c, "redis", "tls", "maybe", fx->err,
                                sizeof(fx->err)),
                     -1);
    assert_non_null(strstr(fx->err, "maybe"));

    set_ok(fx, "redis", "username", "cardwatch");
    expect_check_error(fx, "[redis] username needs password_file");
    set_ok(fx, "redis", "password_file", "/etc/cardwatch/redis.password");
    check_ok(fx);
    fx->err[0] = '\0';
    assert_int_equal(config_set(c, "redis", "username", "card watch",
                                fx->err, sizeof(fx->err)),
                     -1);

    set_ok(fx, "redis", "sentinels", "10.0.0.1:26379,10.0.0.2:26379");
    expect_check_error(fx, "[redis] sentinels and master_name go together");
    set_ok(fx, "redis", "master_name", "cardwatch");
    check_ok(fx);
    assert_string_equal(c->redis_sentinels, "10.0.0.1:26379,10.0.0.2:26379");
    fx->err[0] = '\0';
    assert_int_equal(config_set(c, "redis", "sentinels", "10.0.0.1", fx->err,
                                sizeof(fx->err)),
                     -1);
}

static void test_check_resolves_topic_after_prefix_change(void **state)
{
    struct fixture *fx = *state;
    struct config *c = &fx->c;

    load_ok(fx, "i.ini",
            "[issuer acme]\nhome_country = GB\nbins = 400000\n"
            "[kafka]\nalert_topic_prefix = early.\n");
    set_minimum(fx);
    set_ok(fx, "kafka", "alert_topic_prefix", "late.");
    check_ok(fx);
    assert_string_equal(c->issuers[0].topic, "late.acme");

    /* a brokers_file alone is enough */
    set_ok(fx, "kafka", "brokers", "");
    set_ok(fx, "kafka", "brokers_file", "/run/brokers");
    check_ok(fx);
    set_ok(fx, "kafka", "brokers_file", "");
    expect_check_error(fx,
                       "no Kafka brokers: set [kafka] brokers or brokers_file");
}

/* ---- brokers_file ---- */

static void test_brokers_file(void **state)
{
    struct fixture *fx = *state;
    struct config *c = &fx->c;
    char buf[CONFIG_STR_MAX];
    char small[8];
    char want[256];
    const char *p;

    set_ok(fx, "kafka", "brokers", "from-config:9092");
    assert_int_equal(
        config_brokers(c, buf, sizeof(buf), fx->err, sizeof(fx->err)), 0);
    assert_string_equal(buf, "from-config:9092");
    assert_int_equal(
        config_brokers(c, small, sizeof(small), fx->err, sizeof(fx->err)), -1);

    p = write_file(fx, "brokers",
                   "\n  \n# managed by ops\n"
                   "\t b1.example:9092,b2.example:9092  \n"
                   "ignored:1\n");
    set_ok(fx, "kafka", "brokers_file", p);
    assert_int_equal(
        config_brokers(c, buf, sizeof(buf), fx->err, sizeof(fx->err)), 0);
    assert_string_equal(buf, "b1.example:9092,b2.example:9092");

    p = write_file(fx, "empty", "\n   \n");
    set_ok(fx, "kafka", "brokers_file", p);
    assert_int_equal(
        config_brokers(c, buf, sizeof(buf), fx->err, sizeof(fx->err)), -1);
    snprintf(want, sizeof(want), "%s: no brokers in the file", p);
    assert_string_equal(fx->err, want);

    p = write_file(fx, "badbrokers", "b1.example\n");
    set_ok(fx, "kafka", "brokers_file", p);
    assert_int_equal(
        config_brokers(c, buf, sizeof(buf), fx->err, sizeof(fx->err)), -1);
    snprintf(want, sizeof(want),
             "%s: bad brokers 'b1.example': must be host:port", p);
    assert_string_equal(fx->err, want);

    snprintf(want, sizeof(want), "%s/missing", fx->dir);
    set_ok(fx, "kafka", "brokers_file", want);
    assert_int_equal(
        config_brokers(c, buf, sizeof(buf), fx->err, sizeof(fx->err)), -1);
    assert_non_null(strstr(fx->err, "cannot open"));

    set_ok(fx, "kafka", "brokers_file", "");
    set_ok(fx, "kafka", "brokers", "");
    assert_int_equal(
        config_brokers(c, buf, sizeof(buf), fx->err, sizeof(fx->err)), -1);
    assert_string_equal(
        fx->err, "no Kafka brokers: set [kafka] brokers or brokers_file");
}

/* ---- librdkafka passthrough ---- */

static void test_kafka_props(void **state)
{
    struct fixture *fx = *state;
    struct config *c = &fx->c;
    char name[64];

    load_ok(fx, "k.ini",
            "[kafka.consumer]\n"             /* 1 */
            "fetch.wait.max.ms = 50\n"       /* 2 */
            "[kafka.common]\n"               /* 3 */
            "client.id = cw-1\n"             /* 4 */
            "[kafka.consumer]\n"             /* 5 */
            "fetch.wait.max.ms = 20\n"       /* 6: replaces line 2 */
            "sasl.password = s3cr3t=x;y\n"); /* 7 */
    assert_int_equal(c->n_kafka_props, 3);
    assert_string_equal(c->kafka_props[0].scope, "consumer");
    assert_string_equal(c->kafka_props[0].value, "20");
    assert_int_equal(c->kafka_props[0].line, 6);
    assert_string_equal(c->kafka_props[1].scope, "common");
    assert_int_equal(c->kafka_props[1].line, 4);
    assert_string_equal(c->kafka_props[2].value, "s3cr3t=x;y");
    assert_int_equal(c->kafka_props[2].line, 7);

    /* from a flag: line 0 */
    set_ok(fx, "kafka.producer", "acks", "all");
    assert_int_equal(c->n_kafka_props, 4);
    assert_int_equal(c->kafka_props[3].line, 0);

    expect_load_error(fx, "[kafka.consumer]\n\ngroup.id = other\n", 3,
                      "property 'group.id' is set by [kafka] group");
    expect_load_error(fx, "[kafka.common]\nbootstrap.servers = a:1\n", 2,
                      "property 'bootstrap.servers' is set by [kafka] "
                      "brokers or brokers_file");
    expect_load_error(fx,
                      "[kafka.consumer]\nenable.auto.offset.store = "
                      "true\n",
                      2,
                      "property 'enable.auto.offset.store' is managed by "
                      "cardwatch");
    expect_load_error(fx, "[kafka.producer]\nlinger ms = 5\n", 2,
                      "bad property name 'linger ms' in [kafka.producer]");
    expect_load_error(fx, "[kafka.admin]\nx = 1\n", 1,
                      "unknown section [kafka.admin]");

    /* at most CONFIG_MAX_KAFKA_PROPS */
    for (int i = (int)c->n_kafka_props; i < CONFIG_MAX_KAFKA_PROPS; i++) {
        snprintf(name, sizeof(name), "x.prop%d", i);
        set_ok(fx, "kafka.common", name, "1");
    }
    assert_int_equal(config_set(c, "kafka.common", "one.more", "1", fx->err,
                                sizeof(fx->err)),
                     -1);
    assert_string_equal(fx->err, "kafka.common.one.more: too many kafka "
                                 "properties (max 64)");
    /* replacing an existing one still works when full */
    set_ok(fx, "kafka.common", "x.prop10", "2");
}

/* ---- redaction ---- */

static void test_redaction(void **state)
{
    struct fixture *fx = *state;
    char big[CONFIG_STR_MAX + 8];
    char want[256];

    /* a secret-named property never shows its value */
    expect_load_error(fx, "[kafka.common]\nsasl.password = hunter2\tx\n", 2,
                      "bad value <redacted> for 'sasl.password' in "
                      "[kafka.common]: contains a control character");
    assert_null(strstr(fx->err, "hunter2"));
    expect_load_error(fx,
                      "[kafka.common]\n"
                      "sasl.oauthbearer.client.secret = abc\x01xyz\n",
                      2,
                      "bad value <redacted> for "
                      "'sasl.oauthbearer.client.secret' in [kafka.common]: "
                      "contains a control character");
    memset(big, 'p', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(config_set(&fx->c, "kafka.common", "ssl.key.password", big,
                                fx->err, sizeof(fx->err)),
                     -1);
    assert_string_equal(fx->err, "kafka.common.ssl.key.password: bad value "
                                 "<redacted>: too long (max 511 characters)");

    /* other values are quoted, cut to 64 characters */
    big[100] = '\0';
    big[10] = ' ';
    assert_int_equal(
        config_set(&fx->c, "kafka", "group", big, fx->err, sizeof(fx->err)),
        -1);
    snprintf(want, sizeof(want),
             "kafka.group: bad value '%.10s %.53s...': must not contain "
             "white space",
             big, big + 11);
    assert_string_equal(fx->err, want);
    assert_int_equal(config_set(&fx->c, "kafka", "group", "a b\x01", fx->err,
                                sizeof(fx->err)),
                     -1);
    assert_string_equal(fx->err, "kafka.group: bad value 'a b?': contains a "
                                 "control character");

    /* a value that looks like it holds a card number is never echoed */
    expect_load_error(fx, "[issuer acme]\nbins = 4000001234567899\n", 2,
                      "bad value <redacted> for 'bins' in [issuer acme]: BIN "
                      "prefix of 16 characters must be 6 to 8 digits");
    assert_null(strstr(fx->err, "4000001234567899"));

    /* nor a key or section name that does (found by fuzz_config) */
    expect_load_error(fx, "[kafka]\n4111111111111111 = x\n", 2,
                      "unknown key '<redacted>' in [kafka]");
    expect_load_error(fx, "[x4111111111111111]\n", 1,
                      "unknown section [<redacted>]");
    assert_null(strstr(fx->err, "4111111111111111"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_full_file),
        T(test_load_on_top_and_formats),
        T(test_err_missing_file),
        T(test_err_unknown_section),
        T(test_err_unknown_key),
        T(test_err_bad_int),
        T(test_log_section),
        T(test_err_int_out_of_range),
        T(test_err_bad_hostport),
        T(test_ipv6_and_empty_listen),
        T(test_err_bad_issuer_id),
        T(test_err_duplicate_issuer),
        T(test_err_bad_home_country),
        T(test_err_bad_bins),
        T(test_err_bins_conflict),
        T(test_err_syntax),
        T(test_err_first_error_wins),
        T(test_err_continuation_and_long_line),
        T(test_config_set),
        T(test_err_lengths),
        T(test_err_empty_topic_suffix),
        T(test_err_too_many_issuers),
        T(test_err_paths_and_arguments),
        T(test_err_sasl_password_twice),
        T(test_check_failures),
        T(test_redis_security_keys),
        T(test_check_resolves_topic_after_prefix_change),
        T(test_brokers_file),
        T(test_kafka_props),
        T(test_redaction),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
