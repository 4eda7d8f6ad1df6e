/* tally.c - see tally.h. */
#include "tally.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct named {
    char *name;
    uint64_t n;
};

struct counts {
    struct named *v;
    size_t n, cap;
};

/* A set of fixed-width strings (open addressing; "" = a free slot). */
struct fset {
    char *v;
    size_t width, mask, n;
};

struct tally {
    uint64_t alerts, repeats;
    uint64_t sev[SEVERITY_CRITICAL + 1];
    struct counts rules, issuers;
    struct fset cards; /* fingerprints of the cards with an alert */
    struct fset ids;   /* alert ids counted */
};

static int fset_init(struct fset *s, size_t width)
{
    s->v = calloc(1024, width);
    s->width = width;
    s->mask = 1023;
    s->n = 0;
    return s->v != NULL ? 0 : -1;
}

struct tally *tally_new(void)
{
    struct tally *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    if (fset_init(&t->cards, ALERT_FP_SIZE) != 0 ||
        fset_init(&t->ids, ALERT_ID_SIZE) != 0) {
        tally_destroy(t);
        return NULL;
    }
    return t;
}

static int bump(struct counts *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i].name, name) == 0) {
            c->v[i].n++;
            return 0;
        }
    }
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        struct named *nv = realloc(c->v, ncap * sizeof(*nv));
        if (nv == NULL) {
            return -1;
        }
        c->v = nv;
        c->cap = ncap;
    }
    char *d = strdup(name);
    if (d == NULL) {
        return -1;
    }
    c->v[c->n++] = (struct named){d, 1};
    return 0;
}

static char *fset_slot(const struct fset *s, const char *key)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = key; *p; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
    size_t i = (size_t)h & s->mask;
    while (s->v[i * s->width] != '\0' &&
           strcmp(s->v + i * s->width, key) != 0) {
        i = (i + 1) & s->mask;
    }
    return s->v + i * s->width;
}

static int fset_grow(struct fset *s)
{
    struct fset old = *s;
    s->v = calloc((old.mask + 1) * 2, s->width);
    if (s->v == NULL) {
        *s = old;
        return -1;
    }
    s->mask = old.mask * 2 + 1;
    for (size_t i = 0; i <= old.mask; i++) {
        const char *k = old.v + i * old.width;
        if (k[0] != '\0') {
            memcpy(fset_slot(s, k), k, s->width);
        }
    }
    free(old.v);
    return 0;
}

/* Adds key (shorter than the set's width; "" is never added). Returns 1
 * when added, 0 when it was there, -1 on allocation failure. */
static int fset_add(struct fset *s, const char *key)
{
    if (key[0] == '\0') {
        return 0;
    }
    if ((s->n + 1) * 2 > s->mask + 1 && fset_grow(s) != 0) {
        return -1;
    }
    char *slot = fset_slot(s, key);
    if (slot[0] != '\0') {
        return 0;
    }
    snprintf(slot, s->width, "%s", key);
    s->n++;
    return 1;
}

int tally_alert(struct tally *t, const struct alert *a)
{
    int added = fset_add(&t->ids, a->alert_id);
    if (added == 0 && a->alert_id[0] != '\0') {
        t->repeats++;
        return 0;
    }
    int rc = added < 0 ? -1 : 0;
    t->alerts++;
    if (a->severity <= SEVERITY_CRITICAL) {
        t->sev[a->severity]++;
    }
    for (size_t i = 0; i < a->n_hits; i++) {
        rc |= bump(&t->rules, a->hits[i].rule_id);
    }
    rc |= bump(&t->issuers, a->issuer_id[0] ? a->issuer_id : "unrouted");
    rc |= fset_add(&t->cards, a->card_fingerprint) < 0 ? -1 : 0;
    return rc ? -1 : 1;
}

uint64_t tally_repeats(const struct tally *t)
{
    return t->repeats;
}

uint64_t tally_alerts(const struct tally *t)
{
    return t->alerts;
}

uint64_t tally_cards(const struct tally *t)
{
    return t->cards.n;
}

uint64_t tally_severity(const struct tally *t, enum severity s)
{
    return s <= SEVERITY_CRITICAL ? t->sev[s] : 0;
}

static int cmp_named(const void *a, const void *b)
{
    const struct named *x = a, *y = b;
    if (x->n != y->n) {
        return x->n < y->n ? 1 : -1;
    }
    return strcmp(x->name, y->name);
}

static void each(const struct counts *c,
                 void (*fn)(void *arg, const char *name, uint64_t n),
                 void *arg)
{
    if (c->n > 1) {
        qsort(c->v, c->n, sizeof(c->v[0]), cmp_named);
    }
    for (size_t i = 0; i < c->n; i++) {
        fn(arg, c->v[i].name, c->v[i].n);
    }
}

void tally_each_rule(const struct tally *t,
                     void (*fn)(void *arg, const char *name, uint64_t n),
                     void *arg)
{
    each(&t->rules, fn, arg);
}

void tally_each_issuer(const struct tally *t,
                       void (*fn)(void *arg, const char *name, uint64_t n),
                       void *arg)
{
    each(&t->issuers, fn, arg);
}

static void free_counts(struct counts *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].name);
    }
    free(c->v);
}

void tally_destroy(struct tally *t)
{
    if (t == NULL) {
        return;
    }
    free_counts(&t->rules);
    free_counts(&t->issuers);
    free(t->cards.v);
    free(t->ids.v);
    free(t);
}
