/* feed_int.h - private to the issuer feed's server files (feed.c,
 * feed_conn.c, feed_ctx.c, feed_list.c, feed_sub.c, feed_metrics.c,
 * feed_handlers.c): the structs they share and the functions one calls in
 * another. Nothing outside these files includes it; the feed's public API
 * is feed.h.
 *
 * One struct fctx per HTTP request, from the request callback to its one
 * reply (feed_ctx_done). A Redis command holds the fctx until its callback has
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
 * heads feed_http.c accepted (see "connections" in feed_conn.c).
 */
#ifndef CARDWATCH_FEED_INT_H
#define CARDWATCH_FEED_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/event.h>
#include <event2/http.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/ssl.h>

#include "alert.h"
#include "config.h"
#include "feed.h"
#include "feed_http.h"
#include "feed_outcome.h"
#include "feed_query.h"
#include "feed_token.h"
#include "feed_triage.h"
#include "redis_conn.h"
#include "rmodel.h"

struct bufferevent;
struct evbuffer;
struct evconnlistener;

#define MOD "feed"
#define POLL_MS 1000 /* safety poll while clients wait */
#define MAX_STATUS 600

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
    struct feed_asset chartjs; /* the page's Chart.js, no token needed */
    struct event *poll, *stats_ev;
    struct rconn *sub; /* subscriber: PUBLISH <issuer> wakes waiters */
    int sub_up;
    struct feed *next_feed; /* the list of live feeds (feed_conn.c) */
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

/* ---- feed_conn.c: connections ---- */

/* The live feeds, for the listener's error callback, which evhttp calls
 * with the evhttp, not with the feed (feed_new / feed_destroy; loop
 * thread only). Unregistering a feed not registered is a no-op. */
void feed_conn_register(struct feed *f);
void feed_conn_unregister(struct feed *f);

/* evhttp_set_bevcb's callback: a connection was accepted. Returns its
 * bufferevent (a TLS one with [feed] tls_cert); NULL lets evhttp make a
 * plain one, whose requests are then answered 503 (out of memory). */
struct bufferevent *feed_conn_new(struct event_base *base, void *arg);

/* Forgets fc: it is closed or was never set up. */
void feed_conn_free(struct fconn *fc);

/* The tracked connection of a request; NULL when it is not tracked (out
 * of memory at accept). */
struct fconn *feed_conn_of(struct feed *f, struct evhttp_connection *ev);

/* evhttp_request_set_on_complete_cb's callback (arg: the fconn): the
 * answer was written, the next request may come. */
void feed_on_req_complete(struct evhttp_request *req, void *arg);

/* The accept-pause timer (arg: the feed): accepting may go on. */
void feed_on_accept_timer(evutil_socket_t fd, short what, void *arg);

/* The listener's error callback (arg: the evhttp): accept() failed;
 * pauses accepting for a while (feed_conn.c). */
void feed_on_accept_error(struct evconnlistener *lev, void *arg);

/* ---- feed_ctx.c: request contexts, replies, Redis commands ---- */

/* Logs that an allocation failed while serving (what: the request or
 * connection step), at most once per 10 s for the same text. */
void feed_log_oom(const char *what);

/* Copies a path for the log: printable ASCII only, cut to fit; "-" for
 * none. */
void feed_safe_copy(char *dst, size_t cap, const char *src);

/* A context for req, counted as active; NULL when out of memory. */
struct fctx *feed_ctx_new(struct feed *f, struct evhttp_request *req);

/* Frees x's collected list items (include=outcome). */
void feed_list_free(struct fctx *x);

/* Frees x once it is answered and no Redis callback is due. */
void feed_ctx_maybe_free(struct fctx *x);

/* Puts x (a long poll or stream) on its issuer's waiting list, once. */
void feed_waiter_add(struct fctx *x);

/* The request has had its reply (or its connection is gone): log it,
 * forget it everywhere, free the context unless a Redis callback is due. */
void feed_ctx_done(struct fctx *x);

/* Content-Type ctype and the headers every answer carries. */
void feed_add_common_headers(struct fctx *x, const char *ctype);

/* The replies: each ends the request (feed_ctx_done). feed_reply_buf
 * sends b (may be NULL; borrowed) with code, headers only for HEAD;
 * feed_reply_json steals a reference to o; feed_reply_oom answers 500
 * and logs it; feed_reply_unavailable answers 503 with Retry-After. */
void feed_reply_buf(struct fctx *x, int code, const char *ctype,
                    struct evbuffer *b);
void feed_reply_text(struct fctx *x, int code, const char *json);
void feed_reply_oom(struct fctx *x);
void feed_reply_json(struct fctx *x, int code, json_t *o);
void feed_reply_error(struct fctx *x, int code, const char *msg);
void feed_reply_not_found(struct fctx *x);
void feed_reply_unavailable(struct fctx *x, const char *msg);
void feed_reply_405(struct fctx *x, const char *allow);

/* Sends argv (lens: the argument lengths) for x; cb answers it. Returns
 * 0, or -1 when out of memory. */
int feed_redis_cmd_lens(struct fctx *x, rconn_cb cb, int argc,
                        const char *const *argv, const size_t *lens);

/* feed_redis_cmd_lens for at most 16 NUL-terminated arguments. */
int feed_redis_cmd(struct fctx *x, rconn_cb cb, int argc,
                   const char *const *argv);

/* The start of a Redis callback: 1 when the request still wants the
 * answer, else 0: the context is freed (answered meanwhile) or answered
 * 503 (the module is closing). */
int feed_redis_answer(struct fctx *x, const redisReply *r);

/* ---- feed_list.c: alert lists (long poll and stream) ---- */

/* Answers a list request with the entries of r (NULL = none). */
void feed_reply_list(struct fctx *x, const redisReply *r);

/* Ends an event stream (and its request). */
void feed_stream_end(struct fctx *x);

/* Writes b (drained) to the stream of x. */
void feed_stream_write(struct fctx *x, struct evbuffer *b);

/* Queries the entries after x's cursor (a list, a long poll or a
 * stream); answers with 503/oom or ends the stream when it cannot. */
void feed_query_list(struct fctx *x);

/* Watches x's socket for the client closing its end while it waits. */
void feed_watch_close(struct fctx *x);

/* The request timer (arg: the fctx): Redis too slow, the end of a long
 * poll's wait, or a stream's keepalive. */
void feed_on_timer(evutil_socket_t fd, short what, void *arg);

/* Asks Redis for the newest entry of issuer i's feed, then queries the
 * waiters behind it; feed_check_all for every issuer. */
void feed_issuer_check(struct feed *f, size_t i);
void feed_check_all(struct feed *f);

/* The safety poll (arg: the feed), every POLL_MS. */
void feed_on_poll(evutil_socket_t fd, short what, void *arg);

/* ---- feed_sub.c: the subscriber connection ---- */

/* Connects f->sub, SUBSCRIBEd to f->channel. Returns 0, or -1 with a
 * message (a Redis not reachable yet is not an error). */
int feed_sub_open(struct feed *f, char *errbuf, size_t errlen);

/* ---- feed_metrics.c: statistics for the metrics ---- */

/* Asks Redis for every issuer's outcome counts (when it is up). */
void feed_stats_refresh(struct feed *f);

/* The stats timer (arg: the feed): sweeps the throttle, refreshes. */
void feed_on_stats_timer(evutil_socket_t fd, short what, void *arg);

/* ---- feed_handlers.c ---- */

/* evhttp's request callback (arg: the feed). */
void feed_on_request(struct evhttp_request *req, void *arg);

#endif
