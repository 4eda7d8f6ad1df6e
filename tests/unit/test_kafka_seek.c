/* Unit tests for kafka_seek.c: the pure search on made-up logs with gaps
 * (which the mock cluster cannot make), then kafka_seek_range() against
 * librdkafka's in-process mock cluster: offsets of time ranges, checked
 * against a brute-force answer, through the binary search and through the
 * broker path (the 2.0.2 mock answers -1 to every offsetsForTimes, so
 * both must agree), the cost in probes and rounds, and the errors: bad
 * arguments and handles, no broker, and fetches that time out with and
 * without an error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kafka_seek.h"
#include "timeparse.h"

#define BASE INT64_C(1722470400000) /* 2024-08-01T00:00:00Z */
#define TIMEOUT_MS 10000

/* Topic "seek3": 3 partitions of 1000, 37 and 0 messages; timestamps
 * never decrease and come in ties. Topic "one": 1 partition of 1000
 * messages with distinct timestamps. */
#define T3 "seek3"
#define T1 "one"
static const int n3[3] = {1000, 37, 0};
#define N1 1000

static rd_kafka_t *g_prod;
static rd_kafka_mock_cluster_t *g_mc;
static char g_boot[256];

static int64_t ts3(int partition, int i)
{
    switch (partition) {
    case 0:
        return BASE + (i / 3) * 10; /* ties of 3, 10 ms apart */
    case 1:
        return BASE + 5 + (i / 2) * 90; /* ties of 2, between p0's */
    default:
        return -1;
    }
}

static int64_t ts1(int i)
{
    return BASE + 2 * (int64_t)i;
}

/* The first offset stamped >= t, or n: what Kafka's offsetsForTimes
 * means, by brute force. */
static int64_t expect3(int partition, int64_t t)
{
    int i = 0;
    while (i < n3[partition] && ts3(partition, i) < t) {
        i++;
    }
    return i;
}

static int64_t expect1(int64_t t)
{
    int i = 0;
    while (i < N1 && ts1(i) < t) {
        i++;
    }
    return i;
}

static void produce(const char *topic, int32_t partition, int64_t ts)
{
    rd_kafka_resp_err_t e = rd_kafka_producev(
        g_prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_VALUE("x", 1), RD_KAFKA_V_TIMESTAMP(ts),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fail_msg("produce: %s", rd_kafka_err2str(e));
    }
}

static int setup(void **state)
{
    (void)state;
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
        fprintf(stderr, "conf: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    g_prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (g_prod == NULL) {
        fprintf(stderr, "producer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    g_mc = rd_kafka_handle_mock_cluster(g_prod);
    if (g_mc == NULL || rd_kafka_mock_topic_create(g_mc, T3, 3, 1) != 0 ||
        rd_kafka_mock_topic_create(g_mc, T1, 1, 1) != 0) {
        fprintf(stderr, "mock cluster: cannot create topics\n");
        return -1;
    }
    snprintf(g_boot, sizeof(g_boot), "%s",
             rd_kafka_mock_cluster_bootstraps(g_mc));
    for (int p = 0; p < 3; p++) {
        for (int i = 0; i < n3[p]; i++) {
            produce(T3, p, ts3(p, i));
        }
    }
    for (int i = 0; i < N1; i++) {
        produce(T1, 0, ts1(i));
    }
    if (rd_kafka_flush(g_prod, TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "flush timed out\n");
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (g_prod != NULL) {
        rd_kafka_destroy(g_prod); /* takes the mock cluster with it */
    }
    return 0;
}

/* A consumer with kafka_seek_props, then the overrides (name/value pairs,
 * NULL-terminated; may be NULL). */
static rd_kafka_t *consumer(const char *const *overrides)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *const common[] = {"bootstrap.servers", g_boot, "log_level", "3",
                                  NULL};
    /* The mock's partitions are so small that the prefetch after every
     * probe reaches their end, where the broker holds the fetch for
     * fetch.wait.max.ms and the next round waits for it: 1 ms instead of
     * kafka_seek_props' 10 keeps the program a few seconds long. */
    const char *const fast[] = {"fetch.wait.max.ms", "1", NULL};
    const char *const *lists[] = {common, kafka_seek_props, fast, overrides};
    for (size_t k = 0; k < 4; k++) {
        for (const char *const *p = lists[k]; p != NULL && p[0] != NULL;
             p += 2) {
            if (rd_kafka_conf_set(conf, p[0], p[1], errstr, sizeof(errstr)) !=
                RD_KAFKA_CONF_OK) {
                fail_msg("%s: %s", p[0], errstr);
            }
        }
    }
    rd_kafka_t *rk =
        rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fail_msg("consumer: %s", errstr);
    }
    return rk;
}

static void consumer_done(rd_kafka_t *rk)
{
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static int ceil_log2(int n)
{
    int k = 0;
    while ((1 << k) < n) {
        k++;
    }
    return k;
}

/* The probe budget the brief sets per partition of n messages. */
static int probe_budget(int n)
{
    return n == 0 ? 0 : 2 * ceil_log2(n) + 2;
}

struct range {
    const char *what;
    int64_t from, to;
};

static const struct range ranges[] = {
    {"before the first", BASE - 1000, BASE - 500},
    {"from before the first to the end", BASE - 1, INT64_MAX},
    {"everything, from 0", 0, INT64_MAX},
    {"from a negative time", -5, BASE + 20},
    {"exactly the first", BASE, BASE + 1},
    {"exactly on ties", BASE + 10, BASE + 20},
    {"between timestamps", BASE + 15, BASE + 25},
    {"on p1's ties", BASE + 95, BASE + 905},
    {"empty, on a tie", BASE + 100, BASE + 100},
    {"empty, between", BASE + 101, BASE + 101},
    {"exactly the last of p0", BASE + 3330, BASE + 3331},
    {"the last of p1 to the end", BASE + 5 + 18 * 90, INT64_MAX},
    {"after the last", BASE + 5000, BASE + 6000},
    {"after the last to the end", BASE + 5000, INT64_MAX},
    {"wide", BASE + 1234, BASE + 2999},
};

static void check_seek3(int force_search)
{
    rd_kafka_t *rk = consumer(NULL);
    for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
        const struct range *q = &ranges[r];
        struct kseek_part *parts = NULL;
        size_t n = 0;
        struct kseek_stats st;
        char err[512] = "";
        int rc =
            kafka_seek_range(rk, T3, q->from, q->to, TIMEOUT_MS, force_search,
                             &parts, &n, &st, err, sizeof(err));
        if (rc != 0) {
            fail_msg("%s: %s", q->what, err);
        }
        assert_int_equal(n, 3);
        int budget = 0;
        for (int p = 0; p < 3; p++) {
            int64_t want_start = expect3(p, q->from);
            int64_t want_end = q->to == INT64_MAX ? n3[p] : expect3(p, q->to);
            if (parts[p].partition != p || parts[p].low != 0 ||
                parts[p].high != n3[p] || parts[p].start != want_start ||
                parts[p].end != want_end) {
                fail_msg("%s (search %d), partition %d: got p%d low %lld "
                         "high %lld [%lld, %lld), want [%lld, %lld)",
                         q->what, force_search, p, (int)parts[p].partition,
                         (long long)parts[p].low, (long long)parts[p].high,
                         (long long)parts[p].start, (long long)parts[p].end,
                         (long long)want_start, (long long)want_end);
            }
            budget += probe_budget(n3[p]);
        }
        if (st.probes > budget) {
            fail_msg("%s (search %d): %d probes, budget %d", q->what,
                     force_search, st.probes, budget);
        }
        kafka_seek_free(parts);
    }
    consumer_done(rk);
}

static void test_ranges_by_search(void **state)
{
    (void)state;
    check_seek3(1);
}

static void test_ranges_with_broker_first(void **state)
{
    (void)state;
    check_seek3(0);
}

/* Distinct timestamps on one partition of 1000: probes stay logarithmic
 * for every kind of position, in both modes. */
static void test_probe_count(void **state)
{
    (void)state;
    rd_kafka_t *rk = consumer(NULL);
    const int64_t times[] = {
        BASE - 1,    BASE,        BASE + 1,     BASE + 2,
        BASE + 997,  BASE + 998,  BASE + 1001,  BASE + 1998,
        BASE + 1999, BASE + 2000, BASE + 99999,
    };
    int max_probes[2] = {0, 0};
    int max_rounds[2] = {0, 0};
    for (int force = 0; force <= 1; force++) {
        for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
            for (size_t j = i; j < sizeof(times) / sizeof(times[0]); j++) {
                struct kseek_part *parts = NULL;
                size_t n = 0;
                struct kseek_stats st;
                char err[512];
                if (kafka_seek_range(rk, T1, times[i], times[j], TIMEOUT_MS,
                                     force, &parts, &n, &st, err,
                                     sizeof(err)) != 0) {
                    fail_msg("%s", err);
                }
                assert_int_equal(n, 1);
                assert_int_equal(parts[0].start, expect1(times[i]));
                assert_int_equal(parts[0].end, expect1(times[j]));
                if (st.probes > probe_budget(N1)) {
                    fail_msg("[%lld, %lld) force %d: %d probes > %d",
                             (long long)(times[i] - BASE),
                             (long long)(times[j] - BASE), force, st.probes,
                             probe_budget(N1));
                }
                /* One partition: one probe per round. */
                assert_int_equal(st.rounds, st.probes);
                assert_int_equal(st.broker_answered + st.searched, 2);
                if (st.probes > max_probes[force]) {
                    max_probes[force] = st.probes;
                }
                if (st.rounds > max_rounds[force]) {
                    max_rounds[force] = st.rounds;
                }
                kafka_seek_free(parts);
            }
        }
    }
    print_message("1000 messages: at most %d probes (broker first), %d "
                  "(search only); budget %d\n",
                  max_probes[0], max_probes[1], probe_budget(N1));
    consumer_done(rk);
}

/* Partitions are searched in parallel: rounds follow the largest
 * partition, not the sum. */
static void test_rounds_are_parallel(void **state)
{
    (void)state;
    rd_kafka_t *rk = consumer(NULL);
    struct kseek_part *parts = NULL;
    size_t n = 0;
    struct kseek_stats st;
    char err[512];
    assert_int_equal(kafka_seek_range(rk, T3, BASE + 1234, BASE + 2999,
                                      TIMEOUT_MS, 1, &parts, &n, &st, err,
                                      sizeof(err)),
                     0);
    assert_true(st.rounds <= probe_budget(n3[0]));
    assert_true(st.probes > st.rounds);
    assert_int_equal(st.searched, 4); /* two lookups of p0 and of p1 */
    assert_int_equal(st.broker_answered, 0);
    kafka_seek_free(parts);
    consumer_done(rk);
}

/* The mock answers -1: after the last message that is the truth and is
 * confirmed with one probe per partition; elsewhere it is overruled. */
static void test_broker_minus_one(void **state)
{
    (void)state;
    rd_kafka_t *rk = consumer(NULL);
    struct kseek_part *parts = NULL;
    size_t n = 0;
    struct kseek_stats st;
    char err[512];

    assert_int_equal(kafka_seek_range(rk, T3, BASE + 5000, BASE + 6000,
                                      TIMEOUT_MS, 0, &parts, &n, &st, err,
                                      sizeof(err)),
                     0);
    assert_int_equal(st.broker_answered, 4);
    assert_int_equal(st.searched, 0);
    assert_int_equal(st.probes, 2); /* the last message of p0 and of p1 */
    assert_int_equal(parts[0].start, 1000);
    assert_int_equal(parts[1].end, 37);
    kafka_seek_free(parts);

    assert_int_equal(kafka_seek_range(rk, T3, BASE + 10, BASE + 20, TIMEOUT_MS,
                                      0, &parts, &n, &st, err, sizeof(err)),
                     0);
    assert_int_equal(st.broker_answered, 0);
    assert_int_equal(st.searched, 4);
    kafka_seek_free(parts);
    consumer_done(rk);
}

static void test_times_from_timeparse(void **state)
{
    (void)state;
    int64_t from;
    int64_t to;
    assert_int_equal(timeparse_ms("2024-08-01T00:00:00.010Z", &from, NULL, 0),
                     0);
    assert_int_equal(
        timeparse_ms("2024-08-01T02:00:00.020+02:00", &to, NULL, 0), 0);
    rd_kafka_t *rk = consumer(NULL);
    struct kseek_part *parts = NULL;
    size_t n = 0;
    char err[512];
    assert_int_equal(kafka_seek_range(rk, T3, from, to, TIMEOUT_MS, 0, &parts,
                                      &n, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(parts[0].start, 3); /* the first of the tied 3, 4, 5 */
    assert_int_equal(parts[0].end, 6);
    assert_int_equal(parts[1].start, 2); /* 0 and 1 are at BASE + 5 */
    assert_int_equal(parts[1].end, 2);
    assert_int_equal(parts[2].start, 0);
    assert_int_equal(parts[2].end, 0);
    kafka_seek_free(parts);
    consumer_done(rk);
}

/* A made-up partition for the pure search: offsets [0, n), some of them
 * gaps (no message: compaction, transaction markers). */
#define LOG_MAX 300
struct fake_log {
    int n;
    int present[LOG_MAX];
    int64_t ts[LOG_MAX];
};

static uint32_t g_rand = 12345;

static uint32_t rnd(uint32_t below)
{
    g_rand = g_rand * 1103515245u + 12345u;
    return (g_rand >> 8) % below;
}

/* Runs one search to the end, answering each probe from the log. Returns
 * the result and sets *probes. */
static int64_t run_search(const struct fake_log *lg, int64_t t, int check_last,
                          int *probes)
{
    struct kseek_search b;
    kseek_search_init(&b, t, 0, lg->n, check_last);
    *probes = 0;
    while (b.pending) {
        int64_t mid = kseek_search_next(&b);
        assert_true(mid >= b.lo && mid < b.hi);
        int64_t off = mid;
        while (off < lg->n && !lg->present[off]) {
            off++;
        }
        int found = off < lg->n;
        kseek_search_apply(&b, mid, found, found ? off : 0,
                           found ? lg->ts[off] : 0);
        if (++*probes > 64) {
            fail_msg("search does not end");
        }
    }
    return kseek_search_result(&b);
}

static int64_t brute(const struct fake_log *lg, int64_t t)
{
    for (int i = 0; i < lg->n; i++) {
        if (lg->present[i] && lg->ts[i] >= t) {
            return i;
        }
    }
    return lg->n;
}

/* Random logs with gaps anywhere (also at both ends, also only gaps),
 * timestamps never decreasing, with ties: the result is exactly the
 * brute-force one, in at most ceil(log2(n + 1)) probes, plus a few
 * logarithmic in the run of gaps at the end when the last offset is
 * checked first. */
static void test_search_with_gaps(void **state)
{
    (void)state;
    struct fake_log lg;
    for (int trial = 0; trial < 400; trial++) {
        lg.n = (int)rnd(LOG_MAX + 1);
        int gap_pct = (int)rnd(4) * 30; /* 0, 30, 60 or 90 % gaps */
        int64_t t = 1000;
        for (int i = 0; i < lg.n; i++) {
            lg.present[i] = (int)rnd(100) >= gap_pct;
            t += rnd(3) == 0 ? 0 : rnd(20); /* ties are common */
            lg.ts[i] = t;
        }
        if (trial % 7 == 0) {
            for (int i = 0; i < lg.n && i < 5; i++) {
                lg.present[lg.n - 1 - i] = 0; /* markers at the end */
            }
        }
        int budget = ceil_log2(lg.n + 1);
        int tail_gap = 0;
        while (tail_gap < lg.n && !lg.present[lg.n - 1 - tail_gap]) {
            tail_gap++;
        }
        for (int q = 0; q < 30; q++) {
            int64_t want_t = 990 + (int64_t)rnd((uint32_t)(t - 990 + 20));
            if (q == 0 && lg.n > 0) {
                want_t = lg.ts[rnd((uint32_t)lg.n)]; /* on a timestamp */
            }
            for (int cl = 0; cl <= 1; cl++) {
                int probes;
                int64_t got = run_search(&lg, want_t, cl, &probes);
                int limit =
                    budget + (cl ? 2 * (ceil_log2(tail_gap + 1) + 1) : 0);
                if (got != brute(&lg, want_t) || probes > limit) {
                    fail_msg("trial %d: n %d, T %lld, check_last %d: %lld "
                             "in %d probes, want %lld in <= %d",
                             trial, lg.n, (long long)want_t, cl, (long long)got,
                             probes, (long long)brute(&lg, want_t), limit);
                }
            }
        }
    }
}

/* The last message is older than T: probing it first settles the
 * broker's "-1" in one probe; an empty range needs none. */
static void test_search_check_last(void **state)
{
    (void)state;
    struct fake_log lg = {.n = 200};
    for (int i = 0; i < lg.n; i++) {
        lg.present[i] = 1;
        lg.ts[i] = 100 + i;
    }
    int probes;
    assert_int_equal(run_search(&lg, 1000, 1, &probes), 200);
    assert_int_equal(probes, 1);
    lg.present[199] = 0; /* a transaction marker last: end of partition */
    assert_int_equal(run_search(&lg, 1000, 1, &probes), 200);
    assert_int_equal(probes, 2);
    for (int i = 150; i < 200; i++) {
        lg.present[i] = 0; /* 50 aborted records and markers */
    }
    assert_int_equal(run_search(&lg, 1000, 1, &probes), 200);
    assert_true(probes <= 2 * 7);
    print_message("last 50 offsets without messages: %d probes\n", probes);
    assert_int_equal(run_search(&lg, 120, 1, &probes), 20);
    lg.n = 0;
    assert_int_equal(run_search(&lg, 5, 1, &probes), 0);
    assert_int_equal(probes, 0);

    /* A probe outside the interval, or an answer before the probe, is
     * ignored. */
    struct kseek_search b;
    kseek_search_init(&b, 50, 10, 20, 0);
    kseek_search_apply(&b, 5, 1, 5, 99);
    kseek_search_apply(&b, 20, 0, 0, 0);
    kseek_search_apply(&b, 15, 1, 12, 99);
    assert_int_equal(b.lo, 10);
    assert_int_equal(b.hi, 20);
    assert_true(b.pending);
}

/* Timestamps that go back: the result is still an offset where the
 * condition flips (the message before it is stamped < T, its own >= T),
 * or an end of the partition. */
static void test_search_unordered_timestamps(void **state)
{
    (void)state;
    struct fake_log lg;
    for (int trial = 0; trial < 300; trial++) {
        lg.n = 1 + (int)rnd(LOG_MAX);
        for (int i = 0; i < lg.n; i++) {
            lg.present[i] = rnd(4) != 0;
            lg.ts[i] = rnd(1000);
        }
        int64_t t = rnd(1000);
        int probes;
        int64_t r = run_search(&lg, t, (int)rnd(2), &probes);
        assert_true(r >= 0 && r <= lg.n);
        if (r < lg.n) {
            assert_true(lg.present[r] && lg.ts[r] >= t);
        }
        int64_t prev = r - 1;
        while (prev >= 0 && !lg.present[prev]) {
            prev--;
        }
        if (prev >= 0) {
            assert_true(lg.ts[prev] < t);
        }
    }
}

static void expect_error(rd_kafka_t *rk, const char *topic, int64_t from,
                         int64_t to, int timeout_ms, const char *part1,
                         const char *part2)
{
    struct kseek_part *parts = (struct kseek_part *)&parts; /* not NULL */
    size_t n = 99;
    struct kseek_stats st;
    char err[512] = "";
    assert_int_equal(kafka_seek_range(rk, topic, from, to, timeout_ms, 1,
                                      &parts, &n, &st, err, sizeof(err)),
                     -1);
    assert_null(parts);
    assert_int_equal(n, 0);
    if (strstr(err, part1) == NULL ||
        (part2 != NULL && strstr(err, part2) == NULL)) {
        fail_msg("error \"%s\" should contain \"%s\"%s%s", err, part1,
                 part2 != NULL ? " and " : "", part2 != NULL ? part2 : "");
    }
}

static void test_errors(void **state)
{
    (void)state;
    rd_kafka_t *rk = consumer(NULL);
    expect_error(rk, T3, BASE + 20, BASE + 10, TIMEOUT_MS, "end of the range",
                 "is before its start");
    expect_error(rk, "no-such-topic", BASE, BASE + 1, TIMEOUT_MS,
                 "topic no-such-topic does not exist", NULL);
    expect_error(rk, T3, BASE, BASE + 1, 0, "timeout", NULL);
    expect_error(rk, "", BASE, BASE + 1, TIMEOUT_MS, "no handle, topic", NULL);
    /* After errors the handle still works and is left unassigned. */
    struct kseek_part *parts = NULL;
    size_t n = 0;
    char err[512];
    assert_int_equal(kafka_seek_range(rk, T3, BASE, INT64_MAX, TIMEOUT_MS, 1,
                                      &parts, &n, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(parts[0].start, 0);
    assert_int_equal(parts[0].end, 1000);
    kafka_seek_free(parts);
    rd_kafka_topic_partition_list_t *a = NULL;
    assert_int_equal(rd_kafka_assignment(rk, &a), 0);
    assert_int_equal(a->cnt, 0);
    rd_kafka_topic_partition_list_destroy(a);
    consumer_done(rk);
    kafka_seek_free(NULL);
}

static void test_handle_requirements(void **state)
{
    (void)state;
    const char *const no_eof[] = {"enable.partition.eof", "false", NULL};
    const char *const autocommit[] = {"enable.auto.commit", "true", NULL};
    rd_kafka_t *rk = consumer(no_eof);
    expect_error(rk, T3, BASE, BASE + 1, TIMEOUT_MS, "enable.partition.eof",
                 NULL);
    consumer_done(rk);
    rk = consumer(autocommit);
    expect_error(rk, T3, BASE, BASE + 1, TIMEOUT_MS, "enable.auto.commit",
                 NULL);
    consumer_done(rk);
    /* librdkafka's assign needs a group id; a producer cannot assign */
    const char *const no_group[] = {"group.id", "", NULL};
    rk = consumer(no_group);
    expect_error(rk, T3, BASE, BASE + 1, TIMEOUT_MS, "needs a group.id", NULL);
    consumer_done(rk);
    expect_error(g_prod, T3, BASE, BASE + 1, TIMEOUT_MS,
                 "needs a consumer handle", NULL);

    rk = consumer(NULL);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, T1, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, sub), 0);
    rd_kafka_topic_partition_list_destroy(sub);
    expect_error(rk, T3, BASE, BASE + 1, TIMEOUT_MS, "subscription", NULL);
    rd_kafka_unsubscribe(rk);
    consumer_done(rk);
}

/* Fetches that keep failing: the timeout names the partition. */
static void test_timeout_names_partition(void **state)
{
    (void)state;
    rd_kafka_t *rk = consumer(NULL);
    rd_kafka_resp_err_t errs[400];
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        errs[i] = RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION;
    }
    rd_kafka_mock_push_request_errors_array(
        g_mc, 1 /* Fetch */, sizeof(errs) / sizeof(errs[0]), errs);
    expect_error(rk, T1, BASE + 500, BASE + 600, 1000, "timed out",
                 "partition 0");
    rd_kafka_mock_clear_request_errors(g_mc, 1 /* Fetch */);
    consumer_done(rk);
}

/* Missing arguments: refused with one message, and whatever result
 * pointer was given is cleared. */
static void test_missing_arguments(void **state)
{
    (void)state;
    rd_kafka_t *rk = consumer(NULL);
    struct kseek_part *parts = (struct kseek_part *)&parts; /* not NULL */
    size_t n = 99;
    char err[512];
    const char *want = "kafka seek: no handle, topic or result";
    err[0] = '\0';
    assert_int_equal(kafka_seek_range(NULL, T3, BASE, BASE + 1, TIMEOUT_MS, 0,
                                      &parts, &n, NULL, err, sizeof(err)),
                     -1);
    assert_string_equal(err, want);
    assert_null(parts);
    assert_int_equal(n, 0);
    err[0] = '\0';
    assert_int_equal(kafka_seek_range(rk, NULL, BASE, BASE + 1, TIMEOUT_MS, 0,
                                      &parts, &n, NULL, err, sizeof(err)),
                     -1);
    assert_string_equal(err, want);
    n = 99;
    err[0] = '\0';
    assert_int_equal(kafka_seek_range(rk, T3, BASE, BASE + 1, TIMEOUT_MS, 0,
                                      NULL, &n, NULL, err, sizeof(err)),
                     -1);
    assert_string_equal(err, want);
    assert_int_equal(n, 0);
    parts = (struct kseek_part *)&parts;
    err[0] = '\0';
    assert_int_equal(kafka_seek_range(rk, T3, BASE, BASE + 1, TIMEOUT_MS, 0,
                                      &parts, NULL, NULL, err, sizeof(err)),
                     -1);
    assert_string_equal(err, want);
    assert_null(parts);
    consumer_done(rk);
}

/* No broker answers the metadata request: the error says so, within the
 * timeout. */
static void test_no_broker(void **state)
{
    (void)state;
    const char *const closed[] = {"bootstrap.servers", "127.0.0.1:9",
                                  "reconnect.backoff.max.ms", "100", NULL};
    rd_kafka_t *rk = consumer(closed);
    expect_error(rk, T3, BASE, BASE + 1, 300, "topic seek3: metadata: ",
                 NULL);
    consumer_done(rk);
}

/* Fetches that do not come back in time, without any error: the timeout
 * names the first partition still waiting, counts the others and names
 * no error (there was none). Partition 2 is empty and never waits. */
static void test_timeout_without_error(void **state)
{
    (void)state;
    rd_kafka_t *rk = consumer(NULL);
    /* one Fetch answered after 1 s; the call gives up after 0.4 s */
    rd_kafka_mock_broker_push_request_error_rtts(
        g_mc, 1, 1 /* Fetch */, 1, RD_KAFKA_RESP_ERR_NO_ERROR, 1000);
    struct kseek_part *parts = NULL;
    size_t n = 0;
    char err[512] = "";
    assert_int_equal(kafka_seek_range(rk, T3, BASE + 500, BASE + 600, 400, 1,
                                      &parts, &n, NULL, err, sizeof(err)),
                     -1);
    if (strstr(err, "timed out after 400 ms waiting for partition 0") ==
            NULL ||
        strstr(err, "(2 partition(s) unanswered)") == NULL) {
        fail_msg("unexpected error \"%s\"", err);
    }
    consumer_done(rk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_search_with_gaps),
        cmocka_unit_test(test_search_check_last),
        cmocka_unit_test(test_search_unordered_timestamps),
        cmocka_unit_test(test_ranges_by_search),
        cmocka_unit_test(test_ranges_with_broker_first),
        cmocka_unit_test(test_probe_count),
        cmocka_unit_test(test_rounds_are_parallel),
        cmocka_unit_test(test_broker_minus_one),
        cmocka_unit_test(test_times_from_timeparse),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_handle_requirements),
        cmocka_unit_test(test_timeout_names_partition),
        cmocka_unit_test(test_missing_arguments),
        cmocka_unit_test(test_no_broker),
        cmocka_unit_test(test_timeout_without_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
