/* kafka_check.c - see kafka_check.h. */
#include "kafka_check.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "kconf.h"
#include "log.h"
#include "text.h"

#define MOD "kafka"
#define STEP_MS 500
/* A topic created a moment ago may not be in every broker's metadata
 * yet (KRaft brokers apply the controller's records asynchronously):
 * "missing" is believed after this long. */
#define MISSING_GRACE_MS 1500

/* One topic to check, and where it comes from (for the message). */
struct kafka_check_topic {
    char name[CONFIG_STR_MAX + 40];
    char what[64]; /* e.g. "[kafka] transactions_topic", "issuer acme" */
};

struct seen {
    rd_kafka_resp_err_t fatal; /* __AUTHENTICATION or __SSL, else 0 */
    char fatal_reason[512];
    char last[512]; /* the latest error of any kind */
};

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct seen *s = opaque;
    (void)rk;
    snprintf(s->last, sizeof(s->last), "%s", reason);
    if ((err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
         err == RD_KAFKA_RESP_ERR__SSL) &&
        s->fatal == 0) {
        s->fatal = (rd_kafka_resp_err_t)err;
        snprintf(s->fatal_reason, sizeof(s->fatal_reason), "%s", reason);
    }
}

/* librdkafka's log lines of this handle go through our log at debug
 * level: the check reports what matters itself. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
    (void)rk;
    (void)level;
    log_debug(MOD, "check: %s: %s", fac, buf);
}

static int find_topic(const struct rd_kafka_metadata *md, const char *name)
{
    for (int i = 0; i < md->topic_cnt; i++) {
        if (strcmp(md->topics[i].topic, name) == 0) {
            return md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                   md->topics[i].partition_cnt > 0;
        }
    }
    return 0;
}

/* Writes "name (what), ..." of the missing topics into buf; returns how
 * many are missing. */
static size_t list_missing(const struct rd_kafka_metadata *md,
                           const struct kafka_check_topic *topics, size_t n,
                           char *buf, size_t buflen)
{
    size_t missing = 0, used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (find_topic(md, topics[i].name)) {
            continue;
        }
        missing++;
        if (used < buflen) {
            int w = snprintf(buf + used, buflen - used, "%s%s (%s)",
                             missing > 1 ? ", " : "", topics[i].name,
                             topics[i].what);
            used += w > 0 ? (size_t)w : 0;
        }
    }
    return missing;
}

/* Waits up to timeout_ms for metadata and the n topics (see
 * kafka_check_config in the header). */
static enum kafka_check_status check(const struct config *c,
                                     const char *brokers,
                                     const struct kafka_check_topic *topics,
                                     size_t n, int timeout_ms, char *errbuf,
                                     size_t errlen)
{
    static const char *const base[] = {"client.id", "cardwatch-check",
                                       NULL};
    struct seen seen = {0};
    char kerr[512];
    enum kafka_check_status st = KCHECK_ERROR;
    rd_kafka_conf_t *conf =
        kconf_build(c, brokers, "producer", base, errbuf, errlen);
    if (conf == NULL) {
        return KCHECK_ERROR;
    }
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_opaque(conf, &seen);
    rd_kafka_t *rk =
        rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf); /* still ours on failure */
        text_errf(errbuf, errlen, "Kafka: %s", kerr);
        return KCHECK_ERROR;
    }
    uint64_t t0 = clock_mono_ns();
    uint64_t deadline = t0 + (uint64_t)timeout_ms * 1000000u;
    uint64_t first_missing = 0;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, STEP_MS);
        rd_kafka_poll(rk, 0); /* serves on_error */
        if (seen.fatal == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
            text_errf(errbuf, errlen,
                      "Kafka at %s: SASL authentication failed: %s (check "
                      "[kafka.common] sasl.mechanisms, sasl.username and "
                      "sasl.password)",
                      brokers, seen.fatal_reason);
            st = KCHECK_AUTH;
            break;
        }
        if (seen.fatal == RD_KAFKA_RESP_ERR__SSL) {
            text_errf(errbuf, errlen,
                      "Kafka at %s: TLS handshake failed: %s (check "
                      "[kafka.common] security.protocol and ssl.ca.location, "
                      "and that the broker's certificate names the host "
                      "you connect to)",
                      brokers, seen.fatal_reason);
            st = KCHECK_TLS;
            break;
        }
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            char miss[1024];
            size_t nm = list_missing(md, topics, n, miss, sizeof(miss));
            int nb = md->broker_cnt;
            rd_kafka_metadata_destroy(md);
            if (nm == 0) {
                log_debug(MOD, "%s: %d broker(s), %zu topic(s) present, in "
                          "%.2f s", brokers, nb, n,
                          (double)(clock_mono_ns() - t0) / 1e9);
                st = KCHECK_OK;
                break;
            }
            if (first_missing == 0) {
                first_missing = clock_mono_ns();
            }
            if (clock_mono_ns() - first_missing >=
                    (uint64_t)MISSING_GRACE_MS * 1000000u ||
                clock_mono_ns() >= deadline) {
                text_errf(errbuf, errlen,
                          "Kafka at %s: %zu topic(s) missing: %s. Create "
                          "them first (the brokers should not create topics "
                          "on first use), or grant this client Describe on "
                          "them",
                          brokers, nm, miss);
                st = KCHECK_MISSING;
                break;
            }
        }
        if (clock_mono_ns() >= deadline) {
            text_errf(errbuf, errlen,
                      "Kafka at %s: no answer within %d s (%s; [kafka] "
                      "connect_timeout_s)",
                      brokers, (timeout_ms + 999) / 1000,
                      seen.last[0] ? seen.last : rd_kafka_err2str(err));
            st = KCHECK_TIMEOUT;
            break;
        }
    }
    rd_kafka_destroy(rk);
    return st;
}

static size_t add(struct kafka_check_topic *out, size_t n, size_t max,
                  const char *name, const char *suffix, const char *what,
                  const char *id)
{
    /* kafka_check_config sizes out for every topic it can add */
    assert(n < max);
    (void)max;
    snprintf(out[n].name, sizeof(out[n].name), "%s%s", name, suffix);
    snprintf(out[n].what, sizeof(out[n].what), "%s%s", what, id);
    return n + 1;
}

/* Fills out (room for max entries) with the config's topics chosen by
 * flags; returns how many were written. */
static size_t config_topics(const struct config *c, unsigned flags,
                            const char *suffix, struct kafka_check_topic *out,
                            size_t max)
{
    size_t n = 0;
    if (flags & KCHECK_T_INPUT) {
        n = add(out, n, max, c->transactions_topic, "",
                "[kafka] transactions_topic", "");
    }
    if (flags & KCHECK_T_DEAD_LETTER) {
        n = add(out, n, max, c->dead_letter_topic, "",
                "[kafka] dead_letter_topic", "");
    }
    if (flags & KCHECK_T_REPLAY_DL) {
        n = add(out, n, max, c->replay_dead_letter_topic, "",
                "[replay] dead_letter_topic", "");
    }
    if (flags & KCHECK_T_ALERTS) {
        n = add(out, n, max, c->fallback_topic, suffix,
                "[kafka] fallback_topic", "");
        for (size_t i = 0; i < c->n_issuers; i++) {
            n = add(out, n, max, c->issuers[i].topic, suffix, "issuer ",
                    c->issuers[i].id);
        }
    }
    return n;
}

enum kafka_check_status kafka_check_config(const struct config *c,
                                           const char *brokers,
                                           unsigned flags, const char *suffix,
                                           const char *extra,
                                           const char *extra_what,
                                           char *errbuf, size_t errlen)
{
    size_t max = c->n_issuers + 5, n = 0;
    struct kafka_check_topic *t = calloc(max, sizeof(*t));
    if (t == NULL) {
        text_errf(errbuf, errlen, "out of memory");
        return KCHECK_ERROR;
    }
    if (extra != NULL) {
        n = add(t, n, max, extra, "", extra_what, "");
    }
    n += config_topics(c, flags, suffix, t + n, max - n);
    enum kafka_check_status st = check(
        c, brokers, t, n, c->connect_timeout_s * 1000, errbuf, errlen);
    free(t);
    return st;
}
