/* Unit tests for offsets.c: what may be stored, in which order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "offsets.h"

static void test_in_order(void **state)
{
    (void)state;
    struct offsets *o = offsets_new();
    struct offsets_ticket t[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(offsets_register(o, 0, 10 + i, &t[i]), 0);
    }
    assert_int_equal(offsets_in_flight(o), 3);
    assert_int_equal(offsets_ack(o, &t[0]), 11);
    assert_int_equal(offsets_ack(o, &t[1]), 12);
    assert_int_equal(offsets_ack(o, &t[2]), 13);
    assert_int_equal(offsets_in_flight(o), 0);
    offsets_destroy(o);
}

static void test_out_of_order_waits_for_the_oldest(void **state)
{
    (void)state;
    struct offsets *o = offsets_new();
    struct offsets_ticket t[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(offsets_register(o, 3, 100 + i * 2, &t[i]), 0);
    }
    /* Later ones finish first: nothing may be stored yet. */
    assert_int_equal(offsets_ack(o, &t[2]), -1);
    assert_int_equal(offsets_ack(o, &t[1]), -1);
    assert_int_equal(offsets_partition_in_flight(o, 3), 2);
    /* The oldest finishes: the store jumps past every finished one. */
    assert_int_equal(offsets_ack(o, &t[0]), 105);
    assert_int_equal(offsets_ack(o, &t[3]), 107);
    offsets_destroy(o);
}

static void test_partitions_are_independent(void **state)
{
    (void)state;
    struct offsets *o = offsets_new();
    struct offsets_ticket a, b;
    assert_int_equal(offsets_register(o, 0, 5, &a), 0);
    assert_int_equal(offsets_register(o, 1, 7, &b), 0);
    assert_int_equal(offsets_ack(o, &b), 8);
    assert_int_equal(offsets_partition_in_flight(o, 0), 1);
    assert_int_equal(offsets_ack(o, &a), 6);
    offsets_destroy(o);
}

static void test_double_ack_and_unknown(void **state)
{
    (void)state;
    struct offsets *o = offsets_new();
    struct offsets_ticket a, b;
    assert_int_equal(offsets_register(o, 0, 1, &a), 0);
    assert_int_equal(offsets_register(o, 0, 2, &b), 0);
    assert_int_equal(offsets_ack(o, &b), -1);
    assert_int_equal(offsets_ack(o, &b), -1); /* twice: no effect */
    assert_int_equal(offsets_in_flight(o), 1);
    struct offsets_ticket bogus = a;
    bogus.offset = 99;
    assert_int_equal(offsets_ack(o, &bogus), -1);
    assert_int_equal(offsets_ack(o, &a), 3);
    offsets_destroy(o);
}

static void test_register_must_increase(void **state)
{
    (void)state;
    struct offsets *o = offsets_new();
    struct offsets_ticket t;
    assert_int_equal(offsets_register(o, 0, 10, &t), 0);
    assert_int_equal(offsets_register(o, 0, 10, &t), -1);
    assert_int_equal(offsets_register(o, 0, 9, &t), -1);
    offsets_destroy(o);
}

static void test_revoke_makes_tickets_stale(void **state)
{
    (void)state;
    struct offsets *o = offsets_new();
    struct offsets_ticket old, fresh;
    assert_int_equal(offsets_register(o, 2, 40, &old), 0);
    offsets_revoke(o, 2);
    assert_int_equal(offsets_in_flight(o), 0);
    assert_int_equal(offsets_partition_in_flight(o, 2), 0);
    /* revoking it again, or a partition never seen, changes nothing */
    offsets_revoke(o, 2);
    offsets_revoke(o, 7);
    assert_int_equal(offsets_partition_in_flight(o, 7), 0);
    assert_int_equal(offsets_in_flight(o), 0);
    /* Reassigned and consumed again from the committed offset. */
    assert_int_equal(offsets_register(o, 2, 40, &fresh), 0);
    assert_int_equal(offsets_ack(o, &old), -1); /* previous generation */
    assert_int_equal(offsets_in_flight(o), 1);
    assert_int_equal(offsets_ack(o, &fresh), 41);
    offsets_destroy(o);
}

static void test_ring_grows_and_wraps(void **state)
{
    (void)state;
    struct offsets *o = offsets_new();
    enum { N = 5000 };
    static struct offsets_ticket t[N];
    int64_t next = 0;
    /* Interleave registering and acking so the ring wraps and grows. */
    for (int i = 0; i < N; i++) {
        assert_int_equal(offsets_register(o, 0, i, &t[i]), 0);
        if (i % 3 == 2) {
            for (int k = (int)next; k <= i - 1; k++) {
                int64_t s = offsets_ack(o, &t[k]);
                assert_int_equal(s, k + 1);
            }
            next = i;
        }
    }
    for (int k = (int)next; k < N; k++) {
        assert_int_equal(offsets_ack(o, &t[k]), k + 1);
    }
    assert_int_equal(offsets_in_flight(o), 0);
    offsets_destroy(o);
}

/* Tickets that do not name a message in flight are refused: a partition
 * never registered, an offset between two registered ones, and any
 * ticket once the partition has nothing in flight. */
static void test_forged_and_late_tickets(void **state)
{
    (void)state;
    struct offsets *o = offsets_new();
    struct offsets_ticket a, b;
    assert_int_equal(offsets_register(o, 0, 10, &a), 0);
    assert_int_equal(offsets_register(o, 0, 12, &b), 0);
    struct offsets_ticket other = a;
    other.partition = 42;
    assert_int_equal(offsets_ack(o, &other), -1);
    struct offsets_ticket between = a;
    between.offset = 11;
    assert_int_equal(offsets_ack(o, &between), -1);
    assert_int_equal(offsets_in_flight(o), 2);
    assert_int_equal(offsets_ack(o, &a), 11);
    assert_int_equal(offsets_ack(o, &b), 13);
    assert_int_equal(offsets_partition_in_flight(o, 0), 0);
    assert_int_equal(offsets_ack(o, &b), -1); /* nothing in flight */
    assert_int_equal(offsets_ack(o, &a), -1);
    assert_int_equal(offsets_in_flight(o), 0);
    offsets_destroy(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_out_of_order_waits_for_the_oldest),
        cmocka_unit_test(test_partitions_are_independent),
        cmocka_unit_test(test_double_ack_and_unknown),
        cmocka_unit_test(test_register_must_increase),
        cmocka_unit_test(test_revoke_makes_tickets_stale),
        cmocka_unit_test(test_ring_grows_and_wraps),
        cmocka_unit_test(test_forged_and_late_tickets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
