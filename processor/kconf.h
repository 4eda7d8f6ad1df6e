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
 * ("consumer" or "producer"), so an operator can override any of them.
 * Returns NULL with "file:line: ..." or "name: ..." in errbuf on a bad
 * property. The caller owns the result (rd_kafka_new takes it over). */
rd_kafka_conf_t *kconf_build(const struct config *c, const char *brokers,
                             const char *scope, const char *const *base,
                             char *errbuf, size_t errlen);

#endif
