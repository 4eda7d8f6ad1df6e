/*
 * kafka_admin - create and delete topics on a Kafka cluster (librdkafka's
 * Admin API), for the local stack, the tests and the benchmarks. Apache
 * Kafka here runs with auto.create.topics.enable=false, as production
 * does, so every topic is created explicitly.
 *
 *   kafka_admin --brokers B create NAME:PARTITIONS[:RF]... [--config k=v]...
 *   kafka_admin --brokers B delete NAME...
 *   kafka_admin --brokers B set-config NAME --config k=v...
 *   kafka_admin --brokers B committed GROUP NAME:PARTITIONS
 *   common: [--timeout S] [-X key=value]...
 *
 * create: a topic that already exists with the same partition count is
 * fine (idempotent); with another count it is an error. Returns when the
 * cluster's metadata shows every topic with a leader for each partition. RF defaults to
 * min(3, brokers in the cluster). --config sets a topic config on every
 * topic created in this call (e.g. min.insync.replicas=2).
 * delete: an unknown topic is fine.
 * set-config: the topic's dynamic configs become exactly the --config
 * pairs (AlterConfigs replaces the set; librdkafka 2.0.2 has no
 * incremental call) - for tests that change a limit mid-run.
 * committed: one line "PARTITION OFFSET" per partition, the group's
 * committed offset (-1: none), read with OffsetFetch.
 * Exits 0 when every topic is as asked, 1 with one line per problem on
 * stderr, 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "ktool.h"

#define MAX_TOPICS 256
#define MAX_CONFIGS 32

struct tspec {
    char name[250];
    int partitions;
    int rf;
};

static void usage(FILE *out)
{
    fputs("usage: kafka_admin --brokers B create NAME:PARTITIONS[:RF]... "
          "[--config k=v]...\n"
          "       kafka_admin --brokers B delete NAME...\n"
          "       kafka_admin --brokers B set-config NAME --config k=v...\n"
          "       kafka_admin --brokers B committed GROUP NAME:PARTITIONS\n"
          "options: --timeout S (default 30), -X key=value (librdkafka)\n"
          "create is idempotent (same partition count); RF defaults to\n"
          "min(3, brokers). delete ignores unknown topics.\n",
          out);
}

static int parse_spec(const char *arg, struct tspec *t)
{
    char buf[300];
    snprintf(buf, sizeof(buf), "%s", arg);
    char *c1 = strchr(buf, ':');
    if (c1 == NULL) {
        return -1;
    }
    *c1 = '\0';
    char *c2 = strchr(c1 + 1, ':');
    if (c2 != NULL) {
        *c2 = '\0';
    }
    char *end = NULL;
    long p = strtol(c1 + 1, &end, 10);
    if (buf[0] == '\0' || strlen(buf) >= sizeof(t->name) || *end != '\0' ||
        p < 1 || p > 100000) {
        return -1;
    }
    long rf = -1;
    if (c2 != NULL) {
        rf = strtol(c2 + 1, &end, 10);
        if (*end != '\0' || rf < 1 || rf > 16) {
            return -1;
        }
    }
    memcpy(t->name, buf, strlen(buf) + 1); /* fits: checked above */
    t->partitions = (int)p;
    t->rf = (int)rf;
    return 0;
}

/* Partition count of an existing topic, 0 if it does not exist, -1 if the
 * metadata request failed. *brokers gets the cluster size. */
static int existing_partitions(rd_kafka_t *rk, const char *topic,
                               int timeout_ms, int *brokers)
{
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        return -1;
    }
    int n = 0;
    *brokers = md->broker_cnt;
    for (int i = 0; i < md->topic_cnt; i++) {
        if (strcmp(md->topics[i].topic, topic) == 0 &&
            md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            n = md->topics[i].partition_cnt;
        }
    }
    rd_kafka_metadata_destroy(md);
    return n;
}

/* Waits until the cluster's metadata shows every topic with all its
 * partitions led (a topic just created reaches the brokers' metadata a
 * moment after CreateTopics returns). Returns 0, or -1 on timeout. */
static int wait_visible(rd_kafka_t *rk, const struct tspec *ts, int nt,
                        int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        const struct rd_kafka_metadata *md = NULL;
        int ready = 0;
        if (rd_kafka_metadata(rk, 1, NULL, &md, 5000) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            for (int k = 0; k < nt; k++) {
                for (int i = 0; i < md->topic_cnt; i++) {
                    const rd_kafka_metadata_topic_t *t = &md->topics[i];
                    if (strcmp(t->topic, ts[k].name) != 0 ||
                        t->partition_cnt != ts[k].partitions) {
                        continue;
                    }
                    int led = 1;
                    for (int p = 0; p < t->partition_cnt; p++) {
                        led &= t->partitions[p].leader >= 0;
                    }
                    ready += led;
                }
            }
            rd_kafka_metadata_destroy(md);
        }
        if (ready == nt) {
            return 0;
        }
        struct timespec d = {0, 100 * 1000000L};
        nanosleep(&d, NULL);
    }
    fprintf(stderr, "kafka_admin: topics not visible with leaders within %d "
                    "ms\n",
            timeout_ms);
    return -1;
}

static int run_admin(rd_kafka_t *rk, rd_kafka_event_t **out, int timeout_ms,
                     rd_kafka_queue_t *q)
{
    *out = rd_kafka_queue_poll(q, timeout_ms + 5000);
    if (*out == NULL) {
        fprintf(stderr, "kafka_admin: no answer from %s within %d ms\n",
                rd_kafka_name(rk), timeout_ms + 5000);
        return -1;
    }
    if (rd_kafka_event_error(*out) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kafka_admin: %s\n", rd_kafka_event_error_string(*out));
        return -1;
    }
    return 0;
}

static int do_create(rd_kafka_t *rk, struct tspec *ts, int nt,
                     char **configs, int nc, int timeout_ms)
{
    int brokers = 0, rc = 0;
    if (existing_partitions(rk, "", timeout_ms, &brokers) < 0) {
        fprintf(stderr, "kafka_admin: no metadata from the cluster within "
                        "%d ms\n",
                timeout_ms);
        return 1;
    }
    rd_kafka_NewTopic_t *nts[MAX_TOPICS];
    char errstr[512];
    for (int i = 0; i < nt; i++) {
        int rf = ts[i].rf > 0 ? ts[i].rf : (brokers < 3 ? brokers : 3);
        nts[i] = rd_kafka_NewTopic_new(ts[i].name, ts[i].partitions, rf,
                                       errstr, sizeof(errstr));
        if (nts[i] == NULL) {
            fprintf(stderr, "kafka_admin: %s: %s\n", ts[i].name, errstr);
            return 1;
        }
        for (int k = 0; k < nc; k++) {
            char kv[512];
            snprintf(kv, sizeof(kv), "%s", configs[k]);
            char *eq = strchr(kv, '=');
            *eq = '\0';
            rd_kafka_NewTopic_set_config(nts[i], kv, eq + 1);
        }
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *o =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(o, timeout_ms, errstr,
                                                sizeof(errstr));
    rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, errstr,
                                              sizeof(errstr));
    rd_kafka_CreateTopics(rk, nts, (size_t)nt, o, q);
    rd_kafka_event_t *ev = NULL;
    if (run_admin(rk, &ev, timeout_ms, q) != 0) {
        rc = 1;
        goto done;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(
        rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        const char *name = rd_kafka_topic_result_name(res[i]);
        rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            continue;
        }
        if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            int want = 0;
            for (int k = 0; k < nt; k++) {
                if (strcmp(ts[k].name, name) == 0) {
                    want = ts[k].partitions;
                }
            }
            int have = existing_partitions(rk, name, timeout_ms, &brokers);
            if (have == want) {
                continue;
            }
            fprintf(stderr,
                    "kafka_admin: %s exists with %d partitions, not %d\n",
                    name, have, want);
        } else {
            fprintf(stderr, "kafka_admin: create %s: %s\n", name,
                    rd_kafka_topic_result_error_string(res[i]));
        }
        rc = 1;
    }
    if (rc == 0 && wait_visible(rk, ts, nt, timeout_ms) != 0) {
        rc = 1;
    }
done:
    if (ev != NULL) {
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy_array(nts, (size_t)nt);
    return rc;
}

static int do_delete(rd_kafka_t *rk, char **names, int n, int timeout_ms)
{
    rd_kafka_DeleteTopic_t *dts[MAX_TOPICS];
    char errstr[512];
    int rc = 0;
    for (int i = 0; i < n; i++) {
        dts[i] = rd_kafka_DeleteTopic_new(names[i]);
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *o =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(o, timeout_ms, errstr,
                                                sizeof(errstr));
    rd_kafka_DeleteTopics(rk, dts, (size_t)n, o, q);
    rd_kafka_event_t *ev = NULL;
    if (run_admin(rk, &ev, timeout_ms, q) != 0) {
        rc = 1;
        goto done;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res = rd_kafka_DeleteTopics_result_topics(
        rd_kafka_event_DeleteTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR &&
            err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            fprintf(stderr, "kafka_admin: delete %s: %s\n",
                    rd_kafka_topic_result_name(res[i]),
                    rd_kafka_topic_result_error_string(res[i]));
            rc = 1;
        }
    }
done:
    if (ev != NULL) {
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteTopic_destroy_array(dts, (size_t)n);
    return rc;
}

static int do_set_config(rd_kafka_t *rk, const char *topic, char **configs,
                         int nc, int timeout_ms)
{
    char errstr[512];
    rd_kafka_ConfigResource_t *cr =
        rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    for (int k = 0; k < nc; k++) {
        char kv[512];
        snprintf(kv, sizeof(kv), "%s", configs[k]);
        char *eq = strchr(kv, '=');
        *eq = '\0';
        rd_kafka_ConfigResource_set_config(cr, kv, eq + 1);
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *o =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ALTERCONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, errstr,
                                              sizeof(errstr));
    rd_kafka_AlterConfigs(rk, &cr, 1, o, q);
    rd_kafka_event_t *ev = NULL;
    int rc = 0;
    if (run_admin(rk, &ev, timeout_ms, q) != 0) {
        rc = 1;
    } else {
        size_t cnt = 0;
        const rd_kafka_ConfigResource_t **res =
            rd_kafka_AlterConfigs_result_resources(
                rd_kafka_event_AlterConfigs_result(ev), &cnt);
        for (size_t i = 0; i < cnt; i++) {
            if (rd_kafka_ConfigResource_error(res[i]) !=
                RD_KAFKA_RESP_ERR_NO_ERROR) {
                fprintf(stderr, "kafka_admin: set-config %s: %s\n", topic,
                        rd_kafka_ConfigResource_error_string(res[i]));
                rc = 1;
            }
        }
    }
    if (ev != NULL) {
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(cr);
    return rc;
}

static int do_committed(rd_kafka_t *rk, const struct tspec *t,
                        int timeout_ms)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(t->partitions);
    for (int p = 0; p < t->partitions; p++) {
        rd_kafka_topic_partition_list_add(l, t->name, p);
    }
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, l, timeout_ms);
    int rc = 0;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kafka_admin: committed: %s\n", rd_kafka_err2str(err));
        rc = 1;
    }
    for (int i = 0; rc == 0 && i < l->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &l->elems[i];
        if (tp->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "kafka_admin: committed %s [%d]: %s\n", t->name,
                    tp->partition, rd_kafka_err2str(tp->err));
            rc = 1;
        } else {
            printf("%d %lld\n", tp->partition,
                   (long long)(tp->offset < 0 ? -1 : tp->offset));
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *cmd = NULL;
    char *args[MAX_TOPICS];
    char *configs[MAX_CONFIGS];
    int nargs = 0, nc = 0, timeout_s = 30;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            rd_kafka_conf_destroy(conf);
            return 0;
        } else if (strcmp(a, "--brokers") == 0 && more) {
            brokers = argv[++i];
        } else if (strcmp(a, "--timeout") == 0 && more) {
            timeout_s = atoi(argv[++i]);
        } else if (strcmp(a, "--config") == 0 && more) {
            if (nc == MAX_CONFIGS || strchr(argv[i + 1], '=') == NULL) {
                usage(stderr);
                return 2;
            }
            configs[nc++] = argv[++i];
        } else if (strcmp(a, "-X") == 0 && more) {
            if (ktool_conf_x(conf, argv[++i], "kafka_admin") != 0) {
                return 2;
            }
        } else if (cmd == NULL && (strcmp(a, "create") == 0 ||
                                   strcmp(a, "delete") == 0 ||
                                   strcmp(a, "set-config") == 0 ||
                                   strcmp(a, "committed") == 0)) {
            cmd = a;
        } else if (cmd != NULL && a[0] != '-' && nargs < MAX_TOPICS) {
            args[nargs++] = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (brokers == NULL || cmd == NULL || nargs == 0 || timeout_s < 1) {
        usage(stderr);
        return 2;
    }
    struct tspec ts[MAX_TOPICS];
    int committed = strcmp(cmd, "committed") == 0;
    if ((committed && nargs != 2) ||
        (strcmp(cmd, "set-config") == 0 && (nargs != 1 || nc == 0))) {
        usage(stderr);
        return 2;
    }
    if (committed && parse_spec(args[1], &ts[0]) != 0) {
        fprintf(stderr, "kafka_admin: bad topic '%s' (want NAME:PARTITIONS)\n",
                args[1]);
        return 2;
    }
    if (strcmp(cmd, "create") == 0) {
        for (int i = 0; i < nargs; i++) {
            if (parse_spec(args[i], &ts[i]) != 0) {
                fprintf(stderr, "kafka_admin: bad topic '%s' (want "
                                "NAME:PARTITIONS[:RF])\n",
                        args[i]);
                return 2;
            }
        }
    }
    const char *const props[] = {"bootstrap.servers", brokers,
                                 committed ? "group.id" : NULL, args[0],
                                 NULL};
    if (ktool_conf_set(conf, props, "kafka_admin") != 0) {
        return 2;
    }
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(committed ? RD_KAFKA_CONSUMER
                                            : RD_KAFKA_PRODUCER,
                                  conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "kafka_admin: %s\n", errstr);
        return 1;
    }
    int ms = timeout_s * 1000, rc;
    if (committed) {
        rc = do_committed(rk, &ts[0], ms);
    } else if (strcmp(cmd, "set-config") == 0) {
        rc = do_set_config(rk, args[0], configs, nc, ms);
    } else if (strcmp(cmd, "create") == 0) {
        rc = do_create(rk, ts, nargs, configs, nc, ms);
    } else {
        rc = do_delete(rk, args, nargs, ms);
    }
    rd_kafka_destroy(rk);
    return rc;
}
