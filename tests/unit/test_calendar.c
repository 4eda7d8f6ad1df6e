/* Unit tests for calendar.c: days since 1970-01-01 and back, month
 * lengths, against dates whose day numbers are known. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "calendar.h"

static void test_known_dates(void **state)
{
    (void)state;
    assert_int_equal(calendar_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(calendar_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(calendar_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(calendar_days_from_civil(2021, 4, 13), 18730);
    assert_int_equal(calendar_days_from_civil(2024, 2, 29), 19782);
    assert_int_equal(calendar_days_from_civil(1, 1, 1), -719162);
    int64_t y;
    unsigned m, d;
    calendar_civil_from_days(19930, &y, &m, &d); /* 2024-07-26 */
    assert_int_equal(y, 2024);
    assert_int_equal(m, 7);
    assert_int_equal(d, 26);
    calendar_civil_from_days(-1, &y, &m, &d);
    assert_int_equal(y, 1969);
    assert_int_equal(m, 12);
    assert_int_equal(d, 31);
}

/* Every day of 800 years around the epoch (two 400-year cycles, 1600 and
 * 2000 leap, 1700/1800/1900/2100 not) goes there and back, one day after
 * the other. */
static void test_round_trip(void **state)
{
    (void)state;
    int64_t py = 1569;
    unsigned pm = 12, pd = 31;
    for (int64_t z = calendar_days_from_civil(1570, 1, 1);
         z < calendar_days_from_civil(2370, 1, 1); z++) {
        int64_t y;
        unsigned m, d;
        calendar_civil_from_days(z, &y, &m, &d);
        assert_int_equal(calendar_days_from_civil(y, m, d), z);
        if (d == 1) {
            assert_int_equal(pd, calendar_days_in_month(py, pm));
            assert_true(m == pm % 12 + 1);
        } else {
            assert_int_equal(d, pd + 1);
            assert_int_equal(m, pm);
        }
        py = y;
        pm = m;
        pd = d;
    }
}

static void test_days_in_month(void **state)
{
    (void)state;
    assert_int_equal(calendar_days_in_month(2024, 2), 29);
    assert_int_equal(calendar_days_in_month(2023, 2), 28);
    assert_int_equal(calendar_days_in_month(1900, 2), 28);
    assert_int_equal(calendar_days_in_month(2000, 2), 29);
    assert_int_equal(calendar_days_in_month(2023, 4), 30);
    assert_int_equal(calendar_days_in_month(2023, 12), 31);
    assert_int_equal(calendar_days_in_month(2023, 0), 0);
    assert_int_equal(calendar_days_in_month(2023, 13), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_dates),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_days_in_month),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
