/*
 * plain_consumer - the benchmark baseline: the fastest plain librdkafka
 * consumer we know for this version, doing nothing but counting.
 *
 *   plain_consumer --brokers B --topic T [--expect N] [--timeout S] [-X k=v]...
 *
 * Reads every partition of T from its first offset. All partitions are
 * assigned directly from metadata (rd_kafka_assign: no group join, no
 * rebalance, no offset commits; a unique group.id is set only because
 * assign needs one). Messages are taken with rd_kafka_consume_batch_queue in
 * batches of 1000 (enable.partition.eof=true).
 * Stops when every partition has reported end-of-partition, or, with
 * --expect N, once N messages were read (EOF is then ignored).
 * Prints one JSON line:
 *   {"messages":N,"bytes":N,"seconds":F,"rate":F}
 * bytes = sum of value (payload) sizes; seconds from assign to the last
 * batch that held messages (the final end-of-partition wait, up to
 * fetch.wait.max.ms, is not counted); rate = messages / seconds. Exit 0, or 3
 * on timeout (JSON printed anyway), 2 on errors.
 *
 * With --relay-topic R [--relay-bytes N] it is the Kafka half of an alert
 * path and nothing else: every message read is produced at once to R
 * (same key; its own value, or N bytes), by a producer with cardwatch's
 * alert producer settings (idempotent, acks=all, linger.ms=5, batches of
 * 10,000; -P key=value sets more), seconds then run until every record
 * is acknowledged, and the JSON adds "relayed":N (records the broker
 * acknowledged). make bench's exposed-heavy rows print it beside
 * cardwatch: an upper bound for events that each raise an alert.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "ktool.h"

#define BATCH 1000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Drops the AUTOCREATE warning the 2.0.2 client prints against the mock
 * cluster on every run ("allow.auto.create.topics=false not supported by
 * broker"); everything else goes to stderr as usual. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
    if (!strcmp(fac, "AUTOCREATE"))
        return;
    fprintf(stderr, "%%%d|%s|%s| %s\n", level, fac,
            rk ? rd_kafka_name(rk) : "-", buf);
}

static void usage(FILE *out)
{
    fputs(
        "usage: plain_consumer --brokers B --topic T [--expect N] [--timeout "
        "S]\n"
        "                      [--relay-topic R [--relay-bytes N] "
        "[-P key=value]...]\n"
        "                      [-X key=value]...\n"
        "Reads T from the beginning to the end of every partition (or until N\n"
        "messages with --expect) and prints\n"
        "{\"messages\":N,\"bytes\":N,\"seconds\":F,\"rate\":F}. Default "
        "timeout 300 s. --relay-topic: each message is also produced to R\n"
        "(its value, or N bytes) and the time runs until all are acknowledged."
        "\n",
        out);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    /* Never called with direct assignment; present because
     * consume_batch_queue is only safe with a rebalance_cb set. */
    (void)opaque;
    rd_kafka_assign(rk,
                    err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? parts : NULL);
}

/* Counts a failed delivery in *op (the producer's opaque). */
static void relay_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *op)
{
    (void)rk;
    if (m->err) {
        fprintf(stderr, "plain_consumer: relay delivery: %s\n",
                rd_kafka_err2str(m->err));
        ++*(long long *)op;
    }
}

/* The relay's producer: cardwatch's alert producer settings (sink_kafka.c);
 * failed deliveries are counted in *failed. NULL after saying why. */
static rd_kafka_t *relay_new(const char *brokers, long long *failed,
                             char **pprops, int npprops)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    const char *const props[] = {
        "bootstrap.servers", brokers,
        "enable.idempotence", "true",
        "acks", "all",
        "linger.ms", "5",
        "batch.num.messages", "10000",
        "queue.buffering.max.messages", "500000",
        "message.timeout.ms", "300000",
        NULL};
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_dr_msg_cb(conf, relay_dr);
    rd_kafka_conf_set_opaque(conf, failed);
    if (ktool_conf_set(conf, props, "plain_consumer") != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (int i = 0; i < npprops; i++) {
        if (ktool_conf_x(conf, pprops[i], "plain_consumer") != 0) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk)
        fprintf(stderr, "plain_consumer: relay producer: %s\n", errstr);
    return rk;
}

/* Produces one record of m's key and (relay_bytes ? pad : m's value) to
 * topic, waiting on a full queue. 0, or -1 after saying why. */
static int relay_one(rd_kafka_t *prod, const char *topic,
                     const rd_kafka_message_t *m, const char *pad,
                     size_t relay_bytes)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            prod, RD_KAFKA_V_TOPIC(topic),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(m->key, m->key_len),
            RD_KAFKA_V_VALUE(relay_bytes ? (void *)pad : m->payload,
                             relay_bytes ? relay_bytes : m->len),
            RD_KAFKA_V_END);
        if (!err)
            return 0;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "plain_consumer: relay to %s: %s\n", topic,
                    rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(prod, 10);
    }
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *topic = NULL, *relay_topic = NULL;
    rd_kafka_t *relay = NULL;
    char *pad = NULL;
    size_t relay_bytes = 0;
    char *pprops[16];
    int npprops = 0;
    long long relay_failed = 0, not_sent = 0, relayed = 0;
    long long expect = -1;
    double timeout_s = 300;
    char errstr[512], group[128];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_topic_t *rkt;
    rd_kafka_resp_err_t err;
    rd_kafka_message_t *msgs[BATCH];
    char *eof;
    int nparts, neof = 0;
    long long count = 0, bytes = 0;
    double t0, t1, deadline, secs;
    int rc = 0;
    int i;

    snprintf(group, sizeof(group), "plain_consumer-%ld-%ld", (long)getpid(),
             (long)time(NULL));
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    const char *const props[] = {
        "group.id", group,
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "enable.partition.eof", "true",
        "auto.offset.reset", "earliest",
        "allow.auto.create.topics", "false",
        NULL};
    if (ktool_conf_set(conf, props, "plain_consumer") != 0) {
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            rd_kafka_conf_destroy(conf);
            return 0;
        } else if (!strcmp(a, "--brokers") && i + 1 < argc) {
            brokers = argv[++i];
        } else if (!strcmp(a, "--topic") && i + 1 < argc) {
            topic = argv[++i];
        } else if (!strcmp(a, "--expect") && i + 1 < argc) {
            expect = atoll(argv[++i]);
        } else if (!strcmp(a, "--timeout") && i + 1 < argc) {
            timeout_s = atof(argv[++i]);
        } else if (!strcmp(a, "--relay-topic") && i + 1 < argc) {
            relay_topic = argv[++i];
        } else if (!strcmp(a, "--relay-bytes") && i + 1 < argc) {
            relay_bytes = (size_t)atol(argv[++i]);
        } else if (!strcmp(a, "-P") && i + 1 < argc && npprops < 16) {
            pprops[npprops++] = argv[++i];
        } else if (!strcmp(a, "-X") && i + 1 < argc) {
            if (ktool_conf_x(conf, argv[++i], "plain_consumer") != 0) {
                rd_kafka_conf_destroy(conf);
                return 2;
            }
        } else {
            fprintf(stderr,
                    "plain_consumer: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            rd_kafka_conf_destroy(conf);
            return 2;
        }
    }
    if (!brokers || !topic || timeout_s <= 0) {
        usage(stderr);
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr,
                          sizeof(errstr))) {
        fprintf(stderr, "plain_consumer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    if (relay_topic) {
        relay = relay_new(brokers, &relay_failed, pprops, npprops);
        pad = calloc(relay_bytes ? relay_bytes : 1, 1);
        if (!relay || !pad) {
            if (relay)
                rd_kafka_destroy(relay);
            free(pad);
            rd_kafka_conf_destroy(conf);
            return 2;
        }
        memset(pad, 'a', relay_bytes);
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "plain_consumer: rd_kafka_new: %s\n", errstr);
        return 2;
    }
    rd_kafka_poll_set_consumer(rk);

    rkt = rd_kafka_topic_new(rk, topic, NULL);
    err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (!err && (md->topic_cnt != 1 || md->topics[0].err ||
                 md->topics[0].partition_cnt == 0)) {
        err = md->topic_cnt == 1 && md->topics[0].err
                  ? md->topics[0].err
                  : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        rd_kafka_metadata_destroy(md);
    }
    if (err) {
        fprintf(stderr, "plain_consumer: metadata for %s: %s\n", topic,
                rd_kafka_err2str(err));
        rd_kafka_destroy(rk);
        return 2;
    }
    nparts = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(nparts);
    for (i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(parts, topic,
                                          md->topics[0].partitions[i].id)
            ->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    eof = calloc((size_t)nparts, 1);

    t0 = t1 = now_s();
    deadline = t0 + timeout_s;
    err = rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (err || !eof) {
        fprintf(stderr, "plain_consumer: assign: %s\n", rd_kafka_err2str(err));
        free(eof);
        rd_kafka_destroy(rk);
        return 2;
    }
    q = rd_kafka_queue_get_consumer(rk);
    while (expect >= 0 ? count < expect : neof < nparts) {
        ssize_t n, j;
        int got;
        if (now_s() > deadline) {
            fprintf(stderr,
                    "plain_consumer: timeout after %.0f s: %lld message(s), "
                    "%d of %d partition(s) at end\n",
                    timeout_s, count, neof, nparts);
            rc = 3;
            break;
        }
        n = rd_kafka_consume_batch_queue(q, 100, msgs, BATCH);
        if (n < 0) {
            fprintf(stderr, "plain_consumer: consume: %s\n",
                    rd_kafka_err2str(rd_kafka_last_error()));
            rc = 2;
            break;
        }
        got = 0;
        for (j = 0; j < n; j++) {
            rd_kafka_message_t *m = msgs[j];
            if (!m->err) {
                got = 1;
                count++;
                bytes += (long long)m->len;
                if (relay) {
                    if (relay_one(relay, relay_topic, m, pad, relay_bytes))
                        not_sent++;
                    else
                        relayed++;
                }
            } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                if (m->partition >= 0 && m->partition < nparts &&
                    !eof[m->partition]) {
                    eof[m->partition] = 1;
                    neof++;
                }
            } else {
                fprintf(stderr, "plain_consumer: %s [%d]: %s\n", topic,
                        (int)m->partition, rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
        }
        if (relay)
            rd_kafka_poll(relay, 0);
        if (got)
            t1 = now_s();
    }
    if (relay) {
        if (rd_kafka_flush(relay, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "plain_consumer: relay: not all acknowledged\n");
            rc = rc ? rc : 3;
        }
        t1 = now_s();
        relayed -= relay_failed; /* produced, then refused by the broker */
        if ((relay_failed || not_sent) && !rc)
            rc = 2;
    }
    secs = t1 - t0;
    printf("{\"messages\":%lld,\"bytes\":%lld,\"seconds\":%.6f,\"rate\":%.1f",
           count, bytes, secs, secs > 0 ? (double)count / secs : 0.0);
    if (relay)
        printf(",\"relayed\":%lld", relayed);
    printf("}\n");
    fflush(stdout);
    rd_kafka_queue_destroy(q);
    rd_kafka_assign(rk, NULL);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (relay)
        rd_kafka_destroy(relay);
    free(pad);
    free(eof);
    return rc;
}
