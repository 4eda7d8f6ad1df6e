/* fuzz_cpp.c - libFuzzer target for common-point-of-purchase analysis
 * (cpp.h), through its public API only.
 * Input: byte 0 = look-back in days - 1; byte 1 = min_cases - 1 (low 2
 * bits); then records of 12 bytes: r[0] bit 0 = a case (0) or a
 * transaction (1); r[1] = the card (256 of them); r[2] = the merchant
 * ("m" + low 4 bits; bit 7 makes the name 70 characters, longer than
 * CPP_MERCHANT_MAX); r[3..10] = the time: a little-endian int32 of
 * minutes, or with r[11] bit 0 the raw int64 (extremes). Every case is
 * added first, then the analysis is sealed and every transaction
 * observed - once one by one, once in batches of r[11] >> 1 + 1 - and
 * ranked.
 * Invariants: no crash, leak or sanitizer report; cpp_add_case returns 0
 * or -2 (a time outside 1970..9999); the two analyses rank the same
 * merchants with the same figures; every ranked merchant has at least
 * min_cases cases and a card, p-values <= 1 with the corrected one no
 * smaller, first use <= last use, a window inside the period's days; the
 * ranking is ordered by p; the summary counts every transaction; the top
 * merchant's uses by day add up to at least its cases. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REC 12
#define DAY 86400000LL
#define MAXOUT 64

static void name_of(uint8_t b, char *out, size_t *len)
{
    if (b & 0x80) {
        memset(out, 'a' + (b & 15), 70);
        *len = 70;
    } else {
        *len = (size_t)snprintf(out, 8, "m%u", b & 15);
    }
}

static int64_t time_of(const uint8_t *r)
{
    if (r[11] & 1) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--) {
            v = v << 8 | r[3 + i];
        }
        return (int64_t)v;
    }
    int32_t m = (int32_t)((uint32_t)r[3] | (uint32_t)r[4] << 8 |
                          (uint32_t)r[5] << 16 | (uint32_t)r[6] << 24);
    return (int64_t)m * 60000;
}

static void fp_of(uint8_t card, uint8_t fp[CPP_FP_LEN])
{
    for (int i = 0; i < CPP_FP_LEN; i++) {
        fp[i] = (uint8_t)(card * 31 + i * 7 + (card >> 3));
    }
}

/* Builds and feeds one analysis; batch 0 = one call per transaction. */
static struct cpp *build(const struct cpp_opts *o, const uint8_t *recs,
                         size_t n, size_t batch)
{
    struct cpp *c = cpp_new(o);
    if (c == NULL) {
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = recs + i * REC;
        if (r[0] & 1) {
            continue;
        }
        uint8_t fp[CPP_FP_LEN];
        fp_of(r[1], fp);
        int rc = cpp_add_case(c, fp, time_of(r));
        if (rc != 0 && rc != -2) {
            abort();
        }
    }
    cpp_seal(c);
    struct cpp_obs obs[256];
    char names[256][72];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = recs + i * REC;
        if (!(r[0] & 1)) {
            continue;
        }
        fp_of(r[1], obs[k].fp);
        name_of(r[2], names[k], &obs[k].mlen);
        obs[k].merchant = names[k];
        obs[k].t_ms = time_of(r);
        k++;
        if (batch == 0) {
            if (cpp_observe(c, obs[0].fp, obs[0].merchant, obs[0].mlen,
                            obs[0].t_ms) != 0) {
                abort();
            }
            k = 0;
        } else if (k == batch || k == 256) {
            if (cpp_observe_batch(c, obs, k) != 0) {
                abort();
            }
            k = 0;
        }
    }
    if (k > 0 && cpp_observe_batch(c, obs, k) != 0) {
        abort();
    }
    return c;
}

static void check(const struct cpp_opts *o, const struct cpp_suspect *s,
                  size_t shown, const struct cpp_summary *sum, size_t n_txn)
{
    if (sum->txns != n_txn || sum->cases_seen > sum->cases ||
        sum->txns_in_period > sum->txns) {
        abort();
    }
    for (size_t i = 0; i < shown; i++) {
        if (s[i].cases < o->min_cases || s[i].cards < 1 ||
            !(s[i].log10_p <= 0) || !(s[i].log10_p_adj <= 0) ||
            s[i].log10_p_adj < s[i].log10_p ||
            s[i].first_use_ms > s[i].last_use_ms ||
            s[i].window_start_ms > s[i].window_end_ms ||
            s[i].window_start_ms / DAY < sum->period_from_ms / DAY ||
            s[i].window_end_ms / DAY > (sum->period_to_ms - 1) / DAY ||
            (i > 0 && s[i].log10_p < s[i - 1].log10_p)) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    struct cpp_opts o = {(int64_t)(data[0] + 1) * DAY, 0.01,
                         (uint32_t)(data[1] & 3) + 1};
    const uint8_t *recs = data + 2;
    size_t n = (size - 2) / REC, n_txn = 0;
    if (n > 4096) {
        n = 4096;
    }
    for (size_t i = 0; i < n; i++) {
        n_txn += recs[i * REC] & 1;
    }
    size_t batch = n > 0 ? (size_t)(recs[11] >> 1) + 1 : 1;
    struct cpp *one = build(&o, recs, n, 0);
    struct cpp *many = build(&o, recs, n, batch);
    struct cpp_suspect a[MAXOUT], b[MAXOUT];
    size_t na = 0, nb = 0;
    struct cpp_summary sa, sb;
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    if (cpp_rank(one, a, MAXOUT, &na, &sa) != 0 ||
        cpp_rank(many, b, MAXOUT, &nb, &sb) != 0 || na != nb) {
        abort();
    }
    size_t shown = na < MAXOUT ? na : MAXOUT;
    if (memcmp(a, b, shown * sizeof(a[0])) != 0 || sa.txns != sb.txns ||
        sa.cards != sb.cards || sa.merchants != sb.merchants) {
        abort();
    }
    check(&o, a, shown, &sa, n_txn);
    if (shown > 0) {
        struct cpp_day *days = NULL;
        size_t nd = 0;
        if (cpp_uses_by_day(one, a[0].merchant, strlen(a[0].merchant), &days,
                            &nd) != 0) {
            abort();
        }
        uint64_t uses = 0;
        for (size_t i = 0; i < nd; i++) {
            uses += days[i].uses;
        }
        free(days);
        if (uses < a[0].cases) {
            abort();
        }
    }
    cpp_destroy(one);
    cpp_destroy(many);
    return 0;
}
