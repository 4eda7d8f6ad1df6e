/* app_cpp.c - `cardwatch cpp` (see app_cpp.h): the compromised cards in,
 * the history streamed through cpp.c, the ranking out. Blocking: a
 * command-line tool, never on the service's event loop. */
#include "app_cpp.h"

#include <errno.h>
#include <inttypes.h>
#include <event2/event.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calendar.h"
#include "card.h"
#include "clock.h"
#include "cpp.h"
#include "kafka_seek.h"
#include "listcsv.h"
#include "log.h"
#include "rblock.h"
#include "report_html.h"
#include "rmodel.h"
#include "source_range.h"
#include "text.h"
#include "timeparse.h"
#include "txn.h"

#define MOD "cpp"
#define BATCH 512
#define MAX_BAD_LOGGED 10
#define DAY_MS 86400000LL
#define SEEK_TIMEOUT_MS 60000

static volatile sig_atomic_t cpp_signal;

static void on_signal(int sig)
{
    cpp_signal = sig;
}

/* ---- a set of fingerprints (the suspected breach's cards) ---- */

struct fpset {
    uint8_t (*fp)[RMODEL_FP_BIN];
    uint8_t *used;
    size_t cap, n;
};

static size_t fpset_at(const struct fpset *s, const uint8_t *fp)
{
    uint64_t h;
    memcpy(&h, fp, 8);
    size_t i = (size_t)(h * 0x9e3779b97f4a7c15ULL) & (s->cap - 1);
    while (s->used[i] && memcmp(s->fp[i], fp, RMODEL_FP_BIN) != 0) {
        i = (i + 1) & (s->cap - 1);
    }
    return i;
}

/* Adds fp. Returns 0, or -1 when out of memory. */
static int fpset_add(struct fpset *s, const uint8_t *fp)
{
    if ((s->n + 1) * 2 > s->cap) {
        struct fpset g = {0};
        g.cap = s->cap != 0 ? s->cap * 2 : 1024;
        g.fp = calloc(g.cap, sizeof(*g.fp));
        g.used = calloc(g.cap, 1);
        if (g.fp == NULL || g.used == NULL) {
            free(g.fp);
            free(g.used);
            return -1;
        }
        for (size_t i = 0; i < s->cap; i++) {
            if (s->used[i]) {
                size_t j = fpset_at(&g, s->fp[i]);
                memcpy(g.fp[j], s->fp[i], RMODEL_FP_BIN);
                g.used[j] = 1;
                g.n++;
            }
        }
        free(s->fp);
        free(s->used);
        *s = g;
    }
    size_t i = fpset_at(s, fp);
    if (!s->used[i]) {
        memcpy(s->fp[i], fp, RMODEL_FP_BIN);
        s->used[i] = 1;
        s->n++;
    }
    return 0;
}

static int cmp_fp(const void *a, const void *b)
{
    return memcmp(a, b, RMODEL_FP_BIN);
}

/* ---- the run ---- */

struct cpp_app {
    const struct config *c;
    const struct cpp_run_opts *o;
    struct card_key *key;
    struct cpp *cpp;
    uint64_t case_rows, case_rejected, case_later, feed_cases, feed_other_key;
    uint64_t feed_bad_time; /* confirmed_fraud alerts with an odd time */
    /* the history */
    int pass; /* 1: observe; 2: collect the suspect's cards */
    uint64_t records, invalid, outside, oom;
    uint64_t bytes_done, bytes_total; /* over all files, for progress */
    uint64_t last_draw_ns, t0_ns;
    int64_t from_ms, to_ms; /* what pass 1 needs (the period) */
    struct cpp_obs obs[BATCH]; /* pass 1: waiting for cpp_observe_batch */
    char obs_merchant[BATCH][TXN_MERCHANT_MAX + 1];
    size_t n_obs;
    const char *emit_merchant;
    int64_t emit_from_ms, emit_to_ms;
    struct fpset emit;
};

/* ---- the compromised cards: a CSV file ---- */

static int case_row(void *arg, const struct list_row *row)
{
    struct cpp_app *a = arg;
    char hex[CARD_FP_SIZE];
    uint8_t bin[RMODEL_FP_BIN];
    int64_t ff;
    char why[160];
    a->case_rows++;
    if (row->first_fraud == NULL || row->first_fraud[0] == '\0' ||
        timeparse_ms(row->first_fraud, &ff, why, sizeof(why)) != 0) {
        log_msg(LOG_WARN, MOD, "%s:%lu: rejected: first_fraud %s",
                a->o->frauds, row->line,
                row->first_fraud == NULL || row->first_fraud[0] == '\0'
                    ? "is empty"
                    : why);
        a->case_rejected++;
        return 0;
    }
    if (row->pan != NULL && row->len > 0) {
        if (card_fingerprint(a->key, row->pan, row->len, hex) != 0) {
            log_msg(LOG_ERROR, MOD, "fingerprint failed (OpenSSL)");
            return -1;
        }
    } else {
        if (strcmp(row->key_id, card_key_id(a->key)) != 0) {
            log_msg(LOG_ERROR, MOD,
                    "%s:%lu: fingerprint under key id '%s', but [card] "
                    "key_file holds key id '%s': it can never match the "
                    "history",
                    a->o->frauds, row->line, row->key_id,
                    card_key_id(a->key));
            return -1;
        }
        snprintf(hex, sizeof(hex), "%s", row->fingerprint);
    }
    if (rmodel_fp_bin(hex, bin) != 0) {
        return -1; /* listcsv checked the form */
    }
    if (a->o->as_of_ms != 0 && ff >= a->o->as_of_ms) {
        a->case_later++;
        return 0;
    }
    int rc = cpp_add_case(a->cpp, bin, ff);
    if (rc == -2) {
        log_msg(LOG_WARN, MOD, "%s:%lu: rejected: first_fraud is not after "
                "1970 and before year 10000", a->o->frauds, row->line);
        a->case_rejected++;
    } else if (rc != 0) {
        log_msg(LOG_ERROR, MOD, "out of memory");
        return -1;
    }
    return 0;
}

static int read_fraud_file(struct cpp_app *a)
{
    struct list_stats st;
    if (list_read(a->o->frauds, LIST_FINGERPRINTS, case_row, a, &st) != 0) {
        return -1;
    }
    a->case_rejected += st.rejected;
    return 0;
}

/* ---- the compromised cards: confirmed_fraud alerts in the feed ---- */

/* One alert hash's outcome and alert JSON: a case when confirmed_fraud. */
static void on_alert(void *arg, const redisReply *r)
{
    struct cpp_app *a = arg;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_STRING ||
        strcmp(r->element[0]->str, "confirmed_fraud") != 0) {
        return;
    }
    json_t *doc = json_loadb(r->element[1]->str, r->element[1]->len, 0, NULL);
    const char *fp = json_string_value(json_object_get(doc, "card_fingerprint"));
    json_t *t = json_object_get(doc, "event_time_ms");
    const char *kid = card_key_id(a->key);
    size_t kl = strlen(kid);
    uint8_t bin[RMODEL_FP_BIN];
    if (fp == NULL || !json_is_integer(t)) {
        json_decref(doc);
        return;
    }
    if (strncmp(fp, kid, kl) != 0 || fp[kl] != ':' ||
        rmodel_fp_bin(fp + kl + 1, bin) != 0) {
        a->feed_other_key++;
    } else if (a->o->as_of_ms != 0 &&
               json_integer_value(t) >= a->o->as_of_ms) {
        a->case_later++;
    } else {
        int rc = cpp_add_case(a->cpp, bin, json_integer_value(t));
        a->feed_cases += rc == 0;
        a->feed_bad_time += rc == -2;
        a->oom += rc == -1;
    }
    json_decref(doc);
}

static int read_feed(struct cpp_app *a)
{
    struct rblock L;
    if (rblock_open(&L, a->c, MOD) != 0) {
        return -1;
    }
    char pattern[128];
    snprintf(pattern, sizeof(pattern), "%s:alert:*", a->c->redis_prefix);
    char cursor[32] = "0";
    int rc = -1;
    do {
        redisReply *r = rblock_cmd(&L, "SCAN of the alerts",
                                   "SCAN %s MATCH %s COUNT 1000", cursor,
                                   pattern);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            rblock_free(r);
            goto out;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            if (rblock_send(&L, on_alert, a, "HMGET %b outcome alert",
                            keys->element[i]->str,
                            keys->element[i]->len) != 0) {
                rblock_free(r);
                goto out;
            }
        }
        rblock_free(r);
        if (rblock_wait(&L) != 0) {
            goto out;
        }
    } while (strcmp(cursor, "0") != 0);
    rc = 0;
out:
    rblock_close(&L);
    return rc;
}

/* ---- the history ---- */

static void draw_progress(struct cpp_app *a, int final)
{
    if (!a->o->progress) {
        return;
    }
    uint64_t now = clock_mono_ns();
    if (!final && now - a->last_draw_ns < 200000000u) {
        return;
    }
    a->last_draw_ns = now;
    double secs = (double)(now - a->t0_ns) / 1e9;
    fprintf(stderr, "\r\033[Kcpp: pass %d: %" PRIu64 " transactions",
            a->pass, a->records);
    if (a->bytes_total > 0) {
        fprintf(stderr, ", %.1f%% of the input",
                100.0 * (double)a->bytes_done / (double)a->bytes_total);
    }
    if (secs > 0) {
        fprintf(stderr, " (%.0f/s)", (double)a->records / secs);
    }
    if (final) {
        fputc('\n', stderr);
    }
}

/* Hands the transactions taken so far to the analysis. */
static void flush_obs(struct cpp_app *a)
{
    if (a->n_obs > 0) {
        int failed = cpp_observe_batch(a->cpp, a->obs, a->n_obs);
        a->oom += failed > 0 ? (uint64_t)failed : 0;
        a->n_obs = 0;
    }
}

/* One decoded transaction: its card fingerprinted, its number wiped. */
static int take_txn(struct cpp_app *a, struct txn *t)
{
    uint8_t bin[RMODEL_FP_BIN];
    int64_t ts = t->event_time_ms;
    int in = a->pass == 1 ? ts >= a->from_ms && ts < a->to_ms
                          : ts >= a->emit_from_ms && ts < a->emit_to_ms &&
                                strcmp(t->merchant_id, a->emit_merchant) == 0;
    if (!in) {
        a->outside++;
        txn_forget_pan(t);
        return 0;
    }
    int rc = card_fingerprint_bin(a->key, t->pan, t->pan_len, bin);
    txn_forget_pan(t);
    if (rc != 0) {
        log_msg(LOG_ERROR, MOD, "fingerprint failed (OpenSSL)");
        return -1;
    }
    if (a->pass == 2) {
        return fpset_add(&a->emit, bin);
    }
    struct cpp_obs *o = &a->obs[a->n_obs];
    memcpy(o->fp, bin, CPP_FP_LEN);
    o->mlen = strlen(t->merchant_id);
    memcpy(a->obs_merchant[a->n_obs], t->merchant_id, o->mlen + 1);
    o->merchant = a->obs_merchant[a->n_obs];
    o->t_ms = ts;
    if (++a->n_obs == BATCH) {
        flush_obs(a);
    }
    return 0;
}

static void bad_record(struct cpp_app *a, struct reader *r,
                       const struct reader_rec *rec, enum txn_status st)
{
    if (++a->invalid <= MAX_BAD_LOGGED && a->pass == 1) {
        log_msg(LOG_WARN, MOD, "%s:%" PRId64 ": skipped: %s%s",
                reader_path(r), rec->pos,
                rec->too_long ? "too long" : txn_status_name(st),
                a->invalid == MAX_BAD_LOGGED ? " (no more are logged)" : "");
    }
}

/* Streams one file through take_txn. Returns 0, -1 on an error (logged),
 * or 1 when a signal came. */
static int scan_file(struct cpp_app *a, const char *path)
{
    char err[256];
    struct reader *r = reader_open(path, a->o->format, 0, err, sizeof(err));
    if (r == NULL) {
        log_msg(LOG_ERROR, MOD, "%s", err);
        return -1;
    }
    uint64_t base = a->bytes_done;
    int proto = reader_format_of(r) == READER_PROTOBUF;
    struct reader_rec recs[BATCH];
    size_t n;
    int rc, out = 0;
    while ((rc = reader_next_batch(r, recs, BATCH, &n)) == 1) {
        for (size_t i = 0; i < n && out == 0; i++) {
            struct txn t;
            enum txn_status st = TXN_ERR_TOO_LONG;
            if (!recs[i].too_long) {
                st = proto ? txn_decode_protobuf(recs[i].data, recs[i].len, &t)
                           : txn_decode_json(recs[i].data, recs[i].len, &t);
            }
            a->records++;
            if (st != TXN_OK) {
                bad_record(a, r, &recs[i], st);
            } else if (take_txn(a, &t) != 0) {
                out = -1;
            }
        }
        uint64_t done;
        reader_progress(r, &done, NULL);
        a->bytes_done = base + done;
        draw_progress(a, 0);
        if (out != 0 || cpp_signal != 0) {
            reader_close(r);
            return out != 0 ? out : 1;
        }
    }
    if (rc < 0) {
        log_msg(LOG_ERROR, MOD, "%s", reader_error(r));
        out = -1;
    }
    reader_close(r);
    return out;
}

/* ---- the history: a time range of a topic ---- */

struct topic_scan {
    struct cpp_app *a;
    struct event_base *base;
    struct source_range *sr;
    int failed;
};

static size_t ts_capacity(void *arg)
{
    (void)arg;
    return 65536; /* taken at once: nothing waits on anything */
}

static int ts_intake(void *arg, const struct pipeline_record *recs, size_t n)
{
    struct topic_scan *ts = arg;
    struct cpp_app *a = ts->a;
    for (size_t i = 0; i < n && !ts->failed; i++) {
        struct txn t;
        enum txn_status st = recs[i].too_long
                                 ? TXN_ERR_TOO_LONG
                                 : txn_decode_protobuf(recs[i].payload,
                                                       recs[i].len, &t);
        a->records++;
        if (st != TXN_OK) {
            if (++a->invalid <= MAX_BAD_LOGGED && a->pass == 1) {
                log_msg(LOG_WARN, MOD,
                        "%s/%" PRId32 "/%" PRId64 ": skipped: %s%s",
                        a->o->topic, recs[i].partition, recs[i].offset,
                        txn_status_name(st),
                        a->invalid == MAX_BAD_LOGGED ? " (no more are logged)"
                                                     : "");
            }
        } else if (take_txn(a, &t) != 0) {
            ts->failed = 1;
        }
    }
    a->bytes_done = source_range_taken(ts->sr);
    return 0;
}

static void ts_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct topic_scan *ts = arg;
    draw_progress(ts->a, 0);
    if (ts->failed || cpp_signal != 0 || source_range_at_end(ts->sr)) {
        event_base_loopexit(ts->base, NULL);
    }
}

/* Reads [from, to) of the topic by message timestamp (kafka_seek.h), as
 * replay does, without a group. Returns 0, -1 (logged) or 1 (signal). */
static int scan_topic(struct cpp_app *a)
{
    struct topic_scan ts = {.a = a};
    char err[512], brokers[CONFIG_STR_MAX];
    struct kseek_part *parts = NULL;
    size_t n_parts = 0;
    struct event *tick = NULL;
    int rc = -1;
    ts.base = event_base_new();
    if (ts.base == NULL ||
        config_brokers(a->c, brokers, sizeof(brokers), err, sizeof(err))) {
        log_msg(LOG_ERROR, MOD, "%s", ts.base == NULL ? "no event base" : err);
        goto out;
    }
    struct source_range_opts so = {
        .config = a->c, .brokers = brokers, .topic = a->o->topic,
        .batch_size = a->c->batch_size, .capacity = ts_capacity,
        .intake = ts_intake, .arg = &ts,
    };
    ts.sr = source_range_new(ts.base, &so, err, sizeof(err));
    if (ts.sr == NULL ||
        kafka_seek_range(source_range_handle(ts.sr), a->o->topic,
                         a->o->from_ms, a->o->to_ms, SEEK_TIMEOUT_MS, 0,
                         &parts, &n_parts, NULL, err, sizeof(err)) != 0) {
        log_msg(LOG_ERROR, MOD, "%s", err);
        goto out;
    }
    a->bytes_total = 0;
    for (size_t i = 0; i < n_parts; i++) {
        if (parts[i].end > parts[i].start) {
            a->bytes_total += (uint64_t)(parts[i].end - parts[i].start);
        }
    }
    struct timeval every = {0, 100000};
    tick = event_new(ts.base, -1, EV_PERSIST, ts_tick, &ts);
    if (tick == NULL || event_add(tick, &every) != 0 ||
        source_range_start(ts.sr, parts, n_parts, err, sizeof(err)) != 0) {
        log_msg(LOG_ERROR, MOD, "%s", tick == NULL ? "no timer" : err);
        goto out;
    }
    event_base_dispatch(ts.base);
    rc = ts.failed ? -1 : cpp_signal != 0 ? 1 : 0;
out:
    if (ts.sr != NULL) {
        source_range_stop(ts.sr);
    }
    if (tick != NULL) {
        event_free(tick);
    }
    source_range_destroy(ts.sr);
    kafka_seek_free(parts);
    if (ts.base != NULL) {
        event_base_free(ts.base);
    }
    return rc;
}

static int scan_all(struct cpp_app *a, int pass)
{
    a->pass = pass;
    a->records = a->invalid = a->outside = 0;
    a->bytes_done = 0;
    a->t0_ns = clock_mono_ns();
    if (a->o->topic != NULL) {
        int rc = scan_topic(a);
        if (rc != 0) {
            if (a->o->progress) {
                fputc('\n', stderr);
            }
            return rc;
        }
    }
    for (size_t i = 0; i < a->o->n_inputs; i++) {
        int rc = scan_file(a, a->o->inputs[i]);
        if (rc != 0) {
            if (a->o->progress) {
                fputc('\n', stderr);
            }
            return rc;
        }
    }
    flush_obs(a);
    draw_progress(a, 1);
    return 0;
}

/* ---- output ---- */

static void day_of(int64_t ms, char out[11])
{
    int64_t y;
    unsigned m, d;
    int64_t days = ms >= 0 ? ms / DAY_MS : -((-ms + DAY_MS - 1) / DAY_MS);
    calendar_civil_from_days(days, &y, &m, &d);
    snprintf(out, 11, "%04d-%02u-%02u", (int)y, m, d);
}

/* "0.0123", "3.2e-45" or "<1e-300" from a log10 value. */
static void p_text(double log10_p, char *out, size_t len)
{
    if (!isfinite(log10_p) || log10_p < -300) {
        snprintf(out, len, "<1e-300");
    } else if (log10_p > -4) {
        snprintf(out, len, "%.4f", pow(10, log10_p));
    } else {
        double e = floor(log10_p);
        snprintf(out, len, "%.1fe%d", pow(10, log10_p - e), (int)e);
    }
}

static double excess(const struct cpp_suspect *s)
{
    return s->expected > 0 ? s->cases / s->expected : INFINITY;
}

static void print_table(const struct cpp_app *a, const struct cpp_suspect *s,
                        size_t shown, size_t ranked,
                        const struct cpp_summary *sum)
{
    char f[11], t[11], n1[32], n2[32], n3[32], n4[32];
    day_of(sum->period_from_ms, f);
    day_of(sum->period_to_ms - 1, t);
    text_thousands(sum->cases, n1, sizeof(n1));
    text_thousands(sum->cases_seen, n2, sizeof(n2));
    text_thousands(sum->txns_in_period, n3, sizeof(n3));
    text_thousands(sum->cards, n4, sizeof(n4));
    printf("compromised cards: %s (%s with a use in their look-back of %"
           PRId64 " days)\nperiod: %s .. %s: %s transactions, ~%s cards, %"
           PRIu64 " merchants\n\n",
           n1, n2, (int64_t)(a->o->lookback_ms / DAY_MS), f, t, n3, n4,
           sum->merchants);
    if (ranked == 0) {
        printf("no merchant was used by %u or more compromised cards in "
               "their look-back\n", a->o->min_cases);
        return;
    }
    printf("%4s  %-16s %6s %8s %9s %8s %10s %4s  %-24s  %s\n", "rank",
           "merchant", "cases", "cards", "expected", "excess", "p (corr.)",
           "sig", "window (estimated)", "first .. last use");
    for (size_t i = 0; i < shown; i++) {
        char p[32], ws[11], we[11], fu[11], lu[11];
        p_text(s[i].log10_p_adj, p, sizeof(p));
        day_of(s[i].window_start_ms, ws);
        day_of(s[i].window_end_ms, we);
        day_of(s[i].first_use_ms, fu);
        day_of(s[i].last_use_ms, lu);
        printf("%4zu  %-16s %6u %8" PRIu64 " %9.1f %7.1fx %10s %4s  %s .. "
               "%s  %s .. %s\n",
               i + 1, s[i].merchant, s[i].cases, s[i].cards, s[i].expected,
               excess(&s[i]), p, s[i].significant ? "yes" : "no", ws, we, fu,
               lu);
    }
    if (ranked > shown) {
        printf("(%zu more merchants with %u or more cases; --top N shows "
               "more)\n", ranked - shown, a->o->min_cases);
    }
    if (!s[0].significant) {
        printf("\nno merchant is significant at alpha %g: nothing here "
               "points at a common point of purchase\n", a->o->alpha);
    }
}

static json_t *suspect_json(const struct cpp_suspect *s, size_t rank)
{
    char ws[11], we[11], fu[11], lu[11];
    day_of(s->window_start_ms, ws);
    day_of(s->window_end_ms, we);
    day_of(s->first_use_ms, fu);
    day_of(s->last_use_ms, lu);
    double ex = excess(s);
    return json_pack(
        "{s:I, s:s, s:I, s:I, s:f, s:o, s:f, s:f, s:f, s:b, s:s, s:s, s:I, "
        "s:I, s:s, s:s}",
        "rank", (json_int_t)rank, "merchant", s->merchant, "cases",
        (json_int_t)s->cases, "cards", (json_int_t)s->cards, "expected",
        s->expected, "excess", isfinite(ex) ? json_real(ex) : json_null(),
        "log10_p", isfinite(s->log10_p) ? s->log10_p : -1e308,
        "log10_p_corrected",
        isfinite(s->log10_p_adj) ? s->log10_p_adj : -1e308, "p_corrected",
        isfinite(s->log10_p_adj) ? pow(10, s->log10_p_adj) : 0.0,
        "significant", s->significant, "window_start", ws, "window_end", we,
        "window_start_ms", (json_int_t)s->window_start_ms, "window_end_ms",
        (json_int_t)s->window_end_ms, "first_use", fu, "last_use", lu);
}

/* The top suspect's uses per day (cpp_uses_by_day) as [{"day":
 * "YYYY-MM-DD", "uses": N}, ...]: an empty list without a suspect. NULL
 * when out of memory. */
static json_t *uses_json(const struct cpp_app *a, const struct cpp_suspect *s,
                         size_t shown)
{
    struct cpp_day *d = NULL;
    size_t n = 0;
    if (shown > 0 && cpp_uses_by_day(a->cpp, s[0].merchant,
                                     strlen(s[0].merchant), &d, &n) != 0) {
        return NULL;
    }
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < n; i++) {
        char day[11];
        day_of(d[i].day_ms, day);
        if (json_array_append_new(list, json_pack("{s:s, s:I}", "day", day,
                                                  "uses",
                                                  (json_int_t)d[i].uses))) {
            json_decref(list);
            list = NULL;
        }
    }
    free(d);
    return list;
}

/* The report (--report, --report-html): counts, merchant ids and dates;
 * no card data. NULL when out of memory. */
static json_t *report_doc(const struct cpp_app *a, const struct cpp_suspect *s,
                          size_t shown, size_t ranked,
                          const struct cpp_summary *sum)
{
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < shown; i++) {
        json_array_append_new(list, suspect_json(&s[i], i + 1));
    }
    json_t *uses = uses_json(a, s, shown);
    if (list == NULL || uses == NULL) {
        json_decref(list);
        json_decref(uses);
        return NULL;
    }
    char f[11], t[11];
    day_of(sum->period_from_ms, f);
    day_of(sum->period_to_ms - 1, t);
    return json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:{s:s, s:s, s:I, "
        "s:I}, s:I, s:f, s:I, s:I, s:o, s:o}",
        "statistic",
        "binomial upper tail P(X >= cases), X ~ Binomial(cases_seen, "
        "cards / all_cards), Bonferroni-corrected over merchants",
        "cases", (json_int_t)sum->cases, "cases_seen",
        (json_int_t)sum->cases_seen, "cases_rejected",
        (json_int_t)a->case_rejected, "transactions", (json_int_t)sum->txns,
        "transactions_in_period", (json_int_t)sum->txns_in_period,
        "invalid_records", (json_int_t)a->invalid, "merchants",
        (json_int_t)sum->merchants, "all_cards", (json_int_t)sum->cards,
        "period", "from", f, "to", t, "from_ms",
        (json_int_t)sum->period_from_ms, "to_ms",
        (json_int_t)sum->period_to_ms, "lookback_days",
        (json_int_t)(a->o->lookback_ms / DAY_MS), "alpha", a->o->alpha,
        "min_cases", (json_int_t)a->o->min_cases, "ranked",
        (json_int_t)ranked, "suspects", list, "top_uses_by_day", uses);
}

/* Writes --report and --report-html. Returns 0 / -1 (logged). */
static int write_reports(const struct cpp_app *a, const struct cpp_suspect *s,
                         size_t shown, size_t ranked,
                         const struct cpp_summary *sum)
{
    json_t *doc = report_doc(a, s, shown, ranked, sum);
    if (doc == NULL) {
        log_msg(LOG_ERROR, MOD, "report: out of memory");
        return -1;
    }
    int rc = 0;
    if (a->o->report_path != NULL) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", a->o->report_path);
        if (json_dump_file(doc, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0 ||
            rename(tmp, a->o->report_path) != 0) {
            log_msg(LOG_ERROR, MOD, "%s: cannot write: %s",
                    a->o->report_path, strerror(errno));
            unlink(tmp);
            rc = -1;
        }
    }
    if (a->o->report_html_path != NULL) {
        char err[4400];
        char *json = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
        if (json == NULL) {
            log_msg(LOG_ERROR, MOD, "%s: out of memory",
                    a->o->report_html_path);
            rc = -1;
        } else if (report_html_write_page(REPORT_PAGE_CPP,
                                          a->o->report_html_path, json,
                                          strlen(json), err,
                                          sizeof(err)) != 0) {
            log_msg(LOG_ERROR, MOD, "%s", err);
            rc = -1;
        }
        free(json);
    }
    json_decref(doc);
    return rc;
}

/* Writes the collected cards as a fingerprint list (listcsv.h) that
 * `cardwatch load` takes. Returns 0 / -1 (logged). */
static int write_emit(const struct cpp_app *a, const struct cpp_suspect *s)
{
    char tmp[4096], ws[11], we[11], hex[33];
    snprintf(tmp, sizeof(tmp), "%s.tmp", a->o->emit_path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        log_msg(LOG_ERROR, MOD, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    day_of(a->emit_from_ms, ws);
    day_of(a->emit_to_ms - 1, we);
    uint8_t(*sorted)[RMODEL_FP_BIN] = malloc((a->emit.n + 1) * RMODEL_FP_BIN);
    size_t n = 0;
    for (size_t i = 0; sorted != NULL && i < a->emit.cap; i++) {
        if (a->emit.used[i]) {
            memcpy(sorted[n++], a->emit.fp[i], RMODEL_FP_BIN);
        }
    }
    qsort(sorted, n, RMODEL_FP_BIN, cmp_fp);
    fprintf(f, "fingerprint\n# cardwatch cpp: suspected breach at merchant "
               "%s, %s .. %s, %zu cards\n", s->merchant, ws, we, n);
    for (size_t i = 0; sorted != NULL && i < n; i++) {
        rmodel_fp_hex(sorted[i], hex);
        fprintf(f, "%s:%s\n", card_key_id(a->key), hex);
    }
    free(sorted);
    int bad = sorted == NULL || ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, a->o->emit_path) != 0) {
        log_msg(LOG_ERROR, MOD, "%s: cannot write: %s", a->o->emit_path,
                sorted == NULL ? "out of memory" : strerror(errno));
        unlink(tmp);
        return -1;
    }
    printf("\nsuspected breach: %zu cards that used %s from %s to %s, "
           "written to %s\nmonitor them with:\n  cardwatch load --suspected "
           "--breach cpp-%s-%s --window-start %s --window-end %s "
           "--elements pan %s\n",
           n, s->merchant, ws, we, a->o->emit_path, s->merchant, ws, ws, we,
           a->o->emit_path);
    return 0;
}

/* --emit-breach: the second pass over the files, for the top suspect. */
static int emit_breach(struct cpp_app *a, const struct cpp_suspect *top)
{
    if (!top->significant) {
        log_msg(LOG_ERROR, MOD,
                "--emit-breach: no significant suspect (the top merchant %s "
                "is not); nothing written",
                top->merchant);
        return 1;
    }
    /* whole UTC days around the estimate */
    a->emit_merchant = top->merchant;
    a->emit_from_ms = top->window_start_ms - top->window_start_ms % DAY_MS;
    a->emit_to_ms = top->window_end_ms - top->window_end_ms % DAY_MS + DAY_MS;
    int rc = scan_all(a, 2);
    if (rc != 0) {
        return rc > 0 ? 128 + (int)cpp_signal : 1;
    }
    return write_emit(a, top) == 0 ? 0 : 1;
}

/* ---- the command ---- */

/* The compromised cards into a->cpp. Returns 0, or 1 after logging. */
static int read_cases(struct cpp_app *a)
{
    if (a->o->frauds != NULL && read_fraud_file(a) != 0) {
        return 1;
    }
    if (a->o->from_feed && read_feed(a) != 0) {
        return 1;
    }
    if (a->feed_other_key > 0) {
        log_msg(LOG_WARN, MOD,
                "%" PRIu64 " confirmed_fraud alert(s) in the feed name a "
                "card under another key id than '%s'; left out",
                a->feed_other_key, card_key_id(a->key));
    }
    if (a->feed_bad_time > 0) {
        log_msg(LOG_WARN, MOD,
                "%" PRIu64 " confirmed_fraud alert(s) in the feed have an "
                "event time outside 1970..9999; left out",
                a->feed_bad_time);
    }
    if (a->oom > 0) {
        log_msg(LOG_ERROR, MOD, "out of memory reading the feed");
        return 1;
    }
    uint64_t n = cpp_seal(a->cpp);
    log_msg(LOG_INFO, MOD,
            "compromised cards: %" PRIu64 " (file rows %" PRIu64
            ", rejected %" PRIu64 "; from the feed %" PRIu64
            "; first fraud on or after --as-of, left out: %" PRIu64 ")",
            n, a->case_rows, a->case_rejected, a->feed_cases, a->case_later);
    if (n == 0) {
        log_msg(LOG_ERROR, MOD,
                "no compromised card to look back from: give --frauds with "
                "rows, or --from-feed with confirmed_fraud outcomes");
        return 1;
    }
    cpp_period(a->cpp, &a->from_ms, &a->to_ms);
    return 0;
}

static void input_size(struct cpp_app *a)
{
    a->bytes_total = 0;
    for (size_t i = 0; i < a->o->n_inputs; i++) {
        FILE *f = strcmp(a->o->inputs[i], "-") == 0
                      ? NULL
                      : fopen(a->o->inputs[i], "rb");
        if (f == NULL || fseeko(f, 0, SEEK_END) != 0) {
            a->bytes_total = 0; /* not known: no percentage */
            if (f != NULL) {
                fclose(f);
            }
            return;
        }
        a->bytes_total += (uint64_t)ftello(f);
        fclose(f);
    }
}

/* Ranks, prints, reports and emits. Returns the exit status. */
static int conclude(struct cpp_app *a)
{
    size_t top = a->o->top > 0 ? a->o->top : 1;
    struct cpp_suspect *s = calloc(top, sizeof(*s));
    struct cpp_summary sum;
    size_t ranked = 0;
    if (s == NULL || cpp_rank(a->cpp, s, top, &ranked, &sum) != 0) {
        log_msg(LOG_ERROR, MOD, "ranking: out of memory");
        free(s);
        return 1;
    }
    if (a->invalid > 0) {
        log_msg(LOG_WARN, MOD, "%" PRIu64 " invalid record(s) skipped",
                a->invalid);
    }
    if (a->oom > 0) {
        log_msg(LOG_ERROR, MOD,
                "%" PRIu64 " transaction(s) not counted: out of memory",
                a->oom);
    }
    size_t shown = ranked < top ? ranked : top;
    print_table(a, s, shown, ranked, &sum);
    fflush(stdout);
    int rc = a->oom > 0 ? 1 : 0;
    if ((a->o->report_path != NULL || a->o->report_html_path != NULL) &&
        write_reports(a, s, shown, ranked, &sum) != 0) {
        rc = 1;
    }
    if (rc == 0 && a->o->emit_path != NULL) {
        if (ranked == 0) {
            log_msg(LOG_ERROR, MOD, "--emit-breach: no suspect; nothing "
                                    "written");
            rc = 1;
        } else {
            rc = emit_breach(a, &s[0]);
        }
    }
    free(s);
    return rc;
}

int app_cpp(const struct config *c, const struct cpp_run_opts *o)
{
    struct cpp_app a = {.c = c, .o = o};
    char err[256];
    int rc = 1;
    a.key = card_key_load(c->key_file, err, sizeof(err));
    if (a.key == NULL) {
        log_msg(LOG_ERROR, MOD, "%s", err);
        return 1;
    }
    struct cpp_opts co = {o->lookback_ms, o->alpha, o->min_cases};
    a.cpp = cpp_new(&co);
    if (a.cpp == NULL) {
        log_msg(LOG_ERROR, MOD, "out of memory");
        goto out;
    }
    cpp_signal = 0;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (read_cases(&a) != 0) {
        goto out;
    }
    if (o->progress) {
        log_set_progress_active(1);
    }
    input_size(&a);
    int st = scan_all(&a, 1);
    if (st == 0) {
        rc = conclude(&a);
    } else {
        rc = st > 0 ? 128 + (int)cpp_signal : 1;
    }
    if (rc > 128) {
        log_msg(LOG_ERROR, MOD, "stopped by signal %d; no result",
                (int)cpp_signal);
    }
out:
    log_set_progress_active(0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    cpp_destroy(a.cpp);
    card_key_destroy(a.key);
    free(a.emit.fp);
    free(a.emit.used);
    return rc;
}
