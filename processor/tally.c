/* tally.c - see tally.h. */
#include "tally.h"

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

struct tally {
    uint64_t alerts;
    uint64_t sev[SEVERITY_CRITICAL + 1];
    struct counts rules, issuers;
    char (*cards)[ALERT_FP_SIZE]; /* open addressing; "" = free */
    size_t mask, n_cards;
};

struct tally *tally_new(void)
{
    struct tally *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->cards = calloc(1024, sizeof(*t->cards));
    if (t->cards == NULL) {
        free(t);
        return NULL;
    }
    t->mask = 1023;
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

static size_t slot_of(const struct tally *t, const char *fp)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = fp; *p; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
    size_t i = (size_t)h & t->mask;
    while (t->cards[i][0] != '\0' && strcmp(t->cards[i], fp) != 0) {
        i = (i + 1) & t->mask;
    }
    return i;
}

static int grow(struct tally *t)
{
    size_t ncap = (t->mask + 1) * 2;
    char (*old)[ALERT_FP_SIZE] = t->cards;
    size_t old_n = t->mask + 1;
    t->cards = calloc(ncap, sizeof(*t->cards));
    if (t->cards == NULL) {
        t->cards = old;
        return -1;
    }
    t->mask = ncap - 1;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i][0] != '\0') {
            memcpy(t->cards[slot_of(t, old[i])], old[i], ALERT_FP_SIZE);
        }
    }
    free(old);
    return 0;
}

int tally_alert(struct tally *t, const struct alert *a)
{
    int rc = 0;
    t->alerts++;
    if (a->severity <= SEVERITY_CRITICAL) {
        t->sev[a->severity]++;
    }
    for (size_t i = 0; i < a->n_hits; i++) {
        rc |= bump(&t->rules, a->hits[i].rule_id);
    }
    rc |= bump(&t->issuers, a->issuer_id[0] ? a->issuer_id : "unrouted");
    if ((t->n_cards + 1) * 2 > t->mask + 1 && grow(t) != 0) {
        return -1;
    }
    size_t i = slot_of(t, a->card_fingerprint);
    if (t->cards[i][0] == '\0' && a->card_fingerprint[0] != '\0') {
        memcpy(t->cards[i], a->card_fingerprint, ALERT_FP_SIZE);
        t->n_cards++;
    }
    return rc ? -1 : 0;
}

uint64_t tally_alerts(const struct tally *t)
{
    return t->alerts;
}

uint64_t tally_cards(const struct tally *t)
{
    return t->n_cards;
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
    free(t->cards);
    free(t);
}
