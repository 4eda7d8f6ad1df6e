/*
 * latency - end-to-end latency of cardwatch against the broker's own
 * pass-through, at a fixed produce rate (make bench-latency,
 * scripts/bench_latency.sh).
 *
 *   latency --brokers B --topic T --alert-topics A1,A2,... --exposed CSV
 *           --rate R --seconds S [--exposed-share F] [--run ID]
 *           [--clean-prefix P] [--seed N] [--probes N] [--timeout S]
 *           [-X key=value]... [-C key=value]...
 *
 * One process, three clients:
 *   - a producer that sends R transactions per second for S seconds to T
 *     (protobuf cardwatch.v1.Transaction, key = txn_id, event_time_ms =
 *     now), a share F of them on the exposed cards of CSV ("pan,expiry"
 *     lines from `cardwatch gen cards`) so that the built-in rule raises
 *     an alert for each; the rest on clean cards under --clean-prefix (a
 *     BIN no exposed card has, so no clean card can be exposed by
 *     accident). Each message's produce-call time (CLOCK_REALTIME, us) is
 *     kept by its sequence number, which the txn_id carries
 *     ("<run>-<seq>");
 *   - an independent consumer of the alert topics: decodes each Alert with
 *     protobuf-c (not cardwatch's decoder), matches its txn_id to the
 *     transaction and records arrival - produce time;
 *   - a plain consumer of T (the broker's pass-through): arrival - produce
 *     time of every message, the same measure.
 * -X sets a librdkafka property of the producer, -C one of both consumers.
 * Both consumers are assigned every partition at the high watermark read
 * before anything is produced (no group, nothing missed or read twice),
 * and take messages with rd_kafka_consumer_poll, time-stamped on return.
 *
 * Before the measured part, N probe transactions (default 20) on exposed
 * cards are sent and their alerts awaited (up to --timeout): cardwatch has
 * joined its group and processes. After the producer flushed, the tool
 * waits until every alert and every message arrived, or --timeout seconds
 * (default 60) passed. Prints one JSON line:
 *   {"target":R,"rate":achieved,"sent":N,"alerting":K,"alerts":M,
 *    "missing":K-M,"duplicates":D,"unexpected":U,"pass_received":N2,
 *    "cardwatch":{"n":..,"p50":..,"p99":..,"p999":..,"max":..},
 *    "pass":{...},"pass_alerting":{...},"cardwatch_first_p50":..,
 *    "cardwatch_last_p50":..,"pass_first_p50":..,"pass_last_p50":..}
 * (milliseconds; pass_alerting is the pass-through of the alerting
 * transactions alone; *_first_p50 / *_last_p50 the medians over the first
 * and the last fifth of the transactions sent: a consumer that falls
 * behind shows as latency growing through the step). Exit 0 when every alert
 * and message arrived and nothing unexpected did; 1 when something is missing
 * or unexpected (the JSON is printed anyway); 2 on usage or set-up errors.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "cardwatch.pb-c.h"
#include "gen.h"
#include "ktool.h"
#include "txn.h"

#define MAX_TOPICS 16
#define MAX_CARDS 1000000
#define PROBE_BASE 1000000000LL /* probe seqs: PROBE_BASE + i */

struct opts {
    const char *brokers, *topic, *exposed, *run, *clean_prefix;
    const char *relay_topic; /* NULL = no relay column */
    char *alert_topics[MAX_TOPICS];
    int n_alert_topics;
    double rate, seconds, share, timeout_s;
    uint64_t seed;
    int probes;
    char *cprops[2 * MAX_TOPICS + 1]; /* -C pairs for both consumers */
    int n_cprops;
};

/* What the threads share. send_us[seq] is written before the produce call
 * and read by the consumers once the message came back (atomics: the
 * happens-before runs through the broker, which the compiler cannot see). */
struct shared {
    const struct opts *o;
    int64_t *send_us;     /* by seq; 0 = not sent */
    uint8_t *alerting;    /* by seq: 1 = on an exposed card */
    uint8_t *alerted;     /* by seq: alerts seen */
    int64_t *cw_us;       /* alert latencies (us), in arrival order */
    int64_t *pass_us;     /* pass-through latencies (us) */
    int64_t *pass_al_us;  /* pass-through of alerting seqs */
    int64_t *cw_by_seq;   /* alert latency by seq; -1 = none */
    int64_t *pass_by_seq; /* pass-through latency by seq; -1 = none */
    int64_t *relay_us;    /* relay (two hops) latencies of alerting seqs */
    long long relay_n, relay_sent;
    rd_kafka_t *relay_prod; /* the relay's producer, as cardwatch's */
    long long n_seq;      /* capacity of the by-seq arrays */
    long long cw_n, pass_n, pass_al_n;
    long long duplicates, unexpected, foreign, undecodable;
    long long probe_alerts;
    uint8_t *probe_seen;
    pthread_mutex_t mu;
    volatile int stop;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out)
{
    fputs("usage: latency --brokers B --topic T --alert-topics A1,A2,...\n"
          "               --exposed CARDS.csv --rate R --seconds S\n"
          "               [--exposed-share F] [--run ID] [--clean-prefix "
          "P]\n"
          "               [--seed N] [--probes N] [--timeout S] [-X "
          "key=value]...\n"
          "               [-C key=value]... (producer / consumers)\n"
          "               [--relay-topic R]\n"
          "Produces R transactions/s for S s (share F on exposed cards),\n"
          "measures produce -> alert (cardwatch) and produce -> plain\n"
          "consumer (pass-through) latency; with --relay-topic also a relay\n"
          "(a plain consumer that produces each transaction on an exposed\n"
          "card to R with cardwatch's producer settings, and a consumer of\n"
          "R): the two broker hops an alert takes, without cardwatch;\n"
          "prints one JSON line.\n",
          out);
}

/* Parses the seq out of "<run>-<seq>" or "<run>-p<i>" (probe). Returns
 * the seq (probes: PROBE_BASE + i), or -1 when id is not of this run. */
static long long seq_of(const char *run, const char *id, size_t len)
{
    size_t rl = strlen(run);
    if (len <= rl + 1 || memcmp(id, run, rl) != 0 || id[rl] != '-') {
        return -1;
    }
    size_t i = rl + 1;
    long long base = 0, v = 0;
    if (id[i] == 'p') {
        base = PROBE_BASE;
        i++;
    }
    if (i >= len) {
        return -1;
    }
    for (; i < len; i++) {
        if (id[i] < '0' || id[i] > '9' || v > PROBE_BASE) {
            return -1;
        }
        v = v * 10 + (id[i] - '0');
    }
    return base + v;
}

/* Reads "pan,expiry" lines (a header line is skipped). Returns the number
 * of cards, or -1 after printing the problem. */
static long read_cards(const char *path, struct gen_card **out)
{
    FILE *f = fopen(path, "r");
    char line[256];
    long n = 0, cap = 1024;
    struct gen_card *c = calloc((size_t)cap, sizeof(*c));
    if (f == NULL || c == NULL) {
        fprintf(stderr, "latency: %s: %s\n", path, strerror(errno));
        if (f != NULL) {
            fclose(f);
        }
        free(c);
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *comma = strchr(line, ',');
        size_t pl = comma != NULL ? (size_t)(comma - line) : 0;
        if (comma == NULL || pl < CARD_PAN_MIN || pl > CARD_PAN_MAX ||
            line[0] < '0' || line[0] > '9') {
            continue; /* header or blank */
        }
        if (n == cap) {
            struct gen_card *nc;
            if (cap >= MAX_CARDS ||
                (nc = realloc(c, (size_t)cap * 2 * sizeof(*c))) == NULL) {
                break;
            }
            c = nc;
            memset(c + cap, 0, (size_t)cap * sizeof(*c));
            cap *= 2;
        }
        memcpy(c[n].pan, line, pl);
        c[n].pan[pl] = '\0';
        memcpy(c[n].expiry, comma + 1, 4);
        c[n].expiry[4] = '\0';
        c[n].index = (uint32_t)n;
        c[n].exposed = 1;
        n++;
    }
    fclose(f);
    if (n == 0) {
        fprintf(stderr, "latency: %s: no cards\n", path);
        free(c);
        return -1;
    }
    *out = c;
    return n;
}

/* A consumer assigned every partition of topics at their high watermark.
 * Returns NULL after printing the problem. */
static rd_kafka_t *consumer_at_end(const struct opts *o, char *const *topics,
                                   int n_topics, const char *what)
{
    char errstr[512], group[96];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    snprintf(group, sizeof(group), "latency-%s-%ld", what, (long)getpid());
    const char *const props[] = {"bootstrap.servers",
                                 o->brokers,
                                 "group.id",
                                 group,
                                 "enable.auto.commit",
                                 "false",
                                 "enable.auto.offset.store",
                                 "false",
                                 "allow.auto.create.topics",
                                 "false",
                                 NULL};
    if (ktool_conf_set(conf, props, "latency") != 0 ||
        ktool_conf_set(conf, (const char *const *)o->cprops, "latency") != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "latency: %s consumer: %s\n", what, errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    parts = rd_kafka_topic_partition_list_new(64);
    for (int t = 0; t < n_topics; t++) {
        const rd_kafka_metadata_t *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[t], NULL);
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 ||
            md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "latency: topic %s: %s\n", topics[t],
                    rd_kafka_err2str(err ? err : md->topics[0].err));
            if (md != NULL) {
                rd_kafka_metadata_destroy(md);
            }
            goto err;
        }
        for (int p = 0; p < md->topics[0].partition_cnt; p++) {
            int64_t lo, hi;
            int32_t id = md->topics[0].partitions[p].id;
            /* A topic just created may not have its leader yet: retry
             * for up to 30 s. */
            for (int tries = 0; tries < 60; tries++) {
                err = rd_kafka_query_watermark_offsets(rk, topics[t], id, &lo,
                                                       &hi, 10000);
                if (err != RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION &&
                    err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE &&
                    err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
                    break;
                }
                usleep(500000);
            }
            if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                fprintf(stderr, "latency: %s [%d]: watermarks: %s\n", topics[t],
                        (int)id, rd_kafka_err2str(err));
                rd_kafka_metadata_destroy(md);
                goto err;
            }
            rd_kafka_topic_partition_list_add(parts, topics[t], id)->offset =
                hi;
        }
        rd_kafka_metadata_destroy(md);
    }
    if (rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "latency: %s consumer: assign failed\n", what);
        goto err;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return rk;
err:
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_destroy(rk);
    return NULL;
}

/* The alert consumer's handling of one message at arrival time t. */
static void on_alert(struct shared *s, const rd_kafka_message_t *m, int64_t t)
{
    Cardwatch__V1__Alert *a =
        cardwatch__v1__alert__unpack(NULL, m->len, m->payload);
    if (a == NULL || a->txn_id == NULL) {
        pthread_mutex_lock(&s->mu);
        s->undecodable++;
        pthread_mutex_unlock(&s->mu);
        if (a != NULL) {
            cardwatch__v1__alert__free_unpacked(a, NULL);
        }
        return;
    }
    long long seq = seq_of(s->o->run, a->txn_id, strlen(a->txn_id));
    cardwatch__v1__alert__free_unpacked(a, NULL);
    pthread_mutex_lock(&s->mu);
    if (seq < 0) {
        s->foreign++; /* another run's alert (an earlier step) */
    } else if (seq >= PROBE_BASE) {
        long long i = seq - PROBE_BASE;
        if (i < s->o->probes && !s->probe_seen[i]) {
            s->probe_seen[i] = 1;
            s->probe_alerts++;
        }
    } else if (seq >= s->n_seq || !s->alerting[seq]) {
        s->unexpected++;
    } else if (s->alerted[seq]++ > 0) {
        s->duplicates++;
    } else {
        int64_t sent = __atomic_load_n(&s->send_us[seq], __ATOMIC_ACQUIRE);
        s->cw_us[s->cw_n++] = t - sent;
        s->cw_by_seq[seq] = t - sent;
    }
    pthread_mutex_unlock(&s->mu);
}

/* The pass-through consumer's handling of one message at time t. */
static void on_txn(struct shared *s, const rd_kafka_message_t *m, int64_t t)
{
    long long seq = m->key != NULL
                        ? seq_of(s->o->run, (const char *)m->key, m->key_len)
                        : -1;
    if (seq < 0 || seq >= s->n_seq) {
        return; /* a probe or another run's */
    }
    int64_t sent = __atomic_load_n(&s->send_us[seq], __ATOMIC_ACQUIRE);
    pthread_mutex_lock(&s->mu);
    s->pass_us[s->pass_n++] = t - sent;
    s->pass_by_seq[seq] = t - sent;
    if (s->alerting[seq]) {
        s->pass_al_us[s->pass_al_n++] = t - sent;
    }
    pthread_mutex_unlock(&s->mu);
}

/* The relay's consumer: a transaction on an exposed card goes on to the
 * relay topic at once (what cardwatch does with its alert, minus
 * cardwatch). */
static void on_relay_in(struct shared *s, const rd_kafka_message_t *m,
                        int64_t t)
{
    (void)t;
    long long seq = m->key != NULL
                        ? seq_of(s->o->run, (const char *)m->key, m->key_len)
                        : -1;
    if (seq < 0 || seq >= s->n_seq ||
        __atomic_load_n(&s->send_us[seq], __ATOMIC_ACQUIRE) == 0 ||
        !s->alerting[seq]) {
        return; /* a probe, another run's, or a clean card's */
    }
    rd_kafka_resp_err_t err;
    do {
        err = rd_kafka_producev(
            s->relay_prod, RD_KAFKA_V_TOPIC(s->o->relay_topic),
            RD_KAFKA_V_KEY(m->key, m->key_len),
            RD_KAFKA_V_VALUE(m->payload, m->len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        rd_kafka_poll(s->relay_prod, err ? 1 : 0);
    } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
    if (err) {
        fprintf(stderr, "latency: relay produce: %s\n", rd_kafka_err2str(err));
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->relay_sent++;
    pthread_mutex_unlock(&s->mu);
}

/* The relay topic's consumer: produce call -> arrival after two hops. */
static void on_relay_out(struct shared *s, const rd_kafka_message_t *m,
                         int64_t t)
{
    long long seq = m->key != NULL
                        ? seq_of(s->o->run, (const char *)m->key, m->key_len)
                        : -1;
    if (seq < 0 || seq >= s->n_seq) {
        return;
    }
    int64_t sent = __atomic_load_n(&s->send_us[seq], __ATOMIC_ACQUIRE);
    pthread_mutex_lock(&s->mu);
    s->relay_us[s->relay_n++] = t - sent;
    pthread_mutex_unlock(&s->mu);
}

struct reader {
    struct shared *s;
    rd_kafka_t *rk;
    void (*fn)(struct shared *s, const rd_kafka_message_t *m, int64_t t);
    pthread_t th;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    while (!r->s->stop) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 50);
        int64_t t = now_us();
        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            r->fn(r->s, m, t);
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            fprintf(stderr, "latency: consume: %s\n",
                    rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

static long long delivered, failed;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        if (failed++ == 0) {
            fprintf(stderr, "latency: delivery failed: %s\n",
                    rd_kafka_err2str(m->err));
        }
    } else {
        delivered++;
    }
}

/* Produces one transaction with txn_id id; records its produce-call time
 * in *sent_us. Returns 0, or -1 after printing the problem. */
static int produce_one(rd_kafka_t *rk, const char *topic, struct txn *t,
                       const char *id, int64_t *sent_us)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    rd_kafka_resp_err_t err;
    snprintf(t->txn_id, sizeof(t->txn_id), "%s", id);
    int64_t now = now_us();
    t->event_time_ms = now / 1000;
    if (txn_encode_protobuf(t, &buf, &len) != 0) {
        fprintf(stderr, "latency: out of memory\n");
        return -1;
    }
    __atomic_store_n(sent_us, now, __ATOMIC_RELEASE);
    for (;;) {
        err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(id, strlen(id)),
            RD_KAFKA_V_VALUE(buf, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
            RD_KAFKA_V_TIMESTAMP(t->event_time_ms), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            break;
        }
        rd_kafka_poll(rk, 1);
    }
    if (err) {
        free(buf);
        fprintf(stderr, "latency: produce: %s\n", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Prints "name":{"n":..,"p50":..,"p99":..,"p999":..,"max":..} in ms
 * (nearest rank; sorts v). */
static void print_stats(const char *name, int64_t *v, long long n)
{
    printf("\"%s\":{\"n\":%lld", name, n);
    if (n > 0) {
        const double q[] = {0.50, 0.99, 0.999};
        const char *qn[] = {"p50", "p99", "p999"};
        qsort(v, (size_t)n, sizeof(*v), cmp_i64);
        for (int i = 0; i < 3; i++) {
            long long k = (long long)(q[i] * (double)n + 0.999999) - 1;
            k = k < 0 ? 0 : (k >= n ? n - 1 : k);
            printf(",\"%s\":%.3f", qn[i], (double)v[k] / 1000.0);
        }
        printf(",\"max\":%.3f", (double)v[n - 1] / 1000.0);
    }
    printf("}");
}

/* The median (ms) of by_seq[from..to) over the seqs that have a value;
 * -1 when none has. */
static double median_of(const int64_t *by_seq, long long from, long long to)
{
    long long n = 0;
    int64_t *v = malloc((size_t)(to - from + 1) * sizeof(*v));
    if (v == NULL) {
        return -1;
    }
    for (long long i = from; i < to; i++) {
        if (by_seq[i] >= 0) {
            v[n++] = by_seq[i];
        }
    }
    double m = -1;
    if (n > 0) {
        qsort(v, (size_t)n, sizeof(*v), cmp_i64);
        m = (double)v[n / 2] / 1000.0;
    }
    free(v);
    return m;
}

static int parse_args(int argc, char **argv, struct opts *o,
                      rd_kafka_conf_t *pconf)
{
    static char topics_buf[1024];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (v == NULL) {
            fprintf(stderr, "latency: %s: value missing\n", a);
            return -1;
        }
        i++;
        if (!strcmp(a, "--brokers")) {
            o->brokers = v;
        } else if (!strcmp(a, "--topic")) {
            o->topic = v;
        } else if (!strcmp(a, "--alert-topics")) {
            snprintf(topics_buf, sizeof(topics_buf), "%s", v);
            for (char *sp, *t = strtok_r(topics_buf, ",", &sp);
                 t != NULL && o->n_alert_topics < MAX_TOPICS;
                 t = strtok_r(NULL, ",", &sp)) {
                o->alert_topics[o->n_alert_topics++] = t;
            }
        } else if (!strcmp(a, "--exposed")) {
            o->exposed = v;
        } else if (!strcmp(a, "--rate")) {
            o->rate = atof(v);
        } else if (!strcmp(a, "--seconds")) {
            o->seconds = atof(v);
        } else if (!strcmp(a, "--exposed-share")) {
            o->share = atof(v);
        } else if (!strcmp(a, "--relay-topic")) {
            o->relay_topic = v;
        } else if (!strcmp(a, "--run")) {
            o->run = v;
        } else if (!strcmp(a, "--clean-prefix")) {
            o->clean_prefix = v;
        } else if (!strcmp(a, "--seed")) {
            o->seed = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--probes")) {
            o->probes = atoi(v);
        } else if (!strcmp(a, "--timeout")) {
            o->timeout_s = atof(v);
        } else if (!strcmp(a, "-C")) {
            char *eq = strchr(argv[i], '=');
            if (eq == NULL || o->n_cprops + 2 >= 2 * MAX_TOPICS) {
                fprintf(stderr, "latency: -C wants key=value\n");
                return -1;
            }
            *eq = '\0';
            o->cprops[o->n_cprops++] = argv[i];
            o->cprops[o->n_cprops++] = eq + 1;
        } else if (!strcmp(a, "-X")) {
            if (ktool_conf_x(pconf, argv[i], "latency") != 0) {
                return -1;
            }
        } else {
            fprintf(stderr, "latency: unknown option '%s'\n", a);
            return -1;
        }
    }
    if (o->brokers == NULL || o->topic == NULL || o->n_alert_topics == 0 ||
        o->exposed == NULL || o->rate <= 0 || o->seconds <= 0 || o->share < 0 ||
        o->share > 1 || o->probes < 1 || o->timeout_s <= 0) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Waits until done(s) or the deadline; returns 1 when done. */
static int wait_for(struct shared *s, int (*done)(struct shared *),
                    double deadline)
{
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int d = done(s);
        pthread_mutex_unlock(&s->mu);
        if (d) {
            return 1;
        }
        if (mono_s() > deadline) {
            return 0;
        }
        usleep(2000);
    }
}

static int probes_done(struct shared *s)
{
    return s->probe_alerts >= s->o->probes;
}

static long long want_alerts, want_msgs;

static int all_done(struct shared *s)
{
    return s->cw_n >= want_alerts && s->pass_n >= want_msgs &&
           (s->o->relay_topic == NULL || s->relay_n >= want_alerts);
}

/* The relay's producer: cardwatch's alert producer settings
 * (sink_kafka.c). Returns NULL after printing the problem. */
static rd_kafka_t *relay_producer(const struct opts *o)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *const props[] = {"bootstrap.servers", o->brokers,
                                 "enable.idempotence", "true",
                                 "acks", "all",
                                 "linger.ms", "5",
                                 "batch.num.messages", "10000",
                                 NULL};
    if (ktool_conf_set(conf, props, "latency") != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk =
        rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "latency: relay producer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

int main(int argc, char **argv)
{
    char run_default[48];
    struct opts o = {.share = 0.01,
                     .seed = 11,
                     .probes = 20,
                     .timeout_s = 60,
                     .clean_prefix = "411111"};
    struct shared s = {.o = &o};
    struct reader rd_alert = {.s = &s, .fn = on_alert};
    struct reader rd_pass = {.s = &s, .fn = on_txn};
    struct reader rd_rin = {.s = &s, .fn = on_relay_in};
    struct reader rd_rout = {.s = &s, .fn = on_relay_out};
    struct gen_card *cards = NULL;
    struct gen *g = NULL, *gp = NULL;
    rd_kafka_t *prod = NULL;
    rd_kafka_conf_t *pconf = rd_kafka_conf_new();
    char errstr[512];
    int rc = 2;
    snprintf(run_default, sizeof(run_default), "L%ld-%ld", (long)getpid(),
             (long)time(NULL));
    o.run = run_default;
    rd_kafka_conf_set_dr_msg_cb(pconf, dr_cb);
    /* The producer an application would use for low latency; -X changes
     * it (for both columns alike). */
    const char *const pprops[] = {
        "enable.idempotence",           "true",    "linger.ms", "1",
        "queue.buffering.max.messages", "1000000", NULL};
    if (ktool_conf_set(pconf, pprops, "latency") != 0 ||
        parse_args(argc, argv, &o, pconf) != 0 ||
        ktool_conf_set(
            pconf, (const char *const[]){"bootstrap.servers", o.brokers, NULL},
            "latency") != 0) {
        rd_kafka_conf_destroy(pconf);
        return 2;
    }
    long n_cards = read_cards(o.exposed, &cards);
    if (n_cards < 0) {
        rd_kafka_conf_destroy(pconf);
        return 2;
    }
    const char *prefixes[] = {o.clean_prefix};
    struct gen_opts go = {.seed = o.seed,
                          .prefixes = prefixes,
                          .n_prefixes = 1,
                          .exposed = cards,
                          .n_exposed = (size_t)n_cards,
                          .exposed_share = o.share,
                          .start_ms = 1700000000000LL,
                          /* the generator's clock runs as in make bench
                           * (30 days over 2,000,000 events): its misuse
                           * scenarios end and the exposed share holds */
                          .step_ms = 1296};
    g = gen_new(&go);
    go.exposed_share = 1.0;
    go.seed = o.seed + 1;
    gp = gen_new(&go); /* probes (its exposed-card transactions only) */
    s.n_seq = (long long)(o.rate * o.seconds) + 1;
    s.send_us = calloc((size_t)s.n_seq, sizeof(*s.send_us));
    s.alerting = calloc((size_t)s.n_seq, 1);
    s.alerted = calloc((size_t)s.n_seq, 1);
    s.cw_us = calloc((size_t)s.n_seq, sizeof(int64_t));
    s.pass_us = calloc((size_t)s.n_seq, sizeof(int64_t));
    s.pass_al_us = calloc((size_t)s.n_seq, sizeof(int64_t));
    s.relay_us = calloc((size_t)s.n_seq, sizeof(int64_t));
    s.cw_by_seq = malloc((size_t)s.n_seq * sizeof(int64_t));
    s.pass_by_seq = malloc((size_t)s.n_seq * sizeof(int64_t));
    for (long long i = 0; s.cw_by_seq && s.pass_by_seq && i < s.n_seq; i++) {
        s.cw_by_seq[i] = s.pass_by_seq[i] = -1;
    }
    s.probe_seen = calloc((size_t)o.probes, 1);
    pthread_mutex_init(&s.mu, NULL);
    if (g == NULL || gp == NULL || s.send_us == NULL || !s.alerting ||
        !s.alerted || !s.cw_us || !s.pass_us || !s.pass_al_us || !s.relay_us ||
        !s.cw_by_seq ||
        !s.pass_by_seq || !s.probe_seen) {
        fprintf(stderr, "latency: bad --clean-prefix or out of memory\n");
        rd_kafka_conf_destroy(pconf);
        goto out;
    }
    prod = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, errstr, sizeof(errstr));
    if (prod == NULL) {
        fprintf(stderr, "latency: producer: %s\n", errstr);
        rd_kafka_conf_destroy(pconf);
        goto out;
    }
    char *ttopic[] = {(char *)o.topic};
    rd_alert.rk =
        consumer_at_end(&o, o.alert_topics, o.n_alert_topics, "alerts");
    rd_pass.rk = rd_alert.rk ? consumer_at_end(&o, ttopic, 1, "pass") : NULL;
    if (rd_pass.rk == NULL) {
        goto out;
    }
    if (o.relay_topic != NULL) {
        char *rtopic[] = {(char *)o.relay_topic};
        s.relay_prod = relay_producer(&o);
        rd_rin.rk = s.relay_prod ? consumer_at_end(&o, ttopic, 1, "relay-in")
                                 : NULL;
        rd_rout.rk =
            rd_rin.rk ? consumer_at_end(&o, rtopic, 1, "relay-out") : NULL;
        if (rd_rout.rk == NULL) {
            goto out;
        }
        pthread_create(&rd_rin.th, NULL, reader_main, &rd_rin);
        pthread_create(&rd_rout.th, NULL, reader_main, &rd_rout);
    }
    pthread_create(&rd_alert.th, NULL, reader_main, &rd_alert);
    pthread_create(&rd_pass.th, NULL, reader_main, &rd_pass);

    /* Probes: cardwatch is up, joined and turning transactions into
     * alerts before anything is measured. */
    for (int i = 0; i < o.probes; i++) {
        struct txn t;
        char key[16], id[80];
        int bad;
        int64_t dummy;
        do { /* the next transaction on an exposed card */
            gen_next(gp, &t, key, &bad);
        } while (key[0] != 'x' || bad);
        snprintf(id, sizeof(id), "%s-p%d", o.run, i);
        if (produce_one(prod, o.topic, &t, id, &dummy) != 0) {
            goto stop;
        }
    }
    rd_kafka_flush(prod, 10000);
    if (!wait_for(&s, probes_done, mono_s() + o.timeout_s)) {
        fprintf(stderr,
                "latency: FAILED: %lld of %d probe alerts within %.0f s "
                "(is cardwatch run consuming %s?)\n",
                s.probe_alerts, o.probes, o.timeout_s, o.topic);
        rc = 1;
        goto stop;
    }

    /* The measured part: seq i is due at t0 + i / rate. */
    long long n = s.n_seq - 1, sent = 0, alerting = 0;
    double t0 = mono_s(), t_end = t0;
    while (sent < n) {
        double el = mono_s() - t0;
        long long due = (long long)(el * o.rate) + 1;
        if (due > n) {
            due = n;
        }
        if (sent >= due) {
            double wait = ((double)sent / o.rate) - el;
            struct timespec d = {0,
                                 (long)(wait > 0.0005 ? 500000 : wait * 1e9)};
            if (d.tv_nsec > 0) {
                nanosleep(&d, NULL);
            }
            rd_kafka_poll(prod, 0);
            continue;
        }
        while (sent < due) {
            struct txn t;
            char key[16], id[80];
            int bad;
            gen_next(g, &t, key, &bad);
            snprintf(id, sizeof(id), "%s-%lld", o.run, sent);
            s.alerting[sent] = key[0] == 'x' && !bad;
            alerting += s.alerting[sent];
            if (produce_one(prod, o.topic, &t, id, &s.send_us[sent]) != 0) {
                goto stop;
            }
            sent++;
            if (sent % 1000 == 0) {
                rd_kafka_poll(prod, 0);
            }
        }
    }
    t_end = mono_s();
    if (rd_kafka_flush(prod, (int)(o.timeout_s * 1000)) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "latency: flush timed out\n");
    }
    want_alerts = alerting;
    want_msgs = sent;
    int ok = wait_for(&s, all_done, mono_s() + o.timeout_s);
    s.stop = 1;
    pthread_join(rd_alert.th, NULL);
    pthread_join(rd_pass.th, NULL);
    rd_alert.th = rd_pass.th = 0;
    if (rd_rin.th) {
        pthread_join(rd_rin.th, NULL);
        pthread_join(rd_rout.th, NULL);
        rd_rin.th = rd_rout.th = 0;
    }

    long long missing = alerting - s.cw_n;
    printf("{\"target\":%.0f,\"rate\":%.0f,\"sent\":%lld,\"delivered\":%lld,"
           "\"alerting\":%lld,\"alerts\":%lld,\"missing\":%lld,"
           "\"duplicates\":%lld,\"unexpected\":%lld,\"undecodable\":%lld,"
           "\"pass_received\":%lld,",
           o.rate, (double)sent / (t_end - t0), sent, delivered, alerting,
           s.cw_n, missing, s.duplicates, s.unexpected, s.undecodable,
           s.pass_n);
    print_stats("cardwatch", s.cw_us, s.cw_n);
    printf(",");
    print_stats("pass", s.pass_us, s.pass_n);
    printf(",");
    print_stats("pass_alerting", s.pass_al_us, s.pass_al_n);
    if (o.relay_topic != NULL) {
        printf(",\"relay_received\":%lld,", s.relay_n);
        print_stats("relay", s.relay_us, s.relay_n);
    }
    /* Falling behind shows as latency that grows through the step: the
     * medians of the first and the last fifth of the transactions sent. */
    printf(",\"cardwatch_first_p50\":%.3f,\"cardwatch_last_p50\":%.3f,"
           "\"pass_first_p50\":%.3f,\"pass_last_p50\":%.3f}\n",
           median_of(s.cw_by_seq, 0, sent / 5),
           median_of(s.cw_by_seq, sent - sent / 5, sent),
           median_of(s.pass_by_seq, 0, sent / 5),
           median_of(s.pass_by_seq, sent - sent / 5, sent));
    fflush(stdout);
    if (!ok || missing != 0 || s.unexpected || s.duplicates || failed) {
        fprintf(stderr,
                "latency: FAILED: %lld of %lld alerts arrived (%lld "
                "missing), %lld unexpected, %lld duplicate(s); %lld of "
                "%lld transactions passed through; %lld delivery "
                "failure(s)\n",
                s.cw_n, alerting, missing, s.unexpected, s.duplicates, s.pass_n,
                sent, failed);
        rc = 1;
    } else {
        rc = 0;
    }
stop:
    s.stop = 1;
    if (rd_alert.th) {
        pthread_join(rd_alert.th, NULL);
    }
    if (rd_pass.th) {
        pthread_join(rd_pass.th, NULL);
    }
    if (rd_rin.th) {
        pthread_join(rd_rin.th, NULL);
    }
    if (rd_rout.th) {
        pthread_join(rd_rout.th, NULL);
    }
out:
    if (rd_alert.rk) {
        rd_kafka_consumer_close(rd_alert.rk);
        rd_kafka_destroy(rd_alert.rk);
    }
    if (rd_pass.rk) {
        rd_kafka_consumer_close(rd_pass.rk);
        rd_kafka_destroy(rd_pass.rk);
    }
    struct reader *relays[] = {&rd_rin, &rd_rout};
    for (size_t i = 0; i < 2; i++) {
        if (relays[i]->rk) {
            rd_kafka_consumer_close(relays[i]->rk);
            rd_kafka_destroy(relays[i]->rk);
        }
    }
    if (s.relay_prod) {
        rd_kafka_flush(s.relay_prod, 5000);
        rd_kafka_destroy(s.relay_prod);
    }
    if (prod) {
        rd_kafka_flush(prod, 5000);
        rd_kafka_destroy(prod);
    }
    gen_destroy(g);
    gen_destroy(gp);
    if (cards != NULL) {
        memset(cards, 0, (size_t)n_cards * sizeof(*cards));
    }
    free(cards);
    free(s.send_us);
    free(s.alerting);
    free(s.alerted);
    free(s.cw_us);
    free(s.pass_us);
    free(s.pass_al_us);
    free(s.relay_us);
    free(s.cw_by_seq);
    free(s.pass_by_seq);
    free(s.probe_seen);
    return rc;
}
