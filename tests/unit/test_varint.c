/* Unit tests for varint.h: protobuf varints read and written, the
 * lengths at each 7-bit boundary, cut-short and over-long input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "varint.h"

/* Every value 2^k - 1 and 2^k (k = 0..63), and the largest, written and
 * read back: its length is 1 + (bits - 1) / 7. */
static void test_round_trip(void **state)
{
    (void)state;
    for (int k = 0; k <= 64; k++) {
        uint64_t vs[2] = {k == 64 ? UINT64_MAX : (UINT64_C(1) << k) - 1,
                          k == 64 ? UINT64_MAX : UINT64_C(1) << k};
        for (int j = 0; j < 2; j++) {
            uint8_t buf[VARINT_MAX_BYTES];
            size_t n = varint_write(vs[j], buf);
            int bits = 0;
            for (uint64_t x = vs[j]; x != 0; x >>= 1) {
                bits++;
            }
            assert_int_equal(n, bits == 0 ? 1 : 1 + (bits - 1) / 7);
            uint64_t v = 0;
            size_t len = 0;
            assert_int_equal(varint_read(buf, n, VARINT_MAX_BYTES, &v, &len),
                             VARINT_OK);
            assert_int_equal(len, n);
            assert_true(v == vs[j]);
            /* one byte fewer: more is needed */
            assert_int_equal(
                varint_read(buf, n - 1, VARINT_MAX_BYTES, &v, &len),
                n == 1 ? VARINT_SHORT : VARINT_SHORT);
        }
    }
}

static void test_limits(void **state)
{
    (void)state;
    uint64_t v = 7;
    size_t len = 9;
    const uint8_t six[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    /* five bytes that all continue: a 5-byte limit says bad */
    assert_int_equal(varint_read(six, 6, 5, &v, &len), VARINT_BAD);
    /* four of them with a 5-byte limit: more is needed */
    assert_int_equal(varint_read(six, 4, 5, &v, &len), VARINT_SHORT);
    /* all six under the 10-byte limit: 2^35 */
    assert_int_equal(varint_read(six, 6, VARINT_MAX_BYTES, &v, &len),
                     VARINT_OK);
    assert_true(v == UINT64_C(1) << 35);
    assert_int_equal(len, 6);
    /* a 10th byte above 1 sets bits beyond the 64th */
    uint8_t ten[10] = {0xff, 0xff, 0xff, 0xff, 0xff,
                       0xff, 0xff, 0xff, 0xff, 0x02};
    assert_int_equal(varint_read(ten, 10, VARINT_MAX_BYTES, &v, &len),
                     VARINT_BAD);
    ten[9] = 0x01;
    assert_int_equal(varint_read(ten, 10, VARINT_MAX_BYTES, &v, &len),
                     VARINT_OK);
    assert_true(v == UINT64_MAX);
    /* nothing to read */
    assert_int_equal(varint_read(ten, 0, VARINT_MAX_BYTES, &v, &len),
                     VARINT_SHORT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
