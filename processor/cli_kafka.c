/* cli_kafka.c - see cli_kafka.h. */
#include "cli_kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "kafka_check.h"
#include "kconf.h"
#include "log.h"

#define MOD "kafka"

int cli_kafka_target(const struct config *c, const char *topic,
                     const char *topic_what, char *brokers, size_t blen,
                     char *errbuf, size_t errlen)
{
    if (config_brokers(c, brokers, blen, errbuf, errlen) != 0 ||
        kafka_check_config(c, brokers, 0, "", topic, topic_what, errbuf,
                           errlen) != KCHECK_OK) {
        return -1;
    }
    return 0;
}

struct cli_producer {
    rd_kafka_t *rk;
    long failed;
};

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct cli_producer *p = opaque;
    if (m->err) {
        if (p->failed++ == 0) {
            log_error(MOD, "delivery failed: %s", rd_kafka_err2str(m->err));
        }
    }
}

struct cli_producer *cli_producer_new(const struct config *c,
                                      const char *brokers, char *errbuf,
                                      size_t errlen)
{
    const char *const props[] = {"enable.idempotence", "true",
                                 "linger.ms", "20",
                                 "batch.num.messages", "10000",
                                 "queue.buffering.max.messages", "500000",
                                 "client.id", "cardwatch-cli",
                                 NULL};
    struct cli_producer *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    const struct kconf_hooks hooks = {.dr_msg_cb = on_dr, .opaque = p};
    p->rk = kconf_new(c, brokers, RD_KAFKA_PRODUCER, props, &hooks, errbuf,
                      errlen);
    if (p->rk == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

int cli_produce(struct cli_producer *p, const char *topic, const void *key,
                size_t keylen, const void *value, size_t vallen,
                int64_t timestamp_ms)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
            RD_KAFKA_V_VALUE((void *)value, vallen),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_poll(p->rk, 0);
            return 0;
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            log_error(MOD, "produce to %s: %s", topic, rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(p->rk, 100); /* a tool, not the loop: waiting is ok */
    }
}

long cli_producer_close(struct cli_producer *p)
{
    if (p == NULL) {
        return 0;
    }
    long rc = p->failed;
    if (rd_kafka_flush(p->rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_error(MOD, "flush timed out with %d message(s) undelivered",
                  rd_kafka_outq_len(p->rk));
        rc = -1;
    } else {
        rc = p->failed;
    }
    rd_kafka_destroy(p->rk);
    free(p);
    return rc;
}

int cli_consume(const struct config *c, const char *brokers,
                const char *topic, int from_end, int exit_at_end,
                volatile int *stop,
                void (*fn)(void *, int32_t, int64_t, const void *, size_t,
                           const void *, size_t),
                void *arg)
{
    char errbuf[512];
    const char *const props[] = {"group.id", "cardwatch-cli-reader",
                                 "enable.auto.commit", "false",
                                 "enable.partition.eof", "true",
                                 "client.id", "cardwatch-cli",
                                 NULL};
    rd_kafka_t *rk = kconf_new(c, brokers, RD_KAFKA_CONSUMER, props, NULL,
                               errbuf, sizeof(errbuf));
    if (rk == NULL) {
        log_error(MOD, "%s", errbuf);
        return -1;
    }
    int rc = -1;
    rd_kafka_topic_partition_list_t *l = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 ||
        md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_error(MOD, "topic %s: %s", topic,
                  rd_kafka_err2str(err ? err : md->topics[0].err));
        goto out;
    }
    int np = md->topics[0].partition_cnt;
    l = rd_kafka_topic_partition_list_new(np);
    for (int i = 0; i < np; i++) {
        rd_kafka_topic_partition_list_add(l, topic,
                                          md->topics[0].partitions[i].id)
            ->offset = from_end ? RD_KAFKA_OFFSET_END
                                : RD_KAFKA_OFFSET_BEGINNING;
    }
    if (rd_kafka_assign(rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_error(MOD, "assign %s failed", topic);
        goto out;
    }
    int eofs = 0;
    char *at_eof = calloc((size_t)np + 1, 1);
    while (!*stop && !(exit_at_end && eofs >= np)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < np && !at_eof[m->partition]) {
                at_eof[m->partition] = 1;
                eofs++;
            }
        } else if (m->err) {
            log_warn(MOD, "%s: %s", topic, rd_kafka_message_errstr(m));
        } else {
            if (m->partition >= 0 && m->partition < np && at_eof[m->partition]) {
                at_eof[m->partition] = 0;
                eofs--;
            }
            fn(arg, m->partition, m->offset, m->key, m->key_len, m->payload,
               m->len);
        }
        rd_kafka_message_destroy(m);
    }
    free(at_eof);
    rc = 0;
out:
    if (md != NULL) {
        rd_kafka_metadata_destroy(md);
    }
    if (l != NULL) {
        rd_kafka_topic_partition_list_destroy(l);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}
