/* xfilter.h - a static approximate-membership filter over 64-bit keys:
 * a binary fuse filter with 8-bit fingerprints (pure: no I/O, no
 * globals, no locks).
 *
 * Graf and Lemire, "Binary Fuse Filters: Fast and Smaller Than Xor
 * Filters" (ACM JEA 27, 2022), 3-wise: every key maps to three slots in
 * three consecutive segments of a byte array, and the filter stores in
 * those bytes values whose XOR is the key's 8-bit fingerprint. A query
 * reads three bytes: a key that was built in always answers 1 (the
 * construction guarantees it, by design and not by chance); a key that
 * was not answers 1 with probability about 1/256 (0.39 %), else 0.
 * Memory: about 1.13 bytes per key for a million keys and more (up to
 * ~1.2 below 100,000 keys, where segments are relatively larger).
 *
 * Use in cardwatch: the exposed-card fingerprints of the exposed set are
 * built into one filter; a card whose key answers 0 is certainly not
 * exposed and needs no Redis lookup; a 1 sends the card to Redis, which
 * gives the exact answer. A built filter is immutable: any number of
 * threads may query it at once; a new set means a new filter.
 */
#ifndef CARDWATCH_XFILTER_H
#define CARDWATCH_XFILTER_H

#include <stddef.h>
#include <stdint.h>

struct xfilter;

/* Seeds tried before xfilter_build() gives up. One attempt fails with a
 * small probability and the retry draws a new seed: measured, 0.5-6 % of
 * first attempts for sets of 2 to 1,000 keys (at most 5 attempts in
 * 20,000 builds), 1.5 % at 100,000, none in ten builds of 1,000,000. A
 * set that fails 100 in a row does not occur in practice. */
#define XFILTER_MAX_SEEDS 100

/* Builds a filter of keys[0..n).
 *
 * keys may hold duplicates (each distinct key counts once) and is
 * reordered by the call: on return it holds the same values, the
 * distinct ones sorted first (keys[0..xfilter_keys()) ascending), then
 * the repeats. The array stays the caller's; the filter keeps no pointer
 * to it. n may be 0 (keys may then be NULL): the empty filter answers 0
 * for every key.
 *
 * Time: a radix sort of the keys plus a few linear passes (seconds for
 * 100 million keys). Temporary memory about 24 bytes per distinct key
 * besides keys, freed before the return; the filter itself ~1.13 bytes
 * per key. Deterministic: the same set gives the same filter. Thread-safe
 * (it touches only its arguments).
 *
 * Returns the filter (the caller owns it; xfilter_free()), or NULL with
 * a one-line message in err (err may be NULL when errlen is 0) when an
 * allocation fails, when n is beyond what the 32-bit slot indices hold
 * (about 3.8 billion keys), or when construction fails with
 * XFILTER_MAX_SEEDS seeds in a row. keys is reordered in every case. */
struct xfilter *xfilter_build(uint64_t *keys, size_t n, char *err,
                              size_t errlen);

/* 1 when key may be in the set (always for a key that was built in), 0
 * when it certainly is not. f NULL answers 1: no filter means that every
 * key must be looked up. */
int xfilter_contains(const struct xfilter *f, uint64_t key);

/* Memory held by the filter: its fingerprint array plus its struct. */
size_t xfilter_bytes(const struct xfilter *f);

/* Distinct keys built in. */
size_t xfilter_keys(const struct xfilter *f);

/* NULL is a no-op. */
void xfilter_free(struct xfilter *f);

/* The filter key of a card fingerprint given as text (CARD_FP_HEX_LEN hex
 * digits, card.h): its first 16 hex digits read as a big-endian 64-bit
 * number. The fingerprint is a keyed HMAC, so these bits are already
 * uniform. Either case is read; reading stops at a NUL, and a character
 * that is not a hex digit counts as 0 (a well-formed fingerprint never
 * has one, so no real card can be hidden by it). Never reads more than
 * 16 characters. */
uint64_t xfilter_key_hex(const char *fp_hex);

/* The same key from the 16-byte binary fingerprint: its first 8 bytes,
 * big-endian. xfilter_key_bin(b) == xfilter_key_hex(h) when h is the hex
 * text of b. */
uint64_t xfilter_key_bin(const uint8_t *fp16);

#endif
