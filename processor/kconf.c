/* kconf.c - see kconf.h. */
#include "kconf.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "secret_file.h"

#define KCONF_PASSWORD_MAX 1024

/* sasl.password from [kafka] sasl_password_file: its first line. */
static int set_password(rd_kafka_conf_t *conf, const char *path, char *errbuf,
                        size_t errlen)
{
    char pw[KCONF_PASSWORD_MAX + 1];
    char kerr[512];
    size_t len = 0;
    int rc = -1;
    if (secret_file_read(path, "[kafka] sasl_password_file", pw,
                         KCONF_PASSWORD_MAX, &len, errbuf, errlen) != 0) {
        return -1;
    }
    pw[strcspn(pw, "\r\n")] = '\0';
    if (pw[0] == '\0') {
        snprintf(errbuf, errlen, "[kafka] sasl_password_file %s: empty", path);
    } else if (rd_kafka_conf_set(conf, "sasl.password", pw, kerr,
                                 sizeof(kerr)) != RD_KAFKA_CONF_OK) {
        snprintf(errbuf, errlen, "[kafka] sasl_password_file: %s", kerr);
    } else {
        rc = 0;
    }
    OPENSSL_cleanse(pw, sizeof(pw));
    return rc;
}

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
    if (c->kafka_sasl_password_file[0] != '\0' &&
        set_password(conf, c->kafka_sasl_password_file, errbuf, errlen) !=
            0) {
        goto err;
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
    if (hooks != NULL && hooks->error_cb != NULL) {
        rd_kafka_conf_set_error_cb(conf, hooks->error_cb);
    }
    if (hooks != NULL && hooks->stats_cb != NULL) {
        rd_kafka_conf_set_stats_cb(conf, hooks->stats_cb);
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
