/* app_start.c - see app_start.h. */
#include "app_start.h"

#include <stdio.h>

#include "log.h"
#include "redis_cfg.h"

void app_log_rule_warning(void *arg, const char *msg)
{
    (void)arg;
    log_warn("rules", "%s", msg);
}

int app_start_local(struct app_core *core, const char *key_file,
                    const char *rules_path, char *err, size_t errlen)
{
    core->key = card_key_load(key_file, err, errlen);
    if (core->key == NULL) {
        return -1;
    }
    if (rules_path[0] == '\0') {
        core->rules = rules_builtin();
        if (core->rules == NULL) {
            snprintf(err, errlen, "out of memory at start-up");
            return -1;
        }
        return 0;
    }
    core->rules = rules_load(rules_path, err, errlen);
    if (core->rules == NULL) {
        return -1;
    }
    rules_warnings(core->rules, app_log_rule_warning, NULL);
    return 0;
}

/* The connection's state: the exposure module checks the set again. */
static void on_link(void *arg, int up)
{
    struct app_core *core = arg;
    if (core->exposure != NULL) {
        exposure_link_state(core->exposure, up);
    }
}

int app_start_redis(struct app_core *core, struct event_base *base,
                    const struct config *c, const struct app_start_redis *o,
                    char *err, size_t errlen)
{
    struct redis_cfg_use ru = {
        .name = "redis",
        .while_down = o->while_down,
        .metrics = o->metrics,
        .on_state = on_link,
        .state_arg = core,
        .startup_check = 1,
    };
    core->redis = redis_cfg_connect(base, c, &ru, err, errlen);
    if (core->redis == NULL) {
        return -1;
    }
    struct exposure_opts xo = {
        .prefix = c->redis_prefix,
        .key_id = card_key_id(core->key),
        .metrics = o->metrics,
        .on_state = o->on_state,
        .state_arg = o->state_arg,
        .while_down = o->while_missing,
        .filter = o->filter,
    };
    core->exposure = exposure_new(base, core->redis, &xo, err, errlen);
    return core->exposure != NULL ? 0 : -1;
}

void app_core_close_redis(struct app_core *core)
{
    rconn_destroy(core->redis); /* answers every pending command first */
    core->redis = NULL;
    exposure_destroy(core->exposure);
    core->exposure = NULL;
}

void app_core_free(struct app_core *core)
{
    rules_destroy(core->rules);
    core->rules = NULL;
    card_key_destroy(core->key);
    core->key = NULL;
}
