/* pipeline.c - see pipeline.h. */
#include "pipeline.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "clock.h"
#include "log.h"
#include "offsets.h"
#include "snapshot.h"
#include "state.h"
#include "windows.h"

#define MOD "pipeline"
/* Room for the JSON of any alert (32 hits, 16 breaches). */
#define PIPELINE_ALERT_JSON_MAX 16384
/* Live batches at most: a batch lives until its last event is done, so
 * a few events waiting for Redis hold a whole batch; this bounds memory
 * (64 x ~350 KB) besides the bound on events in flight. */
#define PIPELINE_MAX_BATCHES 64
/* Dead letters of one reason are logged at most once per this. */
#define DL_LOG_EVERY_S 10

struct pbatch;

/* What an exposed event keeps while its card's rule state is fetched
 * (about 1% of the traffic, so allocated per such event). */
struct pexp {
    struct rule_match m[ALERT_MAX_BREACHES];
    size_t n;
    struct rule_match r[ALERT_MAX_BREACHES]; /* retired */
    size_t nr;
};

struct pev {
    struct pbatch *batch;
    struct pexp *exp; /* set while waiting for the card's state */
    struct offsets_ticket ticket;
    int pending; /* sink deliveries outstanding */
    int failed;  /* a delivery failed for good: never acknowledged */
    int untracked; /* position could not be registered: never stored */
    enum txn_status status;
    int32_t partition; /* input position */
    int64_t offset;
    struct txn txn;
    int64_t state_seq; /* arrival number on the card (state_view) */
    char fp[CARD_FP_SIZE];
    char exptag[CARD_EXPTAG_SIZE];
};

struct pbatch {
    struct pipeline *p;
    struct pbatch *prev, *next;
    size_t cap; /* events it has room for */
    size_t n;
    size_t remaining; /* events not yet done */
    size_t n_valid;
    uint32_t *valid;  /* indices of valid events, lookup order */
    struct pev ev[];
};

/* Log state of one dead-letter reason (live service: see log_dead). */
struct dl_log {
    uint64_t logged_ns;  /* monotonic time of its last log line */
    uint64_t suppressed; /* dead letters of the reason not logged since */
    int seen;
};

struct pipeline {
    struct pipeline_opts o;
    const struct ruleset *rules; /* current set (hot reload swaps it) */
    int rules_state;             /* rules_need_state() */
    int64_t horizon_ms;          /* longest window + allowed lateness */
    int64_t sup_horizon_ms;      /* longest suppress + lateness; 0: none */
    struct offsets *offsets;
    struct pbatch *batches; /* every live batch, for destroy */
    size_t in_flight;
    size_t max_in_flight;
    int redis_up;
    int starved; /* the source was told we were full */
    char source_topic[256];
    /* Finished batches kept for reuse: a batch of 1,000 events is a few
     * hundred KB, which malloc maps fresh from the kernel (and the kernel
     * zeroes) every time; reusing them halved the cost of an event. */
    struct pbatch *spare[PIPELINE_MAX_BATCHES];
    size_t n_spare;
    size_t n_batches; /* live; at most PIPELINE_MAX_BATCHES */
    struct card_key *dl_key; /* dead-letter MACs: see send_dead_letter */
    struct dl_log dl_log[TXN_STATUS_COUNT];
};

struct pipeline *pipeline_new(const struct pipeline_opts *opts)
{
    struct pipeline *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return NULL;
    }
    p->o = *opts;
    p->offsets = offsets_new();
    p->dl_key = card_key_derive(opts->key, PIPELINE_DEAD_LETTER_KEY_LABEL);
    if (p->offsets == NULL || p->dl_key == NULL) {
        offsets_destroy(p->offsets);
        card_key_destroy(p->dl_key);
        free(p);
        return NULL;
    }
    p->max_in_flight = (size_t)opts->config->max_in_flight;
    pipeline_set_rules(p, opts->rules);
    p->redis_up = exposure_is_up(opts->exposure);
    snprintf(p->source_topic, sizeof(p->source_topic), "%s",
             opts->source_topic ? opts->source_topic : "");
    return p;
}

static void free_batch(struct pipeline *p, struct pbatch *b)
{
    if (b->prev != NULL) {
        b->prev->next = b->next;
    } else {
        p->batches = b->next;
    }
    if (b->next != NULL) {
        b->next->prev = b->prev;
    }
    for (size_t i = 0; i < b->n; i++) {
        free(b->ev[i].exp);
    }
    /* Wipe transaction data (no PAN is left, but merchant data is). */
    memset(b->ev, 0, b->n * sizeof(b->ev[0]));
    p->n_batches--;
    if (p->n_spare < PIPELINE_MAX_BATCHES) {
        b->prev = b->next = NULL;
        b->n = b->remaining = b->n_valid = 0;
        p->spare[p->n_spare++] = b;
        return;
    }
    free(b->valid);
    free(b);
}

/* A zeroed batch with room for n events: a spare one, or a new one. */
static struct pbatch *get_batch(struct pipeline *p, size_t n)
{
    for (size_t i = p->n_spare; i-- > 0;) {
        if (p->spare[i]->cap >= n) {
            struct pbatch *b = p->spare[i];
            p->spare[i] = p->spare[--p->n_spare];
            return b;
        }
    }
    size_t cap = n > (size_t)p->o.config->batch_size
                     ? n
                     : (size_t)p->o.config->batch_size;
    struct pbatch *b = calloc(1, sizeof(*b) + cap * sizeof(struct pev));
    if (b == NULL) {
        return NULL;
    }
    b->valid = malloc(cap * sizeof(*b->valid));
    if (b->valid == NULL) {
        free(b);
        return NULL;
    }
    b->cap = cap;
    return b;
}

void pipeline_destroy(struct pipeline *p)
{
    if (p == NULL) {
        return;
    }
    while (p->batches != NULL) {
        free_batch(p, p->batches);
    }
    for (size_t i = 0; i < p->n_spare; i++) {
        free(p->spare[i]->valid);
        free(p->spare[i]);
    }
    offsets_destroy(p->offsets);
    card_key_destroy(p->dl_key);
    free(p);
}

size_t pipeline_capacity(struct pipeline *p)
{
    if (!p->redis_up || p->in_flight >= p->max_in_flight ||
        p->n_batches >= PIPELINE_MAX_BATCHES) {
        p->starved = 1; /* the source waits for a kick */
        return 0;
    }
    return p->max_in_flight - p->in_flight;
}

size_t pipeline_in_flight(const struct pipeline *p)
{
    return p->in_flight;
}

/* Tells a source that was told "full" that there is room again (half
 * the window, so that it takes batches, not single events). */
static void maybe_kick(struct pipeline *p)
{
    if (p->starved && p->redis_up && p->in_flight < p->max_in_flight / 2 &&
        p->n_batches < PIPELINE_MAX_BATCHES / 2) {
        p->starved = 0;
        if (p->o.source.kick != NULL) {
            p->o.source.kick(p->o.source.ctx);
        }
    }
}

/* Drops one reference (an unfinished event, or a caller's hold). */
static void batch_unref(struct pipeline *p, struct pbatch *b)
{
    assert(b->remaining > 0); /* one reference per unfinished event */
    if (--b->remaining == 0) {
        free_batch(p, b);
        maybe_kick(p);
    }
}

/* What becomes of an event that failed for good, for its log line: the
 * live service leaves it unacknowledged (consumed again after a restart);
 * a replay stops (its source's failed op). */
static const char *redo(const struct pipeline *p)
{
    return p->o.mode == ALERT_MODE_LIVE
               ? "; it will be consumed again after a restart"
               : "";
}

/* Everything the event caused is acknowledged: release its position. */
static void ev_done(struct pipeline *p, struct pev *ev)
{
    struct pbatch *b = ev->batch;
    if (!ev->failed && !ev->untracked) {
        int64_t store = offsets_ack(p->offsets, &ev->ticket);
        if (store >= 0 && p->o.source.store != NULL) {
            p->o.source.store(p->o.source.ctx, ev->ticket.partition, store);
        }
    } else if (ev->failed && p->o.source.failed != NULL) {
        p->o.source.failed(p->o.source.ctx, ev->partition, ev->offset);
    }
    assert(p->in_flight > 0); /* every event in flight is done once */
    p->in_flight--;
    batch_unref(p, b);
    maybe_kick(p);
}

/* Logs a dead letter of the live service: the first of its reason with
 * its position, then at most one line per DL_LOG_EVERY_S per reason that
 * also says how many were not logged since (written with the next dead
 * letter of the reason), so a flood of the same bad input cannot flood
 * the log; cardwatch_dead_letters_total counts every one. A replay
 * reports its dead letters itself (its dead-letter file or topic, the
 * first ten logged, the summary). */
static void log_dead(struct pipeline *p, enum txn_status st, const char *where)
{
    if (p->o.mode != ALERT_MODE_LIVE || (unsigned)st >= TXN_STATUS_COUNT) {
        return;
    }
    struct dl_log *l = &p->dl_log[st];
    uint64_t now = clock_mono_ns();
    if (l->seen && now - l->logged_ns < DL_LOG_EVERY_S * 1000000000ull) {
        l->suppressed++;
        return;
    }
    const char *reason = txn_status_name(st);
    if (!l->seen) {
        log_warn(MOD, "dead letter (%s) for %s; more of this reason are "
                 "logged at most once per %d s (cardwatch_dead_letters_total "
                 "counts every one)", reason, where, DL_LOG_EVERY_S);
    } else if (l->suppressed > 0) {
        log_warn(MOD, "dead letter (%s) for %s, and %llu more of this reason "
                 "not logged in the last %.0f s", reason, where,
                 (unsigned long long)l->suppressed,
                 (double)(now - l->logged_ns) / 1e9);
    } else {
        log_warn(MOD, "dead letter (%s) for %s", reason, where);
    }
    l->seen = 1;
    l->logged_ns = now;
    l->suppressed = 0;
}

/* The dead letter of an invalid record: reason, position, txn_id (when
 * valid) and the keyed MAC of the payload (pipeline.h), never the
 * payload, which may hold a PAN. */
static void send_dead_letter(struct pipeline *p, struct pev *ev,
                             const struct pipeline_record *r)
{
    char mac[CARD_MAC_SIZE];
    char payload_mac[CARD_KEY_ID_MAX + 1 + CARD_MAC_SIZE];
    int mac_ok = card_mac_hex(p->dl_key, r->payload, r->len, mac) == 0;
    snprintf(payload_mac, sizeof(payload_mac), "%s:%s",
             card_key_id(p->dl_key), mac);
    const char *reason = txn_status_name(ev->status);
    json_t *src;
    if (p->o.source_file != NULL) {
        src = json_pack("{s:s, s:I}", "file", p->o.source_file,
                        p->o.format == PIPELINE_JSON ? "line" : "record",
                        (json_int_t)r->offset);
    } else {
        src = json_pack("{s:s, s:i, s:I}", "topic", p->source_topic,
                        "partition", (int)r->partition, "offset",
                        (json_int_t)r->offset);
    }
    json_t *doc = json_pack(
        "{s:s, s:o, s:s, s:s, s:I, s:I}", "reason", reason, "source", src,
        "txn_id", ev->txn.txn_id, "payload_mac", payload_mac,
        "payload_bytes", (json_int_t)r->len, "detected_at_ms",
        (json_int_t)clock_wall_ms());
    char *val = doc && mac_ok ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    char part[16], off[32];
    snprintf(part, sizeof(part), "%" PRId32, r->partition);
    snprintf(off, sizeof(off), "%" PRId64, r->offset);
    struct sink_header hdrs[] = {
        {"reason", reason},
        {"source_topic", p->source_topic},
        {"source_partition", part},
        {"source_offset", off},
    };
    char where[512];
    if (p->o.source_file != NULL) {
        snprintf(where, sizeof(where), "%s %s %s", p->o.source_file,
                 p->o.format == PIPELINE_JSON ? "line" : "record", off);
    } else {
        snprintf(where, sizeof(where), "%s/%s/%s", p->source_topic, part,
                 off);
    }
    metrics_dead_letter(p->o.metrics, ev->status);
    metrics_event(p->o.metrics, METRICS_DEAD_LETTER, 1);
    log_dead(p, ev->status, where);
    if (val == NULL) {
        log_error(MOD, "%s encoding a dead letter for %s",
                  mac_ok ? "out of memory" : "HMAC failed (OpenSSL)", where);
        ev->failed = 1;
        return;
    }
    ev->pending++;
    const char *key = ev->txn.txn_id;
    struct sink_msg msg = {
        .kind = SINK_DEAD_LETTER,
        .topic = p->o.config->dead_letter_topic,
        .key = key[0] ? key : NULL,
        .keylen = strlen(key),
        .value = val,
        .vallen = strlen(val),
        .hdrs = hdrs,
        .n_hdrs = 4,
        .partition = r->partition,
        .offset = r->offset,
    };
    if (p->o.sink.produce(p->o.sink.ctx, &msg, ev) != 0) {
        ev->pending--;
        ev->failed = 1;
    }
    free(val);
}

static void on_lookup(void *arg, int status, const struct exposure_result *res);

int pipeline_intake(struct pipeline *p, const struct pipeline_record *recs,
                    size_t n)
{
    if (n == 0) {
        return 0;
    }
    struct pbatch *b = get_batch(p, n);
    const char **fps = malloc(n * sizeof(*fps));
    if (b == NULL || fps == NULL) {
        if (b != NULL) {
            free(b->valid);
            free(b);
        }
        free(fps);
        return -1;
    }
    b->p = p;
    b->n = n;
    b->remaining = n + 1; /* + the hold released at the end */
    p->n_batches++;
    b->next = p->batches;
    if (p->batches != NULL) {
        p->batches->prev = b;
    }
    p->batches = b;
    p->in_flight += n;

    int64_t now_ms = clock_wall_ms(); /* bound on event times */
    for (size_t i = 0; i < n; i++) {
        struct pev *ev = &b->ev[i];
        const struct pipeline_record *r = &recs[i];
        ev->batch = b;
        ev->partition = r->partition;
        ev->offset = r->offset;
        if (offsets_register(p->offsets, r->partition, r->offset,
                             &ev->ticket) != 0) {
            /* Out of order or re-delivered below what we hold: never
             * store for it; it is processed but acknowledged by others. */
            ev->untracked = 1;
            log_warn(MOD, "position %s/%" PRId32 "/%" PRId64
                     " out of order; not tracked", p->source_topic,
                     r->partition, r->offset);
        }
        if (r->too_long) {
            ev->status = TXN_ERR_TOO_LONG;
        } else if (p->o.format == PIPELINE_JSON) {
            ev->status = txn_decode_json(r->payload, r->len, &ev->txn);
        } else {
            ev->status = txn_decode_protobuf(r->payload, r->len, &ev->txn);
        }
        if (ev->status == TXN_OK) {
            ev->status = txn_check_time(&ev->txn, now_ms,
                                        p->o.config->max_future_skew_ms);
            if (ev->status != TXN_OK) {
                txn_forget_pan(&ev->txn);
            }
        }
        if (ev->status != TXN_OK) {
            send_dead_letter(p, ev, r);
            continue;
        }
        if (card_fingerprint(p->o.key, ev->txn.pan, ev->txn.pan_len,
                             ev->fp) != 0) {
            log_error(MOD, "fingerprint failed (OpenSSL)");
            ev->failed = 1;
            txn_forget_pan(&ev->txn);
            continue;
        }
        txn_forget_pan(&ev->txn);
        b->valid[b->n_valid] = (uint32_t)i;
        fps[b->n_valid] = ev->fp;
        b->n_valid++;
    }

    /* Finish what is not looked up first: a lookup may complete before
     * it returns (snapshot). The hold taken above keeps the batch alive. */
    for (size_t i = 0, k = 0; i < n; i++) {
        if (k < b->n_valid && b->valid[k] == i) {
            k++;
        } else if (b->ev[i].pending == 0) {
            ev_done(p, &b->ev[i]);
        }
    }
    if (b->n_valid > 0) {
        if (p->o.snapshot != NULL) {
            struct exposure_result res;
            if (snapshot_lookup(p->o.snapshot, fps, b->n_valid, &res) == 0) {
                on_lookup(b, 0, &res);
            } else {
                log_error(MOD, "out of memory in a lookup of %zu events%s",
                          b->n_valid, redo(p));
                on_lookup(b, -1, NULL);
            }
        } else if (exposure_lookup(p->o.exposure, fps, b->n_valid,
                                   on_lookup, b) != 0) {
            log_error(MOD, "out of memory queuing a lookup of %zu events%s",
                      b->n_valid, redo(p));
            on_lookup(b, -1, NULL);
        }
    }
    free(fps);
    batch_unref(p, b);
    return 0;
}

void pipeline_set_rules(struct pipeline *p, const struct ruleset *rs)
{
    const int64_t *wins = NULL;
    size_t nw = rules_windows(rs, &wins);
    int64_t sup = 0;
    for (size_t i = 0; i < rules_count(rs); i++) {
        int64_t ms = rules_suppress_ms(rs, i);
        sup = ms > sup ? ms : sup;
    }
    p->rules = rs;
    p->rules_state = rules_need_state(rs);
    p->horizon_ms = (nw > 0 ? wins[nw - 1] : 0) +
                    (int64_t)p->o.config->allowed_lateness_ms;
    p->sup_horizon_ms =
        sup > 0 ? sup + (int64_t)p->o.config->allowed_lateness_ms : 0;
}

/* The breaches listing the card, with the expiry comparison: those the
 * rules see into m (returned count), those whose card the issuer retired
 * into r (*nr). */
static size_t make_matches(struct pipeline *p, struct pev *ev,
                           const struct exposure_hit *hits, size_t n_hits,
                           struct rule_match *m, struct rule_match *r,
                           size_t *nr)
{
    size_t n = n_hits < ALERT_MAX_BREACHES ? n_hits : ALERT_MAX_BREACHES;
    size_t nm = 0;
    *nr = 0;
    /* Only exposed cards need the expiry tag. */
    if (card_expiry_tag(p->o.key, ev->fp, ev->txn.expiry, ev->exptag) != 0) {
        ev->exptag[0] = '\0';
    }
    for (size_t i = 0; i < n; i++) {
        struct rule_match *x = hits[i].retired ? &r[(*nr)++] : &m[nm++];
        x->breach = hits[i].breach;
        x->expiry_known = hits[i].exptag[0] != '\0';
        x->expiry_match =
            x->expiry_known && strcmp(hits[i].exptag, ev->exptag) == 0;
    }
    return nm;
}

static void add_breach(struct alert_breach *ab, size_t *nab,
                       const struct breach *br)
{
    snprintf(ab[*nab].breach_id, sizeof(ab[*nab].breach_id), "%s", br->id);
    ab[*nab].window_start_ms = br->window_start_ms;
    ab[*nab].window_end_ms = br->window_end_ms;
    ab[*nab].elements = br->elements;
    (*nab)++;
}

/* An alert handed to the sink: counted by issuer, severity and rule. */
static void count_alert(struct metrics *m, const char *issuer,
                        const struct alert *a)
{
    metrics_event(m, METRICS_ALERTED, 1);
    metrics_alert_issuer(m, issuer);
    metrics_alert_severity(m, (int)a->severity);
    for (size_t i = 0; i < a->n_hits; i++) {
        metrics_alert(m, issuer, a->hits[i].rule_id);
    }
}

static void on_state_ack(void *arg, int err)
{
    struct pev *ev = arg;
    pipeline_delivered(ev->batch->p, ev, err);
}

/* Evaluates the rules (windows and last may be NULL) on the breaches in
 * m, adds retired-card-use when a retired breach's expiry matches (r),
 * records the suppressions and produces the alert. */
static void evaluate(struct pipeline *p, struct pev *ev,
                     const struct rule_match *m, size_t nm,
                     const struct rule_match *r, size_t nr_ret,
                     const struct win_stats *ws, const struct rule_last *last)
{
    const struct config *c = p->o.config;
    const struct ruleset *rs = p->rules;
    size_t nr = rules_count(rs);
    if (p->o.on_exposed != NULL) {
        p->o.on_exposed(p->o.on_exposed_arg, &ev->txn, m, nm, r, nr_ret);
    }
    int fired[RULES_MAX_RULES], supp[RULES_MAX_RULES];
    int active[ALERT_MAX_BREACHES];
    const struct issuer *iss =
        config_route(c, ev->txn.bin, strlen(ev->txn.bin));
    struct rule_facts f = {&ev->txn, iss, m, nm, ws, last};
    struct rule_hit rh[ALERT_MAX_HITS];
    size_t nh = 0;
    if (nm > 0) {
        nh = rules_eval(rs, &f, rh, ALERT_MAX_HITS, fired, supp, active);
    } else {
        memset(fired, 0, sizeof(fired));
        memset(supp, 0, sizeof(supp));
    }
    /* A retired card used with the exposed expiry: the issuer replaced
     * it, so whoever holds the old details is testing them. */
    int retired_use = 0;
    for (size_t i = 0; i < nr_ret; i++) {
        retired_use |= r[i].expiry_match;
    }
    if (retired_use && nh < ALERT_MAX_HITS) {
        snprintf(rh[nh].rule_id, sizeof(rh[nh].rule_id), "%s",
                 PIPELINE_RULE_RETIRED);
        rh[nh].severity = SEVERITY_CRITICAL;
        nh++;
    }
    for (size_t i = 0; i < nr; i++) {
        if (supp[i]) {
            metrics_rule_suppressed(p->o.metrics, rules_id(rs, i));
        } else if (fired[i] && p->o.state != NULL &&
                   rules_suppress_ms(rs, i) > 0) {
            ev->pending++;
            if (state_suppressed_by(p->o.state, ev->fp, rules_id(rs, i),
                                    ev->txn.event_time_ms, ev->txn.txn_id,
                                    ev->state_seq, on_state_ack, ev) != 0) {
                ev->pending--;
                ev->failed = 1;
            }
        }
    }
    if (nh == 0) {
        metrics_event(p->o.metrics, METRICS_EXPOSED, 1);
        return;
    }
    struct alert_breach ab[ALERT_MAX_BREACHES];
    size_t nab = 0;
    for (size_t i = 0; i < nm && nh > (size_t)retired_use; i++) {
        if (active[i]) {
            add_breach(ab, &nab, m[i].breach);
        }
    }
    for (size_t i = 0; i < nr_ret && retired_use; i++) {
        if (r[i].expiry_match && nab < ALERT_MAX_BREACHES) {
            add_breach(ab, &nab, r[i].breach);
        }
    }
    char fp[ALERT_FP_SIZE];
    snprintf(fp, sizeof(fp), "%s:%s", card_key_id(p->o.key), ev->fp);
    struct alert *a = malloc(sizeof(*a));
    uint8_t *buf = NULL;
    size_t len = 0;
    int bad = a == NULL ||
              alert_build(a, &ev->txn, iss ? iss->id : "", fp, rh, nh, ab,
                          nab, p->o.mode, clock_wall_ms(),
                          rules_version(rs)) != 0;
    if (!bad && p->o.alert_format == PIPELINE_JSON) {
        buf = malloc(PIPELINE_ALERT_JSON_MAX);
        int jl = buf ? alert_encode_json(a, (char *)buf,
                                         PIPELINE_ALERT_JSON_MAX)
                     : -1;
        bad = jl < 0;
        len = jl < 0 ? 0 : (size_t)jl;
    } else if (!bad) {
        bad = alert_encode_protobuf(a, &buf, &len) != 0;
    }
    if (bad) {
        log_error(MOD, "out of memory building the alert for txn %s%s",
                  ev->txn.txn_id, redo(p));
        ev->failed = 1;
        free(buf);
        free(a);
        return;
    }
    const char *label = iss ? iss->id : "unrouted";
    struct sink_msg msg = {
        .kind = SINK_ALERT,
        .topic = iss ? iss->topic : c->fallback_topic,
        .key = fp,
        .keylen = strlen(fp),
        .value = buf,
        .vallen = len,
        .alert = a,
        .issuer = iss ? iss->id : "",
        .partition = ev->partition,
        .offset = ev->offset,
    };
    ev->pending++;
    if (p->o.sink.produce(p->o.sink.ctx, &msg, ev) != 0) {
        ev->pending--;
        ev->failed = 1;
    } else {
        count_alert(p->o.metrics, label, a);
    }
    free(buf);
    free(a);
}

/* The card's window entries and suppressions arrived (its turn came). */
static void on_state(void *arg, int status, const struct state_view *v)
{
    struct pev *ev = arg;
    struct pipeline *p = ev->batch->p;
    struct pexp *x = ev->exp;
    ev->exp = NULL;
    if (status != 0) {
        ev->failed = 1; /* shutting down: consumed again after restart */
    } else {
        const struct ruleset *rs = p->rules;
        size_t nr = rules_count(rs);
        const int64_t *wins = NULL;
        size_t nw = rules_windows(rs, &wins);
        struct win_stats ws[WIN_MAX_WINDOWS];
        struct rule_last last[RULES_MAX_RULES];
        struct win_entry cur;
        memset(last, 0, nr * sizeof(last[0]));
        for (size_t k = 0; k < v->n_sups; k++) {
            for (size_t i = 0; i < nr; i++) {
                if (strcmp(rules_id(rs, i), v->sups[k].rule_id) == 0) {
                    last[i].last_ms = v->sups[k].last_ms;
                    snprintf(last[i].txn_id, sizeof(last[i].txn_id), "%s",
                             v->sups[k].txn_id);
                }
            }
        }
        if (v->newest_ms - ev->txn.event_time_ms >
            (int64_t)p->o.config->allowed_lateness_ms) {
            metrics_late_event(p->o.metrics);
        }
        ev->state_seq = v->seq;
        win_entry_from_txn(&cur, &ev->txn);
        if (win_aggregate(v->entries, v->n_entries, &cur, wins, nw, ws) != 0) {
            log_error(MOD, "out of memory aggregating windows for txn %s",
                      ev->txn.txn_id);
            ev->failed = 1;
        } else {
            evaluate(p, ev, x->m, x->n, x->r, x->nr, nw ? ws : NULL, last);
        }
        /* acknowledged once its window changes are in Redis */
        ev->pending++;
        if (state_release(p->o.state, ev->fp, on_state_ack, ev) != 0) {
            ev->pending--;
            ev->failed = 1;
        }
    }
    free(x);
    pipeline_delivered(p, ev, 0);
}

/* An event on a listed card: rules now, or after its card's state. */
static void exposed_event(struct pipeline *p, struct pev *ev,
                          const struct exposure_hit *hits, size_t n_hits)
{
    struct rule_match m[ALERT_MAX_BREACHES], r[ALERT_MAX_BREACHES];
    size_t nr = 0;
    size_t nm = make_matches(p, ev, hits, n_hits, m, r, &nr);
    if (p->o.state == NULL || !p->rules_state || nm == 0) {
        /* nm 0: every listing breach retired the card; the rules (and
         * their window state) no longer watch it. */
        evaluate(p, ev, m, nm, r, nr, NULL, NULL);
        return;
    }
    struct win_entry e;
    win_entry_from_txn(&e, &ev->txn);
    ev->exp = malloc(sizeof(*ev->exp));
    if (ev->exp != NULL) {
        memcpy(ev->exp->m, m, nm * sizeof(m[0]));
        ev->exp->n = nm;
        memcpy(ev->exp->r, r, nr * sizeof(r[0]));
        ev->exp->nr = nr;
        ev->pending++;
        if (state_observe(p->o.state, ev->fp, &e, p->horizon_ms,
                          p->sup_horizon_ms, on_state, ev) == 0) {
            return;
        }
        ev->pending--;
        free(ev->exp);
        ev->exp = NULL;
    }
    log_error(MOD, "out of memory queuing window state for txn %s%s",
              ev->txn.txn_id, redo(p));
    ev->failed = 1;
}

static void on_lookup(void *arg, int status, const struct exposure_result *res)
{
    struct pbatch *b = arg;
    struct pipeline *p = b->p;
    size_t n_valid = b->n_valid;
    if (status != 0) {
        /* Shutting down: the events stay unacknowledged. */
        for (size_t k = 0; k < n_valid; k++) {
            b->ev[b->valid[k]].failed = 1;
        }
    } else {
        uint64_t clean = 0;
        for (size_t k = 0; k < n_valid; k++) {
            struct pev *ev = &b->ev[b->valid[k]];
            if (res->count[k] == 0) {
                clean++;
                continue;
            }
            exposed_event(p, ev, res->hits + res->first[k], res->count[k]);
        }
        metrics_event(p->o.metrics, METRICS_CLEAN, clean);
    }
    /* Finish events with nothing outstanding, holding the batch so the
     * last ev_done cannot free it under the loop. */
    b->remaining++;
    for (size_t k = 0; k < n_valid; k++) {
        if (b->ev[b->valid[k]].pending == 0) {
            ev_done(p, &b->ev[b->valid[k]]);
        }
    }
    /* The exposed events' window state, all cards of the batch at once
     * (their callbacks run from here, after the loop above). */
    if (status == 0 && p->o.state != NULL) {
        state_run(p->o.state);
    }
    batch_unref(p, b);
}

void pipeline_delivered(struct pipeline *p, void *opaque, int err)
{
    struct pev *ev = opaque;
    if (err != 0) {
        ev->failed = 1;
    }
    assert(ev->pending > 0); /* a delivery is reported once */
    if (--ev->pending == 0) {
        ev_done(p, ev);
    }
}

void pipeline_redis_state(struct pipeline *p, int up)
{
    p->redis_up = up;
    if (p->o.source.set_paused != NULL) {
        p->o.source.set_paused(p->o.source.ctx, !up);
    }
}

void pipeline_revoke(struct pipeline *p, int32_t partition)
{
    offsets_revoke(p->offsets, partition);
    if (p->o.state != NULL) {
        state_forget(p->o.state); /* its cards may get another owner */
    }
}

void pipeline_set_format(struct pipeline *p, enum pipeline_format format)
{
    p->o.format = format;
}

void pipeline_detach_source(struct pipeline *p)
{
    memset(&p->o.source, 0, sizeof(p->o.source));
}
