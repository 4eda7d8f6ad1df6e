/* feed.c - see feed.h: the issuer feed's life cycle (start, stop, drain,
 * destroy) and its TLS set-up. The requests, connections and Redis
 * connections are in the other feed_*.c files (feed_int.h).
 */
#include "feed.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "clock.h"
#include "exposure.h"
#include "feed_config.h"
#include "feed_int.h"
#include "feed_page.h"
#include "feed_triage.h"
#include "log.h"
#include "redis_cfg.h"

#define STATS_MS 5000     /* outcome counts for the metrics */
#define HTTP_TIMEOUT_S 30 /* evhttp read/write timeout */
#define FD_RESERVE 64     /* descriptors kept for Redis, logs, admin */

/* The main connection's state: the set guard checks again. */
static void on_redis_state(void *arg, int up)
{
    struct feed *f = arg;
    if (f->x != NULL) {
        exposure_link_state(f->x, up);
    }
}

/* Connects to Redis: the command connection, on which the exposed-card
 * set guard runs, and the subscriber (feed_sub.c). Returns 0, or -1 with
 * a message (a Redis not reachable yet is not an error). */
static int redis_open(struct feed *f, char *errbuf, size_t errlen)
{
    struct redis_cfg_use ru = {
        .name = "feed",
        .while_down = "the feed answers 503",
        .on_state = on_redis_state,
        .state_arg = f,
    };
    f->rc = redis_cfg_connect(f->base, f->c, &ru, errbuf, errlen);
    if (f->rc == NULL) {
        return -1;
    }
    if (feed_sub_open(f, errbuf, errlen) != 0) {
        return -1;
    }
    struct exposure_opts xo = {
        .prefix = f->c->redis_prefix,
        .key_id = "",
        .while_down = "the feed is not ready",
    };
    f->x = exposure_new(f->base, f->rc, &xo, errbuf, errlen);
    return f->x != NULL ? 0 : -1;
}

/* ---- TLS ---- */

static int tls_setup(struct feed *f, char *errbuf, size_t errlen)
{
    f->ssl = feed_tls_context(f->c->feed_tls_cert, f->c->feed_tls_key, errbuf,
                              errlen);
    return f->ssl != NULL ? 0 : -1; /* feed_conn_new makes TLS bufferevents */
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
        f->csp == NULL || f->throttle == NULL ||
        feed_asset_chartjs(&f->chartjs) != 0) {
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
    if (redis_open(f, errbuf, errlen) != 0) {
        goto err;
    }
    f->http = evhttp_new(base);
    f->poll = event_new(base, -1, EV_PERSIST, feed_on_poll, f);
    f->stats_ev = event_new(base, -1, EV_PERSIST, feed_on_stats_timer, f);
    f->accept_timer = evtimer_new(base, feed_on_accept_timer, f);
    if (f->http == NULL || f->poll == NULL || f->stats_ev == NULL ||
        f->accept_timer == NULL) {
        snprintf(errbuf, errlen, "feed: out of memory");
        goto err;
    }
    feed_conn_register(f);
    fd_budget(f);
    evhttp_set_max_headers_size(f->http, 8192);
    evhttp_set_max_body_size(f->http, c->feed_max_body);
    evhttp_set_timeout(f->http, HTTP_TIMEOUT_S);
    evhttp_set_allowed_methods(
        f->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                     EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                     EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(f->http, feed_on_request, f);
    evhttp_set_bevcb(f->http, feed_conn_new, f);
    if (c->feed_tls_cert[0] != '\0' && tls_setup(f, errbuf, errlen) != 0) {
        goto err;
    }
    if (bind_listen(f, errbuf, errlen) != 0) {
        goto err;
    }
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(f->sock),
                                feed_on_accept_error);
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
                feed_stream_end(x);
            } else {
                feed_reply_list(x, NULL);
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
            feed_stream_end(x);
        } else {
            feed_reply_unavailable(x, "shutting down");
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
    feed_conn_unregister(f);
    if (f->http != NULL) {
        evhttp_free(f->http); /* close callbacks free the fconns */
    }
    while (f->conns != NULL) { /* accepted but not yet set up */
        struct fconn *fc = f->conns;
        struct bufferevent *bev = fc->bev;
        feed_conn_free(fc);
        bufferevent_decref(bev); /* evhttp_free dropped its own */
    }
    while (f->all != NULL) { /* none expected */
        struct fctx *x = f->all;
        x->req = NULL;
        x->redis_pending = 0;
        feed_ctx_maybe_free(x);
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

