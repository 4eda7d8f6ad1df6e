/* xfilter.c - see xfilter.h.
 *
 * Layout (Graf and Lemire 2022, section 4): the byte array is split into
 * seg_count + 2 segments of seg_len bytes (a power of two). A key's
 * 64-bit hash h picks its first slot h0 in the first seg_count segments
 * (the high word of h * seg_count * seg_len), and one slot in each of the
 * next two segments (h0 + seg_len and h0 + 2 seg_len with their low bits
 * XORed with two other 18-bit fields of h). Its fingerprint is
 * (uint8)(h ^ h >> 32). The filter holds B with
 *   B[h0] ^ B[h1] ^ B[h2] == fingerprint(h)   for every key.
 *
 * Construction: count, per slot, the keys that map there (and the XOR of
 * their hashes and of their slot positions 0/1/2); peel: a slot with one
 * key left determines that key, which is pushed on a stack and removed
 * from its other two slots, which may leave them with one; when every
 * key was peeled, assign the keys in reverse stack order, each one
 * writing the slot it was peeled from (no later key reads it). When
 * peeling stalls (a 2-core in the hypergraph: a small probability) a new
 * seed is drawn. Peeling can never finish with a key present twice (its
 * two copies share all three slots), so the keys are made distinct
 * first; the hash is a bijection of the key for a given seed, so distinct
 * keys have distinct hashes.
 *
 * Memory during construction, per distinct key n and slot (~1.13 n):
 * hashes in segment order, later the stack (8 n), the peeled position
 * (1 n), the per-slot count (1), XOR of hashes (8) and queue (4): about
 * 23.7 bytes per key.
 */
#include "xfilter.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* Largest segment: 2^18 bytes (the paper's cap: beyond it the three
 * slots of a key lie too far apart for the cache). The 18-bit fields of
 * the hash that spread h1 and h2 inside their segments follow from it. */
#define XF_SEG_BITS_MAX 18

struct xfilter {
    uint64_t seed;
    size_t keys;       /* distinct keys built in */
    uint64_t seg_len;  /* bytes per segment, a power of two */
    uint64_t seg_mask; /* seg_len - 1 */
    uint64_t seg_span; /* seg_count * seg_len: where h0 may fall */
    size_t array_len;  /* (seg_count + 2) * seg_len */
    uint8_t *fp;       /* array_len bytes; NULL when keys == 0 */
};

/* The three slots of a hash. */
struct xf_slots {
    uint64_t h[3];
};

static void xf_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* murmur3's 64-bit finalizer over key + seed: a bijection of the key for
 * a given seed, and every output bit depends on every input bit (keys
 * that differ in one bit, high or low, get unrelated slots). */
static inline uint64_t xf_hash(uint64_t key, uint64_t seed)
{
    return rng_fmix64(key + seed);
}

/* splitmix64: the seeds of successive attempts. */
static uint64_t xf_next_seed(uint64_t *state)
{
    return rng_mix64(*state += UINT64_C(0x9e3779b97f4a7c15));
}

static inline uint8_t xf_fingerprint(uint64_t h)
{
    return (uint8_t)(h ^ (h >> 32));
}

static inline uint64_t xf_mulhi(uint64_t a, uint64_t b)
{
    return (uint64_t)(((unsigned __int128)a * b) >> 64);
}

static inline struct xf_slots xf_slots(const struct xfilter *f, uint64_t h)
{
    struct xf_slots s;
    s.h[0] = xf_mulhi(h, f->seg_span);
    s.h[1] = (s.h[0] + f->seg_len) ^ ((h >> XF_SEG_BITS_MAX) & f->seg_mask);
    s.h[2] = (s.h[0] + 2 * f->seg_len) ^ (h & f->seg_mask);
    return s;
}

int xfilter_contains(const struct xfilter *f, uint64_t key)
{
    if (f == NULL) {
        return 1;
    }
    if (f->keys == 0) {
        return 0;
    }
    uint64_t h = xf_hash(key, f->seed);
    struct xf_slots s = xf_slots(f, h);
    uint8_t x =
        xf_fingerprint(h) ^ f->fp[s.h[0]] ^ f->fp[s.h[1]] ^ f->fp[s.h[2]];
    return x == 0;
}

/* ---- sorting and duplicates ---------------------------------------- */

static void xf_insertion_sort(uint64_t *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        uint64_t v = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > v) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

/* In-place MSD radix sort (American flag sort) on the byte at shift and
 * below: no memory besides 6 KB of stack per level (8 levels at most).
 * Card fingerprints are uniform, so every level splits evenly. */
static void xf_radix_sort(uint64_t *a, size_t n, unsigned shift)
{
    if (n <= 64) {
        xf_insertion_sort(a, n);
        return;
    }
    size_t count[256] = {0};
    size_t head[256];
    size_t end[256];
    for (size_t i = 0; i < n; i++) {
        count[(a[i] >> shift) & 0xff]++;
    }
    size_t at = 0;
    for (unsigned b = 0; b < 256; b++) {
        head[b] = at;
        at += count[b];
        end[b] = at;
    }
    for (unsigned b = 0; b < 256; b++) {
        while (head[b] < end[b]) {
            uint64_t v = a[head[b]];
            unsigned d = (unsigned)(v >> shift) & 0xff;
            while (d != b) {
                uint64_t w = a[head[d]];
                a[head[d]++] = v;
                v = w;
                d = (unsigned)(v >> shift) & 0xff;
            }
            a[head[b]++] = v;
        }
    }
    if (shift == 0) {
        return;
    }
    at = 0;
    for (unsigned b = 0; b < 256; b++) {
        if (count[b] > 1) {
            xf_radix_sort(a + at, count[b], shift - 8);
        }
        at += count[b];
    }
}

/* Sorts a[0..n) and moves the distinct values to the front, ascending;
 * the repeats go behind them (swapped, not overwritten: a stays a
 * permutation of its input). Returns the number of distinct values. */
static size_t xf_sort_unique(uint64_t *a, size_t n)
{
    if (n == 0) {
        return 0;
    }
    xf_radix_sort(a, n, 56);
    size_t w = 1;
    for (size_t i = 1; i < n; i++) {
        if (a[i] != a[w - 1]) {
            uint64_t t = a[w];
            a[w] = a[i];
            a[i] = t;
            w++;
        }
    }
    return w;
}

/* ---- construction -------------------------------------------------- */

/* Segment length and count for n keys: the paper's formulas for 3-wise
 * binary fuse filters (the reference implementation's constants). The
 * array is about 1.125 n bytes for a million keys and more; relatively
 * larger below (e.g. 1.175 n at 100,000), where peeling needs slack. */
static void xf_geometry(struct xfilter *f, size_t n)
{
    unsigned bits = 2;
    if (n > 1) {
        double e = floor(log((double)n) / log(3.33) + 2.25);
        bits = e > XF_SEG_BITS_MAX ? XF_SEG_BITS_MAX : (unsigned)e;
    }
    double factor = 0.0;
    if (n > 1) {
        factor = fmax(1.125, 0.875 + 0.25 * log(1e6) / log((double)n));
    }
    uint64_t len = UINT64_C(1) << bits;
    uint64_t capacity = (uint64_t)llround((double)n * factor);
    uint64_t segs = (capacity + len - 1) / len;
    segs = segs > 2 ? segs - 2 : 1;
    f->seg_len = len;
    f->seg_mask = len - 1;
    f->seg_span = segs * len;
    f->array_len = (size_t)((segs + 2) * len);
}

/* Scratch space of one construction; all NULL-initialised. */
struct xf_work {
    uint64_t *order; /* hashes in segment order; then the peel stack */
    uint8_t *where;  /* per stack entry: the slot position it left by */
    uint8_t *count;  /* per slot: keys << 2 | XOR of their positions */
    uint64_t *xhash; /* per slot: XOR of the hashes of its keys */
    uint32_t *queue; /* slots with one key */
    size_t *block;   /* per block of segments: next free place */
    unsigned block_bits;
};

static void xf_work_free(struct xf_work *w)
{
    free(w->order);
    free(w->where);
    free(w->count);
    free(w->xhash);
    free(w->queue);
    free(w->block);
}

static int xf_work_alloc(struct xf_work *w, const struct xfilter *f, size_t n)
{
    uint64_t segs = f->seg_span / f->seg_len;
    w->block_bits = 1;
    while ((UINT64_C(1) << w->block_bits) < segs) {
        w->block_bits++;
    }
    w->order = malloc(n * sizeof(*w->order));
    w->where = malloc(n);
    w->count = malloc(f->array_len);
    w->xhash = malloc(f->array_len * sizeof(*w->xhash));
    w->queue = malloc(f->array_len * sizeof(*w->queue));
    w->block = malloc(((size_t)1 << w->block_bits) * sizeof(*w->block));
    if (w->order == NULL || w->where == NULL || w->count == NULL ||
        w->xhash == NULL || w->queue == NULL || w->block == NULL) {
        return -1;
    }
    return 0;
}

/* The hashes of keys[0..n) into w->order, grouped by their top
 * block_bits bits (a counting sort): since h0 grows with the hash, the
 * keys of one segment are then next to each other and the counting pass
 * below touches the slot arrays almost in order. */
static void xf_hash_in_order(struct xf_work *w, const uint64_t *keys, size_t n,
                             uint64_t seed)
{
    size_t blocks = (size_t)1 << w->block_bits;
    unsigned shift = 64 - w->block_bits;
    memset(w->block, 0, blocks * sizeof(*w->block));
    for (size_t i = 0; i < n; i++) {
        w->block[xf_hash(keys[i], seed) >> shift]++;
    }
    size_t at = 0;
    for (size_t b = 0; b < blocks; b++) {
        size_t c = w->block[b];
        w->block[b] = at;
        at += c;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t h = xf_hash(keys[i], seed);
        w->order[w->block[h >> shift]++] = h;
    }
}

/* Adds every hash to its three slots. Returns -1 when a slot would hold
 * 64 keys or more (its 6-bit count would wrap; never seen in practice,
 * but then this seed is dropped), else 0. */
static int xf_count(struct xf_work *w, const struct xfilter *f, size_t n)
{
    int overflow = 0;
    memset(w->count, 0, f->array_len);
    memset(w->xhash, 0, f->array_len * sizeof(*w->xhash));
    for (size_t i = 0; i < n; i++) {
        uint64_t h = w->order[i];
        struct xf_slots s = xf_slots(f, h);
        for (unsigned k = 0; k < 3; k++) {
            uint8_t c = w->count[s.h[k]];
            overflow |= c >= 0xfc;
            w->count[s.h[k]] = (uint8_t)((c + 4) ^ k);
            w->xhash[s.h[k]] ^= h;
        }
    }
    return overflow ? -1 : 0;
}

/* Peels the hypergraph; the stack overwrites w->order (read completely
 * by xf_count before). Returns the number of keys peeled: n on success. */
static size_t xf_peel(struct xf_work *w, const struct xfilter *f)
{
    size_t queued = 0;
    for (size_t i = 0; i < f->array_len; i++) {
        if ((w->count[i] >> 2) == 1) {
            w->queue[queued++] = (uint32_t)i;
        }
    }
    size_t stacked = 0;
    while (queued > 0) {
        size_t i = w->queue[--queued];
        if ((w->count[i] >> 2) != 1) {
            continue; /* its one key went by another slot meanwhile */
        }
        uint64_t h = w->xhash[i];
        unsigned pos = w->count[i] & 3;
        struct xf_slots s = xf_slots(f, h);
        w->order[stacked] = h;
        w->where[stacked] = (uint8_t)pos;
        stacked++;
        for (unsigned k = 0; k < 3; k++) {
            uint64_t j = s.h[k];
            /* removing the key from its own slot i too leaves it at 0 */
            if ((w->count[j] >> 2) == 2) {
                w->queue[queued++] = (uint32_t)j;
            }
            w->count[j] = (uint8_t)((w->count[j] - 4) ^ k);
            w->xhash[j] ^= h;
        }
    }
    return stacked;
}

/* Writes the fingerprints, last peeled key first. */
static void xf_assign(struct xfilter *f, const struct xf_work *w, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        uint64_t h = w->order[i];
        struct xf_slots s = xf_slots(f, h);
        unsigned p = w->where[i];
        uint8_t v = xf_fingerprint(h) ^ f->fp[s.h[(p + 1) % 3]] ^
                    f->fp[s.h[(p + 2) % 3]];
        f->fp[s.h[p]] = v;
    }
}

struct xfilter *xfilter_build(uint64_t *keys, size_t n, char *err,
                              size_t errlen)
{
    struct xf_work w = {0};
    struct xfilter *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        xf_err(err, errlen, "filter: out of memory");
        return NULL;
    }
    n = xf_sort_unique(keys, n);
    f->keys = n;
    if (n == 0) {
        return f;
    }
    xf_geometry(f, n);
    if (f->array_len > UINT32_MAX) {
        xf_err(err, errlen,
               "filter: %zu distinct keys are too many (the "
               "slot index is 32 bits: at most ~3.8 billion keys)",
               n);
        goto err;
    }
    f->fp = calloc(f->array_len, 1);
    if (f->fp == NULL || xf_work_alloc(&w, f, n) != 0) {
        xf_err(err, errlen,
               "filter: out of memory for %zu keys (~%zu MB "
               "while building)",
               n, (n * 24 + (1 << 20) - 1) >> 20);
        goto err;
    }
    uint64_t state = UINT64_C(0x726b2b9d438b9d4d);
    int built = 0;
    for (int attempt = 0; attempt < XFILTER_MAX_SEEDS && !built; attempt++) {
        f->seed = xf_next_seed(&state);
        xf_hash_in_order(&w, keys, n, f->seed);
        built = xf_count(&w, f, n) == 0 && xf_peel(&w, f) == n;
    }
    if (!built) {
        xf_err(err, errlen,
               "filter: construction failed for %zu keys "
               "with %d seeds in a row",
               n, XFILTER_MAX_SEEDS);
        goto err;
    }
    free(w.count);
    w.count = NULL;
    free(w.xhash);
    w.xhash = NULL;
    free(w.queue);
    w.queue = NULL;
    xf_assign(f, &w, n);
    xf_work_free(&w);
    return f;
err:
    xf_work_free(&w);
    xfilter_free(f);
    return NULL;
}

size_t xfilter_bytes(const struct xfilter *f)
{
    return f == NULL ? 0 : sizeof(*f) + f->array_len;
}

size_t xfilter_keys(const struct xfilter *f)
{
    return f == NULL ? 0 : f->keys;
}

void xfilter_free(struct xfilter *f)
{
    if (f == NULL) {
        return;
    }
    free(f->fp);
    free(f);
}

/* ---- keys of card fingerprints ------------------------------------- */

static unsigned xf_hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return (unsigned)(c - '0');
    }
    if (c >= 'a' && c <= 'f') {
        return (unsigned)(c - 'a' + 10);
    }
    if (c >= 'A' && c <= 'F') {
        return (unsigned)(c - 'A' + 10);
    }
    return 0;
}

uint64_t xfilter_key_hex(const char *fp_hex)
{
    uint64_t k = 0;
    int i = 0;
    for (; i < 16 && fp_hex[i] != '\0'; i++) {
        k = (k << 4) | xf_hex_digit(fp_hex[i]);
    }
    for (; i < 16; i++) {
        k <<= 4;
    }
    return k;
}

uint64_t xfilter_key_bin(const uint8_t *fp16)
{
    uint64_t k = 0;
    for (int i = 0; i < 8; i++) {
        k = (k << 8) | fp16[i];
    }
    return k;
}
