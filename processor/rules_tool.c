/* rules_tool.c - see rules_tool.h. */
#include "rules_tool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alert.h"
#include "breach.h"
#include "card.h"
#include "listcsv.h"
#include "log.h"
#include "rules.h"
#include "text.h"
#include "txn.h"
#include "windows.h"

#define MOD "rules"
#define CARD_BUCKETS 8192

static void print_warning(void *arg, const char *msg)
{
    fprintf((FILE *)arg, "%s\n", msg);
}

int rules_tool_check(int nfiles, char *const *files, FILE *out)
{
    int status = 0;
    for (int i = 0; i < nfiles; i++) {
        char err[1024];
        struct ruleset *rs = rules_load(files[i], err, sizeof(err));
        if (rs == NULL) {
            fprintf(out, "%s\n", err);
            status = 1;
            continue;
        }
        size_t nw = rules_warnings(rs, print_warning, out);
        fprintf(out, "%s: ok (%zu rule%s, version %s%s)\n", files[i],
                rules_count(rs), rules_count(rs) == 1 ? "" : "s",
                rules_version(rs), nw ? ", with warnings" : "");
        rules_destroy(rs);
    }
    return status;
}

/* ---- offline state: exposed cards and per-card windows in memory ---- */

struct card {
    struct card *next;
    char pan[CARD_PAN_MAX + 1];
    char expiry[5]; /* "" when the list had none */
    int exposed;
    struct win_entry *entries;
    size_t n, cap;
    struct rule_last *last; /* rules_count() entries */
};

struct mem {
    struct card *buckets[CARD_BUCKETS];
    size_t n_rules;
};

static unsigned hash_pan(const char *pan)
{
    unsigned h = 2166136261u;
    for (; *pan; pan++) {
        h = (h ^ (unsigned char)*pan) * 16777619u;
    }
    return h % CARD_BUCKETS;
}

static struct card *get_card(struct mem *m, const char *pan, size_t len,
                             int create)
{
    char key[CARD_PAN_MAX + 1];
    if (len > CARD_PAN_MAX) {
        return NULL;
    }
    memcpy(key, pan, len);
    key[len] = '\0';
    unsigned b = hash_pan(key);
    for (struct card *c = m->buckets[b]; c != NULL; c = c->next) {
        if (strcmp(c->pan, key) == 0) {
            return c;
        }
    }
    if (!create) {
        return NULL;
    }
    struct card *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    memcpy(c->pan, key, len + 1);
    c->last = calloc(m->n_rules ? m->n_rules : 1, sizeof(*c->last));
    if (c->last == NULL) {
        free(c);
        return NULL;
    }
    c->next = m->buckets[b];
    m->buckets[b] = c;
    return c;
}

static void free_mem(struct mem *m)
{
    for (size_t b = 0; b < CARD_BUCKETS; b++) {
        struct card *c = m->buckets[b];
        while (c != NULL) {
            struct card *n = c->next;
            memset(c->pan, 0, sizeof(c->pan));
            free(c->entries);
            free(c->last);
            free(c);
            c = n;
        }
    }
}

static int add_exposed(void *arg, const struct list_row *row)
{
    struct card *c = get_card(arg, row->pan, row->len, 1);
    if (c == NULL) {
        fprintf(stderr, "cardwatch rules test: out of memory\n");
        return -1;
    }
    c->exposed = 1;
    snprintf(c->expiry, sizeof(c->expiry), "%s", row->expiry);
    return 0;
}

/* The card's entries that arrived before txn_id's first arrival: all of
 * them for a new txn id, fewer for a redelivery (the service answers a
 * redelivered event as it answered the first time: state.h). */
static size_t arrived_before(const struct card *c, const char *txn_id)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->entries[i].txn_id, txn_id) == 0) {
            return i;
        }
    }
    return c->n;
}

static int remember(struct card *c, const struct win_entry *e)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->entries[i].txn_id, e->txn_id) == 0) {
            return 0; /* redelivery: counted once */
        }
    }
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        struct win_entry *ne = realloc(c->entries, ncap * sizeof(*ne));
        if (ne == NULL) {
            return -1;
        }
        c->entries = ne;
        c->cap = ncap;
    }
    c->entries[c->n++] = *e;
    return 0;
}

static void fmt_time(int64_t ms, char *buf, size_t len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The breach every exposed card of a test is listed in, from the options
 * (defaults: "test", all of time, pan and expiry). Returns 0, or -1 after
 * printing what is wrong. */
static int test_breach(const struct rules_test_opts *o, struct breach *b)
{
    char err[1024];
    snprintf(b->id, sizeof(b->id), "%s", o->breach_id ? o->breach_id : "test");
    if (breach_date_parse(o->window_start ? o->window_start : "1970-01-01", 0,
                          &b->window_start_ms) != 0) {
        fprintf(stderr, "cardwatch rules test: --window-start: give a date "
                        "YYYY-MM-DD\n");
        return -1;
    }
    if (breach_date_parse(o->window_end ? o->window_end : "9999-12-31", 1,
                          &b->window_end_ms) != 0) {
        fprintf(stderr, "cardwatch rules test: --window-end: give a date "
                        "YYYY-MM-DD\n");
        return -1;
    }
    if (breach_elements_parse(o->elements ? o->elements : "pan,expiry",
                              &b->elements, err, sizeof(err)) != 0) {
        fprintf(stderr, "cardwatch rules test: --elements: %s\n", err);
        return -1;
    }
    return 0;
}

/* One run of `rules test`: what each transaction is evaluated with, and
 * the counts printed at the end. */
struct test_run {
    const struct rules_test_opts *o;
    FILE *out;
    const struct ruleset *rs;
    struct mem *m;
    const struct breach *b;
    const int64_t *wins; /* rules_windows() */
    size_t nw, nr;       /* windows, rules */
    unsigned long n_txn, n_exposed, n_alerts;
    unsigned long *per_rule; /* alerts per rule (nr entries) */
    int *fired, *supp;       /* rules_eval() of one transaction */
};

/* Prints the answer to transaction f->txn on card c (when: its event
 * time) with each rule's explanation; counts the alerts and keeps the
 * card's suppression state. */
static void test_print(struct test_run *r, struct card *c,
                       const struct rule_facts *f, const struct rule_hit *hits,
                       size_t nh, const char *when)
{
    const struct txn *t = f->txn;
    FILE *out = r->out;
    fprintf(out, "%s %s %s %s", t->txn_id, t->pan_masked, when,
            nh ? "ALERT" : "no alert");
    for (size_t i = 0; i < nh; i++) {
        fprintf(out, "%s%s (%s)", i ? ", " : ": ", hits[i].rule_id,
                severity_name(hits[i].severity));
    }
    fputc('\n', out);
    for (size_t i = 0; i < r->nr; i++) {
        if (!r->fired[i] && !r->o->all) {
            continue;
        }
        char why[1024];
        rules_explain(r->rs, i, f, why, sizeof(why));
        fprintf(out, "    %s%s\n", why,
                r->supp[i] ? "  [suppressed: fired within its suppress "
                             "span]"
                           : "");
        if (r->fired[i] && !r->supp[i]) {
            r->per_rule[i]++;
            if (rules_suppress_ms(r->rs, i) > 0) {
                c->last[i].last_ms = t->event_time_ms;
                snprintf(c->last[i].txn_id, sizeof(c->last[i].txn_id),
                         "%s", t->txn_id);
            }
        }
    }
    r->n_alerts += nh > 0;
}

/* One input line (lineno) of len bytes: decoded, looked up, evaluated
 * with the card's windows, printed. Returns 0 (an invalid line is
 * reported and skipped), or -1 after printing that memory ran out. */
static int test_txn(struct test_run *r, const char *line, size_t len,
                    unsigned long lineno)
{
    const struct rules_test_opts *o = r->o;
    FILE *out = r->out;
    struct txn t;
    enum txn_status st = txn_decode_json(line, len, &t);
    if (st != TXN_OK) {
        fprintf(out, "%s:%lu: invalid transaction (%s); skipped\n",
                o->input, lineno, txn_status_name(st));
        return 0;
    }
    r->n_txn++;
    struct card *c = get_card(r->m, t.pan, t.pan_len, 0);
    const struct issuer *iss =
        o->config ? config_route(o->config, t.bin, strlen(t.bin)) : NULL;
    char when[32];
    fmt_time(t.event_time_ms, when, sizeof(when));
    if (c == NULL || !c->exposed) {
        txn_forget_pan(&t);
        if (o->all) {
            fprintf(out, "%s %s %s not exposed: no rule work\n",
                    t.txn_id, t.pan_masked, when);
        }
        return 0;
    }
    r->n_exposed++;
    struct rule_match match = {r->b, c->expiry[0] != '\0',
                               strcmp(c->expiry, t.expiry) == 0};
    txn_forget_pan(&t);
    struct win_entry cur;
    win_entry_from_txn(&cur, &t);
    struct win_stats ws[WIN_MAX_WINDOWS];
    if (win_aggregate(c->entries, arrived_before(c, cur.txn_id), &cur,
                      r->wins, r->nw, ws) != 0 ||
        remember(c, &cur) != 0) {
        fprintf(stderr, "cardwatch rules test: out of memory\n");
        return -1;
    }
    struct rule_facts f = {&t, iss, &match, 1, r->nw ? ws : NULL, c->last};
    struct rule_hit hits[ALERT_MAX_HITS];
    int active = 0;
    size_t nh = rules_eval(r->rs, &f, hits, ALERT_MAX_HITS, r->fired,
                           r->supp, &active);
    int any = 0;
    for (size_t i = 0; i < r->nr; i++) {
        any |= r->fired[i];
    }
    if (nh == 0 && !any && !o->all) {
        return 0;
    }
    test_print(r, c, &f, hits, nh, when);
    return 0;
}

int rules_tool_test(const struct rules_test_opts *o, FILE *out)
{
    char err[1024];
    int status = 1;
    struct mem *m = calloc(1, sizeof(*m));
    struct ruleset *rs = NULL;
    FILE *in = NULL;
    char *line = NULL;
    size_t cap = 0;
    struct breach b;
    memset(&b, 0, sizeof(b));
    struct test_run r = {.o = o, .out = out, .m = m, .b = &b};
    if (m == NULL) {
        fprintf(stderr, "cardwatch rules test: out of memory\n");
        return 1;
    }
    rs = rules_load(o->rules_path, err, sizeof(err));
    if (rs == NULL) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    m->n_rules = rules_count(rs);
    if (test_breach(o, &b) != 0) {
        goto out;
    }
    struct list_stats ls;
    if (o->exposed_csv != NULL &&
        list_read(o->exposed_csv, 0, add_exposed, m, &ls) != 0) {
        goto out;
    }
    in = strcmp(o->input, "-") == 0 ? stdin : fopen(o->input, "r");
    if (in == NULL) {
        fprintf(stderr, "cardwatch rules test: %s: %s\n", o->input,
                strerror(errno));
        goto out;
    }
    r.rs = rs;
    r.nw = rules_windows(rs, &r.wins);
    r.nr = rules_count(rs);
    size_t nr = r.nr;
    unsigned long lineno = 0;
    r.per_rule = calloc(nr ? nr : 1, sizeof(*r.per_rule));
    r.fired = calloc(nr ? nr : 1, sizeof(int));
    r.supp = calloc(nr ? nr : 1, sizeof(int));
    if (r.per_rule == NULL || r.fired == NULL || r.supp == NULL) {
        fprintf(stderr, "cardwatch rules test: out of memory\n");
        goto out;
    }
    ssize_t len;
    while ((len = text_next_line(in, &line, &cap, &lineno)) >= 0) {
        if (test_txn(&r, line, (size_t)len, lineno) != 0) {
            goto out;
        }
    }
    fprintf(out, "\n%lu transactions, %lu on exposed cards, %lu alerts "
                 "(rules %s)\n", r.n_txn, r.n_exposed, r.n_alerts,
            rules_version(rs));
    for (size_t i = 0; i < nr; i++) {
        fprintf(out, "  %-28s %-8s %lu\n", rules_id(rs, i),
                severity_name(rules_severity(rs, i)), r.per_rule[i]);
    }
    status = 0;
out:
    free(r.per_rule);
    free(r.fired);
    free(r.supp);
    free(line);
    if (in != NULL && in != stdin) {
        fclose(in);
    }
    rules_destroy(rs);
    free_mem(m);
    free(m);
    return status;
}
