/* source_file.c - see source_file.h. */
#include "source_file.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clock.h"
#include "log.h"

#define MOD "source"
/* Batches per loop turn before other events get their say, and the time
 * a turn may take: a batch of invalid events costs far more than one of
 * clean ones (dead letters: 16 batches of them held the loop 3 s under
 * ASan, long enough for Redis to be declared lost and for SIGTERM to
 * wait), so a slice also ends after 10 ms. */
#define SLICE_BATCHES 16
#define SLICE_NS (10 * 1000000ull)
/* Input one read may go through without finding a record (blank lines, a
 * line over the record limit, a gzip bomb) before it returns to the loop:
 * 8 MiB is a few ms of inflating, so a signal is never kept waiting. */
#define STEP_LIMIT ((size_t)8 << 20)
/* Lines over the record limit logged one by one; then only counted (they
 * are dead letters, reason too_long). */
#define TOO_LONG_LOGGED 10

struct source_file {
    struct source_file_opts o;
    struct reader *r;
    struct event *kick_ev;
    struct reader_rec *recs;
    struct pipeline_record *prec;
    uint64_t too_long; /* records over the limit so far */
    int64_t done_upto;
    int paused;
    int stopped;
    int at_end;
    char error[1024];
};

static void slice(struct source_file *s)
{
    uint64_t t0 = clock_mono_ns();
    for (int round = 0; round < SLICE_BATCHES; round++) {
        if (s->stopped || s->at_end || s->paused) {
            return;
        }
        if (round > 0 && clock_mono_ns() - t0 > SLICE_NS) {
            break;
        }
        size_t want = (size_t)s->o.batch_size;
        size_t cap = s->o.capacity(s->o.arg);
        if (cap == 0) {
            return; /* the pipeline kicks us when it has room */
        }
        if (cap < want) {
            want = cap;
        }
        size_t n = 0;
        int rc = reader_next_batch(s->r, s->recs, want, &n);
        if (rc == 2) {
            break; /* no record yet: go on after the loop's other work */
        }
        if (rc < 0) {
            snprintf(s->error, sizeof(s->error), "%s", reader_error(s->r));
            log_error(MOD, "%s", s->error);
            s->at_end = 1;
            return;
        }
        if (rc == 0 || n == 0) {
            s->at_end = 1;
            return;
        }
        for (size_t i = 0; i < n; i++) {
            const struct reader_rec *rr = &s->recs[i];
            if (rr->too_long && s->too_long++ < TOO_LONG_LOGGED) {
                log_warn(MOD, "%s: %s %" PRId64 " is longer than the record "
                         "limit; it goes to the dead letters (too_long)%s",
                         reader_path(s->r),
                         reader_format_of(s->r) == READER_JSONL ? "line"
                                                                : "record",
                         rr->pos,
                         s->too_long == TOO_LONG_LOGGED
                             ? "; further ones are only counted"
                             : "");
            }
            s->prec[i].partition = 0;
            s->prec[i].offset = rr->pos;
            s->prec[i].payload = rr->too_long ? "" : rr->data;
            s->prec[i].len = rr->too_long ? 0 : rr->len;
            s->prec[i].too_long = rr->too_long;
        }
        if (s->o.intake(s->o.arg, s->prec, n) != 0) {
            /* The reader cannot rewind: losing records is not an option. */
            snprintf(s->error, sizeof(s->error),
                     "%s: out of memory taking records at position %" PRId64,
                     reader_path(s->r), s->recs[0].pos);
            log_error(MOD, "%s", s->error);
            s->at_end = 1;
            return;
        }
    }
    source_file_kick(s); /* more to read: on the next loop turn */
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    slice(arg);
}

struct source_file *source_file_new(struct event_base *base,
                                    const struct source_file_opts *o,
                                    char *errbuf, size_t errlen)
{
    struct source_file *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(errbuf, errlen, "source: out of memory");
        return NULL;
    }
    s->o = *o;
    s->recs = calloc((size_t)o->batch_size, sizeof(*s->recs));
    s->prec = calloc((size_t)o->batch_size, sizeof(*s->prec));
    s->kick_ev = event_new(base, -1, 0, on_kick, s);
    if (s->recs == NULL || s->prec == NULL || s->kick_ev == NULL) {
        snprintf(errbuf, errlen, "source: out of memory");
        goto err;
    }
    s->r = reader_open(o->path, o->format, 0, errbuf, errlen);
    if (s->r == NULL) {
        goto err;
    }
    reader_set_step_limit(s->r, STEP_LIMIT);
    source_file_kick(s);
    return s;
err:
    source_file_destroy(s);
    return NULL;
}

void source_file_store(void *ctx, int32_t partition, int64_t offset)
{
    struct source_file *s = ctx;
    (void)partition;
    if (offset > s->done_upto) {
        s->done_upto = offset;
    }
}

void source_file_set_paused(void *ctx, int paused)
{
    struct source_file *s = ctx;
    s->paused = paused;
    if (!paused) {
        source_file_kick(s);
    }
}

void source_file_kick(void *ctx)
{
    struct source_file *s = ctx;
    if (s->kick_ev != NULL) {
        event_active(s->kick_ev, 0, 0);
    }
}

int source_file_at_end(const struct source_file *s)
{
    return s->at_end;
}

const char *source_file_error(const struct source_file *s)
{
    return s->error[0] ? s->error : NULL;
}

enum reader_format source_file_format(const struct source_file *s)
{
    return reader_format_of(s->r);
}

void source_file_progress(const struct source_file *s, uint64_t *done,
                          uint64_t *total)
{
    reader_progress(s->r, done, total);
}

const char *source_file_name(const struct source_file *s)
{
    return reader_path(s->r);
}

void source_file_stop(struct source_file *s)
{
    s->stopped = 1;
}

void source_file_destroy(struct source_file *s)
{
    if (s == NULL) {
        return;
    }
    if (s->kick_ev != NULL) {
        event_free(s->kick_ev);
    }
    reader_close(s->r);
    free(s->recs);
    free(s->prec);
    free(s);
}
