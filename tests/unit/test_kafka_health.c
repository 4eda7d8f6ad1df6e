/* Unit tests for kafka_health.c: statistics and error events turned into
 * readiness and metrics. The statistics documents are cut down from what
 * librdkafka 2.0.2 emits (statistics.interval.ms) against a 3-broker
 * cluster: bootstrap entries (nodeid -1), learned brokers, and the
 * logical GroupCoordinator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kafka_health.h"

static const char *stats(const char *s1, const char *s2, const char *s3)
{
    static char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\"name\":\"cardwatch#consumer-1\",\"type\":\"consumer\","
             "\"brokers\":{"
             "\"127.0.0.1:9092/bootstrap\":{\"name\":\"127.0.0.1:9092/"
             "bootstrap\",\"nodeid\":-1,\"source\":\"configured\","
             "\"state\":\"UP\"},"
             "\"127.0.0.1:9092/1\":{\"nodeid\":1,\"source\":\"learned\","
             "\"state\":\"%s\"},"
             "\"127.0.0.1:9093/2\":{\"nodeid\":2,\"source\":\"learned\","
             "\"state\":\"%s\"},"
             "\"127.0.0.1:9094/3\":{\"nodeid\":3,\"source\":\"learned\","
             "\"state\":\"%s\"},"
             "\"GroupCoordinator\":{\"nodeid\":1,\"source\":\"logical\","
             "\"state\":\"UP\"}}}",
             s1, s2, s3);
    return buf;
}

/* The metrics text (caller frees), through a temporary file. */
static char *metrics_text(const struct kafka_health *h)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    kafka_health_metrics(h, f);
    long n = ftell(f);
    char *text = calloc(1, (size_t)n + 1);
    assert_non_null(text);
    rewind(f);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return text;
}

static void test_ready_before_any_statistics(void **state)
{
    (void)state;
    struct kafka_health *h = kafka_health_new();
    char why[256] = "";
    assert_int_equal(kafka_health_ok(h, why, sizeof(why)), 1);
    assert_int_equal(kafka_health_brokers_up(h, KH_CONSUMER), -1);
    assert_int_equal(kafka_health_brokers_up(h, KH_PRODUCER), -1);
    kafka_health_destroy(h);
}

static void test_counts_real_brokers_only(void **state)
{
    (void)state;
    struct kafka_health *h = kafka_health_new();
    const char *j = stats("UP", "DOWN", "UP");
    assert_int_equal(kafka_health_stats(h, KH_CONSUMER, j, strlen(j)), 0);
    /* the bootstrap entry and the coordinator are not brokers of their own */
    assert_int_equal(kafka_health_brokers_up(h, KH_CONSUMER), 2);
    char why[256];
    assert_int_equal(kafka_health_ok(h, why, sizeof(why)), 1);
    kafka_health_destroy(h);
}

static void test_no_broker_up_is_not_ready_until_one_is(void **state)
{
    (void)state;
    struct kafka_health *h = kafka_health_new();
    const char *j = stats("UP", "UP", "UP");
    kafka_health_stats(h, KH_PRODUCER, j, strlen(j));
    kafka_health_error(h, KH_PRODUCER, -187, "3/3 brokers are down", 1000);
    j = stats("DOWN", "CONNECT", "TRY_CONNECT");
    kafka_health_stats(h, KH_PRODUCER, j, strlen(j));
    char why[256];
    assert_int_equal(kafka_health_ok(h, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "producer"));
    assert_non_null(strstr(why, "3/3 brokers are down"));
    j = stats("DOWN", "UP", "DOWN");
    kafka_health_stats(h, KH_PRODUCER, j, strlen(j));
    assert_int_equal(kafka_health_ok(h, why, sizeof(why)), 1);
    assert_int_equal(kafka_health_brokers_up(h, KH_PRODUCER), 1);
    kafka_health_destroy(h);
}

static void test_bad_statistics_change_nothing(void **state)
{
    (void)state;
    struct kafka_health *h = kafka_health_new();
    const char *j = stats("UP", "UP", "DOWN");
    kafka_health_stats(h, KH_CONSUMER, j, strlen(j));
    assert_int_equal(kafka_health_stats(h, KH_CONSUMER, "{\"brokers\":", 11),
                     -1);
    assert_int_equal(kafka_health_stats(h, KH_CONSUMER, "[]", 2), -1);
    /* len is honoured: the same document cut short does not parse */
    assert_int_equal(kafka_health_stats(h, KH_CONSUMER, j, strlen(j) - 3),
                     -1);
    assert_int_equal(kafka_health_brokers_up(h, KH_CONSUMER), 2);
    kafka_health_destroy(h);
}

static void test_errors_counted_by_client_and_code(void **state)
{
    (void)state;
    struct kafka_health *h = kafka_health_new();
    for (int i = 0; i < 5; i++) {
        kafka_health_error(h, KH_CONSUMER, -195, "broker down", 100 + i);
    }
    kafka_health_error(h, KH_PRODUCER, -195, "broker down", 200);
    kafka_health_error(h, KH_PRODUCER, -169, "SASL authentication failed",
                       300);
    const char *j = stats("UP", "DOWN", "DOWN");
    kafka_health_stats(h, KH_PRODUCER, j, strlen(j));
    char *m = metrics_text(h);
    assert_non_null(strstr(
        m, "cardwatch_kafka_errors_total{client=\"consumer\",error=\"_"
           "TRANSPORT\"} 5\n"));
    assert_non_null(strstr(
        m, "cardwatch_kafka_errors_total{client=\"producer\",error=\"_"
           "TRANSPORT\"} 1\n"));
    assert_non_null(strstr(m, "error=\"_AUTHENTICATION\"} 1\n"));
    assert_non_null(
        strstr(m, "cardwatch_kafka_brokers_up{client=\"producer\"} 1\n"));
    assert_non_null(
        strstr(m, "cardwatch_kafka_brokers_up{client=\"consumer\"} -1\n"));
    free(m);
    kafka_health_destroy(h);
}

static void test_many_codes_share_the_last_slot(void **state)
{
    (void)state;
    struct kafka_health *h = kafka_health_new();
    for (int code = 1; code <= 40; code++) {
        kafka_health_error(h, KH_CONSUMER, code, "x", (uint64_t)code * 20000);
    }
    char *m = metrics_text(h);
    /* 32 series at most; nothing is lost from the total */
    int series = 0;
    unsigned long total = 0;
    for (char *p = strstr(m, "cardwatch_kafka_errors_total{"); p != NULL;
         p = strstr(p + 1, "cardwatch_kafka_errors_total{")) {
        series++;
        total += strtoul(strchr(p, '}') + 2, NULL, 10);
    }
    assert_int_equal(series, 32);
    assert_int_equal(total, 40);
    free(m);
    kafka_health_destroy(h);
}

/* Entries that are not brokers of their own, however they are written:
 * without a nodeid or with a nodeid that is no number, librdkafka's
 * internal and logical entries. Entries without a source or state are
 * still brokers (state unknown: not up). */
static void test_odd_entries_are_not_counted(void **state)
{
    (void)state;
    struct kafka_health *h = kafka_health_new();
    const char *j =
        "{\"brokers\":{"
        "\"no-id\":{\"source\":\"learned\",\"state\":\"UP\"},"
        "\"text-id\":{\"nodeid\":\"1\",\"source\":\"learned\","
        "\"state\":\"UP\"},"
        "\"internal\":{\"nodeid\":0,\"source\":\"internal\",\"state\":\"UP\"},"
        "\"no-source\":{\"nodeid\":4,\"state\":\"UP\"},"
        "\"no-state\":{\"nodeid\":5,\"source\":\"learned\"}}}";
    assert_int_equal(kafka_health_stats(h, KH_CONSUMER, j, strlen(j)), 0);
    /* no-source is up; no-state is known but not up */
    assert_int_equal(kafka_health_brokers_up(h, KH_CONSUMER), 1);
    /* a "brokers" member that is not an object is no statistics */
    const char *arr = "{\"brokers\":[]}";
    assert_int_equal(kafka_health_stats(h, KH_CONSUMER, arr, strlen(arr)),
                     -1);
    assert_int_equal(kafka_health_brokers_up(h, KH_CONSUMER), 1);
    kafka_health_destroy(h);
}

/* Brokers lost without any error event (and never reachable at all): the
 * reason says "none" rather than an empty or stale text. */
static void test_down_without_an_error_says_none(void **state)
{
    (void)state;
    struct kafka_health *h = kafka_health_new();
    char up[2048], down[2048]; /* stats() answers in one static buffer */
    snprintf(up, sizeof(up), "%s", stats("UP", "DOWN", "DOWN"));
    snprintf(down, sizeof(down), "%s", stats("DOWN", "DOWN", "DOWN"));
    /* never up: 0 after 0 stays 0, not "reachable again" */
    kafka_health_stats(h, KH_CONSUMER, down, strlen(down));
    kafka_health_stats(h, KH_CONSUMER, down, strlen(down));
    char why[256] = "";
    assert_int_equal(kafka_health_ok(h, why, sizeof(why)), 0);
    assert_string_equal(why, "Kafka: no broker reachable by the consumer "
                             "(last error: none)");
    /* up, then down again with no error event in between */
    kafka_health_stats(h, KH_CONSUMER, up, strlen(up));
    assert_int_equal(kafka_health_ok(h, why, sizeof(why)), 1);
    kafka_health_stats(h, KH_CONSUMER, down, strlen(down));
    assert_int_equal(kafka_health_ok(h, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "(last error: none)"));
    kafka_health_destroy(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_before_any_statistics),
        cmocka_unit_test(test_counts_real_brokers_only),
        cmocka_unit_test(test_no_broker_up_is_not_ready_until_one_is),
        cmocka_unit_test(test_bad_statistics_change_nothing),
        cmocka_unit_test(test_errors_counted_by_client_and_code),
        cmocka_unit_test(test_many_codes_share_the_last_slot),
        cmocka_unit_test(test_odd_entries_are_not_counted),
        cmocka_unit_test(test_down_without_an_error_says_none),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
