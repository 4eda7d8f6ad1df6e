/* feed_outcome.h - what issuers report on alerts (pure): outcomes and
 * their notes, the body of POST /v1/alerts/{id}/outcome, what an outcome
 * needs from a stored alert, and the issuer statistics of alerts and
 * outcomes (GET /v1/stats, the metrics).
 *
 * Nothing here does I/O, reads a clock or logs: results go into memory the
 * caller owns (or a malloc'd string the caller frees, as each function
 * says).
 */
#ifndef CARDWATCH_FEED_OUTCOME_H
#define CARDWATCH_FEED_OUTCOME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "alert.h"
#include "breach.h"
#include "card.h"

#define FEED_NOTE_MAX 500 /* characters (Unicode code points) */
#define FEED_NOTE_BYTES (FEED_NOTE_MAX * 4 + 1)

/* ---- outcomes ---- */

enum feed_outcome {
    FEED_CONFIRMED_FRAUD = 0,
    FEED_LEGITIMATE,
    FEED_CARD_REISSUED,
    FEED_CARD_BLOCKED,
    FEED_OUTCOME_COUNT
};

/* "confirmed_fraud", "legitimate", "card_reissued", "card_blocked". */
const char *feed_outcome_name(enum feed_outcome o);

/* Parses an outcome name. Returns 0, or -1 when unknown. */
int feed_outcome_parse(const char *s, size_t len, enum feed_outcome *o);

/* 1 when the outcome retires the card (reissued, blocked), else 0. */
int feed_outcome_retires(enum feed_outcome o);

/* 1 when s[0..len) is an acceptable note: valid UTF-8, at most
 * FEED_NOTE_MAX characters, none of them a control character (C0, DEL,
 * C1; so no newline or tab) or a line/paragraph separator. */
int feed_note_valid(const char *s, size_t len);

/* Parses the body of POST /v1/alerts/{id}/outcome: a JSON object with
 * "outcome" (required) and "note" (optional string or null); no other
 * members. The note is copied into note (FEED_NOTE_BYTES). Returns 0, or
 * -1 with a message for the client in err. */
int feed_outcome_body(const char *body, size_t len, enum feed_outcome *o,
                      char note[FEED_NOTE_BYTES], char *err, size_t errlen);

/* What RMODEL_LUA_OUTCOME needs from a stored alert. */
struct feed_alert_facts {
    char rules[ALERT_MAX_HITS * (RULE_ID_MAX + 1) + 1];          /* csv */
    char breaches[ALERT_MAX_BREACHES * (BREACH_ID_MAX + 1) + 1]; /* csv */
    char kid[CARD_KEY_ID_MAX + 1];
    char fp[CARD_FP_SIZE];
};

/* Reads an alert JSON (as the ledger stored it) for the rule ids of its
 * hits, the breach ids of its breaches and its card_fingerprint
 * "<kid>:<32 hex>". Ids with a comma or outside their limits are refused.
 * Returns 0, or -1 when the JSON is not such an alert. */
int feed_alert_facts_parse(const char *json, size_t len,
                           struct feed_alert_facts *out);

/* ---- issuer statistics (the <p>:feedstats:<issuer> hash) ---- */

struct feed_rule_stat {
    char rule[RULE_ID_MAX + 1];
    uint64_t alerts;
    uint64_t outcome[FEED_OUTCOME_COUNT];
};

struct feed_sev_stat {
    char name[16];
    uint64_t n;
};

struct feed_stats {
    uint64_t alerts;
    uint64_t outcome[FEED_OUTCOME_COUNT];
    struct feed_sev_stat sev[8];
    size_t n_sev;
    struct feed_rule_stat *rules; /* sorted by rule id after _finish */
    size_t n_rules, cap_rules;
};

/* Adds one field/value pair of the hash (HGETALL): alerts, severity:<s>,
 * rule:<id>, outcome:<o>, rule_outcome:<id>:<o>; other fields and values
 * that are not counts are ignored. Returns 0, or -1 on allocation
 * failure. Start from a zeroed struct. */
int feed_stats_add(struct feed_stats *s, const char *field, size_t flen,
                   const char *val, size_t vlen);

/* Sorts the rules by id (call after the last _add). */
void feed_stats_finish(struct feed_stats *s);

/* Frees what _add allocated and zeroes s. */
void feed_stats_free(struct feed_stats *s);

/* The precision of a rule: confirmed_fraud / (confirmed_fraud +
 * legitimate); -1 when neither was reported. */
double feed_rule_precision(const struct feed_rule_stat *r);

/* The body of GET /v1/stats as a malloc'd NUL-terminated JSON string:
 * {"issuer","alerts","by_severity":{..},"by_outcome":{all four},
 *  "by_rule":{"<rule>":{"alerts","confirmed_fraud","legitimate",
 *  "card_reissued","card_blocked","precision": number or null}}}.
 * Returns NULL on allocation failure. */
char *feed_stats_json(const struct feed_stats *s, const char *issuer);

/* Writes Prometheus samples (no HELP/TYPE lines) of one issuer to out:
 * cardwatch_rule_outcomes_total{issuer,rule,outcome} for every rule and
 * outcome, and cardwatch_rule_precision{issuer,rule} for rules with a
 * precision. which: 0 = outcomes, 1 = precision. */
void feed_stats_prom(FILE *out, const struct feed_stats *s, const char *issuer,
                     int which);

#endif
