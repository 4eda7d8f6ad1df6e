/* app_replay.c - see app_replay.h. */
#include "app_replay.h"

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "app_start.h"
#include "card.h"
#include "clock.h"
#include "exposure.h"
#include "kafka_check.h"
#include "kafka_seek.h"
#include "ledger.h"
#include "log.h"
#include "metrics.h"
#include "pipeline.h"
#include "rules.h"
#include "sink_file.h"
#include "sink_kafka.h"
#include "snapshot.h"
#include "source_file.h"
#include "source_range.h"
#include "state.h"
#include "report_html.h"
#include "tally.h"
#include "timeline.h"
#include "text.h"

#define MOD "replay"
#define SEEK_TIMEOUT_MS 60000
#define DEAD_LETTERS_LOGGED 10

enum phase { P_LOADING, P_RUNNING, P_CLEANING, P_DONE };

struct rp {
    const struct config *c;
    const struct replay_opts *o;
    struct event_base *base;
    struct metrics *metrics;
    struct app_core core; /* key, rules, Redis, exposed set */
    struct state *state;
    struct snapshot *snapshot;
    struct pipeline *pipeline;
    struct source_file *sf;
    struct source_range *sr;
    struct sink_kafka *sk;
    struct ledger *ledger;
    struct sink_file *out, *dlf;
    struct tally *tally;
    struct timeline *timeline; /* per breach and day, for the reports */
    int timeline_short;        /* an allocation failed: counts short */
    struct event *tick, *progress, *sigint, *sigterm, *ack_ev;
    void **acks;
    size_t n_acks, cap_acks;
    struct kseek_part *parts;
    size_t n_parts;
    size_t n_lanes;
    char topic[256];
    char ns[48];
    enum phase phase;
    int exit_code;
    int interrupted; /* the signal that stopped it (0 = none) */
    int uses_state;
    uint64_t dead_logged;
    uint64_t dead_letters; /* seen by replay_produce */
    int32_t first_dead_partition;
    int64_t first_dead_offset;
    uint64_t started_ns, run_ns, end_ns;
    uint64_t last_events, last_ns;
    double rate;
    uint64_t cleaned_keys;
    uint64_t redis_bad_ns; /* since when Redis fails the run (0 = it serves) */
};

static void fail(struct rp *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Logs the reason once and stops: intake ends, in-flight work drains,
 * the replay's state is cleaned up, the exit status is 1. */
static void fail(struct rp *r, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->exit_code == 0) {
        log_error(MOD, "%s", msg);
    }
    r->exit_code = 1;
    if (r->sf != NULL) {
        source_file_stop(r->sf);
    }
    if (r->sr != NULL) {
        source_range_stop(r->sr);
    }
    if (r->phase == P_LOADING) {
        r->phase = P_DONE;
        event_base_loopexit(r->base, NULL);
    }
}

/* ---- source side ---- */

static size_t cb_capacity(void *arg)
{
    struct rp *r = arg;
    return pipeline_capacity(r->pipeline);
}

static int cb_intake(void *arg, const struct pipeline_record *recs, size_t n)
{
    struct rp *r = arg;
    if (r->sf != NULL) {
        pipeline_set_format(r->pipeline,
                            source_file_format(r->sf) == READER_JSONL
                                ? PIPELINE_JSON
                                : PIPELINE_PROTOBUF);
    }
    return pipeline_intake(r->pipeline, recs, n);
}

static void cb_store(void *ctx, int32_t partition, int64_t offset)
{
    struct rp *r = ctx;
    size_t lane = r->sf != NULL ? 0 : (size_t)partition;
    if (r->sf != NULL) {
        source_file_store(r->sf, partition, offset);
    } else {
        source_range_store(r->sr, partition, offset);
    }
    if (r->out != NULL && sink_file_release(r->out, lane, offset) != 0) {
        fail(r, "%s", sink_file_error(r->out));
    }
    if (r->dlf != NULL && sink_file_release(r->dlf, lane, offset) != 0) {
        fail(r, "%s", sink_file_error(r->dlf));
    }
}

/* An event failed for good (logged by the pipeline): its alerts would be
 * missing from a replay that ends, so the replay fails instead. */
static void cb_failed(void *ctx, int32_t partition, int64_t offset)
{
    struct rp *r = ctx;
    if (r->exit_code != 0 || r->interrupted) {
        return; /* already stopping: said why */
    }
    if (r->sf != NULL) {
        fail(r, "the event at %s %s %" PRId64 " could not be processed "
             "(see above): the replay stops rather than miss its alerts",
             r->o->input != NULL && strcmp(r->o->input, "-") != 0
                 ? r->o->input
                 : "stdin",
             source_file_format(r->sf) == READER_JSONL ? "line" : "record",
             offset);
    } else {
        fail(r, "the event at %s/%" PRId32 "/%" PRId64 " could not be "
             "processed (see above): the replay stops rather than miss its "
             "alerts", r->topic, partition, offset);
    }
}

static void cb_paused(void *ctx, int paused)
{
    struct rp *r = ctx;
    if (r->sf != NULL) {
        source_file_set_paused(r->sf, paused);
    } else if (r->sr != NULL) {
        source_range_set_paused(r->sr, paused);
    }
}

static void cb_kick(void *ctx)
{
    struct rp *r = ctx;
    if (r->sf != NULL) {
        source_file_kick(r->sf);
    } else if (r->sr != NULL) {
        source_range_kick(r->sr);
    }
}

static void on_snapshot(void *arg, int status, const char *err);

/* Lookups can be answered: the exposed-card set passed its check. The
 * snapshot is copied only then, so a replay never starts from a set that
 * is gone or incomplete (it fails instead: on_tick). */
static void cb_redis_state(void *arg, int up)
{
    struct rp *r = arg;
    if (r->pipeline != NULL) {
        pipeline_redis_state(r->pipeline, up);
    }
    if (up && r->snapshot == NULL && r->phase == P_LOADING) {
        char err[512];
        r->snapshot = snapshot_load(r->core.exposure, r->core.redis, r->c->redis_prefix,
                                    card_key_id(r->core.key), r->o->breach,
                                    on_snapshot, r, err, sizeof(err));
        if (r->snapshot == NULL) {
            fail(r, "%s", err);
        }
    }
}

/* ---- sink side ---- */

/* A file output takes a line at once; its delivery report is given on
 * the next loop turn (never inside produce). */
static int defer_ack(struct rp *r, void *opaque)
{
    if (r->n_acks == r->cap_acks) {
        size_t ncap = r->cap_acks ? r->cap_acks * 2 : 256;
        void **na = realloc(r->acks, ncap * sizeof(*na));
        if (na == NULL) {
            log_error(MOD, "out of memory queuing a delivery report");
            return -1;
        }
        r->acks = na;
        r->cap_acks = ncap;
    }
    r->acks[r->n_acks++] = opaque;
    event_active(r->ack_ev, 0, 0);
    return 0;
}

static void on_acks(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rp *r = arg;
    /* Acks may queue more work; take the list as it is now. */
    size_t n = r->n_acks;
    void **list = r->acks;
    r->acks = NULL;
    r->n_acks = r->cap_acks = 0;
    for (size_t i = 0; i < n; i++) {
        pipeline_delivered(r->pipeline, list[i], 0);
    }
    free(list);
}

static void cb_kafka_delivered(void *arg, void *opaque, int err)
{
    struct rp *r = arg;
    if (r->ledger != NULL) {
        ledger_inner_delivered(r->ledger, opaque, err);
    } else {
        pipeline_delivered(r->pipeline, opaque, err);
    }
}

static void cb_ledger_delivered(void *arg, void *opaque, int err)
{
    struct rp *r = arg;
    pipeline_delivered(r->pipeline, opaque, err);
}

static int to_kafka(struct rp *r, const struct sink_msg *m, void *opaque)
{
    if (r->ledger != NULL) {
        return ledger_produce(r->ledger, m, opaque);
    }
    return sink_kafka_produce(r->sk, m, opaque);
}

/* ---- caps on dead letters ---- */

/* Stops the replay: too many dead letters (what is too many: why), with
 * where the first one is and the counts by reason, so that the operator
 * can look at the input without the output that was removed. */
static void fail_dead_letters(struct rp *r, const char *why)
{
    char first[600], reasons[768] = "", n[32];
    size_t used = 0;
    if (r->sf != NULL) {
        snprintf(first, sizeof(first), "%s: %s %" PRId64,
                 source_file_name(r->sf),
                 source_file_format(r->sf) == READER_JSONL ? "line" : "record",
                 r->first_dead_offset);
    } else {
        snprintf(first, sizeof(first), "%s/%" PRId32 "/%" PRId64, r->topic,
                 r->first_dead_partition, r->first_dead_offset);
    }
    for (int i = 1; i < TXN_STATUS_COUNT && used < sizeof(reasons); i++) {
        uint64_t k = metrics_dead_letters(r->metrics, (enum txn_status)i);
        if (k > 0) {
            text_thousands(k, n, sizeof(n));
            int w = snprintf(reasons + used, sizeof(reasons) - used, "%s%s %s",
                             used ? ", " : "",
                             txn_status_name((enum txn_status)i), n);
            used += w > 0 ? (size_t)w : 0;
        }
    }
    fail(r, "stopping: %s; is this the right input%s? The first is at %s; "
         "by reason: %s", why, r->sf != NULL ? " (and --format)" : "", first,
         reasons);
}

/* A dead letter was produced: past --max-dead-letters the replay stops. */
static void count_dead_letter(struct rp *r, const struct sink_msg *m)
{
    if (r->dead_letters++ == 0) {
        r->first_dead_partition = m->partition;
        r->first_dead_offset = m->offset;
    }
    int64_t cap = r->o->max_dead_letters;
    if (cap > 0 && r->dead_letters > (uint64_t)cap && r->exit_code == 0) {
        char why[256], got[32], max[32];
        text_thousands(r->dead_letters, got, sizeof(got));
        text_thousands((uint64_t)cap, max, sizeof(max));
        snprintf(why, sizeof(why), "%s dead letters, more than the cap of %s "
                 "(--max-dead-letters N or [replay] max_dead_letters; 0 = "
                 "no cap)", got, max);
        fail_dead_letters(r, why);
    }
}

/* Past REPLAY_SHARE_MIN_EVENTS events, more than --max-dead-letter-percent
 * of them dead letters stops the replay (checked on every tick and at the
 * end, so the result does not depend on timing). */
static void check_dead_letter_share(struct rp *r)
{
    int pct = r->o->max_dead_letter_percent;
    uint64_t ev = metrics_events_total(r->metrics);
    uint64_t dead = metrics_events(r->metrics, METRICS_DEAD_LETTER);
    if (r->exit_code != 0 || pct <= 0 || pct >= 100 ||
        ev < REPLAY_SHARE_MIN_EVENTS || dead * 100 <= ev * (uint64_t)pct) {
        return;
    }
    char why[320], d[32], e[32];
    text_thousands(dead, d, sizeof(d));
    text_thousands(ev, e, sizeof(e));
    snprintf(why, sizeof(why), "%s of %s events (%.0f%%) are dead letters, "
             "more than %d%% (--max-dead-letter-percent P or [replay] "
             "max_dead_letter_percent; 100 = no cap)", d, e,
             100.0 * (double)dead / (double)ev, pct);
    fail_dead_letters(r, why);
}

/* Queues m's line in output f (its place in the file kept) and its
 * delivery report. */
static int put_line(struct rp *r, struct sink_file *f, const char *path,
                    size_t lane, const struct sink_msg *m, void *opaque)
{
    if (sink_file_put(f, lane, m->offset, m->value, m->vallen) != 0) {
        log_error(MOD, "out of memory holding a line for %s", path);
        return -1;
    }
    return defer_ack(r, opaque);
}

/* ---- the timeline of the reports ---- */

static void timeline_oom(struct rp *r)
{
    if (!r->timeline_short) {
        r->timeline_short = 1;
        log_warn(MOD, "out of memory counting the timeline per day; the "
                 "reports' timeline will be short");
    }
}

/* A transaction on an exposed card (the pipeline's on_exposed): counted
 * on its day for each breach listing the card (only --breach's, when
 * given) whose window had started. */
static void on_exposed(void *arg, const struct txn *t,
                       const struct rule_match *m, size_t nm,
                       const struct rule_match *rr, size_t nr)
{
    struct rp *r = arg;
    for (size_t i = 0; i < nm + nr; i++) {
        const struct breach *b = i < nm ? m[i].breach : rr[i - nm].breach;
        if (r->o->breach != NULL && strcmp(b->id, r->o->breach) != 0) {
            continue;
        }
        if (timeline_count(r->timeline, b->id, b->window_start_ms,
                           b->window_end_ms, t->event_time_ms, 0) != 0) {
            timeline_oom(r);
        }
    }
}

/* An alert counted for the first time: on its day, for its breaches. */
static void timeline_alert(struct rp *r, const struct alert *a)
{
    for (size_t i = 0; i < a->n_breaches; i++) {
        const struct alert_breach *b = &a->breaches[i];
        if (timeline_count(r->timeline, b->breach_id, b->window_start_ms,
                           b->window_end_ms, a->event_time_ms, 1) != 0) {
            timeline_oom(r);
        }
    }
}

static int replay_produce(void *ctx, const struct sink_msg *m, void *opaque)
{
    struct rp *r = ctx;
    size_t lane = r->sf != NULL ? 0 : (size_t)m->partition;
    if (m->kind == SINK_DEAD_LETTER) {
        count_dead_letter(r, m);
        if (r->dlf != NULL) {
            return put_line(r, r->dlf, r->o->dead_letter, lane, m, opaque);
        }
        if (r->sf == NULL) {
            struct sink_msg dm = *m;
            dm.topic = r->c->replay_dead_letter_topic;
            return to_kafka(r, &dm, opaque);
        }
        /* File input without --dead-letter: say where, then count. */
        if (r->dead_logged++ < DEAD_LETTERS_LOGGED) {
            const char *reason = "";
            for (size_t i = 0; i < m->n_hdrs; i++) {
                if (strcmp(m->hdrs[i].name, "reason") == 0) {
                    reason = m->hdrs[i].value;
                }
            }
            log_warn(MOD, "%s: %s %" PRId64 ": invalid event (%s)%s",
                     source_file_name(r->sf),
                     source_file_format(r->sf) == READER_JSONL ? "line"
                                                               : "record",
                     m->offset, reason,
                     r->dead_logged == DEAD_LETTERS_LOGGED
                         ? "; further ones are only counted (--dead-letter "
                           "FILE keeps them all)"
                         : "");
        }
        return defer_ack(r, opaque);
    }
    int counted = m->alert != NULL ? tally_alert(r->tally, m->alert) : 1;
    if (counted == 1 && m->alert != NULL) {
        timeline_alert(r, m->alert);
    }
    if (counted == 0) {
        /* The input held its transaction before (the same txn_id, so
         * the same alert id): the alert was written then. */
        log_debug(MOD, "alert %s repeats one already written; not written "
                  "again", m->alert->alert_id);
        return defer_ack(r, opaque);
    }
    if (counted < 0) {
        log_warn(MOD, "out of memory counting alerts; the summary will be "
                 "short and a repeated transaction may be written twice");
    }
    if (r->out != NULL) {
        return put_line(r, r->out, r->o->output, lane, m, opaque);
    }
    if (r->o->deliver) {
        return to_kafka(r, m, opaque);
    }
    char topic[512];
    snprintf(topic, sizeof(topic), "%s%s", m->topic,
             r->c->replay_topic_suffix);
    struct sink_msg am = *m;
    am.topic = topic;
    return to_kafka(r, &am, opaque);
}

/* ---- progress ---- */

/* Share of the input done (0..1), or -1 when the size is not known. */
static double done_share(const struct rp *r)
{
    if (r->sf != NULL) {
        uint64_t done = 0, total = 0;
        source_file_progress(r->sf, &done, &total);
        return total > 0 ? (double)done / (double)total : -1;
    }
    if (r->sr != NULL) {
        uint64_t total = source_range_total(r->sr);
        return total > 0
                   ? (double)source_range_taken(r->sr) / (double)total
                   : 1.0;
    }
    return -1;
}

static void on_progress(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; /* -1 for the timer too: what tells the final redraw apart */
    struct rp *r = arg;
    if (r->phase != P_RUNNING && (what & EV_TIMEOUT)) {
        return; /* the timer, while loading or cleaning up */
    }
    uint64_t now = clock_mono_ns();
    uint64_t ev = metrics_events_total(r->metrics);
    double dt = (double)(now - r->last_ns) / 1e9;
    if (dt > 0) {
        double inst = (double)(ev - r->last_events) / dt;
        r->rate = r->rate > 0 ? 0.7 * r->rate + 0.3 * inst : inst;
    }
    r->last_events = ev;
    r->last_ns = now;
    char e[32], rt[32], al[32], dl[32], eta[32] = "--:--:--";
    text_thousands(ev, e, sizeof(e));
    text_thousands((uint64_t)r->rate, rt, sizeof(rt));
    text_thousands(tally_alerts(r->tally), al, sizeof(al));
    text_thousands(metrics_events(r->metrics, METRICS_DEAD_LETTER), dl,
              sizeof(dl));
    double share = done_share(r);
    double el = (double)(now - r->run_ns) / 1e9;
    if (share > 0.001 && share < 1.0 && el > 0) {
        long left = (long)(el / share - el);
        snprintf(eta, sizeof(eta), "%ld:%02ld:%02ld", left / 3600,
                 left / 60 % 60, left % 60);
    } else if (share >= 1.0) {
        snprintf(eta, sizeof(eta), "0:00:00");
    }
    if (r->o->progress) {
        char bar[32] = "";
        if (share >= 0) {
            int w = 24, fill = (int)(share * w + 0.5);
            for (int i = 0; i < w; i++) {
                bar[i] = i < fill ? '#' : '-';
            }
            bar[w] = '\0';
            fprintf(stderr, "\r\033[K[%s] %5.1f%%  %s events  %s/s  ETA %s"
                    "  alerts %s  dead letters %s", bar, share * 100, e, rt,
                    eta, al, dl);
        } else {
            fprintf(stderr, "\r\033[K%s events  %s/s  alerts %s  dead "
                    "letters %s", e, rt, al, dl);
        }
        fflush(stderr);
    } else {
        log_info(MOD, "%s events (%s/s)%s%.1f%%, alerts %s, dead letters %s",
                 e, rt, share >= 0 ? ", done " : "",
                 share >= 0 ? share * 100 : 0.0, al, dl);
    }
}

/* ---- end: clean the replay's window state ---- */

static void scan_next(struct rp *r, const char *cursor);

static void on_unlinked(void *arg, const struct redisReply *reply)
{
    (void)arg;
    (void)reply;
}

static void on_scan(void *arg, const struct redisReply *reply)
{
    struct rp *r = arg;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != 2) {
        log_warn(MOD, "cleaning up replay state %s:%s:* failed; its keys "
                 "expire on their own", r->c->redis_prefix, r->ns);
        r->phase = P_DONE;
        event_base_loopexit(r->base, NULL);
        return;
    }
    const struct redisReply *keys = reply->element[1];
    if (keys->elements > 0) {
        const char **argv = malloc((keys->elements + 1) * sizeof(*argv));
        size_t *lens = malloc((keys->elements + 1) * sizeof(*lens));
        if (argv != NULL && lens != NULL) {
            argv[0] = "UNLINK";
            lens[0] = 6;
            for (size_t i = 0; i < keys->elements; i++) {
                argv[i + 1] = keys->element[i]->str;
                lens[i + 1] = keys->element[i]->len;
            }
            if (rconn_command(r->core.redis, (int)keys->elements + 1, argv,
                                 lens, on_unlinked, r) == 0) {
                r->cleaned_keys += keys->elements;
            }
        }
        free(argv);
        free(lens);
    }
    const char *cursor = reply->element[0]->str;
    if (strcmp(cursor, "0") == 0) {
        /* A PING after the UNLINKs: they are done when it answers. */
        scan_next(r, NULL);
    } else {
        scan_next(r, cursor);
    }
}

static void on_cleaned(void *arg, const struct redisReply *reply)
{
    struct rp *r = arg;
    (void)reply;
    log_info(MOD, "replay state %s:%s:* removed (%" PRIu64 " key(s))",
             r->c->redis_prefix, r->ns, r->cleaned_keys);
    r->phase = P_DONE;
    event_base_loopexit(r->base, NULL);
}

static void scan_next(struct rp *r, const char *cursor)
{
    int rc;
    char match[128];
    snprintf(match, sizeof(match), "%s:%s:*", r->c->redis_prefix, r->ns);
    if (cursor == NULL) {
        const char *argv[] = {"PING"};
        size_t lens[] = {4};
        rc = rconn_command(r->core.redis, 1, argv, lens, on_cleaned, r);
    } else {
        const char *argv[] = {"SCAN", cursor, "MATCH", match, "COUNT",
                              "1000"};
        size_t lens[6];
        for (int i = 0; i < 6; i++) {
            lens[i] = strlen(argv[i]);
        }
        rc = rconn_command(r->core.redis, 6, argv, lens, on_scan, r);
    }
    if (rc != 0) {
        r->phase = P_DONE;
        event_base_loopexit(r->base, NULL);
    }
}

static void begin_cleanup(struct rp *r)
{
    assert(r->phase == P_RUNNING); /* on_tick's, once */
    r->end_ns = clock_mono_ns();
    r->phase = P_CLEANING;
    if (!r->uses_state) {
        r->phase = P_DONE;
        event_base_loopexit(r->base, NULL);
        return;
    }
    scan_next(r, "0");
}

/* Redis lost, or refusing what the replay writes (window state, the
 * record of delivered alerts), once the run began: the replay waits for it
 * as long as it waits at start, then stops - a batch job must end (it
 * once waited forever). In flight events cannot finish without Redis: the
 * loop ends at once, nothing is kept. Returns 1 when it gave up. */
static int redis_gave_up(struct rp *r)
{
    char why[768];
    if (exposure_health(r->core.exposure, why, sizeof(why)) &&
        (r->state == NULL || state_health(r->state, why, sizeof(why))) &&
        (r->ledger == NULL || ledger_health(r->ledger, why, sizeof(why)))) {
        r->redis_bad_ns = 0;
        return 0;
    }
    uint64_t now = clock_mono_ns();
    if (r->redis_bad_ns == 0) {
        r->redis_bad_ns = now;
    }
    int wait = r->c->replay_redis_wait_s;
    if (now - r->redis_bad_ns <= (uint64_t)wait * 1000000000ull) {
        return 0;
    }
    if (r->phase == P_CLEANING) {
        log_warn(MOD, "cleaning up replay state %s:%s:* failed (%s); its "
                 "keys expire on their own", r->c->redis_prefix, r->ns, why);
    } else {
        char state[160] = "";
        if (r->uses_state) {
            snprintf(state, sizeof(state), "; the replay's window state "
                     "%s:%s:* expires on its own", r->c->redis_prefix, r->ns);
        }
        fail(r, "%s, for more than %d s ([replay] redis_wait_s): stopping%s",
             why, wait, state);
    }
    r->phase = P_DONE;
    event_base_loopexit(r->base, NULL);
    return 1;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rp *r = arg;
    char bad[768];
    if (r->phase == P_LOADING && exposure_set_bad(r->core.exposure) &&
        !exposure_health(r->core.exposure, bad, sizeof(bad))) {
        fail(r, "%s", bad); /* a replay needs the whole set: no waiting */
        return;
    }
    if (r->phase == P_LOADING &&
        clock_mono_ns() - r->started_ns >
            (uint64_t)r->c->replay_redis_wait_s * 1000000000ull) {
        char why[768];
        if (rconn_is_up(r->core.redis) &&
            !exposure_health(r->core.exposure, why, sizeof(why))) {
            fail(r, "%s (waited %d s, [replay] redis_wait_s)", why,
                 r->c->replay_redis_wait_s);
            return;
        }
        const char *msg = NULL;
        (void)rconn_error(r->core.redis, &msg);
        fail(r, "Redis %s did not answer within %d s ([replay] "
             "redis_wait_s; is it running? 'cardwatch load' puts the "
             "exposed cards there)%s%s", rconn_address(r->core.redis),
             r->c->replay_redis_wait_s, msg && msg[0] ? ": " : "",
             msg ? msg : "");
        return;
    }
    if ((r->phase == P_RUNNING || r->phase == P_CLEANING) &&
        redis_gave_up(r)) {
        return;
    }
    if (r->phase != P_RUNNING) {
        return;
    }
    if (r->sk != NULL && sink_kafka_fatal(r->sk)) {
        fail(r, "Kafka producer failed");
    }
    check_dead_letter_share(r);
    int at_end = r->exit_code != 0 ||
                 (r->sf != NULL ? source_file_at_end(r->sf)
                                : source_range_at_end(r->sr));
    if (r->sf != NULL && source_file_error(r->sf) != NULL &&
        r->exit_code == 0) {
        r->exit_code = 1; /* logged by the source */
    }
    if (at_end && pipeline_in_flight(r->pipeline) == 0 && r->n_acks == 0) {
        begin_cleanup(r);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct rp *r = arg;
    if (r->interrupted) {
        log_warn(MOD, "second signal: exiting now");
        r->exit_code = 1;
        event_base_loopbreak(r->base);
        return;
    }
    r->interrupted = (int)sig;
    log_error(MOD, "interrupted by %s: stopping; no output is kept",
              sig == SIGINT ? "SIGINT" : "SIGTERM");
    r->exit_code = 1; /* logged: fail() only stops */
    fail(r, "interrupted");
}

/* ---- start: the exposed set is copied, then reading begins ---- */

/* Whether alerts and dead letters go to Kafka (see replay_produce). */
static int outputs_to_kafka(const struct replay_opts *o)
{
    return o->output == NULL || (o->input == NULL && o->dead_letter == NULL);
}

/* Before anything starts: the brokers let us in and the topics this
 * replay reads and writes exist. A file replay into files uses no Kafka. */
static int check_kafka(struct rp *r, char *err, size_t errlen)
{
    const struct config *c = r->c;
    const struct replay_opts *o = r->o;
    if (o->input != NULL && !outputs_to_kafka(o)) {
        return 0;
    }
    char brokers[CONFIG_STR_MAX];
    if (config_brokers(c, brokers, sizeof(brokers), err, errlen) != 0) {
        return -1;
    }
    unsigned flags = (o->output == NULL ? KCHECK_T_ALERTS : 0) |
                     (o->input == NULL && o->dead_letter == NULL
                          ? KCHECK_T_REPLAY_DL
                          : 0);
    return kafka_check_config(c, brokers, flags,
                              o->deliver ? "" : c->replay_topic_suffix,
                              o->input == NULL ? r->topic : NULL,
                              "the replayed topic", err,
                              errlen) == KCHECK_OK
               ? 0
               : -1;
}

static int start_outputs(struct rp *r, char *err, size_t errlen)
{
    const struct config *c = r->c;
    const struct replay_opts *o = r->o;
    if (o->output != NULL) {
        r->out = sink_file_new(o->output, r->n_lanes, err, errlen);
        if (r->out == NULL) {
            return -1;
        }
    }
    if (o->dead_letter != NULL) {
        r->dlf = sink_file_new(o->dead_letter, r->n_lanes, err, errlen);
        if (r->dlf == NULL) {
            return -1;
        }
    }
    if (!outputs_to_kafka(o)) {
        return 0;
    }
    char brokers[CONFIG_STR_MAX];
    if (config_brokers(c, brokers, sizeof(brokers), err, errlen) != 0) {
        return -1;
    }
    r->sk = sink_kafka_new(r->base, c, brokers, r->metrics, NULL,
                           cb_kafka_delivered, r, err, errlen);
    if (r->sk == NULL) {
        return -1;
    }
    if (o->deliver) {
        struct ledger_opts lo = {
            .base = r->base,
            .redis = r->core.redis,
            .prefix = c->redis_prefix,
            .ttl_days = c->delivered_ttl_days,
            .feed_max_alerts = c->feed_max_alerts,
            .feed_retention_days = c->feed_retention_days,
            .inner = {sink_kafka_produce, r->sk},
            .delivered = cb_ledger_delivered,
            .arg = r,
        };
        r->ledger = ledger_new(&lo);
        if (r->ledger == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

static void on_snapshot(void *arg, int status, const char *err)
{
    struct rp *r = arg;
    char e[1024];
    if (status != 0) {
        fail(r, "copying the exposed set: %s", err);
        return;
    }
    if (snapshot_cards(r->snapshot) == 0) {
        log_warn(MOD, "no exposed cards are loaded%s%s: nothing can alert "
                 "('cardwatch load' loads a breach list)",
                 r->o->breach ? " for breach " : "",
                 r->o->breach ? r->o->breach : "");
    }
    if (start_outputs(r, e, sizeof(e)) != 0) {
        fail(r, "%s", e);
        return;
    }
    struct pipeline_opts po = {
        .config = r->c,
        .key = r->core.key,
        .rules = r->core.rules,
        .exposure = r->core.exposure,
        .snapshot = r->snapshot,
        .state = r->state,
        .metrics = r->metrics,
        .source = {.store = cb_store,
                   .set_paused = cb_paused,
                   .kick = cb_kick,
                   .ctx = r,
                   .failed = cb_failed},
        .sink = {replay_produce, r},
        .source_topic = r->topic,
        .source_file = r->o->input != NULL
                           ? (strcmp(r->o->input, "-") == 0 ? "stdin"
                                                             : r->o->input)
                           : NULL,
        .format = PIPELINE_PROTOBUF,
        .alert_format = r->out != NULL ? PIPELINE_JSON : PIPELINE_PROTOBUF,
        .mode = ALERT_MODE_REPLAY,
        .on_exposed = on_exposed,
        .on_exposed_arg = r,
    };
    r->pipeline = pipeline_new(&po);
    if (r->pipeline == NULL) {
        fail(r, "out of memory at start-up");
        return;
    }
    r->phase = P_RUNNING;
    r->run_ns = r->last_ns = clock_mono_ns();
    if (r->sf != NULL) {
        source_file_kick(r->sf);
    } else if (source_range_start(r->sr, r->parts, r->n_parts, e,
                                  sizeof(e)) != 0) {
        fail(r, "%s", e);
        r->phase = P_DONE;
        event_base_loopexit(r->base, NULL);
    }
}

/* The file source must not read before the pipeline exists. */
static size_t cb_capacity_gated(void *arg)
{
    struct rp *r = arg;
    return r->pipeline != NULL ? cb_capacity(arg) : 0;
}

static int open_source(struct rp *r, char *err, size_t errlen)
{
    const struct config *c = r->c;
    const struct replay_opts *o = r->o;
    if (o->input != NULL) {
        struct source_file_opts so = {
            .path = o->input,
            .format = o->format,
            .batch_size = c->batch_size,
            .capacity = cb_capacity_gated,
            .intake = cb_intake,
            .arg = r,
        };
        r->sf = source_file_new(r->base, &so, err, errlen);
        r->n_lanes = 1;
        return r->sf != NULL ? 0 : -1;
    }
    char brokers[CONFIG_STR_MAX];
    if (config_brokers(c, brokers, sizeof(brokers), err, errlen) != 0) {
        return -1;
    }
    struct source_range_opts so = {
        .config = c,
        .brokers = brokers,
        .topic = r->topic,
        .batch_size = c->batch_size,
        .capacity = cb_capacity_gated,
        .intake = cb_intake,
        .arg = r,
    };
    r->sr = source_range_new(r->base, &so, err, errlen);
    if (r->sr == NULL) {
        return -1;
    }
    struct kseek_stats st = {0};
    uint64_t t0 = clock_mono_ns();
    /* Start-up, before the loop runs: blocking here holds up nothing. */
    if (kafka_seek_range(source_range_handle(r->sr), r->topic, o->from_ms,
                         o->to_ms, SEEK_TIMEOUT_MS, o->force_search,
                         &r->parts, &r->n_parts, &st, err, errlen) != 0) {
        return -1;
    }
    uint64_t total = 0;
    int32_t maxp = 0;
    for (size_t i = 0; i < r->n_parts; i++) {
        if (r->parts[i].end > r->parts[i].start) {
            total += (uint64_t)(r->parts[i].end - r->parts[i].start);
        }
        if (r->parts[i].partition > maxp) {
            maxp = r->parts[i].partition;
        }
    }
    r->n_lanes = (size_t)maxp + 1;
    log_info(MOD, "%s: %zu partition(s), %" PRIu64 " message(s) in range "
             "(offsets found in %.2f s: %d by the broker's time index, %d "
             "by searching message timestamps, %d probes)", r->topic,
             r->n_parts, total, (double)(clock_mono_ns() - t0) / 1e9,
             st.broker_answered, st.searched, st.probes);
    return 0;
}

/* ---- summary ---- */

struct pr_ctx {
    FILE *f;
    json_t *obj;
};

static void print_named(void *arg, const char *name, uint64_t n)
{
    struct pr_ctx *p = arg;
    char v[32];
    text_thousands(n, v, sizeof(v));
    fprintf(p->f, "  %-32s %14s\n", name, v);
}

static void json_named(void *arg, const char *name, uint64_t n)
{
    struct pr_ctx *p = arg;
    json_object_set_new(p->obj, name, json_integer((json_int_t)n));
}

static double run_seconds(const struct rp *r)
{
    uint64_t end = r->end_ns ? r->end_ns : clock_mono_ns();
    return r->run_ns ? (double)(end - r->run_ns) / 1e9 : 0.0;
}

static void print_summary(struct rp *r)
{
    /* Alerts on stdout (--output -) keep stdout JSON lines only. */
    FILE *f = r->o->output != NULL && strcmp(r->o->output, "-") == 0
                  ? stderr
                  : stdout;
    struct metrics *m = r->metrics;
    uint64_t ev = metrics_events_total(m);
    uint64_t exposed = metrics_events(m, METRICS_EXPOSED) +
                       metrics_events(m, METRICS_ALERTED);
    double secs = run_seconds(r);
    char a[32], b[32], cc[32], d[32], e[32], g[32];
    text_thousands(ev, a, sizeof(a));
    text_thousands(exposed, b, sizeof(b));
    text_thousands(tally_alerts(r->tally), cc, sizeof(cc));
    text_thousands(metrics_events(m, METRICS_DEAD_LETTER), d, sizeof(d));
    text_thousands(tally_cards(r->tally), e, sizeof(e));
    text_thousands(secs > 0 ? (uint64_t)((double)ev / secs) : 0, g, sizeof(g));
    const char *failed = "";
    if (r->interrupted != 0) {
        failed = r->interrupted == SIGINT
                     ? " (FAILED: interrupted by SIGINT, output removed)"
                     : " (FAILED: interrupted by SIGTERM, output removed)";
    } else if (r->exit_code != 0) {
        failed = " (FAILED: output removed)";
    }
    fprintf(f, "\ncardwatch replay%s: %s\n", failed,
            r->sf != NULL ? source_file_name(r->sf) : r->topic);
    fprintf(f, "  %-32s %14s\n", "events read", a);
    fprintf(f, "  %-32s %14s\n", "exposed-card transactions", b);
    fprintf(f, "  %-32s %14s\n", "alerts", cc);
    fprintf(f, "  %-32s %14s\n", "dead letters", d);
    fprintf(f, "  %-32s %14s\n", "exposed cards with an alert", e);
    if (tally_repeats(r->tally) > 0) {
        char rep[32];
        text_thousands(tally_repeats(r->tally), rep, sizeof(rep));
        fprintf(f, "  %-32s %14s\n", "repeated (alert written once)", rep);
    }
    if (r->ledger != NULL) {
        char s[32];
        text_thousands(ledger_skipped(r->ledger), s, sizeof(s));
        fprintf(f, "  %-32s %14s\n", "already delivered (not resent)", s);
    }
    fprintf(f, "  %-32s %14.2f  (%s events/s)\n", "seconds", secs, g);
    struct pr_ctx p = {f, NULL};
    fprintf(f, "\nAlerts by severity:\n");
    for (int s = SEVERITY_CRITICAL; s >= SEVERITY_LOW; s--) {
        print_named(&p, severity_name((enum severity)s),
                    tally_severity(r->tally, (enum severity)s));
    }
    fprintf(f, "\nAlerts by rule (an alert counts under each rule it hit):\n");
    tally_each_rule(r->tally, print_named, &p);
    fprintf(f, "\nAlerts by issuer:\n");
    tally_each_issuer(r->tally, print_named, &p);
    if (tally_alerts(r->tally) == 0) {
        fprintf(f, "  (no alerts)\n");
    }
    fflush(f);
}

static void json_breach_days(void *arg, const char *breach_id,
                             int64_t start_ms, int64_t end_ms,
                             const struct timeline_day *days, size_t n)
{
    json_t *list = arg;
    json_t *d = json_array();
    uint64_t exposed = 0, alerts = 0;
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(d, json_pack("[I, I, I]",
                                           (json_int_t)days[i].day_ms,
                                           (json_int_t)days[i].exposed,
                                           (json_int_t)days[i].alerts));
        exposed += days[i].exposed;
        alerts += days[i].alerts;
    }
    json_array_append_new(
        list, json_pack("{s:s, s:I, s:I, s:I, s:I, s:o}", "breach_id",
                        breach_id, "window_start_ms", (json_int_t)start_ms,
                        "window_end_ms", (json_int_t)end_ms, "exposed",
                        (json_int_t)exposed, "alerts", (json_int_t)alerts,
                        "days", d));
}

/* The summary as a JSON document (--report, and the data of
 * --report-html); the caller owns it. Counts only: no card data. */
static json_t *report_doc(struct rp *r)
{
    struct metrics *m = r->metrics;
    json_t *doc = json_object();
    json_t *in = json_object();
    if (r->sf != NULL) {
        json_object_set_new(in, "file", json_string(source_file_name(r->sf)));
        json_object_set_new(in, "format",
                            json_string(reader_format_name(
                                source_file_format(r->sf))));
    } else {
        json_object_set_new(in, "topic", json_string(r->topic));
        json_object_set_new(in, "from_ms", json_integer(r->o->from_ms));
        json_object_set_new(in, "to_ms", r->o->to_ms == INT64_MAX
                                             ? json_null()
                                             : json_integer(r->o->to_ms));
        json_t *parts = json_array();
        for (size_t i = 0; i < r->n_parts; i++) {
            json_array_append_new(
                parts, json_pack("{s:i, s:I, s:I}", "partition",
                                 (int)r->parts[i].partition, "start",
                                 (json_int_t)r->parts[i].start, "end",
                                 (json_int_t)r->parts[i].end));
        }
        json_object_set_new(in, "partitions", parts);
    }
    json_object_set_new(doc, "input", in);
    json_object_set_new(doc, "rules", json_string(rules_version(r->core.rules)));
    json_object_set_new(doc, "breach", r->o->breach
                                           ? json_string(r->o->breach)
                                           : json_null());
    json_object_set_new(doc, "exposed_cards_loaded",
                        json_integer((json_int_t)snapshot_cards(r->snapshot)));
    uint64_t ev = metrics_events_total(m);
    json_object_set_new(doc, "events", json_integer((json_int_t)ev));
    json_object_set_new(doc, "clean", json_integer((json_int_t)metrics_events(
                                          m, METRICS_CLEAN)));
    json_object_set_new(
        doc, "exposed_transactions",
        json_integer((json_int_t)(metrics_events(m, METRICS_EXPOSED) +
                                  metrics_events(m, METRICS_ALERTED))));
    json_object_set_new(doc, "alerts",
                        json_integer((json_int_t)tally_alerts(r->tally)));
    json_object_set_new(doc, "dead_letters",
                        json_integer((json_int_t)metrics_events(
                            m, METRICS_DEAD_LETTER)));
    json_object_set_new(doc, "misused_cards",
                        json_integer((json_int_t)tally_cards(r->tally)));
    json_object_set_new(doc, "repeated_alerts",
                        json_integer((json_int_t)tally_repeats(r->tally)));
    json_t *sev = json_object();
    for (int s = SEVERITY_LOW; s <= SEVERITY_CRITICAL; s++) {
        json_object_set_new(sev, severity_name((enum severity)s),
                            json_integer((json_int_t)tally_severity(
                                r->tally, (enum severity)s)));
    }
    json_object_set_new(doc, "alerts_by_severity", sev);
    struct pr_ctx p = {NULL, json_object()};
    tally_each_rule(r->tally, json_named, &p);
    json_object_set_new(doc, "alerts_by_rule", p.obj);
    p.obj = json_object();
    tally_each_issuer(r->tally, json_named, &p);
    json_object_set_new(doc, "alerts_by_issuer", p.obj);
    if (r->ledger != NULL) {
        json_object_set_new(doc, "already_delivered",
                            json_integer((json_int_t)ledger_skipped(
                                r->ledger)));
    }
    json_object_set_new(doc, "output",
                        r->o->output ? json_string(r->o->output)
                        : r->o->deliver ? json_string("live issuer topics")
                                        : json_string("replay topics"));
    double secs = run_seconds(r);
    json_object_set_new(doc, "seconds", json_real(secs));
    json_object_set_new(doc, "events_per_second",
                        json_real(secs > 0 ? (double)ev / secs : 0));
    json_object_set_new(doc, "ok", json_boolean(r->exit_code == 0));
    /* per breach, per UTC day: transactions on its cards, alerts */
    json_t *tl = json_array();
    timeline_each(r->timeline, json_breach_days, tl);
    json_object_set_new(doc, "timeline", tl);
    json_object_set_new(doc, "timeline_complete",
                        json_boolean(!r->timeline_short));
    return doc;
}

/* Writes --report and --report-html. Returns 0, or -1 (logged). */
static int write_report(struct rp *r)
{
    json_t *doc = report_doc(r);
    int rc = 0;
    if (r->o->report != NULL &&
        json_dump_file(doc, r->o->report, JSON_INDENT(2) | JSON_SORT_KEYS) !=
            0) {
        log_error(MOD, "cannot write the report %s", r->o->report);
        rc = -1;
    }
    if (r->o->report_html != NULL) {
        char err[1024];
        char *json = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
        if (json == NULL) {
            log_error(MOD, "out of memory writing %s", r->o->report_html);
            rc = -1;
        } else if (report_html_write(r->o->report_html, json, strlen(json),
                                     err, sizeof(err)) != 0) {
            log_error(MOD, "%s", err);
            rc = -1;
        }
        free(json);
    }
    json_decref(doc);
    return rc;
}

/* ---- main ---- */

static void make_namespace(char *buf, size_t len)
{
    unsigned char rnd[6] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
        uint64_t t = clock_mono_ns() ^ ((uint64_t)getpid() << 32);
        memcpy(rnd, &t, sizeof(rnd));
    }
    if (fd >= 0) {
        close(fd);
    }
    snprintf(buf, len, "rp-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5]);
}

#define OOM "out of memory at start-up"

/* An event loop that polls often. Sources re-activate themselves (a
 * slice of input per loop turn) and file outputs acknowledge on the next
 * turn: with nothing else to wait for, libevent ran those active events
 * on and on without polling, so no signal and no timer (progress, tick)
 * was seen until the input ended (SIGTERM took 8.4 s on 12 M events, a
 * gzip bomb never stopped). It now polls after 10 ms or 64 callbacks.
 * NULL when out of memory. */
static struct event_base *new_base(void)
{
    struct event_base *base = NULL;
    struct event_config *ecfg = event_config_new();
    struct timeval max_iv = {0, 10000};
    if (ecfg != NULL &&
        event_config_set_max_dispatch_interval(ecfg, &max_iv, 64, 0) == 0) {
        base = event_base_new_with_config(ecfg);
    }
    if (ecfg != NULL) {
        event_config_free(ecfg);
    }
    return base;
}

/* Key and rules, the loop, the brokers and topics, the input, Redis with
 * the exposed set, the replay's own window state when its rules use
 * windows; the snapshot starts once the set passed its check
 * (cb_redis_state). Returns 0, or -1 with the reason in err (what was
 * made stays in r for teardown). */
static int replay_start(struct rp *r, char *err, size_t errlen)
{
    const struct config *c = r->c;
    const char *rules_path = r->o->rules ? r->o->rules : c->rules_path;
    if (app_start_local(&r->core, c->key_file, rules_path, err, errlen) !=
        0) {
        return -1;
    }
    r->base = new_base();
    r->metrics = metrics_new();
    r->tally = tally_new();
    r->timeline = timeline_new();
    if (r->base == NULL || r->metrics == NULL || r->tally == NULL ||
        r->timeline == NULL) {
        snprintf(err, errlen, OOM);
        return -1;
    }
    r->started_ns = clock_mono_ns();
    if (check_kafka(r, err, errlen) != 0 || open_source(r, err, errlen) != 0) {
        return -1;
    }
    struct app_start_redis ro = {
        .while_down = "the replay pauses",
        .while_missing = "the replay cannot start",
        .metrics = r->metrics,
        .on_state = cb_redis_state,
        .state_arg = r,
    };
    if (app_start_redis(&r->core, r->base, c, &ro, err, errlen) != 0) {
        return -1;
    }
    r->uses_state = rules_need_state(r->core.rules);
    if (r->uses_state) {
        make_namespace(r->ns, sizeof(r->ns));
        /* one pass, never re-processed: no grace */
        r->state = state_new(r->base, r->core.redis, c->redis_prefix,
                             card_key_id(r->core.key), r->ns, 0);
        if (r->state == NULL) {
            snprintf(err, errlen, OOM);
            return -1;
        }
    }
    return 0;
}

/* The tick, progress, acknowledgement and signal events. Returns 0, or
 * -1 when out of memory. */
static int replay_arm(struct rp *r)
{
    r->tick = event_new(r->base, -1, EV_PERSIST, on_tick, r);
    r->progress = event_new(r->base, -1, EV_PERSIST, on_progress, r);
    r->ack_ev = event_new(r->base, -1, 0, on_acks, r);
    r->sigint = evsignal_new(r->base, SIGINT, on_signal, r);
    r->sigterm = evsignal_new(r->base, SIGTERM, on_signal, r);
    if (r->tick == NULL || r->progress == NULL || r->ack_ev == NULL ||
        r->sigint == NULL || r->sigterm == NULL) {
        return -1;
    }
    struct timeval tick = {0, 20000};
    event_add(r->tick, &tick);
    struct timeval prog = {r->o->progress ? 0 : 10,
                           r->o->progress ? 500000 : 0};
    event_add(r->progress, &prog);
    event_add(r->sigint, NULL);
    event_add(r->sigterm, NULL);
    if (r->o->progress) {
        log_set_progress_active(1);
    }
    return 0;
}

static void log_start(const struct rp *r)
{
    const struct replay_opts *o = r->o;
    log_info(MOD, "replaying %s%s with rules %s%s%s; alerts to %s%s%s",
             o->input ? "file " : "topic ",
             o->input ? o->input : r->topic, rules_version(r->core.rules),
             o->breach ? ", breach " : "", o->breach ? o->breach : "",
             o->output ? o->output
             : o->deliver ? "the live issuer topics (once)"
                          : "the replay topics (issuer topic + ",
             o->output || o->deliver ? "" : r->c->replay_topic_suffix,
             o->output || o->deliver ? "" : ")");
}

/* The loop ran out: every event done, flush the producer, write the
 * files out, then the report, and only then rename any file into place:
 * a replay that fails at any step keeps no output (sink_file_destroy
 * removes the partial files). Prints the summary. */
static void replay_finish(struct rp *r)
{
    const struct replay_opts *o = r->o;
    char err[1024];
    if (o->progress) {
        on_progress(-1, 0, r); /* what 0: the final redraw */
        fputc('\n', stderr);
        log_set_progress_active(0);
    }
    if (r->pipeline != NULL && pipeline_in_flight(r->pipeline) != 0) {
        r->exit_code = 1;
    }
    if (r->sk != NULL && sink_kafka_flush(r->sk, 10000) != 0) {
        log_error(MOD, "producer flush timed out");
        r->exit_code = 1;
    }
    struct sink_file *outs[] = {r->out, r->dlf};
    for (size_t i = 0; i < 2; i++) {
        if (r->exit_code == 0 && outs[i] != NULL &&
            sink_file_flush(outs[i], err, sizeof(err)) != 0) {
            log_error(MOD, "%s", err);
            r->exit_code = 1;
        }
    }
    int reports = o->report != NULL || o->report_html != NULL;
    if (r->pipeline != NULL && reports && write_report(r) != 0) {
        r->exit_code = 1;
    }
    for (size_t i = 0; i < 2; i++) {
        if (r->exit_code == 0 && outs[i] != NULL &&
            sink_file_finish(outs[i], err, sizeof(err)) != 0) {
            log_error(MOD, "%s", err);
            r->exit_code = 1;
            if (reports) {
                write_report(r); /* ok: false after all */
            }
        }
    }
    if (r->pipeline != NULL) {
        print_summary(r);
    }
    log_info(MOD, "done%s", r->exit_code ? " with errors" : "");
}

static void replay_teardown(struct rp *r)
{
    if (r->pipeline != NULL) {
        pipeline_detach_source(r->pipeline);
    }
    source_file_destroy(r->sf);
    source_range_destroy(r->sr);
    sink_kafka_destroy(r->sk);
    snapshot_destroy(r->snapshot);
    app_core_close_redis(&r->core);
    state_destroy(r->state);
    ledger_destroy(r->ledger);
    pipeline_destroy(r->pipeline);
    sink_file_destroy(r->out);
    sink_file_destroy(r->dlf);
    struct event *evs[] = {r->tick, r->progress, r->ack_ev, r->sigint,
                           r->sigterm};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (evs[i] != NULL) {
            event_free(evs[i]);
        }
    }
    free(r->acks);
    kafka_seek_free(r->parts);
    if (r->base != NULL) {
        event_base_free(r->base);
    }
    tally_destroy(r->tally);
    timeline_destroy(r->timeline);
    metrics_destroy(r->metrics);
    app_core_free(&r->core);
}

int app_replay(const struct config *c, const struct replay_opts *o)
{
    struct rp r = {0};
    char err[1024];
    r.c = c;
    r.o = o;
    signal(SIGPIPE, SIG_IGN);
    snprintf(r.topic, sizeof(r.topic), "%s",
             o->topic ? o->topic : c->transactions_topic);
    int rc = replay_start(&r, err, sizeof(err));
    if (rc == 0 && replay_arm(&r) != 0) {
        snprintf(err, sizeof(err), OOM);
        rc = -1;
    }
    if (rc != 0) {
        log_error(MOD, "%s", err);
        r.exit_code = 1;
    } else {
        log_start(&r);
        event_base_dispatch(r.base);
        replay_finish(&r);
    }
    replay_teardown(&r);
    if (r.interrupted) {
        return 128 + r.interrupted; /* like a process killed by it */
    }
    return r.exit_code;
}
