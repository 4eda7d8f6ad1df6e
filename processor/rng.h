/* rng.h - the synthetic data's random numbers: xorshift64* (Vigna), one
 * 64-bit state word per generator (pure; gen.c and sim.c share it, so a
 * seed means the same stream to both), and the two 64-bit finalisers the
 * code hashes with: splitmix64's (gen.c, cpp.c, xfilter.c's seeds) and
 * murmur3's (xfilter.c's slots, feed_token.c's throttle table). Not for
 * anything secret. */
#ifndef CARDWATCH_RNG_H
#define CARDWATCH_RNG_H

#include <stdint.h>

/* Advances *state (never 0: a zero state stays zero) and returns the
 * next 64 random bits. */
static inline uint64_t rng_next(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ull;
}

/* splitmix64's finaliser: every input bit moves about half the output
 * bits. A bijection of 64-bit words; rng_mix64(0) == 0. */
static inline uint64_t rng_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* murmur3's 64-bit finaliser: a bijection of 64-bit words in which every
 * output bit depends on every input bit; rng_fmix64(0) == 0. For hash
 * tables and filters (their slots must not follow the keys' patterns). */
static inline uint64_t rng_fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

#endif
