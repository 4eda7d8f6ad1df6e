/* rules.h - the rule language: parse, check, evaluate (pure).
 *
 * Rules live in rules/<name>.rules, written for the analysts who read them:
 *
 *   # Small amounts in quick succession: someone is testing the card.
 *   rule card-testing
 *     severity: high
 *     description: Small amounts in quick succession on an exposed card
 *     when: exposed and amount_minor <= 200
 *           and count(10m) >= 3
 *     suppress: 1h
 *
 * (full grammar in docs/rules.md). The pipeline hands rules_eval() the facts
 * of one transaction on an exposed card; the rule set answers with the
 * hits. Clean cards never reach rules_eval(): they cost no rule work.
 * A parsed rule set is immutable; hot reload swaps whole rule sets.
 */
#ifndef CARDWATCH_RULES_H
#define CARDWATCH_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "breach.h"
#include "config.h"
#include "txn.h"
#include "windows.h"

#define RULES_MAX_RULES 256

/* One breach that lists the card, with what Redis knows about it. */
struct rule_match {
    const struct breach *breach;
    int expiry_known; /* the list carried an expiry for this card */
    int expiry_match; /* ... and it equals the transaction's expiry */
};

/* Per-card suppression state of one rule: the event time and txn id of
 * the last alert this rule raised on the card (last_ms 0 = never). */
struct rule_last {
    int64_t last_ms;
    char txn_id[TXN_ID_MAX + 1];
};

struct rule_facts {
    const struct txn *txn;            /* PAN already wiped */
    const struct issuer *issuer;      /* NULL when the BIN is unknown */
    const struct rule_match *matches; /* every breach listing the card */
    size_t n_matches;
    /* Window aggregates, one per rules_windows() entry, same order; NULL
     * when the rule set uses no window. */
    const struct win_stats *windows;
    /* Suppression state per rule index (rules_count() entries), or NULL
     * (nothing suppressed). */
    const struct rule_last *last;
};

struct ruleset;

/* Parses rule text. filename is used in messages only. Returns a rule
 * set, or NULL with "filename:line:col: message" in errbuf (the first
 * error). Never crashes on any input (fuzzed). */
struct ruleset *rules_parse(const char *text, size_t len, const char *filename,
                            char *errbuf, size_t errlen);

/* Reads and parses a file (at most 1 MiB). Same contract as rules_parse;
 * an unreadable file is "path: <strerror>". */
struct ruleset *rules_load(const char *path, char *errbuf, size_t errlen);

/* The built-in rule set used when no rules file is configured: rule
 * "exposed-card-use" (high), fires when the card is exposed. Version
 * "builtin-1". Returns NULL only on allocation failure. */
struct ruleset *rules_builtin(void);

/* Frees a rule set. NULL is a no-op. */
void rules_destroy(struct ruleset *rs);

/* Version recorded in alerts and metrics: "builtin-1", or
 * "<file name>@<first 12 hex of SHA-256 of the text>". Borrowed. */
const char *rules_version(const struct ruleset *rs);

/* Number of rules, and the id / severity / description / suppress span
 * (ms, 0 = none) of rule i (borrowed strings). */
size_t rules_count(const struct ruleset *rs);
const char *rules_id(const struct ruleset *rs, size_t i);
enum severity rules_severity(const struct ruleset *rs, size_t i);
const char *rules_description(const struct ruleset *rs, size_t i);
int64_t rules_suppress_ms(const struct ruleset *rs, size_t i);

/* The distinct window lengths (ms) the rules use, ascending; the
 * aggregates in rule_facts.windows follow this order. Returns the count
 * (<= WIN_MAX_WINDOWS) and points *out at an array owned by rs. */
size_t rules_windows(const struct ruleset *rs, const int64_t **out);

/* Whether evaluating rs needs per-card state: 1 when a rule uses a window
 * or has a suppress span, 0 otherwise (and for NULL). The one place that
 * decides it: run and replay read and write card state (window entries,
 * suppressions) only when it does. */
int rules_need_state(const struct ruleset *rs);

/* Calls fn once per warning (e.g. "rules/x.rules:12: rule 'a' can never
 * fire: amount_minor < 0 is always false") with the warning text. Returns
 * the number of warnings. */
size_t rules_warnings(const struct ruleset *rs,
                      void (*fn)(void *arg, const char *msg), void *arg);

/* Evaluates every rule on f. Writes the rules whose condition holds and
 * that are not suppressed into hits (up to cap) and returns how many
 * (0: no alert). fired (rules_count() entries, may be NULL) gets 1 for a
 * rule whose condition held, suppressed or not; suppressed likewise gets
 * 1 for a condition that held but was suppressed (counted in metrics).
 * active (n_matches entries, may be NULL) marks the breaches whose window
 * started at or before the event time (listed in the alert). A rule is
 * suppressed when last[i].last_ms != 0, last[i].txn_id differs from this
 * transaction's id, and 0 <= event_time - last_ms < suppress span. */
size_t rules_eval(const struct ruleset *rs, const struct rule_facts *f,
                  struct rule_hit *hits, size_t cap, int *fired,
                  int *suppressed, int *active);

/* Explains rule i on f in one line for analysts, e.g.
 * "card-testing: yes: exposed (yes) and amount_minor <= 200 (150) and
 * count(10m) >= 3 (4)". Returns the length written (truncated to fit). */
int rules_explain(const struct ruleset *rs, size_t i,
                  const struct rule_facts *f, char *buf, size_t buflen);

#endif
