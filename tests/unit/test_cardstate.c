/* test_cardstate.c - the per-card window/suppression semantics that the
 * Redis script LUA_OBSERVE had, as cardstate.c computes them: the cases
 * the script handled (arrival seq, re-processing, formats before sequence
 * numbers, pruning with and without grace, floors of late events,
 * suppression per rule, malformed values) and the changes it reports for
 * Redis, in the script's value formats.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cardstate.h"

#define T0 1700000000000LL
#define MIN 60000LL
#define HZ (70 * MIN) /* horizon: 1 h window + 10 min lateness */
#define NOW 1800000000000LL

/* The changes reported, one string each: "w f v", "x f", "s f v", "y f". */
struct rec {
    char ops[64][640];
    size_t n;
    int fail; /* refuse every change from now on */
};

static int record_op(void *arg, enum cs_op op, const char *field, size_t flen,
                     const char *val, size_t vlen)
{
    struct rec *r = arg;
    static const char k[] = "wxsy";
    if (r->fail) {
        return -1;
    }
    assert_true(r->n < 64);
    if (val != NULL) {
        snprintf(r->ops[r->n], sizeof(r->ops[0]), "%c %.*s %.*s", k[op],
                 (int)flen, field, (int)vlen, val);
    } else {
        snprintf(r->ops[r->n], sizeof(r->ops[0]), "%c %.*s", k[op], (int)flen,
                 field);
    }
    r->n++;
    return 0;
}

static int has_op(const struct rec *r, const char *prefix)
{
    for (size_t i = 0; i < r->n; i++) {
        if (strncmp(r->ops[i], prefix, strlen(prefix)) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The record of txn id at t (amount 100, merchant m-<id>). */
static size_t record_of(const char *id, int64_t t, char *buf, size_t len)
{
    struct win_entry e;
    memset(&e, 0, sizeof(e));
    snprintf(e.txn_id, sizeof(e.txn_id), "%s", id);
    e.event_time_ms = t;
    e.amount_minor = 100;
    snprintf(e.merchant_id, sizeof(e.merchant_id), "m-%s", id);
    snprintf(e.merchant_country, sizeof(e.merchant_country), "DE");
    int n = win_entry_encode(&e, buf, len);
    assert_true(n > 0);
    return (size_t)n;
}

struct fx {
    struct cardstate cs;
    struct cs_scratch sc;
    struct rec r;
    char rb[512];
};

/* Observes id at t (now, grace, sup horizon as given); fills v. */
static void obs(struct fx *f, const char *id, int64_t t, int64_t now,
                int64_t grace, int64_t suph, struct cs_view *v)
{
    size_t rl = record_of(id, t, f->rb, sizeof(f->rb));
    struct cs_event ev = {id, t, f->rb, rl, HZ, suph, now, grace};
    f->r.n = 0;
    assert_int_equal(
        cardstate_observe(&f->cs, &ev, &f->sc, v, record_op, &f->r), 0);
}

static int view_has(const struct cs_view *v, const char *id)
{
    for (size_t i = 0; i < v->n_entries; i++) {
        if (strcmp(v->entries[i].txn_id, id) == 0) {
            return 1;
        }
    }
    return 0;
}

static void fx_free(struct fx *f)
{
    cardstate_clear(&f->cs);
    cardstate_scratch_free(&f->sc);
}

/* First arrivals get seq 1, 2, 3 and the script's value format; each
 * view holds the earlier arrivals and the event itself. */
static void test_arrival_order_and_format(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    struct cs_view v;
    obs(&f, "a", T0, NOW, 0, 0, &v);
    assert_int_equal(v.seq, 1);
    assert_int_equal(v.newest_ms, T0);
    assert_int_equal(v.n_entries, 1);
    char want[700];
    size_t rl = record_of("a", T0, f.rb, sizeof(f.rb));
    snprintf(want, sizeof(want), "w a %lld:1:%lld:%lld:%.*s", T0, T0, NOW,
             (int)rl, f.rb);
    assert_int_equal(f.r.n, 1);
    assert_string_equal(f.r.ops[0], want);
    obs(&f, "b", T0 + MIN, NOW, 0, 0, &v);
    assert_int_equal(v.seq, 2);
    assert_int_equal(v.n_entries, 2);
    /* out of order in event time: still the third arrival */
    obs(&f, "c", T0 - MIN, NOW, 0, 0, &v);
    assert_int_equal(v.seq, 3);
    assert_int_equal(v.newest_ms, T0 + MIN);
    assert_int_equal(v.n_entries, 3);
    fx_free(&f);
}

/* Re-processing b after c arrived gives b's first view: a and b only;
 * nothing is written again. */
static void test_reprocessing_same_view(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    struct cs_view v;
    obs(&f, "a", T0, NOW, 0, 0, &v);
    obs(&f, "b", T0 + MIN, NOW, 0, 0, &v);
    obs(&f, "c", T0 + 2 * MIN, NOW, 0, 0, &v);
    obs(&f, "b", T0 + MIN, NOW + 5, 0, 0, &v);
    assert_int_equal(v.seq, 2);
    assert_int_equal(v.newest_ms, T0 + MIN);
    assert_int_equal(v.n_entries, 2);
    assert_true(view_has(&v, "a") && view_has(&v, "b"));
    assert_false(view_has(&v, "c"));
    assert_int_equal(f.r.n, 0);
    fx_free(&f);
}

/* Values from before sequence numbers ("<ms>:<record>") count as seq 0:
 * before every new arrival; re-processing such an entry sees everything
 * held (it has no recorded view). */
static void test_old_format(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    char val[600];
    size_t rl = record_of("old", T0 - MIN, f.rb, sizeof(f.rb));
    int vl = snprintf(val, sizeof(val), "%lld:%.*s", T0 - MIN, (int)rl, f.rb);
    assert_int_equal(cardstate_load_win(&f.cs, "old", 3, val, (size_t)vl), 0);
    struct cs_view v;
    obs(&f, "n1", T0, NOW, 0, 0, &v);
    assert_int_equal(v.seq, 1);
    assert_true(view_has(&v, "old") && view_has(&v, "n1"));
    obs(&f, "old", T0 - MIN, NOW, 0, 0, &v);
    assert_int_equal(v.seq, 0);
    assert_int_equal(v.newest_ms, T0); /* the card's newest now */
    assert_true(view_has(&v, "old") && view_has(&v, "n1"));
    fx_free(&f);
}

/* Entries below the card's floor are deleted (HDEL) unless an entry seen
 * within the grace still needs them; a late event's floor leaves out
 * what is older than its own newest - horizon. */
static void test_pruning_and_grace(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    struct cs_view v;
    /* no grace: old is pruned when new is 2 horizons later */
    obs(&f, "old", T0, NOW, 0, 0, &v);
    obs(&f, "new", T0 + 2 * HZ, NOW, 0, 0, &v);
    assert_false(view_has(&v, "old"));
    assert_true(has_op(&f.r, "x old"));
    assert_int_equal(f.cs.n, 1);
    fx_free(&f);

    /* with grace: old was seen within it, so new's floor is lowered to
     * old's (old may be evaluated again and must find its window) */
    memset(&f, 0, sizeof(f));
    obs(&f, "old", T0, NOW, 10 * MIN, 0, &v);
    obs(&f, "new", T0 + 2 * HZ, NOW + 1000, 10 * MIN, 0, &v);
    assert_false(view_has(&v, "old")); /* below new's floor */
    assert_false(has_op(&f.r, "x old"));
    assert_int_equal(f.cs.n, 2);
    /* grace over: pruned by the next event */
    obs(&f, "newer", T0 + 2 * HZ + 1, NOW + 11 * MIN, 10 * MIN, 0, &v);
    assert_true(has_op(&f.r, "x old"));
    fx_free(&f);

    /* a late event (event time far below the newest) is itself pruned
     * right after it was added, as the script did */
    memset(&f, 0, sizeof(f));
    obs(&f, "a", T0 + 3 * HZ, NOW, 0, 0, &v);
    obs(&f, "late", T0, NOW, 0, 0, &v);
    assert_int_equal(v.seq, 2);
    assert_int_equal(v.n_entries, 1); /* a only: late is below its floor */
    assert_true(has_op(&f.r, "w late "));
    assert_true(has_op(&f.r, "x late"));
    assert_int_equal(f.cs.n, 1);
    fx_free(&f);
}

/* Suppression: per rule the latest record of an earlier arrival at or
 * before the event time, never the event's own; older "<rule>" ->
 * "<ms>|<txn>" records count as seq 0; records below the suppression
 * horizon are deleted. */
static void test_suppression(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    struct cs_view v;
    int64_t suph = 30 * MIN;
    obs(&f, "a", T0, NOW, 0, suph, &v);
    f.r.n = 0;
    assert_int_equal(
        cardstate_suppress(&f.cs, "r1", "a", T0, v.seq, record_op, &f.r), 0);
    assert_string_equal(f.r.ops[0], "s r1|a 1700000000000|1");
    assert_int_equal(
        cardstate_suppress(&f.cs, "bad|rule", "a", T0, 1, record_op, &f.r), -1);
    obs(&f, "b", T0 + MIN, NOW, 0, suph, &v);
    assert_int_equal(v.n_sups, 1);
    assert_string_equal(v.sups[0].rule_id, "r1");
    assert_int_equal(v.sups[0].last_ms, T0);
    assert_string_equal(v.sups[0].txn_id, "a");
    assert_int_equal(
        cardstate_suppress(&f.cs, "r1", "b", T0 + MIN, v.seq, record_op, &f.r),
        0);
    /* re-processing a: its own record and b's (later arrival) unseen */
    obs(&f, "a", T0, NOW, 0, suph, &v);
    assert_int_equal(v.n_sups, 0);
    /* c sees the latest: b's */
    obs(&f, "c", T0 + 2 * MIN, NOW, 0, suph, &v);
    assert_int_equal(v.n_sups, 1);
    assert_int_equal(v.sups[0].last_ms, T0 + MIN);
    assert_string_equal(v.sups[0].txn_id, "b");
    /* an event earlier in event time than every record sees none */
    obs(&f, "d", T0 - MIN, NOW, 0, suph, &v);
    assert_int_equal(v.n_sups, 0);
    /* far later: the records fall below the suppression horizon */
    obs(&f, "e", T0 + 10 * HZ, NOW, 0, suph, &v);
    assert_int_equal(v.n_sups, 0);
    assert_true(has_op(&f.r, "y r1|a"));
    assert_true(has_op(&f.r, "y r1|b"));
    assert_int_equal(f.cs.ns, 0);
    fx_free(&f);

    /* the format before sequence numbers */
    memset(&f, 0, sizeof(f));
    assert_int_equal(cardstate_load_sup(&f.cs, "r2", 2, "1699999990000|x0", 16),
                     0);
    obs(&f, "z", T0, NOW, 0, suph, &v);
    assert_int_equal(v.n_sups, 1);
    assert_string_equal(v.sups[0].rule_id, "r2");
    assert_string_equal(v.sups[0].txn_id, "x0");
    assert_int_equal(v.sups[0].last_ms, 1699999990000LL);
    fx_free(&f);
}

/* Malformed values: the loader reports them (the caller deletes them as
 * the script did); an entry whose record does not decode still counts for
 * seq but is never in a view. */
static void test_malformed(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    assert_int_equal(cardstate_load_win(&f.cs, "x", 1, "junk", 4), 1);
    assert_int_equal(cardstate_load_win(&f.cs, "y", 1, ":1:2:3:", 7), 1);
    assert_int_equal(cardstate_load_sup(&f.cs, "r|t", 3, "5|x", 3), 1);
    assert_int_equal(cardstate_load_sup(&f.cs, "r", 1, "nope", 4), 1);
    assert_int_equal(cardstate_load_sup(&f.cs, "r|t", 3, "5|6|7", 5), 1);
    char val[64];
    int vl = snprintf(val, sizeof(val), "%lld:7:%lld:0:not-a-record", T0, T0);
    assert_int_equal(cardstate_load_win(&f.cs, "q", 1, val, (size_t)vl), 0);
    struct cs_view v;
    obs(&f, "n", T0 + 1, NOW, 0, 0, &v);
    assert_int_equal(v.seq, 8);
    assert_int_equal(v.n_entries, 1);
    assert_int_equal(v.n_bad, 1);
    fx_free(&f);
}

/* A refused new entry leaves the card as it was. */
static void test_emit_refused(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    struct cs_view v;
    obs(&f, "a", T0, NOW, 0, 0, &v);
    f.r.fail = 1;
    size_t rl = record_of("b", T0 + 1, f.rb, sizeof(f.rb));
    struct cs_event ev = {"b", T0 + 1, f.rb, rl, HZ, 0, NOW, 0};
    assert_int_equal(cardstate_observe(&f.cs, &ev, &f.sc, &v, record_op, &f.r),
                     -1);
    assert_int_equal(f.cs.n, 1);
    assert_int_equal(
        cardstate_suppress(&f.cs, "r", "a", T0, 1, record_op, &f.r), -1);
    assert_int_equal(f.cs.ns, 0);
    assert_true(cardstate_bytes(&f.cs) > 0);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arrival_order_and_format),
        cmocka_unit_test(test_reprocessing_same_view),
        cmocka_unit_test(test_old_format),
        cmocka_unit_test(test_pruning_and_grace),
        cmocka_unit_test(test_suppression),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_emit_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
