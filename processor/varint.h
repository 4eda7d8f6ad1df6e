/* varint.h - protobuf base-128 varints, read and written (pure).
 *
 * One home for the varint code that the protobuf decoder (txn.c), the
 * length-delimited file reader (reader.c) and `cardwatch gen` share. The
 * functions are static inline: txn.c reads several varints per event on
 * the hot path, where a call per varint cost measurably
 * (tools/bench_decode.c).
 */
#ifndef CARDWATCH_VARINT_H
#define CARDWATCH_VARINT_H

#include <stddef.h>
#include <stdint.h>

/* The longest varint of a 64-bit value. */
#define VARINT_MAX_BYTES 10

enum varint_status {
    VARINT_SHORT = 0, /* p ends inside the varint: more bytes are needed */
    VARINT_OK = 1,
    VARINT_BAD = -1, /* longer than max_bytes, or over 64 bits */
};

/* Reads the varint at p[0..avail), at most max_bytes (1-10) long, into
 * *v and its length into *len. Returns VARINT_OK; VARINT_SHORT when the
 * avail bytes all continue and fewer than max_bytes are there;
 * VARINT_BAD when max_bytes bytes all continue, or a 10-byte varint does
 * not fit in 64 bits. A value wider than the caller's field (a 32-bit
 * tag) is the caller's check. */
static inline enum varint_status varint_read(const uint8_t *p, size_t avail,
                                             size_t max_bytes, uint64_t *v,
                                             size_t *len)
{
    if (avail > 0 && p[0] < 0x80) {
        *v = p[0];
        *len = 1;
        return VARINT_OK;
    }
    size_t lim = avail < max_bytes ? avail : max_bytes;
    uint64_t x = 0;
    for (size_t i = 0; i < lim; i++) {
        x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (p[i] < 0x80) {
            if (i == VARINT_MAX_BYTES - 1 && p[i] > 1) {
                return VARINT_BAD; /* bits beyond the 64th */
            }
            *v = x;
            *len = i + 1;
            return VARINT_OK;
        }
    }
    return avail >= max_bytes ? VARINT_BAD : VARINT_SHORT;
}

/* Writes v as a varint into out (room for VARINT_MAX_BYTES). Returns its
 * length, 1-10. */
static inline size_t varint_write(uint64_t v, uint8_t *out)
{
    size_t n = 0;
    do {
        out[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v != 0);
    return n;
}

#endif
