/* test_rules.c - the rule language: parser errors, evaluation of every
 * fact and operator, windows, suppression, the default pack, explain,
 * warnings, versions, and the built-in rule set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "failalloc.h"
#include "rules.h"

/* 2021-04-13T00:00:00.000Z, the first day of a breach window */
#define WINDOW_START 1618272000000LL
#define DAY 86400000LL
#define HOUR 3600000LL
#define MIN 60000LL

/* a rule header for condition tests: lines 1-3, "when:" on line 4 */
#define R "rule r\n  severity: high\n  description: d\n"
#define W(cond) R "  when: " cond "\n"

/* ---- fixtures ---- */

/* A transaction 10 days and 5 hours into a 30-day breach window that
 * exposed PAN, expiry and CVV2; e-commerce, keyed, 1.50 EUR at a French
 * grocery; issuer in Germany. */
struct fx {
    struct txn txn;
    struct breach breach;
    struct rule_match match;
    struct issuer issuer;
    struct win_stats ws[WIN_MAX_WINDOWS];
    struct rule_facts f;
};

static struct breach make_breach(const char *id, int64_t start, uint32_t el)
{
    struct breach b;

    memset(&b, 0, sizeof(b));
    snprintf(b.id, sizeof(b.id), "%s", id);
    b.window_start_ms = start;
    b.window_end_ms = start + 30 * DAY - 1;
    b.elements = el;
    return b;
}

static void fx_init(struct fx *x)
{
    memset(x, 0, sizeof(*x));
    snprintf(x->txn.txn_id, sizeof(x->txn.txn_id), "t-1");
    x->txn.amount_minor = 150;
    snprintf(x->txn.currency, sizeof(x->txn.currency), "EUR");
    x->txn.mcc = 5411;
    snprintf(x->txn.merchant_id, sizeof(x->txn.merchant_id), "m-1");
    snprintf(x->txn.merchant_country, sizeof(x->txn.merchant_country), "FR");
    x->txn.channel = TXN_CHANNEL_ECOMMERCE;
    x->txn.entry_mode = TXN_ENTRY_KEYED;
    x->txn.cvv2_presented = true;
    x->txn.response = TXN_RESPONSE_APPROVED;
    x->txn.event_time_ms = WINDOW_START + 10 * DAY + 5 * HOUR;
    x->breach = make_breach("shop-2021", WINDOW_START,
                            BREACH_EL_PAN | BREACH_EL_EXPIRY | BREACH_EL_CVV2);
    x->match.breach = &x->breach;
    x->match.expiry_known = 1;
    x->match.expiry_match = 1;
    snprintf(x->issuer.id, sizeof(x->issuer.id), "bank-de");
    snprintf(x->issuer.home_country, sizeof(x->issuer.home_country), "DE");
    x->f.txn = &x->txn;
    x->f.issuer = &x->issuer;
    x->f.matches = &x->match;
    x->f.n_matches = 1;
}

/* Window stats that reveal which window they belong to: for a window of
 * M minutes, count M, declined M/2, sum 100*M, merchants M/10,
 * countries M/30. */
static void fx_windows(struct fx *x, const struct ruleset *rs)
{
    const int64_t *w;
    size_t n = rules_windows(rs, &w);

    for (size_t i = 0; i < n; i++) {
        int64_t m = w[i] / MIN;
        x->ws[i] = (struct win_stats){m, m / 2, 100 * m, m / 10, m / 30};
    }
    x->f.windows = x->ws;
}

static struct ruleset *parse_ok(const char *text)
{
    char err[512];
    struct ruleset *rs =
        rules_parse(text, strlen(text), "t.rules", err, sizeof(err));

    if (rs == NULL) {
        fail_msg("parse failed: %s\n%s", err, text);
    }
    return rs;
}

/* Evaluates a one-rule condition on x (window stats per fx_windows
 * unless x->f.windows was set to NULL by want_no_windows). */
static int holds_on(const char *cond, struct fx *x, int with_windows)
{
    char text[4096];
    struct ruleset *rs;
    struct rule_hit hits[4];
    int fired[1] = {-1}, sup[1] = {-1};
    size_t n;

    snprintf(text, sizeof(text), W("%s"), cond);
    rs = parse_ok(text);
    if (with_windows) {
        fx_windows(x, rs);
    } else {
        x->f.windows = NULL;
    }
    n = rules_eval(rs, &x->f, hits, 4, fired, sup, NULL);
    assert_int_equal(sup[0], 0);
    assert_int_equal(n, (size_t)fired[0]);
    if (n == 1) {
        assert_string_equal(hits[0].rule_id, "r");
        assert_int_equal(hits[0].severity, SEVERITY_HIGH);
    }
    rules_destroy(rs);
    return fired[0];
}

struct case_ {
    const char *cond;
    int want;
};

static void run_cases(const struct case_ *c, size_t n, struct fx *x)
{
    for (size_t i = 0; i < n; i++) {
        int got = holds_on(c[i].cond, x, 1);
        if (got != c[i].want) {
            fail_msg("'%s': got %d, want %d", c[i].cond, got, c[i].want);
        }
    }
}

#define RUN(cases, x) run_cases((cases), sizeof(cases) / sizeof((cases)[0]), x)

/* ---- the parser's errors ---- */

struct err_case {
    const char *text;
    const char *err;
};

static void check_errors(const struct err_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char err[512] = "untouched";
        struct ruleset *rs = rules_parse(c[i].text, strlen(c[i].text),
                                         "t.rules", err, sizeof(err));
        if (rs != NULL) {
            rules_destroy(rs);
            fail_msg("parsed: %s", c[i].text);
        }
        if (strcmp(err, c[i].err) != 0) {
            fail_msg("text:\n%s\ngot:  %s\nwant: %s", c[i].text, err, c[i].err);
        }
    }
}

#define CHECK_ERRORS(t) check_errors((t), sizeof(t) / sizeof((t)[0]))

static void test_errors_lines(void **state)
{
    static const struct err_case cases[] = {
        {"", "t.rules:1:1: no rules in the file"},
        {"# only a comment\n\n   \n", "t.rules:1:1: no rules in the file"},
        {"  severity: high\n",
         "t.rules:1:3: key 'severity' outside a rule (start with 'rule <id>')"},
        {"severity: high\n",
         "t.rules:1:1: key 'severity' must be indented under a 'rule' line"},
        {"rules x\n",
         "t.rules:1:1: expected 'rule <id>' at the start of the line"},
        {"  exposed\n",
         "t.rules:1:3: expected 'rule <id>' at the start of the line"},
        {"rule\n", "t.rules:1:5: missing rule id after 'rule'"},
        {"rule   # no id\n", "t.rules:1:8: missing rule id after 'rule'"},
        {"rule Bad\n",
         "t.rules:1:6: bad rule id 'Bad' (lower-case letters, digits, '_' "
         "and '-', at most 63, starting with a letter or digit)"},
        {"rule -x\n",
         "t.rules:1:6: bad rule id '-x' (lower-case letters, digits, '_' "
         "and '-', at most 63, starting with a letter or digit)"},
        {"rule a.b\n",
         "t.rules:1:6: bad rule id 'a.b' (lower-case letters, digits, '_' "
         "and '-', at most 63, starting with a letter or digit)"},
        {"rule "
         "a234567890123456789012345678901234567890123456789012345678901234\n",
         "t.rules:1:6: bad rule id "
         "'a234567890123456789012345678901234567890...' (lower-case letters, "
         "digits, '_' and '-', at most 63, starting with a letter or digit)"},
        {"rule a b\n", "t.rules:1:8: unexpected text after the rule id"},
        {W("exposed") "rule r\n",
         "t.rules:5:6: duplicate rule id 'r' (first defined at line 1)"},
        {"rule a\n  sevrity: high\n",
         "t.rules:2:3: unknown key 'sevrity' (expected severity, "
         "description, when or suppress)"},
        {"rule a\n  sever-ity: high\n",
         "t.rules:2:3: unknown key 'sever-ity' (expected severity, "
         "description, when or suppress)"},
        {"rule a\n  Severity: high\n",
         "t.rules:2:3: unknown key 'Severity' (expected severity, "
         "description, when or suppress)"},
        {"rule a\n  severity: high\n  severity: low\n",
         "t.rules:3:3: duplicate key 'severity' in rule 'a'"},
        {W("exposed") "  when: cnp\n",
         "t.rules:5:3: duplicate key 'when' in rule 'r'"},
        {"rule a\n  description: d\n  when: exposed\n",
         "t.rules:1:1: rule 'a' has no severity"},
        {"rule a\n  description: d\n  when: exposed\nrule b\n",
         "t.rules:1:1: rule 'a' has no severity"},
        {"rule a\n  severity: low\n  when: exposed\n",
         "t.rules:1:1: rule 'a' has no description"},
        {"rule a\n  severity: low\n  description: d\n",
         "t.rules:1:1: rule 'a' has no 'when:' condition"},
        {R "  when:\n", "t.rules:4:3: empty condition"},
        {R "  when:   # nothing yet\n\n", "t.rules:4:3: empty condition"},
        {"rule a\n  severity: urgent\n",
         "t.rules:2:13: unknown severity 'urgent' (expected low, medium, "
         "high or critical)"},
        {"rule a\n  severity: HIGH\n",
         "t.rules:2:13: unknown severity 'HIGH' (expected low, medium, high "
         "or critical)"},
        {"rule a\n  severity: none\n",
         "t.rules:2:13: unknown severity 'none' (expected low, medium, high "
         "or critical)"},
        {"rule a\n  severity:\n", "t.rules:2:12: missing severity"},
        {"rule a\n  severity: high now\n",
         "t.rules:2:18: unexpected text after the severity"},
        {"rule a\n  severity: high\n  description:   \n",
         "t.rules:3:18: empty description"},
        {W("exposed") "  suppress: 10x\n",
         "t.rules:5:13: bad duration '10x' (e.g. 500ms, 30s, 10m, 1h, 7d; at "
         "most 366d)"},
        {W("exposed") "  suppress: 0s\n",
         "t.rules:5:13: bad duration '0s' (e.g. 500ms, 30s, 10m, 1h, 7d; at "
         "most 366d)"},
        {W("exposed") "  suppress: 367d\n",
         "t.rules:5:13: bad duration '367d' (e.g. 500ms, 30s, 10m, 1h, 7d; "
         "at most 366d)"},
        {W("exposed") "  suppress:\n", "t.rules:5:12: missing duration"},
        {W("exposed") "  suppress: 1h 2h\n",
         "t.rules:5:16: unexpected text after the duration"},
        {"rule a\n  severity: high\n  description: d\n    more text\n",
         "t.rules:4:5: expected 'key: value' (only a 'when:' condition "
         "continues on further lines)"},
        {W("exposed") "  suppress: 1h\n    and cnp\n",
         "t.rules:6:5: expected 'key: value' (only a 'when:' condition "
         "continues on further lines)"},
        {"rule a\x01\n", "t.rules:1:7: control character (byte 0x01)"},
        {"rule a\rb\n", "t.rules:1:7: control character (byte 0x0d)"},
        {"# caf\xff\n", "t.rules:1:6: invalid UTF-8"},
        {R "  when: currency == \"\xc3\"\n", "t.rules:4:22: invalid UTF-8"},
    };

    (void)state;
    CHECK_ERRORS(cases);
}

static void test_errors_conditions(void **state)
{
    static const struct err_case cases[] = {
        {W("foo"), "t.rules:4:9: unknown fact 'foo'"},
        {W("pan == 1"),
         "t.rules:4:9: unknown fact 'pan' (card data is not available to "
         "rules)"},
        {W("expiry == \"2612\""),
         "t.rules:4:9: unknown fact 'expiry' (card data is not available to "
         "rules)"},
        {W("channel > 3"),
         "t.rules:4:17: type mismatch: cannot compare channel (a channel) "
         "with 3 (an integer)"},
        {W("count(10m) == \"x\""),
         "t.rules:4:20: type mismatch: cannot compare count(10m) (an "
         "integer) with \"x\" (a string)"},
        {W("amount_minor == true"),
         "t.rules:4:22: type mismatch: cannot compare amount_minor (an "
         "integer) with true (a boolean)"},
        {W("merchant_country == mcc"),
         "t.rules:4:26: type mismatch: cannot compare merchant_country (a "
         "string) with mcc (an integer)"},
        {W("currency > \"EUR\""),
         "t.rules:4:18: '>' needs integers, but currency is a string"},
        {W("\"EUR\" > currency"),
         "t.rules:4:15: '>' needs integers, but currency is a string"},
        {W("exposed < true"),
         "t.rules:4:17: '<' needs integers, but exposed is a boolean"},
        {W("channel >= moto"),
         "t.rules:4:17: '>=' needs integers, but channel is a channel"},
        {W("channel == bogus"),
         "t.rules:4:20: unknown channel 'bogus' (expected card_present, "
         "ecommerce, moto, recurring or atm)"},
        {W("channel == \"Moto\""),
         "t.rules:4:20: unknown channel \"Moto\" (expected card_present, "
         "ecommerce, moto, recurring or atm)"},
        {W("channel == unspecified"),
         "t.rules:4:20: unknown channel 'unspecified' (expected "
         "card_present, ecommerce, moto, recurring or atm)"},
        {W("entry_mode in (chip, tap)"),
         "t.rules:4:30: unknown entry mode 'tap' (expected chip, "
         "contactless, magstripe, keyed or on_file)"},
        {W("response != ok"),
         "t.rules:4:21: unknown response 'ok' (expected approved or "
         "declined)"},
        {W("exposed == moto"), "t.rules:4:20: unknown fact 'moto'"},
        {W("(exposed"),
         "t.rules:4:9: unbalanced parentheses: '(' is not closed"},
        {W("(exposed or cnp"),
         "t.rules:4:9: unbalanced parentheses: '(' is not closed"},
        {W("exposed)"),
         "t.rules:4:16: unbalanced parentheses: ')' without '('"},
        {W("(exposed cnp)"), "t.rules:4:18: expected ')', got 'cnp'"},
        {W("currency == \"EUR"), "t.rules:4:21: unterminated string"},
        {W("currency == \"EUR\\"), "t.rules:4:21: unterminated string"},
        {W("currency == \"E\\n\""),
         "t.rules:4:23: unknown escape in string (only \\\" and \\\\)"},
        {W("exposed cnp"),
         "t.rules:4:17: unexpected 'cnp' after a complete condition "
         "(missing 'and' or 'or'?)"},
        {W("mcc in ()"), "t.rules:4:16: empty 'in ()' list"},
        {W("channel not in ( )"), "t.rules:4:24: empty 'in ()' list"},
        {W("count >= 3"), "t.rules:4:9: count needs a window, e.g. count(10m)"},
        {W("sum_amount() > 1"),
         "t.rules:4:9: sum_amount needs a window, e.g. sum_amount(10m)"},
        {W("count(10) >= 3"),
         "t.rules:4:15: bad duration '10' (e.g. 500ms, 30s, 10m, 1h, 7d; at "
         "most 366d)"},
        {W("count(367d) >= 3"),
         "t.rules:4:15: bad duration '367d' (e.g. 500ms, 30s, 10m, 1h, 7d; "
         "at most 366d)"},
        {W("distinct_merchants(\"1h\") > 1"),
         "t.rules:4:28: bad duration \"1h\" (e.g. 500ms, 30s, 10m, 1h, 7d; "
         "at most 366d)"},
        {W("count(10m >= 3"),
         "t.rules:4:19: expected ')' after the window, got '>='"},
        {W("count(10m"),
         "t.rules:4:14: unbalanced parentheses: '(' is not closed"},
        {W("exposed and"), "t.rules:4:20: unexpected end of condition"},
        {W("exposed or"), "t.rules:4:19: unexpected end of condition"},
        {W("not"), "t.rules:4:12: unexpected end of condition"},
        {W("currency == "), "t.rules:4:20: expected a fact or a value, got "
                            "the end of the condition"},
        {W("= 3"), "t.rules:4:9: unexpected '=' (compare with '==')"},
        {W("mcc = 3"), "t.rules:4:13: unexpected '=' (compare with '==')"},
        {W("!exposed"), "t.rules:4:9: unexpected '!' (use 'not' or '!=')"},
        {W("exposed & cnp"), "t.rules:4:17: unexpected character '&'"},
        {W("exposed && cnp"), "t.rules:4:17: unexpected character '&'"},
        {W("mcc == 'x'"), "t.rules:4:16: unexpected character '''"},
        {W("amount_minor > 9223372036854775808"),
         "t.rules:4:24: integer out of range: '9223372036854775808'"},
        {W("amount_minor > -9223372036854775809"),
         "t.rules:4:24: integer out of range: '-9223372036854775809'"},
        {W("mcc > 10m"), "t.rules:4:15: bad number '10m'"},
        {W("1 == 1"),
         "t.rules:4:9: comparison of two constants (one side must be a "
         "fact)"},
        {W("moto == ecommerce"), "t.rules:4:9: unknown fact 'moto'"},
        {W("amount_minor"),
         "t.rules:4:9: amount_minor is an integer, not a condition (compare "
         "it)"},
        {W("count(1h)"),
         "t.rules:4:9: count(1h) is an integer, not a condition (compare "
         "it)"},
        {W("channel"),
         "t.rules:4:9: channel is a channel, not a condition (compare it)"},
        {W("3"), "t.rules:4:9: expected a condition, got 3"},
        {W("\"x\""), "t.rules:4:9: expected a condition, got \"x\""},
        {W("exposed and and cnp"),
         "t.rules:4:21: expected a condition, got 'and'"},
        {W("()"), "t.rules:4:10: expected a condition, got ')'"},
        {W("exposed and ,"), "t.rules:4:21: expected a condition, got ','"},
        {W("== 3"), "t.rules:4:9: expected a condition, got '=='"},
        {W("in (1)"), "t.rules:4:9: expected a condition, got 'in'"},
        {W("mcc == and"),
         "t.rules:4:16: expected a fact or a value, got 'and'"},
        {W("mcc == ("), "t.rules:4:16: expected a fact or a value, got '('"},
        {W("mcc in (amount_minor)"),
         "t.rules:4:17: 'in' lists take values, not facts ('amount_minor')"},
        {W("mcc in (count(1h))"),
         "t.rules:4:17: 'in' lists take values, not facts ('count')"},
        {W("mcc in 5"), "t.rules:4:16: expected '(' after 'in', got '5'"},
        {W("mcc not in 5"),
         "t.rules:4:20: expected '(' after 'not in', got '5'"},
        {W("mcc in (1, 2"),
         "t.rules:4:16: unbalanced parentheses: '(' is not closed"},
        {W("mcc in (1 2)"), "t.rules:4:19: expected ',' or ')', got '2'"},
        {W("mcc in (1, \"x\")"),
         "t.rules:4:20: type mismatch: cannot compare mcc (an integer) with "
         "\"x\" (a string)"},
        {W("mcc in (1,)"), "t.rules:4:19: expected a value, got ')'"},
        {W("mcc in (foo)"), "t.rules:4:17: expected an integer, got 'foo'"},
        {W("mcc in (and)"), "t.rules:4:17: expected a value, got 'and'"},
        {W("mcc in (1m)"), "t.rules:4:17: bad number '1m'"},
        {W("channel in (moto, bogus)"),
         "t.rules:4:27: unknown channel 'bogus' (expected card_present, "
         "ecommerce, moto, recurring or atm)"},
        {W("exposed not 3"), "t.rules:4:21: expected 'in' after 'not', got "
                             "'3'"},
        {W("3 in (1)"), "t.rules:4:9: the left side of 'in' must be a fact"},
        {W("3 not in (1)"),
         "t.rules:4:9: the left side of 'not in' must be a fact"},
        {W("foo in (1)"), "t.rules:4:9: unknown fact 'foo'"},
        /* a condition on several lines: positions on the right line */
        {R "  when: exposed and\n        channel == bogus\n",
         "t.rules:5:20: unknown channel 'bogus' (expected card_present, "
         "ecommerce, moto, recurring or atm)"},
        {R "  when: exposed and\n  # a comment\n\n",
         "t.rules:4:20: unexpected end of condition"},
        {R "  when: (exposed\n     or cnp\n",
         "t.rules:4:9: unbalanced parentheses: '(' is not closed"},
        {R "  when:\n    exposed\n    cnp\n",
         "t.rules:6:5: unexpected 'cnp' after a complete condition (missing "
         "'and' or 'or'?)"},
    };

    (void)state;
    CHECK_ERRORS(cases);
}

/* Errors that need built inputs: nesting, window and rule limits, NUL. */
static void test_errors_limits(void **state)
{
    char *text = malloc(300000);
    char err[512];
    size_t n;
    struct ruleset *rs;

    (void)state;
    assert_non_null(text);

    /* 64 levels of parentheses are fine, 65 are not */
    for (int depth = 64; depth <= 65; depth++) {
        n = (size_t)snprintf(text, 300000, R "  when: ");
        for (int i = 0; i < depth; i++) {
            text[n++] = '(';
        }
        n += (size_t)sprintf(text + n, "exposed");
        for (int i = 0; i < depth; i++) {
            text[n++] = ')';
        }
        text[n++] = '\n';
        text[n] = '\0';
        rs = rules_parse(text, n, "t.rules", err, sizeof(err));
        if (depth == 64) {
            assert_non_null(rs);
            rules_destroy(rs);
        } else {
            assert_null(rs);
            assert_string_equal(err, "t.rules:4:73: condition nested too "
                                     "deeply (more than 64 levels)");
        }
    }
    /* 65 times 'not' */
    n = (size_t)snprintf(text, 300000, R "  when: ");
    for (int i = 0; i < 65; i++) {
        n += (size_t)sprintf(text + n, "not ");
    }
    n += (size_t)sprintf(text + n, "exposed\n");
    assert_null(rules_parse(text, n, "t.rules", err, sizeof(err)));
    assert_string_equal(err, "t.rules:4:265: condition nested too deeply "
                             "(more than 64 levels)");

    /* long and/or chains are not nesting */
    n = (size_t)snprintf(text, 300000, R "  when: exposed");
    for (int i = 0; i < 10000; i++) {
        n += (size_t)sprintf(text + n, i % 2 ? " and cnp" : " or exposed");
    }
    text[n++] = '\n';
    rs = rules_parse(text, n, "t.rules", err, sizeof(err));
    assert_non_null(rs);
    rules_destroy(rs);

    /* 16 different windows are fine, the 17th is not (60m and 1h are
     * the same window) */
    n = (size_t)snprintf(text, 300000, R "  when: count(60m) >= 1");
    for (int i = 1; i <= 17; i++) {
        n += (size_t)sprintf(text + n, " and count(%dh) >= 1", i);
    }
    text[n++] = '\n';
    text[n] = '\0';
    assert_null(rules_parse(text, n, "t.rules", err, sizeof(err)));
    {
        char want[128];
        int col = (int)(strstr(text, "count(17h)") - strstr(text, "  when"));
        snprintf(want, sizeof(want),
                 "t.rules:4:%d: too many different windows (at most 16 per "
                 "rule file)",
                 col + 7);
        assert_string_equal(err, want);
    }

    /* RULES_MAX_RULES rules are fine, one more is not */
    for (int count = RULES_MAX_RULES; count <= RULES_MAX_RULES + 1; count++) {
        n = 0;
        for (int i = 0; i < count; i++) {
            n += (size_t)sprintf(text + n,
                                 "rule r%d\n  severity: low\n  description: "
                                 "d\n  when: exposed\n",
                                 i);
        }
        rs = rules_parse(text, n, "t.rules", err, sizeof(err));
        if (count == RULES_MAX_RULES) {
            assert_non_null(rs);
            assert_int_equal(rules_count(rs), RULES_MAX_RULES);
            rules_destroy(rs);
        } else {
            assert_null(rs);
            assert_string_equal(err,
                                "t.rules:1025:1: too many rules (at most 256)");
        }
    }

    /* a NUL byte is a control character; the length bounds the text */
    memcpy(text, W("exposed"), sizeof(W("exposed")));
    text[9] = '\0';
    assert_null(rules_parse(text, sizeof(W("exposed")) - 1, "t.rules", err,
                            sizeof(err)));
    assert_string_equal(err, "t.rules:2:3: control character (byte 0x00)");
    memcpy(text, W("exposed"), sizeof(W("exposed")));
    assert_null(rules_parse(text, 23, "t.rules", err, sizeof(err)));
    assert_string_equal(err, "t.rules:1:1: rule 'r' has no description");

    /* description length: 255 bytes fine, 256 not */
    for (int len = 255; len <= 256; len++) {
        n = (size_t)sprintf(text, "rule r\n  severity: low\n  description: ");
        memset(text + n, 'x', (size_t)len);
        n += (size_t)len;
        n += (size_t)sprintf(text + n, "\n  when: exposed\n");
        rs = rules_parse(text, n, "t.rules", err, sizeof(err));
        if (len == 255) {
            assert_non_null(rs);
            assert_int_equal(strlen(rules_description(rs, 0)), 255);
            rules_destroy(rs);
        } else {
            assert_null(rs);
            assert_string_equal(
                err, "t.rules:3:16: description longer than 255 bytes");
        }
    }

    /* NULL text, NULL / tiny error buffers, no file name */
    assert_null(rules_parse(NULL, 5, "t.rules", err, sizeof(err)));
    assert_string_equal(err, "t.rules:1:1: no text");
    assert_null(rules_parse("x", 1, "t.rules", NULL, 0));
    /* a zero-length error buffer is not written to */
    strcpy(err, "untouched");
    assert_null(rules_parse("x", 1, "t.rules", err, 0));
    assert_string_equal(err, "untouched");
    /* no text at all is an empty file, not a missing one */
    assert_null(rules_parse(NULL, 0, "t.rules", err, sizeof(err)));
    assert_string_equal(err, "t.rules:1:1: no rules in the file");
    assert_null(rules_parse("x", 1, "t.rules", err, 8));
    assert_string_equal(err, "t.rules");
    assert_null(rules_parse("x", 1, NULL, err, sizeof(err)));
    assert_string_equal(err,
                        "<rules>:1:1: expected 'rule <id>' at the start of "
                        "the line");
    free(text);
}

/* A condition of 40 'and' operands: its list outgrows the parser's first
 * scratch array. Each allocation of the parse fails in turn (failalloc.h):
 * every failing run answers NULL with "out of memory" at a position in
 * the file, and the run in which no failure fires parses the rule. */
static void test_long_chain_out_of_memory(void **state)
{
    char text[2048];
    char err[512];
    size_t n = (size_t)snprintf(text, sizeof(text), R "  when: exposed");
    long runs = 0;

    (void)state;
    for (int i = 1; i < 40; i++) {
        n += (size_t)snprintf(text + n, sizeof(text) - n, " and mcc != %d", i);
    }
    n += (size_t)snprintf(text + n, sizeof(text) - n, "\n");
    for (long k = 1;; k++) {
        failalloc_at(k);
        struct ruleset *rs = rules_parse(text, n, "t.rules", err, sizeof(err));
        int fired = failalloc_failed();
        failalloc_at(0);
        if (!fired) {
            assert_non_null(rs);
            assert_int_equal(rules_count(rs), 1);
            rules_destroy(rs);
            break;
        }
        assert_null(rs);
        if (strncmp(err, "t.rules:", 8) != 0 ||
            strstr(err, ": out of memory") == NULL) {
            fail_msg("allocation %ld: %s", k, err);
        }
        runs++;
    }
    /* the tokens, the nodes, the pool, the scratch list and its growth,
     * the program, the rule set: several allocations, each failed once */
    assert_true(runs >= 8);
}

/* Layouts that must parse: comments, blank lines, tabs, CRLF, continued
 * conditions, trailing comments. */
static void test_layouts(void **state)
{
    static const char *const ok[] = {
        "rule a # trailing comment\n"
        "\t severity: low   # comment\n"
        "\n"
        "  # a comment inside the rule\n"
        "  description:   text with # kept verbatim  \n"
        "  when:\n"
        "      exposed   # why\n"
        "\n"
        "      and (cnp\n"
        "           or mcc in (1,2 , 3))\n"
        "  suppress: 90s # comment\n",
        "rule a\r\n  severity: low\r\n  description: d\r\n  when: exposed\r\n",
        "rule a\n  severity : low\n  description : d\n  when : exposed",
        "rule a\n  severity:\thigh\n  description:\td \t\n"
        "  when:\texposed\n",
        "rule a1_-\n  when: exposed\n  description: d\n  severity: critical\n"
        "rule b\n  severity: medium\n  description: caf\xc3\xa9 \xe2\x82\xac\n"
        "  when: currency == \"caf\xc3\xa9 \\\"\\\\\"\n",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct ruleset *rs = parse_ok(ok[i]);
        rules_destroy(rs);
    }
    {
        struct ruleset *rs = parse_ok(ok[0]);
        assert_int_equal(rules_count(rs), 1);
        assert_string_equal(rules_id(rs, 0), "a");
        assert_int_equal(rules_severity(rs, 0), SEVERITY_LOW);
        assert_string_equal(rules_description(rs, 0),
                            "text with # kept verbatim");
        assert_int_equal(rules_suppress_ms(rs, 0), 90000);
        rules_destroy(rs);
    }
    {
        /* tabs after the colon; blanks and tabs after the description */
        struct ruleset *rs = parse_ok(ok[3]);
        assert_int_equal(rules_severity(rs, 0), SEVERITY_HIGH);
        assert_string_equal(rules_description(rs, 0), "d");
        rules_destroy(rs);
    }
    {
        struct ruleset *rs = parse_ok(ok[4]);
        assert_int_equal(rules_count(rs), 2);
        assert_string_equal(rules_id(rs, 0), "a1_-");
        assert_int_equal(rules_severity(rs, 0), SEVERITY_CRITICAL);
        assert_int_equal(rules_severity(rs, 1), SEVERITY_MEDIUM);
        assert_string_equal(rules_description(rs, 1),
                            "caf\xc3\xa9 \xe2\x82\xac");
        assert_int_equal(rules_suppress_ms(rs, 1), 0);
        /* out of range */
        assert_string_equal(rules_id(rs, 2), "");
        assert_string_equal(rules_description(rs, 2), "");
        assert_int_equal(rules_severity(rs, 2), SEVERITY_NONE);
        assert_int_equal(rules_suppress_ms(rs, 2), 0);
        rules_destroy(rs);
    }
    assert_int_equal(rules_count(NULL), 0);
    assert_string_equal(rules_id(NULL, 0), "");
    assert_int_equal(rules_severity(NULL, 0), SEVERITY_NONE);
    assert_string_equal(rules_description(NULL, 0), "");
    assert_int_equal(rules_suppress_ms(NULL, 0), 0);
}

/* ---- evaluation ---- */

static void test_eval_txn_facts(void **state)
{
    static const struct case_ cases[] = {
        {"amount_minor == 150", 1},
        {"amount_minor != 150", 0},
        {"amount_minor < 151", 1},
        {"amount_minor < 150", 0},
        {"amount_minor <= 150", 1},
        {"amount_minor <= 149", 0},
        {"amount_minor > 149", 1},
        {"amount_minor > 150", 0},
        {"amount_minor >= 150", 1},
        {"amount_minor >= 151", 0},
        {"150 == amount_minor", 1},
        {"151 > amount_minor", 1},
        {"150 > amount_minor", 0},
        {"200 <= amount_minor", 0},
        {"amount_minor > -5", 1},
        {"amount_minor > -9223372036854775808", 1},
        {"amount_minor < 9223372036854775807", 1},
        {"txn_id == \"t-1\"", 1},
        {"txn_id != \"t-1\"", 0},
        {"currency == \"EUR\"", 1},
        {"currency == \"eur\"", 0},
        {"currency != \"USD\"", 1},
        {"\"EUR\" == currency", 1},
        {"mcc == 5411", 1},
        {"mcc == 5412", 0},
        {"merchant_id == \"m-1\"", 1},
        {"merchant_country == \"FR\"", 1},
        {"merchant_country == \"DE\"", 0},
        {"channel == ecommerce", 1},
        {"channel == \"ecommerce\"", 1},
        {"ecommerce == channel", 1},
        {"channel == moto", 0},
        {"channel != atm", 1},
        {"channel != ecommerce", 0},
        {"entry_mode == keyed", 1},
        {"entry_mode == \"chip\"", 0},
        {"entry_mode != on_file", 1},
        {"cvv2_presented", 1},
        {"cvv2_presented == true", 1},
        {"cvv2_presented == false", 0},
        {"cvv2_presented != false", 1},
        {"true == cvv2_presented", 1},
        {"not cvv2_presented", 0},
        {"response == approved", 1},
        {"response == declined", 0},
        {"event_time_ms == 1619154000000", 1},
        {"event_time_ms > 1619154000000", 0},
        {"cnp", 1},
        {"merchant_country != issuer_country", 1},
        {"merchant_country == merchant_country", 1},
        {"amount_minor < mcc", 1},
        {"cvv2_presented == exposed", 1},
        {"channel == channel", 1},
        {"true", 1},
        {"false", 0},
    };
    struct fx x;

    (void)state;
    fx_init(&x);
    RUN(cases, &x);

    /* cnp is e-commerce or mail/phone order, nothing else */
    for (int c = TXN_CHANNEL_CARD_PRESENT; c <= TXN_CHANNEL_ATM; c++) {
        x.txn.channel = (enum txn_channel)c;
        assert_int_equal(holds_on("cnp", &x, 1),
                         c == TXN_CHANNEL_ECOMMERCE || c == TXN_CHANNEL_MOTO);
    }
    x.txn.response = TXN_RESPONSE_DECLINED;
    assert_int_equal(holds_on("response == declined", &x, 1), 1);
}

static void test_eval_membership(void **state)
{
    static const struct case_ cases[] = {
        {"mcc in (4829, 5411)", 1},
        {"mcc in (5411)", 1},
        {"mcc in (4829, 5967)", 0},
        {"mcc not in (4829, 5967)", 1},
        {"mcc not in (5411, 1)", 0},
        {"currency in (\"USD\", \"EUR\")", 1},
        {"currency in (\"USD\", \"GBP\")", 0},
        {"currency not in (\"EUR\")", 0},
        {"channel in (ecommerce, moto)", 1},
        {"channel in (\"moto\", atm)", 0},
        {"channel not in (card_present, atm)", 1},
        {"entry_mode in (keyed, on_file)", 1},
        {"response in (declined)", 0},
        {"cvv2_presented in (true)", 1},
        {"cvv2_presented not in (true)", 0},
        {"count(10m) in (1, 10)", 1},
        {"not mcc in (5411)", 0},
        {"not mcc not in (5411)", 1},
    };
    struct fx x;

    (void)state;
    fx_init(&x);
    RUN(cases, &x);
}

/* not binds tighter than and, and tighter than or; comparisons tighter
 * than not. */
static void test_eval_precedence(void **state)
{
    static const struct case_ cases[] = {
        {"true or false and false", 1}, /* true or (false and false) */
        {"false and false or true", 1}, /* (false and false) or true */
        {"(true or false) and false", 0},
        {"not false and false", 0}, /* (not false) and false */
        {"not (false and false)", 1},
        {"not true or true", 1}, /* (not true) or true */
        {"not (true or true)", 0},
        {"not not true", 1},
        {"not not not true", 0},
        {"false or false or true", 1},
        {"true and true and false", 0},
        {"true and (false or true) and not false", 1},
        {"not amount_minor > 200", 1}, /* not (amount_minor > 200) */
        {"not mcc == 5411 or cnp", 1},
        {"not mcc == 5411 and cnp", 0},
        {"((((exposed))))", 1},
        {"exposed and not (cnp and mcc == 5411)", 0},
        {"exposed and (not cnp or mcc == 5411)", 1},
    };
    struct fx x;

    (void)state;
    fx_init(&x);
    RUN(cases, &x);
}

static void test_eval_exposure_facts(void **state)
{
    static const struct case_ active[] = {
        {"exposed", 1},
        {"expiry_exposed", 1},
        {"cvv2_exposed", 1},
        {"name_exposed", 0},
        {"address_exposed", 0},
        {"expiry_matches", 1},
        {"days_since_exposure_start == 10", 1},
        /* 10 days 5 hours in, 30-day window: end is 19 days 19 hours
         * ahead, floor(-19.8) = -20 */
        {"days_since_exposure_end == -20", 1},
        {"days_since_exposure_end >= -20", 1},
        {"days_since_exposure_end > -20", 0},
        {"issuer_id == \"bank-de\"", 1},
        {"issuer_country == \"DE\"", 1},
    };
    struct fx x;
    struct breach later, other;
    struct rule_match m[3];

    (void)state;
    fx_init(&x);
    RUN(active, &x);

    /* the expiry was not carried, or carried and different */
    x.match.expiry_match = 0;
    assert_int_equal(holds_on("expiry_matches", &x, 1), 0);
    x.match.expiry_known = 0;
    assert_int_equal(holds_on("expiry_matches", &x, 1), 0);
    assert_int_equal(holds_on("expiry_exposed", &x, 1), 1);

    /* day edges: floor in whole days, negative before the end */
    x.txn.event_time_ms = WINDOW_START;
    assert_int_equal(holds_on("days_since_exposure_start == 0", &x, 1), 1);
    x.txn.event_time_ms = WINDOW_START + DAY - 1;
    assert_int_equal(holds_on("days_since_exposure_start == 0", &x, 1), 1);
    x.txn.event_time_ms = WINDOW_START + DAY;
    assert_int_equal(holds_on("days_since_exposure_start == 1", &x, 1), 1);
    x.txn.event_time_ms = x.breach.window_end_ms;
    assert_int_equal(holds_on("days_since_exposure_end == 0", &x, 1), 1);
    x.txn.event_time_ms = x.breach.window_end_ms - 1;
    assert_int_equal(holds_on("days_since_exposure_end == -1", &x, 1), 1);
    x.txn.event_time_ms = x.breach.window_end_ms + DAY;
    assert_int_equal(holds_on("days_since_exposure_end == 1", &x, 1), 1);

    /* before the window: not exposed, nothing about the breach counts */
    x.txn.event_time_ms = WINDOW_START - 1;
    assert_int_equal(holds_on("exposed", &x, 1), 0);
    assert_int_equal(holds_on("expiry_exposed or cvv2_exposed", &x, 1), 0);
    x.match.expiry_known = 1;
    x.match.expiry_match = 1;
    assert_int_equal(holds_on("expiry_matches", &x, 1), 0);
    assert_int_equal(holds_on("days_since_exposure_start == 0", &x, 1), 1);
    assert_int_equal(holds_on("days_since_exposure_end == 0", &x, 1), 1);

    /* several breaches: only active ones count; earliest start, latest
     * end; elements of all active ones */
    fx_init(&x);
    later = make_breach("later", x.txn.event_time_ms + 1, BREACH_EL_NAME);
    other = make_breach("other", WINDOW_START + 2 * DAY,
                        BREACH_EL_PAN | BREACH_EL_ADDRESS);
    other.window_end_ms = WINDOW_START + 40 * DAY - 1;
    m[0] = (struct rule_match){.breach = &later};
    m[1] = (struct rule_match){.breach = &other};
    m[2] = (struct rule_match){.breach = NULL};
    x.f.matches = m;
    x.f.n_matches = 3;
    assert_int_equal(holds_on("exposed", &x, 1), 1);
    assert_int_equal(holds_on("name_exposed", &x, 1), 0);
    assert_int_equal(holds_on("address_exposed", &x, 1), 1);
    assert_int_equal(holds_on("expiry_exposed", &x, 1), 0);
    assert_int_equal(holds_on("days_since_exposure_start == 8", &x, 1), 1);
    assert_int_equal(holds_on("days_since_exposure_end == -30", &x, 1), 1);
    x.match.breach = &x.breach;
    m[2] = x.match;
    assert_int_equal(holds_on("days_since_exposure_start == 10", &x, 1), 1);
    assert_int_equal(holds_on("expiry_exposed and address_exposed", &x, 1), 1);
    assert_int_equal(holds_on("expiry_matches", &x, 1), 1);

    /* no breach at all, unknown issuer */
    fx_init(&x);
    x.f.matches = NULL;
    x.f.n_matches = 0;
    x.f.issuer = NULL;
    assert_int_equal(holds_on("exposed", &x, 1), 0);
    assert_int_equal(holds_on("issuer_id == \"\"", &x, 1), 1);
    assert_int_equal(holds_on("issuer_country == \"\"", &x, 1), 1);
    assert_int_equal(holds_on("merchant_country != issuer_country", &x, 1), 1);
}

/* Day counts at the far ends of the 64-bit time line: the difference of
 * two times that does not fit saturates at the least or greatest whole
 * day instead of wrapping (signed overflow; the UBSan build checks). */
static void test_exposure_days_at_the_extremes(void **state)
{
    struct fx x;
    /* INT64_MAX / DAY: 106751991167 whole days */
    static const struct case_ at_min[] = {
        {"days_since_exposure_start == 0", 1},
        {"days_since_exposure_end == -106751991167", 1},
    };
    static const struct case_ at_max[] = {
        {"days_since_exposure_start == 106751991167", 1},
        {"days_since_exposure_end == 0", 1},
    };

    (void)state;
    fx_init(&x);
    x.breach.window_start_ms = INT64_MIN;
    x.breach.window_end_ms = INT64_MAX;
    x.txn.event_time_ms = INT64_MIN + 1;
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(holds_on(at_min[i].cond, &x, 0), at_min[i].want);
    }
    x.txn.event_time_ms = INT64_MAX;
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(holds_on(at_max[i].cond, &x, 0), at_max[i].want);
    }
}

static void test_eval_window_facts(void **state)
{
    static const struct case_ cases[] = {
        {"count(10m) == 10", 1},
        {"count(1h) == 60", 1},
        {"count(60m) == 60", 1},
        {"count(3600s) == 60 and count(10m) == 10", 1},
        {"count_declined(1h) == 30", 1},
        {"sum_amount(1h) == 6000", 1},
        {"distinct_merchants(1h) == 6", 1},
        {"distinct_countries(1h) == 2", 1},
        {"count(1d) == 1440 and count(7d) == 10080 and count(30s) == 0", 1},
        {"count(500ms) == 0", 1},
        {"count(10m) > count_declined(10m)", 1},
        {"count(10m) >= 11", 0},
    };
    struct fx x;

    (void)state;
    fx_init(&x);
    RUN(cases, &x);

    /* without window stats: the current transaction alone */
    x.txn.amount_minor = 777;
    assert_int_equal(holds_on("count(10m) == 1 and count_declined(10m) == 0 "
                              "and sum_amount(1h) == 777 and "
                              "distinct_merchants(1h) == 1 and "
                              "distinct_countries(1d) == 1",
                              &x, 0),
                     1);
    x.txn.response = TXN_RESPONSE_DECLINED;
    assert_int_equal(holds_on("count_declined(10m) == 1", &x, 0), 1);
}

/* Windows as rules see them: the pipeline's aggregates at the edges. */
static void test_window_edges_through_rules(void **state)
{
    struct ruleset *rs = parse_ok(W("exposed and count(10m) >= 3"));
    const int64_t *w;
    struct fx x;
    struct win_entry cur, es[4];
    int fired[1];

    (void)state;
    fx_init(&x);
    assert_int_equal(rules_windows(rs, &w), 1);
    assert_int_equal(w[0], 10 * MIN);
    win_entry_from_txn(&cur, &x.txn);
    es[0] = cur; /* earlier ones, edited below */
    es[1] = cur;
    es[2] = cur;
    es[3] = cur;
    snprintf(es[0].txn_id, sizeof(es[0].txn_id), "a");
    snprintf(es[1].txn_id, sizeof(es[1].txn_id), "b");
    es[0].event_time_ms = cur.event_time_ms - 10 * MIN; /* exactly W: out */
    es[1].event_time_ms = cur.event_time_ms;            /* same ms: in */
    x.f.windows = x.ws;

    /* cur + b = 2 */
    assert_int_equal(win_aggregate(es, 2, &cur, w, 1, x.ws), 0);
    rules_eval(rs, &x.f, NULL, 0, fired, NULL, NULL);
    assert_int_equal(fired[0], 0);
    /* a one millisecond later: in, 3 */
    es[0].event_time_ms += 1;
    assert_int_equal(win_aggregate(es, 2, &cur, w, 1, x.ws), 0);
    rules_eval(rs, &x.f, NULL, 0, fired, NULL, NULL);
    assert_int_equal(fired[0], 1);
    /* a redelivered and the current one already stored: still 3 */
    es[2] = es[0];
    assert_int_equal(win_aggregate(es, 4, &cur, w, 1, x.ws), 0);
    assert_int_equal(x.ws[0].count, 3);
    /* out of order: b after the current one in event time: out */
    es[1].event_time_ms = cur.event_time_ms + 1;
    assert_int_equal(win_aggregate(es, 4, &cur, w, 1, x.ws), 0);
    rules_eval(rs, &x.f, NULL, 0, fired, NULL, NULL);
    assert_int_equal(fired[0], 0);
    rules_destroy(rs);
}

/* ---- rules_eval's contract ---- */

static void test_eval_contract(void **state)
{
    struct ruleset *rs = parse_ok("rule a\n  severity: low\n  description: d\n"
                                  "  when: exposed\n"
                                  "rule b\n  severity: critical\n"
                                  "  description: d\n  when: false\n"
                                  "rule c\n  severity: medium\n"
                                  "  description: d\n  when: cnp\n");
    struct fx x;
    struct rule_hit hits[3];
    int fired[3], sup[3], active[2] = {-1, -1};
    struct breach later;
    struct rule_match m[2];

    (void)state;
    fx_init(&x);
    later = make_breach("later", x.txn.event_time_ms + 1, BREACH_EL_PAN);
    m[0] = x.match;
    m[1] = (struct rule_match){.breach = &later};
    x.f.matches = m;
    x.f.n_matches = 2;
    assert_int_equal(rules_eval(rs, &x.f, hits, 3, fired, sup, active), 2);
    assert_string_equal(hits[0].rule_id, "a");
    assert_int_equal(hits[0].severity, SEVERITY_LOW);
    assert_string_equal(hits[1].rule_id, "c");
    assert_int_equal(hits[1].severity, SEVERITY_MEDIUM);
    assert_int_equal(fired[0], 1);
    assert_int_equal(fired[1], 0);
    assert_int_equal(fired[2], 1);
    assert_int_equal(sup[0] | sup[1] | sup[2], 0);
    assert_int_equal(active[0], 1);
    assert_int_equal(active[1], 0);
    /* cap: written hits stop, fired does not */
    assert_int_equal(rules_eval(rs, &x.f, hits, 1, fired, NULL, NULL), 1);
    assert_string_equal(hits[0].rule_id, "a");
    assert_int_equal(fired[2], 1);
    assert_int_equal(rules_eval(rs, &x.f, NULL, 3, fired, NULL, NULL), 0);
    assert_int_equal(fired[2], 1);
    /* nothing to evaluate: everything reads 0 */
    assert_int_equal(rules_eval(rs, NULL, hits, 3, fired, sup, active), 0);
    x.f.txn = NULL;
    active[0] = -1;
    assert_int_equal(rules_eval(rs, &x.f, hits, 3, fired, sup, active), 0);
    assert_int_equal(fired[0] | fired[2] | sup[0], 0);
    assert_int_equal(active[0], 0);
    assert_int_equal(rules_eval(NULL, &x.f, hits, 3, NULL, NULL, active), 0);
    /* ... also when no output array is given: nothing written */
    hits[0].rule_id[0] = 'z';
    assert_int_equal(rules_eval(rs, &x.f, hits, 3, NULL, NULL, NULL), 0);
    assert_int_equal(hits[0].rule_id[0], 'z');

    /* breaches counted but no array of them: no breach is active, so the
     * card reads as not exposed */
    x.f.txn = &x.txn;
    x.f.matches = NULL;
    x.f.n_matches = 1;
    active[0] = -1;
    assert_int_equal(rules_eval(rs, &x.f, hits, 3, fired, sup, active), 1);
    assert_string_equal(hits[0].rule_id, "c");
    assert_int_equal(fired[0], 0);
    assert_int_equal(active[0], 0);
    rules_destroy(rs);
}

/* ---- suppression ---- */

static void test_suppress(void **state)
{
    struct ruleset *rs = parse_ok("rule a\n  severity: high\n  description: d\n"
                                  "  when: exposed\n  suppress: 1h\n"
                                  "rule b\n  severity: low\n  description: d\n"
                                  "  when: exposed\n");
    struct fx x;
    struct rule_last last[2];
    struct rule_hit hits[2];
    int fired[2], sup[2];
    int64_t t;

    (void)state;
    fx_init(&x);
    t = x.txn.event_time_ms;
    assert_int_equal(rules_suppress_ms(rs, 0), HOUR);
    memset(last, 0, sizeof(last));
    x.f.last = last;
    snprintf(last[0].txn_id, sizeof(last[0].txn_id), "t-0");
    snprintf(last[1].txn_id, sizeof(last[1].txn_id), "t-0");

    /* never alerted */
    assert_int_equal(rules_eval(rs, &x.f, hits, 2, fired, sup, NULL), 2);
    /* within the span: suppressed, but fired */
    last[0].last_ms = t - HOUR + 1;
    last[1].last_ms = t - 1; /* rule b has no suppress span */
    assert_int_equal(rules_eval(rs, &x.f, hits, 2, fired, sup, NULL), 1);
    assert_string_equal(hits[0].rule_id, "b");
    assert_int_equal(fired[0], 1);
    assert_int_equal(sup[0], 1);
    assert_int_equal(fired[1], 1);
    assert_int_equal(sup[1], 0);
    /* same millisecond as the last alert: suppressed */
    last[0].last_ms = t;
    assert_int_equal(rules_eval(rs, &x.f, hits, 2, fired, sup, NULL), 1);
    assert_int_equal(sup[0], 1);
    /* exactly the span apart: not suppressed */
    last[0].last_ms = t - HOUR;
    assert_int_equal(rules_eval(rs, &x.f, hits, 2, fired, sup, NULL), 2);
    assert_string_equal(hits[0].rule_id, "a");
    assert_int_equal(sup[0], 0);
    /* the last alert is later in event time (out of order): not */
    last[0].last_ms = t + 1;
    assert_int_equal(rules_eval(rs, &x.f, hits, 2, fired, sup, NULL), 2);
    /* the same transaction again (redelivery): never suppressed, it must
     * give the same alert */
    last[0].last_ms = t;
    snprintf(last[0].txn_id, sizeof(last[0].txn_id), "t-1");
    assert_int_equal(rules_eval(rs, &x.f, hits, 2, fired, sup, NULL), 2);
    assert_int_equal(sup[0], 0);
    /* condition false: neither fired nor suppressed */
    snprintf(last[0].txn_id, sizeof(last[0].txn_id), "t-0");
    x.txn.event_time_ms = WINDOW_START - 1;
    last[0].last_ms = x.txn.event_time_ms;
    assert_int_equal(rules_eval(rs, &x.f, hits, 2, fired, sup, NULL), 0);
    assert_int_equal(fired[0], 0);
    assert_int_equal(sup[0], 0);
    /* a last alert so far back that the distance overflows 64 bits:
     * not within any span, so not suppressed */
    x.txn.event_time_ms = t;
    last[0].last_ms = INT64_MIN;
    assert_int_equal(rules_eval(rs, &x.f, hits, 2, fired, sup, NULL), 2);
    assert_string_equal(hits[0].rule_id, "a");
    assert_int_equal(fired[0], 1);
    assert_int_equal(sup[0], 0);
    /* last NULL: nothing suppressed */
    x.txn.event_time_ms = t;
    last[0].last_ms = t;
    x.f.last = NULL;
    assert_int_equal(rules_eval(rs, &x.f, hits, 2, fired, sup, NULL), 2);
    rules_destroy(rs);
}

/* Card state (window entries, suppressions) is needed when a rule uses a
 * window or suppresses, and only then. */
static void test_need_state(void **state)
{
    struct ruleset *plain = parse_ok(W("exposed and amount_minor > 10"));
    struct ruleset *win = parse_ok(W("exposed and count(10m) >= 3"));
    struct ruleset *sup = parse_ok(W("exposed") "  suppress: 1h\n");
    struct ruleset *builtin = rules_builtin();

    (void)state;
    assert_int_equal(rules_need_state(plain), 0);
    assert_int_equal(rules_need_state(win), 1);
    assert_int_equal(rules_need_state(sup), 1);
    assert_int_equal(rules_need_state(builtin), 0);
    assert_int_equal(rules_need_state(NULL), 0);
    rules_destroy(plain);
    rules_destroy(win);
    rules_destroy(sup);
    rules_destroy(builtin);
}

/* ---- the default pack ---- */

/* rules/default.rules, found from this file's path */
static struct ruleset *load_default(void)
{
    char path[1024], err[512];
    const char *me = __FILE__;
    const char *cut = strstr(me, "tests/unit/test_rules.c");
    struct ruleset *rs;

    snprintf(path, sizeof(path), "%.*srules/default.rules",
             (int)(cut != NULL ? cut - me : 0), me);
    rs = rules_load(path, err, sizeof(err));
    if (rs == NULL) {
        fail_msg("%s", err);
    }
    return rs;
}

/* Facts on which no default rule fires: exposed (PAN and CVV2 only),
 * card present, domestic, 50.00 at a grocery, quiet windows. */
static void fx_quiet(struct fx *x, const struct ruleset *rs)
{
    const int64_t *w;

    fx_init(x);
    x->breach.elements = BREACH_EL_PAN | BREACH_EL_CVV2;
    x->txn.channel = TXN_CHANNEL_CARD_PRESENT;
    x->txn.entry_mode = TXN_ENTRY_CHIP;
    x->txn.amount_minor = 5000;
    snprintf(x->txn.merchant_country, sizeof(x->txn.merchant_country), "DE");
    assert_int_equal(rules_windows(rs, &w), 3);
    assert_int_equal(w[0], 10 * MIN);
    assert_int_equal(w[1], HOUR);
    assert_int_equal(w[2], 24 * HOUR);
    for (int i = 0; i < 3; i++) {
        x->ws[i] = (struct win_stats){1, 0, 5000, 1, 1};
    }
    x->f.windows = x->ws;
}

/* The ids of the rules that fire, space-separated. */
static const char *fired_ids(const struct ruleset *rs, struct fx *x)
{
    static char out[512];
    struct rule_hit hits[ALERT_MAX_HITS];
    size_t n = rules_eval(rs, &x->f, hits, ALERT_MAX_HITS, NULL, NULL, NULL);

    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strcat(out, i > 0 ? " " : "");
        strcat(out, hits[i].rule_id);
    }
    return out;
}

static void test_default_pack(void **state)
{
    static const struct {
        const char *id;
        enum severity sev;
    } want[] = {
        {"cnp-use", SEVERITY_HIGH},
        {"card-testing", SEVERITY_HIGH},
        {"high-risk-mcc", SEVERITY_HIGH},
        {"velocity", SEVERITY_MEDIUM},
        {"cross-border-cnp", SEVERITY_MEDIUM},
        {"declined-burst", SEVERITY_MEDIUM},
        {"spend-spike", SEVERITY_HIGH},
    };
    static const uint32_t risky[] = {4829, 5967, 6051, 7995};
    struct ruleset *rs = load_default();
    struct fx x;

    (void)state;
    assert_int_equal(rules_count(rs), 7);
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(rules_id(rs, i), want[i].id);
        assert_int_equal(rules_severity(rs, i), want[i].sev);
        assert_true(strlen(rules_description(rs, i)) > 20);
        assert_int_equal(rules_suppress_ms(rs, i), 0);
    }
    assert_int_equal(rules_warnings(rs, NULL, NULL), 0);
    assert_int_equal(strncmp(rules_version(rs), "default.rules@", 14), 0);
    assert_int_equal(strlen(rules_version(rs)), 14 + 12);

    fx_quiet(&x, rs);
    assert_string_equal(fired_ids(rs, &x), "");

    /* cnp-use: card not present and the breach had the expiry */
    fx_quiet(&x, rs);
    x.breach.elements |= BREACH_EL_EXPIRY;
    assert_string_equal(fired_ids(rs, &x), "");
    x.txn.channel = TXN_CHANNEL_ECOMMERCE;
    assert_string_equal(fired_ids(rs, &x), "cnp-use");
    x.txn.channel = TXN_CHANNEL_MOTO;
    assert_string_equal(fired_ids(rs, &x), "cnp-use");
    x.txn.channel = TXN_CHANNEL_RECURRING;
    assert_string_equal(fired_ids(rs, &x), "");
    x.txn.channel = TXN_CHANNEL_ECOMMERCE;
    x.breach.elements &= ~(uint32_t)BREACH_EL_EXPIRY;
    assert_string_equal(fired_ids(rs, &x), "");

    /* card-testing: <= 2.00 and 3 in 10 minutes */
    fx_quiet(&x, rs);
    x.txn.amount_minor = 200;
    x.ws[0].count = 3;
    assert_string_equal(fired_ids(rs, &x), "card-testing");
    x.txn.amount_minor = 201;
    assert_string_equal(fired_ids(rs, &x), "");
    x.txn.amount_minor = 0;
    x.ws[0].count = 2;
    assert_string_equal(fired_ids(rs, &x), "");

    /* high-risk-mcc */
    for (size_t i = 0; i < 4; i++) {
        fx_quiet(&x, rs);
        x.txn.mcc = risky[i];
        assert_string_equal(fired_ids(rs, &x), "high-risk-mcc");
    }
    x.txn.mcc = 4830;
    assert_string_equal(fired_ids(rs, &x), "");

    /* velocity: 5 in an hour */
    fx_quiet(&x, rs);
    x.ws[1].count = 5;
    assert_string_equal(fired_ids(rs, &x), "velocity");
    x.ws[1].count = 4;
    x.ws[2].count = 50;
    assert_string_equal(fired_ids(rs, &x), "");

    /* cross-border-cnp */
    fx_quiet(&x, rs);
    snprintf(x.txn.merchant_country, sizeof(x.txn.merchant_country), "FR");
    assert_string_equal(fired_ids(rs, &x), "");
    x.txn.channel = TXN_CHANNEL_ECOMMERCE;
    assert_string_equal(fired_ids(rs, &x), "cross-border-cnp");
    snprintf(x.txn.merchant_country, sizeof(x.txn.merchant_country), "DE");
    assert_string_equal(fired_ids(rs, &x), "");
    /* unknown issuer: no home country, nothing to compare */
    x.f.issuer = NULL;
    assert_string_equal(fired_ids(rs, &x), "");

    /* declined-burst: 3 declines in an hour */
    fx_quiet(&x, rs);
    x.ws[1].count_declined = 3;
    assert_string_equal(fired_ids(rs, &x), "declined-burst");
    x.ws[1].count_declined = 2;
    x.ws[2].count_declined = 9;
    assert_string_equal(fired_ids(rs, &x), "");

    /* spend-spike: 3000.00 in 24 hours */
    fx_quiet(&x, rs);
    x.ws[2].sum_amount = 300000;
    assert_string_equal(fired_ids(rs, &x), "spend-spike");
    x.ws[2].sum_amount = 299999;
    x.ws[1].sum_amount = 900000;
    assert_string_equal(fired_ids(rs, &x), "");

    /* everything at once, in file order */
    fx_init(&x);
    x.txn.amount_minor = 100;
    x.txn.mcc = 6051;
    for (int i = 0; i < 3; i++) {
        x.ws[i] = (struct win_stats){9, 9, 400000, 3, 2};
    }
    x.f.windows = x.ws;
    assert_string_equal(fired_ids(rs, &x),
                        "cnp-use card-testing high-risk-mcc velocity "
                        "cross-border-cnp declined-burst spend-spike");
    /* ... and nothing before the breach window started */
    x.txn.event_time_ms = WINDOW_START - 1;
    assert_string_equal(fired_ids(rs, &x), "");
    rules_destroy(rs);
}

/* ---- explain ---- */

static void test_explain(void **state)
{
    struct ruleset *pack = load_default();
    struct ruleset *rs;
    struct fx x;
    char buf[512];
    struct rule_last last = {0};
    int n;

    (void)state;
    fx_init(&x);
    x.ws[0] = (struct win_stats){4, 0, 600, 1, 1};
    x.ws[1] = (struct win_stats){4, 1, 600, 1, 1};
    x.ws[2] = (struct win_stats){4, 1, 600, 1, 1};
    x.f.windows = x.ws;
    n = rules_explain(pack, 1, &x.f, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(buf));
    assert_string_equal(buf, "card-testing: yes: exposed (yes) and "
                             "amount_minor <= 200 (150) and count(10m) >= 3 "
                             "(4)");
    rules_explain(pack, 2, &x.f, buf, sizeof(buf));
    assert_string_equal(buf, "high-risk-mcc: no: exposed (yes) and mcc in "
                             "(4829, 5967, 6051, 7995) (5411)");
    rules_explain(pack, 4, &x.f, buf, sizeof(buf));
    assert_string_equal(buf, "cross-border-cnp: yes: exposed (yes) and cnp "
                             "(yes) and issuer_country != \"\" (\"DE\") and "
                             "merchant_country != issuer_country "
                             "(\"FR\", \"DE\")");
    rules_explain(pack, 6, &x.f, buf, sizeof(buf));
    assert_string_equal(buf, "spend-spike: no: exposed (yes) and "
                             "sum_amount(24h) >= 300000 (600)");

    rs = parse_ok(W("not (cnp or mcc in (4829, 5967)) or\n"
                    "    200 >= amount_minor and channel in (ecommerce, "
                    "\"moto\")\n"
                    "    and response != declined and cvv2_presented == "
                    "false\n"
                    "    and currency == \"E\\\"\\\\\"") "  suppress: 1h\n");
    rules_explain(rs, 0, &x.f, buf, sizeof(buf));
    assert_string_equal(
        buf, "r: no: not (cnp (yes) or mcc in (4829, 5967) (5411)) or "
             "amount_minor <= 200 (150) and channel in (ecommerce, moto) "
             "(ecommerce) and response != declined (approved) and "
             "cvv2_presented == false (yes) and currency == \"E\\\"\\\\\" "
             "(\"EUR\")");
    rules_destroy(rs);

    /* string membership, in and not in */
    rs = parse_ok(W("currency in (\"USD\", \"EUR\") and merchant_country not "
                    "in (\"DE\")"));
    rules_explain(rs, 0, &x.f, buf, sizeof(buf));
    assert_string_equal(buf, "r: yes: currency in (\"USD\", \"EUR\") (\"EUR\") "
                             "and merchant_country not in (\"DE\") (\"FR\")");
    x.txn.merchant_country[0] = 'D';
    x.txn.merchant_country[1] = 'E';
    rules_explain(rs, 0, &x.f, buf, sizeof(buf));
    assert_string_equal(buf, "r: no: currency in (\"USD\", \"EUR\") (\"EUR\") "
                             "and merchant_country not in (\"DE\") (\"DE\")");
    x.txn.merchant_country[0] = 'F';
    x.txn.merchant_country[1] = 'R';
    rules_destroy(rs);

    /* found before the last value of the list; a boolean literal false */
    rs = parse_ok(W("currency in (\"EUR\", \"USD\") and exposed == false"));
    n = rules_explain(rs, 0, &x.f, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(buf));
    assert_string_equal(buf, "r: no: currency in (\"EUR\", \"USD\") (\"EUR\") "
                             "and exposed == false (yes)");
    rules_destroy(rs);
    rs = parse_ok(W("exposed == true"));
    rules_explain(rs, 0, &x.f, buf, sizeof(buf));
    assert_string_equal(buf, "r: yes: exposed == true (yes)");
    rules_destroy(rs);

    /* suppressed */
    rs = parse_ok(W("exposed or false") "  suppress: 1h\n");
    last.last_ms = x.txn.event_time_ms - 1;
    snprintf(last.txn_id, sizeof(last.txn_id), "t-0");
    x.f.last = &last;
    rules_explain(rs, 0, &x.f, buf, sizeof(buf));
    assert_string_equal(buf, "r: yes (suppressed): exposed (yes) or false");
    x.f.last = NULL;

    /* cut to fit; bad arguments write nothing */
    assert_int_equal(rules_explain(rs, 0, &x.f, buf, 10), 9);
    assert_string_equal(buf, "r: yes: e");
    assert_int_equal(rules_explain(rs, 0, &x.f, buf, 1), 0);
    assert_string_equal(buf, "");
    assert_int_equal(rules_explain(rs, 0, &x.f, NULL, 0), 0);
    strcpy(buf, "x");
    assert_int_equal(rules_explain(rs, 1, &x.f, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    assert_int_equal(rules_explain(rs, 0, NULL, buf, sizeof(buf)), 0);
    {
        /* facts without a transaction: nothing to explain */
        struct rule_facts none = x.f;
        none.txn = NULL;
        strcpy(buf, "x");
        assert_int_equal(rules_explain(rs, 0, &none, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "");
    }
    assert_int_equal(rules_explain(NULL, 0, &x.f, buf, sizeof(buf)), 0);
    rules_destroy(rs);
    rules_destroy(pack);
}

/* ---- warnings ---- */

struct warn_sink {
    char msgs[4][512];
    size_t n;
};

static void collect_warning(void *arg, const char *msg)
{
    struct warn_sink *s = arg;

    if (s->n < 4) {
        snprintf(s->msgs[s->n], sizeof(s->msgs[0]), "%s", msg);
    }
    s->n++;
}

static void test_warnings(void **state)
{
#define NEVER "t.rules:1: rule 'r' can never fire: "
#define NOEXP                                                                  \
    "t.rules:1: rule 'r' does not require exposed: it can also fire on a "     \
    "listed card before its breach window starts"
    static const struct {
        const char *cond;
        const char *warn; /* NULL: none */
    } cases[] = {
        /* a comparison false on every value the fact can have */
        {"amount_minor < 0", NEVER "amount_minor < 0 is always false"},
        {"exposed and mcc > 9999", NEVER "mcc > 9999 is always false"},
        {"exposed and 10000 <= mcc", NEVER "mcc >= 10000 is always false"},
        {"exposed and count(10m) < 0", NEVER "count(10m) < 0 is always false"},
        {"exposed and count(10m) == 0",
         NEVER "count(10m) == 0 is always false"},
        {"exposed and sum_amount(1h) < 0",
         NEVER "sum_amount(1h) < 0 is always false"},
        {"exposed and event_time_ms <= 0",
         NEVER "event_time_ms <= 0 is always false"},
        {"exposed and days_since_exposure_start < 0",
         NEVER "days_since_exposure_start < 0 is always false"},
        {"exposed and mcc in (10000, 20000)",
         NEVER "mcc in (10000, 20000) is always false"},
        {"exposed and currency == \"eur\"",
         NEVER "currency == \"eur\" is always false"},
        {"exposed and currency in (\"eur\", \"usd\")",
         NEVER "currency in (\"eur\", \"usd\") is always false"},
        {"exposed and merchant_country == \"FRA\"",
         NEVER "merchant_country == \"FRA\" is always false"},
        {"false", NEVER "it requires false"},
        {"exposed and not true", NEVER "it requires not true"},
        /* contradictions in one conjunction */
        {"exposed and channel == ecommerce and channel == atm",
         NEVER "channel == ecommerce and channel == atm cannot both hold"},
        {"exposed and cnp and channel == atm",
         NEVER "cnp and channel == atm cannot both hold"},
        {"exposed and not cnp and channel in (ecommerce, moto)",
         NEVER "not cnp and channel in (ecommerce, moto) cannot both hold"},
        {"exposed and channel in (moto, atm) and channel not in (atm, moto)",
         NEVER "channel in (moto, atm) and channel not in (atm, moto) cannot "
               "both hold"},
        {"exposed and amount_minor > 500 and amount_minor < 100",
         NEVER "amount_minor > 500 and amount_minor < 100 cannot both hold"},
        {"exposed and mcc == 1 and mcc == 2",
         NEVER "mcc == 1 and mcc == 2 cannot both hold"},
        {"exposed and mcc in (1, 2) and mcc > 5",
         NEVER "mcc in (1, 2) and mcc > 5 cannot both hold"},
        {"exposed and mcc not in (1) and mcc == 1",
         NEVER "mcc not in (1) and mcc == 1 cannot both hold"},
        {"exposed and mcc != 3 and mcc > 4 and mcc < 4",
         NEVER "the conditions on mcc cannot all hold"},
        {"exposed and currency == \"EUR\" and currency == \"USD\"",
         NEVER "currency == \"EUR\" and currency == \"USD\" cannot both hold"},
        {"exposed and currency == \"EUR\" and currency != \"EUR\"",
         NEVER "currency == \"EUR\" and currency != \"EUR\" cannot both hold"},
        {"exposed and response == approved and response != approved",
         NEVER "response == approved and response != approved cannot both "
               "hold"},
        {"exposed and not exposed",
         NEVER "exposed and not exposed cannot both hold"},
        {"exposed and not (mcc > 5 or mcc < 10)",
         NEVER "not mcc > 5 and not mcc < 10 cannot both hold"},
        /* a string equality against an 'in' list of strings */
        {"exposed and currency == \"EUR\" and currency in (\"USD\", \"GBP\")",
         NEVER "currency == \"EUR\" and currency in (\"USD\", \"GBP\") "
               "cannot both hold"},
        {"exposed and currency == \"EUR\" and currency not in (\"USD\", "
         "\"EUR\")",
         NEVER "currency == \"EUR\" and currency not in (\"USD\", \"EUR\") "
               "cannot both hold"},
        {"exposed and currency == \"EUR\" and currency in (\"USD\", \"EUR\")",
         NULL},
        {"exposed and currency == \"EUR\" and currency not in (\"USD\")", NULL},
        /* 'not in' on a fact pinned to one value, found after others */
        {"exposed and mcc == 5411 and mcc not in (1, 5411)",
         NEVER "mcc == 5411 and mcc not in (1, 5411) cannot both hold"},
        {"exposed and mcc == 5411 and mcc not in (1, 2)", NULL},
        /* an 'in' list whose every value is outside the fact's range */
        {"exposed and mcc in (-5, 20000)",
         NEVER "mcc in (-5, 20000) is always false"},
        /* '!=' the lower bound is not a contradiction; the only value is */
        {"exposed and amount_minor >= 5 and amount_minor != 5", NULL},
        {"exposed and amount_minor >= 5 and amount_minor <= 5 and "
         "amount_minor != 5",
         NEVER "the conditions on amount_minor cannot all hold"},
        {"exposed and count(1h) >= 5 and count(1h) < 5",
         NEVER "count(1h) >= 5 and count(1h) < 5 cannot both hold"},
        /* below the least / above the greatest 64-bit integer, on a fact
         * whose domain is all of them */
        {"exposed and days_since_exposure_end < -9223372036854775808",
         NEVER "days_since_exposure_end < -9223372036854775808 is always "
               "false"},
        {"exposed and days_since_exposure_end > 9223372036854775807",
         NEVER "days_since_exposure_end > 9223372036854775807 is always "
               "false"},
        {"exposed and not days_since_exposure_end <= 9223372036854775807",
         NEVER "not days_since_exposure_end <= 9223372036854775807 is "
               "always false"},
        {"exposed and days_since_exposure_end <= 9223372036854775807 and "
         "days_since_exposure_end >= -9223372036854775808",
         NULL},
        {"exposed and (mcc > 10000 or channel == moto and channel == atm)",
         NEVER "mcc > 10000 is always false, and no other 'or' branch can "
               "hold either"},
        /* sound: not proven, no warning */
        {"exposed and channel == ecommerce and (channel == atm or mcc == 1)",
         NULL},
        {"exposed and (mcc > 10000 or cnp)", NULL},
        {"exposed and count(10m) >= 1 and amount_minor >= 0", NULL},
        {"exposed and amount_minor < amount_minor", NULL},
        {"exposed and issuer_country == \"de\"", NULL},
        {"exposed and days_since_exposure_end < 0", NULL},
        {"exposed and count(10m) == 1 and count(1h) == 1", NULL},
        {"exposed and count(10m) == 5 and count(600s) == 6",
         NEVER "count(10m) == 5 and count(10m) == 6 cannot both hold"},
        {"exposed and not (channel == moto and channel == atm)", NULL},
        /* rules that do not require exposed */
        {"count(1h) >= 5", NOEXP},
        {"exposed or cnp", NOEXP},
        {"not exposed", NOEXP},
        {"exposed == false", NOEXP},
        {"exposed not in (false) or true", NOEXP},
        {"expiry_exposed", NULL},
        {"cvv2_exposed or expiry_matches", NULL},
        {"name_exposed and cnp or address_exposed", NULL},
        {"exposed == true", NULL},
        {"exposed != false", NULL},
        {"exposed in (true)", NULL},
        {"exposed not in (false)", NULL},
        {"not (not exposed or cnp)", NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[1024];
        struct warn_sink sink = {0};
        struct ruleset *rs;
        snprintf(text, sizeof(text), W("%s"), cases[i].cond);
        rs = parse_ok(text);
        size_t n = rules_warnings(rs, collect_warning, &sink);
        assert_int_equal(n, sink.n);
        assert_int_equal(rules_warnings(rs, NULL, NULL), n);
        if (cases[i].warn == NULL && n != 0) {
            fail_msg("'%s': unexpected warning %s", cases[i].cond,
                     sink.msgs[0]);
        }
        if (cases[i].warn != NULL &&
            (n != 1 || strcmp(sink.msgs[0], cases[i].warn) != 0)) {
            fail_msg("'%s':\ngot:  %s\nwant: %s", cases[i].cond,
                     n > 0 ? sink.msgs[0] : "(none)", cases[i].warn);
        }
        rules_destroy(rs);
    }
    assert_int_equal(rules_warnings(NULL, collect_warning, NULL), 0);

    /* the line of each rule, in order */
    {
        struct warn_sink sink = {0};
        struct ruleset *rs =
            parse_ok("# header\n"
                     "rule ok\n  severity: low\n  description: d\n"
                     "  when: exposed\n"
                     "\n"
                     "rule bad\n  severity: low\n  description: d\n"
                     "  when: exposed and mcc > 9999\n"
                     "rule loose\n  severity: low\n  description: d\n"
                     "  when: cnp\n");
        assert_int_equal(rules_warnings(rs, collect_warning, &sink), 2);
        assert_string_equal(sink.msgs[0],
                            "t.rules:7: rule 'bad' can never fire: mcc > "
                            "9999 is always false");
        assert_string_equal(sink.msgs[1],
                            "t.rules:11: rule 'loose' does not require "
                            "exposed: it can also fire on a listed card "
                            "before its breach window starts");
        rules_destroy(rs);
    }
#undef NEVER
#undef NOEXP
}

/* ---- versions and files ---- */

static void test_version_and_load(void **state)
{
    static const char text[] =
        "rule a\n  severity: low\n  description: d\n  when: exposed\n";
    char err[512];
    char path[] = "/tmp/cardwatch-rules-XXXXXX";
    struct ruleset *rs;
    int fd;

    (void)state;
    /* "<file name>@<first 12 hex of SHA-256 of the text>" */
    rs = rules_parse(text, sizeof(text) - 1, "dir/sub/x.rules", err,
                     sizeof(err));
    assert_non_null(rs);
    assert_string_equal(rules_version(rs), "x.rules@b8e3eb6ec9a9");
    rules_destroy(rs);
    rs = rules_parse(text, sizeof(text) - 1, "x.rules", err, sizeof(err));
    assert_string_equal(rules_version(rs), "x.rules@b8e3eb6ec9a9");
    rules_destroy(rs);
    /* a long name is cut so the version fits RULESET_VERSION_MAX */
    rs =
        rules_parse(text, sizeof(text) - 1,
                    "/r/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    "aaaaaaaaaaaaaaaaa.rules",
                    err, sizeof(err));
    assert_int_equal(strlen(rules_version(rs)), RULESET_VERSION_MAX);
    assert_string_equal(rules_version(rs) + 51, "@b8e3eb6ec9a9");
    rules_destroy(rs);
    assert_string_equal(rules_version(NULL), "");

    /* a file */
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof(text) - 1),
                     (ssize_t)sizeof(text) - 1);
    rs = rules_load(path, err, sizeof(err));
    assert_non_null(rs);
    assert_int_equal(strncmp(rules_version(rs), "cardwatch-rules-", 16), 0);
    assert_string_equal(rules_version(rs) + strlen(rules_version(rs)) - 13,
                        "@b8e3eb6ec9a9");
    rules_destroy(rs);
    /* errors name the path */
    assert_int_equal(write(fd, "rule\n", 5), 5);
    assert_null(rules_load(path, err, sizeof(err)));
    assert_true(strstr(err, ":5:5: missing rule id after 'rule'") != NULL);
    assert_int_equal(strncmp(err, path, strlen(path)), 0);
    /* over 1 MiB */
    {
        char *big = malloc(1024 * 1024);
        assert_non_null(big);
        memset(big, '#', 1024 * 1024);
        assert_int_equal(write(fd, big, 1024 * 1024), 1024 * 1024);
        free(big);
    }
    assert_null(rules_load(path, err, sizeof(err)));
    {
        char want[128];
        snprintf(want, sizeof(want), "%s: larger than 1 MiB", path);
        assert_string_equal(err, want);
    }
    close(fd);
    unlink(path);
    assert_null(rules_load(path, err, sizeof(err)));
    {
        char want[128];
        snprintf(want, sizeof(want), "%s: No such file or directory", path);
        assert_string_equal(err, want);
    }
    assert_null(rules_load("/tmp", err, sizeof(err)));
    assert_string_equal(err, "/tmp: not a regular file");
    /* a regular file that fails to read (/proc/self/mem at offset 0) */
    assert_null(rules_load("/proc/self/mem", err, sizeof(err)));
    assert_string_equal(err, "/proc/self/mem: Input/output error");
    assert_null(rules_load(NULL, err, sizeof(err)));
}

static void test_windows_order(void **state)
{
    struct ruleset *rs =
        parse_ok("rule a\n  severity: low\n  description: d\n"
                 "  when: exposed and count(1h) > 1 and sum_amount(24h) > 2\n"
                 "rule b\n  severity: low\n  description: d\n"
                 "  when: exposed and count(10m) > 3 and count(60m) > 4\n"
                 "    and distinct_countries(1d) > 5\n");
    const int64_t *w = NULL;
    struct fx x;
    int fired[2];

    (void)state;
    assert_int_equal(rules_windows(rs, &w), 3);
    assert_int_equal(w[0], 10 * MIN);
    assert_int_equal(w[1], HOUR);
    assert_int_equal(w[2], 24 * HOUR);
    /* stats follow that order */
    fx_init(&x);
    x.ws[0] = (struct win_stats){4, 0, 0, 0, 0};
    x.ws[1] = (struct win_stats){5, 0, 0, 0, 0};
    x.ws[2] = (struct win_stats){0, 0, 3, 0, 6};
    x.f.windows = x.ws;
    rules_eval(rs, &x.f, NULL, 0, fired, NULL, NULL);
    assert_int_equal(fired[0], 1);
    assert_int_equal(fired[1], 1);
    x.ws[1].count = 4;
    rules_eval(rs, &x.f, NULL, 0, fired, NULL, NULL);
    assert_int_equal(fired[0], 1);
    assert_int_equal(fired[1], 0);
    assert_int_equal(rules_windows(NULL, &w), 0);
    assert_int_equal(rules_windows(rs, NULL), 3);
    rules_destroy(rs);

    rs = rules_builtin();
    assert_int_equal(rules_windows(rs, &w), 0);
    rules_destroy(rs);
}

/* ---- the built-in rule set ---- */

static void test_builtin(void **state)
{
    struct ruleset *rs = rules_builtin();
    struct breach early = make_breach("early", WINDOW_START, BREACH_EL_PAN);
    struct breach exact = make_breach("exact", WINDOW_START + 5000, 0);
    struct breach later = make_breach("later", WINDOW_START + 5001, 0);
    struct rule_match m[3] = {
        {.breach = &later}, {.breach = &early}, {.breach = &exact}};
    struct txn t;
    struct rule_facts f = {.txn = &t, .matches = m, .n_matches = 3};
    struct rule_hit hits[ALERT_MAX_HITS];
    int active[3] = {-1, -1, -1};

    (void)state;
    assert_non_null(rs);
    assert_string_equal(rules_version(rs), "builtin-1");
    assert_int_equal(rules_count(rs), 1);
    assert_string_equal(rules_id(rs, 0), "exposed-card-use");
    assert_int_equal(rules_severity(rs, 0), SEVERITY_HIGH);
    assert_int_equal(rules_warnings(rs, NULL, NULL), 0);
    memset(&t, 0, sizeof(t));
    snprintf(t.txn_id, sizeof(t.txn_id), "t-1");

    /* one rule, one hit, however many breaches are active */
    t.event_time_ms = WINDOW_START + 5000;
    assert_int_equal(
        rules_eval(rs, &f, hits, ALERT_MAX_HITS, NULL, NULL, active), 1);
    assert_string_equal(hits[0].rule_id, "exposed-card-use");
    assert_int_equal(hits[0].severity, SEVERITY_HIGH);
    assert_int_equal(active[0], 0);
    assert_int_equal(active[1], 1);
    assert_int_equal(active[2], 1);
    /* well after the window end still counts */
    t.event_time_ms = WINDOW_START + 400 * DAY;
    assert_int_equal(rules_eval(rs, &f, hits, 1, NULL, NULL, NULL), 1);
    /* before all of them: no hit, no active match */
    t.event_time_ms = WINDOW_START - 1;
    assert_int_equal(
        rules_eval(rs, &f, hits, ALERT_MAX_HITS, NULL, NULL, active), 0);
    assert_int_equal(active[0] | active[1] | active[2], 0);
    /* no room for hits: nothing written, active still set */
    t.event_time_ms = WINDOW_START;
    assert_int_equal(rules_eval(rs, &f, hits, 0, NULL, NULL, active), 0);
    assert_int_equal(active[1], 1);
    /* a match without breach metadata is not an exposure */
    f.n_matches = 1;
    m[0].breach = NULL;
    assert_int_equal(rules_eval(rs, &f, hits, 1, NULL, NULL, active), 0);
    assert_int_equal(active[0], 0);
    rules_destroy(rs);
    rules_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_lines),
        cmocka_unit_test(test_errors_conditions),
        cmocka_unit_test(test_errors_limits),
        cmocka_unit_test(test_long_chain_out_of_memory),
        cmocka_unit_test(test_layouts),
        cmocka_unit_test(test_eval_txn_facts),
        cmocka_unit_test(test_eval_membership),
        cmocka_unit_test(test_eval_precedence),
        cmocka_unit_test(test_eval_exposure_facts),
        cmocka_unit_test(test_exposure_days_at_the_extremes),
        cmocka_unit_test(test_eval_window_facts),
        cmocka_unit_test(test_window_edges_through_rules),
        cmocka_unit_test(test_eval_contract),
        cmocka_unit_test(test_suppress),
        cmocka_unit_test(test_need_state),
        cmocka_unit_test(test_default_pack),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_warnings),
        cmocka_unit_test(test_version_and_load),
        cmocka_unit_test(test_windows_order),
        cmocka_unit_test(test_builtin),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
