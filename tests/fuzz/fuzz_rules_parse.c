/* fuzz_rules_parse.c - libFuzzer target for rules_parse.
 * Invariants: no crash or sanitizer report; a failed parse leaves a
 * NUL-terminated "<rules>:line:col: message"; a parsed set evaluates on a
 * fixed set of facts (exposed and not, with and without windows and
 * suppression state) with hits equal to the rules that fired and were not
 * suppressed, in order; explain (which walks the condition tree) agrees
 * with the compiled program; explain and warnings stay within their
 * buffers. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_warning(void *arg, const char *msg)
{
    size_t *n = arg;

    if (msg == NULL || strncmp(msg, "<rules>:", 8) != 0) {
        abort();
    }
    (*n)++;
}

static void check_eval(const struct ruleset *rs, const struct rule_facts *f)
{
    struct rule_hit hits[RULES_MAX_RULES];
    int fired[RULES_MAX_RULES], sup[RULES_MAX_RULES], active[2];
    size_t n = rules_count(rs);
    size_t nh = rules_eval(rs, f, hits, RULES_MAX_RULES, fired, sup, active);
    size_t k = 0;
    char buf[256];

    for (size_t i = 0; i < n; i++) {
        if ((fired[i] != 0 && fired[i] != 1) || (sup[i] && !fired[i])) {
            abort();
        }
        if (fired[i] && !sup[i]) {
            if (k >= nh || strcmp(hits[k].rule_id, rules_id(rs, i)) != 0 ||
                hits[k].severity != rules_severity(rs, i)) {
                abort();
            }
            k++;
        }
        /* explain walks the tree, eval runs the compiled program: the
         * verdicts agree */
        size_t idlen = strlen(rules_id(rs, i));
        const char *verdict = !fired[i] ? ": no: "
                              : sup[i]  ? ": yes (suppressed): "
                                        : ": yes: ";
        int len = rules_explain(rs, i, f, buf, sizeof(buf));
        if (len < 0 || (size_t)len >= sizeof(buf) ||
            strlen(buf) != (size_t)len ||
            strncmp(buf, rules_id(rs, i), idlen) != 0 ||
            strncmp(buf + idlen, verdict,
                    strnlen(verdict, sizeof(buf) - 1 - idlen)) != 0) {
            abort();
        }
    }
    if (k != nh) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    struct ruleset *rs;
    struct breach b = {
        .id = "b1",
        .window_start_ms = 1618272000000LL,
        .window_end_ms = 1618272000000LL + 30 * 86400000LL - 1,
        .elements = BREACH_EL_PAN | BREACH_EL_EXPIRY | BREACH_EL_CVV2,
    };
    struct breach later = b;
    struct rule_match m[2] = {
        {.breach = &b, .expiry_known = 1, .expiry_match = 1},
        {.breach = &later},
    };
    struct txn t = {
        .txn_id = "t-1",
        .amount_minor = 150,
        .currency = "EUR",
        .mcc = 5411,
        .merchant_id = "m-1",
        .merchant_country = "FR",
        .channel = TXN_CHANNEL_ECOMMERCE,
        .entry_mode = TXN_ENTRY_KEYED,
        .cvv2_presented = true,
        .response = TXN_RESPONSE_DECLINED,
        .event_time_ms = 1618272000000LL + 10 * 86400000LL,
    };
    struct issuer iss = {.id = "bank-de", .home_country = "DE"};
    struct win_stats ws[WIN_MAX_WINDOWS];
    struct rule_last last[RULES_MAX_RULES];
    struct rule_facts f = {&t, &iss, m, 2, NULL, NULL};
    const int64_t *w;
    size_t nw, nwarn = 0;

    memset(err, 0x5a, sizeof(err));
    rs = rules_parse((const char *)data, size, NULL, err, sizeof(err));
    if (rs == NULL) {
        if (memchr(err, '\0', sizeof(err)) == NULL ||
            strncmp(err, "<rules>:", 8) != 0) {
            abort();
        }
        return 0;
    }
    if (rules_count(rs) == 0 || rules_count(rs) > RULES_MAX_RULES ||
        strlen(rules_version(rs)) > RULESET_VERSION_MAX) {
        abort();
    }
    if (rules_warnings(rs, on_warning, &nwarn) != nwarn) {
        abort();
    }
    nw = rules_windows(rs, &w);
    if (nw > WIN_MAX_WINDOWS) {
        abort();
    }
    for (size_t i = 0; i < nw; i++) {
        if (w[i] <= 0 || (i > 0 && w[i] <= w[i - 1])) {
            abort();
        }
        ws[i] = (struct win_stats){(int64_t)i + 1, (int64_t)i, 100 * (int64_t)i,
                                   1, 1};
    }
    later.window_start_ms = t.event_time_ms + 1;
    later.elements = BREACH_EL_NAME;

    /* exposed, no windows (the current transaction alone) */
    check_eval(rs, &f);
    /* with window stats and suppression state */
    f.windows = ws;
    for (size_t i = 0; i < rules_count(rs); i++) {
        last[i].last_ms = t.event_time_ms - (int64_t)i * 1000;
        snprintf(last[i].txn_id, sizeof(last[i].txn_id), "t-%zu", i % 2);
    }
    f.last = last;
    check_eval(rs, &f);
    /* before the breach window, unknown issuer, card present */
    t.event_time_ms = b.window_start_ms - 1;
    t.channel = TXN_CHANNEL_CARD_PRESENT;
    f.issuer = NULL;
    check_eval(rs, &f);
    rules_destroy(rs);
    return 0;
}
