/* kafka_health.c - see kafka_health.h. */
#include "kafka_health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "log.h"

#define MOD "kafka"
#define MAX_CODES 32
#define LOG_EVERY_MS 10000

struct code_count {
    int err;
    uint64_t n;
    uint64_t logged_ms; /* last time this code was logged */
    uint64_t suppressed; /* not logged since */
};

struct client {
    int brokers_up;   /* -1 until the first statistics */
    int brokers_known;
    char last[256];   /* the latest error text */
    struct code_count codes[MAX_CODES];
    size_t n_codes;
};

struct kafka_health {
    struct client c[KH_CLIENTS];
};

static const char *const client_name[KH_CLIENTS] = {"consumer", "producer"};

struct kafka_health *kafka_health_new(void)
{
    struct kafka_health *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return NULL;
    }
    for (int i = 0; i < KH_CLIENTS; i++) {
        h->c[i].brokers_up = -1;
        h->c[i].brokers_known = -1;
    }
    return h;
}

void kafka_health_destroy(struct kafka_health *h)
{
    free(h);
}

static struct code_count *code_slot(struct client *cl, int err)
{
    for (size_t i = 0; i < cl->n_codes; i++) {
        if (cl->codes[i].err == err) {
            return &cl->codes[i];
        }
    }
    if (cl->n_codes == MAX_CODES) {
        return &cl->codes[MAX_CODES - 1]; /* shared overflow slot */
    }
    struct code_count *k = &cl->codes[cl->n_codes++];
    memset(k, 0, sizeof(*k));
    k->err = err;
    return k;
}

void kafka_health_error(struct kafka_health *h, enum kafka_client c, int err,
                        const char *reason, uint64_t now_ms)
{
    struct client *cl = &h->c[c];
    snprintf(cl->last, sizeof(cl->last), "%s", reason);
    struct code_count *k = code_slot(cl, err);
    k->n++;
    if (k->n > 1 && now_ms - k->logged_ms < LOG_EVERY_MS) {
        k->suppressed++;
        return;
    }
    if (k->suppressed > 0) {
        log_warn(MOD, "%s: %s (and %llu more like it in %d s)",
                 client_name[c], reason, (unsigned long long)k->suppressed,
                 LOG_EVERY_MS / 1000);
    } else {
        log_warn(MOD, "%s: %s", client_name[c], reason);
    }
    k->logged_ms = now_ms;
    k->suppressed = 0;
}

int kafka_health_stats(struct kafka_health *h, enum kafka_client c,
                       const char *json, size_t len)
{
    json_t *doc = json_loadb(json, len, 0, NULL);
    json_t *brokers = doc != NULL ? json_object_get(doc, "brokers") : NULL;
    if (!json_is_object(brokers)) {
        json_decref(doc);
        return -1;
    }
    int up = 0, known = 0;
    const char *name;
    json_t *b;
    json_object_foreach(brokers, name, b)
    {
        json_t *id = json_object_get(b, "nodeid");
        const char *src = json_string_value(json_object_get(b, "source"));
        const char *state = json_string_value(json_object_get(b, "state"));
        /* bootstrap entries have nodeid -1; the coordinator is logical */
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            (src != NULL && (strcmp(src, "logical") == 0 ||
                             strcmp(src, "internal") == 0))) {
            continue;
        }
        known++;
        up += state != NULL && strcmp(state, "UP") == 0;
    }
    json_decref(doc);
    struct client *cl = &h->c[c];
    if (cl->brokers_up > 0 && up == 0) {
        log_error(MOD, "%s: no broker reachable (%d known; last error: %s)",
                  client_name[c], known, cl->last[0] ? cl->last : "none");
    } else if (cl->brokers_up == 0 && up > 0) {
        log_info(MOD, "%s: %d of %d broker(s) reachable again",
                 client_name[c], up, known);
    }
    cl->brokers_up = up;
    cl->brokers_known = known;
    return 0;
}

int kafka_health_brokers_up(const struct kafka_health *h, enum kafka_client c)
{
    return h->c[c].brokers_up;
}

int kafka_health_ok(const struct kafka_health *h, char *why, size_t whylen)
{
    for (int i = 0; i < KH_CLIENTS; i++) {
        const struct client *cl = &h->c[i];
        if (cl->brokers_up == 0) {
            snprintf(why, whylen,
                     "Kafka: no broker reachable by the %s (last error: %s)",
                     client_name[i], cl->last[0] ? cl->last : "none");
            return 0;
        }
    }
    return 1;
}

void kafka_health_metrics(const struct kafka_health *h, FILE *out)
{
    fputs("# HELP cardwatch_kafka_brokers_up Broker connections up per "
          "client (librdkafka statistics; -1 before the first).\n"
          "# TYPE cardwatch_kafka_brokers_up gauge\n",
          out);
    for (int i = 0; i < KH_CLIENTS; i++) {
        fprintf(out, "cardwatch_kafka_brokers_up{client=\"%s\"} %d\n",
                client_name[i], h->c[i].brokers_up);
    }
    fputs("# HELP cardwatch_kafka_errors_total Error events from librdkafka "
          "by client and error code.\n"
          "# TYPE cardwatch_kafka_errors_total counter\n",
          out);
    for (int i = 0; i < KH_CLIENTS; i++) {
        for (size_t k = 0; k < h->c[i].n_codes; k++) {
            fprintf(out,
                    "cardwatch_kafka_errors_total{client=\"%s\",error=\"%s\"}"
                    " %llu\n",
                    client_name[i],
                    rd_kafka_err2name(
                        (rd_kafka_resp_err_t)h->c[i].codes[k].err),
                    (unsigned long long)h->c[i].codes[k].n);
        }
    }
}
