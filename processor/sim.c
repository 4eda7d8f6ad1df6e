/* sim.c - see sim.h. */
#include "sim.h"


#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "text.h"

#define DAY_MS INT64_C(86400000)
#define MIN_MS INT64_C(60000)
#define N_FRAUD_MERCHANTS 40
#define N_CASH_OUT 3
#define ZIPF_Q 10.0 /* the tail's rank offset (setup_merchants) */

/* How a merchant takes cards: the shares of its channels. */
enum mkind { MK_STORE, MK_FUEL, MK_WEB, MK_MIXED, MK_ATM };

struct merchant {
    char id[SIM_MERCHANT_ID_SIZE];
    uint16_t mcc;
    uint8_t kind;    /* enum mkind */
    uint8_t country; /* index into countries[] (or abroad[] for fraud) */
};

/* A card's fraud still to come: its next transaction's time. */
struct pending {
    int64_t t;
    sim_card_no card;
    uint8_t left;   /* transactions still to make */
    uint8_t first;  /* the next one is the card's first */
    uint8_t linked;
};

/* Per-card flags. */
#define F_SKIMMED 1u
#define F_FRAUD 2u /* a fraud is pending or made (at most one per card) */

struct sim {
    struct sim_opts o;
    uint64_t s; /* PRNG state */
    struct gen_card *cards;
    uint8_t *flags;
    int64_t *skim_ms;
    uint32_t n_heavy; /* the first n_heavy cards are the busier ones */
    struct merchant *merchants; /* by number: "M%06u" of the index */
    uint32_t *by_rank;          /* merchant number of each rank */
    uint32_t *tail_cdf;         /* Zipf over ranks SIM_POPULAR.. (2^32) */
    uint32_t n_tail;
    struct merchant fraud_m[N_FRAUD_MERCHANTS];
    uint32_t breach_m; /* merchant number; UINT32_MAX without a breach */
    int64_t win_start, win_end; /* [start, end) */
    int64_t period_ms;
    double slot_ms;
    uint64_t slot;
    struct pending *heap;
    size_t n_heap;
    sim_card_no *skimmed;
    size_t n_skimmed;
    struct sim_fraud *frauds;
    size_t n_frauds, n_linked;
    int64_t first_linked_ms;
    char id_prefix[24]; /* txn ids: "s<seed hex>-" then 12 digits */
    size_t id_prefix_len;
};

/* ---- randomness: rng.h's xorshift64*, as gen.c ---- */

static uint64_t rnd(struct sim *s)
{
    return rng_next(&s->s);
}

/* Uniform in [0, n): the high 32 bits scaled (no division). */
static uint32_t below(struct sim *s, uint32_t n)
{
    return (uint32_t)(((rnd(s) >> 32) * (uint64_t)n) >> 32);
}

static double unit(struct sim *s)
{
    return (double)(rnd(s) >> 11) / 9007199254740992.0;
}

/* ---- what transactions look like (as gen.c's base_txn) ---- */

static const char *const countries[] = {"DE", "DE", "DE", "DE", "FR", "NL",
                                        "AT", "US", "GB", "ES", "IT", "PL"};
static const char *const currencies[] = {"EUR", "EUR", "EUR", "EUR", "EUR",
                                         "EUR", "EUR", "USD", "GBP", "EUR",
                                         "EUR", "PLN"};
#define N_COUNTRIES (sizeof(countries) / sizeof(countries[0]))
/* Fraud is abroad: none of these is a home of the population's traffic. */
static const char *const abroad[] = {"BR", "MX", "TH", "ZA", "ID", "NG"};
#define N_ABROAD (sizeof(abroad) / sizeof(abroad[0]))
static const uint16_t store_mcc[] = {5411, 5812, 5311, 5912, 5651,
                                     5732, 5814, 7011, 5999};
static const uint16_t web_mcc[] = {5732, 5651, 5999, 5311, 4511, 7011, 5942,
                                   5945};
static const uint16_t risky_mcc[] = {4829, 5967, 6051, 7995};

/* The popular merchants by rank: share of all transactions in percent
 * (25 in all), kind, MCC. */
static const struct {
    uint8_t pct;
    uint8_t kind;
    uint16_t mcc;
} popular[SIM_POPULAR] = {
    {7, MK_STORE, 5411}, /* supermarket */
    {6, MK_WEB, 5999},   /* marketplace */
    {5, MK_FUEL, 5541},  /* fuel */
    {4, MK_STORE, 5411}, /* the other supermarket */
    {3, MK_MIXED, 4111}, /* transit */
};

/* Writes "<c><digits>" with width zero-padded digits of v into out. */
static void put_id(char *out, char c, uint32_t v, int width)
{
    out[0] = c;
    for (int i = width; i > 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
    out[width + 1] = '\0';
}

/* Sets the merchants: ids, a random order of popularity (by_rank), kinds,
 * MCCs and countries, the Zipf table of the tail, the fraud merchants.
 * Returns 0, or -1 without memory. */
static int setup_merchants(struct sim *s)
{
    uint32_t n = s->o.merchants;
    s->merchants = calloc(n, sizeof(*s->merchants));
    s->by_rank = calloc(n, sizeof(*s->by_rank));
    s->n_tail = n - SIM_POPULAR;
    s->tail_cdf = calloc(s->n_tail, sizeof(*s->tail_cdf));
    if (s->merchants == NULL || s->by_rank == NULL || s->tail_cdf == NULL) {
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        s->by_rank[i] = i;
    }
    for (uint32_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        uint32_t j = below(s, i + 1), t = s->by_rank[i];
        s->by_rank[i] = s->by_rank[j];
        s->by_rank[j] = t;
    }
    for (uint32_t r = 0; r < n; r++) {
        struct merchant *m = &s->merchants[s->by_rank[r]];
        put_id(m->id, 'M', s->by_rank[r], 6);
        m->country = (uint8_t)(r < SIM_POPULAR ? 0 : below(s, N_COUNTRIES));
        if (r < SIM_POPULAR) {
            m->kind = popular[r].kind;
            m->mcc = popular[r].mcc;
            continue;
        }
        uint32_t k = below(s, 100);
        m->kind = k < 50 ? MK_STORE : k < 80 ? MK_WEB : k < 95 ? MK_MIXED
                                                               : MK_ATM;
        m->mcc = m->kind == MK_ATM ? 6011
                 : m->kind == MK_WEB
                     ? web_mcc[below(s, sizeof(web_mcc) / sizeof(web_mcc[0]))]
                     : store_mcc[below(s, sizeof(store_mcc) /
                                              sizeof(store_mcc[0]))];
    }
    /* Zipf-Mandelbrot, s = 1: weight 1/(k + ZIPF_Q) for tail rank k =
     * 1..n_tail. The offset keeps the tail's first merchant below the
     * popular ones (1.1% of the traffic with 5,000 merchants, 2.3% with
     * 200; plain 1/k would give it 8-13%). */
    double total = 0, acc = 0;
    for (uint32_t k = 1; k <= s->n_tail; k++) {
        total += 1.0 / (k + ZIPF_Q);
    }
    for (uint32_t k = 1; k <= s->n_tail; k++) {
        acc += 1.0 / (k + ZIPF_Q);
        double v = acc / total * 4294967296.0;
        s->tail_cdf[k - 1] = v >= 4294967295.0 ? UINT32_MAX : (uint32_t)v;
    }
    s->tail_cdf[s->n_tail - 1] = UINT32_MAX;
    for (uint32_t i = 0; i < N_FRAUD_MERCHANTS; i++) {
        struct merchant *m = &s->fraud_m[i];
        put_id(m->id, 'F', i, 5);
        m->kind = MK_WEB;
        m->mcc = risky_mcc[i % (sizeof(risky_mcc) / sizeof(risky_mcc[0]))];
        m->country = (uint8_t)(i % N_ABROAD);
    }
    return 0;
}

/* ---- the pending frauds: a binary min-heap by time ---- */

static void heap_down(struct sim *s, size_t i)
{
    struct pending *h = s->heap;
    struct pending x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->n_heap) {
            break;
        }
        if (c + 1 < s->n_heap && h[c + 1].t < h[c].t) {
            c++;
        }
        if (h[c].t >= x.t) {
            break;
        }
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

/* Schedules card's fraud, starting at t: at most one per card, so the
 * heap (cards long) never overflows. */
static void heap_push(struct sim *s, sim_card_no card, int64_t t, int linked)
{
    assert(s->n_heap < s->o.cards && !(s->flags[card] & F_FRAUD));
    s->flags[card] |= F_FRAUD;
    struct pending x = {.t = t,
                        .card = card,
                        .left = (uint8_t)(2 + below(s, 4)),
                        .first = 1,
                        .linked = (uint8_t)linked};
    size_t i = s->n_heap++;
    while (i > 0 && s->heap[(i - 1) / 2].t > x.t) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = x;
}

/* ---- making and ending ---- */

void sim_opts_init(struct sim_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->seed = 1;
    o->start_ms = INT64_C(1704067200000); /* 2024-01-01 */
    o->days = 365;
    o->cards = 20000;
    o->merchants = 5000;
    o->breach = 1;
    o->breach_start_ms = SIM_BREACH_START_DEFAULT;
    o->breach_days = 60;
    o->fraud_share = 0.5;
    o->background_frauds = 200;
}

/* Checks o's ranges and the breach window (resolving its default into
 * *bstart). Returns 0, or -1 after writing the reason. */
static int check_opts(const struct sim_opts *o, int64_t *bstart, char *err,
                      size_t errlen)
{
    if (o->count < 1 || o->days < 1 || o->days > SIM_MAX_DAYS ||
        o->cards < 1 || o->cards > SIM_MAX_CARDS ||
        o->merchants < 2 * SIM_POPULAR ||
        o->merchants > SIM_MAX_MERCHANTS || !(o->fraud_share >= 0) ||
        o->fraud_share > 1 || o->background_frauds > o->cards) {
        text_errf(err, errlen, "sim: an option out of its range");
        return -1;
    }
    *bstart = o->breach_start_ms == SIM_BREACH_START_DEFAULT
                  ? o->start_ms + (int64_t)(o->days / 4) * DAY_MS
                  : o->breach_start_ms;
    if (o->breach &&
        (o->breach_days < 1 || o->breach_days > o->days ||
         *bstart < o->start_ms ||
         *bstart + (int64_t)o->breach_days * DAY_MS >
             o->start_ms + (int64_t)o->days * DAY_MS)) {
        text_errf(err, errlen, "sim: the breach window is not inside the "
                               "period");
        return -1;
    }
    return 0;
}

/* Makes the population with gen (cards distinct, under the prefixes).
 * Returns 0, or -1 after writing the reason. */
static int make_cards(struct sim *s, const struct sim_opts *o, char *err,
                      size_t errlen)
{
    struct gen_opts go = {.seed = o->seed,
                          .prefixes = o->prefixes,
                          .n_prefixes = o->n_prefixes,
                          .clean_pool = 1};
    struct gen *g = gen_new(&go);
    if (g == NULL) {
        text_errf(err, errlen, "sim: bad BIN prefixes or out of memory");
        return -1;
    }
    int rc = -1;
    if (gen_cards_left(g) < s->o.cards) {
        text_errf(err, errlen, "sim: %u cards are more than the %llu "
                               "distinct cards under the BIN prefixes",
                  s->o.cards, (unsigned long long)gen_cards_left(g));
        goto out;
    }
    for (uint32_t i = 0; i < s->o.cards; i++) {
        if (gen_card(g, &s->cards[i]) != 0) {
            goto out; /* cannot happen: counted above */
        }
        s->cards[i].index = i;
    }
    rc = 0;
out:
    gen_destroy(g);
    return rc;
}

/* The breached merchant: a web shop of moderate popularity (tail rank
 * 60-240; with fewer than 485 merchants, from half the middle rank of
 * the tail to it). At rank r it takes about 0.75 / ((r + 10) * 6.17) of
 * the traffic with 5,000 merchants, 90% of it card-not-present: with
 * the defaults and 5 M transactions a year, 60 days of it skim ~300-900
 * cards. */
static void choose_breach(struct sim *s, int64_t bstart)
{
    uint32_t hi = s->n_tail / 2 < 240 ? s->n_tail / 2 : 240;
    uint32_t lo = hi < 120 ? hi / 2 : 60;
    uint32_t rank = lo + below(s, hi - lo + 1); /* 1-based in the tail */
    s->breach_m = s->by_rank[SIM_POPULAR + rank - 1];
    struct merchant *m = &s->merchants[s->breach_m];
    m->kind = MK_WEB;
    m->mcc = web_mcc[below(s, sizeof(web_mcc) / sizeof(web_mcc[0]))];
    m->country = 0; /* a domestic shop */
    s->win_start = bstart;
    s->win_end = bstart + (int64_t)s->o.breach_days * DAY_MS;
}

struct sim *sim_new(const struct sim_opts *o, char *err, size_t errlen)
{
    int64_t bstart = 0;
    if (check_opts(o, &bstart, err, errlen) != 0) {
        return NULL;
    }
    struct sim *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        text_errf(err, errlen, "sim: out of memory");
        return NULL;
    }
    s->o = *o;
    s->o.prefixes = NULL; /* borrowed for make_cards only */
    size_t n = o->cards;
    s->cards = calloc(n, sizeof(*s->cards));
    s->flags = calloc(n, sizeof(*s->flags));
    s->skim_ms = calloc(n, sizeof(*s->skim_ms));
    s->heap = calloc(n, sizeof(*s->heap));
    s->skimmed = calloc(n, sizeof(*s->skimmed));
    s->frauds = calloc(n, sizeof(*s->frauds));
    if (s->cards == NULL || s->flags == NULL || s->skim_ms == NULL ||
        s->heap == NULL || s->skimmed == NULL || s->frauds == NULL) {
        text_errf(err, errlen, "sim: out of memory");
        goto err;
    }
    if (make_cards(s, o, err, errlen) != 0) {
        goto err;
    }
    s->s = (o->seed ? o->seed : 0x9e3779b97f4a7c15ull) * 0xd1342543de82ef95ull +
           0x2545f4914f6cdd1dull;
    if (setup_merchants(s) != 0) {
        text_errf(err, errlen, "sim: out of memory");
        goto err;
    }
    s->breach_m = UINT32_MAX;
    if (o->breach) {
        choose_breach(s, bstart);
    }
    s->n_heavy = o->cards / 5 ? o->cards / 5 : 1;
    s->period_ms = (int64_t)o->days * DAY_MS;
    s->slot_ms = (double)s->period_ms / (double)o->count;
    s->first_linked_ms = -1;
    for (uint32_t i = 0; i < o->background_frauds; i++) {
        sim_card_no c;
        do { /* distinct cards; at worst cards * ln(cards) draws */
            c = below(s, o->cards);
        } while (s->flags[c] & F_FRAUD);
        heap_push(s, c, o->start_ms + (int64_t)(unit(s) * s->period_ms), 0);
    }
    s->id_prefix_len = (size_t)snprintf(s->id_prefix, sizeof(s->id_prefix),
                                        "s%016llx-",
                                        (unsigned long long)o->seed);
    return s;
err:
    sim_destroy(s);
    return NULL;
}

void sim_destroy(struct sim *s)
{
    if (s == NULL) {
        return;
    }
    if (s->cards != NULL) {
        memset(s->cards, 0, (size_t)s->o.cards * sizeof(*s->cards));
    }
    free(s->cards);
    free(s->flags);
    free(s->skim_ms);
    free(s->heap);
    free(s->skimmed);
    free(s->frauds);
    free(s->merchants);
    free(s->by_rank);
    free(s->tail_cdf);
    free(s);
}

/* ---- the transactions ---- */

/* A card: 30% of the picks go to the busier fifth of the cards (a mild
 * skew: such a card is ~3 times as busy as another), the rest uniform. */
static sim_card_no pick_card(struct sim *s)
{
    return below(s, 100) < 30 ? below(s, s->n_heavy)
                              : below(s, s->o.cards);
}

/* A merchant's number: a popular one by its share, else a tail rank by
 * the Zipf table. */
static uint32_t pick_merchant(struct sim *s)
{
    uint32_t p = below(s, 100);
    for (uint32_t r = 0, acc = 0; r < SIM_POPULAR; r++) {
        acc += popular[r].pct;
        if (p < acc) {
            return s->by_rank[r];
        }
    }
    uint32_t u = (uint32_t)(rnd(s) >> 32);
    uint32_t lo = 0, hi = s->n_tail - 1; /* first cdf >= u */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->tail_cdf[mid] < u) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return s->by_rank[SIM_POPULAR + lo];
}

/* Fills what every transaction has: id, card, merchant, time. */
static void fill_base(struct sim *s, const struct gen_card *c,
                      const struct merchant *m, const char *country,
                      const char *currency, int64_t t, struct txn *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->txn_id, s->id_prefix, s->id_prefix_len);
    uint64_t seq = s->slot;
    for (size_t i = s->id_prefix_len + 12; i > s->id_prefix_len; i--) {
        out->txn_id[i - 1] = (char)('0' + seq % 10);
        seq /= 10;
    }
    size_t len = strlen(c->pan);
    memcpy(out->pan, c->pan, len);
    out->pan_len = (uint8_t)len;
    memcpy(out->expiry, c->expiry, sizeof(out->expiry));
    memcpy(out->merchant_id, m->id, SIM_MERCHANT_ID_SIZE);
    memcpy(out->merchant_country, country, 3);
    memcpy(out->currency, currency, 4);
    out->mcc = m->mcc;
    out->event_time_ms = t;
    out->response = below(s, 100) < 4 ? TXN_RESPONSE_DECLINED
                                       : TXN_RESPONSE_APPROVED;
}

/* The channel of a transaction at a merchant of kind k. */
static void set_channel(struct sim *s, int k, struct txn *t)
{
    uint32_t p = below(s, 100);
    /* shares in percent: card present, e-commerce, mail/phone order;
     * the rest is recurring */
    uint32_t cp = 95, ec = 5, mo = 0;
    switch (k) {
    case MK_FUEL:
        cp = 100;
        break;
    case MK_WEB:
        cp = 0, ec = 85, mo = 5;
        break;
    case MK_MIXED:
        cp = 55, ec = 30, mo = 5;
        break;
    case MK_ATM:
        t->channel = TXN_CHANNEL_ATM;
        t->entry_mode = TXN_ENTRY_CHIP;
        return;
    default:
        break;
    }
    if (p < cp) {
        t->channel = TXN_CHANNEL_CARD_PRESENT;
        t->entry_mode = below(s, 3) ? TXN_ENTRY_CONTACTLESS : TXN_ENTRY_CHIP;
    } else if (p < cp + ec) {
        t->channel = TXN_CHANNEL_ECOMMERCE;
        t->entry_mode = TXN_ENTRY_KEYED;
        t->cvv2_presented = 1;
    } else if (p < cp + ec + mo) {
        t->channel = TXN_CHANNEL_MOTO;
        t->entry_mode = TXN_ENTRY_KEYED;
    } else {
        t->channel = TXN_CHANNEL_RECURRING;
        t->entry_mode = TXN_ENTRY_ON_FILE;
    }
}

/* Card c typed in at the tampered page at t: skimmed, and defrauded
 * 14-60 days later with probability fraud_share (unless it already has a
 * fraud of its own). */
static void skim(struct sim *s, sim_card_no c, int64_t t)
{
    s->flags[c] |= F_SKIMMED;
    s->skim_ms[c] = t;
    s->skimmed[s->n_skimmed++] = c;
    if (!(s->flags[c] & F_FRAUD) && unit(s) < s->o.fraud_share) {
        heap_push(s, c, t + 14 * DAY_MS + (int64_t)(unit(s) * 46 * DAY_MS),
                  1);
    }
}

static enum sim_kind cardholder_txn(struct sim *s, int64_t t,
                                    struct txn *out, sim_card_no *card)
{
    sim_card_no c = pick_card(s);
    uint32_t mn = pick_merchant(s);
    const struct merchant *m = &s->merchants[mn];
    fill_base(s, &s->cards[c], m, countries[m->country],
              currencies[m->country], t, out);
    set_channel(s, m->kind, out);
    double u = unit(s); /* amounts: mostly small, a long tail */
    out->amount_minor = (int64_t)(300 + u * u * u * 60000);
    if (mn == s->breach_m && t >= s->win_start && t < s->win_end &&
        (out->channel == TXN_CHANNEL_ECOMMERCE ||
         out->channel == TXN_CHANNEL_MOTO) &&
        !(s->flags[c] & F_SKIMMED)) {
        skim(s, c, t);
    }
    *card = c;
    return SIM_CARDHOLDER;
}

/* The heap's first pending fraud transaction. */
static enum sim_kind fraud_txn(struct sim *s, struct txn *out,
                               sim_card_no *card)
{
    struct pending *p = &s->heap[0];
    /* half of all fraud goes through the few cash-out merchants */
    uint32_t fi = below(s, 2) ? below(s, N_CASH_OUT)
                              : N_CASH_OUT +
                                    below(s, N_FRAUD_MERCHANTS - N_CASH_OUT);
    const struct merchant *m = &s->fraud_m[fi];
    fill_base(s, &s->cards[p->card], m, abroad[m->country], "USD", p->t,
              out);
    if (below(s, 4)) {
        out->channel = TXN_CHANNEL_ECOMMERCE;
        out->cvv2_presented = 1;
    } else {
        out->channel = TXN_CHANNEL_MOTO;
    }
    out->entry_mode = TXN_ENTRY_KEYED;
    out->amount_minor = 20000 + below(s, 80000);
    enum sim_kind kind = p->linked ? SIM_FRAUD_LINKED : SIM_FRAUD_BACKGROUND;
    if (p->first) {
        p->first = 0;
        s->frauds[s->n_frauds++] = (struct sim_fraud){
            .card = p->card, .linked = p->linked, .first_fraud_ms = p->t};
        if (p->linked && s->n_linked++ == 0) {
            s->first_linked_ms = p->t;
        }
    }
    *card = p->card;
    if (--p->left == 0) {
        s->heap[0] = s->heap[--s->n_heap];
    } else {
        p->t += 5 * MIN_MS + (int64_t)below(s, 115) * MIN_MS;
    }
    if (s->n_heap > 0) {
        heap_down(s, 0);
    }
    return kind;
}

enum sim_kind sim_next(struct sim *s, struct txn *out, sim_card_no *card)
{
    if (s->slot >= s->o.count) {
        return SIM_DONE;
    }
    sim_card_no dummy;
    if (card == NULL) {
        card = &dummy;
    }
    /* Slot i's time is uniform in [i, i + 1) slot widths: never before
     * the slot before it. A fraud due by then goes first, at its own time
     * (after the previous slot's: it was not due then, or it waited in
     * the heap behind earlier ones). */
    int64_t t = s->o.start_ms +
                (int64_t)(((double)s->slot + unit(s)) * s->slot_ms);
    if (t >= s->o.start_ms + s->period_ms) { /* rounding in the last slot */
        t = s->o.start_ms + s->period_ms - 1;
    }
    enum sim_kind k = s->n_heap > 0 && s->heap[0].t <= t
                          ? fraud_txn(s, out, card)
                          : cardholder_txn(s, t, out, card);
    s->slot++;
    return k;
}

/* ---- the truth ---- */

void sim_truth(const struct sim *s, struct sim_truth *t)
{
    memset(t, 0, sizeof(*t));
    t->breach = s->o.breach;
    if (s->o.breach) {
        memcpy(t->merchant, s->merchants[s->breach_m].id,
               SIM_MERCHANT_ID_SIZE);
        t->window_start_ms = s->win_start;
        t->window_end_ms = s->win_end - 1;
    }
    t->skimmed = s->n_skimmed;
    t->defrauded = s->n_linked;
    t->background = s->n_frauds - s->n_linked;
    t->first_linked_fraud_ms = s->first_linked_ms;
    for (size_t r = 0; r < SIM_POPULAR; r++) {
        memcpy(t->popular[r], s->merchants[s->by_rank[r]].id,
               SIM_MERCHANT_ID_SIZE);
    }
    t->transactions = s->slot;
}

uint32_t sim_cards(const struct sim *s)
{
    return s->o.cards;
}

const struct gen_card *sim_card(const struct sim *s, sim_card_no no)
{
    return &s->cards[no];
}

size_t sim_skimmed(const struct sim *s, const sim_card_no **out)
{
    *out = s->skimmed;
    return s->n_skimmed;
}

int64_t sim_skim_ms(const struct sim *s, sim_card_no no)
{
    return (s->flags[no] & F_SKIMMED) ? s->skim_ms[no] : -1;
}

size_t sim_frauds(const struct sim *s, const struct sim_fraud **out)
{
    *out = s->frauds;
    return s->n_frauds;
}
