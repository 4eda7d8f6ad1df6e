/* exposure_filter.c - the in-process exposure filter of the exposure
 * module (see exposure.h): a binary fuse filter (xfilter.h) of every card
 * fingerprint in the buckets, so that lookups send Redis only the cards it
 * cannot rule out.
 *
 * A build belongs to one marker: after the guard approved marker G, the
 * fingerprints are read from the buckets RMODEL_LUA_SCAN at a time (each
 * read also returns the marker; another one abandons the build: the next
 * approval starts over), the filter is made on a thread, and swapped in on
 * the loop as the filter of G. A lookup uses it only while the approved
 * marker is G, and the lookup's own marker read confirms that G still held
 * in Redis when the cards were read; otherwise every card goes to Redis.
 * So a filter that is not built yet, or stale, never makes a card look
 * clean. Cards are only added to buckets by loads, which commit with a new
 * marker; retiring a card changes its record, not its place.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "clock.h"
#include "exposure_int.h"
#include "log.h"
#include "metrics.h"
#include "redis_conn.h"
#include "rmodel.h"
#include "xfilter.h"

#define MOD "exposure"
#define READ_BUCKETS 1024 /* buckets per read (about 40,000 cards) */

struct xbuild {
    struct exposure *x;
    char gen[72];        /* the marker it reads under */
    uint64_t next, buckets;
    uint64_t *keys;
    size_t n, cap;
    uint64_t t0;
    int reading;         /* a read is in flight */
    int abandoned;       /* the marker changed or the link dropped */
    /* the thread */
    pthread_t thread;
    int thread_on;
    int pipe[2];
    struct event *done_ev;
    struct xfilter *result;
    char err[160];
};

static void build_free(struct xbuild *b)
{
    if (b == NULL) {
        return;
    }
    if (b->thread_on) {
        pthread_join(b->thread, NULL);
    }
    if (b->done_ev != NULL) {
        event_free(b->done_ev);
    }
    if (b->pipe[0] >= 0) {
        close(b->pipe[0]);
        close(b->pipe[1]);
    }
    xfilter_free(b->result);
    free(b->keys);
    free(b);
}

int xp_filter_current(const struct exposure *x)
{
    return x->filter != NULL && x->guard == G_OK &&
           strcmp(x->filter_gen, x->gen) == 0;
}

static void *make_filter(void *arg)
{
    struct xbuild *b = arg;
    b->result = xfilter_build(b->keys, b->n, b->err, sizeof(b->err));
    char one = 1;
    ssize_t w = write(b->pipe[1], &one, 1);
    (void)w; /* a pipe with room for it: it cannot fail */
    return NULL;
}

/* The thread is done: swap the filter in (on the loop). */
static void on_made(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct xbuild *b = arg;
    struct exposure *x = b->x;
    pthread_join(b->thread, NULL);
    b->thread_on = 0;
    x->build = NULL;
    if (b->result == NULL) {
        log_error(MOD, "exposure filter for generation %s not built: %s; "
                  "every card is looked up in Redis (tried again at the "
                  "next check)", b->gen, b->err);
        build_free(b);
        return;
    }
    double secs = (double)(clock_mono_ns() - b->t0) / 1e9;
    size_t cards = xfilter_keys(b->result), bytes = xfilter_bytes(b->result);
    xfilter_free(x->filter);
    x->filter = b->result;
    b->result = NULL;
    snprintf(x->filter_gen, sizeof(x->filter_gen), "%s", b->gen);
    log_info(MOD, "exposure filter built: %zu cards, %zu bytes (%.2f per "
             "card), %.2f s (generation %s)%s", cards, bytes,
             cards ? (double)bytes / (double)cards : 0.0, secs, b->gen,
             xp_filter_current(x) ? "" : "; not current: a newer "
             "generation is being checked");
    if (x->metrics != NULL) {
        metrics_gauge(x->metrics, METRICS_G_FILTER_CARDS, (double)cards);
        metrics_gauge(x->metrics, METRICS_G_FILTER_BYTES, (double)bytes);
        metrics_gauge(x->metrics, METRICS_G_FILTER_BUILD_SECONDS, secs);
        metrics_gauge(x->metrics, METRICS_G_FILTER_BUILT_AT,
                      (double)clock_wall_ms() / 1e3);
        metrics_filter_generation(x->metrics, b->gen);
        metrics_gauge(x->metrics, METRICS_G_FILTER_CURRENT,
                      xp_filter_current(x));
    }
    build_free(b);
    if (!xp_filter_current(x)) {
        xp_filter_want(x);
    }
}

/* Every card read: make the filter on a thread. */
static void start_thread(struct exposure *x, struct xbuild *b)
{
    if (pipe(b->pipe) != 0) {
        b->pipe[0] = b->pipe[1] = -1;
        goto fail;
    }
    b->done_ev = event_new(x->base, b->pipe[0], EV_READ, on_made, b);
    if (b->done_ev == NULL || event_add(b->done_ev, NULL) != 0) {
        goto fail;
    }
    if (pthread_create(&b->thread, NULL, make_filter, b) != 0) {
        goto fail;
    }
    b->thread_on = 1;
    return;
fail:
    log_error(MOD, "exposure filter: no thread or pipe for the build; every "
              "card is looked up in Redis");
    x->build = NULL;
    build_free(b);
}

static void read_next(struct exposure *x, struct xbuild *b);

/* One range of buckets: {buckets, {fingerprints}, marker}. */
static void on_read(struct exposure *x, const redisReply *r, void *arg)
{
    struct xbuild *b = arg;
    b->reading = 0;
    if (b->abandoned || r == NULL) {
        if (x->build == b) {
            x->build = NULL;
        }
        build_free(b);
        return;
    }
    const redisReply *mk = r->type == REDIS_REPLY_ARRAY && r->elements == 3
                               ? r->element[2] : NULL;
    if (mk == NULL || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_ARRAY ||
        mk->type != REDIS_REPLY_STRING || strlen(b->gen) != mk->len ||
        memcmp(mk->str, b->gen, mk->len) != 0) {
        if (r->type == REDIS_REPLY_ERROR) {
            log_warn(MOD, "exposure filter: reading the cards answered %s; "
                     "every card is looked up in Redis", r->str);
        }
        x->build = NULL; /* the next approval starts over */
        build_free(b);
        return;
    }
    const redisReply *fps = r->element[1];
    if (b->n + fps->elements > b->cap) {
        size_t ncap = b->cap ? b->cap : 65536;
        while (ncap < b->n + fps->elements) {
            ncap *= 2;
        }
        uint64_t *nk = realloc(b->keys, ncap * sizeof(*nk));
        if (nk == NULL) {
            log_error(MOD, "exposure filter: out of memory reading %zu "
                      "cards; every card is looked up in Redis", b->n);
            x->build = NULL;
            build_free(b);
            return;
        }
        b->keys = nk;
        b->cap = ncap;
    }
    for (size_t i = 0; i < fps->elements; i++) {
        const redisReply *f = fps->element[i];
        if (f->type == REDIS_REPLY_STRING && f->len == RMODEL_FP_BIN) {
            b->keys[b->n++] = xfilter_key_bin((const uint8_t *)f->str);
        }
    }
    b->buckets = strtoull(r->element[0]->str, NULL, 10);
    b->next += READ_BUCKETS;
    if (b->next < b->buckets) {
        read_next(x, b);
    } else {
        start_thread(x, b);
    }
}

static void read_next(struct exposure *x, struct xbuild *b)
{
    char first[24], count[24];
    snprintf(first, sizeof(first), "%" PRIu64, b->next);
    snprintf(count, sizeof(count), "%d", READ_BUCKETS);
    const char *argv[] = {"EVAL", RMODEL_LUA_SCAN, "2", x->lkey, x->xkey,
                          x->bprefix, first, count, "keys"};
    size_t lens[] = {4, strlen(RMODEL_LUA_SCAN), 1, x->lkey_len,
                     x->xkey_len, x->bprefix_len, strlen(first),
                     strlen(count), 4};
    if (xp_cmd(x, 9, argv, lens, on_read, b) == 0) {
        b->reading = 1;
    } else {
        x->build = NULL;
        build_free(b);
    }
}

void xp_filter_want(struct exposure *x)
{
    if (x->metrics != NULL && x->want_filter) {
        metrics_gauge(x->metrics, METRICS_G_FILTER_CURRENT,
                      xp_filter_current(x));
    }
    if (!x->want_filter || xp_filter_current(x) || x->guard != G_OK) {
        return;
    }
    if (x->build != NULL) {
        if (strcmp(x->build->gen, x->gen) == 0) {
            return; /* under way for this marker */
        }
        if (x->build->thread_on) {
            return; /* on_made starts the next one */
        }
        x->build->abandoned = 1; /* its pending read frees it */
        x->build = NULL;
    }
    struct xbuild *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return; /* tried again at the next approval */
    }
    b->x = x;
    b->pipe[0] = b->pipe[1] = -1;
    b->buckets = 1;
    b->t0 = clock_mono_ns();
    snprintf(b->gen, sizeof(b->gen), "%s", x->gen);
    x->build = b;
    read_next(x, b);
}

void xp_filter_free(struct exposure *x)
{
    /* Called once the connection's contexts no longer reach x: a read in
     * flight will not call back, so the build goes now (a thread running
     * is waited for). */
    build_free(x->build);
    x->build = NULL;
    xfilter_free(x->filter);
    x->filter = NULL;
}
