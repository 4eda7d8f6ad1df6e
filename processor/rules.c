/* rules.c - what the rule language's files share: the facts table, the
 * small helpers (growing arrays, a bounded text builder, fact and enum
 * names), and the accessors of a parsed rule set (rules.h).
 *
 * The rule language is one module in five files around the private
 * header rules_int.h: rules_parse.c (text to a tree per rule),
 * rules_lint.c (parse-time warnings), rules_eval.c (trees to jump
 * programs, evaluation), rules_print.c (conditions as text: warnings and
 * explain), and this file.
 */
#include "rules.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules_int.h"

/* ---- facts ---- */

const struct fact_def rules_facts[F_COUNT] = {
    [F_TXN_ID] = {"txn_id", VT_STR, 0, 0, 0, 0},
    [F_AMOUNT] = {"amount_minor", VT_INT, 0, 0, 0, INT64_MAX},
    [F_CURRENCY] = {"currency", VT_STR, 0, 3, 0, 0},
    [F_MCC] = {"mcc", VT_INT, 0, 0, 0, 9999},
    [F_MERCHANT_ID] = {"merchant_id", VT_STR, 0, 0, 0, 0},
    [F_MERCHANT_COUNTRY] = {"merchant_country", VT_STR, 0, 2, 0, 0},
    [F_CHANNEL] = {"channel", VT_CHANNEL, 0, 0, 1, 5},
    [F_ENTRY_MODE] = {"entry_mode", VT_ENTRY, 0, 0, 1, 5},
    [F_CVV2_PRESENTED] = {"cvv2_presented", VT_BOOL, 0, 0, 0, 1},
    [F_RESPONSE] = {"response", VT_RESPONSE, 0, 0, 1, 2},
    [F_EVENT_TIME] = {"event_time_ms", VT_INT, 0, 0, 1, INT64_MAX},
    [F_EXPOSED] = {"exposed", VT_BOOL, 1, 0, 0, 1},
    [F_CNP] = {"cnp", VT_BOOL, 0, 0, 0, 1},
    [F_EXPIRY_EXPOSED] = {"expiry_exposed", VT_BOOL, 1, 0, 0, 1},
    [F_CVV2_EXPOSED] = {"cvv2_exposed", VT_BOOL, 1, 0, 0, 1},
    [F_NAME_EXPOSED] = {"name_exposed", VT_BOOL, 1, 0, 0, 1},
    [F_ADDRESS_EXPOSED] = {"address_exposed", VT_BOOL, 1, 0, 0, 1},
    [F_EXPIRY_MATCHES] = {"expiry_matches", VT_BOOL, 1, 0, 0, 1},
    /* an active window started at or before the event: never negative */
    [F_DAYS_START] = {"days_since_exposure_start", VT_INT, 0, 0, 0, INT64_MAX},
    [F_DAYS_END] = {"days_since_exposure_end", VT_INT, 0, 0, INT64_MIN,
                    INT64_MAX},
    [F_ISSUER_ID] = {"issuer_id", VT_STR, 0, 0, 0, 0},
    [F_ISSUER_COUNTRY] = {"issuer_country", VT_STR, 0, 0, 0, 0},
};

const struct wfunc_def rules_wfuncs[WF_N] = {
    [WF_COUNT] = {"count", 1},
    [WF_DECLINED] = {"count_declined", 0},
    [WF_SUM] = {"sum_amount", 0},
    [WF_MERCHANTS] = {"distinct_merchants", 0},
    [WF_COUNTRIES] = {"distinct_countries", 0},
};

const char *const rules_op_names[OP_GE + 1] = {"==", "!=", "<",
                                               "<=", ">",  ">="};

/* ---- small helpers ---- */

/* Grows *p (elements of size el) so that it holds at least need. */
int rules_grow(void **p, size_t *cap, size_t need, size_t el)
{
    size_t n = *cap != 0 ? *cap : 16;
    void *q;

    if (need <= *cap) {
        return 0;
    }
    while (n < need) {
        if (n > SIZE_MAX / 2 / el) {
            return -1;
        }
        n *= 2;
    }
    q = realloc(*p, n * el);
    if (q == NULL) {
        return -1;
    }
    *p = q;
    *cap = n;
    return 0;
}

void rules_sb_init(struct sb *b, char *buf, size_t cap)
{
    b->buf = cap > 0 ? buf : NULL;
    b->cap = b->buf != NULL ? cap : 0;
    b->len = 0;
    if (b->cap > 0) {
        b->buf[0] = '\0';
    }
}

void rules_sb_putn(struct sb *b, const char *s, size_t n)
{
    if (b->cap == 0) {
        return;
    }
    if (n > b->cap - 1 - b->len) {
        n = b->cap - 1 - b->len;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

void rules_sb_puts(struct sb *b, const char *s)
{
    rules_sb_putn(b, s, strlen(s));
}

/* Cuts the text back to its first len bytes. */
void rules_sb_truncate(struct sb *b, size_t len)
{
    if (b->cap > 0 && len < b->len) {
        b->len = len;
        b->buf[len] = '\0';
    }
}

void rules_sb_printf(struct sb *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0) {
        rules_sb_putn(b, tmp,
                      (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
    }
}

/* Appends s[0..n) as a double-quoted rule string literal. */
void rules_sb_quoted(struct sb *b, const char *s, size_t n)
{
    rules_sb_putn(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            rules_sb_putn(b, "\\", 1);
        }
        rules_sb_putn(b, &s[i], 1);
    }
    rules_sb_putn(b, "\"", 1);
}

const char *rules_enum_name(uint8_t type, int64_t v)
{
    if (v < 0 || v > 255) {
        return "?";
    }
    switch (type) {
    case VT_CHANNEL:
        return txn_channel_name((enum txn_channel)v);
    case VT_ENTRY:
        return txn_entry_mode_name((enum txn_entry_mode)v);
    case VT_RESPONSE:
        return txn_response_name((enum txn_response)v);
    default:
        return "?";
    }
}

/* Writes the name of a fact slot ("amount_minor", "count(10m)"). */
void rules_slot_name(const struct ruleset *rs, size_t slot, struct sb *b)
{
    char d[32];

    if (slot < F_COUNT) {
        rules_sb_puts(b, rules_facts[slot].name);
        return;
    }
    slot -= F_COUNT;
    if (rs->wspell[slot / WF_N][0] != '\0') {
        rules_sb_printf(b, "%s(%s)", rules_wfuncs[slot % WF_N].name,
                        rs->wspell[slot / WF_N]);
        return;
    }
    win_duration_format(rs->windows[slot / WF_N], d, sizeof(d));
    rules_sb_printf(b, "%s(%s)", rules_wfuncs[slot % WF_N].name, d);
}

/* ---- the compiled form (rules.h) ---- */

void rules_destroy(struct ruleset *rs)
{
    if (rs == NULL) {
        return;
    }
    for (size_t i = 0; i < rs->n_warnings; i++) {
        free(rs->warnings[i]);
    }
    free(rs->warnings);
    free(rs->name);
    free(rs->rules);
    free(rs->nodes);
    free(rs->kids);
    free(rs->lits);
    free(rs->pool);
    free(rs->prog);
    free(rs);
}

const char *rules_version(const struct ruleset *rs)
{
    return rs != NULL ? rs->version : "";
}

size_t rules_count(const struct ruleset *rs)
{
    return rs != NULL ? rs->n_rules : 0;
}

const char *rules_id(const struct ruleset *rs, size_t i)
{
    return rs != NULL && i < rs->n_rules ? rs->rules[i].hit.rule_id : "";
}

enum severity rules_severity(const struct ruleset *rs, size_t i)
{
    return rs != NULL && i < rs->n_rules ? rs->rules[i].hit.severity
                                         : SEVERITY_NONE;
}

const char *rules_description(const struct ruleset *rs, size_t i)
{
    return rs != NULL && i < rs->n_rules ? rs->pool + rs->rules[i].desc : "";
}

int64_t rules_suppress_ms(const struct ruleset *rs, size_t i)
{
    return rs != NULL && i < rs->n_rules ? rs->rules[i].suppress_ms : 0;
}

size_t rules_windows(const struct ruleset *rs, const int64_t **out)
{
    if (out != NULL) {
        *out = rs != NULL ? rs->windows : NULL;
    }
    return rs != NULL ? rs->n_windows : 0;
}

size_t rules_warnings(const struct ruleset *rs,
                      void (*fn)(void *arg, const char *msg), void *arg)
{
    if (rs == NULL) {
        return 0;
    }
    if (fn != NULL) {
        for (size_t i = 0; i < rs->n_warnings; i++) {
            fn(arg, rs->warnings[i]);
        }
    }
    return rs->n_warnings;
}

int rules_need_state(const struct ruleset *rs)
{
    const int64_t *wins = NULL;
    int need = rules_windows(rs, &wins) > 0;
    for (size_t i = 0; i < rules_count(rs); i++) {
        need |= rules_suppress_ms(rs, i) > 0;
    }
    return need;
}
