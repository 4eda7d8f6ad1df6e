/* rng.h - the synthetic data's random numbers: xorshift64* (Vigna), one
 * 64-bit state word per generator (pure; gen.c and sim.c share it, so a
 * seed means the same stream to both). Not for anything secret. */
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

#endif
