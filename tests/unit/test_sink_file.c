/* Unit tests for sink_file.c: lines in input order per lane, lanes in
 * order, the partial file, devices written in place. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sink_file.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cw-sinkfile-XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void put(struct sink_file *f, size_t lane, int64_t pos, const char *s)
{
    assert_int_equal(sink_file_put(f, lane, pos, s, strlen(s)), 0);
}

static void test_order_within_a_lane(void **state)
{
    (void)state;
    char path[128], partial[160], err[256];
    snprintf(path, sizeof(path), "%s/one.jsonl", dir);
    snprintf(partial, sizeof(partial), "%s.partial", path);
    struct sink_file *f = sink_file_new(path, 1, err, sizeof(err));
    assert_non_null(f);
    /* Finished out of order; equal positions keep their put order. */
    put(f, 0, 7, "g");
    put(f, 0, 3, "c");
    put(f, 0, 5, "e1");
    put(f, 0, 5, "e2");
    put(f, 0, 1, "a");
    assert_int_equal(sink_file_queued(f), 5);
    assert_int_equal(sink_file_release(f, 0, 4), 0); /* a, c */
    assert_int_equal(sink_file_queued(f), 3);
    put(f, 0, 4, "d"); /* below the next release: still in order */
    assert_int_equal(sink_file_release(f, 0, 6), 0);
    /* Nothing at the final name before finish. */
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(access(partial, F_OK), 0);
    assert_int_equal(sink_file_finish(f, err, sizeof(err)), 0);
    assert_string_equal(slurp(path), "a\nc\nd\ne1\ne2\ng\n");
    assert_int_equal(access(partial, F_OK), -1);
    assert_int_equal((int)sink_file_lines(f), 6);
    sink_file_destroy(f);
}

static void test_lanes_in_lane_order(void **state)
{
    (void)state;
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/lanes.jsonl", dir);
    struct sink_file *f = sink_file_new(path, 3, err, sizeof(err));
    assert_non_null(f);
    put(f, 2, 10, "p2-10");
    put(f, 0, 100, "p0-100");
    put(f, 1, 5, "p1-5");
    put(f, 2, 3, "p2-3");
    assert_int_equal(sink_file_release(f, 2, 11), 0);
    put(f, 0, 50, "p0-50");
    assert_int_equal(sink_file_put(f, 3, 1, "x", 1), -1); /* no lane 3 */
    assert_int_equal(sink_file_finish(f, err, sizeof(err)), 0);
    assert_string_equal(slurp(path), "p0-50\np0-100\np1-5\np2-3\np2-10\n");
    sink_file_destroy(f);
}

static void test_destroy_without_finish_leaves_nothing(void **state)
{
    (void)state;
    char path[128], partial[160], err[256];
    snprintf(path, sizeof(path), "%s/abandoned.jsonl", dir);
    snprintf(partial, sizeof(partial), "%s.partial", path);
    struct sink_file *f = sink_file_new(path, 2, err, sizeof(err));
    assert_non_null(f);
    put(f, 0, 1, "a");
    put(f, 1, 1, "b");
    assert_int_equal(sink_file_release(f, 0, 2), 0);
    sink_file_destroy(f);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(access(partial, F_OK), -1);
}

/* Flushed: every line on disk under the partial name, nothing at path
 * (a caller with two files renames neither before both are written);
 * no more lines taken; destroyed before the finish, nothing is left. */
static void test_flush_writes_all_and_renames_nothing(void **state)
{
    (void)state;
    char path[128], partial[160], err[256];
    snprintf(path, sizeof(path), "%s/flushed.jsonl", dir);
    snprintf(partial, sizeof(partial), "%s.partial", path);
    for (int finish = 0; finish < 2; finish++) {
        struct sink_file *f = sink_file_new(path, 2, err, sizeof(err));
        assert_non_null(f);
        put(f, 1, 1, "b");
        put(f, 0, 2, "a");
        assert_int_equal(sink_file_flush(f, err, sizeof(err)), 0);
        assert_int_equal(access(path, F_OK), -1);
        assert_string_equal(slurp(partial), "a\nb\n");
        assert_int_equal(sink_file_put(f, 0, 3, "c", 1), -1);
        assert_int_equal(sink_file_flush(f, err, sizeof(err)), 0);
        if (finish) {
            assert_int_equal(sink_file_finish(f, err, sizeof(err)), 0);
        }
        sink_file_destroy(f);
        assert_int_equal(access(partial, F_OK), -1);
        if (finish) {
            assert_string_equal(slurp(path), "a\nb\n");
        } else {
            assert_int_equal(access(path, F_OK), -1);
        }
    }
}

static void test_device_written_in_place(void **state)
{
    (void)state;
    char err[256];
    struct sink_file *f = sink_file_new("/dev/null", 1, err, sizeof(err));
    assert_non_null(f);
    put(f, 0, 1, "a");
    assert_int_equal(sink_file_finish(f, err, sizeof(err)), 0);
    sink_file_destroy(f);
    struct stat st;
    assert_int_equal(stat("/dev/null", &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(access("/dev/null.partial", F_OK), -1);
}

static void test_open_error_names_the_file(void **state)
{
    (void)state;
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/no/such/dir/out.jsonl", dir);
    assert_null(sink_file_new(path, 1, err, sizeof(err)));
    assert_non_null(strstr(err, "out.jsonl.partial"));
    assert_non_null(strstr(err, "No such file or directory"));
}

static void test_write_error_is_reported(void **state)
{
    (void)state;
    char err[256];
    if (access("/dev/full", W_OK) != 0) {
        skip();
    }
    struct sink_file *f = sink_file_new("/dev/full", 1, err, sizeof(err));
    assert_non_null(f);
    /* More than stdio buffers, so the write fails before the finish. */
    static char big[1 << 17];
    memset(big, 'x', sizeof(big));
    assert_int_equal(sink_file_put(f, 0, 1, big, sizeof(big)), 0);
    assert_int_equal(sink_file_release(f, 0, 2), -1);
    assert_non_null(strstr(sink_file_error(f), "/dev/full"));
    assert_int_equal(sink_file_finish(f, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "No space left on device"));
    sink_file_destroy(f);
}

/* A path that exists and is no regular file but cannot be written in
 * place (a directory): refused at once, naming it. Lines for a lane that
 * does not exist are refused too. */
static void test_not_a_file_and_bad_lanes(void **state)
{
    (void)state;
    char err[256], want[256];
    assert_null(sink_file_new(dir, 1, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: Is a directory", dir);
    assert_string_equal(err, want);

    struct sink_file *f = sink_file_new("/dev/null", 2, err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(sink_file_put(f, 2, 1, "a", 1), -1);
    assert_int_equal(sink_file_release(f, 2, 5), -1);
    assert_int_equal(sink_file_queued(f), 0);
    assert_int_equal(sink_file_finish(f, err, sizeof(err)), 0);
    sink_file_destroy(f);
}

/* No file descriptor left for a lane's spool file: the error names it,
 * the finish fails and the output is not renamed into place. */
static void test_no_fd_for_the_spool_file(void **state)
{
    (void)state;
    char path[128], partial[160], err[256], want[256];
    struct rlimit old, low;
    snprintf(path, sizeof(path), "%s/nofd.jsonl", dir);
    snprintf(partial, sizeof(partial), "%s.partial", path);
    struct sink_file *f = sink_file_new(path, 2, err, sizeof(err));
    assert_non_null(f);
    put(f, 1, 1, "{\"lane\":1}");

    int next = dup(0); /* the lowest free descriptor */
    assert_true(next >= 0);
    close(next);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)next;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int rc = sink_file_release(f, 1, 2);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);

    assert_int_equal(rc, -1);
    snprintf(want, sizeof(want), "%s: spool file: Too many open files",
             partial);
    assert_string_equal(sink_file_error(f), want);
    assert_int_equal(sink_file_finish(f, err, sizeof(err)), -1);
    assert_string_equal(err, want);
    assert_int_equal(access(path, F_OK), -1);
    sink_file_destroy(f);
    assert_int_equal(access(partial, F_OK), -1);
}

/* A spool file that cannot take its lines when they are appended (the
 * file size limit; a full disk fails the same way): the finish fails and
 * says why. */
static void test_spool_file_write_fails(void **state)
{
    (void)state;
    char err[256];
    char line[1000];
    struct rlimit old, small;
    struct sigaction ign = {.sa_handler = SIG_IGN}, was;
    struct sink_file *f = sink_file_new("/dev/null", 2, err, sizeof(err));
    assert_non_null(f);
    memset(line, 'x', sizeof(line));
    assert_int_equal(sink_file_put(f, 1, 1, line, sizeof(line)), 0);
    /* into the spool file's stdio buffer: nothing written yet */
    assert_int_equal(sink_file_release(f, 1, 2), 0);

    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 100;
    assert_int_equal(sigaction(SIGXFSZ, &ign, &was), 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    int rc = sink_file_finish(f, err, sizeof(err));
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(sigaction(SIGXFSZ, &was, NULL), 0);

    assert_int_equal(rc, -1);
    assert_string_equal(err, "/dev/null: spool file: File too large");
    sink_file_destroy(f);
}

/* The partial file vanished before the finish (removed by someone
 * else): the rename fails, naming it. */
static void test_rename_fails(void **state)
{
    (void)state;
    char path[128], partial[160], err[256], want[256];
    snprintf(path, sizeof(path), "%s/gone.jsonl", dir);
    snprintf(partial, sizeof(partial), "%s.partial", path);
    struct sink_file *f = sink_file_new(path, 1, err, sizeof(err));
    assert_non_null(f);
    put(f, 0, 1, "a");
    assert_int_equal(unlink(partial), 0);
    assert_int_equal(sink_file_finish(f, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s: rename: No such file or directory",
             partial);
    assert_string_equal(err, want);
    assert_string_equal(sink_file_error(f), want);
    assert_int_equal(access(path, F_OK), -1);
    sink_file_destroy(f);
}

/* A lane's queue that fills up after its head moved (lines released
 * while more came) is compacted, not grown, and keeps its order. */
static void test_queue_reuses_released_room(void **state)
{
    (void)state;
    char path[128], err[256], line[16], want[1024];
    size_t o = 0;
    snprintf(path, sizeof(path), "%s/reuse.jsonl", dir);
    struct sink_file *f = sink_file_new(path, 1, err, sizeof(err));
    assert_non_null(f);
    for (int i = 1; i <= 64; i++) { /* the first 64 slots */
        snprintf(line, sizeof(line), "%d", i);
        put(f, 0, i, line);
    }
    assert_int_equal(sink_file_release(f, 0, 33), 0);
    assert_int_equal(sink_file_queued(f), 32);
    for (int i = 65; i <= 96; i++) { /* into the room of 1..32 */
        snprintf(line, sizeof(line), "%d", i);
        put(f, 0, i, line);
    }
    assert_int_equal(sink_file_queued(f), 64);
    assert_int_equal(sink_file_finish(f, err, sizeof(err)), 0);
    sink_file_destroy(f);
    for (int i = 1; i <= 96; i++) {
        o += (size_t)snprintf(want + o, sizeof(want) - o, "%d\n", i);
    }
    assert_string_equal(slurp(path), want);
    sink_file_destroy(NULL);
}

/* "-" writes to stdout, in place. */
/* An existing regular file is replaced only at the finish: until then it
 * keeps its old content (the new lines go to the partial file); a second
 * finish changes nothing and succeeds; no error is reported (NULL). Zero
 * lanes are refused. */
static void test_existing_file_replaced_at_finish(void **state)
{
    (void)state;
    char path[256], err[256];
    snprintf(path, sizeof(path), "%s/old.jsonl", dir);
    FILE *o = fopen(path, "w");
    assert_non_null(o);
    fputs("old line\n", o);
    fclose(o);

    assert_null(sink_file_new(path, 0, err, sizeof(err)));
    struct sink_file *f = sink_file_new(path, 1, err, sizeof(err));
    assert_non_null(f);
    put(f, 0, 1, "new 1");
    put(f, 0, 2, "new 2");
    assert_int_equal(sink_file_release(f, 0, 3), 0);
    assert_int_equal(sink_file_flush(f, err, sizeof(err)), 0);
    assert_string_equal(slurp(path), "old line\n");
    assert_null(sink_file_error(f));
    assert_int_equal(sink_file_finish(f, err, sizeof(err)), 0);
    assert_string_equal(slurp(path), "new 1\nnew 2\n");
    assert_int_equal(sink_file_finish(f, err, sizeof(err)), 0);
    assert_string_equal(slurp(path), "new 1\nnew 2\n");
    assert_null(sink_file_error(f));
    assert_int_equal(sink_file_lines(f), 2);
    sink_file_destroy(f);
    /* destroy after a finish leaves the file */
    assert_string_equal(slurp(path), "new 1\nnew 2\n");
}

static void test_stdout(void **state)
{
    (void)state;
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/stdout.txt", dir);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    FILE *cap = fopen(path, "w");
    assert_true(saved >= 0 && cap != NULL);
    assert_int_equal(dup2(fileno(cap), STDOUT_FILENO), STDOUT_FILENO);
    struct sink_file *f = sink_file_new("-", 2, err, sizeof(err));
    assert_non_null(f);
    put(f, 1, 1, "b");
    put(f, 0, 2, "a");
    int rc = sink_file_finish(f, err, sizeof(err));
    sink_file_destroy(f);
    fflush(stdout);
    assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
    close(saved);
    fclose(cap);
    assert_int_equal(rc, 0);
    assert_string_equal(slurp(path), "a\nb\n");
}

/* The output fails while the lanes are appended to it (more than stdio
 * buffers), or at its final flush: the finish says so. */
static void test_output_fails_at_the_end(void **state)
{
    (void)state;
    char err[256];
    static char big[1 << 17];
    if (access("/dev/full", W_OK) != 0) {
        skip();
    }
    memset(big, 'x', sizeof(big));
    struct sink_file *f = sink_file_new("/dev/full", 2, err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(sink_file_put(f, 1, 1, big, sizeof(big)), 0);
    assert_int_equal(sink_file_release(f, 1, 2), 0); /* to the spool file */
    assert_int_equal(sink_file_finish(f, err, sizeof(err)), -1);
    assert_string_equal(err, "/dev/full: write: No space left on device");
    sink_file_destroy(f);

    /* a line that stdio keeps until the flush */
    f = sink_file_new("/dev/full", 1, err, sizeof(err));
    assert_non_null(f);
    put(f, 0, 1, "a");
    assert_int_equal(sink_file_release(f, 0, 2), 0);
    assert_int_equal(sink_file_flush(f, err, sizeof(err)), -1);
    assert_string_equal(err, "/dev/full: write: No space left on device");
    /* no more lines after a flush */
    assert_int_equal(sink_file_put(f, 0, 3, "b", 1), -1);
    sink_file_destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_within_a_lane),
        cmocka_unit_test(test_lanes_in_lane_order),
        cmocka_unit_test(test_destroy_without_finish_leaves_nothing),
        cmocka_unit_test(test_flush_writes_all_and_renames_nothing),
        cmocka_unit_test(test_device_written_in_place),
        cmocka_unit_test(test_open_error_names_the_file),
        cmocka_unit_test(test_write_error_is_reported),
        cmocka_unit_test(test_not_a_file_and_bad_lanes),
        cmocka_unit_test(test_no_fd_for_the_spool_file),
        cmocka_unit_test(test_spool_file_write_fails),
        cmocka_unit_test(test_rename_fails),
        cmocka_unit_test(test_queue_reuses_released_room),
        cmocka_unit_test(test_existing_file_replaced_at_finish),
        cmocka_unit_test(test_stdout),
        cmocka_unit_test(test_output_fails_at_the_end),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
