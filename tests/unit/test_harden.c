/* Unit tests for harden.c: after harden_no_core_dumps the process has a
 * core size limit of 0 and is not dumpable; with the environment variable
 * it is left alone. Each case runs in a child process (the settings are
 * one-way for the process). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harden.h"

/* Runs harden in a child with env set as given (NULL = unset); returns
 * the child's exit status: 0 = settings as expected. */
static int child(const char *env, int want_hardened)
{
    /* The child ends with exit(), not _exit(), so that a coverage build
     * writes its counters; nothing buffered may be written twice. */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit some = {1 << 20, RLIM_INFINITY};
        if (setrlimit(RLIMIT_CORE, &some) != 0 ||
            prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) {
            exit(10);
        }
        if (env != NULL) {
            setenv(HARDEN_ALLOW_CORE_ENV, env, 1);
        } else {
            unsetenv(HARDEN_ALLOW_CORE_ENV);
        }
        char err[128] = "";
        int allowed = -1;
        if (harden_no_core_dumps(&allowed, err, sizeof(err)) != 0) {
            exit(11);
        }
        if (allowed != !want_hardened) {
            exit(12);
        }
        struct rlimit now;
        if (getrlimit(RLIMIT_CORE, &now) != 0) {
            exit(13);
        }
        int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
        if (want_hardened) {
            exit(now.rlim_cur == 0 && now.rlim_max == 0 && dumpable == 0
                      ? 0
                      : 14);
        }
        exit(now.rlim_cur == (rlim_t)1 << 20 && dumpable == 1 ? 0 : 15);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) {
        return -1;
    }
    return WEXITSTATUS(st);
}

static void test_hardened_by_default(void **state)
{
    (void)state;
    assert_int_equal(child(NULL, 1), 0);
    /* only exactly "1" allows core dumps */
    assert_int_equal(child("0", 1), 0);
    assert_int_equal(child("", 1), 0);
    assert_int_equal(child("yes", 1), 0);
}

static void test_env_allows_core_dumps(void **state)
{
    (void)state;
    assert_int_equal(child("1", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hardened_by_default),
        cmocka_unit_test(test_env_allows_core_dumps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
