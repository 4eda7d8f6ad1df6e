/* windows.h - event-time window aggregates over one card's transactions
 * (pure). The same code serves the live pipeline (entries come from Redis)
 * and `cardwatch rules test` (entries kept in memory), so both agree.
 *
 * A window W at a transaction T covers the card's transactions received
 * so far whose event time lies in (T - W, T], T included. A transaction id
 * seen before is a redelivery: it never counts twice.
 */
#ifndef CARDWATCH_WINDOWS_H
#define CARDWATCH_WINDOWS_H

#include <stddef.h>
#include <stdint.h>

#include "txn.h"

#define WIN_MAX_WINDOWS 16

/* What is kept of one transaction for windows (no PAN). */
struct win_entry {
    char txn_id[TXN_ID_MAX + 1];
    int64_t event_time_ms;
    int64_t amount_minor;
    int declined;
    char merchant_id[TXN_MERCHANT_MAX + 1];
    char merchant_country[3];
};

struct win_stats {
    int64_t count;
    int64_t count_declined;
    int64_t sum_amount;
    int64_t distinct_merchants;
    int64_t distinct_countries;
};

/* Fills e from a transaction. */
void win_entry_from_txn(struct win_entry *e, const struct txn *t);

/* Aggregates entries[0..n) (the card's received transactions, the current
 * one included or not: it is added if its txn_id is absent) for each of
 * the nw windows (ms) at the current transaction cur. Entries with the
 * same txn_id count once. Allocates nothing for n <= 4096 (larger inputs
 * use a temporary heap buffer; returns -1 if that fails). Returns 0. */
int win_aggregate(const struct win_entry *entries, size_t n,
                  const struct win_entry *cur, const int64_t *windows,
                  size_t nw, struct win_stats *out);

/* Encodes e as one compact record (no '\n'), for Redis: returns the
 * length, or -1 when buf is too small. */
int win_entry_encode(const struct win_entry *e, char *buf, size_t buflen);

/* Decodes a record made by win_entry_encode. Returns 0, or -1. */
int win_entry_decode(const char *s, size_t len, struct win_entry *e);

/* Parses a duration "30s", "10m", "1h", "7d", "500ms" into ms. Returns 0,
 * or -1 (not a positive duration, or over 366 days). */
int win_duration_parse(const char *s, size_t len, int64_t *ms);

/* Formats ms as the shortest of those units ("10m"). */
void win_duration_format(int64_t ms, char *buf, size_t buflen);

#endif
