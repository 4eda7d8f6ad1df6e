/* fuzz_reader.c - libFuzzer target for reader.c.
 * tests/fuzz/fuzz.mk builds reader.c into it with a tiny buffer
 * (READER_BUF_SIZE, READER_IN_SIZE), so records straddle refills and
 * compactions all the time.
 * Input: byte 0 = options (bits 0-1 format: AUTO, JSONL, PROTOBUF, AUTO;
 * bit 2 gzip the data here; bit 3 as two gzip members; bits 4-6 batch
 * size - 1), byte 1 = max_record - 1 (mod 64), the rest = the data.
 * Invariants: no crash or sanitizer report; batches hold 1..max records;
 * the end and errors are sticky; the format, the records (data, length,
 * position, offset, too_long) and whether it ends or fails agree with a
 * naive reference reader over the whole data in memory; a framing error
 * names the input and the record's number and offset; at the end of a
 * regular file the progress is the file size. Raw data that starts with
 * the gzip magic (not compressed here) is only checked for consistency. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "reader.h"

#ifndef READER_BUF_SIZE
#define READER_BUF_SIZE ((size_t)4 << 20)
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ref_rec {
    size_t off;      /* of the line / the length prefix */
    size_t data_off; /* of the data */
    size_t len;
    int64_t pos;
    int too_long;
};

static int ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* READER_AUTO on the first window bytes of d. */
static enum reader_format ref_detect(const uint8_t *d, size_t n, size_t window)
{
    size_t i = 0, j;

    if (n > window) {
        n = window;
    }
    while (i < n && ws(d[i])) {
        i++;
    }
    if (i == n) {
        return READER_JSONL;
    }
    if (d[i] != '{') {
        return READER_PROTOBUF;
    }
    for (j = i + 1; j < n && (d[j] == ' ' || d[j] == '\t'); j++) {
    }
    if (j == n) {
        return READER_JSONL;
    }
    return d[j] == '"' || d[j] == '}' ? READER_JSONL : READER_PROTOBUF;
}

/* All records of d[0..n); returns 0, or -1 after *nout records when the
 * framing breaks (*err_off = where the broken record starts). */
static int ref_read(const uint8_t *d, size_t n, enum reader_format fmt,
                    size_t max_record, struct ref_rec *out, size_t *nout,
                    size_t *err_off)
{
    size_t k = 0, at = 0;
    int64_t line = 0;

    *nout = 0;
    if (fmt == READER_JSONL) {
        while (at < n) {
            const uint8_t *nl = memchr(d + at, '\n', n - at);
            size_t stop = nl != NULL ? (size_t)(nl - d) : n;
            size_t len = stop - at, i;
            line++;
            if (len > 0 && d[at + len - 1] == '\r') {
                len--;
            }
            for (i = 0; i < len && ws(d[at + i]); i++) {
            }
            if (i < len) {
                struct ref_rec *o = &out[k++];
                o->off = o->data_off = at;
                o->too_long = len > max_record;
                o->len = o->too_long ? 0 : len;
                o->pos = line;
            }
            at = nl != NULL ? stop + 1 : n;
        }
        *nout = k;
        return 0;
    }
    while (at < n) {
        uint64_t v = 0;
        size_t hl = 0;
        for (;;) {
            if (at + hl == n || hl == 5) {
                *nout = k;
                *err_off = at;
                return -1;
            }
            v |= (uint64_t)(d[at + hl] & 0x7f) << (7 * hl);
            if (d[at + hl++] < 0x80) {
                break;
            }
        }
        if (v > max_record || v > n - at - hl) {
            *nout = k;
            *err_off = at;
            return -1;
        }
        out[k].off = at;
        out[k].data_off = at + hl;
        out[k].len = (size_t)v;
        out[k].pos = (int64_t)k + 1;
        out[k].too_long = 0;
        k++;
        at += hl + (size_t)v;
    }
    *nout = k;
    return 0;
}

/* gzip of d (one or two members) into a malloc'd buffer. */
static uint8_t *gzip(const uint8_t *d, size_t n, int two, size_t *zlen)
{
    size_t cap = 2 * (compressBound((uLong)n) + 64);
    uint8_t *z = malloc(cap);
    size_t at = 0;
    size_t cut[3] = {0, two ? n / 2 : n, n};

    if (z == NULL) {
        abort();
    }
    for (int m = 0; m < 1 + two; m++) {
        z_stream zs;
        memset(&zs, 0, sizeof(zs));
        if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8,
                         Z_DEFAULT_STRATEGY) != Z_OK) {
            abort();
        }
        zs.next_in = (Bytef *)(uintptr_t)(d + cut[m]);
        zs.avail_in = (uInt)(cut[m + 1] - cut[m]);
        zs.next_out = z + at;
        zs.avail_out = (uInt)(cap - at);
        if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
            abort();
        }
        at = cap - zs.avail_out;
        deflateEnd(&zs);
    }
    *zlen = at;
    return z;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    struct reader_rec recs[8];
    char err[256];

    if (size < 2) {
        return 0;
    }
    if (fd < 0) {
        fd = memfd_create("fuzz_reader", 0);
        if (fd < 0) {
            abort();
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    uint8_t opt = data[0];
    static const enum reader_format fmts[] = {READER_AUTO, READER_JSONL,
                                              READER_PROTOBUF, READER_AUTO};
    enum reader_format fmt = fmts[opt & 3];
    int gz = (opt >> 2) & 1;
    size_t batch = (size_t)((opt >> 4) & 7) + 1;
    size_t max_record = (size_t)data[1] % 64 + 1;
    const uint8_t *d = data + 2;
    size_t n = size - 2;
    uint8_t *z = NULL;
    const uint8_t *file = d;
    size_t flen = n;

    if (gz) {
        z = gzip(d, n, (opt >> 3) & 1, &flen);
        file = z;
    }
    if (ftruncate(fd, 0) != 0 ||
        (flen > 0 && pwrite(fd, file, flen, 0) != (ssize_t)flen)) {
        abort();
    }
    /* Without an oracle when the raw data looks like gzip. */
    int oracle = gz || n < 2 || d[0] != 0x1f || d[1] != 0x8b;

    struct reader *r = reader_open(path, fmt, max_record, err, sizeof(err));
    if (r == NULL) {
        /* Only gzip trouble can fail an open of a readable file. */
        if (oracle || strncmp(err, path, strlen(path)) != 0) {
            abort();
        }
        free(z);
        return 0;
    }
    size_t cap = 2 * max_record + 64;
    if (cap < READER_BUF_SIZE) {
        cap = READER_BUF_SIZE;
    }
    enum reader_format want_fmt =
        fmt != READER_AUTO ? fmt : ref_detect(d, n, cap);
    struct ref_rec *ref = malloc((n + 1) * sizeof(*ref));
    size_t nref = 0, err_off = 0;
    int ref_rc = 0;
    if (ref == NULL) {
        abort();
    }
    if (oracle) {
        if (reader_format_of(r) != want_fmt) {
            abort();
        }
        ref_rc = ref_read(d, n, want_fmt, max_record, ref, &nref, &err_off);
    }

    size_t got = 0, k;
    int64_t last_pos = 0;
    uint64_t last_off = 0;
    int rc;
    while ((rc = reader_next_batch(r, recs, batch, &k)) == 1) {
        if (k < 1 || k > batch) {
            abort();
        }
        for (size_t i = 0; i < k; i++, got++) {
            const struct reader_rec *x = &recs[i];
            if (x->pos <= last_pos || (got > 0 && x->byte_offset <= last_off) ||
                (x->too_long && (x->data != NULL || x->len != 0)) ||
                (!x->too_long && x->data == NULL) || x->len > max_record) {
                abort();
            }
            last_pos = x->pos;
            last_off = x->byte_offset;
            if (!oracle) {
                continue;
            }
            const struct ref_rec *e = &ref[got];
            if (got >= nref || x->pos != e->pos || x->byte_offset != e->off ||
                x->len != e->len || x->too_long != e->too_long ||
                (x->len > 0 && memcmp(x->data, d + e->data_off, x->len) != 0)) {
                abort();
            }
        }
    }
    if (k != 0 || reader_next_batch(r, recs, batch, &k) != rc || k != 0) {
        abort();
    }
    if (rc < 0) {
        const char *msg = reader_error(r);
        if (strncmp(msg, path, strlen(path)) != 0) {
            abort();
        }
        if (oracle) {
            char where[96];
            snprintf(where, sizeof(where),
                     ": record %zu at byte %zu: ", nref + 1, err_off);
            if (ref_rc == 0 || strstr(msg, where) == NULL) {
                abort();
            }
        }
    } else {
        uint64_t done, total;
        reader_progress(r, &done, &total);
        if (done != total || total != flen) {
            abort();
        }
    }
    if (oracle && (got != nref || (rc < 0) != (ref_rc < 0))) {
        abort();
    }
    reader_close(r);
    free(ref);
    free(z);
    return 0;
}
