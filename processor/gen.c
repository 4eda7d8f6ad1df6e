/* gen.c - see gen.h. */
#include "gen.h"


#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card.h"
#include "rng.h"

/* A misuse scenario running on one exposed card. */
struct scenario {
    const struct gen_card *card;
    int kind; /* 0 single use, 1 card testing, 2 cnp burst, 3 risky mcc */
    int left;
    int64_t next_ms;
};

/* The cards under one prefix, each made once (see gen_card). */
struct gpref {
    char digits[9];
    size_t plen, len;    /* prefix and card length */
    uint64_t n;          /* cards under the prefix: 10^(len - 1 - plen) */
    int half_bits;       /* the permutation's domain is 2^(2 half_bits) */
    uint64_t key;        /* of the permutation (from the prefix alone) */
    uint64_t start;      /* where this seed starts in the permutation */
    uint64_t up, down;   /* positions taken after start / before it */
    uint64_t own;        /* cards not under a longer configured prefix */
    uint64_t made;       /* of them made so far */
    size_t first_sub, n_sub; /* longer prefixes inside this one */
};

struct gen {
    struct gen_opts o;
    uint64_t s;
    struct gpref *prefixes;
    size_t n_prefixes;
    size_t *subs; /* indexes into prefixes, grouped per prefix */
    struct gen_card *pool;
    size_t n_pool;
    uint64_t seq;
    int64_t now_ms;
    struct scenario active[8];
    size_t n_active;
};

static uint64_t rnd(struct gen *g)
{
    return rng_next(&g->s);
}

static uint32_t below(struct gen *g, uint32_t n)
{
    return (uint32_t)((rnd(g) >> 32) % n);
}

static double unit(struct gen *g)
{
    return (double)(rnd(g) >> 11) / 9007199254740992.0;
}

/* A 4-round Feistel network on 2 * half_bits bits: a permutation of
 * [0, 2^(2 half_bits)). */
static uint64_t feistel(uint64_t x, int half_bits, uint64_t key)
{
    uint64_t mask = (1ull << half_bits) - 1;
    uint64_t l = x >> half_bits, r = x & mask;
    for (uint64_t round = 0; round < 4; round++) {
        uint64_t f = rng_mix64(r ^ key ^ (round * 0x9e3779b97f4a7c15ull)) & mask;
        uint64_t t = l ^ f;
        l = r;
        r = t;
    }
    return (l << half_bits) | r;
}

/* The position-th card number (without check digit) under p: the Feistel
 * permutation walked until it lands inside [0, n) (cycle walking keeps it
 * a permutation of [0, n); fewer than 4 steps on average). */
static uint64_t permute(const struct gpref *p, uint64_t position)
{
    uint64_t x = position;
    do {
        x = feistel(x, p->half_bits, p->key);
    } while (x >= p->n);
    return x;
}

static uint64_t pow10u(size_t k)
{
    uint64_t v = 1;
    while (k-- > 0) {
        v *= 10;
    }
    return v;
}

/* Whether a is a proper prefix of b. */
static int inside(const struct gpref *a, const struct gpref *b)
{
    return b->plen > a->plen && memcmp(a->digits, b->digits, a->plen) == 0;
}

static int cmp_prefix(const void *a, const void *b)
{
    return strcmp(((const struct gpref *)a)->digits,
                  ((const struct gpref *)b)->digits);
}

/* Sets up the prefixes (sorted, each once): lengths, permutation keys,
 * where the seed starts, and for each prefix the outermost longer ones
 * inside it (their cards are made under them, never twice). Returns 0,
 * or -1 (a prefix not 6-8 digits, no memory). */
static int setup_prefixes(struct gen *g, const struct gen_opts *o)
{
    size_t n = o->n_prefixes;
    g->prefixes = calloc(n, sizeof(*g->prefixes));
    g->subs = calloc(n, sizeof(*g->subs));
    if (g->prefixes == NULL || g->subs == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *d = o->prefixes[i];
        size_t l = strlen(d);
        if (l < 6 || l > 8 || strspn(d, "0123456789") != l) {
            return -1;
        }
        memcpy(g->prefixes[i].digits, d, l + 1);
    }
    /* Sorted, a prefix's longer prefixes follow it. */
    qsort(g->prefixes, n, sizeof(*g->prefixes), cmp_prefix);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k == 0 || strcmp(g->prefixes[k - 1].digits,
                             g->prefixes[i].digits) != 0) {
            g->prefixes[k++] = g->prefixes[i];
        }
    }
    g->n_prefixes = n = k;
    for (size_t i = 0; i < n; i++) {
        struct gpref *p = &g->prefixes[i];
        const char *d = p->digits;
        p->plen = strlen(d);
        p->len = (d[0] == '3' && (d[1] == '4' || d[1] == '7')) ? 15 : 16;
        p->n = pow10u(p->len - 1 - p->plen);
        p->half_bits = 1;
        while ((1ull << (2 * p->half_bits)) < p->n) {
            p->half_bits++;
        }
        /* The permutation depends on the prefix only; the seed picks the
         * starting point. So runs with different seeds (the cards of one,
         * the clean pool of another) share a card only if their stretches
         * of the permutation overlap. */
        uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
        for (size_t c = 0; c < p->plen; c++) {
            h = (h ^ (uint8_t)d[c]) * 0x100000001b3ull;
        }
        p->key = rng_mix64(h);
        p->start = rng_mix64(p->key ^ rng_mix64(o->seed + 0x632be59bd9b4e019ull)) %
                   p->n;
    }
    /* Each prefix's outermost inner prefixes: a sorted run after it. */
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        struct gpref *p = &g->prefixes[i];
        p->first_sub = ns;
        p->own = p->n;
        const struct gpref *outer = NULL;
        for (size_t q = i + 1; q < n && inside(p, &g->prefixes[q]); q++) {
            if (outer == NULL || !inside(outer, &g->prefixes[q])) {
                outer = &g->prefixes[q];
                p->own -= outer->n;
                /* q's nearest enclosing prefix is p: at most n in all */
                assert(ns < n);
                g->subs[ns++] = q;
            }
        }
        p->n_sub = ns - p->first_sub;
    }
    return 0;
}

/* Whether card (len digits) lies under a longer prefix inside p. */
static int under_sub(const struct gen *g, const struct gpref *p,
                     const char *card)
{
    for (size_t i = 0; i < p->n_sub; i++) {
        const struct gpref *q = &g->prefixes[g->subs[p->first_sub + i]];
        if (memcmp(card, q->digits, q->plen) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Makes p's next card into out->pan: from the positions after the seed's
 * start (up) or before it (down, the clean pool). Returns 0, or -1 when
 * p has no card left. */
static int next_under(struct gen *g, struct gpref *p, int down, char *pan)
{
    while (p->up + p->down < p->n) {
        uint64_t pos = down ? (p->start + p->n - 1 - p->down++) % p->n
                            : (p->start + p->up++) % p->n;
        uint64_t v = permute(p, pos);
        memcpy(pan, p->digits, p->plen);
        for (size_t i = p->len - 1; i > p->plen; i--) {
            pan[i - 1] = (char)('0' + v % 10);
            v /= 10;
        }
        if (under_sub(g, p, pan)) {
            continue;
        }
        pan[p->len - 1] = card_luhn_digit(pan, p->len - 1);
        pan[p->len] = '\0';
        p->made++;
        return 0;
    }
    return -1;
}

/* A card under a random prefix that has cards left (the next one when
 * the drawn one ran out). Returns 0, or -1 when none has. */
static int make_card(struct gen *g, int down, struct gen_card *out)
{
    memset(out, 0, sizeof(*out));
    size_t first = below(g, (uint32_t)g->n_prefixes);
    for (size_t k = 0; k < g->n_prefixes; k++) {
        struct gpref *p = &g->prefixes[(first + k) % g->n_prefixes];
        if (p->made < p->own && next_under(g, p, down, out->pan) == 0) {
            uint32_t yy = 25 + below(g, 7), mm = 1 + below(g, 12);
            out->expiry[0] = (char)('0' + yy / 10);
            out->expiry[1] = (char)('0' + yy % 10);
            out->expiry[2] = (char)('0' + mm / 10);
            out->expiry[3] = (char)('0' + mm % 10);
            out->expiry[4] = '\0';
            return 0;
        }
    }
    return -1;
}

struct gen *gen_new(const struct gen_opts *o)
{
    if (o->n_prefixes == 0) {
        return NULL;
    }
    struct gen *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        return NULL;
    }
    g->o = *o;
    g->n_pool = o->clean_pool ? o->clean_pool : 50000;
    g->pool = calloc(g->n_pool, sizeof(*g->pool));
    if (g->pool == NULL || setup_prefixes(g, o) != 0) {
        gen_destroy(g);
        return NULL;
    }
    /* The clean pool comes from the other end of each prefix's cards, so
     * it never repeats the cards that `gen cards` makes with the same
     * seed, nor (most likely) with another one. */
    g->s = (o->seed ? o->seed : 1) * 0xd1342543de82ef95ull +
           0x632be59bd9b4e019ull;
    for (size_t i = 0; i < g->n_pool; i++) {
        if (make_card(g, 1, &g->pool[i]) != 0) {
            gen_destroy(g); /* fewer cards than the pool needs */
            return NULL;
        }
        g->pool[i].index = (uint32_t)i;
    }
    g->s = o->seed ? o->seed : 0x9e3779b97f4a7c15ull;
    g->now_ms = o->start_ms;
    return g;
}

void gen_destroy(struct gen *g)
{
    if (g == NULL) {
        return;
    }
    if (g->pool != NULL) {
        memset(g->pool, 0, g->n_pool * sizeof(*g->pool));
    }
    free(g->pool);
    free(g->prefixes);
    free(g->subs);
    free(g);
}

int gen_card(struct gen *g, struct gen_card *out)
{
    return make_card(g, 0, out);
}

uint64_t gen_cards_left(const struct gen *g)
{
    uint64_t left = 0;
    for (size_t i = 0; i < g->n_prefixes; i++) {
        left += g->prefixes[i].own - g->prefixes[i].made;
    }
    return left;
}

static const char *const countries[] = {"DE", "DE", "DE", "DE", "FR", "NL",
                                        "AT", "US", "GB", "ES", "IT", "PL"};
static const char *const currencies[] = {"EUR", "EUR", "EUR", "EUR", "EUR",
                                         "EUR", "EUR", "USD", "GBP", "EUR",
                                         "EUR", "PLN"};
static const uint32_t common_mcc[] = {5411, 5812, 5541, 5311, 5999, 4111,
                                      5912, 5732, 5651, 7011, 4511, 5814};
static const uint32_t risky_mcc[] = {4829, 5967, 6051, 7995};

static void base_txn(struct gen *g, const struct gen_card *c, struct txn *t)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->txn_id, sizeof(t->txn_id), "g%016llx-%010llu",
             (unsigned long long)g->o.seed, (unsigned long long)g->seq++);
    size_t len = strlen(c->pan);
    memcpy(t->pan, c->pan, len);
    t->pan_len = (uint8_t)len;
    memcpy(t->expiry, c->expiry, 5);
    uint32_t ci = below(g, sizeof(countries) / sizeof(countries[0]));
    snprintf(t->merchant_country, sizeof(t->merchant_country), "%s",
             countries[ci]);
    snprintf(t->currency, sizeof(t->currency), "%s", currencies[ci]);
    t->mcc = common_mcc[below(g, sizeof(common_mcc) / sizeof(common_mcc[0]))];
    snprintf(t->merchant_id, sizeof(t->merchant_id), "M%06u",
             below(g, 200000));
    /* Amounts: mostly small, a long tail. */
    double u = unit(g);
    t->amount_minor = (int64_t)(300 + u * u * u * 60000);
    uint32_t ch = below(g, 100);
    if (ch < 55) {
        t->channel = TXN_CHANNEL_CARD_PRESENT;
        t->entry_mode = below(g, 3) ? TXN_ENTRY_CONTACTLESS : TXN_ENTRY_CHIP;
    } else if (ch < 85) {
        t->channel = TXN_CHANNEL_ECOMMERCE;
        t->entry_mode = TXN_ENTRY_KEYED;
        t->cvv2_presented = 1;
    } else if (ch < 90) {
        t->channel = TXN_CHANNEL_MOTO;
        t->entry_mode = TXN_ENTRY_KEYED;
    } else if (ch < 97) {
        t->channel = TXN_CHANNEL_RECURRING;
        t->entry_mode = TXN_ENTRY_ON_FILE;
    } else {
        t->channel = TXN_CHANNEL_ATM;
        t->entry_mode = TXN_ENTRY_CHIP;
        t->mcc = 6011;
    }
    t->response = below(g, 100) < 4 ? TXN_RESPONSE_DECLINED
                                     : TXN_RESPONSE_APPROVED;
    t->event_time_ms = g->now_ms;
}

static void misuse(struct gen *g, struct scenario *sc, struct txn *t)
{
    base_txn(g, sc->card, t);
    switch (sc->kind) {
    case 1: /* card testing: tiny e-commerce amounts, some declined */
        t->channel = TXN_CHANNEL_ECOMMERCE;
        t->entry_mode = TXN_ENTRY_KEYED;
        t->cvv2_presented = 1;
        t->amount_minor = 50 + below(g, 150);
        t->mcc = 5999;
        if (below(g, 3) == 0) {
            t->response = TXN_RESPONSE_DECLINED;
        }
        break;
    case 2: /* card-not-present burst abroad */
        t->channel = below(g, 4) ? TXN_CHANNEL_ECOMMERCE : TXN_CHANNEL_MOTO;
        t->entry_mode = TXN_ENTRY_KEYED;
        t->cvv2_presented = 1;
        snprintf(t->merchant_country, sizeof(t->merchant_country), "%s",
                 below(g, 2) ? "US" : "BR");
        snprintf(t->currency, sizeof(t->currency), "USD");
        t->amount_minor = 20000 + below(g, 80000);
        break;
    case 3: /* high-risk merchant category */
        t->channel = TXN_CHANNEL_ECOMMERCE;
        t->entry_mode = TXN_ENTRY_KEYED;
        t->cvv2_presented = 1;
        t->mcc = risky_mcc[below(g, 4)];
        t->amount_minor = 10000 + below(g, 90000);
        break;
    default:
        break;
    }
}

static void start_scenario(struct gen *g)
{
    struct scenario *sc = &g->active[g->n_active++];
    sc->card = &g->o.exposed[below(g, (uint32_t)g->o.n_exposed)];
    uint32_t k = below(g, 100);
    sc->kind = k < 40 ? 0 : k < 65 ? 1 : k < 85 ? 2 : 3;
    sc->left = sc->kind == 0 ? 1 : sc->kind == 1 ? 3 + (int)below(g, 4)
               : sc->kind == 2 ? 5 + (int)below(g, 4) : 1;
    sc->next_ms = g->now_ms;
}

static void break_txn(struct gen *g, struct txn *t)
{
    switch (below(g, 5)) {
    case 0: /* wrong check digit */
        t->pan[t->pan_len - 1] =
            (char)('0' + (t->pan[t->pan_len - 1] - '0' + 1) % 10);
        break;
    case 1:
        t->expiry[2] = '1';
        t->expiry[3] = '3';
        break;
    case 2:
        t->currency[0] = '\0';
        break;
    case 3:
        t->channel = TXN_CHANNEL_UNSPECIFIED;
        break;
    default:
        t->txn_id[0] = '\0';
        break;
    }
}

void gen_next(struct gen *g, struct txn *out, char card_key[16],
              int *invalid)
{
    g->now_ms += g->o.step_ms > 0
                     ? (int64_t)(unit(g) * 2.0 * (double)g->o.step_ms)
                     : 0;
    *invalid = 0;
    /* A due step of a running scenario goes first. */
    for (size_t i = 0; i < g->n_active; i++) {
        struct scenario *sc = &g->active[i];
        if (sc->next_ms <= g->now_ms) {
            misuse(g, sc, out);
            snprintf(card_key, 16, "x%u", sc->card->index);
            /* Card testing steps are minutes apart, bursts tens of
             * minutes: inside the default rules' windows. */
            sc->next_ms = g->now_ms + (sc->kind == 1 ? 60000 + below(g, 120000)
                                                     : 300000 + below(g, 600000));
            if (--sc->left == 0) {
                *sc = g->active[--g->n_active];
            }
            return;
        }
    }
    /* A scenario makes ~3 events on average (see start_scenario). */
    if (g->o.n_exposed > 0 && unit(g) < g->o.exposed_share / 2.975 &&
        g->n_active < sizeof(g->active) / sizeof(g->active[0])) {
        start_scenario(g);
        struct scenario *sc = &g->active[g->n_active - 1];
        misuse(g, sc, out);
        snprintf(card_key, 16, "x%u", sc->card->index);
        sc->next_ms = g->now_ms + (sc->kind == 1 ? 60000 : 300000);
        if (--sc->left == 0) {
            g->n_active--;
        }
        return;
    }
    const struct gen_card *c = &g->pool[below(g, (uint32_t)g->n_pool)];
    base_txn(g, c, out);
    snprintf(card_key, 16, "c%u", c->index);
    if (g->o.invalid_share > 0 && unit(g) < g->o.invalid_share) {
        break_txn(g, out);
        *invalid = 1;
    }
}
