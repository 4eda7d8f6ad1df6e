/* reader.c - see reader.h. */
#include "reader.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "text.h"
#include "varint.h"

/* The decompressed-data buffer (at least; see reader.h) and the chunk of
 * compressed input read at a time, which is also the most the first read
 * (the one that looks for the gzip magic) takes. The fuzz build makes both
 * tiny so that records straddle refills all the time. */
#ifndef READER_BUF_SIZE
#define READER_BUF_SIZE ((size_t)4 << 20)
#endif
#ifndef READER_IN_SIZE
#define READER_IN_SIZE ((size_t)256 << 10)
#endif

#define VARINT_MAX 5

struct reader {
    int fd;     /* -1 when not open */
    int own_fd; /* 0 for stdin */
    char *name; /* display name */
    enum reader_format fmt;
    size_t max_record;

    /* Decompressed data: [pos, end) is not handed out yet. */
    unsigned char *buf;
    size_t cap, pos, end;
    size_t used;   /* high-water mark of end, for the wipe at close */
    size_t scan;   /* JSON lines: [pos, scan) holds no '\n' */
    uint64_t base; /* stream offset of buf[0] */
    int eof;       /* nothing follows end */
    int fail_next; /* a refill hit an error after producing data: the
                      next refill fails with the message already in err */
    int failed;    /* sticky */
    int err_shown; /* the last call failed: reader_error() shows err */

    size_t step_limit; /* reader_set_step_limit(); 0 = none */

    int64_t nrec; /* protobuf: records handed out */
    int64_t line; /* JSON lines: lines passed */
    /* JSON lines: inside a line longer than any record can be, looking
     * for its end; it is a too-long record unless it was blank. */
    int skipping;
    int skip_blank;
    int64_t skip_line;
    uint64_t skip_off;

    uint64_t raw_start; /* file offset when opened */
    uint64_t raw_read;  /* bytes read from fd since */
    uint64_t raw_total; /* file size; 0 when unknown */

    /* gzip */
    int gz;
    int zs_ready;   /* inflateInit2 done */
    int in_eof;     /* the compressed input ended */
    int member_end; /* a gzip member ended; another may follow */
    z_stream zs;
    unsigned char *in; /* READER_IN_SIZE bytes of compressed input */

    char err[1024];
};

static int is_blank_char(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static int is_blank(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_blank_char(p[i])) {
            return 0;
        }
    }
    return 1;
}

/* Reads up to n bytes from the file into p; *got = 0 at its end. Retries
 * on EINTR, waits on EAGAIN (a non-blocking stdin). Returns 0, or -1 with
 * the message in r->err. */
static int fd_read(struct reader *r, void *p, size_t n, size_t *got)
{
    for (;;) {
        ssize_t k = read(r->fd, p, n);
        if (k >= 0) {
            *got = (size_t)k;
            r->raw_read += (uint64_t)k;
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
            if (poll(&pfd, 1, -1) >= 0 || errno == EINTR) {
                continue;
            }
        }
        text_errf(r->err, sizeof(r->err), "%s: read failed at byte %llu: %s",
                  r->name, (unsigned long long)(r->raw_start + r->raw_read),
                  strerror(errno));
        return -1;
    }
}

static int refill_plain(struct reader *r)
{
    size_t got;

    if (fd_read(r, r->buf + r->end, r->cap - r->end, &got) != 0) {
        return -1;
    }
    if (got == 0) {
        r->eof = 1;
    }
    r->end += got;
    return 0;
}

/* Offset in the file of the next compressed byte zlib has not taken. */
static uint64_t gz_in_offset(const struct reader *r)
{
    return r->raw_start + r->raw_read - r->zs.avail_in;
}

/* Reads more compressed input after what zlib has not taken yet. Sets
 * *short_read when the read brought less than asked (a pipe with nothing
 * more at the moment, or the end). Returns 0 or -1 (message in r->err). */
static int gz_read_in(struct reader *r, int *short_read)
{
    z_stream *zs = &r->zs;
    size_t want, got;

    if (zs->avail_in > 0 && zs->next_in != r->in) {
        memmove(r->in, zs->next_in, zs->avail_in);
    }
    zs->next_in = r->in;
    want = READER_IN_SIZE - zs->avail_in;
    if (want == 0) {
        return 0; /* callers only ask with less than 2 bytes in */
    }
    if (fd_read(r, r->in + zs->avail_in, want, &got) != 0) {
        return -1;
    }
    if (got == 0) {
        r->in_eof = 1;
    }
    if (got < want) {
        *short_read = 1;
    }
    zs->avail_in += (uInt)got;
    return 0;
}

/* Inflates into the free space of buf until it is full, the data ends,
 * (with something made) a read came back short, or (with a step limit)
 * that much compressed input was read, even with nothing made (empty
 * members). An error after some data was made is held back for the next
 * call, so the records before it are handed out first. Returns 0 or -1
 * (message in r->err). */
static int refill_gz(struct reader *r)
{
    z_stream *zs = &r->zs;
    size_t room = r->cap - r->end;
    int short_read = 0;
    int bad = 0;
    uint64_t raw0 = r->raw_read;

    /* (fits zlib's uInt: the buffer is at most 2 GiB + 64 bytes) */
    _Static_assert(2 * READER_MAX_RECORD_LIMIT + 64 <= UINT_MAX &&
                       READER_BUF_SIZE <= UINT_MAX,
                   "the reader buffer may exceed zlib's uInt");
    zs->next_out = r->buf + r->end;
    zs->avail_out = (uInt)room;
    while (zs->avail_out > 0 && !bad) {
        if (short_read && zs->avail_out < room) {
            break; /* hand out what is there rather than wait */
        }
        if (r->step_limit > 0 && r->raw_read - raw0 >= r->step_limit) {
            break; /* reader_next_batch() decides whether to go on */
        }
        if (r->member_end) {
            /* Another member may follow; nothing else may. */
            while (zs->avail_in < 2 && !r->in_eof && !bad) {
                bad = gz_read_in(r, &short_read) != 0;
            }
            if (bad) {
                break;
            }
            if (zs->avail_in == 0) {
                r->eof = 1;
                break;
            }
            if (zs->avail_in < 2 || zs->next_in[0] != 0x1f ||
                zs->next_in[1] != 0x8b) {
                text_errf(r->err, sizeof(r->err),
                          "%s: data after the end of the gzip stream at "
                          "compressed byte %llu",
                          r->name, (unsigned long long)gz_in_offset(r));
                bad = 1;
                break;
            }
            if (inflateReset(zs) != Z_OK) {
                text_errf(r->err, sizeof(r->err), "%s: gzip: %s", r->name,
                          zs->msg != NULL ? zs->msg : "inflateReset failed");
                bad = 1;
                break;
            }
            r->member_end = 0;
        }
        if (zs->avail_in == 0) {
            if (r->in_eof) {
                text_errf(r->err, sizeof(r->err),
                          "%s: gzip data ends early at compressed byte %llu "
                          "(truncated file?)",
                          r->name, (unsigned long long)gz_in_offset(r));
                bad = 1;
            } else {
                bad = gz_read_in(r, &short_read) != 0;
            }
            continue;
        }
        int zr = inflate(zs, Z_NO_FLUSH);
        if (zr == Z_STREAM_END) {
            r->member_end = 1;
        } else if (zr == Z_BUF_ERROR && zs->avail_in > 0 && zs->avail_out > 0) {
            /* Cannot happen; stops what would be an endless loop. */
            text_errf(r->err, sizeof(r->err),
                      "%s: gzip: no progress at compressed byte %llu", r->name,
                      (unsigned long long)gz_in_offset(r));
            bad = 1;
        } else if (zr != Z_OK && zr != Z_BUF_ERROR) {
            text_errf(r->err, sizeof(r->err),
                      "%s: gzip data corrupt at compressed byte %llu: %s",
                      r->name, (unsigned long long)gz_in_offset(r),
                      zr == Z_MEM_ERROR ? "out of memory"
                      : zs->msg != NULL ? zs->msg
                                        : zError(zr));
            bad = 1;
        }
    }
    size_t made = room - zs->avail_out;
    r->end += made;
    if (bad) {
        if (made == 0) {
            return -1;
        }
        r->fail_next = 1;
    }
    return 0;
}

/* Adds data after end. Returns 0 (data added, or eof set) or -1. */
static int refill(struct reader *r)
{
    if (r->fail_next) {
        return -1;
    }
    if (r->end == r->cap) {
        /* Cannot happen: cap holds two of the longest records. */
        text_errf(r->err, sizeof(r->err), "%s: reader buffer full at byte %llu",
                  r->name, (unsigned long long)(r->base + r->pos));
        return -1;
    }
    int rc = r->gz ? refill_gz(r) : refill_plain(r);
    if (r->end > r->used) {
        r->used = r->end;
    }
    return rc;
}

/* Moves the unread tail to the front of buf. */
static void compact(struct reader *r)
{
    if (r->pos == 0) {
        return;
    }
    memmove(r->buf, r->buf + r->pos, r->end - r->pos);
    r->base += r->pos;
    r->scan -= r->pos;
    r->end -= r->pos;
    r->pos = 0;
}

/* ---- JSON lines ---------------------------------------------------- */

static void set_too_long(struct reader_rec *rec, int64_t line, uint64_t off)
{
    rec->data = NULL;
    rec->len = 0;
    rec->pos = line;
    rec->byte_offset = off;
    rec->too_long = 1;
}

/* Hands out the line start[0..len) ('\n' and one '\r' cut off) as a
 * record unless it is blank. Returns 1 when rec was set. */
static int jsonl_line(struct reader *r, const unsigned char *start, size_t len,
                      uint64_t off, struct reader_rec *rec)
{
    if (len > 0 && start[len - 1] == '\r') {
        len--;
    }
    if (len == 0 || (is_blank_char(start[0]) && is_blank(start, len))) {
        return 0;
    }
    if (len > r->max_record) {
        set_too_long(rec, r->line, off);
        return 1;
    }
    rec->data = start;
    rec->len = len;
    rec->pos = r->line;
    rec->byte_offset = off;
    rec->too_long = 0;
    return 1;
}

/* Takes the complete lines in the buffer into recs[0..max). Returns the
 * number of records; stops early when a line is not complete yet. */
static size_t jsonl_parse(struct reader *r, struct reader_rec *recs, size_t max)
{
    unsigned char *buf = r->buf;
    size_t k = 0;

    while (k < max) {
        if (r->skipping) {
            unsigned char *p = buf + r->pos;
            size_t avail = r->end - r->pos;
            unsigned char *nl = memchr(p, '\n', avail);
            size_t n = nl != NULL ? (size_t)(nl - p) : avail;
            if (r->skip_blank) {
                r->skip_blank = is_blank(p, n);
            }
            if (nl == NULL) {
                r->pos = r->scan = r->end;
                break;
            }
            r->pos = r->scan = r->pos + n + 1;
            r->skipping = 0;
            if (!r->skip_blank) {
                set_too_long(&recs[k++], r->skip_line, r->skip_off);
            }
            continue;
        }
        unsigned char *start = buf + r->pos;
        unsigned char *nl = memchr(buf + r->scan, '\n', r->end - r->scan);
        if (nl == NULL) {
            r->scan = r->end;
            /* More than max_record bytes and a '\r' without the end of
             * the line: it is too long, however it ends. */
            if (r->end - r->pos > r->max_record + 1) {
                r->skipping = 1;
                r->skip_line = ++r->line;
                r->skip_off = r->base + r->pos;
                r->skip_blank = is_blank(start, r->end - r->pos);
                r->pos = r->end;
            }
            break;
        }
        uint64_t off = r->base + r->pos;
        r->line++;
        r->pos = r->scan = (size_t)(nl - buf) + 1;
        k += (size_t)jsonl_line(r, start, (size_t)(nl - start), off, &recs[k]);
    }
    return k;
}

/* At the end of the data: the too-long line being skipped, or a last line
 * without '\n'. Returns 1 when *rec was set, else 0. */
static int jsonl_finish(struct reader *r, struct reader_rec *rec)
{
    if (r->skipping) {
        r->skipping = 0;
        if (!r->skip_blank) {
            set_too_long(rec, r->skip_line, r->skip_off);
            return 1;
        }
        return 0;
    }
    if (r->pos == r->end) {
        return 0;
    }
    const unsigned char *start = r->buf + r->pos;
    size_t len = r->end - r->pos;
    uint64_t off = r->base + r->pos;
    r->line++;
    r->pos = r->scan = r->end;
    return jsonl_line(r, start, len, off, rec);
}

/* ---- length-delimited protobuf ------------------------------------- */

static void pb_place_err(struct reader *r, const char *what)
{
    text_errf(r->err, sizeof(r->err), "%s: record %lld at byte %llu: %s",
              r->name, (long long)(r->nrec + 1),
              (unsigned long long)(r->base + r->pos), what);
}

/* Takes the complete records in the buffer into recs[0..max): *k of them.
 * Returns 0, or -1 on a framing error at the first record (an error after
 * some records is left for the next call, which meets it first). */
static int pb_parse(struct reader *r, struct reader_rec *recs, size_t max,
                    size_t *k)
{
    const unsigned char *buf = r->buf;
    size_t end = r->end;
    size_t n = 0;

    while (n < max) {
        const unsigned char *p = buf + r->pos;
        size_t avail = end - r->pos;
        uint64_t v;
        size_t hl;
        enum varint_status st = varint_read(p, avail, VARINT_MAX, &v, &hl);
        if (st == VARINT_SHORT) {
            break;
        }
        if (st == VARINT_BAD || v > r->max_record) {
            if (n == 0) {
                char what[128];
                if (st == VARINT_BAD) {
                    snprintf(what, sizeof(what),
                             "bad length prefix (varint longer than %d "
                             "bytes)",
                             VARINT_MAX);
                } else {
                    snprintf(what, sizeof(what),
                             "length prefix %llu exceeds the %zu-byte limit",
                             (unsigned long long)v, r->max_record);
                }
                pb_place_err(r, what);
                *k = 0;
                return -1;
            }
            break;
        }
        if (avail - hl < v) {
            break;
        }
        recs[n].data = p + hl;
        recs[n].len = (size_t)v;
        recs[n].pos = ++r->nrec;
        recs[n].byte_offset = r->base + r->pos;
        recs[n].too_long = 0;
        n++;
        r->pos += hl + (size_t)v;
    }
    *k = n;
    return 0;
}

/* At the end of the data: 0 when it ended between records, else -1 with
 * the message (the last record is cut short). */
static int pb_finish(struct reader *r)
{
    const unsigned char *p = r->buf + r->pos;
    size_t avail = r->end - r->pos;
    uint64_t v;
    size_t hl;
    char what[128];

    if (avail == 0) {
        return 0;
    }
    if (varint_read(p, avail, VARINT_MAX, &v, &hl) != VARINT_OK) {
        snprintf(what, sizeof(what),
                 "truncated length prefix (the input ends after %zu of its "
                 "bytes)",
                 avail);
    } else {
        snprintf(what, sizeof(what),
                 "truncated record (needs %llu bytes, %zu left)",
                 (unsigned long long)v, avail - hl);
    }
    pb_place_err(r, what);
    return -1;
}

/* ---- public -------------------------------------------------------- */

int reader_next_batch(struct reader *r, struct reader_rec *recs, size_t max,
                      size_t *n)
{
    size_t k = 0;

    *n = 0;
    if (r->failed) {
        return -1;
    }
    if (max == 0) {
        text_errf(r->err, sizeof(r->err), "%s: reader_next_batch: max is 0",
                  r->name);
        r->err_shown = 1;
        return -1;
    }
    r->err_shown = 0;
    /* input read and data made by this call, for the step limit */
    uint64_t raw0 = r->raw_read, made0 = r->base + r->end;
    for (;;) {
        if (r->fmt == READER_JSONL) {
            k = jsonl_parse(r, recs, max);
        } else if (pb_parse(r, recs, max, &k) != 0) {
            goto fail;
        }
        if (k > 0) {
            break;
        }
        if (r->eof) {
            if (r->fmt == READER_JSONL) {
                k = (size_t)jsonl_finish(r, recs);
            } else if (pb_finish(r) != 0) {
                goto fail;
            }
            break;
        }
        if (r->step_limit > 0 &&
            (r->raw_read - raw0) + (r->base + r->end - made0) >=
                r->step_limit) {
            return 2; /* no record yet: the caller comes back */
        }
        compact(r);
        if (refill(r) != 0) {
            goto fail;
        }
    }
    *n = k;
    return k > 0;
fail:
    r->failed = 1;
    r->err_shown = 1;
    return -1;
}

void reader_set_step_limit(struct reader *r, size_t bytes)
{
    r->step_limit = bytes;
}

int reader_next(struct reader *r, struct reader_rec *rec)
{
    size_t n;

    return reader_next_batch(r, rec, 1, &n);
}

/* Decides READER_AUTO from the data (see reader.h). Returns 0 or -1. */
static int detect_format(struct reader *r)
{
    const unsigned char *buf = r->buf;
    size_t i = 0;

    for (;;) {
        while (i < r->end && (is_blank_char(buf[i]) || buf[i] == '\n')) {
            i++;
        }
        if (i < r->end) {
            break;
        }
        if (r->eof || r->end == r->cap) {
            r->fmt = READER_JSONL; /* empty or blank */
            return 0;
        }
        if (refill(r) != 0) {
            return -1;
        }
    }
    if (buf[i] != '{') {
        r->fmt = READER_PROTOBUF;
        return 0;
    }
    size_t j = i + 1;
    for (;;) {
        while (j < r->end && (buf[j] == ' ' || buf[j] == '\t')) {
            j++;
        }
        if (j < r->end) {
            r->fmt =
                buf[j] == '"' || buf[j] == '}' ? READER_JSONL : READER_PROTOBUF;
            return 0;
        }
        if (r->eof || r->end == r->cap) {
            r->fmt = READER_JSONL;
            return 0;
        }
        if (refill(r) != 0) {
            return -1;
        }
    }
}

/* Reads the first bytes, switches to gzip on its magic, and decides the
 * format. Returns 0 or -1 (message in r->err). */
static int start(struct reader *r)
{
    size_t first = READER_IN_SIZE < r->cap ? READER_IN_SIZE : r->cap;

    while (r->end < 2 && !r->eof) {
        size_t got;
        if (fd_read(r, r->buf + r->end, first - r->end, &got) != 0) {
            return -1;
        }
        r->end += got;
        r->eof = got == 0;
    }
    r->used = r->end;
    if (r->end >= 2 && r->buf[0] == 0x1f && r->buf[1] == 0x8b) {
        r->in = malloc(READER_IN_SIZE);
        if (r->in == NULL) {
            text_errf(r->err, sizeof(r->err), "%s: out of memory", r->name);
            return -1;
        }
        memcpy(r->in, r->buf, r->end);
        r->zs.next_in = r->in;
        r->zs.avail_in = (uInt)r->end;
        r->in_eof = r->eof;
        r->end = 0;
        r->eof = 0;
        r->gz = 1;
        /* 16 + 15: gzip wrapper only, largest window. */
        if (inflateInit2(&r->zs, 16 + MAX_WBITS) != Z_OK) {
            text_errf(r->err, sizeof(r->err), "%s: gzip: %s", r->name,
                      r->zs.msg != NULL ? r->zs.msg : "out of memory");
            return -1;
        }
        r->zs_ready = 1;
    }
    if (r->fmt == READER_AUTO) {
        return detect_format(r);
    }
    return 0;
}

struct reader *reader_open(const char *path, enum reader_format fmt,
                           size_t max_record, char *err, size_t errlen)
{
    int is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "stdin" : path;
    struct reader *r = NULL;
    struct stat st;

    if (max_record == 0) {
        max_record = READER_MAX_RECORD_DEFAULT;
    }
    if (max_record > READER_MAX_RECORD_LIMIT) {
        text_errf(err, errlen,
                  "%s: record limit %zu is above the %zu-byte "
                  "maximum",
                  name, max_record, READER_MAX_RECORD_LIMIT);
        return NULL;
    }
    if (fmt != READER_AUTO && fmt != READER_JSONL && fmt != READER_PROTOBUF) {
        text_errf(err, errlen, "%s: unknown format %d", name, (int)fmt);
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        text_errf(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    r->fd = -1;
    r->fmt = fmt;
    r->max_record = max_record;
    r->cap = 2 * max_record + 64;
    if (r->cap < READER_BUF_SIZE) {
        r->cap = READER_BUF_SIZE;
    }
    r->name = strdup(name);
    r->buf = malloc(r->cap);
    if (r->name == NULL || r->buf == NULL) {
        text_errf(err, errlen, "%s: out of memory", name);
        goto err;
    }
    if (is_stdin) {
        r->fd = STDIN_FILENO;
    } else {
        r->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (r->fd < 0) {
            text_errf(err, errlen, "%s: %s", name, strerror(errno));
            goto err;
        }
        r->own_fd = 1;
    }
    if (fstat(r->fd, &st) != 0) {
        text_errf(err, errlen, "%s: %s", name, strerror(errno));
        goto err;
    }
    if (S_ISDIR(st.st_mode)) {
        text_errf(err, errlen, "%s: %s", name, strerror(EISDIR));
        goto err;
    }
    if (S_ISREG(st.st_mode)) {
        off_t at = lseek(r->fd, 0, SEEK_CUR);
        r->raw_total = (uint64_t)st.st_size;
        r->raw_start = at > 0 ? (uint64_t)at : 0;
        (void)posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    if (start(r) != 0) {
        text_errf(err, errlen, "%s", r->err);
        goto err;
    }
    return r;
err:
    reader_close(r);
    return NULL;
}

enum reader_format reader_format_of(const struct reader *r)
{
    return r->fmt;
}

int reader_is_gzip(const struct reader *r)
{
    return r->gz;
}

const char *reader_format_name(enum reader_format f)
{
    switch (f) {
    case READER_AUTO:
        return "auto";
    case READER_JSONL:
        return "jsonl";
    case READER_PROTOBUF:
        return "protobuf";
    }
    return "?";
}

const char *reader_path(const struct reader *r)
{
    return r->name;
}

const char *reader_error(const struct reader *r)
{
    return r->err_shown ? r->err : "";
}

void reader_progress(const struct reader *r, uint64_t *done, uint64_t *total)
{
    if (done != NULL) {
        *done = r->gz ? gz_in_offset(r) : r->raw_start + r->base + r->pos;
    }
    if (total != NULL) {
        *total = r->raw_total;
    }
}

void reader_close(struct reader *r)
{
    if (r == NULL) {
        return;
    }
    if (r->zs_ready) {
        inflateEnd(&r->zs);
    }
    if (r->own_fd && r->fd >= 0) {
        close(r->fd);
    }
    /* The buffer held records, which may hold card numbers. */
    if (r->buf != NULL) {
        explicit_bzero(r->buf, r->used);
    }
    free(r->buf);
    free(r->in);
    free(r->name);
    free(r);
}
