/* test_route.c - BIN routing: longest prefix, ranges, conflicts, bad specs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "route.h"

static int setup(void **state)
{
    *state = route_new();
    return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    route_destroy(*state);
    return 0;
}

static int lookup(struct route_table *rt, const char *digits)
{
    return route_lookup(rt, digits, strlen(digits));
}

static void add_ok(struct route_table *rt, const char *spec, int idx)
{
    char err[256] = "";

    if (route_add(rt, spec, idx, err, sizeof(err)) != 0) {
        fail_msg("route_add(%s): %s", spec, err);
    }
}

static void test_empty_table(void **state)
{
    struct route_table *rt = *state;

    assert_int_equal(route_count(rt), 0);
    assert_int_equal(lookup(rt, "4000001234567899"), -1);
    route_destroy(NULL);
}

static void test_longest_match(void **state)
{
    struct route_table *rt = *state;

    add_ok(rt, "400000", 0);
    add_ok(rt, "4000001", 1);
    add_ok(rt, "40000012", 2);
    assert_int_equal(route_count(rt), 3);

    assert_int_equal(lookup(rt, "4000001234567899"), 2); /* 8 digits */
    assert_int_equal(lookup(rt, "4000001934567899"), 1); /* 7 digits */
    assert_int_equal(lookup(rt, "4000002934567899"), 0); /* 6 digits */
    assert_int_equal(lookup(rt, "4000011234567899"), -1);
    assert_int_equal(lookup(rt, "5000001234567899"), -1);
}

static void test_longest_match_order_of_adds(void **state)
{
    struct route_table *rt = *state;

    /* longer prefixes first, then a covering shorter one */
    add_ok(rt, "51234567", 7);
    add_ok(rt, "512345", 3);
    assert_int_equal(lookup(rt, "5123456700000000"), 7);
    assert_int_equal(lookup(rt, "5123456800000000"), 3);
}

static void test_ranges(void **state)
{
    struct route_table *rt = *state;

    add_ok(rt, "400000-400099", 0);
    assert_int_equal(route_count(rt), 100);
    assert_int_equal(lookup(rt, "4000000000000000"), 0);
    assert_int_equal(lookup(rt, "4000500000000000"), 0);
    assert_int_equal(lookup(rt, "4000990000000000"), 0);
    assert_int_equal(lookup(rt, "4001000000000000"), -1);
    assert_int_equal(lookup(rt, "3999990000000000"), -1);

    /* an 8-digit range inside a 6-digit prefix of another issuer */
    add_ok(rt, "40001000-40001009", 1);
    assert_int_equal(route_count(rt), 110);
    assert_int_equal(lookup(rt, "4000100500000000"), 1);
    assert_int_equal(lookup(rt, "4000101000000000"), 0);

    /* single-element range; ranges merged between existing entries */
    add_ok(rt, "4000200-4000200", 2);
    add_ok(rt, "450000-450009", 3);
    add_ok(rt, "420000-420009", 4);
    assert_int_equal(lookup(rt, "4000200000000000"), 2);
    assert_int_equal(lookup(rt, "4500090000000000"), 3);
    assert_int_equal(lookup(rt, "4200050000000000"), 4);
    assert_int_equal(lookup(rt, "4000990000000000"), 0);
    assert_int_equal(route_count(rt), 131);

    /* the largest range allowed */
    add_ok(rt, "10000000-10099999", 5);
    assert_int_equal(route_count(rt), 100131);
    assert_int_equal(lookup(rt, "1009999900000000"), 5);
    assert_int_equal(lookup(rt, "1010000000000000"), -1);
}

static void test_conflicts(void **state)
{
    struct route_table *rt = *state;
    char err[256] = "";

    add_ok(rt, "400000-400099", 0);
    /* same issuer again: ignored */
    add_ok(rt, "400050", 0);
    add_ok(rt, "400090-400120", 0);
    assert_int_equal(route_count(rt), 121);

    /* another issuer: error, and nothing of the range is added */
    assert_int_equal(route_add(rt, "400120-400130", 1, err, sizeof(err)), -1);
    assert_string_equal(err, "BIN prefix 400120 is already routed to issuer "
                             "index 0");
    assert_int_equal(route_count(rt), 121);
    assert_int_equal(lookup(rt, "4001250000000000"), -1);

    assert_int_equal(route_add(rt, "400007", 1, err, sizeof(err)), -1);
    assert_int_equal(lookup(rt, "4000070000000000"), 0);

    /* leading zeros are kept apart by length */
    add_ok(rt, "0400000", 2);
    assert_int_equal(lookup(rt, "0400000000000000"), 2);
    assert_int_equal(lookup(rt, "4000000000000000"), 0);
}

static void expect_bad(struct route_table *rt, const char *spec,
                       const char *msg)
{
    char err[256] = "";

    assert_int_equal(route_add(rt, spec, 0, err, sizeof(err)), -1);
    assert_string_equal(err, msg);
    assert_int_equal(route_count(rt), 0);
}

static void test_bad_specs(void **state)
{
    struct route_table *rt = *state;
    char err[64];

    expect_bad(rt, "", "empty BIN prefix");
    expect_bad(rt, "40a000", "BIN prefix '40a000' is not all digits");
    expect_bad(rt, " 400000", "BIN prefix ' 400000' is not all digits");
    expect_bad(rt, "40000", "BIN prefix '40000' must be 6 to 8 digits");
    expect_bad(rt, "400000000",
               "BIN prefix of 9 characters must be 6 to 8 "
               "digits");
    /* a whole card number is never echoed */
    expect_bad(rt, "4000001234567899",
               "BIN prefix of 16 characters must be 6 to 8 digits");
    expect_bad(rt, "400000-4000009",
               "BIN range '400000-4000009' has ends of different lengths");
    expect_bad(rt, "400099-400000",
               "BIN range '400099-400000' has its low end above its high "
               "end");
    expect_bad(rt, "10000000-10100000",
               "BIN range '10000000-10100000' spans more than 100000 "
               "prefixes");
    expect_bad(rt, "400000-", "BIN range '400000-' must be 6 to 8 digits");
    expect_bad(rt, "-400000", "BIN range '-400000' must be 6 to 8 digits");
    /* too long to echo */
    expect_bad(rt, "400000-400001-400002",
               "BIN range of 20 characters is not all digits");
    expect_bad(rt, "400000-4000x1",
               "BIN range '400000-4000x1' is not all "
               "digits");

    assert_int_equal(route_add(rt, "400000", -1, err, sizeof(err)), -1);
    assert_int_equal(route_add(NULL, "400000", 0, err, sizeof(err)), -1);
    assert_int_equal(route_add(rt, NULL, 0, err, sizeof(err)), -1);
    /* no error buffer is fine */
    assert_int_equal(route_add(rt, "x", 0, NULL, 0), -1);
    assert_int_equal(route_count(rt), 0);
}

static void test_short_and_odd_lookups(void **state)
{
    struct route_table *rt = *state;

    add_ok(rt, "400000", 0);
    add_ok(rt, "40000012", 1);

    assert_int_equal(route_lookup(rt, "40000", 5), -1);
    assert_int_equal(route_lookup(rt, "", 0), -1);
    assert_int_equal(route_lookup(rt, NULL, 0), -1);
    assert_int_equal(route_lookup(NULL, "400000", 6), -1);
    /* exactly 6 and 7 digits available: the 8-digit prefix cannot match */
    assert_int_equal(route_lookup(rt, "400000", 6), 0);
    assert_int_equal(route_lookup(rt, "4000001", 7), 0);
    assert_int_equal(route_lookup(rt, "40000012", 8), 1);
    /* len shorter than the string: only len digits count */
    assert_int_equal(route_lookup(rt, "4000001299", 7), 0);
    /* non-digits stop the prefix */
    assert_int_equal(lookup(rt, "4000001x"), 0);
    assert_int_equal(lookup(rt, "40000x12"), -1);
    assert_int_equal(lookup(rt, "x4000001"), -1);
    /* a byte below '0' stops it as well */
    assert_int_equal(lookup(rt, "4000001-"), 0);
    assert_int_equal(lookup(rt, "40000-12"), -1);
}

static void test_count_by_idx(void **state)
{
    struct route_table *rt = *state;
    size_t counts[3];

    add_ok(rt, "400000-400009", 0);
    add_ok(rt, "5000000", 2);
    add_ok(rt, "60000000-60000001", 2);
    add_ok(rt, "700000", 7); /* not counted: beyond n */
    route_count_by_idx(rt, counts, 3);
    assert_int_equal(counts[0], 10);
    assert_int_equal(counts[1], 0);
    assert_int_equal(counts[2], 3);
    route_count_by_idx(NULL, counts, 3);
    assert_int_equal(counts[0], 0);
    /* NULL counts: nothing written; a NULL table has no prefixes */
    route_count_by_idx(rt, NULL, 3);
    assert_int_equal(route_count(NULL), 0);
    char *list[2] = {NULL, NULL};
    assert_int_equal(route_prefixes(NULL, list, 2), 0);
    assert_null(list[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_longest_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_longest_match_order_of_adds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_specs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_and_odd_lookups, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_count_by_idx, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
