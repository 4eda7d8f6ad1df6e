/* timeline.c - see timeline.h. */
#include "timeline.h"

#include <stdlib.h>
#include <string.h>

#include "breach.h"

#define DAY_MS 86400000LL

struct tl_breach {
    char id[BREACH_ID_MAX + 1];
    int64_t start_ms, end_ms;
    struct timeline_day *days; /* sorted by day_ms */
    size_t n, cap;
};

struct timeline {
    struct tl_breach *b;
    size_t n, cap;
};

struct timeline *timeline_new(void)
{
    return calloc(1, sizeof(struct timeline));
}

static struct tl_breach *find_breach(struct timeline *t, const char *id,
                                     int64_t start_ms, int64_t end_ms)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->b[i].id, id) == 0) {
            return &t->b[i];
        }
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4;
        struct tl_breach *v = realloc(t->b, cap * sizeof(*v));
        if (v == NULL) {
            return NULL;
        }
        t->b = v;
        t->cap = cap;
    }
    struct tl_breach *b = &t->b[t->n++];
    memset(b, 0, sizeof(*b));
    strncpy(b->id, id, BREACH_ID_MAX);
    b->start_ms = start_ms;
    b->end_ms = end_ms;
    return b;
}

/* The day of day_ms in b, inserted in order when new; NULL on OOM. */
static struct timeline_day *find_day(struct tl_breach *b, int64_t day_ms)
{
    size_t lo = 0, hi = b->n;
    if (b->n > 0 && b->days[b->n - 1].day_ms <= day_ms) {
        lo = b->n - 1; /* most events come in time order */
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->days[mid].day_ms < day_ms) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < b->n && b->days[lo].day_ms == day_ms) {
        return &b->days[lo];
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct timeline_day *v = realloc(b->days, cap * sizeof(*v));
        if (v == NULL) {
            return NULL;
        }
        b->days = v;
        b->cap = cap;
    }
    memmove(&b->days[lo + 1], &b->days[lo], (b->n - lo) * sizeof(*b->days));
    b->n++;
    b->days[lo] = (struct timeline_day){.day_ms = day_ms};
    return &b->days[lo];
}

int timeline_count(struct timeline *t, const char *breach_id,
                   int64_t start_ms, int64_t end_ms, int64_t event_time_ms,
                   int alert)
{
    if (event_time_ms < start_ms) {
        return 0;
    }
    struct tl_breach *b = find_breach(t, breach_id, start_ms, end_ms);
    int64_t day = event_time_ms - ((event_time_ms % DAY_MS) + DAY_MS) % DAY_MS;
    struct timeline_day *d = b != NULL ? find_day(b, day) : NULL;
    if (d == NULL) {
        return -1;
    }
    if (alert) {
        d->alerts++;
    } else {
        d->exposed++;
    }
    return 0;
}

void timeline_each(const struct timeline *t,
                   void (*fn)(void *arg, const char *breach_id,
                              int64_t start_ms, int64_t end_ms,
                              const struct timeline_day *days, size_t n),
                   void *arg)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct tl_breach *b = &t->b[i];
        if (b->n > 0) {
            fn(arg, b->id, b->start_ms, b->end_ms, b->days, b->n);
        }
    }
}

void timeline_destroy(struct timeline *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < t->n; i++) {
        free(t->b[i].days);
    }
    free(t->b);
    free(t);
}
