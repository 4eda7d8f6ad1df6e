/* kafka_wmark.c - see kafka_wmark.h. */
#include "kafka_wmark.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define MOD "source"

struct kafka_wmark {
    rd_kafka_t *rk;
    char topic[256];
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    int stop;
    uint64_t gen; /* bumped by every new set */
    int32_t *parts;
    int64_t *high; /* -1 = no answer yet */
    size_t n;
    rd_kafka_resp_err_t last_err; /* of the last failed query (logged once) */
};

/* The next round's deadline: now + ms on the monotonic clock. */
static struct timespec after_ms(long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long ns = t.tv_nsec + (ms % 1000) * 1000000L; /* < 2 s */
    t.tv_sec += ms / 1000 + ns / 1000000000L;
    t.tv_nsec = ns % 1000000000L;
    return t;
}

static void *worker(void *arg)
{
    struct kafka_wmark *w = arg;
    int32_t *mine = NULL; /* this round's partitions, a copy */
    size_t mine_cap = 0;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        if (w->n == 0) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        if (mine_cap < w->n) {
            int32_t *nm = realloc(mine, w->n * sizeof(*nm));
            if (nm == NULL) {
                struct timespec t = after_ms(KAFKA_WMARK_INTERVAL_MS);
                pthread_cond_timedwait(&w->cv, &w->mu, &t);
                continue; /* no memory now: the next round tries again */
            }
            mine = nm;
            mine_cap = w->n;
        }
        size_t n = w->n;
        memcpy(mine, w->parts, n * sizeof(*mine));
        uint64_t gen = w->gen;
        for (size_t i = 0; i < n && !w->stop; i++) {
            pthread_mutex_unlock(&w->mu);
            int64_t lo = -1, hi = -1;
            rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
                w->rk, w->topic, mine[i], &lo, &hi, KAFKA_WMARK_TIMEOUT_MS);
            pthread_mutex_lock(&w->mu);
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
                /* kept as it was; the broker's trouble shows in the
                 * Kafka health metrics and readiness */
                if (e != w->last_err) {
                    w->last_err = e;
                    log_debug(MOD, "watermarks of %s [%d]: %s", w->topic,
                              (int)mine[i], rd_kafka_err2str(e));
                }
                continue;
            }
            w->last_err = RD_KAFKA_RESP_ERR_NO_ERROR;
            if (gen != w->gen) {
                break; /* a new set came: start over with it */
            }
            w->high[i] = hi;
        }
        if (gen == w->gen && !w->stop) {
            struct timespec t = after_ms(KAFKA_WMARK_INTERVAL_MS);
            while (gen == w->gen && !w->stop &&
                   pthread_cond_timedwait(&w->cv, &w->mu, &t) != ETIMEDOUT) {
            }
        }
    }
    pthread_mutex_unlock(&w->mu);
    free(mine);
    return NULL;
}

struct kafka_wmark *kafka_wmark_new(rd_kafka_t *rk, const char *topic,
                                    char *errbuf, size_t errlen)
{
    struct kafka_wmark *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        snprintf(errbuf, errlen, "source: out of memory");
        return NULL;
    }
    w->rk = rk;
    snprintf(w->topic, sizeof(w->topic), "%s", topic);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    int e = pthread_create(&w->thread, NULL, worker, w);
    if (e != 0) {
        snprintf(errbuf, errlen, "source: cannot start the watermark "
                 "thread: %s", strerror(e));
        kafka_wmark_destroy(w);
        return NULL;
    }
    w->started = 1;
    return w;
}

int kafka_wmark_watch(struct kafka_wmark *w, const int32_t *parts, size_t n)
{
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    int same = n == w->n;
    for (size_t i = 0; i < n && same; i++) {
        same = parts[i] == w->parts[i];
    }
    if (same) {
        goto out;
    }
    int32_t *np = NULL;
    int64_t *nh = NULL;
    if (n > 0) {
        np = malloc(n * sizeof(*np));
        nh = malloc(n * sizeof(*nh));
        if (np == NULL || nh == NULL) {
            free(np);
            free(nh);
            rc = -1;
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        np[i] = parts[i];
        nh[i] = -1;
        for (size_t k = 0; k < w->n; k++) {
            if (w->parts[k] == parts[i]) {
                nh[i] = w->high[k];
                break;
            }
        }
    }
    free(w->parts);
    free(w->high);
    w->parts = np;
    w->high = nh;
    w->n = n;
    w->gen++;
    pthread_cond_signal(&w->cv);
out:
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int64_t kafka_wmark_high(struct kafka_wmark *w, int32_t partition)
{
    int64_t hi = -1;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n; i++) {
        if (w->parts[i] == partition) {
            hi = w->high[i];
            break;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return hi;
}

void kafka_wmark_destroy(struct kafka_wmark *w)
{
    if (w == NULL) {
        return;
    }
    if (w->started) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->parts);
    free(w->high);
    free(w);
}
