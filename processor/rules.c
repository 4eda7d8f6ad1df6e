/* rules.c - the rule set the pipeline evaluates (pure).
 *
 * For now only the built-in set exists: one rule, "exposed-card-use"
 * (high), that fires when a breach listing the card had started by the
 * transaction's event time. The rule language will replace the internals
 * of struct ruleset; the interface in rules.h stays.
 */
#include "rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUILTIN_VERSION "builtin-1"
#define BUILTIN_RULE_ID "exposed-card-use"

struct ruleset {
    char version[RULESET_VERSION_MAX + 1];
};

struct ruleset *rules_builtin(void)
{
    struct ruleset *rs = calloc(1, sizeof(*rs));

    if (rs == NULL) {
        return NULL;
    }
    snprintf(rs->version, sizeof(rs->version), "%s", BUILTIN_VERSION);
    return rs;
}

void rules_destroy(struct ruleset *rs)
{
    free(rs);
}

const char *rules_version(const struct ruleset *rs)
{
    return rs != NULL ? rs->version : "";
}

/* A match counts as an exposure when its breach window had started at the
 * event time (event time only: a replay gives the live answer). */
static int match_active(const struct rule_match *m, const struct txn *t)
{
    return m->breach != NULL && m->breach->window_start_ms <= t->event_time_ms;
}

/* Returns the number of hits written, which is the number that fired
 * unless cap is smaller. */
size_t rules_eval(const struct ruleset *rs, const struct rule_facts *f,
                  struct rule_hit *hits, size_t cap, int *active)
{
    size_t n_active = 0;

    if (f == NULL) {
        return 0;
    }
    for (size_t i = 0; i < f->n_matches; i++) {
        int a = rs != NULL && f->txn != NULL && f->matches != NULL &&
                match_active(&f->matches[i], f->txn);
        if (active != NULL) {
            active[i] = a;
        }
        n_active += (size_t)a;
    }
    if (n_active == 0 || hits == NULL || cap == 0) {
        return 0;
    }
    memset(&hits[0], 0, sizeof(hits[0]));
    snprintf(hits[0].rule_id, sizeof(hits[0].rule_id), "%s", BUILTIN_RULE_ID);
    hits[0].severity = SEVERITY_HIGH;
    return 1;
}
