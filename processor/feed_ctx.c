/* feed_ctx.c - the issuer feed's requests: one context per request from
 * the request callback to its one reply (feed_ctx_done), its replies, and
 * the Redis commands it sends. Private to the feed (feed_int.h).
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "clock.h"
#include "feed_int.h"
#include "log.h"

#define ACCESS "access"

/* Logs that an allocation failed while serving (what: the request or
 * connection step), at most once per 10 s for the same text: the client
 * gets a 500/503 or a closed connection and may retry; the operator must
 * see why in the log. */
void feed_log_oom(const char *what)
{
    static struct log_limit lim;
    char text[160];
    snprintf(text, sizeof(text), "out of memory %s", what);
    if (log_limit_ok(&lim, text, 10)) {
        log_error(MOD, "%s", text);
    }
}

/* ---- request contexts ---- */

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "?";
}

/* Copies a path for the log: printable ASCII only, cut to fit; "-" for
 * none (a CONNECT request's authority form has no path), so that the
 * access-log line keeps its fields. */
void feed_safe_copy(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src != NULL && src[i] != '\0' && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c > 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
    }
    dst[i] = '\0';
    if (i == 0 && cap > 1) {
        snprintf(dst, cap, "-");
    }
}

struct fctx *feed_ctx_new(struct feed *f, struct evhttp_request *req)
{
    struct fctx *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return NULL;
    }
    x->timer = evtimer_new(f->base, feed_on_timer, x);
    if (x->timer == NULL) {
        free(x);
        return NULL;
    }
    x->f = f;
    x->req = req;
    x->issuer = -1;
    x->start_ns = clock_mono_ns();
    snprintf(x->method, sizeof(x->method), "%s",
             method_name(evhttp_request_get_command(req)));
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    feed_safe_copy(x->path, sizeof(x->path), u ? evhttp_uri_get_path(u) : NULL);
    struct evhttp_connection *ev = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (ev != NULL) {
        evhttp_connection_get_peer(ev, &addr, &port);
    }
    if (addr != NULL && strchr(addr, ':') != NULL) {
        snprintf(x->peer, sizeof(x->peer), "[%s]:%u", addr, port);
    } else {
        snprintf(x->peer, sizeof(x->peer), "%s:%u", addr ? addr : "-", port);
    }
    x->anext = f->all;
    if (f->all != NULL) {
        f->all->aprev = x;
    }
    f->all = x;
    f->n_active++;
    return x;
}

void feed_list_free(struct fctx *x)
{
    if (x->items != NULL) {
        evbuffer_free(x->items);
    }
    free(x->ends);
    free(x->ids);
    x->items = NULL;
    x->ends = NULL;
    x->ids = NULL;
    x->n_items = 0;
}

void feed_ctx_maybe_free(struct fctx *x)
{
    if (x->req != NULL || x->redis_pending) {
        return;
    }
    struct feed *f = x->f;
    if (x->aprev != NULL) {
        x->aprev->anext = x->anext;
    } else {
        f->all = x->anext;
    }
    if (x->anext != NULL) {
        x->anext->aprev = x->aprev;
    }
    event_free(x->timer);
    if (x->closed != NULL) {
        event_free(x->closed);
    }
    feed_list_free(x);
    free(x->note);
    free(x);
}

void feed_waiter_add(struct fctx *x)
{
    struct issuer_state *s = &x->f->iss[x->issuer];
    if (x->in_list) {
        return;
    }
    x->wprev = NULL;
    x->wnext = s->head;
    if (s->head != NULL) {
        s->head->wprev = x;
    }
    s->head = x;
    x->in_list = 1;
    if (x->kind == C_POLL) {
        x->f->n_polls++;
    } else {
        x->f->n_streams++;
    }
}

static void waiter_remove(struct fctx *x)
{
    if (!x->in_list) {
        return;
    }
    struct issuer_state *s = &x->f->iss[x->issuer];
    if (x->wprev != NULL) {
        x->wprev->wnext = x->wnext;
    } else {
        s->head = x->wnext;
    }
    if (x->wnext != NULL) {
        x->wnext->wprev = x->wprev;
    }
    x->wprev = x->wnext = NULL;
    x->in_list = 0;
    if (x->kind == C_POLL) {
        x->f->n_polls--;
    } else {
        x->f->n_streams--;
    }
}

static void access_log(const struct fctx *x)
{
    double ms = (double)(clock_mono_ns() - x->start_ns) / 1e6;
    const char *who = x->issuer >= 0 ? x->f->c->issuers[x->issuer].id : "-";
    log_info(ACCESS, "%s %s %s %s %d %zu %.1fms", x->peer, who, x->method,
             x->path, x->status, x->bytes, ms);
}

/* The request has had its reply (or its connection is gone): log it,
 * forget it everywhere, free the context unless a Redis callback is due. */
void feed_ctx_done(struct fctx *x)
{
    struct feed *f = x->f;
    access_log(x);
    if (x->status > 0 && x->status < MAX_STATUS) {
        f->status_count[x->status]++;
    }
    if (x->conn != NULL && x->conn->cur == x) {
        x->conn->cur = NULL;
    }
    x->conn = NULL;
    x->req = NULL;
    f->n_active--;
    waiter_remove(x);
    if (x->closed != NULL) {
        event_free(x->closed);
        x->closed = NULL;
    }
    evtimer_del(x->timer);
    feed_ctx_maybe_free(x);
}

/* ---- replies ---- */

static const char *reason(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    }
    return "Unknown";
}

void feed_add_common_headers(struct fctx *x, const char *ctype)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(x->req);
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    if (evhttp_find_header(h, "Cache-Control") == NULL) {
        evhttp_add_header(h, "Cache-Control", "no-store");
    }
    if (x->f->ssl != NULL) {
        evhttp_add_header(h, "Strict-Transport-Security", "max-age=31536000");
    }
    if (x->f->stopping) {
        evhttp_add_header(h, "Connection", "close");
    }
}

/* Sends b (may be NULL) with status code; ends the request. An answer to
 * HEAD gets the headers only (Content-Length of the body it would have):
 * evhttp 2.1 sends whatever body it is given, which a client then reads
 * as the start of the next answer. */
void feed_reply_buf(struct fctx *x, int code, const char *ctype,
                      struct evbuffer *b)
{
    feed_add_common_headers(x, ctype);
    x->status = x->gone ? 499 : code; /* 499: logged as nginx does */
    x->bytes = b ? evbuffer_get_length(b) : 0;
    if (evhttp_request_get_command(x->req) == EVHTTP_REQ_HEAD) {
        char len[24];
        snprintf(len, sizeof(len), "%zu", x->bytes);
        evhttp_add_header(evhttp_request_get_output_headers(x->req),
                          "Content-Length", len);
        x->bytes = 0;
        b = NULL;
    }
    evhttp_send_reply(x->req, code, reason(code), b);
    feed_ctx_done(x);
}

void feed_reply_text(struct fctx *x, int code, const char *json)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        feed_log_oom("answering a request (HTTP 500)");
        x->status = 500;
        evhttp_send_error(x->req, 500, NULL);
        feed_ctx_done(x);
        return;
    }
    evbuffer_add(b, json, strlen(json));
    feed_reply_buf(x, code, "application/json", b);
    evbuffer_free(b);
}

/* 500 {"error":"out of memory"}, logged. */
void feed_reply_oom(struct fctx *x)
{
    feed_log_oom("answering a request (HTTP 500)");
    feed_reply_text(x, 500, "{\"error\":\"out of memory\"}");
}

/* Sends o (a reference is stolen) as JSON. */
void feed_reply_json(struct fctx *x, int code, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s == NULL) {
        feed_reply_oom(x);
        return;
    }
    feed_reply_text(x, code, s);
    free(s);
}

void feed_reply_error(struct fctx *x, int code, const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    feed_reply_json(x, code, o);
}

void feed_reply_not_found(struct fctx *x)
{
    feed_reply_text(x, 404, "{\"error\":\"not found\"}");
}

void feed_reply_unavailable(struct fctx *x, const char *msg)
{
    evhttp_add_header(evhttp_request_get_output_headers(x->req), "Retry-After",
                      "1");
    feed_reply_error(x, 503, msg);
}

void feed_reply_405(struct fctx *x, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(x->req), "Allow",
                      allow);
    feed_reply_error(x, 405, "method not allowed");
}

/* ---- Redis commands ---- */

/* Sends argv (lens: the argument lengths) for x; cb answers it. */
int feed_redis_cmd_lens(struct fctx *x, rconn_cb cb, int argc,
                          const char *const *argv, const size_t *lens)
{
    if (rconn_command(x->f->rc, argc, argv, lens, cb, x) != 0) {
        return -1;
    }
    x->redis_pending = 1;
    if (x->kind == C_SIMPLE) {
        struct timeval tv = {x->f->redis_wait_ms / 1000,
                             (x->f->redis_wait_ms % 1000) * 1000};
        evtimer_add(x->timer, &tv);
    }
    return 0;
}

/* feed_redis_cmd_lens for at most 16 NUL-terminated arguments. */
int feed_redis_cmd(struct fctx *x, rconn_cb cb, int argc,
                     const char *const *argv)
{
    size_t lens[16];
    for (int i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
    }
    return feed_redis_cmd_lens(x, cb, argc, argv, lens);
}

/* The start of a Redis callback: 1 when the request still wants the
 * answer, else the context is freed (answered meanwhile) or answered 503
 * (the module is closing). */
int feed_redis_answer(struct fctx *x, const redisReply *r)
{
    x->redis_pending = 0;
    if (x->kind == C_SIMPLE) {
        evtimer_del(x->timer);
    }
    if (x->req == NULL) {
        feed_ctx_maybe_free(x);
        return 0;
    }
    if (r == NULL) {
        if (x->kind == C_SSE) {
            evhttp_send_reply_end(x->req);
            feed_ctx_done(x);
        } else {
            feed_reply_unavailable(x, "redis unavailable");
        }
        return 0;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn(MOD, "Redis answered %s %s: %s", x->method, x->path, r->str);
        if (x->kind == C_SSE) {
            evhttp_send_reply_end(x->req);
            feed_ctx_done(x);
        } else {
            feed_reply_error(x, 500, "internal error");
        }
        return 0;
    }
    return 1;
}
