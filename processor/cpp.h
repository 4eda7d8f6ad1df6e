/* cpp.h - common-point-of-purchase analysis: which merchant do the cards
 * that were later defrauded share far more often than chance allows
 * (pure: no I/O; `cardwatch cpp` in cli_cpp.c reads the inputs).
 *
 * Inputs. The cases: compromised cards, each a 16-byte binary
 * fingerprint (card.h, rmodel_fp_bin) with the time of its first fraud.
 * Then the transaction history, one (fingerprint, merchant, event time)
 * at a time, in any order.
 *
 * What is counted. Each case looks back lookback_ms from its first fraud:
 * its uses in [first_fraud - lookback, first_fraud) are its candidate
 * points of purchase (uses at or after the first fraud are the fraud
 * itself and never count: fraudsters' cash-out merchants do not win).
 * The period is [earliest first fraud - lookback, latest first fraud):
 * every transaction in it counts towards its merchant's audience (the
 * distinct cards that used the merchant, n) and towards all cards seen
 * (N). A merchant's k is the number of cases that used it in their own
 * look-back.
 *
 * The statistic. If being compromised had nothing to do with a merchant,
 * each of the K cases seen in the period (cases with at least one use in
 * their look-back) would have used merchant m with the chance a card in
 * the period has, p = n / N; k would be Binomial(K, p), expected K * p.
 * The p-value is P(X >= k) under that binomial (the regularised
 * incomplete beta function I_p(k, K - k + 1)), corrected for looking at
 * every merchant of the period at once (Bonferroni: times M, the number of
 * merchants, capped at 1). A merchant is significant when the corrected
 * p-value is below alpha. A popular merchant that every card visits has
 * p near 1: even k = K is no surprise there. p is taken over the whole
 * period, which contains every look-back window, so it can only
 * overstate a card's chance within its own look-back: the test errs
 * towards fewer suspects, never more.
 *
 * The compromise window of a merchant: each case that met it contributes
 * its first and its last use there (inside its look-back); the window is
 * the span of whole days where these uses are densest against an even
 * spread over the period - the span with the largest Poisson
 * log-likelihood ratio (the scan statistic in one dimension). Cases that
 * used the merchant by chance are spread over the period and hardly move
 * it; a compromised card's earlier and later visits move it only when
 * many cards share them. The span's ends are widened by the mean gap
 * between its uses (the first use seen comes about one gap after the
 * compromise began). The raw first and last use by any case are
 * reported too. Windows are computed for the merchants handed out only
 * (cpp_rank's max): O(d^2) in the days that hold a use.
 *
 * Memory: a table of cases (~40 B each), one per merchant (its name, a
 * distinct-card counter of at most 4 KiB - exact up to 128 cards, then a
 * HyperLogLog of 4,096 registers, ~1.6 % standard error), and one entry
 * per (merchant, case) pair that met (~24 B): bounded by merchants and
 * cases, never by the length of the history. Not thread-safe.
 */
#ifndef CARDWATCH_CPP_H
#define CARDWATCH_CPP_H

#include <stddef.h>
#include <stdint.h>

#define CPP_FP_LEN 16
#define CPP_MERCHANT_MAX 64

struct cpp_opts {
    int64_t lookback_ms; /* > 0; how far back from a first fraud uses
                            count (the command's default: 180 days) */
    double alpha;        /* family-wise significance level, (0, 1) */
    uint32_t min_cases;  /* merchants with fewer cases are not ranked
                            (>= 1) */
};

/* One ranked merchant. */
struct cpp_suspect {
    char merchant[CPP_MERCHANT_MAX + 1];
    uint32_t cases;     /* k: cases that used it in their look-back */
    uint64_t cards;     /* n: distinct cards that used it in the period
                           (exact up to 128, then estimated) */
    double expected;    /* K * n / N: cases chance alone would bring */
    double log10_p;     /* log10 P(X >= k), <= 0 */
    double log10_p_adj; /* log10 of the Bonferroni-corrected p, <= 0 */
    int significant;    /* log10_p_adj < log10(alpha) */
    int64_t first_use_ms, last_use_ms;      /* by any case (raw) */
    int64_t window_start_ms, window_end_ms; /* the estimate (see above):
                                               the first and the last ms
                                               of whole UTC days */
};

/* What the analysis saw. */
struct cpp_summary {
    uint64_t cases;           /* distinct cases added */
    uint64_t cases_seen;      /* K: cases with a use in their look-back */
    uint64_t txns;            /* transactions observed */
    uint64_t txns_in_period;  /* of them inside the period */
    uint64_t merchants;       /* M: merchants with a use in the period */
    uint64_t cards;           /* N: distinct cards in the period (est.) */
    int64_t period_from_ms;   /* the period [from, to); 0, 0 without */
    int64_t period_to_ms;     /* cases */
    size_t memory_bytes;      /* held by the analysis now */
};

struct cpp;

/* Makes an analysis. Returns NULL on bad options (lookback <= 0, alpha
 * outside (0, 1), min_cases 0) or no memory. The caller owns it. */
struct cpp *cpp_new(const struct cpp_opts *o);

/* Frees. NULL is a no-op. */
void cpp_destroy(struct cpp *c);

/* The latest first fraud cpp_add_case() takes: 9999-12-31T23:59:59.999Z
 * (what timeparse.h reads); with the look-back no period bound
 * overflows. */
#define CPP_TIME_MAX_MS 253402300799999LL

/* Adds a case: fp (16 bytes, copied) first defrauded at first_fraud_ms.
 * A card added twice keeps its earliest first fraud. Only before
 * cpp_seal(). Returns 0; -1 when out of memory or already sealed; -2
 * when first_fraud_ms is not in (0, CPP_TIME_MAX_MS] (the case is not
 * added). */
int cpp_add_case(struct cpp *c, const uint8_t fp[CPP_FP_LEN],
                 int64_t first_fraud_ms);

/* Ends the cases: fixes the period. Returns the number of cases. */
uint64_t cpp_seal(struct cpp *c);

/* The period [*from, *to) fixed by cpp_seal() (0, 0 without cases): a
 * transaction outside it changes nothing, so a reader may skip it before
 * taking its fingerprint. */
void cpp_period(const struct cpp *c, int64_t *from, int64_t *to);

/* Observes one transaction: card fp (16 bytes), merchant id (mlen bytes,
 * at most CPP_MERCHANT_MAX; longer ones are cut), event time t_ms (one at
 * or before 1970 counts nowhere, as no valid transaction has one). Only
 * after cpp_seal(). Returns 0, or -1 when out of memory (the analysis
 * stays usable but misses this transaction) or not sealed. */
int cpp_observe(struct cpp *c, const uint8_t fp[CPP_FP_LEN],
                const char *merchant, size_t mlen, int64_t t_ms);

/* One transaction for cpp_observe_batch. */
struct cpp_obs {
    uint8_t fp[CPP_FP_LEN];
    const char *merchant; /* borrowed for the call */
    size_t mlen;
    int64_t t_ms;
};

/* Observes n transactions: the same as n cpp_observe() calls, faster
 * (the table lookups of up to 32 events overlap their memory waits).
 * Returns the number not counted for want of memory (0 normally), or -1
 * when not sealed. */
int cpp_observe_batch(struct cpp *c, const struct cpp_obs *obs, size_t n);

/* Ranks the merchants with at least min_cases cases: most significant
 * (smallest p) first; ties by the larger excess k / expected, then by
 * merchant id. Writes up to max of them to out (may be NULL when max is
 * 0), their count to *n (may exceed max: then out holds the first max)
 * and the summary to *sum (may be NULL). Can be called again (after more
 * observations too). Returns 0, or -1 when out of memory. */
int cpp_rank(struct cpp *c, struct cpp_suspect *out, size_t max, size_t *n,
             struct cpp_summary *sum);

/* One UTC day of a merchant's uses (cpp_uses_by_day). */
struct cpp_day {
    int64_t day_ms; /* 00:00 UTC of the day */
    uint32_t uses;  /* the cases' first and last uses there that day */
};

/* The points the window estimate of merchant name[len] rests on - each
 * case that used it in its look-back gives its first use there and, when
 * later, its last - counted per UTC day: the days that hold one, in
 * order (a report's picture of the estimate; see above). Only after
 * cpp_seal(). Returns 0 with a malloc'd array in *out (the caller frees
 * it; NULL when *n is 0) and its length in *n: 0 for a merchant no case
 * used, or one never seen; -1 when out of memory. */
int cpp_uses_by_day(const struct cpp *c, const char *name, size_t len,
                    struct cpp_day **out, size_t *n);

/* log10 of P(X >= k) for X ~ Binomial(trials, p): 0 when k == 0 or
 * p >= 1, -INFINITY when k > trials or p <= 0 < k. Exposed for tests. */
double cpp_log10_binom_tail(uint64_t k, uint64_t trials, double p);

#endif
