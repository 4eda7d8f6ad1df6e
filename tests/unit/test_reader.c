/* Unit tests for reader.c: JSON lines and length-delimited protobuf,
 * plain and gzip, positions, offsets, limits, framing errors, refills.
 * Files go to a mkdtemp directory that is removed at the end; the data is
 * synthetic (the reader never looks inside records). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "reader.h"

static char tmpdir[] = "/tmp/cw_reader_XXXXXX";

/* ---- helpers ------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[PATH_MAX];

    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
    return rmdir(tmpdir);
}

static const char *tpath(const char *name)
{
    static char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
    return p;
}

static const char *write_file(const char *name, const void *data, size_t len)
{
    const char *p = tpath(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return p;
}

/* Writes data as gzip; mode "wb" or "ab" (a second member). */
static const char *write_gz(const char *name, const void *data, size_t len,
                            const char *mode)
{
    const char *p = tpath(name);
    gzFile g = gzopen(p, mode);
    assert_non_null(g);
    if (len > 0) {
        assert_int_equal(gzwrite(g, data, (unsigned)len), (int)len);
    }
    assert_int_equal(gzclose(g), Z_OK);
    return p;
}

/* A growable byte buffer. */
struct bytes {
    unsigned char *p;
    size_t len, cap;
};

static void put(struct bytes *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (len > 0) {
        memcpy(b->p + b->len, data, len);
    }
    b->len += len;
}

static void put_str(struct bytes *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_varint(struct bytes *b, uint64_t v)
{
    unsigned char vb[10];
    size_t n = 0;
    do {
        vb[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(b, vb, n);
}

/* Deterministic record content without '\n' (nor blanks). */
static void fill(unsigned char *p, size_t len, size_t seed)
{
    for (size_t j = 0; j < len; j++) {
        p[j] = (unsigned char)('a' + (seed * 7 + j) % 26);
    }
}

/* What read_all() got. */
struct got_rec {
    unsigned char *data;
    size_t len;
    int64_t pos;
    uint64_t off;
    int too_long;
};

struct got {
    struct got_rec *v;
    size_t n;
    int rc; /* 0 = ended, -1 = failed */
    char err[1024];
    enum reader_format fmt;
    int gz;
    uint64_t done, total;
};

static void got_free(struct got *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free(g->v[i].data);
    }
    free(g->v);
    memset(g, 0, sizeof(*g));
}

/* Reads a whole input in batches of up to batch, copying the records.
 * Checks the batch contract on the way: 1 means >= 1 records, the end and
 * errors are sticky. */
static void read_all(const char *path, enum reader_format fmt,
                     size_t max_record, size_t batch, struct got *g)
{
    char err[1024];
    struct reader *r = reader_open(path, fmt, max_record, err, sizeof(err));
    struct reader_rec *recs = calloc(batch, sizeof(*recs));
    size_t cap = 0, n;
    int rc;

    if (r == NULL) {
        fail_msg("reader_open: %s", err);
    }
    assert_non_null(recs);
    memset(g, 0, sizeof(*g));
    g->fmt = reader_format_of(r);
    g->gz = reader_is_gzip(r);
    while ((rc = reader_next_batch(r, recs, batch, &n)) == 1) {
        assert_true(n >= 1 && n <= batch);
        if (g->n + n > cap) {
            cap = (g->n + n) * 2;
            g->v = realloc(g->v, cap * sizeof(*g->v));
            assert_non_null(g->v);
        }
        for (size_t i = 0; i < n; i++) {
            struct got_rec *o = &g->v[g->n++];
            o->len = recs[i].len;
            o->pos = recs[i].pos;
            o->off = recs[i].byte_offset;
            o->too_long = recs[i].too_long;
            o->data = malloc(o->len + 1);
            assert_non_null(o->data);
            if (recs[i].too_long) {
                assert_null(recs[i].data);
                assert_int_equal(recs[i].len, 0);
            } else {
                assert_non_null(recs[i].data);
                memcpy(o->data, recs[i].data, o->len);
            }
            o->data[o->len] = '\0';
        }
    }
    assert_int_equal(n, 0);
    g->rc = rc;
    snprintf(g->err, sizeof(g->err), "%s", reader_error(r));
    reader_progress(r, &g->done, &g->total);
    /* sticky */
    assert_int_equal(reader_next_batch(r, recs, batch, &n), rc);
    assert_int_equal(n, 0);
    reader_close(r);
    free(recs);
}

static void assert_rec(const struct got *g, size_t i, const char *data,
                       int64_t pos, uint64_t off)
{
    assert_true(i < g->n);
    assert_int_equal(g->v[i].too_long, 0);
    assert_int_equal(g->v[i].len, strlen(data));
    assert_memory_equal(g->v[i].data, data, strlen(data));
    assert_int_equal(g->v[i].pos, pos);
    assert_int_equal(g->v[i].off, off);
}

static void assert_too_long(const struct got *g, size_t i, int64_t pos,
                            uint64_t off)
{
    assert_true(i < g->n);
    assert_int_equal(g->v[i].too_long, 1);
    assert_int_equal(g->v[i].len, 0);
    assert_int_equal(g->v[i].pos, pos);
    assert_int_equal(g->v[i].off, off);
}

/* ---- JSON lines ---------------------------------------------------- */

static void test_jsonl_positions_blank_lines_crlf(void **state)
{
    (void)state;
    const char text[] = "a\n"         /* 1, byte 0 */
                        "\n"          /* 2 */
                        "  \t\n"      /* 3 */
                        "bb\r\n"      /* 4, byte 7 */
                        "\r\n"        /* 5 */
                        " \t\r\n"     /* 6 */
                        "{\"x\":1}\n" /* 7, byte 17 */
                        "c\r\r\n";    /* 8, byte 25: one CR is cut */
    const char *p = write_file("pos.jsonl", text, sizeof(text) - 1);
    struct got g;

    for (size_t batch = 1; batch <= 5; batch += 4) {
        read_all(p, READER_JSONL, 0, batch, &g);
        assert_int_equal(g.rc, 0);
        assert_int_equal(g.fmt, READER_JSONL);
        assert_int_equal(g.gz, 0);
        assert_int_equal(g.n, 4);
        assert_rec(&g, 0, "a", 1, 0);
        assert_rec(&g, 1, "bb", 4, 7);
        assert_rec(&g, 2, "{\"x\":1}", 7, 17);
        assert_rec(&g, 3, "c\r", 8, 25);
        assert_int_equal(g.done, sizeof(text) - 1);
        assert_int_equal(g.total, sizeof(text) - 1);
        got_free(&g);
    }
}

static void test_jsonl_last_line_without_newline(void **state)
{
    (void)state;
    struct got g;

    read_all(write_file("last1.jsonl", "a\nbc", 4), READER_JSONL, 0, 8, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 2);
    assert_rec(&g, 1, "bc", 2, 2);
    got_free(&g);

    read_all(write_file("last2.jsonl", "a\nbc\r", 5), READER_JSONL, 0, 8, &g);
    assert_int_equal(g.n, 2);
    assert_rec(&g, 1, "bc", 2, 2);
    got_free(&g);

    read_all(write_file("last3.jsonl", "a\n \t ", 5), READER_JSONL, 0, 8, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 1);
    got_free(&g);

    read_all(write_file("last4.jsonl", "x", 1), READER_JSONL, 0, 8, &g);
    assert_int_equal(g.n, 1);
    assert_rec(&g, 0, "x", 1, 0);
    got_free(&g);
}

static void test_jsonl_too_long_lines(void **state)
{
    (void)state;
    /* max_record 8: 8 bytes is fine, also with a CR; 9 is too long. */
    const char text[] = "12345678\n"                   /* 1, byte 0 */
                        "123456789\n"                  /* 2, byte 9: too long */
                        "12345678\r\n"                 /* 3, byte 19 */
                        "\n"                           /* 4 */
                        "abcdefghijklmnopqrstuvwxyz\n" /* 5, byte 30 */
                        "x\n"                          /* 6, byte 57 */
                        "123456789";                   /* 7, byte 59 */
    const char *p = write_file("long.jsonl", text, sizeof(text) - 1);
    struct got g;

    for (size_t batch = 1; batch <= 3; batch++) {
        read_all(p, READER_JSONL, 8, batch, &g);
        assert_int_equal(g.rc, 0);
        assert_int_equal(g.n, 6);
        assert_rec(&g, 0, "12345678", 1, 0);
        assert_too_long(&g, 1, 2, 9);
        assert_rec(&g, 2, "12345678", 3, 19);
        assert_too_long(&g, 3, 5, 30);
        assert_rec(&g, 4, "x", 6, 57);
        assert_too_long(&g, 5, 7, 59);
        got_free(&g);
    }
}

/* Lines far longer than the buffer: skipped across refills; a blank one
 * is no record at all. */
static void test_jsonl_huge_lines_across_refills(void **state)
{
    (void)state;
    const size_t huge = (size_t)10 << 20;
    struct bytes b = {0};
    unsigned char *big = malloc(huge);
    struct got g;
    uint64_t off_long, off_after, off_last;

    assert_non_null(big);
    put_str(&b, "{\"first\":1}\n"); /* 1 */
    off_long = b.len;               /* 2: too long */
    fill(big, huge, 1);
    put(&b, big, huge);
    put_str(&b, "\n");
    memset(big, ' ', huge); /* 3: blank, 10 MiB */
    put(&b, big, huge);
    put_str(&b, "\r\n");
    off_after = b.len;
    put_str(&b, "{\"after\":2}\n"); /* 4 */
    off_last = b.len;
    fill(big, huge, 2); /* 5: too long, no newline at the end */
    put(&b, big, huge);
    const char *p = write_file("huge.jsonl", b.p, b.len);

    read_all(p, READER_AUTO, 0, 16, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.fmt, READER_JSONL);
    assert_int_equal(g.n, 4);
    assert_rec(&g, 0, "{\"first\":1}", 1, 0);
    assert_too_long(&g, 1, 2, off_long);
    assert_rec(&g, 2, "{\"after\":2}", 4, off_after);
    assert_too_long(&g, 3, 5, off_last);
    assert_int_equal(g.done, b.len);
    got_free(&g);

    /* The same through gzip. */
    p = write_gz("huge.jsonl.gz", b.p, b.len, "wb");
    read_all(p, READER_AUTO, 0, 3, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.gz, 1);
    assert_int_equal(g.n, 4);
    assert_too_long(&g, 1, 2, off_long);
    assert_rec(&g, 2, "{\"after\":2}", 4, off_after);
    assert_too_long(&g, 3, 5, off_last);
    got_free(&g);
    free(big);
    free(b.p);
}

/* ---- length-delimited protobuf ------------------------------------- */

static size_t pb_len_of(size_t i)
{
    static const size_t special[] = {0, 1, 127, 128, 129, 300, 16383, 16384};
    if (i < sizeof(special) / sizeof(special[0])) {
        return special[i];
    }
    return i % 7 == 0 ? 0 : (i * 37) % 200;
}

static void test_pb_round_trip(void **state)
{
    (void)state;
    enum { N = 20000 };
    struct bytes b = {0};
    uint64_t *offs = malloc(N * sizeof(*offs));
    unsigned char rec[16384];
    struct got g;

    assert_non_null(offs);
    for (size_t i = 0; i < N; i++) {
        size_t len = pb_len_of(i);
        offs[i] = b.len;
        fill(rec, len, i);
        put_varint(&b, len);
        put(&b, rec, len);
    }
    const char *p = write_file("rt.pb", b.p, b.len);
    for (size_t batch = 1; batch <= 1000; batch *= 10) {
        read_all(p, READER_PROTOBUF, 0, batch, &g);
        assert_int_equal(g.rc, 0);
        assert_int_equal(g.n, N);
        for (size_t i = 0; i < N; i++) {
            size_t len = pb_len_of(i);
            fill(rec, len, i);
            assert_int_equal(g.v[i].len, len);
            assert_memory_equal(g.v[i].data, rec, len);
            assert_int_equal(g.v[i].pos, (int64_t)i + 1);
            assert_int_equal(g.v[i].off, offs[i]);
            assert_int_equal(g.v[i].too_long, 0);
        }
        assert_int_equal(g.done, b.len);
        assert_int_equal(g.total, b.len);
        got_free(&g);
    }
    free(offs);
    free(b.p);
}

static void test_pb_varint_edges(void **state)
{
    (void)state;
    struct bytes b = {0};
    struct got g;
    unsigned char rec[101];

    /* 5-byte varint (a non-canonical 3) is fine; zero-length too. */
    static const unsigned char five[] = {0x83, 0x80, 0x80, 0x80, 0x00};
    put(&b, five, sizeof(five));
    put_str(&b, "abc");
    put_varint(&b, 0);
    read_all(write_file("v5.pb", b.p, b.len), READER_PROTOBUF, 0, 4, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 2);
    assert_rec(&g, 0, "abc", 1, 0);
    assert_rec(&g, 1, "", 2, 8);
    got_free(&g);

    /* 6 bytes: fatal, after the records before it. */
    static const unsigned char six[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    b.len = 0;
    put_varint(&b, 1);
    put_str(&b, "z");
    put(&b, six, sizeof(six));
    put_str(&b, "more");
    read_all(write_file("v6.pb", b.p, b.len), READER_PROTOBUF, 0, 4, &g);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.n, 1);
    assert_rec(&g, 0, "z", 1, 0);
    {
        char want[PATH_MAX + 128];
        snprintf(want, sizeof(want),
                 "%s: record 2 at byte 2: bad length prefix (varint longer "
                 "than 5 bytes)",
                 tpath("v6.pb"));
        assert_string_equal(g.err, want);
    }
    got_free(&g);

    /* Length at the limit is fine; one above is fatal. */
    b.len = 0;
    memset(rec, 'q', sizeof(rec));
    put_varint(&b, 100);
    put(&b, rec, 100);
    put_varint(&b, 101);
    put(&b, rec, 101);
    read_all(write_file("lim.pb", b.p, b.len), READER_PROTOBUF, 100, 4, &g);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.v[0].len, 100);
    {
        char want[PATH_MAX + 128];
        snprintf(want, sizeof(want),
                 "%s: record 2 at byte 101: length prefix 101 exceeds the "
                 "100-byte limit",
                 tpath("lim.pb"));
        assert_string_equal(g.err, want);
    }
    got_free(&g);

    /* The default limit is 1 MiB. */
    b.len = 0;
    put_varint(&b, 9999999);
    read_all(write_file("big.pb", b.p, b.len), READER_PROTOBUF, 0, 4, &g);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.n, 0);
    assert_non_null(strstr(g.err, ": record 1 at byte 0: length prefix "
                                  "9999999 exceeds the 1048576-byte limit"));
    got_free(&g);
    free(b.p);
}

static void test_pb_truncated(void **state)
{
    (void)state;
    struct bytes b = {0};
    unsigned char rec[120];
    struct got g;
    char want[PATH_MAX + 128];

    /* A secret-looking payload: it must never show in the message. */
    memset(rec, '4', sizeof(rec));
    put_varint(&b, 3);
    put_str(&b, "abc");
    put_varint(&b, 120);
    put(&b, rec, 40);
    read_all(write_file("trunc.pb", b.p, b.len), READER_PROTOBUF, 0, 8, &g);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.n, 1);
    snprintf(want, sizeof(want),
             "%s: record 2 at byte 4: truncated record (needs 120 bytes, 40 "
             "left)",
             tpath("trunc.pb"));
    assert_string_equal(g.err, want);
    assert_null(strstr(g.err, "4444"));
    got_free(&g);

    /* The input ends inside a length prefix. */
    b.len = 0;
    put_varint(&b, 0);
    static const unsigned char cut[] = {0xff, 0xff};
    put(&b, cut, sizeof(cut));
    read_all(write_file("truncv.pb", b.p, b.len), READER_PROTOBUF, 0, 8, &g);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.n, 1);
    snprintf(want, sizeof(want),
             "%s: record 2 at byte 1: truncated length prefix (the input "
             "ends after 2 of its bytes)",
             tpath("truncv.pb"));
    assert_string_equal(g.err, want);
    got_free(&g);
    free(b.p);
}

/* ---- gzip ---------------------------------------------------------- */

static void make_pb(struct bytes *b, size_t n)
{
    unsigned char rec[300];
    for (size_t i = 0; i < n; i++) {
        size_t len = pb_len_of(i) % 300;
        fill(rec, len, i);
        put_varint(b, len);
        put(b, rec, len);
    }
}

static void make_jsonl(struct bytes *b, size_t n)
{
    char line[64];
    for (size_t i = 0; i < n; i++) {
        snprintf(line, sizeof(line), "{\"i\":%zu}%s", i,
                 i % 3 == 0   ? "\r\n"
                 : i % 5 == 0 ? "\n\n"
                              : "\n");
        put_str(b, line);
    }
}

static void assert_same(const struct got *a, const struct got *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->v[i].len, b->v[i].len);
        assert_memory_equal(a->v[i].data, b->v[i].data, a->v[i].len);
        assert_int_equal(a->v[i].pos, b->v[i].pos);
        assert_int_equal(a->v[i].off, b->v[i].off);
        assert_int_equal(a->v[i].too_long, b->v[i].too_long);
    }
}

static void test_gzip_both_formats(void **state)
{
    (void)state;
    struct bytes pb = {0}, js = {0};
    struct got plain, gz;
    struct stat st;

    make_pb(&pb, 50000);
    make_jsonl(&js, 50000);

    read_all(write_file("g.pb", pb.p, pb.len), READER_AUTO, 0, 64, &plain);
    const char *p = write_gz("g.pb.gz", pb.p, pb.len, "wb");
    assert_int_equal(stat(p, &st), 0);
    read_all(p, READER_AUTO, 0, 64, &gz);
    assert_int_equal(plain.rc, 0);
    assert_int_equal(gz.rc, 0);
    assert_int_equal(plain.fmt, READER_PROTOBUF);
    assert_int_equal(gz.fmt, READER_PROTOBUF);
    assert_int_equal(gz.gz, 1);
    assert_int_equal(plain.n, 50000);
    assert_same(&plain, &gz);
    assert_int_equal(gz.done, (uint64_t)st.st_size);
    assert_int_equal(gz.total, (uint64_t)st.st_size);
    got_free(&plain);
    got_free(&gz);

    /* No ".gz" in the name: gzip is told by the magic bytes. */
    read_all(write_file("j.jsonl", js.p, js.len), READER_AUTO, 0, 64, &plain);
    read_all(write_gz("j.data", js.p, js.len, "wb"), READER_AUTO, 0, 64, &gz);
    assert_int_equal(gz.fmt, READER_JSONL);
    assert_int_equal(gz.gz, 1);
    assert_int_equal(plain.n, 50000);
    assert_same(&plain, &gz);
    got_free(&plain);
    got_free(&gz);

    /* Two gzip members (cat a.gz b.gz) read as one stream. */
    write_gz("two.gz", js.p, js.len / 2, "wb");
    p = write_gz("two.gz", js.p + js.len / 2, js.len - js.len / 2, "ab");
    read_all(p, READER_AUTO, 0, 100, &gz);
    assert_int_equal(gz.rc, 0);
    read_all(tpath("j.jsonl"), READER_AUTO, 0, 100, &plain);
    assert_same(&plain, &gz);
    got_free(&plain);
    got_free(&gz);
    free(pb.p);
    free(js.p);
}

static void test_gzip_errors(void **state)
{
    (void)state;
    struct bytes js = {0};
    struct got g;
    struct stat st;
    unsigned char *z;
    FILE *f;

    make_jsonl(&js, 200000);
    const char *p = write_gz("bad.gz", js.p, js.len, "wb");
    assert_int_equal(stat(p, &st), 0);
    size_t zlen = (size_t)st.st_size;
    z = malloc(zlen + 16);
    assert_non_null(z);
    f = fopen(p, "rb");
    assert_non_null(f);
    assert_int_equal(fread(z, 1, zlen, f), zlen);
    fclose(f);

    /* Cut short: the records before the cut come first, then the error. */
    read_all(write_file("cut.gz", z, zlen - 100), READER_AUTO, 0, 64, &g);
    assert_int_equal(g.rc, -1);
    assert_true(g.n > 1000);
    assert_non_null(strstr(g.err, "cut.gz: gzip data ends early at "
                                  "compressed byte"));
    got_free(&g);

    /* Corrupt in the middle. */
    for (size_t i = zlen / 2; i < zlen / 2 + 64; i++) {
        z[i] ^= 0x5a;
    }
    read_all(write_file("corrupt.gz", z, zlen), READER_AUTO, 0, 64, &g);
    assert_int_equal(g.rc, -1);
    assert_non_null(strstr(g.err, "corrupt.gz: gzip data corrupt at "
                                  "compressed byte"));
    got_free(&g);
    for (size_t i = zlen / 2; i < zlen / 2 + 64; i++) {
        z[i] ^= 0x5a;
    }

    /* Something after the last member. */
    memcpy(z + zlen, "garbage", 7);
    read_all(write_file("trail.gz", z, zlen + 7), READER_AUTO, 0, 64, &g);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.n, 200000);
    char want[PATH_MAX + 128];
    snprintf(want, sizeof(want),
             "%s: data after the end of the gzip stream at compressed byte "
             "%zu",
             tpath("trail.gz"), zlen);
    assert_string_equal(g.err, want);
    got_free(&g);

    /* Only the magic. */
    char err[PATH_MAX + 128];
    p = write_file("magic.gz", "\x1f\x8b", 2);
    assert_null(reader_open(p, READER_AUTO, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "magic.gz: gzip data ends early"));
    free(z);
    free(js.p);
}

/* ---- format detection, empty input --------------------------------- */

static void test_auto_detection(void **state)
{
    (void)state;
    struct bytes b = {0};
    struct got g;
    unsigned char rec[200];

    /* JSON lines after blank lines: positions count them. */
    put_str(&b, "\n \t\r\n  {\"a\":1}\n{ }\n");
    read_all(write_file("ws.jsonl", b.p, b.len), READER_AUTO, 0, 8, &g);
    assert_int_equal(g.fmt, READER_JSONL);
    assert_int_equal(g.n, 2);
    assert_rec(&g, 0, "  {\"a\":1}", 3, 5);
    assert_rec(&g, 1, "{ }", 4, 15);
    got_free(&g);

    /* Spaces and tabs may come between '{' and '"'. */
    read_all(write_file("sp.jsonl", "{ \t\"a\":1}", 9), READER_AUTO, 0, 8, &g);
    assert_int_equal(g.fmt, READER_JSONL);
    assert_rec(&g, 0, "{ \t\"a\":1}", 1, 0);
    got_free(&g);

    /* Protobuf. */
    b.len = 0;
    make_pb(&b, 100);
    read_all(write_file("a.pb", b.p, b.len), READER_AUTO, 0, 8, &g);
    assert_int_equal(g.fmt, READER_PROTOBUF);
    assert_int_equal(g.n, 100);
    got_free(&g);

    /* A first record of 123 bytes starts with '{' (0x7b), then a field
     * tag; one of 32 or 10 bytes with a blank. */
    static const size_t lens[] = {123, 32, 10};
    for (size_t k = 0; k < 3; k++) {
        b.len = 0;
        put_varint(&b, lens[k]);
        rec[0] = 0x0a; /* field 1, length-delimited */
        rec[1] = 0x1c;
        fill(rec + 2, lens[k] - 2, k);
        put(&b, rec, lens[k]);
        put_varint(&b, 2);
        put_str(&b, "{\"");
        read_all(write_file("brace.pb", b.p, b.len), READER_AUTO, 0, 8, &g);
        assert_int_equal(g.fmt, READER_PROTOBUF);
        assert_int_equal(g.rc, 0);
        assert_int_equal(g.n, 2);
        assert_int_equal(g.v[0].len, lens[k]);
        assert_rec(&g, 1, "{\"", 2, 1 + lens[k]);
        got_free(&g);
    }

    /* gzip of both. */
    b.len = 0;
    put_str(&b, "\n\n{\"a\":1}");
    read_all(write_gz("ws.gz", b.p, b.len, "wb"), READER_AUTO, 0, 8, &g);
    assert_int_equal(g.fmt, READER_JSONL);
    assert_rec(&g, 0, "{\"a\":1}", 3, 2);
    got_free(&g);
    b.len = 0;
    make_pb(&b, 10);
    read_all(write_gz("p.gz", b.p, b.len, "wb"), READER_AUTO, 0, 8, &g);
    assert_int_equal(g.fmt, READER_PROTOBUF);
    assert_int_equal(g.n, 10);
    got_free(&g);

    /* An explicit format is not second-guessed. */
    read_all(write_file("forced", "{\"a\"}\n", 6), READER_PROTOBUF, 0, 8, &g);
    assert_int_equal(g.fmt, READER_PROTOBUF);
    assert_int_equal(g.rc, -1); /* 123-byte record, 5 bytes left */
    got_free(&g);
    free(b.p);
}

static void test_empty_input(void **state)
{
    (void)state;
    struct got g;
    static const enum reader_format fmts[] = {READER_AUTO, READER_JSONL,
                                              READER_PROTOBUF};

    write_file("empty", "", 0);
    write_gz("empty.gz", "", 0, "wb");
    for (size_t k = 0; k < 3; k++) {
        read_all(tpath("empty"), fmts[k], 0, 8, &g);
        assert_int_equal(g.rc, 0);
        assert_int_equal(g.n, 0);
        assert_int_equal(g.fmt,
                         fmts[k] == READER_AUTO ? READER_JSONL : fmts[k]);
        assert_int_equal(g.done, 0);
        assert_int_equal(g.total, 0);
        got_free(&g);
        read_all(tpath("empty.gz"), fmts[k], 0, 8, &g);
        assert_int_equal(g.rc, 0);
        assert_int_equal(g.n, 0);
        assert_int_equal(g.gz, 1);
        got_free(&g);
    }
    read_all(write_file("blank", " \n\r\n\t", 5), READER_AUTO, 0, 8, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 0);
    assert_int_equal(g.fmt, READER_JSONL);
    got_free(&g);
    read_all(write_file("one", "\x05", 1), READER_AUTO, 0, 8, &g);
    assert_int_equal(g.fmt, READER_PROTOBUF);
    assert_int_equal(g.rc, -1);
    got_free(&g);
}

/* ---- refills ------------------------------------------------------- */

/* Records of ~100 KB between runs of small ones, 24 MB in all: many
 * refills of the 4 MiB buffer with records straddling its end. */
static size_t mixed_len(size_t i)
{
    return i % 50 == 7 ? 100000 + i % 1000 : 1 + (i * 13) % 90;
}

static void test_batches_across_refills(void **state)
{
    (void)state;
    enum { N = 12000 };
    struct bytes pb = {0}, js = {0};
    uint64_t *pb_off = malloc(N * sizeof(*pb_off));
    uint64_t *js_off = malloc(N * sizeof(*js_off));
    unsigned char *rec = malloc(200000);
    struct got g;

    assert_true(pb_off != NULL && js_off != NULL && rec != NULL);
    for (size_t i = 0; i < N; i++) {
        size_t len = mixed_len(i);
        fill(rec, len, i);
        pb_off[i] = pb.len;
        put_varint(&pb, len);
        put(&pb, rec, len);
        js_off[i] = js.len;
        put(&js, rec, len);
        put_str(&js, i % 2 ? "\r\n" : "\n");
    }
    assert_true(pb.len > 20u << 20);
    write_file("mixed.pb", pb.p, pb.len);
    write_file("mixed.jsonl", js.p, js.len);
    write_gz("mixed.pb.gz", pb.p, pb.len, "wb");
    write_gz("mixed.jsonl.gz", js.p, js.len, "wb");
    static const char *const files[] = {"mixed.pb", "mixed.jsonl",
                                        "mixed.pb.gz", "mixed.jsonl.gz"};
    static const size_t batches[] = {1, 7, 4096};
    for (size_t f = 0; f < 4; f++) {
        for (size_t k = 0; k < 3; k++) {
            /* (The lines are not JSON: AUTO would take protobuf.) */
            read_all(tpath(files[f]), f % 2 ? READER_JSONL : READER_AUTO, 0,
                     batches[k], &g);
            assert_int_equal(g.rc, 0);
            assert_int_equal(g.n, N);
            for (size_t i = 0; i < N; i++) {
                size_t len = mixed_len(i);
                fill(rec, len, i);
                assert_int_equal(g.v[i].len, len);
                assert_memory_equal(g.v[i].data, rec, len);
                assert_int_equal(g.v[i].pos, (int64_t)i + 1);
                assert_int_equal(g.v[i].off, f % 2 ? js_off[i] : pb_off[i]);
            }
            got_free(&g);
        }
    }
    free(rec);
    free(pb_off);
    free(js_off);
    free(pb.p);
    free(js.p);
}

/* Records stay valid for the whole batch, also when it is long. */
static void test_batch_records_stay_valid(void **state)
{
    (void)state;
    struct bytes b = {0};
    char err[256];
    make_jsonl(&b, 100000);
    const char *p = write_file("valid.jsonl", b.p, b.len);
    struct reader *r = reader_open(p, READER_AUTO, 0, err, sizeof(err));
    struct reader_rec *recs = calloc(100000, sizeof(*recs));
    size_t n, seen = 0;
    char want[64];

    assert_non_null(r);
    assert_non_null(recs);
    while (reader_next_batch(r, recs, 100000, &n) == 1) {
        for (size_t i = 0; i < n; i++) {
            int w = snprintf(want, sizeof(want), "{\"i\":%zu}", seen + i);
            assert_int_equal(recs[i].len, (size_t)w);
            assert_memory_equal(recs[i].data, want, (size_t)w);
        }
        seen += n;
    }
    assert_int_equal(seen, 100000);
    reader_close(r);
    free(recs);
    free(b.p);
}

/* ---- stdin, pipes, API edges ------------------------------------------ */

static void test_stdin_from_file(void **state)
{
    (void)state;
    struct bytes b = {0};
    struct got g;
    int saved = dup(STDIN_FILENO);

    make_pb(&b, 1000);
    size_t half = b.len;
    make_pb(&b, 500);
    int fd = open(write_file("stdin.pb", b.p, b.len), O_RDONLY);
    assert_true(saved >= 0 && fd >= 0);
    /* Read in part already: records and offsets count from there, the
     * progress from the start of the file. */
    assert_int_equal(lseek(fd, (off_t)half, SEEK_SET), (off_t)half);
    assert_int_equal(dup2(fd, STDIN_FILENO), STDIN_FILENO);
    close(fd);
    read_all("-", READER_AUTO, 0, 16, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 500);
    assert_int_equal(g.v[0].off, 0);
    assert_int_equal(g.v[0].pos, 1);
    assert_int_equal(g.done, b.len);
    assert_int_equal(g.total, b.len);
    got_free(&g);
    /* reader_close() left stdin open. */
    assert_int_not_equal(fcntl(STDIN_FILENO, F_GETFD), -1);
    assert_int_equal(dup2(saved, STDIN_FILENO), STDIN_FILENO);
    close(saved);
    free(b.p);
}

/* Feeds data through a pipe on stdin in small writes from a child. */
static void read_via_pipe(const unsigned char *data, size_t len, struct got *g)
{
    int pfd[2];
    int saved = dup(STDIN_FILENO);
    pid_t pid;
    int status;

    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        for (size_t at = 0, k = 1; at < len; k++) {
            size_t n = k * 97 % 5000 + 1;
            if (n > len - at) {
                n = len - at;
            }
            ssize_t w = write(pfd[1], data + at, n);
            if (w <= 0) {
                _exit(1);
            }
            at += (size_t)w;
        }
        _exit(0);
    }
    close(pfd[1]);
    assert_int_equal(dup2(pfd[0], STDIN_FILENO), STDIN_FILENO);
    close(pfd[0]);
    read_all("-", READER_AUTO, 0, 5, g);
    assert_int_equal(dup2(saved, STDIN_FILENO), STDIN_FILENO);
    close(saved);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_pipe_on_stdin(void **state)
{
    (void)state;
    struct bytes js = {0}, pb = {0};
    struct got plain, piped;
    struct stat st;
    unsigned char *z;
    FILE *f;

    make_jsonl(&js, 30000);
    read_all(write_file("pipe.jsonl", js.p, js.len), READER_AUTO, 0, 5, &plain);
    read_via_pipe(js.p, js.len, &piped);
    assert_int_equal(piped.rc, 0);
    assert_int_equal(piped.total, 0);
    assert_same(&plain, &piped);
    got_free(&plain);
    got_free(&piped);

    /* gzip'd protobuf through the pipe. */
    make_pb(&pb, 30000);
    read_all(write_file("pipe.pb", pb.p, pb.len), READER_AUTO, 0, 5, &plain);
    const char *p = write_gz("pipe.pb.gz", pb.p, pb.len, "wb");
    assert_int_equal(stat(p, &st), 0);
    z = malloc((size_t)st.st_size);
    assert_non_null(z);
    f = fopen(p, "rb");
    assert_non_null(f);
    assert_int_equal(fread(z, 1, (size_t)st.st_size, f), (size_t)st.st_size);
    fclose(f);
    read_via_pipe(z, (size_t)st.st_size, &piped);
    assert_int_equal(piped.rc, 0);
    assert_int_equal(piped.gz, 1);
    assert_int_equal(piped.done, (uint64_t)st.st_size);
    assert_same(&plain, &piped);
    got_free(&plain);
    got_free(&piped);
    free(z);
    free(js.p);
    free(pb.p);
}

static void test_open_errors(void **state)
{
    (void)state;
    char err[PATH_MAX + 128];
    char want[PATH_MAX + 128];

    assert_null(
        reader_open(tpath("missing"), READER_AUTO, 0, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: No such file or directory",
             tpath("missing"));
    assert_string_equal(err, want);

    assert_null(reader_open(tmpdir, READER_AUTO, 0, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: Is a directory", tmpdir);
    assert_string_equal(err, want);

    const char *p = write_file("ok", "{}\n", 3);
    assert_null(reader_open(p, READER_AUTO, READER_MAX_RECORD_LIMIT + 1, err,
                            sizeof(err)));
    assert_non_null(strstr(err, "record limit"));
    assert_null(reader_open(p, (enum reader_format)7, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "unknown format"));
    /* A read error: /proc/self/mem cannot be read at offset 0. */
    assert_null(
        reader_open("/proc/self/mem", READER_AUTO, 0, err, sizeof(err)));
    assert_string_equal(err, "/proc/self/mem: read failed at byte 0: "
                             "Input/output error");
    /* NULL errbuf is fine. */
    assert_null(reader_open(tpath("missing"), READER_AUTO, 0, NULL, 0));
    reader_close(NULL);
}

/* Reads path with a step limit of 1 MiB (0: none) to the end; counts the
 * calls that came back without a record (2) and checks the records: the
 * positions in want_pos[n_want], the too-long ones flagged. */
static void read_stepped(const char *path, enum reader_format fmt,
                         size_t limit, const int64_t *want_pos,
                         const int *want_long, size_t n_want, int *n_steps)
{
    char err[256];
    struct reader_rec recs[4];
    size_t n, got = 0;
    int rc;
    struct reader *r = reader_open(path, fmt, 0, err, sizeof(err));
    assert_non_null(r);
    reader_set_step_limit(r, limit);
    *n_steps = 0;
    while ((rc = reader_next_batch(r, recs, 4, &n)) != 0) {
        assert_true(rc == 1 || rc == 2);
        if (rc == 2) {
            assert_int_equal(n, 0);
            assert_string_equal(reader_error(r), "");
            (*n_steps)++;
            continue;
        }
        for (size_t i = 0; i < n; i++, got++) {
            assert_true(got < n_want);
            assert_int_equal(recs[i].pos, want_pos[got]);
            assert_int_equal(recs[i].too_long, want_long[got]);
        }
    }
    assert_int_equal(got, n_want);
    assert_int_equal(reader_next_batch(r, recs, 4, &n), 0);
    reader_close(r);
}

/* With a step limit a call comes back (2, no record) after about that much
 * input without a record - blank lines, a line over the limit, empty gzip
 * members - and the next call goes on where it stopped; without one it
 * returns only with a record or at the end. */
static void test_step_limit(void **state)
{
    (void)state;
    const size_t big = (size_t)24 << 20;
    unsigned char *data = malloc(big + 64);
    int steps;
    assert_non_null(data);

    /* 24 MiB of blank lines, then a record */
    memset(data, '\n', big);
    memcpy(data + big, "{\"a\":1}\n", 8);
    const char *p = write_gz("blank.jsonl.gz", data, big + 8, "wb");
    int64_t pos1[] = {(int64_t)big + 1};
    int long1[] = {0};
    read_stepped(p, READER_AUTO, (size_t)1 << 20, pos1, long1, 1, &steps);
    assert_true(steps >= 3);
    read_stepped(p, READER_AUTO, 0, pos1, long1, 1, &steps);
    assert_int_equal(steps, 0);

    /* one 24 MiB line of NUL bytes (a gzip bomb as JSON lines), then a
     * record: the long line is a record too (too_long) */
    memset(data, 0, big);
    data[big] = '\n';
    memcpy(data + big + 1, "{\"a\":1}\n", 8);
    p = write_gz("nul.jsonl.gz", data, big + 9, "wb");
    int64_t pos2[] = {1, 2};
    int long2[] = {1, 0};
    read_stepped(p, READER_JSONL, (size_t)1 << 20, pos2, long2, 2, &steps);
    assert_true(steps >= 3);
    read_stepped(p, READER_JSONL, 0, pos2, long2, 2, &steps);
    assert_int_equal(steps, 0);

    /* 200,000 empty gzip members (about 4 MiB), then one with a record */
    p = write_gz("empty.gz", "", 0, "wb");
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    unsigned char member[64];
    size_t ml = fread(member, 1, sizeof(member), f);
    fclose(f);
    assert_true(ml > 0 && ml < sizeof(member));
    struct bytes b = {0};
    for (int i = 0; i < 200000; i++) {
        put(&b, member, ml);
    }
    p = write_file("members.gz", b.p, b.len);
    write_gz("members.gz", "{\"a\":1}\n", 8, "ab");
    int64_t pos3[] = {1};
    read_stepped(p, READER_JSONL, (size_t)1 << 20, pos3, long1, 1, &steps);
    assert_true(steps >= 2);
    read_stepped(p, READER_JSONL, 0, pos3, long1, 1, &steps);
    assert_int_equal(steps, 0);
    free(b.p);
    free(data);
}

static void test_single_next_progress_and_names(void **state)
{
    (void)state;
    struct bytes b = {0};
    char err[256];
    struct reader_rec rec;
    uint64_t done, total;
    size_t n;

    make_jsonl(&b, 1000);
    const char *p = write_file("single.jsonl", b.p, b.len);
    struct reader *r = reader_open(p, READER_AUTO, 0, err, sizeof(err));
    assert_non_null(r);
    assert_string_equal(reader_path(r), p);
    assert_string_equal(reader_error(r), "");
    assert_string_equal(reader_format_name(reader_format_of(r)), "jsonl");
    assert_string_equal(reader_format_name(READER_PROTOBUF), "protobuf");
    assert_string_equal(reader_format_name(READER_AUTO), "auto");
    assert_string_equal(reader_format_name((enum reader_format)9), "?");
    reader_progress(r, &done, &total);
    assert_int_equal(done, 0);
    assert_int_equal(total, b.len);
    assert_int_equal(reader_next(r, &rec), 1);
    assert_int_equal(rec.pos, 1);
    assert_memory_equal(rec.data, "{\"i\":0}", 7);
    reader_progress(r, &done, NULL);
    assert_int_equal(done, 9); /* "{"i":0}\r\n" */
    total = 0;
    reader_progress(r, NULL, &total);
    assert_int_equal(total, b.len);
    /* max 0 is refused but does not stop the reader. */
    assert_int_equal(reader_next_batch(r, &rec, 0, &n), -1);
    assert_int_equal(n, 0);
    assert_non_null(strstr(reader_error(r), "max is 0"));
    assert_int_equal(reader_next(r, &rec), 1);
    assert_int_equal(rec.pos, 2);
    assert_string_equal(reader_error(r), "");
    reader_close(r);

    int saved = dup(STDIN_FILENO);
    int fd = open(p, O_RDONLY);
    assert_true(saved >= 0 && fd >= 0);
    assert_int_equal(dup2(fd, STDIN_FILENO), STDIN_FILENO);
    close(fd);
    r = reader_open("-", READER_AUTO, 0, err, sizeof(err));
    assert_non_null(r);
    assert_string_equal(reader_path(r), "stdin");
    reader_close(r);
    assert_int_equal(dup2(saved, STDIN_FILENO), STDIN_FILENO);
    close(saved);
    free(b.p);
}

/* ---- read errors and a non-blocking stdin ------------------------- */

/* Puts on stdin a socket that holds data (len bytes) and then fails
 * with ECONNRESET: the peer closed with data of ours unread, the way a
 * connection that is reset mid-stream ends. Returns the saved stdin. */
static int stdin_reset_after(const void *data, size_t len)
{
    int sv[2];
    int saved = dup(STDIN_FILENO);

    assert_true(saved >= 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    if (len > 0) {
        assert_int_equal(write(sv[1], data, len), (ssize_t)len);
    }
    assert_int_equal(write(sv[0], "x", 1), 1); /* left unread by sv[1] */
    close(sv[1]);
    assert_int_equal(dup2(sv[0], STDIN_FILENO), STDIN_FILENO);
    close(sv[0]);
    return saved;
}

static void restore_stdin(int saved)
{
    assert_int_equal(dup2(saved, STDIN_FILENO), STDIN_FILENO);
    close(saved);
}

/* A read error after some records: those records are handed out, then
 * the error, with the byte it happened at - for plain input, for gzip
 * input, and while the format is still being told. */
static void test_read_error_mid_stream(void **state)
{
    (void)state;
    static const char lines[] = "{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n{\"i\":";
    char want[256];
    char err[256];
    struct got g;
    int saved;

    saved = stdin_reset_after(lines, sizeof(lines) - 1);
    read_all("-", READER_AUTO, 0, 2, &g);
    restore_stdin(saved);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.fmt, READER_JSONL);
    assert_int_equal(g.n, 3);
    assert_rec(&g, 2, "{\"i\":2}", 3, 16);
    snprintf(want, sizeof(want),
             "stdin: read failed at byte %zu: Connection reset by peer",
             sizeof(lines) - 1);
    assert_string_equal(g.err, want);
    got_free(&g);

    /* the same lines gzip'd, then the connection reset */
    struct stat st;
    const char *p = write_gz("reset.gz", lines, sizeof(lines) - 1, "wb");
    assert_int_equal(stat(p, &st), 0);
    unsigned char z[256];
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    assert_int_equal(fread(z, 1, sizeof(z), f), (size_t)st.st_size);
    fclose(f);
    /* all but the gzip trailer (CRC and length, 8 bytes) arrives */
    size_t zn = (size_t)st.st_size - 8;
    saved = stdin_reset_after(z, zn);
    read_all("-", READER_AUTO, 0, 2, &g);
    restore_stdin(saved);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.gz, 1);
    assert_int_equal(g.n, 3);
    snprintf(want, sizeof(want),
             "stdin: read failed at byte %zu: Connection reset by peer", zn);
    assert_string_equal(g.err, want);
    got_free(&g);

    /* the whole gzip member arrives, then the reset: not a clean end
     * (another member may follow), but the records are all there */
    saved = stdin_reset_after(z, (size_t)st.st_size);
    read_all("-", READER_AUTO, 0, 2, &g);
    restore_stdin(saved);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.n, 3);
    snprintf(want, sizeof(want),
             "stdin: read failed at byte %zu: Connection reset by peer",
             (size_t)st.st_size);
    assert_string_equal(g.err, want);
    got_free(&g);

    /* "{" and blanks: JSON lines or protobuf is not known yet */
    saved = stdin_reset_after("{  ", 3);
    assert_null(reader_open("-", READER_AUTO, 0, err, sizeof(err)));
    restore_stdin(saved);
    assert_string_equal(err, "stdin: read failed at byte 3: Connection "
                             "reset by peer");

    /* nothing at all before the reset */
    saved = stdin_reset_after(NULL, 0);
    assert_null(reader_open("-", READER_AUTO, 0, err, sizeof(err)));
    restore_stdin(saved);
    assert_string_equal(err, "stdin: read failed at byte 0: Connection "
                             "reset by peer");
}

/* The state of process pid from /proc/pid/stat ('R', 'S', ...). */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return '?';
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')'); /* after the command name */
    return rp != NULL && rp[1] == ' ' ? rp[2] : '?';
}

/* A non-blocking stdin (O_NONBLOCK on a pipe) that has nothing to read
 * yet: the reader waits for data (poll) rather than failing on EAGAIN,
 * and reads the same records as from a file. The writer sends the first
 * part, waits until the reader has taken it and sleeps in poll(), then
 * sends the rest. */
static void test_nonblocking_stdin_waits(void **state)
{
    (void)state;
    static const char part1[] = "{\"i\":0}\n{\"i\":1}\n{\"i\"";
    static const char part2[] = ":2}\n{\"i\":3}\n";
    int pfd[2];
    int saved = dup(STDIN_FILENO);
    pid_t reader_pid = getpid();
    struct got g;
    int status;

    assert_true(saved >= 0);
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        if (write(pfd[1], part1, sizeof(part1) - 1) !=
            (ssize_t)(sizeof(part1) - 1)) {
            _exit(1);
        }
        /* until the pipe is empty and the reader sleeps (in poll); the
         * records are the same either way, only the path differs */
        for (int i = 0; i < 10000; i++) {
            int queued = -1;
            char st = proc_state(reader_pid);
            if (st == '?' || (ioctl(pfd[1], FIONREAD, &queued) == 0 &&
                              queued == 0 && st == 'S')) {
                break;
            }
            poll(NULL, 0, 1);
        }
        if (write(pfd[1], part2, sizeof(part2) - 1) !=
            (ssize_t)(sizeof(part2) - 1)) {
            _exit(2);
        }
        _exit(0);
    }
    close(pfd[1]);
    assert_int_equal(fcntl(pfd[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(dup2(pfd[0], STDIN_FILENO), STDIN_FILENO);
    close(pfd[0]);
    read_all("-", READER_AUTO, 0, 8, &g);
    restore_stdin(saved);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 4);
    assert_rec(&g, 0, "{\"i\":0}", 1, 0);
    assert_rec(&g, 2, "{\"i\":2}", 3, 16);
    assert_rec(&g, 3, "{\"i\":3}", 4, 24);
    got_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonl_positions_blank_lines_crlf),
        cmocka_unit_test(test_jsonl_last_line_without_newline),
        cmocka_unit_test(test_jsonl_too_long_lines),
        cmocka_unit_test(test_jsonl_huge_lines_across_refills),
        cmocka_unit_test(test_pb_round_trip),
        cmocka_unit_test(test_pb_varint_edges),
        cmocka_unit_test(test_pb_truncated),
        cmocka_unit_test(test_gzip_both_formats),
        cmocka_unit_test(test_gzip_errors),
        cmocka_unit_test(test_auto_detection),
        cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_batches_across_refills),
        cmocka_unit_test(test_batch_records_stay_valid),
        cmocka_unit_test(test_stdin_from_file),
        cmocka_unit_test(test_pipe_on_stdin),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_single_next_progress_and_names),
        cmocka_unit_test(test_step_limit),
        cmocka_unit_test(test_read_error_mid_stream),
        cmocka_unit_test(test_nonblocking_stdin_waits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
