/* offsets.c - per-partition in-flight tracking (see offsets.h). */
#include "offsets.h"

#include <stdlib.h>
#include <string.h>

/* One partition: a ring of registered offsets in consumption order and a
 * done flag each. Head is the oldest one not yet released. */
struct part {
    int32_t partition;
    uint32_t generation;
    int active;
    int64_t *offs;
    unsigned char *done;
    size_t cap;  /* power of two */
    size_t head; /* index of oldest */
    size_t len;
    int64_t last_registered;
};

struct offsets {
    struct part *parts;
    size_t n_parts;
    size_t in_flight;
    uint32_t next_generation;
};

struct offsets *offsets_new(void)
{
    struct offsets *o = calloc(1, sizeof(*o));
    if (o != NULL) {
        o->next_generation = 1;
    }
    return o;
}

void offsets_destroy(struct offsets *o)
{
    if (o == NULL) {
        return;
    }
    for (size_t i = 0; i < o->n_parts; i++) {
        free(o->parts[i].offs);
        free(o->parts[i].done);
    }
    free(o->parts);
    free(o);
}

static struct part *find_part(const struct offsets *o, int32_t partition)
{
    for (size_t i = 0; i < o->n_parts; i++) {
        if (o->parts[i].partition == partition) {
            return &o->parts[i];
        }
    }
    return NULL;
}

static struct part *get_part(struct offsets *o, int32_t partition)
{
    struct part *p = find_part(o, partition);
    if (p != NULL) {
        if (!p->active) {
            p->active = 1;
            p->generation = o->next_generation++;
            p->last_registered = -1;
        }
        return p;
    }
    struct part *np = realloc(o->parts, (o->n_parts + 1) * sizeof(*np));
    if (np == NULL) {
        return NULL;
    }
    o->parts = np;
    p = &o->parts[o->n_parts++];
    memset(p, 0, sizeof(*p));
    p->partition = partition;
    p->generation = o->next_generation++;
    p->active = 1;
    p->last_registered = -1;
    return p;
}

static int grow(struct part *p)
{
    size_t ncap = p->cap ? p->cap * 2 : 1024;
    int64_t *offs = malloc(ncap * sizeof(*offs));
    unsigned char *done = malloc(ncap);
    if (offs == NULL || done == NULL) {
        free(offs);
        free(done);
        return -1;
    }
    for (size_t i = 0; i < p->len; i++) {
        size_t j = (p->head + i) & (p->cap - 1);
        offs[i] = p->offs[j];
        done[i] = p->done[j];
    }
    free(p->offs);
    free(p->done);
    p->offs = offs;
    p->done = done;
    p->cap = ncap;
    p->head = 0;
    return 0;
}

int offsets_register(struct offsets *o, int32_t partition, int64_t offset,
                     struct offsets_ticket *ticket)
{
    struct part *p = get_part(o, partition);
    if (p == NULL || offset <= p->last_registered) {
        return -1;
    }
    if (p->len == p->cap && grow(p) != 0) {
        return -1;
    }
    size_t j = (p->head + p->len) & (p->cap - 1);
    p->offs[j] = offset;
    p->done[j] = 0;
    p->len++;
    p->last_registered = offset;
    o->in_flight++;
    ticket->partition = partition;
    ticket->generation = p->generation;
    ticket->offset = offset;
    return 0;
}

int64_t offsets_ack(struct offsets *o, const struct offsets_ticket *ticket)
{
    struct part *p = find_part(o, ticket->partition);
    if (p == NULL || !p->active || p->generation != ticket->generation ||
        p->len == 0) {
        return -1;
    }
    /* Offsets are increasing in the ring: binary search for the ticket. */
    size_t lo = 0, hi = p->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t v = p->offs[(p->head + mid) & (p->cap - 1)];
        if (v < ticket->offset) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    size_t j = (p->head + lo) & (p->cap - 1);
    if (lo == p->len || p->offs[j] != ticket->offset || p->done[j]) {
        return -1;
    }
    p->done[j] = 1;
    o->in_flight--;
    int64_t store = -1;
    while (p->len > 0 && p->done[p->head]) {
        store = p->offs[p->head] + 1;
        p->head = (p->head + 1) & (p->cap - 1);
        p->len--;
    }
    return store;
}

void offsets_revoke(struct offsets *o, int32_t partition)
{
    struct part *p = find_part(o, partition);
    if (p == NULL || !p->active) {
        return;
    }
    for (size_t i = 0; i < p->len; i++) {
        if (!p->done[(p->head + i) & (p->cap - 1)]) {
            o->in_flight--;
        }
    }
    p->active = 0;
    p->len = 0;
    p->head = 0;
}

size_t offsets_in_flight(const struct offsets *o)
{
    return o->in_flight;
}

size_t offsets_partition_in_flight(const struct offsets *o, int32_t partition)
{
    const struct part *p = find_part(o, partition);
    size_t n = 0;
    if (p == NULL || !p->active) {
        return 0;
    }
    for (size_t i = 0; i < p->len; i++) {
        if (!p->done[(p->head + i) & (p->cap - 1)]) {
            n++;
        }
    }
    return n;
}
