/*
 * consume_all - dump every message of a topic, from the beginning to the end
 * of every partition, in a binary-safe framing (used by the e2e harness).
 *
 *   consume_all --brokers B --topic T [--expect N] [--timeout S] [-X k=v]...
 *
 * Without --expect: reads every partition from its first offset until each
 * partition reported end-of-partition, then exits 0. An unknown topic gives no
 * output and exit 0 (a note on stderr).
 * With --expect N: waits (up to --timeout, default 30 s) until at least N
 * messages were read, then still reads on until every partition is at its
 * end, so the output holds everything present (duplicates included). Exits 3
 * on timeout after writing what it read.
 *
 * Partitions are assigned directly (no group join, no offset commits); a
 * unique group.id is set only because rd_kafka_assign() needs one.
 *
 * Output, per message, integers big-endian, NULL = length 0xFFFFFFFF:
 *   i32 partition, i64 offset, i64 timestamp (ms, -1 if none),
 *   u32 key_len, key, u32 value_len, value,
 *   u32 header_count, per header: u32 name_len, name, u32 value_len, value
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "ktool.h"

#define NULL_LEN 0xFFFFFFFFu
#define BATCH 1000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void put_u32(uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, stdout);
}

static void put_u64(uint64_t v)
{
    put_u32((uint32_t)(v >> 32));
    put_u32((uint32_t)v);
}

static void put_field(const void *p, size_t n, int isnull)
{
    if (isnull) {
        put_u32(NULL_LEN);
        return;
    }
    put_u32((uint32_t)n);
    if (n)
        fwrite(p, 1, n, stdout);
}

static void write_message(const rd_kafka_message_t *m)
{
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    rd_kafka_headers_t *hdrs = NULL;
    size_t i, cnt = 0;
    put_u32((uint32_t)m->partition);
    put_u64((uint64_t)m->offset);
    put_u64((uint64_t)(tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts));
    put_field(m->key, m->key_len, m->key == NULL);
    put_field(m->payload, m->len, m->payload == NULL);
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
        cnt = rd_kafka_header_cnt(hdrs);
    put_u32((uint32_t)cnt);
    for (i = 0; i < cnt; i++) {
        const char *name;
        const void *val;
        size_t vsize;
        rd_kafka_header_get_all(hdrs, i, &name, &val, &vsize);
        put_field(name, strlen(name), 0);
        put_field(val, vsize, val == NULL);
    }
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
        "usage: consume_all --brokers B --topic T [--expect N] [--timeout S]\n"
        "                   [-X key=value]...\n"
        "Writes every message (beginning to end of every partition) to "
        "stdout:\n"
        "i32be partition, i64be offset, i64be timestamp, u32be key_len, key,\n"
        "u32be value_len, value, u32be header_count, per header u32be "
        "name_len,\n"
        "name, u32be value_len, value (0xFFFFFFFF = NULL).\n"
        "--expect N: wait until at least N messages (then read on to the "
        "end);\n"
        "exit 3 on timeout (default 30 s).\n",
        out);
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *topic = NULL;
    long long expect = -1;
    double timeout_s = 30;
    char errstr[512], group[128];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_message_t *msgs[BATCH];
    char *eof = NULL;
    int nparts = 0, neof = 0;
    long long count = 0;
    double deadline;
    int rc = 0;
    int i;

    snprintf(group, sizeof(group), "consume_all-%ld-%ld", (long)getpid(),
             (long)time(NULL));
    rd_kafka_conf_set_log_cb(conf, log_cb);
    /* fetch.wait.max.ms: the end of a partition is seen one fetch wait
     * after the last message, so keep that short (default 500 ms) */
    const char *const props[] = {
        "group.id", group,
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "enable.partition.eof", "true",
        "auto.offset.reset", "earliest",
        "allow.auto.create.topics", "false",
        "fetch.wait.max.ms", "50",
        NULL};
    if (ktool_conf_set(conf, props, "consume_all") != 0) {
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
        } else if (!strcmp(a, "-X") && i + 1 < argc) {
            if (ktool_conf_x(conf, argv[++i], "consume_all") != 0) {
                rd_kafka_conf_destroy(conf);
                return 2;
            }
        } else {
            fprintf(stderr, "consume_all: unknown or incomplete option '%s'\n",
                    a);
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
        fprintf(stderr, "consume_all: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "consume_all: rd_kafka_new: %s\n", errstr);
        return 2;
    }
    rd_kafka_poll_set_consumer(rk);
    deadline = now_s() + timeout_s;

    /* Find the partitions; with --expect, wait for the topic to appear. */
    for (;;) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
        rd_kafka_topic_destroy(rkt);
        if (!err && md->topic_cnt == 1 && !md->topics[0].err &&
            md->topics[0].partition_cnt > 0)
            break;
        if (!err) {
            err = md->topic_cnt == 1 ? md->topics[0].err
                                     : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
            rd_kafka_metadata_destroy(md);
            md = NULL;
        }
        if (expect < 0 && err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            fprintf(stderr, "consume_all: topic %s does not exist\n", topic);
            goto out;
        }
        if (now_s() > deadline) {
            fprintf(stderr, "consume_all: metadata for %s: %s\n", topic,
                    rd_kafka_err2str(err));
            rc = 3;
            goto out;
        }
        usleep(100 * 1000);
    }
    nparts = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(nparts);
    for (i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(parts, topic,
                                          md->topics[0].partitions[i].id)
            ->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    eof = calloc((size_t)nparts, 1);
    if (!eof) {
        rc = 2;
        goto out;
    }
    {
        rd_kafka_resp_err_t err = rd_kafka_assign(rk, parts);
        if (err) {
            fprintf(stderr, "consume_all: assign: %s\n", rd_kafka_err2str(err));
            rc = 2;
            goto out;
        }
    }

    q = rd_kafka_queue_get_consumer(rk);
    while (!(neof == nparts && count >= expect)) {
        ssize_t n, j;
        if (now_s() > deadline) {
            fprintf(
                stderr,
                "consume_all: timeout: read %lld message(s) (expected %lld), "
                "%d of %d partition(s) at end\n",
                count, expect, neof, nparts);
            rc = 3;
            break;
        }
        n = rd_kafka_consume_batch_queue(q, 100, msgs, BATCH);
        if (n < 0) {
            fprintf(stderr, "consume_all: consume: %s\n",
                    rd_kafka_err2str(rd_kafka_last_error()));
            rc = 2;
            break;
        }
        for (j = 0; j < n; j++) {
            rd_kafka_message_t *m = msgs[j];
            int p = m->partition;
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                if (p >= 0 && p < nparts && !eof[p]) {
                    eof[p] = 1;
                    neof++;
                }
            } else if (m->err) {
                fprintf(stderr, "consume_all: %s [%d]: %s\n", topic, p,
                        rd_kafka_message_errstr(m));
            } else {
                write_message(m);
                count++;
                if (p >= 0 && p < nparts && eof[p]) {
                    eof[p] = 0;
                    neof--;
                }
            }
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_queue_destroy(q);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "consume_all: write error on stdout\n");
        rc = 2;
    }
    rd_kafka_assign(rk, NULL);

out:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    free(eof);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}
