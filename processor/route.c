/* route.c - BIN routing: longest matching prefix (6 to 8 digits).
 *
 * One sorted array of (prefix, issuer index) per prefix length; a lookup
 * is at most three binary searches. route_add() keeps every array sorted
 * (it merges the new prefixes in), so route_lookup() can stay const and
 * allocation-free. Adding is a start-up cost only.
 *
 * Messages never echo a spec holding a run of more than 8 digits: a
 * mistyped "BIN" may be a whole card number.
 */
#include "route.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

#define ROUTE_MIN_LEN 6
#define ROUTE_MAX_LEN 8
#define ROUTE_LEVELS (ROUTE_MAX_LEN - ROUTE_MIN_LEN + 1)
#define ROUTE_MAX_RANGE 100000u

struct route_entry {
    uint32_t prefix;
    int idx;
};

/* All prefixes of one length, sorted by prefix, no duplicates. */
struct route_level {
    struct route_entry *v;
    size_t n;
};

struct route_table {
    struct route_level lv[ROUTE_LEVELS]; /* lv[len - ROUTE_MIN_LEN] */
};

struct route_table *route_new(void)
{
    return calloc(1, sizeof(struct route_table));
}

void route_destroy(struct route_table *rt)
{
    if (rt == NULL) {
        return;
    }
    for (size_t i = 0; i < ROUTE_LEVELS; i++) {
        free(rt->lv[i].v);
    }
    free(rt);
}

/* Index of the first entry whose prefix is >= p (n when none is). */
static size_t lower_bound(const struct route_level *l, uint32_t p)
{
    size_t lo = 0;
    size_t hi = l->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->v[mid].prefix < p) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* 1 when spec may appear in a message: short and no run of more than
 * ROUTE_MAX_LEN digits (which could be part of a card number). */
static int echo_ok(const char *spec)
{
    size_t run = 0;

    if (strlen(spec) > 2 * ROUTE_MAX_LEN + 1) {
        return 0;
    }
    for (const char *s = spec; *s != '\0'; s++) {
        run = (*s >= '0' && *s <= '9') ? run + 1 : 0;
        if (run > ROUTE_MAX_LEN) {
            return 0;
        }
    }
    return 1;
}

/* Parses s[0..n) as a 6..8 digit prefix. Returns 0, or -1 with why set. */
static int parse_prefix(const char *s, size_t n, uint32_t *out,
                        const char **why)
{
    uint32_t v = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            *why = "is not all digits";
            return -1;
        }
    }
    if (n < ROUTE_MIN_LEN || n > ROUTE_MAX_LEN) {
        *why = "must be 6 to 8 digits";
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int route_add(struct route_table *rt, const char *spec, int idx, char *errbuf,
              size_t errlen)
{
    const char *dash;
    const char *why = NULL;
    size_t lo_len, hi_len;
    uint32_t lo, hi;
    struct route_level *l;
    struct route_entry *merged = NULL;
    size_t first, end, have = 0, add, n = 0;
    int rc = -1;

    if (rt == NULL || spec == NULL || idx < 0) {
        text_errf(errbuf, errlen, "invalid argument");
        goto out;
    }
    if (*spec == '\0') {
        text_errf(errbuf, errlen, "empty BIN prefix");
        goto out;
    }
    dash = strchr(spec, '-');
    lo_len = dash != NULL ? (size_t)(dash - spec) : strlen(spec);
    if (parse_prefix(spec, lo_len, &lo, &why) != 0) {
        goto bad_spec;
    }
    if (dash == NULL) {
        hi = lo;
        hi_len = lo_len;
    } else {
        hi_len = strlen(dash + 1);
        if (parse_prefix(dash + 1, hi_len, &hi, &why) != 0) {
            goto bad_spec;
        }
        if (hi_len != lo_len) {
            why = "has ends of different lengths";
            goto bad_spec;
        }
        if (lo > hi) {
            why = "has its low end above its high end";
            goto bad_spec;
        }
        if (hi - lo >= ROUTE_MAX_RANGE) {
            why = "spans more than 100000 prefixes";
            goto bad_spec;
        }
    }

    /* Every prefix of [lo, hi] already held must belong to idx. */
    l = &rt->lv[lo_len - ROUTE_MIN_LEN];
    first = lower_bound(l, lo);
    for (end = first; end < l->n && l->v[end].prefix <= hi; end++) {
        if (l->v[end].idx != idx) {
            text_errf(errbuf, errlen,
                      "BIN prefix %0*u is already routed to issuer index %d",
                      (int)lo_len, (unsigned)l->v[end].prefix, l->v[end].idx);
            goto out;
        }
        have++;
    }
    add = (size_t)(hi - lo) + 1 - have;
    if (add == 0) {
        rc = 0;
        goto out;
    }

    /* Merge: old[0..first), [lo, hi], old[end..n). */
    merged = malloc((l->n + add) * sizeof(*merged));
    if (merged == NULL) {
        text_errf(errbuf, errlen, "out of memory");
        goto out;
    }
    if (first > 0) {
        memcpy(merged, l->v, first * sizeof(*merged));
    }
    n = first;
    for (uint32_t p = lo;; p++) {
        merged[n].prefix = p;
        merged[n].idx = idx;
        n++;
        if (p == hi) {
            break;
        }
    }
    if (end < l->n) {
        memcpy(merged + n, l->v + end, (l->n - end) * sizeof(*merged));
    }
    n += l->n - end;
    free(l->v);
    l->v = merged;
    l->n = n;
    merged = NULL;
    rc = 0;
    goto out;

bad_spec:
    if (echo_ok(spec)) {
        text_errf(errbuf, errlen, "BIN %s '%s' %s",
                  dash != NULL ? "range" : "prefix", spec, why);
    } else {
        text_errf(errbuf, errlen, "BIN %s of %zu characters %s",
                  dash != NULL ? "range" : "prefix", strlen(spec), why);
    }
out:
    free(merged);
    return rc;
}

int route_lookup(const struct route_table *rt, const char *digits, size_t len)
{
    size_t n = 0;
    uint32_t v[ROUTE_MAX_LEN + 1] = {0}; /* v[k]: value of the first k */

    if (rt == NULL || digits == NULL) {
        return -1;
    }
    while (n < len && n < ROUTE_MAX_LEN && digits[n] >= '0' &&
           digits[n] <= '9') {
        v[n + 1] = v[n] * 10 + (uint32_t)(digits[n] - '0');
        n++;
    }
    for (size_t k = n; k >= ROUTE_MIN_LEN; k--) {
        const struct route_level *l = &rt->lv[k - ROUTE_MIN_LEN];
        size_t i = lower_bound(l, v[k]);
        if (i < l->n && l->v[i].prefix == v[k]) {
            return l->v[i].idx;
        }
    }
    return -1;
}

size_t route_count(const struct route_table *rt)
{
    size_t n = 0;

    if (rt == NULL) {
        return 0;
    }
    for (size_t i = 0; i < ROUTE_LEVELS; i++) {
        n += rt->lv[i].n;
    }
    return n;
}

void route_count_by_idx(const struct route_table *rt, size_t *counts, size_t n)
{
    if (counts == NULL) {
        return;
    }
    memset(counts, 0, n * sizeof(*counts));
    if (rt == NULL) {
        return;
    }
    for (size_t i = 0; i < ROUTE_LEVELS; i++) {
        for (size_t j = 0; j < rt->lv[i].n; j++) {
            size_t idx = (size_t)rt->lv[i].v[j].idx;
            if (idx < n) {
                counts[idx]++;
            }
        }
    }
}

size_t route_prefixes(const struct route_table *rt, char **out, size_t cap)
{
    size_t k = 0;
    if (rt == NULL) {
        return 0;
    }
    for (size_t i = 0; i < ROUTE_LEVELS; i++) {
        for (size_t j = 0; j < rt->lv[i].n && k < cap; j++) {
            char buf[16];
            snprintf(buf, sizeof(buf), "%0*u", (int)(i + ROUTE_MIN_LEN),
                     rt->lv[i].v[j].prefix);
            out[k] = strdup(buf);
            if (out[k] == NULL) {
                return k;
            }
            k++;
        }
    }
    return k;
}
