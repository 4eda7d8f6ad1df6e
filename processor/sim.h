/* sim.h - a simulated transaction history with an injected breach, for
 * proving common-point-of-purchase analysis (`cardwatch gen history`;
 * pure: no I/O, deterministic for a seed).
 *
 * A population of cards (gen.h's distinct Luhn-valid cards under the
 * configured BIN prefixes) transacts over a period at a set of merchants
 * "M%06u": 5 very popular ones (two supermarkets, fuel, a marketplace,
 * transit) take ~25% of the transactions, the rest are Zipf-like by
 * rank (s = 1, the weight of tail rank k is 1/(k + 10): the tail's first
 * stays below the popular ones). Unless the breach is off, one web shop
 * of moderate popularity (tail rank 60-240, chosen from the seed) has a
 * tampered payment page: every card used there card-not-present
 * (e-commerce or mail/phone order; not recurring, nothing is typed in)
 * during the breach window is skimmed. fraud_share of the skimmed cards
 * are defrauded 14-60 days (uniform) after their skim, and
 * background_frauds random cards are defrauded at a uniform time in the
 * period without any link (a card has one fraud at most: a background
 * card that is also skimmed keeps its background fraud). A fraud is
 * 2-5 card-not-present transactions abroad at high-risk MCCs on fraud
 * merchants "F%05u" (40 of them; F00000-F00002 are cash-out merchants
 * that take half of all fraud transactions), minutes to two hours apart.
 *
 * Transactions come out in event-time order (non-decreasing
 * event_time_ms): count slots spread evenly over the period, each either
 * a cardholder's transaction or a due fraud transaction (a min-heap of
 * pending frauds). A fraud is listed (sim_frauds) once its first
 * transaction is in the data: a fraud due after the period's end is not
 * confirmed yet. Memory is bounded by cards and merchants, never by
 * count; sim_next allocates nothing.
 */
#ifndef CARDWATCH_SIM_H
#define CARDWATCH_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "gen.h"
#include "txn.h"

#define SIM_POPULAR 5           /* very popular merchants */
#define SIM_MERCHANT_ID_SIZE 8  /* "M000123" and NUL */
#define SIM_MAX_MERCHANTS 1000000
#define SIM_MAX_CARDS 50000000
#define SIM_MAX_DAYS 36500
/* breach_start_ms meaning "start + days / 4 whole days" */
#define SIM_BREACH_START_DEFAULT INT64_MIN

struct sim_opts {
    uint64_t seed;
    const char *const *prefixes; /* BIN prefixes (6-8 digits), borrowed by
                                    sim_new only */
    size_t n_prefixes;
    uint64_t count;           /* transactions, >= 1 */
    int64_t start_ms;         /* start of the period */
    uint32_t days;            /* length of the period, 1..SIM_MAX_DAYS */
    uint32_t cards;           /* population, 1..SIM_MAX_CARDS */
    uint32_t merchants;       /* 10..SIM_MAX_MERCHANTS */
    int breach;               /* 0: no breach, no linked fraud */
    int64_t breach_start_ms;  /* or SIM_BREACH_START_DEFAULT */
    uint32_t breach_days;     /* >= 1; the window must lie in the period */
    double fraud_share;       /* of the skimmed cards defrauded, 0..1 */
    uint32_t background_frauds; /* unlinked frauds, <= cards */
};

/* Fills o with the defaults: seed 1, start 2024-01-01, 365 days, 20,000
 * cards, 5,000 merchants, a breach of 60 days starting at the default,
 * fraud_share 0.5, background frauds 1% of the cards (200). count and the
 * prefixes are left 0 / NULL: the caller sets them. */
void sim_opts_init(struct sim_opts *o);

/* The 0-based index of a card in the population (sim_card). */
typedef uint32_t sim_card_no;

/* What sim_next made. */
enum sim_kind {
    SIM_DONE = 0,          /* count transactions were made; out untouched */
    SIM_CARDHOLDER,        /* the cardholder's own transaction */
    SIM_FRAUD_LINKED,      /* fraud on a card skimmed at the breach */
    SIM_FRAUD_BACKGROUND,  /* fraud on a card not linked to a merchant */
};

/* One defrauded card, listed once its first fraud transaction is made. */
struct sim_fraud {
    sim_card_no card;
    int linked;             /* 1: skimmed at the breach; 0: background */
    int64_t first_fraud_ms; /* event time of its first fraud transaction */
};

/* What the data hides, as far as it was made. */
struct sim_truth {
    int breach;                          /* 0 with the breach off */
    char merchant[SIM_MERCHANT_ID_SIZE]; /* breached merchant; "" if none */
    int64_t window_start_ms;             /* first ms of the breach window */
    int64_t window_end_ms;               /* its last ms (inclusive) */
    size_t skimmed;    /* cards skimmed so far */
    size_t defrauded;  /* linked frauds listed so far */
    size_t background; /* background frauds listed so far */
    int64_t first_linked_fraud_ms; /* earliest linked fraud, -1 if none */
    char popular[SIM_POPULAR][SIM_MERCHANT_ID_SIZE]; /* by popularity */
    uint64_t transactions; /* made so far */
};

struct sim;

/* Makes a simulation: the card population (gen_new/gen_card with o's
 * seed and prefixes), the merchants, the breached merchant and the
 * background frauds. Returns NULL after writing the reason into
 * errbuf[errlen] (an option out of its range, the breach window not
 * inside the period, fewer cards under the prefixes than o->cards, bad
 * prefixes, no memory). */
struct sim *sim_new(const struct sim_opts *o, char *errbuf, size_t errlen);

/* Frees (and wipes the card numbers). NULL is a no-op. */
void sim_destroy(struct sim *s);

/* Makes the next transaction into *out (a valid one: txn_validate
 * passes; it holds a raw PAN of the synthetic population) and its card's
 * number into *card (may be NULL). Returns its kind, or SIM_DONE after
 * count transactions. Allocates nothing. */
enum sim_kind sim_next(struct sim *s, struct txn *out, sim_card_no *card);

/* Fills *t with the truth as far as the data was made (complete after
 * SIM_DONE). */
void sim_truth(const struct sim *s, struct sim_truth *t);

/* The population's size and its card number no (< sim_cards); the card
 * is borrowed until sim_destroy. */
uint32_t sim_cards(const struct sim *s);
const struct gen_card *sim_card(const struct sim *s, sim_card_no no);

/* The skimmed cards in skim order: *out is borrowed (valid until the
 * next sim_next or sim_destroy); returns how many. */
size_t sim_skimmed(const struct sim *s, const sim_card_no **out);

/* When card no was skimmed (its first card-not-present transaction at
 * the breached merchant in the window), or -1 if it was not. */
int64_t sim_skim_ms(const struct sim *s, sim_card_no no);

/* The frauds listed so far (linked and background), ordered by
 * first_fraud_ms: *out is borrowed (valid until the next sim_next or
 * sim_destroy); returns how many. */
size_t sim_frauds(const struct sim *s, const struct sim_fraud **out);

#endif
