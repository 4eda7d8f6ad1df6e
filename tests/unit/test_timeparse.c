/* Unit tests for timeparse.c: accepted forms with exact values, and
 * refusals with messages that say what was wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "timeparse.h"

struct good {
    const char *in;
    int64_t ms;
};

/* Expected values computed independently (Python's datetime). */
static const struct good goods[] = {
    {"0", 0},
    {"1722470400000", INT64_C(1722470400000)},
    {"0001722470400000", INT64_C(1722470400000)},
    {"100000000000", INT64_C(100000000000)},
    {"9223372036854775807", INT64_MAX},
    {"1970-01-01", 0},
    {"2024-08-01", INT64_C(1722470400000)},
    {"2000-02-29", INT64_C(951782400000)},
    {"1900-03-01", INT64_C(-2203891200000)},
    {"2100-02-28", INT64_C(4107456000000)},
    {"0001-01-01", INT64_C(-62135596800000)},
    {"0000-01-01", INT64_C(-62167219200000)},
    {"0000-02-29", INT64_C(-62162121600000)}, /* year 0 is a leap year */
    {"2024-08-01T00:00:00Z", INT64_C(1722470400000)},
    {"2024-08-01t00:00:00z", INT64_C(1722470400000)},
    {"2024-08-01 00:00:00Z", INT64_C(1722470400000)},
    {"2024-08-01T00:00:00+00:00", INT64_C(1722470400000)},
    {"2024-08-01T00:00:00-00:00", INT64_C(1722470400000)},
    {"2024-08-01T02:00:00+02:00", INT64_C(1722470400000)},
    {"2024-08-01 02:00:00+02:00", INT64_C(1722470400000)},
    {"2024-07-31T20:00:00.5-04:00", INT64_C(1722470400500)},
    {"2024-07-31T20:00:00.500-04:00", INT64_C(1722470400500)},
    {"2024-03-10T12:34:56.789+05:30", INT64_C(1710054296789)},
    {"2024-12-31T23:59:59.999Z", INT64_C(1735689599999)},
    {"1969-12-31T23:59:59.999Z", -1},
    {"1970-01-01T00:00:00.001Z", 1},
    {"1970-01-01T00:00:00.05Z", 50},
    /* Digits past milliseconds are cut, never rounded up. */
    {"1970-01-01T00:00:00.0019999Z", 1},
    {"2024-12-31T23:59:59.999999999Z", INT64_C(1735689599999)},
    {"9999-12-31T23:59:59.999Z", INT64_C(253402300799999)},
    /* An offset can move the instant to the previous or next day. */
    {"2024-08-01T00:30:00+01:00", INT64_C(1722470400000) - 30 * 60000},
    {"2024-07-31T23:30:00-01:00", INT64_C(1722470400000) + 30 * 60000},
    {"2024-08-01T00:00:00+23:59", INT64_C(1722470400000) - 86340000},
    /* Leap second: the last millisecond of second 59. */
    {"2016-12-31T23:59:60Z", INT64_C(1483228799999)},
    {"2016-12-31T23:59:60.5Z", INT64_C(1483228799999)},
};

struct bad {
    const char *in;
    const char *msg_part; /* must appear in the error message */
};

static const struct bad bads[] = {
    {"", "empty time"},
    {"-1", "expected YYYY-MM-DD"},
    {"+1722470400000", "expected YYYY-MM-DD"},
    {" 1722470400000", "expected YYYY-MM-DD"},
    {"1722470400000 ", "expected YYYY-MM-DD"},
    {"1722470400.5", "expected YYYY-MM-DD"},
    {"9223372036854775808", "too large"},
    {"1722470400", "before 1973"},
    {"20240801", "before 1973"},
    {"1", "before 1973"},
    {"99999999999", "before 1973"},
    {"99999999999999999999999", "too large"},
    {"yesterday", "expected YYYY-MM-DD"},
    {"2024-8-01", "expected YYYY-MM-DD"},
    {"24-08-01", "expected YYYY-MM-DD"},
    {"2024/08/01", "expected YYYY-MM-DD"},
    {"20240801T000000Z", "expected YYYY-MM-DD"},
    {"2024-08-01x", "expected YYYY-MM-DD"},
    {"2024-08-01T", "bad time of day"},
    {"2024-08-01T00:00Z", "bad time of day"},
    {"2024-08-01T0:00:00Z", "bad time of day"},
    {"2024-08-01T00:00:00", "no time zone"},
    {"2024-08-01 00:00:00", "no time zone"},
    {"2024-08-01T00:00:00.Z", "digits after '.'"},
    {"2024-08-01T00:00:00.123", "no time zone"},
    {"2024-08-01T00:00:00ZZ", "bad time zone"},
    {"2024-08-01T00:00:00Z ", "bad time zone"},
    {"2024-08-01T00:00:00UTC", "bad time zone"},
    {"2024-08-01T00:00:00+0200", "bad time zone"},
    {"2024-08-01T00:00:00+02", "bad time zone"},
    {"2024-08-01T00:00:00+02:00:00", "bad time zone"},
    {"2024-08-01T00:00:00+24:00", "offset +24:00 out of range"},
    {"2024-08-01T00:00:00-01:60", "out of range"},
    {"2024-00-01", "month 00 is not 01-12"},
    {"2024-13-01", "month 13 is not 01-12"},
    {"2024-08-00", "day 00 does not exist in 2024-08"},
    {"2024-08-32", "day 32 does not exist"},
    {"2024-04-31", "day 31 does not exist in 2024-04"},
    {"2023-02-29", "day 29 does not exist in 2023-02"},
    {"1900-02-29", "day 29 does not exist in 1900-02"},
    {"2024-02-30", "day 30 does not exist"},
    {"2024-08-01T24:00:00Z", "hour 24 is not 00-23"},
    {"2024-08-01T23:60:00Z", "minute 60 is not 00-59"},
    {"2024-08-01T23:59:61Z", "second 61 is not 00-60"},
    {"2024-08-01\t00:00:00Z", "expected YYYY-MM-DD"},
    {"2024-08-01T00:00:00\xc3\xa9", "bad time zone"},
    /* each separator and digit pair of the fixed forms, wrong */
    {"2024-08x01", "expected YYYY-MM-DD"},
    {"2024-0a-01", "expected YYYY-MM-DD"},
    {"2024-08-0a", "expected YYYY-MM-DD"},
    {"2024-08-01T12-00:00Z", "bad time of day"},
    {"2024-08-01T12:0a:00Z", "bad time of day"},
    {"2024-08-01T12:00-00Z", "bad time of day"},
    {"2024-08-01T12:00:0aZ", "bad time of day"},
    {"2024-08-01T00:00:00+a2:00", "bad time zone"},
    {"2024-08-01T00:00:00-0a:00", "bad time zone"},
    {"2024-08-01T00:00:00+02-00", "bad time zone"},
    {"2024-08-01T00:00:00+02:0a", "bad time zone"},
};

static void test_good_inputs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
        char err[256] = "";
        int64_t ms = INT64_MIN;
        int rc = timeparse_ms(goods[i].in, &ms, err, sizeof(err));
        if (rc != 0 || ms != goods[i].ms) {
            fail_msg("\"%s\": rc %d, %lld ms, want %lld (%s)", goods[i].in, rc,
                     (long long)ms, (long long)goods[i].ms, err);
        }
    }
}

static void test_bad_inputs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        char err[256] = "";
        int64_t ms = 42;
        int rc = timeparse_ms(bads[i].in, &ms, err, sizeof(err));
        if (rc != -1 || ms != 42 || strstr(err, bads[i].msg_part) == NULL) {
            fail_msg("\"%s\": rc %d, %lld ms, message \"%s\" should contain "
                     "\"%s\"",
                     bads[i].in, rc, (long long)ms, err, bads[i].msg_part);
        }
    }
}

static void test_message_quotes_input_and_lists_forms(void **state)
{
    (void)state;
    char err[512];
    int64_t ms;
    assert_int_equal(timeparse_ms("last tuesday", &ms, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "\"last tuesday\""));
    assert_non_null(strstr(err, "YYYY-MM-DD"));
    assert_non_null(strstr(err, "YYYY-MM-DDTHH:MM:SS"));
    assert_non_null(strstr(err, "+HH:MM"));
    assert_non_null(strstr(err, "milliseconds since"));
}

static void test_null_and_small_error_buffers(void **state)
{
    (void)state;
    int64_t ms = 7;
    char tiny[8];
    assert_int_equal(timeparse_ms(NULL, &ms, NULL, 0), -1);
    assert_int_equal(timeparse_ms("nope", &ms, NULL, 0), -1);
    assert_int_equal(timeparse_ms("nope", &ms, tiny, sizeof(tiny)), -1);
    assert_int_equal(strlen(tiny), sizeof(tiny) - 1); /* cut, terminated */
    assert_int_equal(ms, 7);
    /* A long input is quoted only in part. */
    char long_in[300];
    memset(long_in, 'x', sizeof(long_in) - 1);
    long_in[sizeof(long_in) - 1] = '\0';
    char err[512];
    assert_int_equal(timeparse_ms(long_in, &ms, err, sizeof(err)), -1);
    assert_true(strlen(err) < 250);
}

/* Every day of 1960-2100 at noon is one day after the day before: checks
 * month lengths and leap years against the arithmetic as a whole. */
static void test_consecutive_days(void **state)
{
    (void)state;
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t prev = 0;
    int first = 1;
    int days = 0;
    for (int y = 1960; y <= 2100; y++) {
        int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for (int m = 1; m <= 12; m++) {
            int n = dim[m - 1] + (m == 2 && leap);
            for (int d = 1; d <= n; d++) {
                char in[32];
                int64_t ms;
                char err[256];
                snprintf(in, sizeof(in), "%04d-%02d-%02dT12:00:00Z", y, m, d);
                if (timeparse_ms(in, &ms, err, sizeof(err)) != 0) {
                    fail_msg("%s: %s", in, err);
                }
                if (!first && ms - prev != INT64_C(86400000)) {
                    fail_msg("%s: %lld ms after the day before", in,
                             (long long)(ms - prev));
                }
                first = 0;
                prev = ms;
                days++;
            }
            char past[48];
            int64_t ms;
            snprintf(past, sizeof(past), "%04d-%02d-%02d", y, m, n + 1);
            assert_int_equal(timeparse_ms(past, &ms, NULL, 0), -1);
        }
    }
    assert_int_equal(days, 51500); /* 1960-01-01 .. 2100-12-31 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_inputs),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_message_quotes_input_and_lists_forms),
        cmocka_unit_test(test_null_and_small_error_buffers),
        cmocka_unit_test(test_consecutive_days),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
