/* feed_handlers.c - the issuer feed's request handlers: routing,
 * authentication, the triage page, one alert, outcomes and statistics
 * (the alert lists start here and go on in feed_list.c). Private to the
 * feed (feed_int.h).
 */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "clock.h"
#include "feed_int.h"
#include "log.h"

/* ---- handlers ---- */

static void handle_page(struct fctx *x)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(x->req);
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        feed_reply_oom(x);
        return;
    }
    evhttp_add_header(h, "Content-Security-Policy", x->f->csp);
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evbuffer_add_reference(b, x->f->page, x->f->page_len, NULL, NULL);
    feed_reply_buf(x, 200, "text/html; charset=utf-8", b);
    evbuffer_free(b);
}

/* A static file (the page's Chart.js): public, cached for good (its path
 * names its version), 304 when the client holds these bytes already. */
static void handle_asset(struct fctx *x, const struct feed_asset *a)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(x->req);
    const char *inm = evhttp_find_header(
        evhttp_request_get_input_headers(x->req), "If-None-Match");
    evhttp_add_header(h, "ETag", a->etag);
    evhttp_add_header(h, "Cache-Control",
                      "public, max-age=31536000, immutable");
    if (feed_etag_match(inm, a->etag)) {
        feed_reply_buf(x, 304, "text/javascript; charset=utf-8", NULL);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        feed_reply_oom(x);
        return;
    }
    evbuffer_add_reference(b, a->body, a->len, NULL, NULL);
    feed_reply_buf(x, 200, "text/javascript; charset=utf-8", b);
    evbuffer_free(b);
}

static void handle_list(struct fctx *x, const char *query)
{
    struct feed_params p;
    char err[160];
    if (feed_params_parse(query, x->f->c->feed_max_wait_s, 0, &p, err,
                          sizeof(err)) != 0) {
        feed_reply_error(x, 400, err);
        return;
    }
    x->cursor = p.after;
    x->limit = p.limit;
    x->newest = p.newest;
    x->has_before = p.has_before;
    x->before = p.before;
    x->outcomes = p.outcomes;
    if (x->newest && x->has_before && x->before.ms == 0 &&
        x->before.seq == 0) {
        /* nothing is before 0-0 (Redis refuses "(0-0") */
        feed_reply_list(x, NULL);
        return;
    }
    if (p.wait_s > 0) {
        x->kind = C_POLL;
        struct timeval tv = {p.wait_s, 0};
        evtimer_add(x->timer, &tv);
        feed_waiter_add(x); /* before the first query: no news is missed */
        feed_watch_close(x);
    }
    feed_query_list(x);
}

static void handle_stream(struct fctx *x, const char *query)
{
    struct feed_params p;
    char err[160];
    if (feed_params_parse(query, 0, 1, &p, err, sizeof(err)) != 0) {
        feed_reply_error(x, 400, err);
        return;
    }
    x->cursor = p.after;
    const char *last = evhttp_find_header(
        evhttp_request_get_input_headers(x->req), "Last-Event-ID");
    if (last != NULL && last[0] != '\0' &&
        feed_cursor_parse(last, strlen(last), &x->cursor) != 0) {
        feed_reply_error(x, 400,
                    "Last-Event-ID must be a cursor \"<ms>-<seq>\" "
                    "as the stream sent it");
        return;
    }
    x->kind = C_SSE;
    struct evkeyvalq *h = evhttp_request_get_output_headers(x->req);
    feed_add_common_headers(x, "text/event-stream");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    x->status = 200;
    evhttp_send_reply_start(x->req, 200, "OK");
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        feed_stream_end(x);
        return;
    }
    evbuffer_add(b, "retry: 2000\n\n", 13);
    feed_stream_write(x, b);
    evbuffer_free(b);
    struct timeval tv = {x->f->c->feed_keepalive_s, 0};
    evtimer_add(x->timer, &tv);
    feed_waiter_add(x);
    feed_watch_close(x);
    x->more = 1; /* the first query runs once the preamble is written */
}

static void on_get_alert(void *arg, const redisReply *r)
{
    struct fctx *x = arg;
    if (!feed_redis_answer(x, r)) {
        return;
    }
    const char *me = x->f->c->issuers[x->issuer].id;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 6 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(r->element[0]->str, me) != 0) {
        feed_reply_not_found(x);
        return;
    }
    const redisReply *sid = r->element[1], *al = r->element[2],
                     *oc = r->element[3], *note = r->element[4],
                     *at = r->element[5];
    json_t *alert = al->type == REDIS_REPLY_STRING
                        ? json_loadb(al->str, al->len, 0, NULL)
                        : NULL;
    if (alert == NULL) {
        log_warn(MOD, "alert %s: stored JSON unreadable", x->alert_id);
        feed_reply_error(x, 500, "internal error");
        return;
    }
    json_t *o = json_object();
    if (o == NULL) {
        json_decref(alert);
        feed_reply_oom(x);
        return;
    }
    json_object_set_new(o, "cursor",
                        sid->type == REDIS_REPLY_STRING
                            ? json_stringn(sid->str, sid->len)
                            : json_null());
    json_object_set_new(o, "alert", alert);
    json_object_set_new(o, "outcome",
                        oc->type == REDIS_REPLY_STRING
                            ? json_stringn(oc->str, oc->len)
                            : json_null());
    json_object_set_new(o, "note",
                        note->type == REDIS_REPLY_STRING
                            ? json_stringn(note->str, note->len)
                            : json_null());
    json_object_set_new(o, "outcome_at_ms",
                        at->type == REDIS_REPLY_STRING
                            ? json_integer(strtoll(at->str, NULL, 10))
                            : json_null());
    feed_reply_json(x, 200, o);
}

static void handle_get_alert(struct fctx *x, const char *id, size_t idlen)
{
    char key[RMODEL_KEY_MAX];
    if (!feed_alert_id_valid(id, idlen)) {
        feed_reply_not_found(x);
        return;
    }
    memcpy(x->alert_id, id, idlen);
    x->alert_id[idlen] = '\0';
    rmodel_alert_key(key, x->f->c->redis_prefix, x->alert_id);
    const char *argv[] = {"HMGET", key,       "issuer", "stream_id",
                          "alert", "outcome", "note",   "outcome_at_ms"};
    if (feed_redis_cmd(x, on_get_alert, 8, argv) != 0) {
        feed_reply_oom(x);
    }
}

static void on_outcome_done(void *arg, const redisReply *r)
{
    struct fctx *x = arg;
    if (!feed_redis_answer(x, r)) {
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->type != REDIS_REPLY_STRING) {
        log_warn(MOD, "outcome script answered type %d", r->type);
        feed_reply_error(x, 500, "internal error");
        return;
    }
    long long code = r->element[0]->integer;
    const char *was = r->element[1]->str;
    switch (code) {
    case 200:
    case 201:
        log_info(MOD, "alert %s: outcome %s from %s%s", x->alert_id,
                 feed_outcome_name(x->outcome), x->f->c->issuers[x->issuer].id,
                 code == 200 ? " (again)" : "");
        feed_reply_json(
            x, (int)code,
            json_pack("{s:s,s:s}", "alert_id", x->alert_id, "outcome", was));
        return;
    case 409:
        feed_reply_json(x, 409,
                   json_pack("{s:s,s:s}", "error", "conflict", "outcome", was));
        return;
    default:
        feed_reply_not_found(x);
        return;
    }
}

static void on_outcome_alert(void *arg, const redisReply *r)
{
    struct fctx *x = arg;
    if (!feed_redis_answer(x, r)) {
        return;
    }
    struct feed *f = x->f;
    const char *me = f->c->issuers[x->issuer].id;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(r->element[0]->str, me) != 0) {
        feed_reply_not_found(x);
        return;
    }
    struct feed_alert_facts facts;
    const redisReply *al = r->element[1];
    if (al->type != REDIS_REPLY_STRING ||
        feed_alert_facts_parse(al->str, al->len, &facts) != 0) {
        log_warn(MOD, "alert %s: stored JSON unreadable", x->alert_id);
        feed_reply_error(x, 500, "internal error");
        return;
    }
    char akey[RMODEL_KEY_MAX], lay[RMODEL_KEY_MAX], bpre[RMODEL_KEY_MAX];
    char now[32];
    rmodel_alert_key(akey, f->c->redis_prefix, x->alert_id);
    if (rmodel_layout_key(lay, f->c->redis_prefix, facts.kid) < 0 ||
        rmodel_bucket_prefix(bpre, f->c->redis_prefix, facts.kid) < 0) {
        feed_reply_error(x, 500, "internal error");
        return;
    }
    snprintf(now, sizeof(now), "%" PRId64, clock_wall_ms());
    const char *argv[] = {"EVAL",
                          RMODEL_LUA_OUTCOME,
                          "3",
                          akey,
                          f->iss[x->issuer].skey,
                          lay,
                          me,
                          feed_outcome_name(x->outcome),
                          x->note,
                          now,
                          facts.rules,
                          facts.breaches,
                          feed_outcome_retires(x->outcome) ? "1" : "0",
                          bpre,
                          facts.fp};
    if (feed_redis_cmd(x, on_outcome_done, 15, argv) != 0) {
        feed_reply_oom(x);
    }
}

static void handle_outcome(struct fctx *x, const char *id, size_t idlen)
{
    struct feed *f = x->f;
    struct evbuffer *in = evhttp_request_get_input_buffer(x->req);
    /* at most [feed] max_body_bytes: the gate answered a longer
     * Content-Length 413 before evhttp saw the request */
    size_t len = evbuffer_get_length(in);
    char err[200], key[RMODEL_KEY_MAX];
    assert(len <= (size_t)f->c->feed_max_body);
    x->note = malloc(FEED_NOTE_BYTES);
    if (x->note == NULL) {
        feed_reply_oom(x);
        return;
    }
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    if (body == NULL || feed_outcome_body(body, len, &x->outcome, x->note, err,
                                          sizeof(err)) != 0) {
        if (body == NULL) {
            feed_reply_oom(x);
        } else {
            feed_reply_error(x, 400, err);
        }
        return;
    }
    if (!feed_alert_id_valid(id, idlen)) {
        feed_reply_not_found(x);
        return;
    }
    memcpy(x->alert_id, id, idlen);
    x->alert_id[idlen] = '\0';
    rmodel_alert_key(key, f->c->redis_prefix, x->alert_id);
    const char *argv[] = {"HMGET", key, "issuer", "alert"};
    if (feed_redis_cmd(x, on_outcome_alert, 4, argv) != 0) {
        feed_reply_oom(x);
    }
}

static void on_stats_reply(void *arg, const redisReply *r)
{
    struct fctx *x = arg;
    if (!feed_redis_answer(x, r)) {
        return;
    }
    struct feed_stats st = {0};
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements;
         i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
            feed_stats_add(&st, k->str, k->len, v->str, v->len) != 0) {
            feed_stats_free(&st);
            feed_reply_oom(x);
            return;
        }
    }
    feed_stats_finish(&st);
    char *s = feed_stats_json(&st, x->f->c->issuers[x->issuer].id);
    feed_stats_free(&st);
    if (s == NULL) {
        feed_reply_oom(x);
        return;
    }
    feed_reply_text(x, 200, s);
    free(s);
}

static void handle_stats(struct fctx *x)
{
    const char *argv[] = {"HGETALL", x->f->iss[x->issuer].skey};
    if (feed_redis_cmd(x, on_stats_reply, 2, argv) != 0) {
        feed_reply_oom(x);
    }
}

/* Checks the peer's failures, the bearer token and the token's rate.
 * Returns 0 when the request may go on (x->issuer set), else it has been
 * answered. */
static int authenticate(struct fctx *x)
{
    struct feed *f = x->f;
    const struct fconn *fc = x->conn;
    uint64_t now = clock_mono_ns();
    char ra[16];
    int wait =
        fc->has_peer ? feed_throttle_wait(f->throttle, fc->peer, now) : 0;
    if (wait > 0) { /* too many failures from this address: not checked */
        f->auth_throttled++;
        snprintf(ra, sizeof(ra), "%d", wait);
        evhttp_add_header(evhttp_request_get_output_headers(x->req),
                          "Retry-After", ra);
        feed_reply_error(x, 429, "too many failed authentications");
        return -1;
    }
    const char *hdr = evhttp_find_header(
        evhttp_request_get_input_headers(x->req), "Authorization");
    const char *tok = NULL;
    size_t len = 0;
    long e = -1;
    if (feed_bearer(hdr, &tok, &len) == 0) {
        e = feed_tokens_match(f->tokens, tok, len);
    }
    if (e < 0) {
        f->auth_failures++;
        if (fc->has_peer) {
            (void)feed_throttle_fail(f->throttle, fc->peer, now);
        }
        evhttp_add_header(evhttp_request_get_output_headers(x->req),
                          "WWW-Authenticate", "Bearer realm=\"cardwatch\"");
        feed_reply_text(x, 401, "{\"error\":\"unauthorized\"}");
        return -1;
    }
    x->issuer = (int)feed_tokens_issuer(f->tokens, (size_t)e);
    wait = feed_bucket_take(&f->buckets[e], now, (double)f->c->feed_rate_per_s,
                            (double)f->c->feed_burst);
    if (wait > 0) {
        snprintf(ra, sizeof(ra), "%d", wait);
        evhttp_add_header(evhttp_request_get_output_headers(x->req),
                          "Retry-After", ra);
        feed_reply_error(x, 429, "rate limit exceeded");
        return -1;
    }
    return 0;
}

/* Routes a request whose path starts with /v1. */
static void route_v1(struct fctx *x, const char *path, const char *query)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(x->req);
    if (authenticate(x) != 0) {
        return;
    }
    const char *id = NULL;
    size_t idlen = 0;
    int outcome = 0;
    if (strncmp(path, "/v1/alerts/", 11) == 0 && path[11] != '\0' &&
        strcmp(path + 11, "stream") != 0) {
        id = path + 11;
        const char *slash = strchr(id, '/');
        idlen = slash ? (size_t)(slash - id) : strlen(id);
        if (slash != NULL) {
            if (strcmp(slash, "/outcome") != 0 || idlen == 0) {
                feed_reply_not_found(x);
                return;
            }
            outcome = 1;
        }
    } else if (strcmp(path, "/v1/alerts") != 0 &&
               strcmp(path, "/v1/alerts/stream") != 0 &&
               strcmp(path, "/v1/stats") != 0) {
        feed_reply_not_found(x);
        return;
    }
    if (outcome ? m != EVHTTP_REQ_POST : m != EVHTTP_REQ_GET) {
        feed_reply_405(x, outcome ? "POST" : "GET");
        return;
    }
    if (!rconn_is_up(x->f->rc)) {
        feed_reply_unavailable(x, "redis unavailable");
        return;
    }
    if (outcome) {
        handle_outcome(x, id, idlen);
    } else if (id != NULL) {
        handle_get_alert(x, id, idlen);
    } else if (strcmp(path, "/v1/alerts") == 0) {
        handle_list(x, query);
    } else if (strcmp(path, "/v1/alerts/stream") == 0) {
        handle_stream(x, query);
    } else {
        handle_stats(x);
    }
}

void feed_on_request(struct evhttp_request *req, void *arg)
{
    struct feed *f = arg;
    struct fctx *x = feed_ctx_new(f, req);
    if (x == NULL) {
        feed_log_oom("taking a request (HTTP 500)");
        evhttp_send_error(req, 500, NULL);
        return;
    }
    struct evhttp_connection *ev = evhttp_request_get_connection(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    x->conn = ev ? feed_conn_of(f, ev) : NULL;
    if (x->conn == NULL) { /* not tracked: no memory for it at accept */
        feed_log_oom("tracking a connection (HTTP 503)");
        evhttp_add_header(out, "Connection", "close");
        feed_reply_unavailable(x, "out of memory");
        return;
    }
    x->conn->cur = x;
    evhttp_request_set_on_complete_cb(req, feed_on_req_complete, x->conn);
    if (x->conn->v_status != 0) { /* the stand-in for a refused request */
        struct fconn *fc = x->conn;
        snprintf(x->method, sizeof(x->method), "%s",
                 fc->v_method[0] ? fc->v_method : "-");
        feed_safe_copy(x->path, sizeof(x->path),
                       fc->v_path[0] ? fc->v_path : "-");
        evhttp_add_header(out, "Connection", "close");
        if (fc->v_status == 503) {
            feed_reply_unavailable(x, fc->v_error);
        } else {
            feed_reply_error(x, fc->v_status, fc->v_error);
        }
        return;
    }
    if (f->stopping) {
        feed_reply_unavailable(x, "shutting down");
        return;
    }
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    const char *query = u ? evhttp_uri_get_query(u) : NULL;
    if (path == NULL) {
        path = "";
    }
    int asset = strcmp(path, f->chartjs.path) == 0;
    if (strcmp(path, "/") == 0 || asset) {
        enum evhttp_cmd_type m = evhttp_request_get_command(req);
        if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
            feed_reply_405(x, "GET, HEAD");
        } else if (asset) {
            handle_asset(x, &f->chartjs);
        } else {
            handle_page(x);
        }
    } else if (strcmp(path, "/v1") == 0 || strncmp(path, "/v1/", 4) == 0) {
        route_v1(x, path, query);
    } else {
        feed_reply_not_found(x);
    }
}
