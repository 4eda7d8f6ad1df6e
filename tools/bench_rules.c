/* bench_rules - the pure cost of rule work on one exposed card's
 * transaction: window aggregation over the card's recent entries and
 * evaluation of a rule set (default: rules/default.rules), and the
 * in-process window state step before them (cardstate_observe on a card
 * holding ENTRIES entries: add, prune, view; state_ns). Prints one JSON
 * line. Used by `make bench`; not a test.
 *
 *   bench_rules [RULES_FILE] [ENTRIES] [ITERATIONS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breach.h"
#include "cardstate.h"
#include "clock.h"
#include "config.h"
#include "rules.h"
#include "windows.h"

/* The changes are not kept: only their cost in cardstate counts. */
static int count_op(void *arg, enum cs_op op, const char *field, size_t flen,
                    const char *val, size_t vlen)
{
    (void)arg;
    (void)op;
    (void)field;
    (void)flen;
    (void)val;
    (void)vlen;
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "rules/default.rules";
    size_t n_entries = argc > 2 ? (size_t)atol(argv[2]) : 20;
    long iters = argc > 3 ? atol(argv[3]) : 2000000;
    char err[512];
    struct ruleset *rs = rules_load(path, err, sizeof(err));
    if (rs == NULL) {
        fprintf(stderr, "bench_rules: %s\n", err);
        return 1;
    }
    const int64_t *wins = NULL;
    size_t nw = rules_windows(rs, &wins);

    /* A card with n_entries transactions over the last 12 hours. */
    int64_t now = 1722470400000LL;
    struct win_entry *e = calloc(n_entries + 1, sizeof(*e));
    if (e == NULL) {
        return 1;
    }
    for (size_t i = 0; i < n_entries; i++) {
        snprintf(e[i].txn_id, sizeof(e[i].txn_id), "t-%zu", i);
        e[i].event_time_ms = now - (int64_t)(i * 43200000 / (n_entries + 1));
        e[i].amount_minor = 1000 + (int64_t)i * 37;
        e[i].declined = i % 5 == 0;
        snprintf(e[i].merchant_id, sizeof(e[i].merchant_id), "m-%zu", i % 7);
        snprintf(e[i].merchant_country, sizeof(e[i].merchant_country), "%s",
                 i % 3 ? "DE" : "FR");
    }
    struct txn t;
    memset(&t, 0, sizeof(t));
    snprintf(t.txn_id, sizeof(t.txn_id), "current");
    t.amount_minor = 150;
    snprintf(t.currency, sizeof(t.currency), "EUR");
    t.mcc = 5999;
    snprintf(t.merchant_id, sizeof(t.merchant_id), "m-1");
    snprintf(t.merchant_country, sizeof(t.merchant_country), "US");
    t.channel = TXN_CHANNEL_ECOMMERCE;
    t.entry_mode = TXN_ENTRY_KEYED;
    t.response = TXN_RESPONSE_APPROVED;
    t.event_time_ms = now + 1000;
    struct win_entry cur;
    win_entry_from_txn(&cur, &t);
    struct breach b;
    memset(&b, 0, sizeof(b));
    snprintf(b.id, sizeof(b.id), "bench");
    b.window_start_ms = now - 86400000LL * 400;
    b.window_end_ms = now - 86400000LL * 10;
    b.elements = BREACH_EL_PAN | BREACH_EL_EXPIRY | BREACH_EL_CVV2;
    struct rule_match m = {&b, 1, 1};
    struct issuer iss;
    memset(&iss, 0, sizeof(iss));
    snprintf(iss.id, sizeof(iss.id), "bench_bank");
    snprintf(iss.home_country, sizeof(iss.home_country), "DE");
    struct win_stats ws[WIN_MAX_WINDOWS];
    struct rule_hit hits[ALERT_MAX_HITS];
    int active[1];
    long total_hits = 0;

    uint64_t t0 = clock_mono_ns();
    for (long i = 0; i < iters; i++) {
        cur.amount_minor = 100 + i % 200;
        win_aggregate(e, n_entries, &cur, wins, nw, ws);
    }
    uint64_t t1 = clock_mono_ns();
    if (win_aggregate(e, n_entries, &cur, wins, nw, ws) != 0) {
        return 1;
    }
    struct rule_facts f = {&t, &iss, &m, 1, nw ? ws : NULL, NULL};
    for (long i = 0; i < iters; i++) {
        t.amount_minor = 100 + i % 200;
        total_hits += (long)rules_eval(rs, &f, hits, ALERT_MAX_HITS, NULL,
                                       NULL, active);
    }
    uint64_t t2 = clock_mono_ns();
    /* The state step: a card with n_entries entries, one new event every
     * 43200000 / (n_entries + 1) ms, so each one prunes about one entry
     * (horizon 12 h) and the card keeps its size. */
    struct cardstate cs;
    struct cs_scratch sc;
    memset(&cs, 0, sizeof(cs));
    memset(&sc, 0, sizeof(sc));
    int64_t step = 43200000 / (int64_t)(n_entries + 1);
    char rec[512], val[600];
    for (size_t i = n_entries; i-- > 0;) {
        int rl = win_entry_encode(&e[i], rec, sizeof(rec));
        int vl = snprintf(val, sizeof(val), "%lld:%zu:%lld:0:%.*s",
                          (long long)e[i].event_time_ms, n_entries - i,
                          (long long)e[i].event_time_ms, rl, rec);
        if (rl < 0 || cardstate_load_win(&cs, e[i].txn_id,
                                         strlen(e[i].txn_id), val,
                                         (size_t)vl) != 0) {
            return 1;
        }
    }
    long state_iters = iters / 4 > 0 ? iters / 4 : 1;
    size_t viewed = 0;
    uint64_t t3 = clock_mono_ns();
    for (long i = 0; i < state_iters; i++) {
        struct win_entry x = cur;
        snprintf(x.txn_id, sizeof(x.txn_id), "s-%ld", i);
        x.event_time_ms = now + (int64_t)(i + 1) * step;
        int rl = win_entry_encode(&x, rec, sizeof(rec));
        struct cs_event ce = {x.txn_id, x.event_time_ms, rec, (size_t)rl,
                              43200000, 0, now, 0};
        struct cs_view v;
        if (cardstate_observe(&cs, &ce, &sc, &v, count_op, NULL) != 0) {
            return 1;
        }
        viewed += v.n_entries;
    }
    uint64_t t4 = clock_mono_ns();
    double agg = (double)(t1 - t0) / (double)iters;
    double ev = (double)(t2 - t1) / (double)iters;
    double st = (double)(t4 - t3) / (double)state_iters;
    printf("{\"rules\":\"%s\",\"entries\":%zu,\"windows\":%zu,"
           "\"aggregate_ns\":%.0f,\"eval_ns\":%.0f,"
           "\"evals_per_s\":%.0f,\"aggregate_and_eval_per_s\":%.0f,"
           "\"state_ns\":%.0f,\"state_aggregate_eval_per_s\":%.0f,"
           "\"view_entries\":%.1f,\"hits\":%ld}\n",
           rules_version(rs), n_entries, nw, agg, ev, 1e9 / ev,
           1e9 / (agg + ev), st, 1e9 / (st + agg + ev),
           (double)viewed / (double)state_iters, total_hits);
    cardstate_clear(&cs);
    cardstate_scratch_free(&sc);
    free(e);
    rules_destroy(rs);
    return 0;
}
