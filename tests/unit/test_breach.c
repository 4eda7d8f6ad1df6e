/* test_breach.c - element lists, UTC dates, breach ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "breach.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define MS_PER_DAY INT64_C(86400000)

static void test_element_names(void **state)
{
    (void)state;
    assert_string_equal(breach_element_name(BREACH_EL_PAN), "pan");
    assert_string_equal(breach_element_name(BREACH_EL_EXPIRY), "expiry");
    assert_string_equal(breach_element_name(BREACH_EL_CVV2), "cvv2");
    assert_string_equal(breach_element_name(BREACH_EL_NAME), "name");
    assert_string_equal(breach_element_name(BREACH_EL_ADDRESS), "address");
    assert_string_equal(breach_element_name(BREACH_EL_PHONE), "phone");
    assert_string_equal(breach_element_name(BREACH_EL_EMAIL), "email");
    assert_null(breach_element_name(0));
    assert_null(breach_element_name(1u << BREACH_EL_COUNT));
    assert_null(breach_element_name(BREACH_EL_PAN | BREACH_EL_CVV2));
}

static void test_elements_parse(void **state)
{
    uint32_t m = 0;
    char err[128];
    (void)state;

    assert_int_equal(breach_elements_parse("pan", &m, err, sizeof(err)), 0);
    assert_int_equal(m, BREACH_EL_PAN);
    assert_int_equal(
        breach_elements_parse("cvv2,pan,expiry", &m, err, sizeof(err)), 0);
    assert_int_equal(m, BREACH_EL_PAN | BREACH_EL_EXPIRY | BREACH_EL_CVV2);
    assert_int_equal(
        breach_elements_parse("pan,expiry,cvv2,name,address,phone,email", &m,
                              err, sizeof(err)),
        0);
    assert_int_equal(m, (1u << BREACH_EL_COUNT) - 1);
    assert_int_equal(breach_elements_parse("pan,pan", &m, err, sizeof(err)), 0);
    assert_int_equal(m, BREACH_EL_PAN);

    m = 12345;
    assert_int_equal(breach_elements_parse("pan,ssn", &m, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "ssn"));
    /* a long unknown element is quoted up to 32 characters */
    assert_int_equal(
        breach_elements_parse("pan,abcdefghijklmnopqrstuvwxyz0123456789", &m,
                              err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "\"abcdefghijklmnopqrstuvwxyz012345\" "));
    assert_null(strstr(err, "6789"));
    assert_int_equal(m, 12345); /* untouched on error */
    assert_int_equal(breach_elements_parse("", &m, err, sizeof(err)), -1);
    assert_true(strlen(err) > 0);
    assert_int_equal(breach_elements_parse("pan,", &m, err, sizeof(err)), -1);
    assert_int_equal(breach_elements_parse(",pan", &m, err, sizeof(err)), -1);
    assert_int_equal(breach_elements_parse("pan,,cvv2", &m, err, sizeof(err)),
                     -1);
    assert_int_equal(breach_elements_parse("pan, cvv2", &m, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, " cvv2"));
    assert_int_equal(breach_elements_parse("PAN", &m, err, sizeof(err)), -1);
    assert_int_equal(breach_elements_parse("pa", &m, err, sizeof(err)), -1);
    assert_int_equal(breach_elements_parse("pans", &m, err, sizeof(err)), -1);
    assert_int_equal(breach_elements_parse(NULL, &m, err, sizeof(err)), -1);
    assert_int_equal(breach_elements_parse("x", &m, NULL, 0), -1);
}

static void test_elements_format(void **state)
{
    char buf[128];
    char err[128];
    uint32_t m;
    (void)state;

    assert_int_equal(
        breach_elements_format(BREACH_EL_CVV2 | BREACH_EL_PAN | BREACH_EL_EMAIL,
                               buf, sizeof(buf)),
        (int)strlen("pan,cvv2,email"));
    assert_string_equal(buf, "pan,cvv2,email");
    assert_int_equal(breach_elements_format(0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    /* Too small: needs room for the NUL. */
    assert_int_equal(breach_elements_format(BREACH_EL_PAN, buf, 3), -1);
    assert_int_equal(breach_elements_format(BREACH_EL_PAN, buf, 4), 3);
    assert_int_equal(breach_elements_format(BREACH_EL_PAN, buf, 0), -1);
    assert_int_equal(
        breach_elements_format(BREACH_EL_PAN | BREACH_EL_EXPIRY, buf, 10), -1);

    /* Round trip over every mask. */
    for (uint32_t mask = 1; mask < (1u << BREACH_EL_COUNT); mask++) {
        int n = breach_elements_format(mask, buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(breach_elements_parse(buf, &m, err, sizeof(err)), 0);
        assert_int_equal(m, mask);
        assert_int_equal(breach_elements_format(mask, buf, (size_t)n), -1);
        assert_int_equal(breach_elements_format(mask, buf, (size_t)n + 1), n);
    }
}

static void test_dates(void **state)
{
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {
        {"1970-01-01", 0},
        {"2021-04-13", INT64_C(1618272000000)},
        {"2024-07-26", INT64_C(1721952000000)},
        {"2024-02-29", INT64_C(1709164800000)},
        {"2000-02-29", INT64_C(951782400000)},
        {"1969-12-31", -MS_PER_DAY},
        {"2038-01-19", INT64_C(2147472000000)},
        {"9999-12-31", INT64_C(253402214400000)},
        {"0001-01-01", INT64_C(-62135596800000)},
    };
    static const char *bad[] = {
        "2023-02-29",          "1900-02-29",  "2024-02-30",  "2024-04-31",
        "2024-13-01",          "2024-00-10",  "2024-01-00",  "2024-01-32",
        "0000-01-01",          "2024-1-01",   "2024/01/01",  "24-01-01",
        "2024-01-01T00:00:00", "2024-01-01 ", " 2024-01-01", "",
        "2024-0a-01",          "+024-01-01",
    };
    int64_t ms;
    char buf[32];
    (void)state;

    for (size_t i = 0; i < NELEM(good); i++) {
        if (breach_date_parse(good[i].s, 0, &ms) != 0 || ms != good[i].ms) {
            fail_msg("date %s", good[i].s);
        }
        assert_int_equal(breach_date_parse(good[i].s, 1, &ms), 0);
        assert_int_equal(ms, good[i].ms + 86399999);
        breach_date_format(good[i].ms, buf, sizeof(buf));
        assert_string_equal(buf, good[i].s);
        breach_date_format(good[i].ms + 86399999, buf, sizeof(buf));
        assert_string_equal(buf, good[i].s);
    }
    for (size_t i = 0; i < NELEM(bad); i++) {
        ms = 42;
        if (breach_date_parse(bad[i], 0, &ms) != -1) {
            fail_msg("date %s accepted", bad[i]);
        }
        assert_int_equal(ms, 42);
    }
    assert_int_equal(breach_date_parse(NULL, 0, &ms), -1);

    /* The breach window of the design's example. */
    assert_int_equal(breach_date_parse("2021-04-13", 0, &ms), 0);
    assert_int_equal(ms, INT64_C(1618272000000));
    assert_int_equal(breach_date_parse("2021-04-13", 1, &ms), 0);
    assert_int_equal(ms, INT64_C(1618272000000) + 86399999);

    /* Format floors before the epoch. */
    breach_date_format(-1, buf, sizeof(buf));
    assert_string_equal(buf, "1969-12-31");
    breach_date_format(1718000000000, buf, sizeof(buf));
    assert_string_equal(buf, "2024-06-10");
    /* A short buffer is truncated, not overrun. */
    breach_date_format(0, buf, 5);
    assert_string_equal(buf, "1970");
    /* No buffer, or no room at all: nothing written. */
    breach_date_format(0, NULL, 11);
    buf[0] = 'x';
    breach_date_format(0, buf, 0);
    assert_int_equal(buf[0], 'x');

    /* Every day 1960..2100 parses back to itself. */
    for (int64_t d = -3653; d < 47482; d++) {
        int64_t back;
        breach_date_format(d * MS_PER_DAY + 12345, buf, sizeof(buf));
        assert_int_equal(breach_date_parse(buf, 0, &back), 0);
        assert_int_equal(back, d * MS_PER_DAY);
    }
    /* Extreme values do not crash. */
    breach_date_format(INT64_MIN, buf, sizeof(buf));
    breach_date_format(INT64_MAX, buf, sizeof(buf));
}

static void test_id_valid(void **state)
{
    char id[BREACH_ID_MAX + 2];
    (void)state;

    assert_int_equal(breach_id_valid("shop-2024.07_skimmer"), 1);
    assert_int_equal(breach_id_valid("A"), 1);
    assert_int_equal(breach_id_valid(""), 0);
    assert_int_equal(breach_id_valid(NULL), 0);
    assert_int_equal(breach_id_valid("a b"), 0);
    assert_int_equal(breach_id_valid("a/b"), 0);
    assert_int_equal(breach_id_valid("a:b"), 0);
    /* the bytes just outside each allowed range */
    assert_int_equal(breach_id_valid("a@b"), 0);
    assert_int_equal(breach_id_valid("a[b"), 0);
    assert_int_equal(breach_id_valid("a`b"), 0);
    assert_int_equal(breach_id_valid("a{b"), 0);
    assert_int_equal(breach_id_valid("a~b"), 0);
    assert_int_equal(breach_id_valid("AZaz09._-"), 1);
    assert_int_equal(breach_id_valid("caf\xc3\xa9"), 0);
    assert_int_equal(breach_id_valid("a\n"), 0);
    memset(id, 'x', BREACH_ID_MAX);
    id[BREACH_ID_MAX] = '\0';
    assert_int_equal(breach_id_valid(id), 1);
    id[BREACH_ID_MAX] = 'x';
    id[BREACH_ID_MAX + 1] = '\0';
    assert_int_equal(breach_id_valid(id), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_element_names),
        cmocka_unit_test(test_elements_parse),
        cmocka_unit_test(test_elements_format),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_id_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
