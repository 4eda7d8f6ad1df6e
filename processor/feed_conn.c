/* feed_conn.c - the issuer feed's client connections, from accept to
 * close: the connection cap, the request deadline, and the gate that shows
 * evhttp only request heads feed_http.c accepted. Private to the feed
 * (feed_int.h).
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "clock.h"
#include "feed_int.h"
#include "log.h"

/* ---- connections ----
 *
 * Every accepted connection has an fconn before evhttp reads a byte of it,
 * so that it is counted from accept, bounded in time and its requests
 * gated. libevent 2.1.12 has no public hook for that (evhttp_get_request()
 * is static, and there is no new-request callback), so:
 *   - evhttp asks evhttp_set_bevcb()'s callback for each new connection's
 *     bufferevent: feed_conn_new() is where a connection is counted, admitted,
 *     sheds an older one or is itself shed;
 *   - evhttp sets the connection up after that callback returns, so an
 *     event activated there (conn_setup(), before any read) finds its
 *     evhttp_connection as the bufferevent's callback argument (set by
 *     evhttp_connection_base_bufferevent_new; checked) and sets its close
 *     callback; the bufferevent is referenced until then;
 *   - a callback on the bufferevent's input buffer runs inside each read,
 *     before evhttp's read callback: it moves the new bytes out of evhttp's
 *     reach, and gives them back only once feed_http.c accepted the whole
 *     head, then exactly Content-Length body bytes; bytes after the request
 *     wait until its answer is written (evhttp_request_set_on_complete_cb),
 *     so evhttp never parses a byte the gate has not read;
 *   - there is nothing to answer before evhttp has a request, so a refusal
 *     (4xx from the gate, 503 at accept, 408 at the deadline) gives evhttp
 *     the stand-in request "GET / HTTP/1.1", which feed_on_request() answers
 *     from the fconn's verdict with Connection: close: logged and counted
 *     like any answer, and nothing the client sent after it is read.
 * A bufferevent_filter would have been the obvious gate, but its write
 * callback fires once data moved to the underlying bufferevent, not to the
 * socket: evhttp then frees a "Connection: close" connection with its
 * answer unsent.
 *
 * Descriptors: the cap is [feed] max_clients, lowered to the open-file
 * limit less FD_RESERVE (raised towards the hard limit first). At the cap
 * a new connection closes the oldest one that waits for or is still
 * sending a request head (as nginx reuses idle keep-alive connections),
 * else it gets 503 at once. Accepting pauses while the closing ones still
 * hold half the reserve, and after accept() failed (EMFILE: evhttp's
 * listener would retry at once, forever, logging each time) until a
 * connection closes (the oldest reclaimable one is closed for it) or
 * ACCEPT_PAUSE_MS passed, with one log line per ACCEPT_LOG_S.
 */

#define ACCEPT_PAUSE_MS 100 /* no accept() this long after one failed */
#define ACCEPT_LOG_S 10     /* one accept-error line per this many s */
#define PIPELINE_MAX 65536  /* bytes of later requests held meanwhile */

static const char STAND_IN[] = "GET / HTTP/1.1\r\n\r\n";
static const char STAND_IN_HEAD[] = "HEAD / HTTP/1.1\r\n\r\n"; /* no body */

static size_t conn_slot(const struct feed *f, const void *p)
{
    uint64_t v = (uint64_t)(uintptr_t)p;
    v ^= v >> 17;
    v *= 0x9E3779B97F4A7C15ull;
    return (size_t)(v >> 24) & (f->n_slots - 1);
}

static struct fconn *conn_find(struct feed *f, const struct bufferevent *bev)
{
    for (struct fconn *c = f->slots[conn_slot(f, bev)]; c; c = c->hnext) {
        if (c->bev == bev) {
            return c;
        }
    }
    return NULL;
}

static void conn_grow(struct feed *f)
{
    size_t nb = f->n_slots * 2;
    struct fconn **nt = calloc(nb, sizeof(*nt));
    if (nt == NULL) {
        return; /* longer chains, still correct */
    }
    struct fconn **old = f->slots;
    size_t ob = f->n_slots;
    f->slots = nt;
    f->n_slots = nb;
    for (size_t i = 0; i < ob; i++) {
        while (old[i] != NULL) {
            struct fconn *c = old[i];
            old[i] = c->hnext;
            size_t s = conn_slot(f, c->bev);
            c->hnext = nt[s];
            nt[s] = c;
        }
    }
    free(old);
}

/* Accepting is off while closing connections still hold half the
 * descriptor reserve (pause_at), and for a while after accept() failed. */
static void accept_update(struct feed *f)
{
    int off = f->accept_err || f->n_conns >= f->pause_at;
    if (off == f->accept_off || f->sock == NULL || f->destroying) {
        return;
    }
    struct evconnlistener *lev = evhttp_bound_socket_get_listener(f->sock);
    if (off) {
        evconnlistener_disable(lev);
    } else {
        evconnlistener_enable(lev);
    }
    f->accept_off = off;
}

static void reclaim_unlink(struct fconn *fc)
{
    struct feed *f = fc->f;
    if (fc->rprev != NULL) {
        fc->rprev->rnext = fc->rnext;
    } else if (f->r_oldest == fc) {
        f->r_oldest = fc->rnext;
    }
    if (fc->rnext != NULL) {
        fc->rnext->rprev = fc->rprev;
    } else if (f->r_newest == fc) {
        f->r_newest = fc->rprev;
    }
    fc->rprev = fc->rnext = NULL;
}

static void reclaim_link(struct fconn *fc)
{
    struct feed *f = fc->f;
    fc->rnext = NULL;
    fc->rprev = f->r_newest;
    if (f->r_newest != NULL) {
        f->r_newest->rnext = fc;
    } else {
        f->r_oldest = fc;
    }
    f->r_newest = fc;
}

/* Moves fc to phase p: P_HEAD connections are the reclaimable ones; a
 * held request has no deadline; a dead connection no longer counts
 * against the cap. */
static void set_phase(struct fconn *fc, enum cphase p)
{
    struct feed *f = fc->f;
    if (fc->phase == P_HEAD && p != P_HEAD) {
        reclaim_unlink(fc);
    } else if (fc->phase != P_HEAD && p == P_HEAD) {
        reclaim_link(fc);
    }
    if (p == P_HELD && fc->set_up) {
        evtimer_del(fc->timer);
        fc->deadline_on = 0;
    }
    if (p == P_DEAD && fc->admitted) {
        fc->admitted = 0;
        f->n_admitted--;
    }
    fc->phase = p;
}

/* The deadline of the request being read: request_timeout_s after
 * from_ns. */
static void arm_deadline(struct fconn *fc, uint64_t from_ns)
{
    uint64_t limit = (uint64_t)fc->f->c->feed_request_timeout_s * 1000000000ull;
    uint64_t now = clock_mono_ns(), spent = now > from_ns ? now - from_ns : 0;
    uint64_t left = spent < limit ? limit - spent : 0;
    struct timeval tv = {(time_t)(left / 1000000000ull),
                         (suseconds_t)(left % 1000000000ull / 1000)};
    evtimer_add(fc->timer, &tv);
    fc->deadline_on = 1;
}

/* Closes fc's socket both ways: evhttp reads EOF and frees the connection
 * (its close callback frees fc). */
static void conn_shut(struct fconn *fc)
{
    evutil_socket_t fd = bufferevent_getfd(fc->bev);
    if (fd >= 0) {
        (void)shutdown(fd, SHUT_RDWR);
    }
}

/* Moves n bytes of src to the end of fc's input, where evhttp reads them;
 * the gate ignores them. A socket bufferevent keeps the end of its input
 * frozen outside its reads: thawed for the move. */
static void conn_give(struct fconn *fc, struct evbuffer *src, size_t n)
{
    struct evbuffer *in = bufferevent_get_input(fc->bev);
    int was = fc->in_gate;
    fc->in_gate = 1;
    if (n > 0 && evbuffer_remove_buffer(src, in, n) < 0) {
        evbuffer_unfreeze(in, 0);
        (void)evbuffer_remove_buffer(src, in, n);
        evbuffer_freeze(in, 0);
    }
    fc->in_gate = was;
}

/* Moves the last n bytes of in to dst (NULL: drops them). */
static void take_tail(struct evbuffer *in, size_t n, struct evbuffer *dst)
{
    size_t len = evbuffer_get_length(in);
    size_t keep = len > n ? len - n : 0;
    struct evbuffer *front = keep > 0 ? evbuffer_new() : NULL;
    if (keep > 0 && front == NULL) {
        return; /* out of memory: evhttp sees them (the gate fails open
                   only here, where the process is failing anyway) */
    }
    if (front != NULL) {
        evbuffer_remove_buffer(in, front, keep);
    }
    if (dst != NULL) {
        evbuffer_add_buffer(dst, in);
    } else {
        evbuffer_drain(in, evbuffer_get_length(in));
    }
    if (front != NULL) {
        evbuffer_add_buffer(in, front);
        evbuffer_free(front);
    }
}

/* Gives evhttp the stand-in request (HEAD for a HEAD, so that the answer
 * has no body either); with kick, makes it read it now
 * (else the read in progress, or evhttp's next read, does). fc may be
 * freed when this returns with kick. */
static void conn_stand_in(struct fconn *fc, int kick)
{
    struct evbuffer *b = evbuffer_new();
    const char *req =
        strcmp(fc->v_method, "HEAD") == 0 ? STAND_IN_HEAD : STAND_IN;
    if (b == NULL || evbuffer_add(b, req, strlen(req)) != 0) {
        if (b != NULL) {
            evbuffer_free(b);
        }
        conn_shut(fc);
        return;
    }
    conn_give(fc, b, evbuffer_get_length(b));
    evbuffer_free(b);
    if (kick) {
        bufferevent_trigger(fc->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
    }
}

/* Refuses the request being read: status and error for feed_on_request(),
 * with the method and path of the head as far as it came (for the log);
 * nothing more of the connection is read. */
static void conn_refuse(struct fconn *fc, int status, const char *error,
                        int kick)
{
    fc->v_status = status;
    fc->v_error = error;
    snprintf(fc->v_method, sizeof(fc->v_method), "%s", fc->head.method);
    snprintf(fc->v_path, sizeof(fc->v_path), "%s", fc->head.path);
    evbuffer_drain(fc->headbuf, evbuffer_get_length(fc->headbuf));
    evbuffer_drain(fc->pending, evbuffer_get_length(fc->pending));
    set_phase(fc, P_DEAD);
    conn_stand_in(fc, kick);
}

/* Reads the head in pending; once it is accepted gives evhttp the head
 * and what came of its body, or refuses it. */
static void gate_run(struct fconn *fc)
{
    struct feed *f = fc->f;
    while (fc->phase == P_HEAD && evbuffer_get_length(fc->pending) > 0) {
        if (!fc->deadline_on && fc->set_up) {
            arm_deadline(fc, clock_mono_ns()); /* from its first byte */
        }
        size_t n = evbuffer_get_length(fc->pending), used = 0;
        if (n > 4096) {
            n = 4096;
        }
        const char *p =
            (const char *)evbuffer_pullup(fc->pending, (ev_ssize_t)n);
        if (p == NULL) {
            feed_log_oom("reading a request head (HTTP 500)");
            conn_refuse(fc, 500, "out of memory", 0);
            return;
        }
        enum feed_http_result r = feed_http_head_parse(&fc->head, p, n, &used);
        evbuffer_remove_buffer(fc->pending, fc->headbuf, used);
        if (r == FEED_HTTP_MORE) {
            continue;
        }
        if (r == FEED_HTTP_BAD) {
            conn_refuse(fc, fc->head.status, fc->head.error, 0);
            return;
        }
        if (fc->head.content_length > (uint64_t)f->c->feed_max_body) {
            conn_refuse(fc, 413, "body too large", 0);
            return;
        }
        evbuffer_drain(fc->headbuf, fc->head.skip);
        conn_give(fc, fc->headbuf, evbuffer_get_length(fc->headbuf));
        size_t body = evbuffer_get_length(fc->pending);
        fc->body_left = fc->head.content_length;
        if (body > fc->body_left) {
            body = (size_t)fc->body_left;
        }
        conn_give(fc, fc->pending, body);
        fc->body_left -= body;
        set_phase(fc, fc->body_left > 0 ? P_BODY : P_HELD);
    }
}

/* The gate: runs inside each read of fc's bufferevent, before evhttp's
 * read callback, and whenever the input buffer changes (its own moves and
 * evhttp's draining are ignored). */
static void conn_on_input(struct evbuffer *in,
                          const struct evbuffer_cb_info *info, void *arg)
{
    struct fconn *fc = arg;
    if (fc->in_gate || info->n_added == 0) {
        return;
    }
    fc->in_gate = 1;
    size_t len = evbuffer_get_length(in);
    size_t fresh = info->n_added < len ? info->n_added : len;
    switch (fc->phase) {
    case P_BODY:
        if (fresh > fc->body_left) { /* the body ends in these bytes */
            take_tail(in, fresh - (size_t)fc->body_left, fc->pending);
            fc->body_left = 0;
        } else {
            fc->body_left -= fresh;
        }
        if (fc->body_left == 0) {
            set_phase(fc, P_HELD);
        }
        break;
    case P_DEAD:
        take_tail(in, fresh, NULL);
        break;
    case P_HEAD:
    case P_HELD:
        take_tail(in, fresh, fc->pending);
        break;
    }
    fc->in_gate = 0;
    if (fc->phase == P_HEAD) {
        gate_run(fc);
    } else if (fc->phase == P_HELD &&
               evbuffer_get_length(fc->pending) > PIPELINE_MAX) {
        evbuffer_drain(fc->pending, evbuffer_get_length(fc->pending));
        set_phase(fc, P_DEAD); /* pipelining without end: close */
        conn_shut(fc);
    }
}

/* The answer to fc's request was written: the next request may come
 * (what the client sent meanwhile waits in pending). */
void feed_on_req_complete(struct evhttp_request *req, void *arg)
{
    (void)req;
    struct fconn *fc = arg;
    if (fc->phase != P_HELD) {
        return; /* refused: closing */
    }
    feed_http_head_init(&fc->head);
    set_phase(fc, P_HEAD);
    gate_run(fc); /* evhttp's next read takes what it gives */
}

/* Forgets fc: it is closed or was never set up. */
void feed_conn_free(struct fconn *fc)
{
    struct feed *f = fc->f;
    if (fc->incb != NULL) {
        evbuffer_remove_cb_entry(bufferevent_get_input(fc->bev), fc->incb);
    }
    set_phase(fc, P_DEAD);
    struct fconn **pp = &f->slots[conn_slot(f, fc->bev)];
    while (*pp != NULL && *pp != fc) {
        pp = &(*pp)->hnext;
    }
    if (*pp == fc) {
        *pp = fc->hnext;
    }
    if (fc->prev != NULL) {
        fc->prev->next = fc->next;
    } else {
        f->conns = fc->next;
    }
    if (fc->next != NULL) {
        fc->next->prev = fc->prev;
    }
    f->n_conns--;
    event_free(fc->timer);
    evbuffer_free(fc->headbuf);
    evbuffer_free(fc->pending);
    free(fc);
    f->accept_err = 0; /* a descriptor came back */
    accept_update(f);
}

static void on_conn_close(struct evhttp_connection *evcon, void *arg);

/* Right after evhttp set the connection up (see above). */
static void conn_setup(struct fconn *fc)
{
    bufferevent_event_cb ecb = NULL;
    void *arg = NULL;
    bufferevent_getcb(fc->bev, NULL, NULL, &ecb, &arg);
    if (ecb == NULL || arg == NULL) { /* evhttp gave it up already */
        struct bufferevent *bev = fc->bev;
        feed_conn_free(fc);
        bufferevent_decref(bev);
        return;
    }
    fc->evcon = arg;
    assert(evhttp_connection_get_bufferevent(fc->evcon) == fc->bev);
    fc->set_up = 1;
    evhttp_connection_set_closecb(fc->evcon, on_conn_close, fc);
    bufferevent_decref(fc->bev); /* evhttp holds its own reference */
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(fc->evcon, &addr, &port);
    fc->has_peer = feed_peer_key(addr, fc->peer) == 0;
    /* Answers are written in pieces of ~16 KB: without TCP_NODELAY Nagle
     * holds the last partial packet for the client's delayed ACK, 40 ms
     * on every kept-alive answer over ~20 KB (1,450 vs 6,490 req/s for
     * GET /v1/alerts?limit=100, measured). */
    evutil_socket_t fd = bufferevent_getfd(fc->bev);
    if (fd >= 0) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    arm_deadline(fc, fc->accept_ns);
    if (fc->phase == P_DEAD && fc->v_status != 0) {
        conn_stand_in(fc, 1); /* shed at accept: 503 now */
    }
}

/* The request deadline passed (or the connection was refused and has not
 * taken its answer in time). */
static void conn_deadline(struct fconn *fc)
{
    struct feed *f = fc->f;
    fc->deadline_on = 0;
    switch (fc->phase) {
    case P_HEAD:
        f->shed_timeout++;
        if (evbuffer_get_length(fc->headbuf) +
                evbuffer_get_length(fc->pending) > 0) {
            conn_refuse(fc, 408, "request not received in time", 1);
        } else {
            set_phase(fc, P_DEAD); /* sent nothing: just close */
            conn_shut(fc);
        }
        return;
    case P_BODY: /* evhttp has the head: no answer can be slipped in */
        f->shed_timeout++;
        set_phase(fc, P_DEAD);
        conn_shut(fc);
        return;
    case P_DEAD:
        conn_shut(fc);
        return;
    case P_HELD:
        return;
    }
}

static void conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fconn *fc = arg;
    if (!fc->set_up) {
        conn_setup(fc);
    } else {
        conn_deadline(fc);
    }
}

/* evhttp_set_bevcb's callback: a connection was accepted. Returns its
 * bufferevent (a TLS one with [feed] tls_cert); NULL lets evhttp make a
 * plain one, whose requests are then answered 503 (out of memory). */
struct bufferevent *feed_conn_new(struct event_base *base, void *arg)
{
    struct feed *f = arg;
    struct bufferevent *bev = NULL;
    if (f->ssl != NULL) {
        SSL *ssl = SSL_new(f->ssl);
        if (ssl == NULL) {
            return NULL;
        }
        bev = bufferevent_openssl_socket_new(
            base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            SSL_free(ssl);
            return NULL;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    } else {
        bev = bufferevent_socket_new(base, -1, 0); /* as evhttp's own */
        if (bev == NULL) {
            return NULL;
        }
    }
    struct fconn *fc = calloc(1, sizeof(*fc));
    if (fc != NULL) {
        fc->headbuf = evbuffer_new();
        fc->pending = evbuffer_new();
        fc->timer = evtimer_new(base, conn_on_timer, fc);
        fc->incb =
            evbuffer_add_cb(bufferevent_get_input(bev), conn_on_input, fc);
    }
    if (fc == NULL || fc->headbuf == NULL || fc->pending == NULL ||
        fc->timer == NULL || fc->incb == NULL) {
        if (fc != NULL) {
            if (fc->incb != NULL) {
                evbuffer_remove_cb_entry(bufferevent_get_input(bev), fc->incb);
            }
            if (fc->timer != NULL) {
                event_free(fc->timer);
            }
            if (fc->headbuf != NULL) {
                evbuffer_free(fc->headbuf);
            }
            if (fc->pending != NULL) {
                evbuffer_free(fc->pending);
            }
            free(fc);
        }
        return bev; /* untracked: feed_on_request answers 503 */
    }
    fc->f = f;
    fc->bev = bev;
    fc->accept_ns = clock_mono_ns();
    fc->phase = P_DEAD; /* until admitted */
    feed_http_head_init(&fc->head);
    bufferevent_incref(bev); /* until conn_setup */
    if (f->n_conns >= f->n_slots) {
        conn_grow(f);
    }
    size_t s = conn_slot(f, bev);
    fc->hnext = f->slots[s];
    f->slots[s] = fc;
    fc->next = f->conns;
    if (f->conns != NULL) {
        f->conns->prev = fc;
    }
    f->conns = fc;
    f->n_conns++;
    if (f->n_admitted >= f->cap && f->r_oldest != NULL) {
        struct fconn *old = f->r_oldest; /* closed for this one */
        set_phase(old, P_DEAD);
        conn_shut(old);
        f->shed_reclaimed++;
    }
    if (f->n_admitted < f->cap) {
        fc->admitted = 1;
        f->n_admitted++;
        set_phase(fc, P_HEAD);
    } else {
        fc->v_status = 503;
        fc->v_error = "too many connections";
        f->shed_full++;
    }
    event_active(fc->timer, EV_TIMEOUT, 1); /* conn_setup */
    accept_update(f);
    return bev;
}

void feed_on_accept_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct feed *f = arg;
    f->accept_err = 0;
    accept_update(f);
}

/* Every live feed: evhttp's listener calls its error callback with the
 * evhttp, not with the feed. Touched on the loop thread only. */
static struct feed *feeds;

void feed_conn_register(struct feed *f)
{
    f->next_feed = feeds;
    feeds = f;
}

void feed_conn_unregister(struct feed *f)
{
    for (struct feed **pp = &feeds; *pp != NULL; pp = &(*pp)->next_feed) {
        if (*pp == f) {
            *pp = f->next_feed;
            return;
        }
    }
}

/* The live feed whose evhttp is http; NULL when none. */
static struct feed *feed_of(const void *http)
{
    for (struct feed *f = feeds; f != NULL; f = f->next_feed) {
        if ((const void *)f->http == http) {
            return f;
        }
    }
    return NULL;
}

/* accept() on the feed's socket failed with something else than "try
 * again" (EMFILE, ENFILE, ENOBUFS...): pause accepting until a connection
 * closes or ACCEPT_PAUSE_MS passed (the socket stays readable, so evhttp's
 * listener would retry at once, forever); out of descriptors, close the
 * oldest reclaimable connection for the next one. Logged at most once per
 * ACCEPT_LOG_S, with how many were not. */
void feed_on_accept_error(struct evconnlistener *lev, void *arg)
{
    (void)lev;
    int err = errno;
    struct feed *f = feed_of(arg);
    if (f == NULL) {
        return;
    }
    f->accept_errors++;
    uint64_t now = clock_mono_ns();
    if (f->accept_log_ns == 0 ||
        now - f->accept_log_ns >= (uint64_t)ACCEPT_LOG_S * 1000000000ull) {
        char more[96] = "";
        if (f->accept_unlogged > 0) {
            snprintf(more, sizeof(more),
                     "; %" PRIu64 " more since the last such line",
                     f->accept_unlogged);
        }
        log_warn(MOD,
                 "accept() on %s failed: %s; new connections wait %d ms "
                 "(open-file limit %zu: raise it or lower [feed] "
                 "max_clients)%s",
                 f->c->feed_listen, strerror(err), ACCEPT_PAUSE_MS, f->nofile,
                 more);
        f->accept_log_ns = now;
        f->accept_unlogged = 0;
    } else {
        f->accept_unlogged++;
    }
    /* Linux's accept() fails with EMFILE when no descriptor is free
     * whether or not a connection waits, so the listener's loop ends this
     * way once it took the last one: a connection accepted in this same
     * loop (not set up yet, so none older is reclaimable) has not had its
     * chance to send a request and is not closed for a next one that may
     * not exist. */
    if ((err == EMFILE || err == ENFILE) && f->r_oldest != NULL &&
        f->r_oldest->set_up) {
        struct fconn *old = f->r_oldest; /* its descriptor for the next */
        set_phase(old, P_DEAD);
        conn_shut(old);
        f->shed_reclaimed++;
    }
    f->accept_err = 1; /* until a connection closes, or the timer */
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    evtimer_add(f->accept_timer, &tv);
    accept_update(f);
}

/* The tracked connection of a request; NULL when it is not tracked (out
 * of memory at accept). */
struct fconn *feed_conn_of(struct feed *f, struct evhttp_connection *ev)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(ev);
    return bev != NULL ? conn_find(f, bev) : NULL;
}

/* The connection is gone. A request still in progress was detached from it
 * by evhttp (a failed write): free it here. */
static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct fconn *fc = arg;
    struct fctx *x = fc->cur;
    fc->evcon = NULL;
    if (x != NULL && x->req != NULL) {
        if (evhttp_request_get_connection(x->req) == NULL) {
            evhttp_request_free(x->req);
        }
        x->conn = NULL;
        if (x->status == 0) {
            x->status = 499; /* client closed, as nginx logs it */
        }
        feed_ctx_done(x);
    }
    feed_conn_free(fc);
}
