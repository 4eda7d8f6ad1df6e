/* gen.h - synthetic cards and transactions for demos, tests and
 * benchmarks (pure; main.c writes them out).
 *
 * Deterministic for a seed. Cards are Luhn-valid numbers under the
 * configured BIN prefixes, each made at most once by a generator: card
 * numbers are a keyed permutation of each prefix's numbers (a card under
 * a longer configured prefix is made under that one only), so a run has
 * as many distinct cards as the prefixes hold - 10^(15 - prefix length)
 * 16-digit ones (10^9 under a 6-digit prefix, 10^7 under an 8-digit one),
 * 10^(14 - prefix length) under a 34/37 prefix (15 digits) - less the
 * clean pool. Traffic on exposed cards carries injected
 * misuse: card testing (small amounts in minutes), card-not-present
 * bursts across borders, and high-risk merchant categories.
 */
#ifndef CARDWATCH_GEN_H
#define CARDWATCH_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "txn.h"

struct gen_card {
    char pan[CARD_PAN_MAX + 1];
    char expiry[5];
    uint32_t index; /* position in its pool; used as a non-PAN key */
    uint8_t exposed;
};

struct gen;

struct gen_opts {
    uint64_t seed;
    const char *const *prefixes; /* BIN prefixes, 6-8 digits */
    size_t n_prefixes;
    const struct gen_card *exposed; /* borrowed; may be NULL */
    size_t n_exposed;
    double exposed_share; /* share of events on exposed cards, 0..1 */
    double invalid_share; /* share of events made invalid, 0..1 */
    int64_t start_ms;     /* event time of the first transaction */
    int64_t step_ms;      /* mean event-time gap between transactions */
    size_t clean_pool;    /* distinct clean cards (0 = 50,000) */
};

/* Makes a generator, with its pool of clean cards (taken from the other
 * end of each prefix's permutation than gen_card's, so that the cards of
 * `gen cards` and the clean cards of `gen txns` made with the same seed
 * are never the same). Returns NULL on bad options (no prefixes, a prefix
 * not 6-8 digits, fewer cards under the prefixes than the pool needs) or
 * allocation failure. */
struct gen *gen_new(const struct gen_opts *o);

/* Frees. NULL is a no-op. */
void gen_destroy(struct gen *g);

/* Makes a synthetic card, distinct from every other this generator made
 * (its clean pool included), under a random configured prefix (16
 * digits, or 15 for a 34/37 prefix) with an expiry 2025-2031. Returns 0,
 * or -1 when no card is left under the prefixes (see gen_cards_left; out
 * is then zeroed). */
int gen_card(struct gen *g, struct gen_card *out);

/* How many more cards gen_card can make. */
uint64_t gen_cards_left(const struct gen *g);

/* Next transaction in event-time order. *card_key gets a key that names
 * the card without its number ("c<index>" or "x<index>" for exposed
 * cards). When *invalid is set, the transaction was deliberately broken
 * (it must not pass txn_validate). */
void gen_next(struct gen *g, struct txn *out, char card_key[16],
              int *invalid);

#endif
