/* gen.c - see gen.h. */
#include "gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card.h"

/* A misuse scenario running on one exposed card. */
struct scenario {
    const struct gen_card *card;
    int kind; /* 0 single use, 1 card testing, 2 cnp burst, 3 risky mcc */
    int left;
    int64_t next_ms;
};

struct gen {
    struct gen_opts o;
    uint64_t s;
    char (*prefixes)[9];
    size_t n_prefixes;
    struct gen_card *pool;
    size_t n_pool;
    uint64_t seq;
    int64_t now_ms;
    struct scenario active[8];
    size_t n_active;
};

static uint64_t rnd(struct gen *g)
{
    /* xorshift64* */
    g->s ^= g->s >> 12;
    g->s ^= g->s << 25;
    g->s ^= g->s >> 27;
    return g->s * 2685821657736338717ull;
}

static uint32_t below(struct gen *g, uint32_t n)
{
    return (uint32_t)((rnd(g) >> 32) % n);
}

static double unit(struct gen *g)
{
    return (double)(rnd(g) >> 11) / 9007199254740992.0;
}

struct gen *gen_new(const struct gen_opts *o)
{
    if (o->n_prefixes == 0) {
        return NULL;
    }
    for (size_t i = 0; i < o->n_prefixes; i++) {
        size_t l = strlen(o->prefixes[i]);
        if (l < 6 || l > 8 || strspn(o->prefixes[i], "0123456789") != l) {
            return NULL;
        }
    }
    struct gen *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        return NULL;
    }
    g->o = *o;
    g->s = o->seed ? o->seed : 0x9e3779b97f4a7c15ull;
    g->n_prefixes = o->n_prefixes;
    g->prefixes = calloc(o->n_prefixes, sizeof(*g->prefixes));
    g->n_pool = o->clean_pool ? o->clean_pool : 50000;
    g->pool = calloc(g->n_pool, sizeof(*g->pool));
    if (g->prefixes == NULL || g->pool == NULL) {
        gen_destroy(g);
        return NULL;
    }
    for (size_t i = 0; i < o->n_prefixes; i++) {
        snprintf(g->prefixes[i], sizeof(g->prefixes[i]), "%s",
                 o->prefixes[i]);
    }
    /* The clean pool comes from its own stream, so it never repeats the
     * cards that `gen cards` made with the same seed. */
    g->s = (o->seed ? o->seed : 1) * 0xd1342543de82ef95ull + 0x632be59bd9b4e019ull;
    for (size_t i = 0; i < g->n_pool; i++) {
        gen_card(g, &g->pool[i]);
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
    free(g);
}

void gen_card(struct gen *g, struct gen_card *out)
{
    const char *p = g->prefixes[below(g, (uint32_t)g->n_prefixes)];
    size_t plen = strlen(p);
    size_t len = (p[0] == '3' && (p[1] == '4' || p[1] == '7')) ? 15 : 16;
    memset(out, 0, sizeof(*out));
    memcpy(out->pan, p, plen);
    for (size_t i = plen; i < len - 1; i++) {
        out->pan[i] = (char)('0' + below(g, 10));
    }
    out->pan[len - 1] = card_luhn_digit(out->pan, len - 1);
    out->pan[len] = '\0';
    snprintf(out->expiry, sizeof(out->expiry), "%02u%02u",
             25 + below(g, 7), 1 + below(g, 12));
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
