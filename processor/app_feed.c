/* app_feed.c - see app_feed.h. */
#include "app_feed.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#include "clock.h"
#include "feed.h"
#include "feed_token.h"
#include "http_admin.h"
#include "log.h"

#define MOD "feed"
#define STOP_WAIT_MS 5000 /* for requests waiting for Redis at a stop */
#define FLUSH_WAIT_MS 1000 /* then for their 503 answers to be written */

struct fapp {
    const struct config *c;
    struct event_base *base;
    struct feed *feed;
    struct http_admin *http;
    struct event *sigint, *sigterm, *tick;
    uint64_t stop_deadline_ns;
    int stopping;
    int cancelled; /* the requests still in progress were answered 503 */
};

static int fapp_ready(void *arg, char *why, size_t whylen)
{
    struct fapp *a = arg;
    return feed_ready(a->feed, why, whylen);
}

static char *fapp_metrics(void *arg)
{
    struct fapp *a = arg;
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    if (m == NULL) {
        return NULL;
    }
    feed_metrics(a->feed, m);
    if (fclose(m) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct fapp *a = arg;
    if (a->stopping) {
        log_warn(MOD, "second signal: exiting now");
        event_base_loopbreak(a->base);
        return;
    }
    log_info(MOD, "%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    a->stopping = 1;
    a->stop_deadline_ns = clock_mono_ns() + (uint64_t)STOP_WAIT_MS * 1000000ull;
    feed_stop(a->feed);
    struct timeval tv = {0, 20000};
    event_add(a->tick, &tv);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fapp *a = arg;
    size_t busy = feed_busy(a->feed);
    if (busy == 0) {
        event_base_loopexit(a->base, NULL);
    } else if (clock_mono_ns() > a->stop_deadline_ns && !a->cancelled) {
        /* answered while the loop runs, so that the 503 reaches them;
         * the rest of busy are answers a client does not read (below) */
        size_t open = feed_requests(a->feed);
        if (open > 0) {
            log_warn(MOD,
                     "%zu request(s) still in progress after %d ms; "
                     "answering them 503",
                     open, STOP_WAIT_MS);
        }
        a->cancelled = 1;
        a->stop_deadline_ns =
            clock_mono_ns() + (uint64_t)FLUSH_WAIT_MS * 1000000ull;
        feed_cancel(a->feed);
    } else if (clock_mono_ns() > a->stop_deadline_ns) {
        log_warn(MOD,
                 "%zu answer(s) still unwritten after %d ms more "
                 "(clients not reading); closing them",
                 busy, FLUSH_WAIT_MS);
        event_base_loopexit(a->base, NULL);
    }
}

int app_feed(const struct config *c)
{
    struct fapp a = {0};
    char err[1024];
    int rc = 1;
    a.c = c;
    signal(SIGPIPE, SIG_IGN);
    a.base = event_base_new();
    if (a.base == NULL) {
        log_error(MOD, "out of memory at start-up");
        goto out;
    }
    a.feed = feed_new(a.base, c, err, sizeof(err));
    if (a.feed == NULL) {
        log_error(MOD, "%s", err);
        goto out;
    }
    if (c->http_listen[0] != '\0') {
        struct http_admin_ops ho = {fapp_ready, fapp_metrics, NULL, NULL, &a};
        a.http = http_admin_new(a.base, c->http_listen, &ho, err, sizeof(err));
        if (a.http == NULL) {
            log_error(MOD, "%s", err);
            goto out;
        }
    }
    a.sigint = evsignal_new(a.base, SIGINT, on_signal, &a);
    a.sigterm = evsignal_new(a.base, SIGTERM, on_signal, &a);
    a.tick = event_new(a.base, -1, EV_PERSIST, on_tick, &a);
    if (a.sigint == NULL || a.sigterm == NULL || a.tick == NULL) {
        log_error(MOD, "out of memory at start-up");
        goto out;
    }
    event_add(a.sigint, NULL);
    event_add(a.sigterm, NULL);
    event_base_dispatch(a.base);
    log_info(MOD, "stopped");
    rc = 0;
out:
    http_admin_destroy(a.http);
    feed_destroy(a.feed);
    struct event *evs[] = {a.sigint, a.sigterm, a.tick};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (evs[i] != NULL) {
            event_free(evs[i]);
        }
    }
    if (a.base != NULL) {
        event_base_free(a.base);
    }
    return rc;
}

int app_token(FILE *out, FILE *hint)
{
    uint8_t rnd[FEED_TOKEN_BYTES];
    char tok[2 * FEED_TOKEN_BYTES], hex[FEED_HASH_HEX + 1];
    size_t got = 0;
    while (got < sizeof(rnd)) {
        ssize_t n = getrandom(rnd + got, sizeof(rnd) - got, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            fprintf(hint ? hint : stderr,
                    "cardwatch token: no randomness "
                    "from the OS: %s\n",
                    strerror(errno));
            return 1;
        }
        got += (size_t)n;
    }
    int len = feed_token_encode(rnd, sizeof(rnd), tok, sizeof(tok));
    OPENSSL_cleanse(rnd, sizeof(rnd));
    if (len < 0 || feed_token_hash_hex(tok, (size_t)len, hex) != 0) {
        fprintf(hint ? hint : stderr, "cardwatch token: cannot hash\n");
        return 1;
    }
    fprintf(out, "%s\ntoken_sha256 = %s\n", tok, hex);
    fflush(out);
    OPENSSL_cleanse(tok, sizeof(tok));
    if (hint != NULL) {
        fprintf(hint,
                "cardwatch token: give the first line to the issuer "
                "(once, over a secure channel; it is not stored anywhere);\n"
                "put the second in its [issuer ID] section (append with a "
                "comma to keep an old token valid during a rotation).\n");
    }
    return 0;
}
