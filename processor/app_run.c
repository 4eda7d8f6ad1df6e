/* app_run.c - see app_run.h. */
#include "app_run.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "app_start.h"
#include "card.h"
#include "clock.h"
#include "exposure.h"
#include "redis_cfg.h"
#include "feed.h"
#include "http_admin.h"
#include "kafka_check.h"
#include "kafka_health.h"
#include "ledger.h"
#include "log.h"
#include "metrics.h"
#include "pipeline.h"
#include "rules.h"
#include "sink_kafka.h"
#include "state.h"
#include "text.h"
#include "source_kafka.h"

#define MOD "run"
#define TICK_NS 50000000 /* the tick: stop checks, loop lag */

struct app {
    const struct config *c;
    const struct run_opts *o;
    struct event_base *base;
    struct metrics *metrics;
    struct app_core core; /* key, rules, Redis, exposed set */
    struct sink_kafka *sink;
    struct kafka_health *kafka; /* connections of source and sink */
    struct ledger *ledger;
    struct source_kafka *source;
    struct pipeline *pipeline;
    struct http_admin *http;
    struct feed *feed; /* [feed] listen set: the issuer feed */
    struct state *state;
    struct event *sigint, *sigterm, *sighup, *tick, *progress;
    uint64_t tick_ns; /* when the tick last ran (loop lag) */
    int stopping;
    int feed_cancelled; /* its requests still open were answered 503 */
    int exit_code;
    uint64_t stop_deadline_ns;
    uint64_t started_ns;
    uint64_t first_event_ns; /* first record taken */
    uint64_t end_ns;         /* end of input reached (exit_at_end) */
    uint64_t last_events;
    uint64_t last_ns;
    double rate;
};

/* ---- glue between modules (data flows one way; acks flow back) ---- */

static size_t cb_capacity(void *arg)
{
    struct app *a = arg;
    return a->pipeline ? pipeline_capacity(a->pipeline) : 0;
}

static int cb_intake(void *arg, const struct pipeline_record *r, size_t n)
{
    struct app *a = arg;
    if (a->first_event_ns == 0) {
        a->first_event_ns = clock_mono_ns();
    }
    return pipeline_intake(a->pipeline, r, n);
}

static void cb_revoke(void *arg, int32_t partition)
{
    struct app *a = arg;
    if (a->pipeline != NULL) {
        pipeline_revoke(a->pipeline, partition);
    }
}

static void cb_delivered(void *arg, void *opaque, int err)
{
    struct app *a = arg;
    ledger_inner_delivered(a->ledger, opaque, err);
}

static void cb_ledger_delivered(void *arg, void *opaque, int err)
{
    struct app *a = arg;
    pipeline_delivered(a->pipeline, opaque, err);
}

/* Whether lookups can be answered: intake follows. */
static void cb_redis_state(void *arg, int up)
{
    struct app *a = arg;
    if (a->pipeline != NULL) {
        pipeline_redis_state(a->pipeline, up);
    }
}

static void update_gauges(struct app *a)
{
    metrics_gauge(a->metrics, METRICS_G_IN_FLIGHT,
                  (double)pipeline_in_flight(a->pipeline));
    metrics_gauge(a->metrics, METRICS_G_CONSUMER_LAG,
                  (double)source_kafka_lag(a->source));
    metrics_gauge(a->metrics, METRICS_G_ASSIGNED_PARTITIONS,
                  source_kafka_assigned(a->source));
}

static int app_ready(void *arg, char *why, size_t whylen)
{
    struct app *a = arg;
    if (a->stopping) {
        snprintf(why, whylen, "shutting down");
        return 0;
    }
    if (sink_kafka_fatal(a->sink)) {
        snprintf(why, whylen, "Kafka producer failed");
        return 0;
    }
    if (!kafka_health_ok(a->kafka, why, whylen)) {
        return 0;
    }
    if (!exposure_health(a->core.exposure, why, whylen)) {
        if (!exposure_is_up(a->core.exposure)) {
            size_t len = strlen(why);
            snprintf(why + len, whylen - len, "; intake paused");
        }
        return 0;
    }
    /* Redis refuses a command of the event path (ACL, out of memory):
     * the events wait for it */
    if (!state_health(a->state, why, whylen) ||
        !ledger_health(a->ledger, why, whylen)) {
        return 0;
    }
    return 1;
}

static char *app_metrics(void *arg)
{
    struct app *a = arg;
    char why[256];
    update_gauges(a);
    metrics_gauge(a->metrics, METRICS_G_READY,
                  app_ready(a, why, sizeof(why)));
    char *text = NULL;
    char *extra = NULL;
    size_t extra_len = 0;
    FILE *m = open_memstream(&extra, &extra_len);
    if (m == NULL) {
        return NULL;
    }
    fprintf(m,
            "# HELP cardwatch_ruleset_info Active rule set.\n"
            "# TYPE cardwatch_ruleset_info gauge\n"
            "cardwatch_ruleset_info{version=\"%s\"} 1\n"
            "# HELP cardwatch_alerts_not_resent_total Alerts not produced "
            "because their id was delivered before or on its way (an "
            "event read again, a transaction the input holds twice).\n"
            "# TYPE cardwatch_alerts_not_resent_total counter\n"
            "cardwatch_alerts_not_resent_total %llu\n",
            rules_version(a->core.rules),
            (unsigned long long)ledger_skipped(a->ledger));
    kafka_health_metrics(a->kafka, m);
    feed_metrics(a->feed, m); /* nothing when no feed runs */
    if (fclose(m) != 0) {
        free(extra);
        return NULL;
    }
    long n = metrics_render(a->metrics, extra, &text);
    free(extra);
    if (n < 0) {
        return NULL;
    }
    return text;
}

/* ---- rules: start-up warnings and hot reload ---- */

/* Loads [rules] path again; on success the pipeline switches to the new
 * set, else the running set stays. Returns 0, or -1 with the reason. */
static int app_reload(void *arg, char *msg, size_t msglen)
{
    struct app *a = arg;
    char err[1024];
    if (a->c->rules_path[0] == '\0') {
        snprintf(msg, msglen, "no [rules] path is configured; the built-in "
                 "rule set stays");
        log_warn("rules", "reload: %s", msg);
        metrics_rules_reload(a->metrics, 0);
        return -1;
    }
    struct ruleset *rs = rules_load(a->c->rules_path, err, sizeof(err));
    if (rs == NULL) {
        snprintf(msg, msglen, "%s; still running %s", err,
                 rules_version(a->core.rules));
        log_error("rules", "reload refused: %s", msg);
        metrics_rules_reload(a->metrics, 0);
        return -1;
    }
    rules_warnings(rs, app_log_rule_warning, NULL);
    pipeline_set_rules(a->pipeline, rs);
    log_info("rules", "reloaded %s: %s -> %s (%zu rules)",
             a->c->rules_path, rules_version(a->core.rules), rules_version(rs),
             rules_count(rs));
    rules_destroy(a->core.rules);
    a->core.rules = rs;
    snprintf(msg, msglen, "%s", rules_version(rs));
    metrics_rules_reload(a->metrics, 1);
    return 0;
}

static const char *app_rules_version(void *arg)
{
    struct app *a = arg;
    return rules_version(a->core.rules);
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    char msg[1200];
    app_reload(arg, msg, sizeof(msg));
}

/* ---- shutdown ---- */

static void begin_stop(struct app *a, const char *why)
{
    if (a->stopping) {
        return;
    }
    a->stopping = 1;
    a->stop_deadline_ns =
        clock_mono_ns() + (uint64_t)a->o->drain_timeout_s * 1000000000ull;
    log_info(MOD, "%s: stopping intake, draining %zu in-flight event(s)",
             why, pipeline_in_flight(a->pipeline));
    source_kafka_stop(a->source);
    feed_stop(a->feed); /* answers waiting long polls, ends streams */
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct app *a = arg;
    if (a->stopping) {
        log_warn(MOD, "second signal: exiting without draining; "
                 "unacknowledged events will be consumed again");
        a->exit_code = 1;
        event_base_loopbreak(a->base);
        return;
    }
    begin_stop(a, sig == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct app *a = arg;
    uint64_t t = clock_mono_ns();
    if (a->tick_ns != 0) { /* due TICK_NS after the last run */
        double late = (double)(int64_t)(t - a->tick_ns - TICK_NS) / 1e9;
        metrics_loop_lag(a->metrics, late);
    }
    a->tick_ns = t;
    if (!a->stopping && sink_kafka_fatal(a->sink)) {
        a->exit_code = 1;
        begin_stop(a, "producer fatal error");
    }
    if (!a->stopping && source_kafka_broken(a->source)) {
        a->exit_code = 1;
        begin_stop(a, "partition not tracked (out of memory)");
    }
    if (!a->stopping && a->o->exit_at_end &&
        source_kafka_at_end(a->source) &&
        pipeline_in_flight(a->pipeline) == 0) {
        a->end_ns = clock_mono_ns();
        begin_stop(a, "end of input");
    }
    if (!a->stopping) {
        return;
    }
    /* The feed's replies in progress get up to 2 s after the stop; those
     * still waiting for Redis are then answered 503 while the loop runs
     * (so that the answer is written) and get 1 s more. */
    uint64_t feed_until = a->stop_deadline_ns -
                          (uint64_t)a->o->drain_timeout_s * 1000000000ull +
                          2000000000ull;
    uint64_t now = clock_mono_ns();
    if (now > feed_until && !a->feed_cancelled && feed_busy(a->feed) > 0) {
        feed_cancel(a->feed);
        a->feed_cancelled = 1;
    }
    if (pipeline_in_flight(a->pipeline) == 0 &&
        (feed_busy(a->feed) == 0 || now > feed_until + 1000000000ull)) {
        event_base_loopexit(a->base, NULL);
    } else if (clock_mono_ns() > a->stop_deadline_ns) {
        log_error(MOD, "drain timed out with %zu event(s) unacknowledged; "
                  "they will be consumed again after a restart",
                  pipeline_in_flight(a->pipeline));
        a->exit_code = 1;
        event_base_loopexit(a->base, NULL);
    }
}

static void on_progress(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct app *a = arg;
    uint64_t now = clock_mono_ns();
    uint64_t ev = metrics_events_total(a->metrics);
    double dt = (double)(now - a->last_ns) / 1e9;
    a->rate = dt > 0 ? (double)(ev - a->last_events) / dt : 0;
    a->last_events = ev;
    a->last_ns = now;
    char e[32], r[32], x[32], al[32], d[32], lag[32];
    text_thousands(ev, e, sizeof(e));
    text_thousands((uint64_t)a->rate, r, sizeof(r));
    text_thousands(metrics_events(a->metrics, METRICS_EXPOSED) +
                  metrics_events(a->metrics, METRICS_ALERTED),
              x, sizeof(x));
    text_thousands(metrics_alerts_total(a->metrics), al, sizeof(al));
    text_thousands(metrics_events(a->metrics, METRICS_DEAD_LETTER), d, sizeof(d));
    text_thousands((uint64_t)source_kafka_lag(a->source), lag, sizeof(lag));
    const char *redis = exposure_is_up(a->core.exposure) ? "up" : "DOWN";
    if (a->o->progress) {
        fprintf(stderr,
                "\r\033[K%s events  %s/s  exposed %s  alerts %s  dead "
                "letters %s  lag %s  redis %s",
                e, r, x, al, d, lag, redis);
        fflush(stderr);
    } else {
        log_info(MOD, "%s events (%s/s), exposed %s, alerts %s, dead "
                 "letters %s, lag %s, redis %s", e, r, x, al, d, lag, redis);
    }
}

struct table_ctx {
    int rows;
};

struct hit_row {
    char issuer[ISSUER_ID_MAX + 1];
    char rule[RULE_ID_MAX + 1];
    uint64_t n;
};

struct hit_rows {
    struct hit_row *v;
    size_t n, cap;
};

static void collect_hit(void *arg, const char *issuer, const char *rule,
                        uint64_t n)
{
    struct hit_rows *r = arg;
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 32;
        struct hit_row *nv = realloc(r->v, ncap * sizeof(*nv));
        if (nv == NULL) {
            return;
        }
        r->v = nv;
        r->cap = ncap;
    }
    struct hit_row *h = &r->v[r->n++];
    snprintf(h->issuer, sizeof(h->issuer), "%s", issuer);
    snprintf(h->rule, sizeof(h->rule), "%s", rule);
    h->n = n;
}

/* By issuer, then most hits first. */
static int cmp_hit(const void *a, const void *b)
{
    const struct hit_row *x = a, *y = b;
    int c = strcmp(x->issuer, y->issuer);
    if (c != 0) {
        return c;
    }
    return x->n < y->n ? 1 : x->n > y->n ? -1 : strcmp(x->rule, y->rule);
}

static void print_issuer(void *arg, const char *issuer, uint64_t n)
{
    struct table_ctx *t = arg;
    fprintf(stdout, "  %-24s %12" PRIu64 "\n", issuer, n);
    t->rows++;
}

static void write_summary_json(struct app *a, double secs, double proc)
{
    FILE *f = fopen(a->o->summary_json, "w");
    if (f == NULL) {
        log_error(MOD, "cannot write %s", a->o->summary_json);
        return;
    }
    uint64_t ev = metrics_events_total(a->metrics);
    fprintf(f,
            "{\"events\":%" PRIu64 ",\"clean\":%" PRIu64
            ",\"exposed_no_alert\":%" PRIu64 ",\"alerted\":%" PRIu64
            ",\"dead_letters\":%" PRIu64 ",\"alerts\":%" PRIu64
            ",\"seconds\":%.3f,\"processing_seconds\":%.3f,"
            "\"rate\":%.0f,\"exit_code\":%d}\n",
            ev, metrics_events(a->metrics, METRICS_CLEAN),
            metrics_events(a->metrics, METRICS_EXPOSED),
            metrics_events(a->metrics, METRICS_ALERTED),
            metrics_events(a->metrics, METRICS_DEAD_LETTER),
            metrics_alerts_total(a->metrics), secs, proc,
            proc > 0 ? (double)ev / proc : 0.0, a->exit_code);
    fclose(f);
}

static void print_summary(struct app *a)
{
    double secs = (double)(clock_mono_ns() - a->started_ns) / 1e9;
    uint64_t ev = metrics_events_total(a->metrics);
    /* Processing time: first record taken to end of input (or now); it
     * leaves out the consumer-group join, which the plain consumer of the
     * benchmark does not have either. */
    uint64_t end = a->end_ns ? a->end_ns : clock_mono_ns();
    double proc = a->first_event_ns
                      ? (double)(end - a->first_event_ns) / 1e9
                      : 0.0;
    fprintf(stdout,
            "\ncardwatch run: %" PRIu64 " events in %.1f s (%.0f/s): %" PRIu64
            " clean, %" PRIu64 " exposed without alert, %" PRIu64
            " alerted, %" PRIu64 " dead letters\n",
            ev, secs, secs > 0 ? (double)ev / secs : 0,
            metrics_events(a->metrics, METRICS_CLEAN),
            metrics_events(a->metrics, METRICS_EXPOSED),
            metrics_events(a->metrics, METRICS_ALERTED),
            metrics_events(a->metrics, METRICS_DEAD_LETTER));
    if (proc > 0) {
        fprintf(stdout, "processing: %.2f s from the first event taken to "
                        "the end (%.0f events/s)\n", proc,
                (double)ev / proc);
    }
    if (a->o->summary_json != NULL) {
        write_summary_json(a, secs, proc);
    }
    struct table_ctx t = {0};
    fprintf(stdout, "\nAlerts by issuer:\n  %-24s %12s\n", "issuer",
            "alerts");
    metrics_each_issuer(a->metrics, print_issuer, &t);
    fprintf(stdout, "\nRule hits by issuer and rule:\n  %-24s %-28s %12s\n",
            "issuer", "rule", "hits");
    struct hit_rows rows = {0};
    metrics_each_hit(a->metrics, collect_hit, &rows);
    if (rows.n > 0) {
        qsort(rows.v, rows.n, sizeof(rows.v[0]), cmp_hit);
    }
    for (size_t i = 0; i < rows.n; i++) {
        fprintf(stdout, "  %-24s %-28s %12" PRIu64 "\n", rows.v[i].issuer,
                rows.v[i].rule, rows.v[i].n);
        t.rows++;
    }
    free(rows.v);
    if (t.rows == 0) {
        fprintf(stdout, "  (no alerts)\n");
    }
    fflush(stdout);
}

#define OOM "out of memory at start-up"

/* Everything between Redis and the pipeline: window state, the producer
 * with its record of deliveries, the consumer, the pipeline; then the
 * admin HTTP endpoint and the feed when configured. Returns 0, or -1
 * with the reason in err (what was made stays in a for app_teardown). */
static int app_wire(struct app *a, const char *brokers, char *err,
                    size_t errlen)
{
    const struct config *c = a->c;
    a->state = state_new(a->base, a->core.redis, c->redis_prefix,
                         card_key_id(a->core.key), "live",
                         c->reprocess_grace_ms);
    if (a->state == NULL) {
        snprintf(err, errlen, OOM);
        return -1;
    }
    a->sink = sink_kafka_new(a->base, c, brokers, a->metrics, a->kafka,
                             cb_delivered, a, err, errlen);
    if (a->sink == NULL) {
        return -1;
    }
    struct ledger_opts lo = {
        .base = a->base,
        .redis = a->core.redis,
        .prefix = c->redis_prefix,
        .ttl_days = c->delivered_ttl_days,
        .feed_max_alerts = c->feed_max_alerts,
        .feed_retention_days = c->feed_retention_days,
        .inner = {sink_kafka_produce, a->sink},
        .delivered = cb_ledger_delivered,
        .arg = a,
    };
    a->ledger = ledger_new(&lo);
    if (a->ledger == NULL) {
        snprintf(err, errlen, OOM);
        return -1;
    }
    struct source_kafka_opts so = {
        .config = c,
        .brokers = brokers,
        .group = c->group,
        .topic = c->transactions_topic,
        .batch_size = c->batch_size,
        .metrics = a->metrics,
        .health = a->kafka,
        .capacity = cb_capacity,
        .intake = cb_intake,
        .revoke = cb_revoke,
        .arg = a,
    };
    a->source = source_kafka_new(a->base, &so, err, errlen);
    if (a->source == NULL) {
        return -1;
    }
    struct pipeline_opts po = {
        .config = c,
        .key = a->core.key,
        .rules = a->core.rules,
        .exposure = a->core.exposure,
        .state = a->state,
        .metrics = a->metrics,
        /* failed: none - a failed event stays unacknowledged and is
         * consumed again after a restart (the pipeline logs it) */
        .source = {.store = source_kafka_store,
                   .set_paused = source_kafka_set_paused,
                   .kick = source_kafka_kick,
                   .ctx = a->source},
        .sink = {ledger_produce, a->ledger},
        .source_topic = c->transactions_topic,
        .format = PIPELINE_PROTOBUF,
        .alert_format = PIPELINE_PROTOBUF,
        .mode = ALERT_MODE_LIVE,
    };
    a->pipeline = pipeline_new(&po);
    if (a->pipeline == NULL) {
        snprintf(err, errlen, OOM);
        return -1;
    }
    /* Intake starts paused until Redis answers. */
    if (!exposure_is_up(a->core.exposure)) {
        source_kafka_set_paused(a->source, 1);
    }
    if (c->http_listen[0] != '\0') {
        struct http_admin_ops ho = {app_ready, app_metrics, app_reload,
                                    app_rules_version, a};
        a->http = http_admin_new(a->base, c->http_listen, &ho, err, errlen);
        if (a->http == NULL) {
            return -1;
        }
    }
    if (c->feed_listen[0] != '\0') {
        a->feed = feed_new(a->base, c, err, errlen);
        if (a->feed == NULL) {
            return -1;
        }
    }
    return 0;
}

/* Signals, the tick and the progress timer. Returns 0, or -1 when out of
 * memory. */
static int app_arm(struct app *a)
{
    a->sigint = evsignal_new(a->base, SIGINT, on_signal, a);
    a->sigterm = evsignal_new(a->base, SIGTERM, on_signal, a);
    a->sighup = evsignal_new(a->base, SIGHUP, on_sighup, a);
    a->tick = event_new(a->base, -1, EV_PERSIST, on_tick, a);
    a->progress = event_new(a->base, -1, EV_PERSIST, on_progress, a);
    if (a->sigint == NULL || a->sigterm == NULL || a->tick == NULL ||
        a->progress == NULL) {
        return -1;
    }
    event_add(a->sigint, NULL);
    event_add(a->sigterm, NULL);
    if (a->sighup != NULL) {
        event_add(a->sighup, NULL);
    }
    struct timeval tick = {0, TICK_NS / 1000};
    event_add(a->tick, &tick);
    struct timeval prog = {a->o->progress ? 1 : 10, 0};
    event_add(a->progress, &prog);
    if (a->o->progress) {
        log_set_progress_active(1);
    }
    return 0;
}

/* The loop ran out (drained, --exit-at-end, or a fatal error): close the
 * consumer (final commit), flush the producer, print the summary. */
static void app_stop(struct app *a)
{
    if (a->o->progress) {
        on_progress(-1, 0, a);
        fputc('\n', stderr);
        log_set_progress_active(0);
    }
    if (source_kafka_close(a->source) != 0) {
        a->exit_code = 1;
    }
    if (sink_kafka_flush(a->sink, 10000) != 0) {
        log_error(MOD, "producer flush timed out");
        a->exit_code = 1;
    }
    print_summary(a);
    log_info(MOD, "stopped%s", a->exit_code ? " with errors" : " cleanly");
}

static void app_teardown(struct app *a)
{
    /* Order: the sink and exposure call back into the pipeline. */
    http_admin_destroy(a->http);
    feed_destroy(a->feed);
    if (a->pipeline != NULL) {
        pipeline_detach_source(a->pipeline);
    }
    source_kafka_destroy(a->source);
    sink_kafka_destroy(a->sink);
    app_core_close_redis(&a->core);
    state_destroy(a->state);
    ledger_destroy(a->ledger);
    pipeline_destroy(a->pipeline);
    struct event *evs[] = {a->sigint, a->sigterm, a->sighup, a->tick,
                           a->progress};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (evs[i] != NULL) {
            event_free(evs[i]);
        }
    }
    if (a->base != NULL) {
        event_base_free(a->base);
    }
    metrics_destroy(a->metrics);
    kafka_health_destroy(a->kafka);
    app_core_free(&a->core);
}

/* Start-up in the order of what can fail without the network first (key,
 * rules), then the brokers and topics (a missing alert topic would
 * surface minutes later as failed deliveries, a missing transactions
 * topic as an idle service), then Redis. */
static int app_start(struct app *a, const char *brokers, char *err,
                     size_t errlen)
{
    const struct config *c = a->c;
    if (app_start_local(&a->core, c->key_file, c->rules_path, err,
                        errlen) != 0) {
        return -1;
    }
    a->base = event_base_new();
    a->metrics = metrics_new();
    a->kafka = kafka_health_new();
    if (a->base == NULL || a->metrics == NULL || a->kafka == NULL) {
        snprintf(err, errlen, OOM);
        return -1;
    }
    if (kafka_check_config(c, brokers,
                           KCHECK_T_INPUT | KCHECK_T_DEAD_LETTER |
                               KCHECK_T_ALERTS,
                           "", NULL, NULL, err, errlen) != KCHECK_OK) {
        return -1;
    }
    struct app_start_redis ro = {
        .while_down = "intake pauses",
        .while_missing = "intake pauses",
        .filter = 1,
        .metrics = a->metrics,
        .on_state = cb_redis_state,
        .state_arg = a,
    };
    if (app_start_redis(&a->core, a->base, c, &ro, err, errlen) != 0 ||
        app_wire(a, brokers, err, errlen) != 0) {
        return -1;
    }
    if (app_arm(a) != 0) {
        snprintf(err, errlen, OOM);
        return -1;
    }
    return 0;
}

int app_run(const struct config *c, const struct run_opts *o)
{
    struct app a = {0};
    char err[1024];
    char brokers[CONFIG_STR_MAX];
    a.c = c;
    a.o = o;
    a.exit_code = 0;
    signal(SIGPIPE, SIG_IGN);

    if (config_brokers(c, brokers, sizeof(brokers), err, sizeof(err)) != 0) {
        log_error(MOD, "%s", err);
        return 1;
    }
    if (app_start(&a, brokers, err, sizeof(err)) != 0) {
        log_error(MOD, "%s", err);
        a.exit_code = 1;
    } else {
        a.started_ns = a.last_ns = clock_mono_ns();
        char rdesc[CONFIG_STR_MAX + 300];
        redis_cfg_describe(c, rdesc, sizeof(rdesc));
        log_info(MOD, "consuming %s as group '%s' from %s; Redis %s; key "
                 "id %s; rules %s", c->transactions_topic, c->group, brokers,
                 rdesc, card_key_id(a.core.key),
                 rules_version(a.core.rules));
        event_base_dispatch(a.base);
        app_stop(&a);
    }
    app_teardown(&a);
    return a.exit_code;
}
