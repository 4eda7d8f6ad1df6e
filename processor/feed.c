/* feed.c - see feed.h.
 *
 * One struct fctx per HTTP request, from the request callback to its one
 * reply (ctx_done). A Redis command holds the fctx until its callback has
 * run (the exposure module calls back exactly once), so a request that was
 * answered meanwhile (a timeout, shutdown) is freed by that callback.
 * Long polls and event streams wait in a list per issuer; a PUBLISH on the
 * feed channel, a (re)subscription or the 1 s poll asks Redis for the
 * issuer's newest stream id and queries again only the waiters behind it.
 *
 * evhttp does not read from a connection while the application holds its
 * request, so it would not notice a client that goes away during a long
 * poll: an EV_CLOSED watcher on the socket does (epoll's EPOLLRDHUP), and
 * the waiter is answered at once. A held request stays valid until it is
 * answered; only a failed write (event streams) detaches it from its
 * connection, and then the connection's close callback frees it.
 *
 * One struct fconn per connection, from accept to close: the connection
 * cap, the request deadline and the gate that shows evhttp only request
 * heads feed_http.c accepted (see "connections" below).
 */
#include "feed.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/ssl.h>

#include "clock.h"
#include "exposure.h"
#include "redis_cfg.h"
#include "feed_auth.h"
#include "feed_http.h"
#include "feed_page.h"
#include "log.h"
#include "rmodel.h"

#define MOD "feed"
#define ACCESS "access"
#define POLL_MS 1000      /* safety poll while clients wait */
#define STATS_MS 5000     /* outcome counts for the metrics */
#define SSE_BATCH 100     /* stream entries per query */
#define HTTP_TIMEOUT_S 30 /* evhttp read/write timeout */
#define GRACE_MS 5000     /* a long poll's last query after its wait */
#define MAX_STATUS 600

/* Logs that an allocation failed while serving (what: the request or
 * connection step), at most once per 10 s for the same text: the client
 * gets a 500/503 or a closed connection and may retry; the operator must
 * see why in the log. */
static void log_oom(const char *what)
{
    static struct log_limit lim;
    char text[160];
    snprintf(text, sizeof(text), "out of memory %s", what);
    if (log_limit_ok(&lim, text, 10)) {
        log_error(MOD, "%s", text);
    }
}

enum ckind {
    C_SIMPLE, /* one Redis round trip (or none), then the reply */
    C_POLL,   /* GET /v1/alerts with wait */
    C_SSE,    /* GET /v1/alerts/stream */
};

struct fctx;

/* Where a connection is (see "connections" below). */
enum cphase {
    P_HEAD, /* waiting for, or reading, a request head: reclaimable */
    P_BODY, /* evhttp has the head; body bytes go to it as they come */
    P_HELD, /* evhttp has a whole request; later bytes wait in pending */
    P_DEAD, /* refused, shed or reclaimed: input is dropped until closed */
};

/* One client connection, from accept until evhttp closes it. */
struct fconn {
    struct fconn *hnext;          /* by bufferevent */
    struct fconn *prev, *next;    /* every connection */
    struct fconn *rprev, *rnext;  /* P_HEAD ones, oldest first */
    struct feed *f;
    struct bufferevent *bev;      /* what evhttp reads and writes */
    struct evhttp_connection *evcon; /* once set up; NULL once closed */
    struct evbuffer_cb_entry *incb; /* the gate on bev's input */
    struct event *timer;          /* set-up, then the request deadline */
    struct fctx *cur;             /* the request in progress, if any */
    enum cphase phase;
    int set_up, admitted, in_gate, deadline_on, has_peer;
    struct feed_http_head head;   /* the head being read */
    struct evbuffer *headbuf;     /* its bytes (read, not yet given) */
    struct evbuffer *pending;     /* bytes not read yet */
    uint64_t body_left;           /* P_BODY: bytes evhttp still gets */
    uint64_t accept_ns;
    uint8_t peer[FEED_PEER_KEY];  /* throttle key of the peer address */
    /* a refusal, answered to the stand-in request */
    int v_status;
    const char *v_error;
    char v_method[FEED_HTTP_METHOD_MAX + 1];
    char v_path[FEED_HTTP_PATH_KEEP];
};

struct fctx {
    struct feed *f;
    struct fctx *aprev, *anext; /* all contexts */
    struct fctx *wprev, *wnext; /* the issuer's waiters */
    int in_list;
    struct evhttp_request *req; /* NULL once answered */
    struct fconn *conn;
    enum ckind kind;
    int issuer;        /* index into config issuers; -1 */
    int redis_pending; /* a command's callback is due */
    struct event *timer;
    struct event *closed; /* EV_CLOSED watcher while waiting */
    uint64_t start_ns;
    int status;
    size_t bytes;
    char method[FEED_HTTP_METHOD_MAX + 1];
    char path[96];
    char peer[64];
    /* long poll and stream */
    struct feed_cursor cursor;
    int limit;
    int newest; /* order=newest: XREVRANGE below before (or the end) */
    int has_before;
    struct feed_cursor before;
    /* include=outcome: the items collected while their outcomes are read */
    int outcomes;
    struct evbuffer *items; /* each item without its closing brace */
    size_t n_items;
    size_t *ends;               /* end offset of each item in items */
    char (*ids)[ALERT_ID_SIZE]; /* alert id of each item ("" unknown) */
    int querying, dirty, expired;
    int gone;          /* the client closed its end */
    int writing, more; /* stream: a chunk in the socket buffer */
    uint64_t last_write_ns;
    /* outcome */
    enum feed_outcome outcome;
    char *note;
    char alert_id[ALERT_ID_SIZE];
};

struct issuer_state {
    struct feed *f;
    size_t idx;
    char fkey[RMODEL_KEY_MAX];
    char skey[RMODEL_KEY_MAX];
    struct fctx *head; /* waiters */
    int checking, again;
    int stats_pending;
    struct feed_stats stats; /* cached for the metrics */
};

struct feed {
    struct event_base *base;
    const struct config *c;
    struct rconn *rc;   /* commands */
    struct exposure *x; /* the exposed-card set guard, on rc */
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    SSL_CTX *ssl;
    int port;
    struct feed_tokens *tokens;
    struct feed_bucket *buckets;
    struct issuer_state *iss;
    char channel[RMODEL_KEY_MAX];
    char *csp;
    const char *page;
    size_t page_len;
    struct event *poll, *stats_ev;
    struct rconn *sub; /* subscriber: PUBLISH <issuer> wakes waiters */
    int sub_up;
    struct feed *next_feed; /* the list of live feeds (feed_of) */
    /* connections */
    struct fconn **slots; /* by bufferevent */
    size_t n_slots;
    struct fconn *conns;              /* every connection */
    struct fconn *r_oldest, *r_newest; /* the reclaimable ones */
    size_t n_conns;    /* open (each holds a descriptor) */
    size_t n_admitted; /* of those, counted against cap */
    size_t cap;        /* max_clients, or fewer for the open-file limit */
    size_t pause_at;   /* n_conns at which accepting pauses */
    uint64_t shed_full, shed_reclaimed, shed_timeout;
    int accept_off, accept_err; /* accepting paused; for an error */
    size_t nofile; /* the open-file limit */
    struct event *accept_timer;
    uint64_t accept_errors, accept_log_ns, accept_unlogged;
    /* failed authentications */
    struct feed_throttle *throttle;
    uint64_t auth_failures, auth_throttled;
    /* requests */
    struct fctx *all;
    size_t n_active, n_polls, n_streams;
    uint64_t status_count[MAX_STATUS];
    int redis_wait_ms;
    int stats_asked;
    int stopping, destroying;
};

static void ctx_done(struct fctx *x);
static void query_list(struct fctx *x);
static void issuer_check(struct feed *f, size_t i);

/* ---- connections ----
 *
 * Every accepted connection has an fconn before evhttp reads a byte of it,
 * so that it is counted from accept, bounded in time and its requests
 * gated. libevent 2.1.12 has no public hook for that (evhttp_get_request()
 * is static, and there is no new-request callback), so:
 *   - evhttp asks evhttp_set_bevcb()'s callback for each new connection's
 *     bufferevent: conn_new() is where a connection is counted, admitted,
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
 *     the stand-in request "GET / HTTP/1.1", which on_request() answers
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

#define FD_RESERVE 64       /* descriptors kept for Redis, logs, admin */
#define ACCEPT_PAUSE_MS 100 /* no accept() this long after one failed */
#define ACCEPT_LOG_S 10     /* one accept-error line per this many s */
#define PIPELINE_MAX 65536  /* bytes of later requests held meanwhile */

static const char STAND_IN[] = "GET / HTTP/1.1\r\n\r\n";
static const char STAND_IN_HEAD[] = "HEAD / HTTP/1.1\r\n\r\n"; /* no body */

/* Every live feed: evhttp's listener calls its error callback with the
 * evhttp, not with the feed. Touched on the loop thread only. */
static struct feed *feeds;

static struct feed *feed_of(const void *http)
{
    for (struct feed *f = feeds; f != NULL; f = f->next_feed) {
        if ((const void *)f->http == http) {
            return f;
        }
    }
    return NULL;
}

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

/* Refuses the request being read: status and error for on_request(),
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
            log_oom("reading a request head (HTTP 500)");
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
static void on_req_complete(struct evhttp_request *req, void *arg)
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
static void conn_free(struct fconn *fc)
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
        conn_free(fc);
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
static struct bufferevent *conn_new(struct event_base *base, void *arg)
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
        return bev; /* untracked: on_request answers 503 */
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

static void on_accept_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct feed *f = arg;
    f->accept_err = 0;
    accept_update(f);
}

/* accept() on the feed's socket failed with something else than "try
 * again" (EMFILE, ENFILE, ENOBUFS...): pause accepting until a connection
 * closes or ACCEPT_PAUSE_MS passed (the socket stays readable, so evhttp's
 * listener would retry at once, forever); out of descriptors, close the
 * oldest reclaimable connection for the next one. Logged at most once per
 * ACCEPT_LOG_S, with how many were not. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
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
static struct fconn *conn_of(struct feed *f, struct evhttp_connection *ev)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(ev);
    return bev != NULL ? conn_find(f, bev) : NULL;
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
static void safe_copy(char *dst, size_t cap, const char *src)
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

static void on_timer(evutil_socket_t fd, short what, void *arg);

static struct fctx *ctx_new(struct feed *f, struct evhttp_request *req)
{
    struct fctx *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return NULL;
    }
    x->timer = evtimer_new(f->base, on_timer, x);
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
    safe_copy(x->path, sizeof(x->path), u ? evhttp_uri_get_path(u) : NULL);
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

static void list_free(struct fctx *x)
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

static void ctx_maybe_free(struct fctx *x)
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
    list_free(x);
    free(x->note);
    free(x);
}

static void waiter_add(struct fctx *x)
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
static void ctx_done(struct fctx *x)
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
    ctx_maybe_free(x);
}

/* ---- replies ---- */

static const char *reason(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 201:
        return "Created";
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

static void add_common_headers(struct fctx *x, const char *ctype)
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
static void reply_buf(struct fctx *x, int code, const char *ctype,
                      struct evbuffer *b)
{
    add_common_headers(x, ctype);
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
    ctx_done(x);
}

static void reply_text(struct fctx *x, int code, const char *json)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        log_oom("answering a request (HTTP 500)");
        x->status = 500;
        evhttp_send_error(x->req, 500, NULL);
        ctx_done(x);
        return;
    }
    evbuffer_add(b, json, strlen(json));
    reply_buf(x, code, "application/json", b);
    evbuffer_free(b);
}

/* 500 {"error":"out of memory"}, logged. */
static void reply_oom(struct fctx *x)
{
    log_oom("answering a request (HTTP 500)");
    reply_text(x, 500, "{\"error\":\"out of memory\"}");
}

/* Sends o (a reference is stolen) as JSON. */
static void reply_json(struct fctx *x, int code, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s == NULL) {
        reply_oom(x);
        return;
    }
    reply_text(x, code, s);
    free(s);
}

static void reply_error(struct fctx *x, int code, const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    reply_json(x, code, o);
}

static void reply_not_found(struct fctx *x)
{
    reply_text(x, 404, "{\"error\":\"not found\"}");
}

static void reply_unavailable(struct fctx *x, const char *msg)
{
    evhttp_add_header(evhttp_request_get_output_headers(x->req), "Retry-After",
                      "1");
    reply_error(x, 503, msg);
}

static void reply_405(struct fctx *x, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(x->req), "Allow",
                      allow);
    reply_error(x, 405, "method not allowed");
}

/* ---- Redis commands ---- */

/* Sends argv (lens: the argument lengths) for x; cb answers it. */
static int redis_cmd_lens(struct fctx *x, rconn_cb cb, int argc,
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

/* redis_cmd_lens for at most 16 NUL-terminated arguments. */
static int redis_cmd(struct fctx *x, rconn_cb cb, int argc,
                     const char *const *argv)
{
    size_t lens[16];
    for (int i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
    }
    return redis_cmd_lens(x, cb, argc, argv, lens);
}

/* The start of a Redis callback: 1 when the request still wants the
 * answer, else the context is freed (answered meanwhile) or answered 503
 * (the module is closing). */
static int redis_answer(struct fctx *x, const redisReply *r)
{
    x->redis_pending = 0;
    if (x->kind == C_SIMPLE) {
        evtimer_del(x->timer);
    }
    if (x->req == NULL) {
        ctx_maybe_free(x);
        return 0;
    }
    if (r == NULL) {
        if (x->kind == C_SSE) {
            evhttp_send_reply_end(x->req);
            ctx_done(x);
        } else {
            reply_unavailable(x, "redis unavailable");
        }
        return 0;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn(MOD, "Redis answered %s %s: %s", x->method, x->path, r->str);
        if (x->kind == C_SSE) {
            evhttp_send_reply_end(x->req);
            ctx_done(x);
        } else {
            reply_error(x, 500, "internal error");
        }
        return 0;
    }
    return 1;
}

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
        list_free(x);
        reply_oom(x);
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
    list_free(x);
    feed_cursor_format(&x->cursor, cur, sizeof(cur));
    evbuffer_add_printf(b, "],\"next\":\"%s\"}", cur);
    reply_buf(x, 200, "application/json", b);
    evbuffer_free(b);
}

static void on_outcomes(void *arg, const redisReply *r)
{
    struct fctx *x = arg;
    x->querying = 0;
    if (!redis_answer(x, r)) {
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        log_warn(MOD, "the outcomes script answered type %d", r->type);
        list_free(x);
        reply_error(x, 500, "internal error");
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
    rc = redis_cmd_lens(x, on_outcomes, (int)argc, argv, lens);
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
static void reply_list(struct fctx *x, const redisReply *r)
{
    if (x->items == NULL) {
        if (list_collect(x, r) != 0) {
            list_free(x);
            reply_oom(x);
            return;
        }
        if (x->outcomes && x->n_items > 0 && !x->gone && !x->f->stopping) {
            if (outcomes_query(x) == 0) {
                return;
            }
            list_free(x);
            reply_oom(x);
            return;
        }
    }
    list_send(x, NULL);
}

static void stream_end(struct fctx *x)
{
    evhttp_send_reply_end(x->req);
    ctx_done(x);
}

static void on_written(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct fctx *x = arg;
    x->writing = 0;
    if ((x->more || x->dirty) && !x->querying && x->req != NULL) {
        x->more = x->dirty = 0;
        query_list(x);
    }
}

static void stream_write(struct fctx *x, struct evbuffer *b)
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
        stream_end(x);
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
    stream_write(x, b);
    evbuffer_free(b);
    x->more = r->elements == SSE_BATCH;
    if (!x->writing && (x->more || x->dirty)) {
        x->more = x->dirty = 0;
        query_list(x);
    }
}

static void on_list(void *arg, const redisReply *r)
{
    struct fctx *x = arg;
    x->querying = 0;
    if (!redis_answer(x, r)) {
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        log_warn(MOD, "XRANGE answered type %d", r->type);
        if (x->kind == C_SSE) {
            stream_end(x);
        } else {
            reply_error(x, 500, "internal error");
        }
        return;
    }
    if (x->kind == C_SSE) {
        stream_got(x, r);
        return;
    }
    if (r->elements > 0 || x->kind == C_SIMPLE || x->expired ||
        x->f->stopping) {
        reply_list(x, r);
        return;
    }
    if (x->dirty) { /* news came while this query ran */
        x->dirty = 0;
        query_list(x);
    }
}

static void query_list(struct fctx *x)
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
    if (redis_cmd(x, on_list, 6, argv) != 0) {
        x->querying = 0;
        if (x->kind == C_SSE) {
            stream_end(x);
        } else {
            reply_oom(x);
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
        stream_end(x);
    } else {
        reply_list(x, NULL);
    }
}

static void watch_close(struct fctx *x)
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

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fctx *x = arg;
    if (x->req == NULL) {
        return;
    }
    switch (x->kind) {
    case C_SIMPLE:
        reply_unavailable(x, "redis did not answer in time");
        return;
    case C_POLL:
        if (x->expired) {
            reply_unavailable(x, "redis did not answer in time");
        } else if (x->querying) {
            x->expired = 1; /* the running query answers */
            struct timeval tv = {GRACE_MS / 1000, (GRACE_MS % 1000) * 1000};
            evtimer_add(x->timer, &tv);
        } else {
            reply_list(x, NULL);
        }
        return;
    case C_SSE: {
        uint64_t ka = (uint64_t)x->f->c->feed_keepalive_s * 1000000000ull;
        uint64_t idle = clock_mono_ns() - x->last_write_ns;
        if (!x->writing && idle >= ka) {
            struct evbuffer *b = evbuffer_new();
            if (b != NULL) {
                evbuffer_add(b, ": keepalive\n\n", 13);
                stream_write(x, b);
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
                query_list(w); /* may answer w (out of memory) */
            }
        }
    }
    if (s->again) {
        s->again = 0;
        issuer_check(f, s->idx);
    }
}

/* Asks Redis for the newest entry of issuer i's feed, then queries the
 * waiters behind it. */
static void issuer_check(struct feed *f, size_t i)
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

static void check_all(struct feed *f)
{
    for (size_t i = 0; i < f->c->n_issuers; i++) {
        issuer_check(f, i);
    }
}

static void stats_refresh(struct feed *f);

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct feed *f = arg;
    check_all(f);
    if (!f->stats_asked) { /* the first counts as soon as Redis answers */
        stats_refresh(f);
    }
}

/* ---- the subscriber connection ---- */

/* The subscriber's state: while it is down, the poll timer finds news. */
static void on_sub_state(void *arg, int up)
{
    struct feed *f = arg;
    if (up) {
        log_info(MOD, "subscribed to %s", f->channel);
        f->sub_up = 1;
        check_all(f); /* what came while the subscription was down */
    } else {
        if (f->sub_up) {
            log_warn(MOD, "subscription to %s lost; polling every %d ms "
                     "meanwhile", f->channel, POLL_MS);
        }
        f->sub_up = 0;
    }
}

/* A PUBLISH names the issuer that has news. */
static void on_sub_message(void *arg, const char *payload, size_t len)
{
    struct feed *f = arg;
    for (size_t i = 0; i < f->c->n_issuers; i++) {
        const char *id = f->c->issuers[i].id;
        if (strlen(id) == len && memcmp(id, payload, len) == 0) {
            issuer_check(f, i);
            return;
        }
    }
}

/* The main connection's state: the set guard checks again. */
static void on_redis_state(void *arg, int up)
{
    struct feed *f = arg;
    if (f->x != NULL) {
        exposure_link_state(f->x, up);
    }
}

/* ---- statistics for the metrics ---- */

static void on_stats(void *arg, const redisReply *r)
{
    struct issuer_state *s = arg;
    s->stats_pending = 0;
    if (r == NULL || s->f->destroying || r->type != REDIS_REPLY_ARRAY) {
        return;
    }
    struct feed_stats st = {0};
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
            feed_stats_add(&st, k->str, k->len, v->str, v->len) != 0) {
            feed_stats_free(&st);
            return; /* keep the last good counts */
        }
    }
    feed_stats_finish(&st);
    feed_stats_free(&s->stats);
    s->stats = st;
}

static void stats_refresh(struct feed *f)
{
    if (!rconn_is_up(f->rc)) {
        return;
    }
    f->stats_asked = 1;
    for (size_t i = 0; i < f->c->n_issuers; i++) {
        struct issuer_state *s = &f->iss[i];
        if (s->stats_pending) {
            continue;
        }
        const char *argv[] = {"HGETALL", s->skey};
        size_t lens[] = {7, strlen(s->skey)};
        if (rconn_command(f->rc, 2, argv, lens, on_stats, s) == 0) {
            s->stats_pending = 1;
        }
    }
}

static void on_stats_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct feed *f = arg;
    feed_throttle_sweep(f->throttle, clock_mono_ns());
    stats_refresh(f);
}

/* ---- handlers ---- */

static void handle_page(struct fctx *x)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(x->req);
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        reply_oom(x);
        return;
    }
    evhttp_add_header(h, "Content-Security-Policy", x->f->csp);
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evbuffer_add_reference(b, x->f->page, x->f->page_len, NULL, NULL);
    reply_buf(x, 200, "text/html; charset=utf-8", b);
    evbuffer_free(b);
}

static void handle_list(struct fctx *x, const char *query)
{
    struct feed_params p;
    char err[160];
    if (feed_params_parse(query, x->f->c->feed_max_wait_s, 0, &p, err,
                          sizeof(err)) != 0) {
        reply_error(x, 400, err);
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
        reply_list(x, NULL); /* nothing is before 0-0 (Redis refuses "(0-0") */
        return;
    }
    if (p.wait_s > 0) {
        x->kind = C_POLL;
        struct timeval tv = {p.wait_s, 0};
        evtimer_add(x->timer, &tv);
        waiter_add(x); /* before the first query: no news is missed */
        watch_close(x);
    }
    query_list(x);
}

static void handle_stream(struct fctx *x, const char *query)
{
    struct feed_params p;
    char err[160];
    if (feed_params_parse(query, 0, 1, &p, err, sizeof(err)) != 0) {
        reply_error(x, 400, err);
        return;
    }
    x->cursor = p.after;
    const char *last = evhttp_find_header(
        evhttp_request_get_input_headers(x->req), "Last-Event-ID");
    if (last != NULL && last[0] != '\0' &&
        feed_cursor_parse(last, strlen(last), &x->cursor) != 0) {
        reply_error(x, 400,
                    "Last-Event-ID must be a cursor \"<ms>-<seq>\" "
                    "as the stream sent it");
        return;
    }
    x->kind = C_SSE;
    struct evkeyvalq *h = evhttp_request_get_output_headers(x->req);
    add_common_headers(x, "text/event-stream");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    x->status = 200;
    evhttp_send_reply_start(x->req, 200, "OK");
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        stream_end(x);
        return;
    }
    evbuffer_add(b, "retry: 2000\n\n", 13);
    stream_write(x, b);
    evbuffer_free(b);
    struct timeval tv = {x->f->c->feed_keepalive_s, 0};
    evtimer_add(x->timer, &tv);
    waiter_add(x);
    watch_close(x);
    x->more = 1; /* the first query runs once the preamble is written */
}

static void on_get_alert(void *arg, const redisReply *r)
{
    struct fctx *x = arg;
    if (!redis_answer(x, r)) {
        return;
    }
    const char *me = x->f->c->issuers[x->issuer].id;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 6 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(r->element[0]->str, me) != 0) {
        reply_not_found(x);
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
        reply_error(x, 500, "internal error");
        return;
    }
    json_t *o = json_object();
    if (o == NULL) {
        json_decref(alert);
        reply_oom(x);
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
    reply_json(x, 200, o);
}

static void handle_get_alert(struct fctx *x, const char *id, size_t idlen)
{
    char key[RMODEL_KEY_MAX];
    if (!feed_alert_id_valid(id, idlen)) {
        reply_not_found(x);
        return;
    }
    memcpy(x->alert_id, id, idlen);
    x->alert_id[idlen] = '\0';
    rmodel_alert_key(key, x->f->c->redis_prefix, x->alert_id);
    const char *argv[] = {"HMGET", key,       "issuer", "stream_id",
                          "alert", "outcome", "note",   "outcome_at_ms"};
    if (redis_cmd(x, on_get_alert, 8, argv) != 0) {
        reply_oom(x);
    }
}

static void on_outcome_done(void *arg, const redisReply *r)
{
    struct fctx *x = arg;
    if (!redis_answer(x, r)) {
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->type != REDIS_REPLY_STRING) {
        log_warn(MOD, "outcome script answered type %d", r->type);
        reply_error(x, 500, "internal error");
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
        reply_json(
            x, (int)code,
            json_pack("{s:s,s:s}", "alert_id", x->alert_id, "outcome", was));
        return;
    case 409:
        reply_json(x, 409,
                   json_pack("{s:s,s:s}", "error", "conflict", "outcome", was));
        return;
    default:
        reply_not_found(x);
        return;
    }
}

static void on_outcome_alert(void *arg, const redisReply *r)
{
    struct fctx *x = arg;
    if (!redis_answer(x, r)) {
        return;
    }
    struct feed *f = x->f;
    const char *me = f->c->issuers[x->issuer].id;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(r->element[0]->str, me) != 0) {
        reply_not_found(x);
        return;
    }
    struct feed_alert_facts facts;
    const redisReply *al = r->element[1];
    if (al->type != REDIS_REPLY_STRING ||
        feed_alert_facts_parse(al->str, al->len, &facts) != 0) {
        log_warn(MOD, "alert %s: stored JSON unreadable", x->alert_id);
        reply_error(x, 500, "internal error");
        return;
    }
    char akey[RMODEL_KEY_MAX], ckey[RMODEL_KEY_MAX], now[32];
    rmodel_alert_key(akey, f->c->redis_prefix, x->alert_id);
    if (rmodel_card_key(ckey, f->c->redis_prefix, facts.kid, facts.fp) < 0) {
        reply_error(x, 500, "internal error");
        return;
    }
    snprintf(now, sizeof(now), "%" PRId64, clock_wall_ms());
    const char *argv[] = {"EVAL",
                          RMODEL_LUA_OUTCOME,
                          "3",
                          akey,
                          f->iss[x->issuer].skey,
                          ckey,
                          me,
                          feed_outcome_name(x->outcome),
                          x->note,
                          now,
                          facts.rules,
                          facts.breaches,
                          feed_outcome_retires(x->outcome) ? "1" : "0"};
    if (redis_cmd(x, on_outcome_done, 13, argv) != 0) {
        reply_oom(x);
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
        reply_oom(x);
        return;
    }
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    if (body == NULL || feed_outcome_body(body, len, &x->outcome, x->note, err,
                                          sizeof(err)) != 0) {
        if (body == NULL) {
            reply_oom(x);
        } else {
            reply_error(x, 400, err);
        }
        return;
    }
    if (!feed_alert_id_valid(id, idlen)) {
        reply_not_found(x);
        return;
    }
    memcpy(x->alert_id, id, idlen);
    x->alert_id[idlen] = '\0';
    rmodel_alert_key(key, f->c->redis_prefix, x->alert_id);
    const char *argv[] = {"HMGET", key, "issuer", "alert"};
    if (redis_cmd(x, on_outcome_alert, 4, argv) != 0) {
        reply_oom(x);
    }
}

static void on_stats_reply(void *arg, const redisReply *r)
{
    struct fctx *x = arg;
    if (!redis_answer(x, r)) {
        return;
    }
    struct feed_stats st = {0};
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements;
         i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
            feed_stats_add(&st, k->str, k->len, v->str, v->len) != 0) {
            feed_stats_free(&st);
            reply_oom(x);
            return;
        }
    }
    feed_stats_finish(&st);
    char *s = feed_stats_json(&st, x->f->c->issuers[x->issuer].id);
    feed_stats_free(&st);
    if (s == NULL) {
        reply_oom(x);
        return;
    }
    reply_text(x, 200, s);
    free(s);
}

static void handle_stats(struct fctx *x)
{
    const char *argv[] = {"HGETALL", x->f->iss[x->issuer].skey};
    if (redis_cmd(x, on_stats_reply, 2, argv) != 0) {
        reply_oom(x);
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
        reply_error(x, 429, "too many failed authentications");
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
        reply_text(x, 401, "{\"error\":\"unauthorized\"}");
        return -1;
    }
    x->issuer = (int)feed_tokens_issuer(f->tokens, (size_t)e);
    wait = feed_bucket_take(&f->buckets[e], now, (double)f->c->feed_rate_per_s,
                            (double)f->c->feed_burst);
    if (wait > 0) {
        snprintf(ra, sizeof(ra), "%d", wait);
        evhttp_add_header(evhttp_request_get_output_headers(x->req),
                          "Retry-After", ra);
        reply_error(x, 429, "rate limit exceeded");
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
                reply_not_found(x);
                return;
            }
            outcome = 1;
        }
    } else if (strcmp(path, "/v1/alerts") != 0 &&
               strcmp(path, "/v1/alerts/stream") != 0 &&
               strcmp(path, "/v1/stats") != 0) {
        reply_not_found(x);
        return;
    }
    if (outcome ? m != EVHTTP_REQ_POST : m != EVHTTP_REQ_GET) {
        reply_405(x, outcome ? "POST" : "GET");
        return;
    }
    if (!rconn_is_up(x->f->rc)) {
        reply_unavailable(x, "redis unavailable");
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

static void on_request(struct evhttp_request *req, void *arg)
{
    struct feed *f = arg;
    struct fctx *x = ctx_new(f, req);
    if (x == NULL) {
        log_oom("taking a request (HTTP 500)");
        evhttp_send_error(req, 500, NULL);
        return;
    }
    struct evhttp_connection *ev = evhttp_request_get_connection(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    x->conn = ev ? conn_of(f, ev) : NULL;
    if (x->conn == NULL) { /* not tracked: no memory for it at accept */
        log_oom("tracking a connection (HTTP 503)");
        evhttp_add_header(out, "Connection", "close");
        reply_unavailable(x, "out of memory");
        return;
    }
    x->conn->cur = x;
    evhttp_request_set_on_complete_cb(req, on_req_complete, x->conn);
    if (x->conn->v_status != 0) { /* the stand-in for a refused request */
        struct fconn *fc = x->conn;
        snprintf(x->method, sizeof(x->method), "%s",
                 fc->v_method[0] ? fc->v_method : "-");
        safe_copy(x->path, sizeof(x->path), fc->v_path[0] ? fc->v_path : "-");
        evhttp_add_header(out, "Connection", "close");
        if (fc->v_status == 503) {
            reply_unavailable(x, fc->v_error);
        } else {
            reply_error(x, fc->v_status, fc->v_error);
        }
        return;
    }
    if (f->stopping) {
        reply_unavailable(x, "shutting down");
        return;
    }
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    const char *query = u ? evhttp_uri_get_query(u) : NULL;
    if (path == NULL) {
        path = "";
    }
    if (strcmp(path, "/") == 0) {
        enum evhttp_cmd_type m = evhttp_request_get_command(req);
        if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
            reply_405(x, "GET, HEAD");
            return;
        }
        handle_page(x);
    } else if (strcmp(path, "/v1") == 0 || strncmp(path, "/v1/", 4) == 0) {
        route_v1(x, path, query);
    } else {
        reply_not_found(x);
    }
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
        ctx_done(x);
    }
    conn_free(fc);
}

/* ---- TLS ---- */

static int tls_setup(struct feed *f, char *errbuf, size_t errlen)
{
    f->ssl = feed_tls_context(f->c->feed_tls_cert, f->c->feed_tls_key, errbuf,
                              errlen);
    return f->ssl != NULL ? 0 : -1; /* conn_new makes TLS bufferevents */
}

/* ---- life cycle ---- */

/* Random bits for the throttle's hash (the address of f and the clock
 * when the OS has none to give). */
static uint64_t hash_seed(const struct feed *f)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) !=
        (ssize_t)sizeof(seed)) {
        seed = (uint64_t)(uintptr_t)f ^ clock_mono_ns();
    }
    return seed;
}

/* The connection cap: [feed] max_clients, with FD_RESERVE descriptors
 * kept for everything else (Redis, the admin endpoint, logs, closing
 * connections). The open-file limit is raised towards its hard limit
 * first when max_clients needs it (systemd's default soft limit is
 * 1,024). */
static void fd_budget(struct feed *f)
{
    size_t want = (size_t)f->c->feed_max_clients + FD_RESERVE;
    struct rlimit rl;
    f->nofile = SIZE_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want &&
            (rl.rlim_max == RLIM_INFINITY || rl.rlim_cur < rl.rlim_max)) {
            struct rlimit up = rl;
            up.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want
                              ? rl.rlim_max
                              : (rlim_t)want;
            if (setrlimit(RLIMIT_NOFILE, &up) == 0) {
                log_info(MOD,
                         "open-file limit raised from %llu to %llu for "
                         "[feed] max_clients",
                         (unsigned long long)rl.rlim_cur,
                         (unsigned long long)up.rlim_cur);
                rl = up;
            }
        }
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < SIZE_MAX) {
            f->nofile = (size_t)rl.rlim_cur;
        }
    }
    f->cap = (size_t)f->c->feed_max_clients;
    size_t room = f->nofile > 2 * FD_RESERVE ? f->nofile - FD_RESERVE
                                             : f->nofile / 2;
    if (room < 1) {
        room = 1;
    }
    if (f->cap > room) {
        log_warn(MOD,
                 "[feed] max_clients is %d but the open-file limit is %zu: "
                 "at most %zu connections (%d descriptors kept for Redis, "
                 "logs and closing connections); raise the limit "
                 "(ulimit -n, systemd LimitNOFILE=) for more",
                 f->c->feed_max_clients, f->nofile, room, FD_RESERVE);
        f->cap = room;
    }
    size_t slack = f->nofile > 2 * FD_RESERVE ? FD_RESERVE / 2
                                              : (f->nofile - room) / 2;
    f->pause_at = f->cap + (slack > 0 ? slack : 1);
}

static int bind_listen(struct feed *f, char *errbuf, size_t errlen)
{
    const char *listen = f->c->feed_listen;
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof(host)) {
        snprintf(errbuf, errlen, "feed: bad listen address '%s'", listen);
        return -1;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host) - 2);
        host[strlen(host) - 2] = '\0';
    }
    f->sock = evhttp_bind_socket_with_handle(f->http, host,
                                             (ev_uint16_t)atoi(colon + 1));
    if (f->sock == NULL) {
        snprintf(errbuf, errlen,
                 "feed: cannot listen on %s (in use or not "
                 "a local address)",
                 listen);
        return -1;
    }
    struct sockaddr_storage ss;
    ev_socklen_t sl = sizeof(ss);
    evutil_socket_t fd = evhttp_bound_socket_get_fd(f->sock);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            f->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            f->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    return 0;
}

struct feed *feed_new(struct event_base *base, const struct config *c,
                      char *errbuf, size_t errlen)
{
    struct feed *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        snprintf(errbuf, errlen, "feed: out of memory");
        return NULL;
    }
    f->base = base;
    f->c = c;
    f->redis_wait_ms = 2 * c->redis_timeout_ms + 1000;
    if (c->feed_listen[0] == '\0') {
        snprintf(errbuf, errlen, "feed: [feed] listen is not set");
        goto err;
    }
    if (feed_config_check(c, errbuf, errlen) != 0) {
        goto err;
    }
    f->tokens = feed_tokens_new(c, errbuf, errlen);
    if (f->tokens == NULL) {
        goto err;
    }
    size_t nt = feed_tokens_count(f->tokens);
    f->buckets = calloc(nt ? nt : 1, sizeof(*f->buckets));
    f->iss = calloc(c->n_issuers ? c->n_issuers : 1, sizeof(*f->iss));
    f->n_slots = 64;
    f->slots = calloc(f->n_slots, sizeof(*f->slots));
    f->page = feed_page(&f->page_len);
    f->csp = feed_csp(f->page, f->page_len);
    f->throttle = feed_throttle_new((size_t)c->feed_auth_max_peers,
                                    c->feed_auth_failures,
                                    c->feed_auth_failure_window_s,
                                    hash_seed(f));
    if (f->buckets == NULL || f->iss == NULL || f->slots == NULL ||
        f->csp == NULL || f->throttle == NULL) {
        snprintf(errbuf, errlen, "feed: out of memory");
        goto err;
    }
    for (size_t i = 0; i < c->n_issuers; i++) {
        f->iss[i].f = f;
        f->iss[i].idx = i;
        if (rmodel_feed_key(f->iss[i].fkey, c->redis_prefix, c->issuers[i].id) <
                0 ||
            rmodel_feedstats_key(f->iss[i].skey, c->redis_prefix,
                                 c->issuers[i].id) < 0) {
            snprintf(errbuf, errlen, "feed: key too long");
            goto err;
        }
    }
    rmodel_feed_channel(f->channel, c->redis_prefix);
    struct redis_cfg_use ru = {
        .name = "feed",
        .while_down = "the feed answers 503",
        .on_state = on_redis_state,
        .state_arg = f,
    };
    f->rc = redis_cfg_connect(base, c, &ru, errbuf, errlen);
    if (f->rc == NULL) {
        goto err;
    }
    struct redis_cfg_use su = {
        .name = "feed subscriber",
        .while_down = "the feed polls",
        .on_state = on_sub_state,
        .state_arg = f,
        .subscribe = f->channel,
        .on_message = on_sub_message,
        .message_arg = f,
    };
    f->sub = redis_cfg_connect(base, c, &su, errbuf, errlen);
    if (f->sub == NULL) {
        goto err;
    }
    struct exposure_opts xo = {
        .prefix = c->redis_prefix,
        .key_id = "",
        .while_down = "the feed is not ready",
    };
    f->x = exposure_new(base, f->rc, &xo, errbuf, errlen);
    if (f->x == NULL) {
        goto err;
    }
    f->http = evhttp_new(base);
    f->poll = event_new(base, -1, EV_PERSIST, on_poll, f);
    f->stats_ev = event_new(base, -1, EV_PERSIST, on_stats_timer, f);
    f->accept_timer = evtimer_new(base, on_accept_timer, f);
    if (f->http == NULL || f->poll == NULL || f->stats_ev == NULL ||
        f->accept_timer == NULL) {
        snprintf(errbuf, errlen, "feed: out of memory");
        goto err;
    }
    f->next_feed = feeds;
    feeds = f;
    fd_budget(f);
    evhttp_set_max_headers_size(f->http, 8192);
    evhttp_set_max_body_size(f->http, c->feed_max_body);
    evhttp_set_timeout(f->http, HTTP_TIMEOUT_S);
    evhttp_set_allowed_methods(
        f->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                     EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                     EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(f->http, on_request, f);
    evhttp_set_bevcb(f->http, conn_new, f);
    if (c->feed_tls_cert[0] != '\0' && tls_setup(f, errbuf, errlen) != 0) {
        goto err;
    }
    if (bind_listen(f, errbuf, errlen) != 0) {
        goto err;
    }
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(f->sock),
                                on_accept_error);
    struct timeval pt = {POLL_MS / 1000, (POLL_MS % 1000) * 1000};
    event_add(f->poll, &pt);
    struct timeval st = {STATS_MS / 1000, (STATS_MS % 1000) * 1000};
    event_add(f->stats_ev, &st);
    char rdesc[CONFIG_STR_MAX + 300];
    redis_cfg_describe(c, rdesc, sizeof(rdesc));
    log_info(MOD,
             "issuer feed listening on %s (%s, port %d; %zu token(s) "
             "of %zu issuer(s); at most %zu connections); Redis %s",
             c->feed_listen, f->ssl ? "https" : "http", f->port, nt,
             c->n_issuers, f->cap, rdesc);
    return f;
err:
    feed_destroy(f);
    return NULL;
}

int feed_ready(const struct feed *f, char *why, size_t whylen)
{
    if (f->stopping) {
        snprintf(why, whylen, "shutting down");
        return 0;
    }
    if (!exposure_health(f->x, why, whylen)) {
        return 0;
    }
    return 1;
}

void feed_stop(struct feed *f)
{
    if (f == NULL || f->stopping) {
        return;
    }
    f->stopping = 1;
    if (f->sock != NULL) {
        evhttp_del_accept_socket(f->http, f->sock);
        f->sock = NULL;
    }
    size_t polls = f->n_polls, streams = f->n_streams;
    for (size_t i = 0; i < f->c->n_issuers; i++) {
        while (f->iss[i].head != NULL) {
            struct fctx *x = f->iss[i].head;
            if (x->kind == C_SSE) {
                stream_end(x);
            } else {
                reply_list(x, NULL);
            }
        }
    }
    log_info(MOD,
             "stopped accepting; answered %zu long poll(s), ended %zu "
             "stream(s)",
             polls, streams);
}

/* Answers every request still open: 503, or the end of its stream. */
static void answer_all(struct feed *f)
{
    for (struct fctx *x = f->all, *next; x != NULL; x = next) {
        next = x->anext;
        if (x->req == NULL) {
            continue;
        }
        if (x->kind == C_SSE) {
            stream_end(x);
        } else {
            reply_unavailable(x, "shutting down");
        }
    }
}

void feed_cancel(struct feed *f)
{
    if (f == NULL) {
        return;
    }
    feed_stop(f);
    answer_all(f);
}

size_t feed_busy(const struct feed *f)
{
    if (f == NULL) {
        return 0;
    }
    size_t n = f->n_active;
    for (const struct fconn *c = f->conns; c != NULL; c = c->next) {
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
            n++;
        }
    }
    return n;
}

size_t feed_requests(const struct feed *f)
{
    return f != NULL ? f->n_active : 0;
}

void feed_metrics(const struct feed *f, FILE *out)
{
    if (f == NULL) {
        return;
    }
    fputs("# HELP cardwatch_feed_requests_total Issuer feed requests "
          "answered, by HTTP status.\n"
          "# TYPE cardwatch_feed_requests_total counter\n",
          out);
    for (int s = 0; s < MAX_STATUS; s++) {
        if (f->status_count[s] > 0) {
            fprintf(out,
                    "cardwatch_feed_requests_total{status=\"%d\"} %" PRIu64
                    "\n",
                    s, f->status_count[s]);
        }
    }
    fprintf(out,
            "# HELP cardwatch_feed_waiting_clients Long polls and event "
            "streams open.\n"
            "# TYPE cardwatch_feed_waiting_clients gauge\n"
            "cardwatch_feed_waiting_clients{kind=\"long_poll\"} %zu\n"
            "cardwatch_feed_waiting_clients{kind=\"stream\"} %zu\n"
            "# HELP cardwatch_feed_connections Client connections open "
            "(from accept to close).\n"
            "# TYPE cardwatch_feed_connections gauge\n"
            "cardwatch_feed_connections %zu\n"
            "# HELP cardwatch_feed_connections_limit Connections admitted at "
            "most: [feed] max_clients, or fewer for the open-file limit.\n"
            "# TYPE cardwatch_feed_connections_limit gauge\n"
            "cardwatch_feed_connections_limit %zu\n"
            "# HELP cardwatch_feed_redis_up 1 when the feed's Redis "
            "connection answers.\n"
            "# TYPE cardwatch_feed_redis_up gauge\n"
            "cardwatch_feed_redis_up %d\n"
            "# HELP cardwatch_feed_subscribed 1 when the feed is subscribed "
            "to new-alert notices.\n"
            "# TYPE cardwatch_feed_subscribed gauge\n"
            "cardwatch_feed_subscribed %d\n",
            f->n_polls, f->n_streams, f->n_conns, f->cap, rconn_is_up(f->rc),
            f->sub_up);
    fprintf(out,
            "# HELP cardwatch_feed_connections_shed_total Connections the "
            "feed closed to protect itself: full (503 at accept, nothing to "
            "reclaim), reclaimed (idle or still sending a head, closed for "
            "a new one), timeout (request not complete within "
            "request_timeout_s).\n"
            "# TYPE cardwatch_feed_connections_shed_total counter\n"
            "cardwatch_feed_connections_shed_total{reason=\"full\"} %" PRIu64
            "\n"
            "cardwatch_feed_connections_shed_total{reason=\"reclaimed\"} "
            "%" PRIu64 "\n"
            "cardwatch_feed_connections_shed_total{reason=\"timeout\"} "
            "%" PRIu64 "\n"
            "# HELP cardwatch_feed_accept_errors_total accept() failures on "
            "the feed's port (EMFILE...).\n"
            "# TYPE cardwatch_feed_accept_errors_total counter\n"
            "cardwatch_feed_accept_errors_total %" PRIu64 "\n"
            "# HELP cardwatch_feed_auth_failures_total Requests answered 401.\n"
            "# TYPE cardwatch_feed_auth_failures_total counter\n"
            "cardwatch_feed_auth_failures_total %" PRIu64 "\n"
            "# HELP cardwatch_feed_auth_throttled_total Requests answered 429 "
            "because their peer failed to authenticate too often (token not "
            "checked).\n"
            "# TYPE cardwatch_feed_auth_throttled_total counter\n"
            "cardwatch_feed_auth_throttled_total %" PRIu64 "\n"
            "# HELP cardwatch_feed_auth_peers Peer addresses with recent "
            "authentication failures in the throttle's table.\n"
            "# TYPE cardwatch_feed_auth_peers gauge\n"
            "cardwatch_feed_auth_peers %zu\n"
            "# HELP cardwatch_feed_auth_peers_evicted_total Peers forgotten "
            "early because the table was full ([feed] auth_max_peers).\n"
            "# TYPE cardwatch_feed_auth_peers_evicted_total counter\n"
            "cardwatch_feed_auth_peers_evicted_total %" PRIu64 "\n",
            f->shed_full, f->shed_reclaimed, f->shed_timeout, f->accept_errors,
            f->auth_failures, f->auth_throttled,
            feed_throttle_peers(f->throttle),
            feed_throttle_evicted(f->throttle));
    fputs("# HELP cardwatch_rule_outcomes_total Outcomes issuers reported "
          "on alerts, by issuer, rule and outcome.\n"
          "# TYPE cardwatch_rule_outcomes_total counter\n",
          out);
    for (size_t i = 0; i < f->c->n_issuers; i++) {
        feed_stats_prom(out, &f->iss[i].stats, f->c->issuers[i].id, 0);
    }
    fputs("# HELP cardwatch_rule_precision confirmed_fraud / "
          "(confirmed_fraud + legitimate) per issuer and rule.\n"
          "# TYPE cardwatch_rule_precision gauge\n",
          out);
    for (size_t i = 0; i < f->c->n_issuers; i++) {
        feed_stats_prom(out, &f->iss[i].stats, f->c->issuers[i].id, 1);
    }
}

void feed_destroy(struct feed *f)
{
    if (f == NULL) {
        return;
    }
    /* Answer what is still open while the connections exist. */
    f->stopping = 1;
    answer_all(f);
    f->destroying = 1;
    rconn_destroy(f->rc); /* pending callbacks free their contexts */
    exposure_destroy(f->x);
    rconn_destroy(f->sub);
    for (struct feed **pp = &feeds; *pp != NULL; pp = &(*pp)->next_feed) {
        if (*pp == f) {
            *pp = f->next_feed;
            break;
        }
    }
    if (f->http != NULL) {
        evhttp_free(f->http); /* close callbacks free the fconns */
    }
    while (f->conns != NULL) { /* accepted but not yet set up */
        struct fconn *fc = f->conns;
        struct bufferevent *bev = fc->bev;
        conn_free(fc);
        bufferevent_decref(bev); /* evhttp_free dropped its own */
    }
    while (f->all != NULL) { /* none expected */
        struct fctx *x = f->all;
        x->req = NULL;
        x->redis_pending = 0;
        ctx_maybe_free(x);
    }
    struct event *evs[] = {f->poll, f->stats_ev, f->accept_timer};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (evs[i] != NULL) {
            event_free(evs[i]);
        }
    }
    for (size_t i = 0; f->iss != NULL && i < f->c->n_issuers; i++) {
        feed_stats_free(&f->iss[i].stats);
    }
    if (f->ssl != NULL) {
        SSL_CTX_free(f->ssl);
    }
    free(f->slots);
    feed_throttle_destroy(f->throttle);
    free(f->iss);
    free(f->buckets);
    free(f->csp);
    feed_tokens_destroy(f->tokens);
    free(f);
}
