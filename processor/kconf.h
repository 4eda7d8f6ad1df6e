/* kconf.h - building librdkafka configurations from cardwatch's config.
 */
#ifndef CARDWATCH_KCONF_H
#define CARDWATCH_KCONF_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "config.h"

/* Returns a new rd_kafka_conf_t with bootstrap.servers = brokers, the
 * given base properties (name/value pairs, NULL-terminated) and then the
 * config's passthrough properties of scope "common" and of `scope`
 * ("consumer" or "producer"), so an operator can override any of them,
 * and sasl.password from [kafka] sasl_password_file when it is set (the
 * file is read each time: a rotated password needs only a restart).
 * Returns NULL with "file:line: ..." or "name: ..." in errbuf on a bad
 * property. The caller owns the result (rd_kafka_new takes it over). */
rd_kafka_conf_t *kconf_build(const struct config *c, const char *brokers,
                             const char *scope, const char *const *base,
                             char *errbuf, size_t errlen);

/* Callbacks and opaque to set before the handle is created; NULL members
 * are left unset. */
struct kconf_hooks {
    void (*dr_msg_cb)(rd_kafka_t *rk, const rd_kafka_message_t *m,
                      void *opaque);
    void (*rebalance_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts,
                         void *opaque);
    /* error events and statistics (see kafka_health.h); both run where
     * the handle's queue is served */
    void (*error_cb)(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque);
    int (*stats_cb)(rd_kafka_t *rk, char *json, size_t json_len,
                    void *opaque);
    void *opaque;
};

/* kconf_build() for a producer or consumer, the hooks (may be NULL), then
 * rd_kafka_new(). Returns the handle (the caller destroys it), or NULL
 * with kconf_build's message or "producer: ..."/"consumer: ..." in
 * errbuf; the configuration never leaks. */
rd_kafka_t *kconf_new(const struct config *c, const char *brokers,
                      rd_kafka_type_t type, const char *const *base,
                      const struct kconf_hooks *hooks, char *errbuf,
                      size_t errlen);

#endif
