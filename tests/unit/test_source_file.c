/* Unit tests for source_file.c, the file input of replay, on a libevent
 * loop with a stand-in for the pipeline: it reads only what the pipeline
 * has room for, waits while paused or full and goes on when kicked,
 * hands on records over the size limit empty (logging the first ten),
 * stops with an error naming the place on a framing error or when the
 * pipeline cannot take the records, and stops when told. Files go to a
 * mkdtemp directory removed at the end; the data is synthetic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "source_file.h"

static char tmpdir[] = "/tmp/cw_source_XXXXXX";

#include "scratch.h"

static const char *write_file(const char *name, const void *data, size_t len)
{
    static char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return p;
}

/* The pipeline's side: room it reports, what it took. */
#define MAX_TAKEN 64

struct sink {
    size_t room;     /* capacity() answers this */
    int fail_intake; /* intake() refuses */
    size_t calls;    /* intake() calls */
    size_t largest;  /* most records in one intake() */
    size_t n;
    int64_t pos[MAX_TAKEN];
    size_t len[MAX_TAKEN];
    int too_long[MAX_TAKEN];
    char first[MAX_TAKEN][16]; /* the first bytes of each payload */
};

static size_t capacity(void *arg)
{
    return ((struct sink *)arg)->room;
}

static int intake(void *arg, const struct pipeline_record *recs, size_t n)
{
    struct sink *k = arg;
    if (k->fail_intake) {
        return -1;
    }
    k->calls++;
    k->largest = n > k->largest ? n : k->largest;
    assert_true(n <= k->room);
    k->room -= n;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(recs[i].partition, 0);
        assert_true(k->n < MAX_TAKEN);
        k->pos[k->n] = recs[i].offset;
        k->len[k->n] = recs[i].len;
        k->too_long[k->n] = recs[i].too_long;
        snprintf(k->first[k->n], sizeof(k->first[0]), "%.*s",
                 (int)(recs[i].len < 15 ? recs[i].len : 15),
                 (const char *)recs[i].payload);
        k->n++;
    }
    return 0;
}

static struct source_file *open_source(struct event_base *base,
                                       const char *path, int batch,
                                       struct sink *k)
{
    char err[256];
    struct source_file_opts o = {
        .path = path,
        .format = READER_AUTO,
        .batch_size = batch,
        .capacity = capacity,
        .intake = intake,
        .arg = k,
    };
    struct source_file *s = source_file_new(base, &o, err, sizeof(err));
    if (s == NULL) {
        fail_msg("source_file_new: %s", err);
    }
    return s;
}

/* Runs the loop until nothing is left to do (the source schedules itself
 * only while it has room and input). */
static void run(struct event_base *base)
{
    assert_true(event_base_dispatch(base) >= 0);
}

/* JSON lines, 10 of them with blank lines between: taken in batches no
 * larger than the room the pipeline has; with no room, nothing is read
 * until the pipeline kicks the source. */
static void test_reads_what_the_pipeline_has_room_for(void **state)
{
    (void)state;
    char text[512];
    size_t o = 0;
    for (int i = 0; i < 10; i++) {
        o += (size_t)snprintf(text + o, sizeof(text) - o, "{\"i\":%d}\n%s", i,
                              i == 4 ? "\n\n" : "");
    }
    const char *p = write_file("ten.jsonl", text, o);
    struct event_base *base = event_base_new();
    struct sink k = {.room = 3};
    struct source_file *s = open_source(base, p, 4, &k);
    assert_string_equal(source_file_name(s), p);

    run(base);
    assert_int_equal(k.n, 3); /* the room, less than a batch */
    assert_int_equal(source_file_at_end(s), 0);
    assert_int_equal(source_file_format(s), READER_JSONL);
    k.room = 100;
    source_file_kick(s);
    run(base);
    assert_int_equal(k.n, 10);
    assert_int_equal(k.largest, 4); /* never more than a batch */
    assert_int_equal(source_file_at_end(s), 1);
    assert_null(source_file_error(s));
    /* positions are line numbers: blank lines count */
    assert_int_equal(k.pos[0], 1);
    assert_int_equal(k.pos[4], 5);
    assert_int_equal(k.pos[5], 8);
    assert_int_equal(k.pos[9], 12);
    assert_string_equal(k.first[9], "{\"i\":9}");
    uint64_t done, total;
    source_file_progress(s, &done, &total);
    assert_int_equal(done, o);
    assert_int_equal(total, o);
    source_file_store(s, 0, 12);
    source_file_destroy(s);
    event_base_free(base);
}

/* Batches of one record over a file of 40: a slice reads a bounded
 * number of batches and then yields to the loop (kicking itself again),
 * and every record still arrives, once and in order. */
static void test_many_small_batches(void **state)
{
    (void)state;
    char text[1024];
    size_t o = 0;
    for (int i = 0; i < 40; i++) {
        o += (size_t)snprintf(text + o, sizeof(text) - o, "{\"i\":%d}\n", i);
    }
    const char *p = write_file("forty.jsonl", text, o);
    struct event_base *base = event_base_new();
    struct sink k = {.room = 1000};
    struct source_file *s = open_source(base, p, 1, &k);
    run(base);
    assert_int_equal(k.n, 40);
    assert_int_equal(k.calls, 40);
    assert_int_equal(k.largest, 1);
    for (int i = 0; i < 40; i++) {
        char want[16];
        snprintf(want, sizeof(want), "{\"i\":%d}", i);
        assert_string_equal(k.first[i], want);
        assert_int_equal(k.pos[i], i + 1);
    }
    assert_int_equal(source_file_at_end(s), 1);
    assert_null(source_file_error(s));
    source_file_destroy(s);
    event_base_free(base);
}

/* Paused: nothing is read, not even when kicked; unpaused, it goes on.
 * Stopped: nothing more is read. */
static void test_pause_and_stop(void **state)
{
    (void)state;
    const char *p = write_file("four.jsonl", "{}\n{}\n{}\n{}\n", 12);
    struct event_base *base = event_base_new();
    struct sink k = {.room = 100};
    struct source_file *s = open_source(base, p, 1, &k);

    source_file_set_paused(s, 1);
    run(base);
    source_file_kick(s);
    run(base);
    assert_int_equal(k.n, 0);
    source_file_set_paused(s, 0);
    run(base);
    assert_int_equal(k.n, 4);
    assert_int_equal(source_file_at_end(s), 1);
    source_file_destroy(s);

    k = (struct sink){.room = 2};
    s = open_source(base, p, 1, &k);
    run(base);
    assert_int_equal(k.n, 2);
    source_file_stop(s);
    k.room = 100;
    source_file_kick(s);
    run(base);
    assert_int_equal(k.n, 2);
    assert_int_equal(source_file_at_end(s), 0);
    source_file_destroy(s);
    source_file_destroy(NULL);
    event_base_free(base);
}

/* Records over the limit (1 MiB) are handed on empty, flagged, in their
 * place; the first ten are logged one by one, then only counted. */
static void test_too_long_records(void **state)
{
    (void)state;
    const size_t big = ((size_t)1 << 20) + 1;
    const int n_long = 12;
    size_t size = (size_t)n_long * (big + 1) + 64;
    char *data = malloc(size);
    assert_non_null(data);
    size_t o = 0;
    for (int i = 0; i < n_long; i++) {
        memset(data + o, 'x', big);
        memcpy(data + o, "{\"x\":\"", 6); /* JSON lines, as detected */
        o += big;
        data[o++] = '\n';
    }
    o += (size_t)snprintf(data + o, size - o, "{\"last\":1}\n");
    const char *p = write_file("long.jsonl", data, o);
    free(data);

    char logpath[PATH_MAX];
    snprintf(logpath, sizeof(logpath), "%s/long.log", tmpdir);
    int lfd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(lfd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_int_equal(dup2(lfd, STDERR_FILENO), STDERR_FILENO);

    struct event_base *base = event_base_new();
    struct sink k = {.room = 100};
    struct source_file *s = open_source(base, p, 8, &k);
    run(base);
    fflush(stderr);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);

    assert_int_equal(k.n, (size_t)n_long + 1);
    for (int i = 0; i < n_long; i++) {
        assert_int_equal(k.too_long[i], 1);
        assert_int_equal(k.len[i], 0);
        assert_int_equal(k.pos[i], i + 1);
    }
    assert_int_equal(k.too_long[n_long], 0);
    assert_string_equal(k.first[n_long], "{\"last\":1}");
    assert_int_equal(source_file_at_end(s), 1);
    assert_null(source_file_error(s));
    source_file_destroy(s);
    event_base_free(base);

    static char log[16384];
    ssize_t n = pread(lfd, log, sizeof(log) - 1, 0);
    close(lfd);
    log[n > 0 ? n : 0] = '\0';
    size_t lines = 0;
    for (const char *q = log; (q = strstr(q, "is longer than the record "
                                             "limit")) != NULL;
         q++) {
        lines++;
    }
    assert_int_equal(lines, 10);
    char want[PATH_MAX + 128];
    snprintf(want, sizeof(want), "%s: line 10 is longer than the record "
             "limit; it goes to the dead letters (too_long); further ones "
             "are only counted", p);
    if (strstr(log, want) == NULL) {
        fail_msg("expected \"%s\" in the log:\n%s", want, log);
    }
}

/* 9 MiB of blank lines before the first record: a read comes back to the
 * loop after 8 MiB without a record, and the next turn goes on; the
 * record's position counts every blank line. */
static void test_blank_lines_yield_to_the_loop(void **state)
{
    (void)state;
    const size_t blank = (size_t)9 << 20;
    char *data = malloc(blank + 16);
    assert_non_null(data);
    memset(data, '\n', blank);
    memcpy(data + blank, "{\"a\":1}\n", 8);
    const char *p = write_file("blank.jsonl", data, blank + 8);
    free(data);
    struct event_base *base = event_base_new();
    struct sink k = {.room = 100};
    struct source_file *s = open_source(base, p, 8, &k);
    run(base);
    assert_int_equal(k.n, 1);
    assert_int_equal(k.pos[0], (int64_t)blank + 1);
    assert_int_equal(source_file_at_end(s), 1);
    assert_null(source_file_error(s));
    source_file_destroy(s);
    event_base_free(base);
}

/* A framing error stops the source with the reader's message; records
 * before it were handed on. */
static void test_framing_error_stops(void **state)
{
    (void)state;
    /* two length-delimited records, then a length past the end */
    static const unsigned char pb[] = {3, 'a', 'b', 'c', 1, 'd', 9, 'e'};
    const char *p = write_file("cut.pb", pb, sizeof(pb));
    struct event_base *base = event_base_new();
    struct sink k = {.room = 100};
    struct source_file *s = open_source(base, p, 8, &k);
    run(base);
    assert_int_equal(source_file_format(s), READER_PROTOBUF);
    assert_int_equal(k.n, 2);
    assert_string_equal(k.first[1], "d");
    assert_int_equal(source_file_at_end(s), 1);
    assert_non_null(source_file_error(s));
    assert_non_null(strstr(source_file_error(s), p));
    source_file_destroy(s);
    event_base_free(base);
}

/* The pipeline cannot take the records (out of memory): the reader
 * cannot rewind, so the source stops with an error naming the first
 * position it could not hand on. */
static void test_intake_refused_stops(void **state)
{
    (void)state;
    const char *p = write_file("three.jsonl", "{}\n{}\n{}\n", 9);
    struct event_base *base = event_base_new();
    struct sink k = {.room = 1};
    struct source_file *s = open_source(base, p, 8, &k);
    run(base);
    assert_int_equal(k.n, 1);
    k.room = 100;
    k.fail_intake = 1;
    source_file_kick(s);
    run(base);
    assert_int_equal(source_file_at_end(s), 1);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want),
             "%s: out of memory taking records at position 2", p);
    assert_string_equal(source_file_error(s), want);
    source_file_destroy(s);
    event_base_free(base);
}

/* A file that is not there: no source, the reason names it. */
static void test_open_error(void **state)
{
    (void)state;
    char err[PATH_MAX + 64], want[PATH_MAX + 64], path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/missing.jsonl", tmpdir);
    struct event_base *base = event_base_new();
    struct sink k = {.room = 1};
    struct source_file_opts o = {
        .path = path,
        .format = READER_AUTO,
        .batch_size = 8,
        .capacity = capacity,
        .intake = intake,
        .arg = &k,
    };
    assert_null(source_file_new(base, &o, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: No such file or directory", path);
    assert_string_equal(err, want);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_what_the_pipeline_has_room_for),
        cmocka_unit_test(test_many_small_batches),
        cmocka_unit_test(test_pause_and_stop),
        cmocka_unit_test(test_too_long_records),
        cmocka_unit_test(test_blank_lines_yield_to_the_loop),
        cmocka_unit_test(test_framing_error_stops),
        cmocka_unit_test(test_intake_refused_stops),
        cmocka_unit_test(test_open_error),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
