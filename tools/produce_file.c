/*
 * produce_file - produce length-delimited records from stdin to a Kafka topic
 * (binary-safe; used by the end-to-end harness and scripts).
 *
 *   produce_file --brokers B --topic T [--partition N] [--headers]
 *                [--timestamps] [--timeout S] [--transactional ID]
 *                [-X key=value]... < records
 *
 * Record framing (all integers big-endian, NULL = length 0xFFFFFFFF):
 *   with --timestamps first:
 *   i64 timestamp_ms              the message timestamp (CreateTime) in ms
 *                                 since the epoch; 0 = the current time
 *                                 (librdkafka's "not set"); negative is an
 *                                 input error
 *   u32 key_len,   key bytes      (NULL: no key)
 *   u32 value_len, value bytes    (NULL: tombstone)
 *   with --headers additionally:
 *   u32 header_count, then per header:
 *     u32 name_len, name bytes, u32 value_len (NULL allowed), value bytes
 *
 * Messages without a key go to a random partition each (sticky partitioning
 * off); keyed ones by librdkafka's default partitioner (consistent_random,
 * CRC32 - not the Java client's murmur2: set -X partitioner=murmur2_random
 * to match Java). --partition N forces one partition.
 * Uses an idempotent producer (acks=all, no duplicates on retry), flushes, and
 * prints the number of delivered messages as one line on stdout. With
 * --transactional ID every record goes into one transaction (transactional.id
 * ID), committed at the end: the partitions written end with a commit marker,
 * an offset that holds no message. Exit status:
 * 0 all delivered, 1 some delivery failed or flush timed out, 2 usage/input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "ktool.h"

#define NULL_LEN 0xFFFFFFFFu
#define MAX_FIELD (256u * 1024u * 1024u)

struct buf {
    unsigned char *p;
    size_t cap;
};

static long long delivered, failed;
static char first_error[512];

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        if (failed++ == 0)
            snprintf(first_error, sizeof(first_error), "%s",
                     rd_kafka_err2str(m->err));
    } else {
        delivered++;
    }
}

static void usage(FILE *out)
{
    fputs(
        "usage: produce_file --brokers B --topic T [--partition N] "
        "[--headers]\n"
        "                    [--timestamps] [--timeout SECONDS] "
        "[--transactional ID]\n"
        "                    [-X key=value]... < records\n"
        "Records on stdin: u32be key_len, key, u32be value_len, value\n"
        "(0xFFFFFFFF = NULL); with --headers then u32be count and per header\n"
        "u32be name_len, name, u32be value_len (0xFFFFFFFF = NULL), value.\n"
        "With --timestamps each record starts with i64be timestamp_ms, the\n"
        "message timestamp (0 = the current time; negative is an error).\n"
        "Idempotent producer; prints the delivered count; exit 0 when all\n"
        "were delivered.\n",
        out);
}

/* 1 = ok, 0 = clean EOF before the first byte, -1 = truncated / error. */
static int read_exact(void *dst, size_t n)
{
    size_t got = n ? fread(dst, 1, n, stdin) : 0;
    if (got == n)
        return 1;
    return got == 0 && feof(stdin) ? 0 : -1;
}

static int read_u32(uint32_t *v)
{
    unsigned char b[4];
    int r = read_exact(b, 4);
    if (r != 1)
        return r;
    *v = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) |
         ((uint32_t)b[2] << 8) | b[3];
    return 1;
}

/* 1 = ok, 0 = clean EOF before the first byte, -1 = truncated / error. */
static int read_i64(int64_t *v)
{
    unsigned char b[8];
    uint64_t u = 0;
    int r = read_exact(b, 8);
    if (r != 1)
        return r;
    for (int k = 0; k < 8; k++)
        u = (u << 8) | b[k];
    *v = (int64_t)u;
    return 1;
}

/* Reads a length-prefixed field into bf; *isnull set for 0xFFFFFFFF. */
static int read_field(struct buf *bf, size_t *len, int *isnull)
{
    uint32_t n;
    int r = read_u32(&n);
    if (r != 1)
        return r;
    *isnull = n == NULL_LEN;
    *len = *isnull ? 0 : n;
    if (*isnull)
        return 1;
    if (n > MAX_FIELD) {
        fprintf(stderr, "produce_file: field of %u bytes is too large\n", n);
        return -1;
    }
    if (n + 1 > bf->cap) {
        size_t cap = bf->cap ? bf->cap : 256;
        unsigned char *p;
        while (cap < (size_t)n + 1)
            cap *= 2;
        p = realloc(bf->p, cap);
        if (!p)
            return -1;
        bf->p = p;
        bf->cap = cap;
    }
    return read_exact(bf->p, n) == 1 ? 1 : -1;
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *topic = NULL;
    int32_t partition = RD_KAFKA_PARTITION_UA;
    int with_headers = 0;
    int with_timestamps = 0;
    int timeout_s = 60;
    const char *txn_id = NULL;
    rd_kafka_error_t *txerr = NULL;
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    struct buf kb = {0}, vb = {0}, hn = {0}, hv = {0};
    long long records = 0;
    int rc = 0;
    int i;

    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    /* Messages without a key get a random partition each; the default
     * sticky partitioner would put a fast bulk load (queued before the
     * metadata arrives) almost entirely into one partition, where the
     * mock's ~5 MiB per-partition retention then evicts it. */
    const char *const props[] = {
        "enable.idempotence", "true",
        "linger.ms", "5",
        "sticky.partitioning.linger.ms", "0",
        "queue.buffering.max.messages", "1000000",
        NULL};
    if (ktool_conf_set(conf, props, "produce_file") != 0) {
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
        } else if (!strcmp(a, "--partition") && i + 1 < argc) {
            partition = (int32_t)atoi(argv[++i]);
        } else if (!strcmp(a, "--timeout") && i + 1 < argc) {
            timeout_s = atoi(argv[++i]);
        } else if (!strcmp(a, "--headers")) {
            with_headers = 1;
        } else if (!strcmp(a, "--timestamps")) {
            with_timestamps = 1;
        } else if (!strcmp(a, "--transactional") && i + 1 < argc) {
            txn_id = argv[++i];
            if (rd_kafka_conf_set(conf, "transactional.id", txn_id, errstr,
                                  sizeof(errstr))) {
                fprintf(stderr, "produce_file: %s\n", errstr);
                rd_kafka_conf_destroy(conf);
                return 2;
            }
        } else if (!strcmp(a, "-X") && i + 1 < argc) {
            if (ktool_conf_x(conf, argv[++i], "produce_file") != 0) {
                rd_kafka_conf_destroy(conf);
                return 2;
            }
        } else {
            fprintf(stderr, "produce_file: unknown or incomplete option '%s'\n",
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
        fprintf(stderr, "produce_file: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "produce_file: rd_kafka_new: %s\n", errstr);
        return 2;
    }

    {
        /* Learn the partition count before the first message (the mock
         * auto-creates an unknown topic here, as producing would). Apache
         * Kafka, with auto-creation off, answers "unknown topic": say so
         * now rather than after every message timed out. */
        const rd_kafka_metadata_t *md;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        int unknown = 0;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            unknown = md->topic_cnt == 1 &&
                      md->topics[0].err ==
                          RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
        if (unknown) {
            fprintf(stderr, "produce_file: topic %s does not exist (create "
                            "it first)\n",
                    topic);
            rd_kafka_destroy(rk);
            return 1;
        }
    }

    if (txn_id != NULL &&
        ((txerr = rd_kafka_init_transactions(rk, timeout_s * 1000)) != NULL ||
         (txerr = rd_kafka_begin_transaction(rk)) != NULL)) {
        fprintf(stderr, "produce_file: transaction: %s\n",
                rd_kafka_error_string(txerr));
        rd_kafka_error_destroy(txerr);
        rd_kafka_destroy(rk);
        return 1;
    }

    for (;;) {
        size_t klen, vlen;
        int knull, vnull;
        rd_kafka_headers_t *hdrs = NULL;
        rd_kafka_resp_err_t err;
        void *kptr, *vptr;
        int64_t ts = 0;
        int r;
        if (with_timestamps) {
            r = read_i64(&ts);
            if (r == 0)
                break; /* clean end of input */
            if (r < 0)
                goto truncated;
            if (ts < 0) {
                fprintf(stderr,
                        "produce_file: record %lld: negative timestamp "
                        "%lld\n",
                        records + 1, (long long)ts);
                rc = 2;
                break;
            }
            r = read_field(&kb, &klen, &knull);
            if (r != 1)
                goto truncated;
        } else {
            r = read_field(&kb, &klen, &knull);
            if (r == 0)
                break; /* clean end of input */
            if (r < 0)
                goto truncated;
        }
        if (read_field(&vb, &vlen, &vnull) != 1)
            goto truncated;
        if (with_headers) {
            uint32_t n, h;
            if (read_u32(&n) != 1)
                goto truncated;
            hdrs = rd_kafka_headers_new(n < 64 ? (size_t)n : 64);
            for (h = 0; h < n; h++) {
                size_t nlen, hvlen;
                int nnull, hvnull;
                char *name;
                if (read_field(&hn, &nlen, &nnull) != 1 || nnull ||
                    read_field(&hv, &hvlen, &hvnull) != 1) {
                    rd_kafka_headers_destroy(hdrs);
                    goto truncated;
                }
                name = (char *)hn.p;
                rd_kafka_header_add(hdrs, name, (ssize_t)nlen,
                                    hvnull ? NULL : hv.p,
                                    hvnull ? 0 : (ssize_t)hvlen);
            }
        }
        /* The V_ macros cast their argument without parentheses: pass plain
         * variables, never expressions. */
        kptr = knull ? NULL : kb.p;
        vptr = vnull ? NULL : vb.p;
        for (;;) {
            err = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(kptr, klen), RD_KAFKA_V_VALUE(vptr, vlen),
                RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_HEADERS(hdrs),
                RD_KAFKA_V_END);
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(rk, 50);
        }
        if (err) {
            /* On failure the headers are still ours. */
            if (hdrs)
                rd_kafka_headers_destroy(hdrs);
            fprintf(stderr, "produce_file: produce: %s\n",
                    rd_kafka_err2str(err));
            rc = 1;
            break;
        }
        records++;
        rd_kafka_poll(rk, 0);
        continue;
    truncated:
        fprintf(
            stderr,
            "produce_file: truncated or invalid record after %lld records\n",
            records);
        rc = 2;
        break;
    }

    if (txn_id != NULL && !rc &&
        (txerr = rd_kafka_commit_transaction(rk, timeout_s * 1000)) != NULL) {
        fprintf(stderr, "produce_file: commit: %s\n",
                rd_kafka_error_string(txerr));
        rd_kafka_error_destroy(txerr);
        rc = 1;
    }
    if (rd_kafka_flush(rk, timeout_s * 1000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr,
                "produce_file: flush timed out, %d message(s) undelivered\n",
                rd_kafka_outq_len(rk));
        if (!rc)
            rc = 1;
    }
    if (failed) {
        fprintf(stderr, "produce_file: %lld message(s) failed: %s\n", failed,
                first_error);
        if (!rc)
            rc = 1;
    }
    printf("%lld\n", delivered);
    fflush(stdout);
    rd_kafka_destroy(rk);
    free(kb.p);
    free(vb.p);
    free(hn.p);
    free(hv.p);
    return rc;
}
