/* Unit tests for kafka_wmark.c against librdkafka's in-process mock
 * cluster: the worker answers the watched partitions' high watermarks,
 * follows new messages, forgets unwatched partitions, and stops promptly
 * (also in the middle of its queries). Waits are polls on a condition
 * with a deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kafka_wmark.h"

#define TOPIC "wm"
#define TIMEOUT_MS 10000

static rd_kafka_t *g_prod;
static rd_kafka_t *g_cons;
static char g_boot[256];

static void produce(int32_t partition, int n)
{
    for (int i = 0; i < n; i++) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            g_prod, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_VALUE("x", 1),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    assert_int_equal(rd_kafka_flush(g_prod, TIMEOUT_MS),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
}

static int setup(void **state)
{
    (void)state;
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    g_prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (g_prod == NULL) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(g_prod);
    if (mc == NULL || rd_kafka_mock_topic_create(mc, TOPIC, 3, 1) != 0) {
        return -1;
    }
    snprintf(g_boot, sizeof(g_boot), "%s",
             rd_kafka_mock_cluster_bootstraps(mc));
    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", g_boot, errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", "wm-test", errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    g_cons = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (g_cons == NULL) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (g_cons != NULL) {
        rd_kafka_destroy(g_cons);
    }
    if (g_prod != NULL) {
        rd_kafka_destroy(g_prod); /* takes the mock cluster with it */
    }
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Polls until partition's answer is want; fails after TIMEOUT_MS. */
static void wait_high(struct kafka_wmark *w, int32_t partition, int64_t want)
{
    uint64_t deadline = now_ms() + TIMEOUT_MS;
    int64_t got;
    while ((got = kafka_wmark_high(w, partition)) != want) {
        if (now_ms() > deadline) {
            fail_msg("partition %d: high watermark %lld, expected %lld",
                     (int)partition, (long long)got, (long long)want);
        }
        struct timespec d = {0, 5 * 1000000L};
        nanosleep(&d, NULL);
    }
}

static void test_watched_partitions_follow_the_topic(void **state)
{
    (void)state;
    char err[256];
    produce(0, 100);
    produce(1, 37);
    struct kafka_wmark *w = kafka_wmark_new(g_cons, TOPIC, err, sizeof(err));
    assert_non_null(w);
    assert_int_equal(kafka_wmark_high(w, 0), -1); /* nothing watched */
    const int32_t parts[] = {0, 1};
    assert_int_equal(kafka_wmark_watch(w, parts, 2), 0);
    wait_high(w, 0, 100);
    wait_high(w, 1, 37);
    assert_int_equal(kafka_wmark_high(w, 2), -1); /* not watched */
    /* new messages show within a round or two */
    uint64_t t0 = now_ms();
    produce(0, 5);
    wait_high(w, 0, 105);
    assert_true(now_ms() - t0 < 3 * KAFKA_WMARK_INTERVAL_MS + 1000);
    /* a set without partition 1: 0 keeps its answer, 1 is forgotten */
    const int32_t only0[] = {0};
    assert_int_equal(kafka_wmark_watch(w, only0, 1), 0);
    assert_int_equal(kafka_wmark_high(w, 0), 105);
    assert_int_equal(kafka_wmark_high(w, 1), -1);
    /* nothing watched: nothing answered */
    assert_int_equal(kafka_wmark_watch(w, NULL, 0), 0);
    assert_int_equal(kafka_wmark_high(w, 0), -1);
    kafka_wmark_destroy(w);
}

/* Destroy right after a watch (the worker is in its queries, one of them
 * for a partition that does not exist) returns within one query's
 * timeout. */
static void test_destroy_stops_promptly(void **state)
{
    (void)state;
    char err[256];
    kafka_wmark_destroy(NULL);
    struct kafka_wmark *w = kafka_wmark_new(g_cons, TOPIC, err, sizeof(err));
    assert_non_null(w);
    const int32_t parts[] = {7, 2, 0};
    assert_int_equal(kafka_wmark_watch(w, parts, 3), 0);
    uint64_t t0 = now_ms();
    kafka_wmark_destroy(w);
    assert_true(now_ms() - t0 <= KAFKA_WMARK_TIMEOUT_MS + 1000);
}

/* A new set that holds the watched partitions in another order and a new
 * one: the known answers move with their partitions at once (no -1 until
 * the next round), the new partition is unknown until it is asked. */
static void test_reordered_set_keeps_answers(void **state)
{
    (void)state;
    char err[256];
    struct kafka_wmark *w = kafka_wmark_new(g_cons, TOPIC, err, sizeof(err));
    assert_non_null(w);
    const int32_t first[] = {0, 1};
    assert_int_equal(kafka_wmark_watch(w, first, 2), 0);
    /* (test_watched_partitions_follow_the_topic left 105 and 37) */
    wait_high(w, 0, 105);
    wait_high(w, 1, 37);
    const int32_t second[] = {1, 2, 0};
    assert_int_equal(kafka_wmark_watch(w, second, 3), 0);
    assert_int_equal(kafka_wmark_high(w, 1), 37);
    assert_int_equal(kafka_wmark_high(w, 0), 105);
    wait_high(w, 2, 0); /* asked in the next round: empty */
    kafka_wmark_destroy(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watched_partitions_follow_the_topic),
        cmocka_unit_test(test_reordered_set_keeps_answers),
        cmocka_unit_test(test_destroy_stops_promptly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
