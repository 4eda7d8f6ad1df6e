/* kconf.c - see kconf.h. */
#include "kconf.h"

#include <stdio.h>
#include <string.h>

rd_kafka_conf_t *kconf_build(const struct config *c, const char *brokers,
                             const char *scope, const char *const *base,
                             char *errbuf, size_t errlen)
{
    char kerr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, kerr,
                          sizeof(kerr)) != RD_KAFKA_CONF_OK) {
        snprintf(errbuf, errlen, "bootstrap.servers: %s", kerr);
        goto err;
    }
    for (size_t i = 0; base != NULL && base[i] != NULL; i += 2) {
        if (rd_kafka_conf_set(conf, base[i], base[i + 1], kerr,
                              sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            snprintf(errbuf, errlen, "%s: %s", base[i], kerr);
            goto err;
        }
    }
    for (size_t i = 0; i < c->n_kafka_props; i++) {
        const struct kafka_prop *kp = &c->kafka_props[i];
        if (strcmp(kp->scope, "common") != 0 && strcmp(kp->scope, scope) != 0) {
            continue;
        }
        if (rd_kafka_conf_set(conf, kp->name, kp->value, kerr,
                              sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            snprintf(errbuf, errlen, "%s:%d: [kafka.%s] %s: %s",
                     c->path[0] ? c->path : "(flags)", kp->line, kp->scope,
                     kp->name, kerr);
            goto err;
        }
    }
    return conf;
err:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

rd_kafka_t *kconf_new(const struct config *c, const char *brokers,
                      rd_kafka_type_t type, const char *const *base,
                      const struct kconf_hooks *hooks, char *errbuf,
                      size_t errlen)
{
    const char *what = type == RD_KAFKA_PRODUCER ? "producer" : "consumer";
    rd_kafka_conf_t *conf = kconf_build(c, brokers, what, base, errbuf, errlen);
    if (conf == NULL) {
        return NULL;
    }
    if (hooks != NULL && hooks->dr_msg_cb != NULL) {
        rd_kafka_conf_set_dr_msg_cb(conf, hooks->dr_msg_cb);
    }
    if (hooks != NULL && hooks->rebalance_cb != NULL) {
        rd_kafka_conf_set_rebalance_cb(conf, hooks->rebalance_cb);
    }
    if (hooks != NULL && hooks->opaque != NULL) {
        rd_kafka_conf_set_opaque(conf, hooks->opaque);
    }
    char kerr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, kerr, sizeof(kerr));
    if (rk == NULL) {
        snprintf(errbuf, errlen, "%s: %s", what, kerr);
        rd_kafka_conf_destroy(conf); /* still ours on failure */
    }
    return rk;
}
