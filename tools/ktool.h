/* ktool.h - what the test and bench tools in tools/ share: setting a list
 * of librdkafka properties and the -X key=value option. Header-only on
 * purpose: each tool builds from its one .c file without the processor.
 */
#ifndef CARDWATCH_KTOOL_H
#define CARDWATCH_KTOOL_H

#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

/* Sets name/value pairs (a NULL-terminated list) on conf. Returns 0, or
 * -1 after printing "prog: <librdkafka's message>" to stderr. */
static inline int ktool_conf_set(rd_kafka_conf_t *conf,
                                 const char *const *pairs, const char *prog)
{
    char errstr[512];
    for (size_t i = 0; pairs[i] != NULL; i += 2) {
        if (rd_kafka_conf_set(conf, pairs[i], pairs[i + 1], errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "%s: %s\n", prog, errstr);
            return -1;
        }
    }
    return 0;
}

/* Applies one -X key=value option (kv is modified). Returns 0, or -1
 * after printing the problem. */
static inline int ktool_conf_x(rd_kafka_conf_t *conf, char *kv,
                               const char *prog)
{
    char *eq = strchr(kv, '=');
    if (eq == NULL) {
        fprintf(stderr, "%s: -X wants key=value\n", prog);
        return -1;
    }
    *eq = '\0';
    const char *pair[] = {kv, eq + 1, NULL};
    return ktool_conf_set(conf, pair, prog);
}

#endif
