/* rules.h - the rule-set interface the pipeline evaluates (pure).
 *
 * The pipeline hands rules_eval() the facts of one transaction on an
 * exposed card; the rule set answers with the hits. Clean cards never
 * reach rules_eval(): they cost no rule work.
 */
#ifndef CARDWATCH_RULES_H
#define CARDWATCH_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "breach.h"
#include "config.h"
#include "txn.h"

/* One breach that lists the card, with what Redis knows about it. */
struct rule_match {
    const struct breach *breach;
    int expiry_known; /* the list carried an expiry for this card */
    int expiry_match; /* ... and it equals the transaction's expiry */
};

struct rule_facts {
    const struct txn *txn;            /* PAN already wiped */
    const struct issuer *issuer;      /* NULL when the BIN is unknown */
    const struct rule_match *matches; /* every breach listing the card */
    size_t n_matches;
};

struct ruleset;

/* The built-in rule set used when no rules file is configured: rule
 * "exposed-card-use" (high) fires when the card is listed in a breach
 * whose window started at or before the event time. Returns NULL only on
 * allocation failure. Free with rules_destroy(). */
struct ruleset *rules_builtin(void);

/* Frees a rule set. NULL is a no-op. */
void rules_destroy(struct ruleset *rs);

/* Version string recorded in alerts (e.g. "builtin-1"). Borrowed. */
const char *rules_version(const struct ruleset *rs);

/* Evaluates the rule set on f. Writes up to cap hits and returns how many
 * fired (0: no alert). Also marks in active[i] (n_matches entries, may be
 * NULL) whether match i counts as an exposure at the event time (window
 * start <= event time), so the alert lists only those breaches. */
size_t rules_eval(const struct ruleset *rs, const struct rule_facts *f,
                  struct rule_hit *hits, size_t cap, int *active);

#endif
