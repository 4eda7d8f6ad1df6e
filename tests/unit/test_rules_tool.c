/* Unit tests for rules_tool.c, the analysts' offline tools: `rules check`
 * (ok, warnings, the first error of each file, the exit status) and
 * `rules test` (windows and suppression across a card's transactions in
 * input order, a redelivered transaction answered as the first time and
 * counted once, invalid lines reported and skipped, cards not exposed,
 * the issuer from the configuration, input from standard input, a
 * thousand exposed cards, the summary, and the option errors). The cards are synthetic test numbers, and no output line may
 * hold one. Files go to a mkdtemp directory removed at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "card.h"
#include "config.h"
#include "rules_tool.h"

/* Luhn-valid synthetic test cards. */
#define A "4000010000000001"
#define B "4000010000000019"

/* 2024-03-01T00:00:00Z */
#define T0 1709251200000LL
#define MIN 60000LL

static char tmpdir[] = "/tmp/cw_rules_tool_XXXXXX";

#include "scratch.h"

/* Writes text to tmpdir/name; returns the path (one of 8 buffers). */
static const char *write_file(const char *name, const char *text)
{
    static char paths[8][PATH_MAX];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, PATH_MAX, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return p;
}

/* One JSON-lines transaction. */
static int txn_line(char *buf, size_t len, const char *id, const char *pan,
                    long long t, const char *response)
{
    return snprintf(buf, len,
                    "{\"txn_id\":\"%s\",\"pan\":\"%s\",\"expiry\":\"2812\","
                    "\"amount_minor\":150,\"currency\":\"EUR\",\"mcc\":5411,"
                    "\"merchant_id\":\"m-1\",\"merchant_country\":\"FR\","
                    "\"channel\":\"ecommerce\",\"entry_mode\":\"keyed\","
                    "\"cvv2_presented\":true,\"response\":\"%s\","
                    "\"event_time_ms\":%lld}\n",
                    id, pan, response, t);
}

/* Runs rules test with o, its output into a string (caller frees). */
static char *run_rules_test(const struct rules_test_opts *o, int *status)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    *status = rules_tool_test(o, out);
    assert_int_equal(fclose(out), 0);
    assert_non_null(text);
    return text;
}

static void has(const char *text, const char *want)
{
    if (strstr(text, want) == NULL) {
        fail_msg("expected \"%s\" in:\n%s", want, text);
    }
}

static void test_check(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    char want[PATH_MAX + 128];
    char *files[3];
    files[0] = strdup(write_file("ok.rules", "rule a\n  severity: low\n"
                                             "  description: d\n"
                                             "  when: exposed\n"));
    files[1] = strdup(write_file("warn.rules",
                                 "rule a\n  severity: low\n"
                                 "  description: d\n  when: exposed\n"
                                 "rule b\n  severity: low\n"
                                 "  description: d\n"
                                 "  when: exposed and mcc > 9999\n"));
    files[2] = strdup(write_file("bad.rules", "rule a\n  severity: loud\n"));
    assert_non_null(files[0]);
    assert_non_null(files[1]);
    assert_non_null(files[2]);

    FILE *out = open_memstream(&text, &len);
    assert_int_equal(rules_tool_check(2, files, out), 0);
    fclose(out);
    snprintf(want, sizeof(want), "%s: ok (1 rule, version ok.rules@",
             files[0]);
    has(text, want);
    snprintf(want, sizeof(want),
             "%s:5: rule 'b' can never fire: mcc > 9999 is always false\n"
             "%s: ok (2 rules, version warn.rules@",
             files[1], files[1]);
    has(text, want);
    has(text, ", with warnings)\n");
    free(text);

    /* an error in one file: exit status 1, the other files still told */
    text = NULL;
    out = open_memstream(&text, &len);
    assert_int_equal(rules_tool_check(3, files, out), 1);
    fclose(out);
    snprintf(want, sizeof(want), "%s:2:", files[2]);
    has(text, want);
    snprintf(want, sizeof(want), "%s: ok (1 rule", files[0]);
    has(text, want);
    free(text);
    for (int i = 0; i < 3; i++) {
        free(files[i]);
    }
}

static const char rules_text[] =
    "rule burst\n"
    "  severity: high\n"
    "  description: two uses within ten minutes\n"
    "  when: exposed and count(10m) >= 2\n"
    "rule quiet\n"
    "  severity: low\n"
    "  description: any use, at most once an hour\n"
    "  when: exposed\n"
    "  suppress: 1h\n"
    "rule home\n"
    "  severity: medium\n"
    "  description: a use on a card of a known issuer\n"
    "  when: exposed and issuer_country == \"GB\"\n";

/* Card A is exposed, B is not: the windows, the suppression and a
 * redelivery across A's transactions, in input order. */
static void test_transactions_in_order(void **state)
{
    (void)state;
    char in[4096];
    size_t o = 0;
    /* line 1: A at T0 */
    o += (size_t)txn_line(in + o, sizeof(in) - o, "t1", A, T0, "approved");
    /* line 2: not a transaction */
    o += (size_t)snprintf(in + o, sizeof(in) - o, "{\"txn_id\":\"x\"}\n");
    /* line 3: B, not exposed */
    o += (size_t)txn_line(in + o, sizeof(in) - o, "t2", B, T0, "approved");
    /* line 4: A a minute later: two in ten minutes; quiet is suppressed */
    o += (size_t)txn_line(in + o, sizeof(in) - o, "t3", A, T0 + MIN,
                          "declined");
    /* line 5: t3 again (a redelivery): the same answer, counted once */
    o += (size_t)txn_line(in + o, sizeof(in) - o, "t3", A, T0 + MIN,
                          "declined");
    /* line 6: A two hours later: alone in its window; quiet again */
    o += (size_t)txn_line(in + o, sizeof(in) - o, "t4", A, T0 + 120 * MIN,
                          "approved");
    (void)o;
    struct rules_test_opts opts = {
        .rules_path = write_file("t.rules", rules_text),
        .input = write_file("in.jsonl", in),
        .exposed_csv = write_file("exposed.csv", "pan,expiry\n" A ",2812\n"),
        .breach_id = "shop-1",
        .window_start = "2024-01-01",
    };
    char ma[CARD_MASK_SIZE], mb[CARD_MASK_SIZE], want[1024];
    card_mask(A, strlen(A), ma);
    card_mask(B, strlen(B), mb);
    int status;

    char *text = run_rules_test(&opts, &status);
    assert_int_equal(status, 0);
    assert_null(strstr(text, A));
    assert_null(strstr(text, B));
    /* t1: alone in its window; quiet fires; no issuer without a config.
     * Line 2 is reported where it comes. t3: two in ten minutes, quiet
     * suppressed; its redelivery gets the same answer (count 2, not 3);
     * t4: alone again, quiet fires again. */
    snprintf(want, sizeof(want),
             "t1 %s 2024-03-01T00:00:00Z ALERT: quiet (low)\n"
             "    quiet: yes: exposed (yes)\n"
             "%s:2: invalid transaction (pan); skipped\n"
             "t3 %s 2024-03-01T00:01:00Z ALERT: burst (high)\n"
             "    burst: yes: exposed (yes) and count(10m) >= 2 (2)\n"
             "    quiet: yes (suppressed): exposed (yes)  [suppressed: fired "
             "within its suppress span]\n"
             "t3 %s 2024-03-01T00:01:00Z ALERT: burst (high)\n"
             "    burst: yes: exposed (yes) and count(10m) >= 2 (2)\n"
             "    quiet: yes (suppressed): exposed (yes)  [suppressed: fired "
             "within its suppress span]\n"
             "t4 %s 2024-03-01T02:00:00Z ALERT: quiet (low)\n"
             "    quiet: yes: exposed (yes)\n"
             "\n5 transactions, 4 on exposed cards, 4 alerts (rules "
             "t.rules@",
             ma, opts.input, ma, ma, ma);
    if (strncmp(text, want, strlen(want)) != 0) {
        fail_msg("expected the output to start with:\n%s\ngot:\n%s", want,
                 text);
    }
    assert_null(strstr(text, "t2 "));
    has(text, "  burst                        high     2\n"
              "  quiet                        low      2\n"
              "  home                         medium   0\n");
    free(text);

    /* --all, with the issuer from a configuration: every transaction,
     * every rule, fired or not */
    struct config c;
    char err[256];
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(
        config_set(&c, "issuer alpha", "home_country", "GB", err, sizeof(err)),
        0);
    assert_int_equal(
        config_set(&c, "issuer alpha", "bins", "400001", err, sizeof(err)), 0);
    opts.config = &c;
    opts.all = 1;
    text = run_rules_test(&opts, &status);
    assert_int_equal(status, 0);
    snprintf(want, sizeof(want),
             "t1 %s 2024-03-01T00:00:00Z ALERT: quiet (low), home (medium)\n"
             "    burst: no: exposed (yes) and count(10m) >= 2 (1)\n"
             "    quiet: yes: exposed (yes)\n"
             "    home: yes: exposed (yes) and issuer_country == \"GB\" "
             "(\"GB\")\n",
             ma);
    has(text, want);
    snprintf(want, sizeof(want),
             "t2 %s 2024-03-01T00:00:00Z not exposed: no rule work\n", mb);
    has(text, want);
    assert_null(strstr(text, A));
    assert_null(strstr(text, B));
    free(text);
    config_free(&c);

    /* no list: no card is exposed */
    opts.exposed_csv = NULL;
    opts.config = NULL;
    opts.all = 0;
    text = run_rules_test(&opts, &status);
    assert_int_equal(status, 0);
    has(text, "5 transactions, 0 on exposed cards, 0 alerts");
    free(text);
}

/* A breach window that starts after the transactions: the card is
 * listed but not exposed yet, so the rules see exposed = no. */
static void test_window_not_started(void **state)
{
    (void)state;
    char in[1024];
    txn_line(in, sizeof(in), "t1", A, T0, "approved");
    struct rules_test_opts opts = {
        .rules_path = write_file("t2.rules", rules_text),
        .input = write_file("in2.jsonl", in),
        .exposed_csv = write_file("exposed2.csv", "pan\n" A "\n"),
        .window_start = "2024-06-01",
        .window_end = "2024-12-31",
        .elements = "pan",
        .all = 1,
    };
    int status;
    char *text = run_rules_test(&opts, &status);
    assert_int_equal(status, 0);
    has(text, "no alert\n    burst: no: exposed (no) and count(10m) >= 2 "
              "(1)\n");
    has(text, "1 transactions, 1 on exposed cards, 0 alerts");
    free(text);
    /* without --all, a transaction no rule fired on is not shown */
    opts.all = 0;
    text = run_rules_test(&opts, &status);
    assert_int_equal(status, 0);
    assert_null(strstr(text, "t1 "));
    has(text, "1 transactions, 1 on exposed cards, 0 alerts");
    free(text);
}

/* Transactions read from standard input ("-"), with a rule file that
 * uses no window and a suppress span, and 1,000 exposed cards (more than
 * enough to share buckets of the in-memory card table). Card 0 is used 20
 * times a minute apart: the first use alerts, the 19 later ones fire
 * suppressed, so they are shown with "no alert" and the suppressed rule;
 * every other card alerts once. Nothing is lost: each card is found, and
 * the summary counts every transaction. No output line holds a PAN. */
static void test_stdin_many_cards_suppressed(void **state)
{
    (void)state;
    enum { NCARDS = 1000, REPEAT = 20 };
    static char pans[NCARDS][17];
    size_t csv_cap = 32 + NCARDS * 24, in_cap = (NCARDS + REPEAT) * 400;
    char *csv = malloc(csv_cap), *in = malloc(in_cap);
    size_t c = 0, o = 0;
    assert_non_null(csv);
    assert_non_null(in);
    c += (size_t)snprintf(csv + c, csv_cap - c, "pan,expiry\n");
    for (int i = 0; i < NCARDS; i++) {
        /* synthetic test cards 400001 2 nnnnnnnn + Luhn digit */
        snprintf(pans[i], sizeof(pans[i]), "4000012%08d", i);
        pans[i][15] = card_luhn_digit(pans[i], 15);
        pans[i][16] = '\0';
        assert_true(card_luhn_ok(pans[i], 16));
        c += (size_t)snprintf(csv + c, csv_cap - c, "%s,2812\n", pans[i]);
    }
    for (int k = 0; k < REPEAT; k++) {
        char id[16];
        snprintf(id, sizeof(id), "a-%d", k);
        o += (size_t)txn_line(in + o, in_cap - o, id, pans[0], T0 + k * MIN,
                              "approved");
    }
    for (int i = 1; i < NCARDS; i++) {
        char id[16];
        snprintf(id, sizeof(id), "c-%d", i);
        o += (size_t)txn_line(in + o, in_cap - o, id, pans[i], T0, "approved");
    }
    const char *input = write_file("stdin.jsonl", in);
    assert_non_null(freopen(input, "r", stdin));
    struct rules_test_opts opts = {
        .rules_path = write_file("nowin.rules",
                                 "rule quiet\n  severity: low\n"
                                 "  description: once an hour\n"
                                 "  when: exposed\n  suppress: 1h\n"),
        .input = "-",
        .exposed_csv = write_file("many.csv", csv),
    };
    char m0[CARD_MASK_SIZE], want[1024];
    int status;
    card_mask(pans[0], 16, m0);

    char *text = run_rules_test(&opts, &status);
    assert_int_equal(status, 0);
    snprintf(want, sizeof(want),
             "a-0 %s 2024-03-01T00:00:00Z ALERT: quiet (low)\n"
             "    quiet: yes: exposed (yes)\n"
             "a-1 %s 2024-03-01T00:01:00Z no alert\n"
             "    quiet: yes (suppressed): exposed (yes)  [suppressed: fired "
             "within its suppress span]\n",
             m0, m0);
    if (strncmp(text, want, strlen(want)) != 0) {
        fail_msg("expected the output to start with:\n%s\ngot:\n%.600s",
                 want, text);
    }
    snprintf(want, sizeof(want),
             "a-19 %s 2024-03-01T00:19:00Z no alert\n", m0);
    has(text, want);
    for (int i = 1; i < NCARDS; i++) {
        char mi[CARD_MASK_SIZE];
        card_mask(pans[i], 16, mi);
        snprintf(want, sizeof(want),
                 "c-%d %s 2024-03-01T00:00:00Z ALERT: quiet (low)\n", i, mi);
        has(text, want);
    }
    has(text, "\n1019 transactions, 1019 on exposed cards, 1000 alerts "
              "(rules nowin.rules@");
    has(text, "  quiet                        low      1000\n");
    for (int i = 0; i < NCARDS; i++) {
        assert_null(strstr(text, pans[i]));
    }
    free(text);
    free(csv);
    free(in);
}

/* Bad options and files: exit status 1, nothing printed on out. */
static void test_errors(void **state)
{
    (void)state;
    char in[1024];
    char missing[PATH_MAX];
    txn_line(in, sizeof(in), "t1", A, T0, "approved");
    snprintf(missing, sizeof(missing), "%s/missing", tmpdir);
    const char *rules = write_file("e.rules", rules_text);
    const char *input = write_file("e.jsonl", in);
    struct rules_test_opts good = {.rules_path = rules, .input = input};
    struct rules_test_opts bad[] = {
        {.rules_path = missing, .input = input},
        {.rules_path = rules, .input = missing},
        {.rules_path = rules, .input = input, .exposed_csv = missing},
        {.rules_path = rules, .input = input, .window_start = "2024-13-01"},
        {.rules_path = rules, .input = input, .window_end = "soon"},
        {.rules_path = rules, .input = input, .elements = "pan,iban"},
    };
    int status;
    char *text = run_rules_test(&good, &status);
    assert_int_equal(status, 0);
    free(text);
    fflush(stderr);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        text = run_rules_test(&bad[i], &status);
        if (status != 1 || text[0] != '\0') {
            fail_msg("case %zu: status %d, out:\n%s", i, status, text);
        }
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_transactions_in_order),
        cmocka_unit_test(test_window_not_started),
        cmocka_unit_test(test_stdin_many_cards_suppressed),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
