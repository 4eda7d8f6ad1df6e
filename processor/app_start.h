/* app_start.h - the start-up that `cardwatch run` and `cardwatch replay`
 * share: the fingerprint key, the rule set, and Redis with the
 * exposed-card set on it.
 *
 * Both commands hold a struct app_core inside their own state (its
 * address must stay put: the Redis connection reports to it) and tear
 * down the rest of their wiring around app_core_close_redis() and
 * app_core_free(), in the order their own modules need.
 */
#ifndef CARDWATCH_APP_START_H
#define CARDWATCH_APP_START_H

#include <stddef.h>

#include <event2/event.h>

#include "card.h"
#include "config.h"
#include "exposure.h"
#include "metrics.h"
#include "redis_conn.h"
#include "rules.h"

struct app_core {
    struct card_key *key;
    struct ruleset *rules;
    struct rconn *redis;
    struct exposure *exposure;
};

/* Loads the fingerprint key from key_file and the rule set from
 * rules_path ("" = the built-in rule); each rule warning is logged (at
 * WARN, module "rules"). Returns 0, or -1 with the reason in err ("out of
 * memory at start-up" for the built-in rule); what was loaded before the
 * failure stays in core for app_core_free(). */
int app_start_local(struct app_core *core, const char *key_file,
                    const char *rules_path, char *err, size_t errlen);

struct app_start_redis {
    const char *while_down;    /* the connection is down: "intake pauses" */
    const char *while_missing; /* the set fails its check (a literal) */
    int filter;                /* exposure_opts.filter: lookups follow */
    struct metrics *metrics;   /* may be NULL */
    /* lookups can (1) or cannot (0) be answered: exposure_opts.on_state */
    exposure_state_cb on_state;
    void *state_arg;
};

/* Connects to Redis as [redis] says (redis_cfg_connect with its start-up
 * check: refused credentials or TLS fail here) and starts the exposed-set
 * reader on the connection with core->key's id; the connection's state
 * goes to the reader, which checks the set again after every reconnect.
 * Returns 0, or -1 with the reason in err; what was made stays in core
 * for app_core_close_redis(). */
int app_start_redis(struct app_core *core, struct event_base *base,
                    const struct config *c, const struct app_start_redis *o,
                    char *err, size_t errlen);

/* rules_warnings() callback: logs msg at WARN, module "rules" (arg
 * unused). */
void app_log_rule_warning(void *arg, const char *msg);

/* Destroys the connection (answering every pending command first, so
 * their owners see NULL replies), then the exposed-set reader. NULL
 * members are skipped; both are NULL afterwards. */
void app_core_close_redis(struct app_core *core);

/* Frees the rule set and the key; NULL members are skipped. */
void app_core_free(struct app_core *core);

#endif
