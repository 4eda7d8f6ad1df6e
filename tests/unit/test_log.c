/* Unit tests for log.c: log_limit_ok(), the limit on repeats of one
 * message (a Redis refusal retried every 200 ms is logged once a
 * minute). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"

static void test_repeat_is_limited(void **state)
{
    (void)state;
    struct log_limit l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(log_limit_ok(&l, "NOPERM evalsha", 60), 1);
    assert_int_equal(log_limit_ok(&l, "NOPERM evalsha", 60), 0);
    assert_int_equal(log_limit_ok(&l, "NOPERM evalsha", 60), 0);
}

static void test_new_text_is_logged(void **state)
{
    (void)state;
    struct log_limit l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(log_limit_ok(&l, "NOPERM evalsha", 60), 1);
    assert_int_equal(log_limit_ok(&l, "NOPERM eval", 60), 1);
    assert_int_equal(log_limit_ok(&l, "NOPERM evalsha", 60), 1);
    assert_int_equal(log_limit_ok(&l, "NOPERM evalsha", 60), 0);
}

static void test_reset_and_interval(void **state)
{
    (void)state;
    struct log_limit l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(log_limit_ok(&l, "OOM", 60), 1);
    log_limit_reset(&l);
    assert_int_equal(log_limit_ok(&l, "OOM", 60), 1);
    assert_int_equal(log_limit_ok(&l, "OOM", 60), 0);
    /* every_s 0: the interval has always passed */
    assert_int_equal(log_limit_ok(&l, "OOM", 0), 1);
    assert_int_equal(log_limit_ok(&l, "OOM", 0), 1);
}

static void test_long_text_compares_its_kept_prefix(void **state)
{
    (void)state;
    struct log_limit l;
    memset(&l, 0, sizeof(l));
    char a[400], b[400];
    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[350] = 'y'; /* differs after what is kept: the same message */
    assert_int_equal(log_limit_ok(&l, a, 60), 1);
    assert_int_equal(log_limit_ok(&l, b, 60), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repeat_is_limited),
        cmocka_unit_test(test_new_text_is_logged),
        cmocka_unit_test(test_reset_and_interval),
        cmocka_unit_test(test_long_text_compares_its_kept_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
