/* Unit tests for secret_file.c: a private regular file is read whole;
 * everything else is refused with "<what> <path>: <problem>" - no path,
 * missing, a directory, a FIFO (without blocking), a device, mode bits
 * for group or others, a read error, over the size limit, NUL bytes -
 * and on a refusal the buffer holds nothing of the file and the message
 * nothing of its content. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "secret_file.h"

#define MAX 64
#define WHAT "test secret"
#define CONTENT "s3cr3t-Value-42"

static char dir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test_secret_file.XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes len bytes of data to dir/name with mode; returns the path
 * (static storage, valid until the next call). */
static const char *put(const char *name, const void *data, size_t len,
                       mode_t mode)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

/* Reads path expecting a refusal whose message starts with
 * "<WHAT> <path>: " and holds want; the buffer must hold nothing of the
 * file and the message nothing of CONTENT. */
static void refused(const char *path, const char *want)
{
    char buf[MAX + 1];
    char err[256] = "";
    char head[200];
    size_t len = 12345;
    memset(buf, 0, sizeof(buf));
    assert_int_equal(secret_file_read(path, WHAT, buf, MAX, &len, err,
                                      sizeof(err)),
                     -1);
    assert_int_equal(len, 12345); /* untouched */
    snprintf(head, sizeof(head), "%s %s: ", WHAT, path);
    if (strncmp(err, head, strlen(head)) != 0 || strstr(err, want) == NULL) {
        fail_msg("%s: got \"%s\", want \"%s...%s\"", path, err, head, want);
    }
    assert_null(strstr(err, CONTENT));
    assert_null(memmem(buf, sizeof(buf), CONTENT, 6));
    for (size_t i = 0; i < sizeof(buf); i++) {
        if (buf[i] != '\0') {
            fail_msg("%s: byte %zu of the buffer not wiped", path, i);
        }
    }
}

static void test_reads_a_private_file(void **state)
{
    (void)state;
    char buf[MAX + 1];
    char err[256] = "";
    size_t len = 0;
    const char *p = put("ok", CONTENT "\n", strlen(CONTENT) + 1, 0600);
    assert_int_equal(
        secret_file_read(p, WHAT, buf, MAX, &len, err, sizeof(err)), 0);
    assert_int_equal(len, strlen(CONTENT) + 1);
    assert_string_equal(buf, CONTENT "\n");

    /* read-only for the owner, empty, and exactly MAX bytes: fine */
    p = put("ro", "x", 1, 0400);
    assert_int_equal(
        secret_file_read(p, WHAT, buf, MAX, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 1);
    p = put("empty", "", 0, 0600);
    assert_int_equal(
        secret_file_read(p, WHAT, buf, MAX, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 0);
    assert_string_equal(buf, "");
    char full[MAX];
    memset(full, 'k', sizeof(full));
    p = put("full", full, sizeof(full), 0600);
    assert_int_equal(
        secret_file_read(p, WHAT, buf, MAX, &len, err, sizeof(err)), 0);
    assert_int_equal(len, MAX);
    assert_int_equal(buf[MAX], '\0');
}

static void test_refuses_what_is_not_a_private_regular_file(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/missing", dir);
    refused(path, "No such file or directory");
    refused(dir, "not a regular file");
    refused("/dev/null", "not a regular file");
    /* a FIFO with no writer: refused at once, the open does not block */
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(5);
    refused(path, "not a regular file");
    alarm(0);

    static const struct {
        mode_t mode;
        const char *text;
    } modes[] = {{0640, "mode 0640 is readable or writable by group or "
                        "others; chmod 600 it"},
                 {0620, "mode 0620"},
                 {0604, "mode 0604"},
                 {0602, "mode 0602"},
                 {0644, "mode 0644"}};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        refused(put("open", CONTENT, strlen(CONTENT), modes[i].mode),
                modes[i].text);
    }
}

static void test_refuses_bad_content(void **state)
{
    (void)state;
    char big[MAX + 1];
    memset(big, 'k', sizeof(big));
    memcpy(big + 10, CONTENT, strlen(CONTENT));
    refused(put("big", big, sizeof(big), 0600), "larger than 64 bytes");
    char nul[] = CONTENT "\0tail";
    refused(put("nul", nul, sizeof(nul) - 1, 0600), "contains NUL bytes");
}

static void test_read_error(void **state)
{
    (void)state;
    /* a regular 0600 file whose read fails: reading this process's
     * memory at offset 0 (nothing mapped there) gives EIO */
    struct stat st;
    if (stat("/proc/self/mem", &st) != 0 || !S_ISREG(st.st_mode) ||
        (st.st_mode & 077) != 0) {
        skip();
    }
    refused("/proc/self/mem", strerror(EIO));
}

static void test_no_path_and_no_error_buffer(void **state)
{
    (void)state;
    char buf[MAX + 1];
    char err[128] = "";
    size_t len = 0;
    assert_int_equal(
        secret_file_read(NULL, WHAT, buf, MAX, &len, err, sizeof(err)), -1);
    assert_string_equal(err, WHAT ": no path");
    err[0] = '\0';
    assert_int_equal(
        secret_file_read("", WHAT, buf, MAX, &len, err, sizeof(err)), -1);
    assert_string_equal(err, WHAT ": no path");
    /* no room for a message: still refused, nothing written */
    char path[128];
    snprintf(path, sizeof(path), "%s/missing", dir);
    assert_int_equal(secret_file_read(path, WHAT, buf, MAX, &len, NULL, 0),
                     -1);
    const char *p = put("open", CONTENT, strlen(CONTENT), 0644);
    assert_int_equal(secret_file_read(p, WHAT, buf, MAX, &len, NULL, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_a_private_file),
        cmocka_unit_test(test_refuses_what_is_not_a_private_regular_file),
        cmocka_unit_test(test_refuses_bad_content),
        cmocka_unit_test(test_read_error),
        cmocka_unit_test(test_no_path_and_no_error_buffer),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
