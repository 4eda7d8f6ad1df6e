/* feed_list.c - the issuer feed's alert lists: GET /v1/alerts (with wait,
 * a long poll) and the event stream, their Redis queries and answers, and
 * the waking of the waiters when an issuer's feed has news. Private to the
 * feed (feed_int.h).
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "clock.h"
#include "feed_int.h"
#include "log.h"

#define SSE_BATCH 100     /* stream entries per query */
#define GRACE_MS 5000     /* a long poll's last query after its wait */

/* ---- alert lists (long poll and stream) ---- */

/* Reads one XRANGE entry: its id, its "alert" field (NULL when missing)
 * and, when aid is not NULL, its "alert_id" field (NULL when missing or
 * not an alert id). Returns 0, or -1 for an entry of another shape. */
static int entry_parse(const redisReply *e, struct feed_cursor *id,
                       const char **json, size_t *jlen, const char **aid)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING ||
        e->element[1]->type != REDIS_REPLY_ARRAY ||
        feed_cursor_parse(e->element[0]->str, e->element[0]->len, id) != 0) {
        return -1;
    }
    const redisReply *fv = e->element[1];
    *json = NULL;
    *jlen = 0;
    if (aid != NULL) {
        *aid = NULL;
    }
    for (size_t i = 0; i + 1 < fv->elements; i += 2) {
        const redisReply *k = fv->element[i], *v = fv->element[i + 1];
        if (aid != NULL && k->type == REDIS_REPLY_STRING && k->len == 8 &&
            memcmp(k->str, "alert_id", 8) == 0 &&
            v->type == REDIS_REPLY_STRING &&
            feed_alert_id_valid(v->str, v->len)) {
            *aid = v->str;
        }
        if (k->type == REDIS_REPLY_STRING && k->len == 5 &&
            memcmp(k->str, "alert", 5) == 0 && v->type == REDIS_REPLY_STRING &&
            v->len >= 2 && v->str[0] == '{' && v->str[v->len - 1] == '}') {
            *json = v->str;
            *jlen = v->len;
        }
    }
    return 0;
}

/* Collects the entries of r (NULL = none) into x->items, each item
 * '{"cursor":"..","alert":{..}' without its closing brace, with its end
 * offset and alert id; x->cursor becomes the last entry's id. Returns 0,
 * or -1 when out of memory. */
static int list_collect(struct fctx *x, const redisReply *r)
{
    size_t cap = r != NULL && r->elements > 0 ? r->elements : 1;
    char cur[FEED_CURSOR_SIZE];
    x->items = evbuffer_new();
    x->ends = calloc(cap, sizeof(*x->ends));
    x->ids = calloc(cap, sizeof(*x->ids));
    x->n_items = 0;
    if (x->items == NULL || x->ends == NULL || x->ids == NULL) {
        return -1;
    }
    for (size_t i = 0; r != NULL && i < r->elements; i++) {
        struct feed_cursor id;
        const char *json, *aid;
        size_t jl;
        if (entry_parse(r->element[i], &id, &json, &jl, &aid) != 0) {
            continue;
        }
        x->cursor = id;
        feed_cursor_format(&id, cur, sizeof(cur));
        evbuffer_add_printf(x->items, "{\"cursor\":\"%s\",\"alert\":", cur);
        if (json != NULL) {
            evbuffer_add(x->items, json, jl);
        } else {
            evbuffer_add(x->items, "null", 4);
        }
        x->ends[x->n_items] = evbuffer_get_length(x->items);
        if (aid != NULL) {
            memcpy(x->ids[x->n_items], aid, ALERT_ID_SIZE - 1);
        }
        x->n_items++;
    }
    return 0;
}

/* Answers with the collected items; with include=outcome each gets its
 * outcome from o (RMODEL_LUA_OUTCOMES' answer; NULL or a missing or
 * unknown value = null). "next" is the cursor to go on from: the last
 * item's (after= for the oldest order, before= for the newest), else
 * where the request started. */
static void list_send(struct fctx *x, const redisReply *o)
{
    struct evbuffer *b = evbuffer_new();
    char cur[FEED_CURSOR_SIZE];
    if (b == NULL) {
        feed_list_free(x);
        feed_reply_oom(x);
        return;
    }
    evbuffer_add(b, "{\"alerts\":[", 11);
    size_t at = 0;
    for (size_t i = 0; i < x->n_items; i++) {
        if (i > 0) {
            evbuffer_add(b, ",", 1);
        }
        evbuffer_remove_buffer(x->items, b, x->ends[i] - at);
        at = x->ends[i];
        if (x->outcomes) {
            enum feed_outcome oc;
            const redisReply *e =
                o != NULL && i < o->elements ? o->element[i] : NULL;
            if (e != NULL && e->type == REDIS_REPLY_STRING &&
                feed_outcome_parse(e->str, e->len, &oc) == 0) {
                evbuffer_add_printf(b, ",\"outcome\":\"%s\"",
                                    feed_outcome_name(oc));
            } else {
                evbuffer_add(b, ",\"outcome\":null", 15);
            }
        }
        evbuffer_add(b, "}", 1);
    }
    if (x->newest && x->n_items == 0) { /* nothing older: from before */
        x->cursor = x->before;
    }
    feed_list_free(x);
    feed_cursor_format(&x->cursor, cur, sizeof(cur));
    evbuffer_add_printf(b, "],\"next\":\"%s\"}", cur);
    feed_reply_buf(x, 200, "application/json", b);
    evbuffer_free(b);
}

static void on_outcomes(void *arg, const redisReply *r)
{
    struct fctx *x = arg;
    x->querying = 0;
    if (!feed_redis_answer(x, r)) {
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        log_warn(MOD, "the outcomes script answered type %d", r->type);
        feed_list_free(x);
        feed_reply_error(x, 500, "internal error");
        return;
    }
    list_send(x, r);
}

/* Reads the outcomes of the collected items (one script call). Returns
 * 0 (on_outcomes answers), or -1 when out of memory. */
static int outcomes_query(struct fctx *x)
{
    size_t n = x->n_items, argc = 3 + n;
    const char **argv = calloc(argc, sizeof(*argv));
    size_t *lens = calloc(argc, sizeof(*lens));
    char *keys = malloc(n * RMODEL_KEY_MAX);
    char nk[24];
    int rc = -1;
    if (argv == NULL || lens == NULL || keys == NULL) {
        goto out;
    }
    snprintf(nk, sizeof(nk), "%zu", n);
    argv[0] = "EVAL";
    argv[1] = RMODEL_LUA_OUTCOMES;
    argv[2] = nk;
    for (size_t i = 0; i < n; i++) {
        char *k = keys + i * RMODEL_KEY_MAX;
        int kl = rmodel_alert_key(k, x->f->c->redis_prefix, x->ids[i]);
        if (kl < 0) {
            goto out;
        }
        argv[3 + i] = k;
        lens[3 + i] = (size_t)kl;
    }
    for (size_t i = 0; i < 3; i++) {
        lens[i] = strlen(argv[i]);
    }
    x->querying = 1; /* a long poll's deadline waits for it */
    rc = feed_redis_cmd_lens(x, on_outcomes, (int)argc, argv, lens);
    if (rc != 0) {
        x->querying = 0;
    }
out:
    free(argv);
    free(lens);
    free(keys);
    return rc;
}

/* Answers a list request with the entries of r (NULL = none), with their
 * outcomes when asked (after one more Redis call). While that call runs
 * the items are collected already: an answer forced meanwhile (the client
 * left, shutdown) sends them without outcomes. */
void feed_reply_list(struct fctx *x, const redisReply *r)
{
    if (x->items == NULL) {
        if (list_collect(x, r) != 0) {
            feed_list_free(x);
            feed_reply_oom(x);
            return;
        }
        if (x->outcomes && x->n_items > 0 && !x->gone && !x->f->stopping) {
            if (outcomes_query(x) == 0) {
                return;
            }
            feed_list_free(x);
            feed_reply_oom(x);
            return;
        }
    }
    list_send(x, NULL);
}

void feed_stream_end(struct fctx *x)
{
    evhttp_send_reply_end(x->req);
    feed_ctx_done(x);
}

static void on_written(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct fctx *x = arg;
    x->writing = 0;
    if ((x->more || x->dirty) && !x->querying && x->req != NULL) {
        x->more = x->dirty = 0;
        feed_query_list(x);
    }
}

void feed_stream_write(struct fctx *x, struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    if (n == 0) {
        return;
    }
    x->bytes += n;
    x->writing = 1;
    x->last_write_ns = clock_mono_ns();
    evhttp_send_reply_chunk_with_cb(x->req, b, on_written, x);
}

/* Appends one Server-Sent Event; data lines split at any line break. */
static void sse_event(struct evbuffer *b, const char *id, const char *data,
                      size_t len)
{
    evbuffer_add_printf(b, "id: %s\nevent: alert\n", id);
    size_t s = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || data[i] == '\n' || data[i] == '\r') {
            evbuffer_add(b, "data: ", 6);
            evbuffer_add(b, data + s, i - s);
            evbuffer_add(b, "\n", 1);
            s = i + 1;
        }
    }
    evbuffer_add(b, "\n", 1);
}

static void stream_got(struct fctx *x, const redisReply *r)
{
    struct evbuffer *b = evbuffer_new();
    char cur[FEED_CURSOR_SIZE];
    if (b == NULL) {
        feed_stream_end(x);
        return;
    }
    for (size_t i = 0; i < r->elements; i++) {
        struct feed_cursor id;
        const char *json;
        size_t jl;
        if (entry_parse(r->element[i], &id, &json, &jl, NULL) != 0) {
            continue;
        }
        x->cursor = id;
        feed_cursor_format(&id, cur, sizeof(cur));
        sse_event(b, cur, json ? json : "null", json ? jl : 4);
    }
    feed_stream_write(x, b);
    evbuffer_free(b);
    x->more = r->elements == SSE_BATCH;
    if (!x->writing && (x->more || x->dirty)) {
        x->more = x->dirty = 0;
        feed_query_list(x);
    }
}

static void on_list(void *arg, const redisReply *r)
{
    struct fctx *x = arg;
    x->querying = 0;
    if (!feed_redis_answer(x, r)) {
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        log_warn(MOD, "XRANGE answered type %d", r->type);
        if (x->kind == C_SSE) {
            feed_stream_end(x);
        } else {
            feed_reply_error(x, 500, "internal error");
        }
        return;
    }
    if (x->kind == C_SSE) {
        stream_got(x, r);
        return;
    }
    if (r->elements > 0 || x->kind == C_SIMPLE || x->expired ||
        x->f->stopping) {
        feed_reply_list(x, r);
        return;
    }
    if (x->dirty) { /* news came while this query ran */
        x->dirty = 0;
        feed_query_list(x);
    }
}

void feed_query_list(struct fctx *x)
{
    struct issuer_state *s = &x->f->iss[x->issuer];
    char start[FEED_CURSOR_SIZE + 1], count[16];
    if (x->cursor.ms == 0 && x->cursor.seq == 0) {
        snprintf(start, sizeof(start), "-");
    } else {
        start[0] = '(';
        feed_cursor_format(&x->cursor, start + 1, sizeof(start) - 1);
    }
    snprintf(count, sizeof(count), "%d",
             x->kind == C_SSE ? SSE_BATCH : x->limit);
    const char *argv[] = {"XRANGE", s->fkey, start, "+", "COUNT", count};
    char end[FEED_CURSOR_SIZE + 1];
    if (x->newest) { /* XREVRANGE key end start: newest first */
        snprintf(end, sizeof(end), "+");
        if (x->has_before) {
            end[0] = '(';
            feed_cursor_format(&x->before, end + 1, sizeof(end) - 1);
        }
        argv[0] = "XREVRANGE";
        argv[2] = end;
        argv[3] = start;
    }
    x->querying = 1;
    if (feed_redis_cmd(x, on_list, 6, argv) != 0) {
        x->querying = 0;
        if (x->kind == C_SSE) {
            feed_stream_end(x);
        } else {
            feed_reply_oom(x);
        }
    }
}

/* The client closed its end while waiting: answer now (what it has). */
static void on_closed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fctx *x = arg;
    if (x->req == NULL) {
        return;
    }
    x->gone = 1;
    if (x->kind == C_SSE) {
        feed_stream_end(x);
    } else {
        feed_reply_list(x, NULL);
    }
}

void feed_watch_close(struct fctx *x)
{
    struct evhttp_connection *ev = evhttp_request_get_connection(x->req);
    struct bufferevent *bev = ev ? evhttp_connection_get_bufferevent(ev) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0 ||
        !(event_base_get_features(x->f->base) & EV_FEATURE_EARLY_CLOSE)) {
        return; /* noticed at the deadline or the next write instead */
    }
    x->closed = event_new(x->f->base, fd, EV_CLOSED, on_closed, x);
    if (x->closed != NULL) {
        event_add(x->closed, NULL);
    }
}

void feed_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fctx *x = arg;
    if (x->req == NULL) {
        return;
    }
    switch (x->kind) {
    case C_SIMPLE:
        feed_reply_unavailable(x, "redis did not answer in time");
        return;
    case C_POLL:
        if (x->expired) {
            feed_reply_unavailable(x, "redis did not answer in time");
        } else if (x->querying) {
            x->expired = 1; /* the running query answers */
            struct timeval tv = {GRACE_MS / 1000, (GRACE_MS % 1000) * 1000};
            evtimer_add(x->timer, &tv);
        } else {
            feed_reply_list(x, NULL);
        }
        return;
    case C_SSE: {
        uint64_t ka = (uint64_t)x->f->c->feed_keepalive_s * 1000000000ull;
        uint64_t idle = clock_mono_ns() - x->last_write_ns;
        if (!x->writing && idle >= ka) {
            struct evbuffer *b = evbuffer_new();
            if (b != NULL) {
                evbuffer_add(b, ": keepalive\n\n", 13);
                feed_stream_write(x, b);
                evbuffer_free(b);
            }
            idle = 0;
        }
        /* next check when the stream will have been quiet for
         * [feed] keepalive_s (a stuck write is ended by evhttp's
         * timeout) */
        uint64_t left = idle < ka ? ka - idle : 1000000000ull;
        struct timeval tv = {(time_t)(left / 1000000000ull),
                             (suseconds_t)(left % 1000000000ull / 1000)};
        evtimer_add(x->timer, &tv);
        return;
    }
    }
}

/* ---- waking waiters ---- */

static void on_check(void *arg, const redisReply *r)
{
    struct issuer_state *s = arg;
    struct feed *f = s->f;
    s->checking = 0;
    if (r == NULL || f->destroying) {
        return;
    }
    struct feed_cursor last;
    const char *json;
    size_t jl;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        entry_parse(r->element[0], &last, &json, &jl, NULL) == 0) {
        struct fctx *next;
        for (struct fctx *w = s->head; w != NULL; w = next) {
            next = w->wnext;
            if (feed_cursor_cmp(&w->cursor, &last) >= 0) {
                continue;
            }
            if (w->querying || w->writing || w->expired) {
                w->dirty = 1;
            } else {
                feed_query_list(w); /* may answer w (out of memory) */
            }
        }
    }
    if (s->again) {
        s->again = 0;
        feed_issuer_check(f, s->idx);
    }
}

/* Asks Redis for the newest entry of issuer i's feed, then queries the
 * waiters behind it. */
void feed_issuer_check(struct feed *f, size_t i)
{
    struct issuer_state *s = &f->iss[i];
    if (s->head == NULL) {
        return;
    }
    if (s->checking) {
        s->again = 1;
        return;
    }
    const char *argv[] = {"XREVRANGE", s->fkey, "+", "-", "COUNT", "1"};
    size_t lens[6];
    for (int k = 0; k < 6; k++) {
        lens[k] = strlen(argv[k]);
    }
    if (rconn_command(f->rc, 6, argv, lens, on_check, s) == 0) {
        s->checking = 1;
    }
}

void feed_check_all(struct feed *f)
{
    for (size_t i = 0; i < f->c->n_issuers; i++) {
        feed_issuer_check(f, i);
    }
}

void feed_on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct feed *f = arg;
    feed_check_all(f);
    if (!f->stats_asked) { /* the first counts as soon as Redis answers */
        feed_stats_refresh(f);
    }
}
