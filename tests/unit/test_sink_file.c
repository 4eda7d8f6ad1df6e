/* Unit tests for sink_file.c: lines in input order per lane, lanes in
 * order, the partial file, devices written in place. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
