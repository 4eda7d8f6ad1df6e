/* windows.c - event-time window aggregates over one card's transactions
 * (pure). See windows.h.
 *
 * win_aggregate() works in three passes over the card's entries, with the
 * current transaction as item 0 so that it wins over any copy of itself:
 *   1. dedupe by txn_id (first occurrence wins) and compute each kept
 *      item's age T - event_time (items after T are out of every window);
 *   2. count / count_declined / sum_amount per window;
 *   3. distinct merchants, then distinct countries: the smallest age of
 *      each distinct value decides which windows it falls in.
 * One open-addressing hash table (indices into the items) serves every
 * pass. For up to WIN_STACK_ITEMS items all scratch lives on the stack.
 */
#include "windows.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WIN_STACK_ITEMS 4097 /* 4096 entries + the current transaction */
#define WIN_STACK_SLOTS 8192 /* power of two, load <= 3/4 */
#define WIN_AGE_NONE UINT64_MAX
#define WIN_MAX_MS (366LL * 86400000LL)
#define WIN_VERSION "w1"

void win_entry_from_txn(struct win_entry *e, const struct txn *t)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->txn_id, sizeof(e->txn_id), "%s", t->txn_id);
    e->event_time_ms = t->event_time_ms;
    e->amount_minor = t->amount_minor;
    e->declined = t->response == TXN_RESPONSE_DECLINED;
    snprintf(e->merchant_id, sizeof(e->merchant_id), "%s", t->merchant_id);
    snprintf(e->merchant_country, sizeof(e->merchant_country), "%s",
             t->merchant_country);
}

/* Scratch space of one aggregation. */
struct win_scratch {
    const struct win_entry *entries;
    const struct win_entry *cur;
    size_t m;        /* items: cur + entries */
    uint32_t *slots; /* item index + 1; 0 = empty */
    size_t mask;     /* slot count - 1 */
    uint64_t *age;   /* per item; WIN_AGE_NONE = not counted */
    uint64_t *vmin;  /* per item: smallest age of its value (pass 3) */
};

static const struct win_entry *item(const struct win_scratch *s, size_t i)
{
    return i == 0 ? s->cur : &s->entries[i - 1];
}

/* The field a pass keys on: 0 txn_id, 1 merchant_id, 2 merchant_country.
 * Sets *len (when not NULL) to its length, reading at most the field's
 * size (entries may lack a NUL), and *sizep to that size. */
static const char *key_of(const struct win_entry *e, int which, size_t *len,
                          size_t *sizep)
{
    const char *k;
    size_t size;

    if (which == 0) {
        k = e->txn_id;
        size = sizeof(e->txn_id);
    } else if (which == 1) {
        k = e->merchant_id;
        size = sizeof(e->merchant_id);
    } else {
        k = e->merchant_country;
        size = sizeof(e->merchant_country);
    }
    if (len != NULL) {
        *len = strnlen(k, size);
    }
    *sizep = size;
    return k;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

/* Finds the item whose key equals k[0..klen) (item i's key), or inserts
 * i. Returns the index of the first item with that key (i when new). */
static size_t find_or_insert(struct win_scratch *s, size_t i, int which,
                             const char *k, size_t klen)
{
    size_t pos = (size_t)hash_bytes(k, klen) & s->mask;

    for (;;) {
        uint32_t v = s->slots[pos];
        if (v == 0) {
            s->slots[pos] = (uint32_t)(i + 1);
            return i;
        }
        size_t size;
        const char *o = key_of(item(s, v - 1), which, NULL, &size);
        /* equal: same first klen bytes, and o ends there too */
        if (memcmp(o, k, klen) == 0 && (klen == size || o[klen] == '\0')) {
            return v - 1;
        }
        pos = (pos + 1) & s->mask;
    }
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;

    if (__builtin_add_overflow(a, b, &r)) {
        return b > 0 ? INT64_MAX : INT64_MIN;
    }
    return r;
}

/* Pass 3 for one key (merchant or country): adds each distinct non-empty
 * value to the windows its youngest occurrence falls in. */
static void count_distinct(struct win_scratch *s, int which,
                           const int64_t *windows, size_t nw,
                           struct win_stats *out)
{
    memset(s->slots, 0, (s->mask + 1) * sizeof(s->slots[0]));
    for (size_t i = 0; i < s->m; i++) {
        size_t len, size;
        if (s->age[i] == WIN_AGE_NONE) {
            continue;
        }
        const char *k = key_of(item(s, i), which, &len, &size);
        if (len == 0) {
            continue;
        }
        size_t r = find_or_insert(s, i, which, k, len);
        if (r == i) {
            s->vmin[i] = s->age[i];
        } else if (s->age[i] < s->vmin[r]) {
            s->vmin[r] = s->age[i];
        }
    }
    /* each occupied slot holds one distinct value's first item */
    for (size_t k = 0; k <= s->mask; k++) {
        if (s->slots[k] == 0) {
            continue;
        }
        uint64_t age = s->vmin[s->slots[k] - 1];
        for (size_t w = 0; w < nw; w++) {
            if (windows[w] > 0 && age < (uint64_t)windows[w]) {
                if (which == 1) {
                    out[w].distinct_merchants++;
                } else {
                    out[w].distinct_countries++;
                }
            }
        }
    }
}

int win_aggregate(const struct win_entry *entries, size_t n,
                  const struct win_entry *cur, const int64_t *windows,
                  size_t nw, struct win_stats *out)
{
    uint32_t stack_slots[WIN_STACK_SLOTS];
    uint64_t stack_age[WIN_STACK_ITEMS];
    uint64_t stack_vmin[WIN_STACK_ITEMS];
    struct win_scratch s;
    void *heap = NULL;
    size_t nslots = 16;
    int64_t t;

    if (cur == NULL || (n > 0 && entries == NULL) ||
        (nw > 0 && (windows == NULL || out == NULL))) {
        return -1;
    }
    if (nw == 0) {
        return 0;
    }
    memset(out, 0, nw * sizeof(out[0]));
    if (n > SIZE_MAX / 64 || n >= UINT32_MAX - 1) {
        return -1;
    }
    s.entries = entries;
    s.cur = cur;
    s.m = n + 1;
    while (nslots / 4 * 3 < s.m) {
        nslots *= 2;
    }
    if (s.m <= WIN_STACK_ITEMS) {
        s.slots = stack_slots;
        s.age = stack_age;
        s.vmin = stack_vmin;
    } else {
        size_t bytes = nslots * sizeof(uint32_t) + 2 * s.m * sizeof(uint64_t);
        heap = malloc(bytes);
        if (heap == NULL) {
            return -1;
        }
        s.age = heap;
        s.vmin = s.age + s.m;
        s.slots = (uint32_t *)(s.vmin + s.m);
    }
    s.mask = nslots - 1;

    /* pass 1: dedupe by txn_id, ages relative to the current event */
    t = cur->event_time_ms;
    memset(s.slots, 0, nslots * sizeof(s.slots[0]));
    for (size_t i = 0; i < s.m; i++) {
        size_t len, size;
        const char *k = key_of(item(&s, i), 0, &len, &size);
        int64_t et = item(&s, i)->event_time_ms;
        s.age[i] = WIN_AGE_NONE;
        if (find_or_insert(&s, i, 0, k, len) != i || et > t) {
            continue;
        }
        s.age[i] = (uint64_t)t - (uint64_t)et; /* et <= t: no overflow */
    }

    /* pass 2: counts and sums */
    for (size_t i = 0; i < s.m; i++) {
        const struct win_entry *e = item(&s, i);
        if (s.age[i] == WIN_AGE_NONE) {
            continue;
        }
        for (size_t w = 0; w < nw; w++) {
            if (windows[w] <= 0 || s.age[i] >= (uint64_t)windows[w]) {
                continue;
            }
            out[w].count++;
            out[w].count_declined += e->declined != 0;
            out[w].sum_amount = sat_add(out[w].sum_amount, e->amount_minor);
        }
    }

    /* pass 3: distinct merchants and countries */
    count_distinct(&s, 1, windows, nw, out);
    count_distinct(&s, 2, windows, nw, out);

    free(heap);
    return 0;
}

/* ---- record encoding ----
 * "w1|<event_time_ms>|<amount_minor>|<0|1>|<country>|<txn_id>|<merchant>"
 * with '%', '|' and every byte outside 0x21..0x7e written as %XX. */

struct wbuf {
    char *buf;
    size_t cap;
    size_t len;
    int overflow;
};

static void wb_put(struct wbuf *w, const char *s, size_t n)
{
    if (w->overflow || n >= w->cap - w->len) {
        w->overflow = 1;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void wb_escaped(struct wbuf *w, const char *s, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strnlen(s, size);

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '%' || c == '|') {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            wb_put(w, e, 3);
        } else {
            wb_put(w, (const char *)&s[i], 1);
        }
    }
}

int win_entry_encode(const struct win_entry *e, char *buf, size_t buflen)
{
    struct wbuf w = {buf, buflen, 0, buflen == 0};
    char num[64];
    int k;

    k = snprintf(num, sizeof(num), WIN_VERSION "|%lld|%lld|%d|",
                 (long long)e->event_time_ms, (long long)e->amount_minor,
                 e->declined != 0);
    wb_put(&w, num, (size_t)k);
    wb_escaped(&w, e->merchant_country, sizeof(e->merchant_country));
    wb_put(&w, "|", 1);
    wb_escaped(&w, e->txn_id, sizeof(e->txn_id));
    wb_put(&w, "|", 1);
    wb_escaped(&w, e->merchant_id, sizeof(e->merchant_id));
    if (w.overflow) {
        if (buflen > 0) {
            buf[0] = '\0';
        }
        return -1;
    }
    buf[w.len] = '\0';
    return (int)w.len;
}

/* Parses a decimal int64 (optional '-') that fills s[0..len) exactly. */
static int parse_i64(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    uint64_t v = 0;
    uint64_t limit = (uint64_t)INT64_MAX;

    if (len > 0 && s[0] == '-') {
        neg = 1;
        limit += 1;
        i = 1;
    }
    if (i == len) {
        return -1;
    }
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    if (neg) {
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        *out = (int64_t)v;
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* Unescapes s[0..len) into out[size] (NUL-terminated). Returns 0, or -1
 * for a bad escape, a NUL, a raw byte that encode never writes, or text
 * longer than size - 1. */
static int unescape(const char *s, size_t len, char *out, size_t size)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= len || (hi = hexval(s[i + 1])) < 0 ||
                (lo = hexval(s[i + 2])) < 0) {
                return -1;
            }
            c = (unsigned char)(hi * 16 + lo);
            if (c == 0) {
                return -1;
            }
            i += 2;
        } else if (c <= 0x20 || c >= 0x7f || c == '|') {
            return -1;
        }
        if (o + 1 >= size) {
            return -1;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

int win_entry_decode(const char *s, size_t len, struct win_entry *e)
{
    const char *f[7];
    size_t fl[7];
    size_t nf = 0;
    size_t start = 0;
    struct win_entry tmp;
    int64_t declined;

    if (s == NULL || e == NULL) {
        return -1;
    }
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '|') {
            if (nf == 7) {
                return -1;
            }
            f[nf] = s + start;
            fl[nf] = i - start;
            nf++;
            start = i + 1;
        }
    }
    if (nf != 7 || fl[0] != 2 || memcmp(f[0], WIN_VERSION, 2) != 0) {
        return -1;
    }
    memset(&tmp, 0, sizeof(tmp));
    if (parse_i64(f[1], fl[1], &tmp.event_time_ms) != 0 ||
        parse_i64(f[2], fl[2], &tmp.amount_minor) != 0 ||
        tmp.amount_minor < 0 || parse_i64(f[3], fl[3], &declined) != 0 ||
        (declined != 0 && declined != 1) ||
        unescape(f[4], fl[4], tmp.merchant_country,
                 sizeof(tmp.merchant_country)) != 0 ||
        unescape(f[5], fl[5], tmp.txn_id, sizeof(tmp.txn_id)) != 0 ||
        unescape(f[6], fl[6], tmp.merchant_id, sizeof(tmp.merchant_id)) != 0) {
        return -1;
    }
    tmp.declined = (int)declined;
    *e = tmp;
    return 0;
}

/* ---- durations ---- */

static const struct {
    const char *name;
    int64_t ms;
} units[] = {
    {"d", 86400000LL}, {"h", 3600000LL}, {"m", 60000LL},
    {"s", 1000LL},     {"ms", 1LL},
};

int win_duration_parse(const char *s, size_t len, int64_t *ms)
{
    size_t i = 0;
    int64_t v = 0;

    if (s == NULL || ms == NULL) {
        return -1;
    }
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        v = v * 10 + (s[i] - '0');
        if (v > WIN_MAX_MS) {
            return -1;
        }
        i++;
    }
    if (i == 0 || v == 0) {
        return -1;
    }
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        size_t ul = strlen(units[u].name);
        if (len - i == ul && memcmp(s + i, units[u].name, ul) == 0) {
            if (v > WIN_MAX_MS / units[u].ms) {
                return -1;
            }
            *ms = v * units[u].ms;
            return 0;
        }
    }
    return -1;
}

void win_duration_format(int64_t ms, char *buf, size_t buflen)
{
    if (buf == NULL || buflen == 0) {
        return;
    }
    if (ms > 0) {
        for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
            if (ms % units[u].ms == 0) {
                snprintf(buf, buflen, "%lld%s", (long long)(ms / units[u].ms),
                         units[u].name);
                return;
            }
        }
    }
    snprintf(buf, buflen, "%lldms", (long long)ms);
}
