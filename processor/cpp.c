/* cpp.c - common-point-of-purchase analysis (see cpp.h). */
#include "cpp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#define MERCHANT_P 12 /* a merchant's HyperLogLog: 4,096 registers */
#define GLOBAL_P 14   /* all cards of the period: 16,384 registers */
#define SPARSE_MAX 128

struct case_ent {
    uint8_t fp[CPP_FP_LEN];
    int64_t first_fraud_ms;
    uint8_t used;
    uint8_t seen;
};

/* Distinct cards: a sorted array of card hashes while there are at most
 * SPARSE_MAX (exact), then HyperLogLog registers. */
struct distinct {
    uint64_t *sparse;
    uint8_t *regs; /* NULL while sparse */
    uint32_t n_sparse, cap;
};

/* A merchant's name is kept in place (no pointer to chase per event). */
struct merchant {
    uint8_t len; /* the fields an event touches first: one cache line */
    uint32_t cases;
    struct distinct cards;
    char name[CPP_MERCHANT_MAX + 1];
};

/* A merchant slot: its index + 1 (0 = empty) and the top half of its
 * name's hash, compared before the name (one cache miss less per probe
 * that is not it). */
struct mslot {
    uint32_t idx;
    uint32_t tag;
};

struct pair {
    uint32_t merchant, kase;
    int64_t first_ms, last_ms;
};

struct cpp {
    struct cpp_opts o;
    int sealed;
    struct case_ent *cases;
    size_t case_cap, n_cases;
    struct mslot *mslot;
    size_t mslot_cap;
    struct merchant *merchants;
    size_t n_merchants, merchant_cap;
    uint32_t *pslot; /* pair index + 1 */
    size_t pslot_cap;
    struct pair *pairs;
    size_t n_pairs, pair_cap;
    uint8_t global[1u << GLOBAL_P];
    int64_t from_ms, to_ms;
    uint64_t txns, in_period;
    size_t bytes; /* what the tables and counters hold */
};

static uint64_t fp_hash(const uint8_t fp[CPP_FP_LEN])
{
    uint64_t a, b;
    memcpy(&a, fp, 8);
    memcpy(&b, fp + 8, 8);
    return rng_mix64(a ^ rng_mix64(b));
}

/* FNV-1a, then mixed: merchant ids are short. */
static uint64_t str_hash(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3ULL;
    }
    return rng_mix64(h);
}

/* ---- HyperLogLog ---- */

static void hll_add(uint8_t *regs, int p, uint64_t h)
{
    uint32_t idx = (uint32_t)(h >> (64 - p));
    uint64_t w = h << p;
    uint8_t rank = w != 0 ? (uint8_t)(__builtin_clzll(w) + 1)
                          : (uint8_t)(64 - p + 1);
    if (rank > regs[idx]) {
        regs[idx] = rank;
    }
}

static double hll_count(const uint8_t *regs, int p)
{
    size_t m = (size_t)1 << p;
    double sum = 0;
    size_t zeros = 0;
    for (size_t i = 0; i < m; i++) {
        sum += ldexp(1.0, -(int)regs[i]);
        zeros += regs[i] == 0;
    }
    double md = (double)m;
    double e = 0.7213 / (1.0 + 1.079 / md) * md * md / sum;
    if (e <= 2.5 * md && zeros > 0) {
        e = md * log(md / (double)zeros); /* linear counting */
    }
    return e;
}

/* Adds card hash h. Returns 0, or -1 when out of memory. */
static int distinct_add(struct cpp *c, struct distinct *d, uint64_t h)
{
    if (d->regs != NULL) {
        hll_add(d->regs, MERCHANT_P, h);
        return 0;
    }
    uint32_t lo = 0, hi = d->n_sparse;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (d->sparse[mid] < h) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < d->n_sparse && d->sparse[lo] == h) {
        return 0;
    }
    if (d->n_sparse == SPARSE_MAX) {
        uint8_t *regs = calloc((size_t)1 << MERCHANT_P, 1);
        if (regs == NULL) {
            return -1;
        }
        for (uint32_t i = 0; i < d->n_sparse; i++) {
            hll_add(regs, MERCHANT_P, d->sparse[i]);
        }
        hll_add(regs, MERCHANT_P, h);
        c->bytes += ((size_t)1 << MERCHANT_P) - d->cap * sizeof(uint64_t);
        free(d->sparse);
        d->sparse = NULL;
        d->regs = regs;
        return 0;
    }
    if (d->n_sparse == d->cap) {
        uint32_t ncap = d->cap != 0 ? d->cap * 2 : 4;
        uint64_t *ns = realloc(d->sparse, ncap * sizeof(*ns));
        if (ns == NULL) {
            return -1;
        }
        c->bytes += (ncap - d->cap) * sizeof(*ns);
        d->sparse = ns;
        d->cap = ncap;
    }
    memmove(&d->sparse[lo + 1], &d->sparse[lo],
            (d->n_sparse - lo) * sizeof(*d->sparse));
    d->sparse[lo] = h;
    d->n_sparse++;
    return 0;
}

static uint64_t distinct_count(const struct distinct *d)
{
    if (d->regs == NULL) {
        return d->n_sparse;
    }
    double e = hll_count(d->regs, MERCHANT_P);
    /* never below what the sparse form had counted exactly */
    return e < SPARSE_MAX + 1 ? SPARSE_MAX + 1 : (uint64_t)llround(e);
}

/* ---- the binomial tail ---- */

/* The continued fraction of the incomplete beta function (modified
 * Lentz), converging fast for x < (a + 1) / (a + b + 2). */
static double beta_cf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double qab = a + b, qap = a + 1.0, qam = a - 1.0;
    double cc = 1.0, d = 1.0 - qab * x / qap;
    if (fabs(d) < tiny) {
        d = tiny;
    }
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 100000; m++) {
        double m2 = 2.0 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = fabs(d) < tiny ? tiny : d;
        cc = 1.0 + aa / cc;
        cc = fabs(cc) < tiny ? tiny : cc;
        d = 1.0 / d;
        h *= d * cc;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = fabs(d) < tiny ? tiny : d;
        cc = 1.0 + aa / cc;
        cc = fabs(cc) < tiny ? tiny : cc;
        d = 1.0 / d;
        double del = d * cc;
        h *= del;
        if (fabs(del - 1.0) < 1e-15) {
            break;
        }
    }
    return h;
}

/* Natural log of the regularised incomplete beta I_x(a, b), 0 < x < 1. */
static double log_ibeta(double a, double b, double x)
{
    double front = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) +
                   b * log1p(-x);
    if (x < (a + 1.0) / (a + b + 2.0)) {
        return front + log(beta_cf(a, b, x)) - log(a);
    }
    double rest = exp(front + log(beta_cf(b, a, 1.0 - x)) - log(b));
    return rest < 1.0 ? log1p(-rest) : log(1e-300);
}

double cpp_log10_binom_tail(uint64_t k, uint64_t trials, double p)
{
    if (k == 0 || p >= 1.0) {
        return 0.0;
    }
    if (k > trials || p <= 0.0) {
        return -INFINITY;
    }
    double v = log_ibeta((double)k, (double)(trials - k + 1), p) / log(10.0);
    return v > 0.0 ? 0.0 : v;
}

/* ---- tables ---- */

struct cpp *cpp_new(const struct cpp_opts *o)
{
    if (o == NULL || o->lookback_ms <= 0 || !(o->alpha > 0.0) ||
        !(o->alpha < 1.0) || o->min_cases == 0) {
        return NULL;
    }
    struct cpp *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->o = *o;
    c->case_cap = 1024;
    c->mslot_cap = 1024;
    c->pslot_cap = 1024;
    c->cases = calloc(c->case_cap, sizeof(*c->cases));
    c->mslot = calloc(c->mslot_cap, sizeof(*c->mslot));
    c->pslot = calloc(c->pslot_cap, sizeof(*c->pslot));
    if (c->cases == NULL || c->mslot == NULL || c->pslot == NULL) {
        cpp_destroy(c);
        return NULL;
    }
    c->bytes = sizeof(*c) + c->case_cap * sizeof(*c->cases) +
               c->mslot_cap * sizeof(*c->mslot) +
               c->pslot_cap * sizeof(uint32_t);
    return c;
}

void cpp_destroy(struct cpp *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < c->n_merchants; i++) {
        free(c->merchants[i].cards.sparse);
        free(c->merchants[i].cards.regs);
    }
    free(c->merchants);
    free(c->cases);
    free(c->mslot);
    free(c->pslot);
    free(c->pairs);
    free(c);
}

/* The case of fp (its fp_hash h), or NULL. */
static struct case_ent *case_find(const struct cpp *c, const uint8_t *fp,
                                  uint64_t h)
{
    size_t mask = c->case_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct case_ent *e = &c->cases[i];
        if (!e->used) {
            return NULL;
        }
        if (memcmp(e->fp, fp, CPP_FP_LEN) == 0) {
            return e;
        }
    }
}

static struct case_ent *case_slot(struct case_ent *tab, size_t cap,
                                  const uint8_t *fp)
{
    size_t mask = cap - 1;
    for (size_t i = fp_hash(fp) & mask;; i = (i + 1) & mask) {
        if (!tab[i].used || memcmp(tab[i].fp, fp, CPP_FP_LEN) == 0) {
            return &tab[i];
        }
    }
}

/* Doubles the case table. Returns 0 / -1. */
static int cases_grow(struct cpp *c)
{
    size_t ncap = c->case_cap * 2;
    struct case_ent *nt = calloc(ncap, sizeof(*nt));
    if (nt == NULL) {
        return -1;
    }
    for (size_t i = 0; i < c->case_cap; i++) {
        if (c->cases[i].used) {
            *case_slot(nt, ncap, c->cases[i].fp) = c->cases[i];
        }
    }
    free(c->cases);
    c->bytes += (ncap - c->case_cap) * sizeof(*nt);
    c->cases = nt;
    c->case_cap = ncap;
    return 0;
}

int cpp_add_case(struct cpp *c, const uint8_t fp[CPP_FP_LEN],
                 int64_t first_fraud_ms)
{
    if (c->sealed) {
        return -1;
    }
    if (first_fraud_ms <= 0 || first_fraud_ms > CPP_TIME_MAX_MS) {
        return -2;
    }
    if ((c->n_cases + 1) * 2 > c->case_cap && cases_grow(c) != 0) {
        return -1;
    }
    struct case_ent *e = case_slot(c->cases, c->case_cap, fp);
    if (e->used) {
        if (first_fraud_ms < e->first_fraud_ms) {
            e->first_fraud_ms = first_fraud_ms;
        }
        return 0;
    }
    memcpy(e->fp, fp, CPP_FP_LEN);
    e->first_fraud_ms = first_fraud_ms;
    e->used = 1;
    c->n_cases++;
    return 0;
}

uint64_t cpp_seal(struct cpp *c)
{
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (size_t i = 0; i < c->case_cap; i++) {
        if (c->cases[i].used) {
            int64_t t = c->cases[i].first_fraud_ms;
            lo = t < lo ? t : lo;
            hi = t > hi ? t : hi;
        }
    }
    if (c->n_cases > 0) {
        c->from_ms = lo - c->o.lookback_ms;
        c->to_ms = hi;
    }
    c->sealed = 1;
    return c->n_cases;
}

void cpp_period(const struct cpp *c, int64_t *from, int64_t *to)
{
    *from = c->from_ms;
    *to = c->to_ms;
}

/* Rehashes an index table of cap slots into ncap (both powers of two);
 * hashes come from key(i) for entry index i. Returns the new table or
 * NULL. */
static uint32_t *index_grow(const uint32_t *old, size_t cap, size_t ncap,
                            uint64_t (*key)(const struct cpp *, uint32_t),
                            const struct cpp *c)
{
    uint32_t *nt = calloc(ncap, sizeof(*nt));
    if (nt == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < cap; i++) {
        if (old[i] != 0) {
            size_t j = key(c, old[i] - 1) & (ncap - 1);
            while (nt[j] != 0) {
                j = (j + 1) & (ncap - 1);
            }
            nt[j] = old[i];
        }
    }
    return nt;
}

static uint64_t pair_hash(uint32_t m, uint32_t k)
{
    return rng_mix64(((uint64_t)m << 32) | k);
}

static uint64_t pair_key(const struct cpp *c, uint32_t i)
{
    return pair_hash(c->pairs[i].merchant, c->pairs[i].kase);
}

/* Grows an index table when it is half full. Returns 0 / -1. */
static int maybe_grow(struct cpp *c, uint32_t **slots, size_t *cap,
                      size_t n, uint64_t (*key)(const struct cpp *, uint32_t))
{
    if ((n + 1) * 2 <= *cap) {
        return 0;
    }
    uint32_t *nt = index_grow(*slots, *cap, *cap * 2, key, c);
    if (nt == NULL) {
        return -1;
    }
    free(*slots);
    c->bytes += *cap * sizeof(uint32_t);
    *slots = nt;
    *cap *= 2;
    return 0;
}

/* Makes room for one more element of size sz in *arr. Returns 0 / -1. */
static int vec_room(struct cpp *c, void **arr, size_t n, size_t *cap,
                    size_t sz)
{
    if (n < *cap) {
        return 0;
    }
    size_t ncap = *cap != 0 ? *cap * 2 : 256;
    void *na = realloc(*arr, ncap * sz);
    if (na == NULL) {
        return -1;
    }
    c->bytes += (ncap - *cap) * sz;
    *arr = na;
    *cap = ncap;
    return 0;
}

/* Doubles the merchant slots. Returns 0 / -1. */
static int mslots_grow(struct cpp *c)
{
    size_t ncap = c->mslot_cap * 2;
    struct mslot *nt = calloc(ncap, sizeof(*nt));
    if (nt == NULL) {
        return -1;
    }
    for (size_t i = 0; i < c->mslot_cap; i++) {
        if (c->mslot[i].idx != 0) {
            const struct merchant *m = &c->merchants[c->mslot[i].idx - 1];
            size_t j = str_hash(m->name, m->len) & (ncap - 1);
            while (nt[j].idx != 0) {
                j = (j + 1) & (ncap - 1);
            }
            nt[j] = c->mslot[i];
        }
    }
    free(c->mslot);
    c->bytes += c->mslot_cap * sizeof(*nt);
    c->mslot = nt;
    c->mslot_cap = ncap;
    return 0;
}

/* The index of the merchant named name[len] (hash h: str_hash), added
 * when new. UINT32_MAX when out of memory. */
static uint32_t merchant_index(struct cpp *c, const char *name, size_t len,
                               uint64_t h)
{
    uint32_t tag = (uint32_t)(h >> 32);
    size_t mask = c->mslot_cap - 1;
    size_t i = h & mask;
    for (; c->mslot[i].idx != 0; i = (i + 1) & mask) {
        if (c->mslot[i].tag != tag) {
            continue;
        }
        const struct merchant *m = &c->merchants[c->mslot[i].idx - 1];
        if (m->len == len && memcmp(m->name, name, len) == 0) {
            return c->mslot[i].idx - 1;
        }
    }
    if (vec_room(c, (void **)&c->merchants, c->n_merchants, &c->merchant_cap,
                 sizeof(*c->merchants)) != 0 ||
        ((c->n_merchants + 1) * 2 > c->mslot_cap && mslots_grow(c) != 0)) {
        return UINT32_MAX;
    }
    struct merchant *m = &c->merchants[c->n_merchants];
    memset(m, 0, sizeof(*m));
    memcpy(m->name, name, len);
    m->len = (uint8_t)len;
    mask = c->mslot_cap - 1;
    i = h & mask;
    while (c->mslot[i].idx != 0) {
        i = (i + 1) & mask;
    }
    c->mslot[i] = (struct mslot){(uint32_t)++c->n_merchants, tag};
    return (uint32_t)(c->n_merchants - 1);
}

/* Records a use at time t of merchant mi by case ki. Returns 0 / -1. */
static int pair_use(struct cpp *c, uint32_t mi, uint32_t ki, int64_t t)
{
    size_t mask = c->pslot_cap - 1;
    for (size_t i = pair_hash(mi, ki) & mask; c->pslot[i] != 0;
         i = (i + 1) & mask) {
        struct pair *p = &c->pairs[c->pslot[i] - 1];
        if (p->merchant == mi && p->kase == ki) {
            p->first_ms = t < p->first_ms ? t : p->first_ms;
            p->last_ms = t > p->last_ms ? t : p->last_ms;
            return 0;
        }
    }
    if (vec_room(c, (void **)&c->pairs, c->n_pairs, &c->pair_cap,
                 sizeof(*c->pairs)) != 0 ||
        maybe_grow(c, &c->pslot, &c->pslot_cap, c->n_pairs, pair_key) != 0) {
        return -1;
    }
    c->pairs[c->n_pairs] = (struct pair){mi, ki, t, t};
    mask = c->pslot_cap - 1;
    size_t i = pair_hash(mi, ki) & mask;
    while (c->pslot[i] != 0) {
        i = (i + 1) & mask;
    }
    c->pslot[i] = (uint32_t)++c->n_pairs;
    c->merchants[mi].cases++;
    return 0;
}

/* The counting of one in-period event of merchant mi. Returns 0 / -1. */
static int count_one(struct cpp *c, const struct cpp_obs *o, uint32_t mi,
                     uint64_t h)
{
    c->in_period++;
    hll_add(c->global, GLOBAL_P, h);
    if (mi == UINT32_MAX || distinct_add(c, &c->merchants[mi].cards, h)) {
        return -1;
    }
    struct case_ent *e = case_find(c, o->fp, h);
    if (e == NULL || o->t_ms >= e->first_fraud_ms ||
        o->t_ms < e->first_fraud_ms - c->o.lookback_ms) {
        return 0;
    }
    e->seen = 1;
    return pair_use(c, mi, (uint32_t)(e - c->cases), o->t_ms);
}

/* Prefetches what distinct_add will read for card hash h. */
static void prefetch_distinct(const struct distinct *d, uint64_t h)
{
    if (d->regs != NULL) {
        __builtin_prefetch(&d->regs[h >> (64 - MERCHANT_P)], 1);
    } else if (d->sparse != NULL) {
        __builtin_prefetch(&d->sparse[d->n_sparse / 2]);
    }
}

/* One slice of at most PREFETCH_SLICE events in stages, so that the
 * cache misses of the slice's table lookups (merchant slot, merchant,
 * its card counter, the case slot) overlap instead of queueing one after
 * the other: on a history with many merchants they are most of the
 * work. Returns the events not counted for want of memory. */
#define PREFETCH_SLICE 32
static int observe_slice(struct cpp *c, const struct cpp_obs *obs, size_t n)
{
    uint64_t mh[PREFETCH_SLICE], ch[PREFETCH_SLICE];
    uint32_t mi[PREFETCH_SLICE];
    uint8_t in[PREFETCH_SLICE];
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        c->txns++;
        in[i] = obs[i].t_ms > 0 && obs[i].t_ms >= c->from_ms &&
                obs[i].t_ms < c->to_ms;
        if (in[i]) {
            size_t len = obs[i].mlen > CPP_MERCHANT_MAX ? CPP_MERCHANT_MAX
                                                        : obs[i].mlen;
            mh[i] = str_hash(obs[i].merchant, len);
            ch[i] = fp_hash(obs[i].fp);
            __builtin_prefetch(&c->mslot[mh[i] & (c->mslot_cap - 1)]);
            __builtin_prefetch(&c->cases[ch[i] & (c->case_cap - 1)]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (in[i]) {
            size_t len = obs[i].mlen > CPP_MERCHANT_MAX ? CPP_MERCHANT_MAX
                                                        : obs[i].mlen;
            mi[i] = merchant_index(c, obs[i].merchant, len, mh[i]);
            if (mi[i] != UINT32_MAX) {
                __builtin_prefetch(&c->merchants[mi[i]].cards);
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (in[i] && mi[i] != UINT32_MAX) {
            prefetch_distinct(&c->merchants[mi[i]].cards, ch[i]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (in[i] && count_one(c, &obs[i], mi[i], ch[i]) != 0) {
            failed++;
        }
    }
    return failed;
}

int cpp_observe_batch(struct cpp *c, const struct cpp_obs *obs, size_t n)
{
    if (!c->sealed) {
        return -1;
    }
    int failed = 0;
    for (size_t off = 0; off < n; off += PREFETCH_SLICE) {
        size_t k = n - off < PREFETCH_SLICE ? n - off : PREFETCH_SLICE;
        failed += observe_slice(c, obs + off, k);
    }
    return failed;
}

int cpp_observe(struct cpp *c, const uint8_t fp[CPP_FP_LEN],
                const char *merchant, size_t mlen, int64_t t_ms)
{
    struct cpp_obs o = {.merchant = merchant, .mlen = mlen, .t_ms = t_ms};
    memcpy(o.fp, fp, CPP_FP_LEN);
    int rc = cpp_observe_batch(c, &o, 1);
    return rc == 0 ? 0 : -1;
}

/* ---- ranking ---- */

/* A ranked merchant and where its pairs are (internal). */
struct ranked {
    struct cpp_suspect s;
    uint32_t merchant;
};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_ranked(const void *a, const void *b)
{
    const struct cpp_suspect *x = &((const struct ranked *)a)->s;
    const struct cpp_suspect *y = &((const struct ranked *)b)->s;
    if (x->log10_p != y->log10_p) {
        return x->log10_p < y->log10_p ? -1 : 1;
    }
    double ex = x->cases / (x->expected > 0 ? x->expected : 1e-300);
    double ey = y->cases / (y->expected > 0 ? y->expected : 1e-300);
    if (ex != ey) {
        return ex > ey ? -1 : 1;
    }
    return strcmp(x->merchant, y->merchant);
}

/* The log-likelihood ratio of n_in of total points inside a span that
 * would hold e_in of them if they were spread evenly (Poisson, 1-D scan
 * statistic); 0 unless the span is denser than the rest. */
static double scan_llr(double n_in, double e_in, double total)
{
    if (n_in <= e_in) {
        return 0.0;
    }
    double out = total - n_in, e_out = total - e_in;
    double v = n_in * log(n_in / e_in);
    if (out > 0) {
        v += out * log(out / e_out);
    }
    return v;
}

/* The compromise window of a merchant from its cases' first and last uses
 * pts[0..n) (scratch: sorted here): the span of whole days where they are
 * densest against an even spread over the period [from, to) - the span
 * of the largest scan_llr. Writes it to s; returns 0 / -1 (no memory). */
static int scan_window(struct cpp_suspect *s, int64_t *pts, size_t n,
                       int64_t from, int64_t to)
{
    qsort(pts, n, sizeof(*pts), cmp_i64);
    int64_t *day = malloc(n * sizeof(*day));
    size_t *pre = malloc((n + 1) * sizeof(*pre));
    if (day == NULL || pre == NULL) {
        free(day);
        free(pre);
        return -1;
    }
    size_t u = 0;
    pre[0] = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t d = pts[i] / 86400000LL; /* UTC days (times are > 0) */
        if (u == 0 || day[u - 1] != d) {
            day[u] = d;
            pre[u + 1] = pre[u];
            u++;
        }
        pre[u]++;
    }
    double days = (double)(to / 86400000LL - from / 86400000LL + 1);
    double best = -1.0;
    size_t ba = 0, bb = 0;
    for (size_t a = 0; a < u; a++) {
        for (size_t b = a; b < u; b++) {
            double w = (double)(day[b] - day[a] + 1);
            double v = scan_llr((double)(pre[b + 1] - pre[a]),
                                (double)n * w / days, (double)n);
            if (v > best) {
                best = v;
                ba = a;
                bb = b;
            }
        }
    }
    /* The densest span starts and ends at a use; the compromise began
     * a little before its first seen use and ended a little after its
     * last: for uses spread evenly over [S, E], the first lies about
     * (E - S) / (m + 1) after S (m uses). Widen each end by that gap,
     * rounded to whole days (the unbiased estimate of a uniform's ends). */
    size_t m = pre[bb + 1] - pre[ba];
    int64_t pad = m > 1 ? (int64_t)llround((double)(day[bb] - day[ba]) /
                                           (double)(m - 1))
                        : 0;
    int64_t lo = from / 86400000LL, hi = (to - 1) / 86400000LL;
    int64_t d0 = day[ba] - pad < lo ? lo : day[ba] - pad;
    int64_t d1 = day[bb] + pad > hi ? hi : day[bb] + pad;
    s->window_start_ms = d0 * 86400000LL;
    s->window_end_ms = (d1 + 1) * 86400000LL - 1;
    free(day);
    free(pre);
    return 0;
}

/* Fills all[0..*n) with the merchants of at least min_cases cases (no
 * window yet). */
static void score(const struct cpp *c, struct ranked *all, size_t *n,
                  double big_n, double big_k)
{
    double log10_m = log10((double)(c->n_merchants > 0 ? c->n_merchants : 1));
    *n = 0;
    for (size_t i = 0; i < c->n_merchants; i++) {
        const struct merchant *m = &c->merchants[i];
        if (m->cases < c->o.min_cases) {
            continue;
        }
        struct ranked *r = &all[(*n)++];
        struct cpp_suspect *s = &r->s;
        memset(r, 0, sizeof(*r));
        r->merchant = (uint32_t)i;
        memcpy(s->merchant, m->name, m->len);
        s->cases = m->cases;
        s->cards = distinct_count(&m->cards);
        double p = big_n > 0 ? (double)s->cards / big_n : 1.0;
        p = p > 1.0 ? 1.0 : p;
        s->expected = big_k * p;
        s->log10_p = cpp_log10_binom_tail(m->cases, (uint64_t)big_k, p);
        s->log10_p_adj = s->log10_p + log10_m;
        s->log10_p_adj = s->log10_p_adj > 0 ? 0 : s->log10_p_adj;
        s->significant = s->log10_p_adj < log10(c->o.alpha);
    }
}

/* The window's points of merchant mi (its cases' first uses, and last
 * uses when later) into pts (room for 2 * its cases), unsorted. Returns
 * their number. */
static size_t merchant_points(const struct cpp *c, uint32_t mi, int64_t *pts)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n_pairs; i++) {
        const struct pair *p = &c->pairs[i];
        if (p->merchant != mi) {
            continue;
        }
        pts[k++] = p->first_ms;
        if (p->last_ms != p->first_ms) {
            pts[k++] = p->last_ms;
        }
    }
    return k;
}

/* Windows and first/last use of the first n ranked merchants. Returns
 * 0 / -1 (no memory). */
static int windows(const struct cpp *c, struct ranked *top, size_t n)
{
    int rc = 0;
    for (size_t r = 0; r < n && rc == 0; r++) {
        struct cpp_suspect *s = &top[r].s;
        int64_t *pts = malloc(2 * (size_t)s->cases * sizeof(*pts));
        if (pts == NULL) {
            return -1;
        }
        size_t k = merchant_points(c, top[r].merchant, pts);
        s->first_use_ms = INT64_MAX;
        s->last_use_ms = INT64_MIN;
        for (size_t i = 0; i < k; i++) {
            s->first_use_ms = pts[i] < s->first_use_ms ? pts[i]
                                                       : s->first_use_ms;
            s->last_use_ms = pts[i] > s->last_use_ms ? pts[i]
                                                     : s->last_use_ms;
        }
        rc = scan_window(s, pts, k, c->from_ms, c->to_ms);
        free(pts);
    }
    return rc;
}

int cpp_uses_by_day(const struct cpp *c, const char *name, size_t len,
                    struct cpp_day **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    len = len > CPP_MERCHANT_MAX ? CPP_MERCHANT_MAX : len;
    uint64_t h = str_hash(name, len);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t mask = c->mslot_cap - 1;
    const struct merchant *m = NULL;
    for (size_t i = h & mask; c->mslot[i].idx != 0; i = (i + 1) & mask) {
        const struct merchant *x = &c->merchants[c->mslot[i].idx - 1];
        if (c->mslot[i].tag == tag && x->len == len &&
            memcmp(x->name, name, len) == 0) {
            m = x;
            break;
        }
    }
    if (m == NULL || m->cases == 0) {
        return 0;
    }
    int64_t *pts = malloc(2 * (size_t)m->cases * sizeof(*pts));
    struct cpp_day *days = malloc(2 * (size_t)m->cases * sizeof(*days));
    if (pts == NULL || days == NULL) {
        free(pts);
        free(days);
        return -1;
    }
    size_t k = merchant_points(c, (uint32_t)(m - c->merchants), pts);
    qsort(pts, k, sizeof(*pts), cmp_i64);
    size_t u = 0;
    for (size_t i = 0; i < k; i++) {
        int64_t d = pts[i] / 86400000LL - (pts[i] % 86400000LL < 0);
        d *= 86400000LL; /* 00:00 UTC, before 1970 too */
        if (u == 0 || days[u - 1].day_ms != d) {
            days[u++] = (struct cpp_day){d, 0};
        }
        days[u - 1].uses++;
    }
    free(pts);
    *out = days;
    *n = u;
    return 0;
}

int cpp_rank(struct cpp *c, struct cpp_suspect *out, size_t max, size_t *n,
             struct cpp_summary *sum)
{
    uint64_t seen = 0;
    for (size_t i = 0; i < c->case_cap; i++) {
        seen += c->cases[i].used && c->cases[i].seen;
    }
    double big_n = c->in_period > 0 ? hll_count(c->global, GLOBAL_P) : 0;
    struct ranked *all = malloc((c->n_merchants + 1) * sizeof(*all));
    if (all == NULL) {
        return -1;
    }
    score(c, all, n, big_n, (double)seen);
    qsort(all, *n, sizeof(*all), cmp_ranked);
    size_t shown = *n < max ? *n : max;
    if (windows(c, all, shown) != 0) {
        free(all);
        return -1;
    }
    for (size_t i = 0; i < shown; i++) {
        out[i] = all[i].s;
    }
    free(all);
    if (sum != NULL) {
        *sum = (struct cpp_summary){
            .cases = c->n_cases,
            .cases_seen = seen,
            .txns = c->txns,
            .txns_in_period = c->in_period,
            .merchants = c->n_merchants,
            .cards = (uint64_t)llround(big_n),
            .period_from_ms = c->from_ms,
            .period_to_ms = c->to_ms,
            .memory_bytes = c->bytes,
        };
    }
    return 0;
}
