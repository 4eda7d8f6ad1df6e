/* sink_file.c - see sink_file.h. */
#include "sink_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct qline {
    int64_t pos;
    size_t len;
    char *data;
};

struct lane {
    FILE *f;            /* lane 0: the output; others: a spool file */
    struct qline *q;    /* queued, sorted by pos */
    size_t head, n, cap; /* q[head .. head+n) */
};

struct sink_file {
    char *path;    /* NULL for stdout */
    char *partial; /* path.partial */
    char name[256]; /* for messages: what is written to */
    FILE *out;
    struct lane *lanes;
    size_t n_lanes;
    uint64_t lines;
    size_t queued;
    int flushed;  /* sink_file_flush() ran: the sink takes no more lines */
    int finished;
    char error[512];
};

struct sink_file *sink_file_new(const char *path, size_t n_lanes,
                                char *errbuf, size_t errlen)
{
    struct sink_file *f = calloc(1, sizeof(*f));
    if (f == NULL || n_lanes == 0 ||
        (f->lanes = calloc(n_lanes, sizeof(*f->lanes))) == NULL) {
        snprintf(errbuf, errlen, "%s: out of memory", path);
        free(f);
        return NULL;
    }
    f->n_lanes = n_lanes;
    struct stat st;
    if (strcmp(path, "-") == 0) {
        f->out = stdout;
    } else if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* A device or a pipe (/dev/null, a FIFO): written in place; a
         * rename onto it would replace it. */
        f->out = fopen(path, "w");
        if (f->out == NULL) {
            snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
            goto err;
        }
    } else {
        f->path = strdup(path);
        if (f->path == NULL ||
            asprintf(&f->partial, "%s.partial", path) < 0) {
            f->partial = NULL;
            snprintf(errbuf, errlen, "%s: out of memory", path);
            goto err;
        }
        f->out = fopen(f->partial, "w");
        if (f->out == NULL) {
            snprintf(errbuf, errlen, "%s: %s", f->partial, strerror(errno));
            goto err;
        }
    }
    snprintf(f->name, sizeof(f->name), "%s",
             f->partial ? f->partial : f->out == stdout ? "stdout" : path);
    f->lanes[0].f = f->out;
    for (size_t i = 1; i < n_lanes; i++) {
        /* Spool files are created on first use (most lanes stay empty). */
        f->lanes[i].f = NULL;
    }
    return f;
err:
    sink_file_destroy(f);
    return NULL;
}

static void set_error(struct sink_file *f, const char *what)
{
    if (f->error[0] == '\0') {
        snprintf(f->error, sizeof(f->error), "%s: %s: %s", f->name, what,
                 strerror(errno));
    }
}

int sink_file_put(struct sink_file *f, size_t lane, int64_t pos,
                  const void *line, size_t len)
{
    if (lane >= f->n_lanes || f->flushed) {
        return -1;
    }
    struct lane *l = &f->lanes[lane];
    if (l->head + l->n == l->cap) {
        if (l->head > 0) {
            memmove(l->q, l->q + l->head, l->n * sizeof(*l->q));
            l->head = 0;
        }
        if (l->n == l->cap) {
            size_t ncap = l->cap ? l->cap * 2 : 64;
            struct qline *nq = realloc(l->q, ncap * sizeof(*nq));
            if (nq == NULL) {
                return -1;
            }
            l->q = nq;
            l->cap = ncap;
        }
    }
    char *d = malloc(len + 1);
    if (d == NULL) {
        return -1;
    }
    memcpy(d, line, len);
    d[len] = '\n';
    /* Mostly in order: insert from the tail. Equal positions keep the
     * order they were put in. */
    size_t i = l->head + l->n;
    while (i > l->head && l->q[i - 1].pos > pos) {
        l->q[i] = l->q[i - 1];
        i--;
    }
    l->q[i] = (struct qline){pos, len + 1, d};
    l->n++;
    f->lines++;
    f->queued++;
    return 0;
}

static int lane_file(struct sink_file *f, size_t lane)
{
    struct lane *l = &f->lanes[lane];
    if (l->f == NULL) {
        l->f = tmpfile();
        if (l->f == NULL) {
            set_error(f, "spool file");
            return -1;
        }
    }
    return 0;
}

int sink_file_release(struct sink_file *f, size_t lane, int64_t upto)
{
    if (lane >= f->n_lanes) {
        return -1;
    }
    struct lane *l = &f->lanes[lane];
    while (l->n > 0 && l->q[l->head].pos < upto) {
        struct qline *q = &l->q[l->head];
        if (f->error[0] == '\0' && lane_file(f, lane) == 0 &&
            fwrite(q->data, 1, q->len, l->f) != q->len) {
            set_error(f, "write");
        }
        free(q->data);
        l->head++;
        l->n--;
        f->queued--;
    }
    if (l->n == 0) {
        l->head = 0;
    }
    return f->error[0] ? -1 : 0;
}

static int append_lane(struct sink_file *f, FILE *src)
{
    char buf[65536];
    if (fflush(src) != 0 || fseek(src, 0, SEEK_SET) != 0) {
        set_error(f, "spool file");
        return -1;
    }
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), src)) > 0) {
        if (fwrite(buf, 1, n, f->out) != n) {
            set_error(f, "write");
            return -1;
        }
    }
    if (ferror(src)) {
        set_error(f, "spool file");
        return -1;
    }
    return 0;
}

int sink_file_flush(struct sink_file *f, char *errbuf, size_t errlen)
{
    if (!f->flushed) {
        f->flushed = 1;
        for (size_t i = 0; i < f->n_lanes; i++) {
            sink_file_release(f, i, INT64_MAX);
        }
        for (size_t i = 1; i < f->n_lanes && f->error[0] == '\0'; i++) {
            if (f->lanes[i].f != NULL) {
                append_lane(f, f->lanes[i].f);
            }
        }
        if (f->error[0] == '\0' && fflush(f->out) != 0) {
            set_error(f, "write");
        }
        if (f->error[0] == '\0' && f->path != NULL) {
            FILE *out = f->out;
            f->out = NULL;
            f->lanes[0].f = NULL;
            if (fclose(out) != 0) {
                set_error(f, "close");
            }
        }
    }
    if (f->error[0] != '\0') {
        snprintf(errbuf, errlen, "%s", f->error);
        return -1;
    }
    return 0;
}

int sink_file_finish(struct sink_file *f, char *errbuf, size_t errlen)
{
    if (sink_file_flush(f, errbuf, errlen) != 0) {
        return -1;
    }
    if (!f->finished && f->path != NULL &&
        rename(f->partial, f->path) != 0) {
        set_error(f, "rename");
        snprintf(errbuf, errlen, "%s", f->error);
        return -1;
    }
    f->finished = 1;
    return 0;
}

uint64_t sink_file_lines(const struct sink_file *f)
{
    return f->lines;
}

size_t sink_file_queued(const struct sink_file *f)
{
    return f->queued;
}

const char *sink_file_error(const struct sink_file *f)
{
    return f->error[0] ? f->error : NULL;
}

void sink_file_destroy(struct sink_file *f)
{
    if (f == NULL) {
        return;
    }
    for (size_t i = 0; i < f->n_lanes; i++) {
        struct lane *l = &f->lanes[i];
        for (size_t k = 0; k < l->n; k++) {
            free(l->q[l->head + k].data);
        }
        free(l->q);
        if (i > 0 && l->f != NULL) {
            fclose(l->f);
        }
    }
    if (f->out != NULL && f->out != stdout) {
        fclose(f->out);
    }
    if (f->path != NULL && !f->finished && f->partial != NULL) {
        unlink(f->partial);
    }
    free(f->lanes);
    free(f->path);
    free(f->partial);
    free(f);
}
