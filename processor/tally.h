/* tally.h - what a replay found: alerts by rule, severity and issuer, and
 * the distinct exposed cards with at least one alert (pure).
 *
 * The "already misused" count is the number of distinct card
 * fingerprints among the alerts. Names are copied; memory grows with the
 * distinct rules, issuers and cards (about 48 bytes per card).
 */
#ifndef CARDWATCH_TALLY_H
#define CARDWATCH_TALLY_H

#include <stddef.h>
#include <stdint.h>

#include "alert.h"

struct tally;

/* Returns NULL on allocation failure. */
struct tally *tally_new(void);

/* Counts one alert: one per issuer and severity (its highest), one per
 * rule hit, and its card. Returns 0, or -1 on allocation failure (the
 * counts may then be short; the caller reports it). */
int tally_alert(struct tally *t, const struct alert *a);

uint64_t tally_alerts(const struct tally *t);
uint64_t tally_cards(const struct tally *t);
uint64_t tally_severity(const struct tally *t, enum severity s);

/* Calls fn for every rule (then every issuer) with its count, most first,
 * ties by name. */
void tally_each_rule(const struct tally *t,
                     void (*fn)(void *arg, const char *name, uint64_t n),
                     void *arg);
void tally_each_issuer(const struct tally *t,
                       void (*fn)(void *arg, const char *name, uint64_t n),
                       void *arg);

/* NULL is a no-op. */
void tally_destroy(struct tally *t);

#endif
