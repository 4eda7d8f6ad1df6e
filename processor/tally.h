/* tally.h - what a replay found: alerts by rule, severity and issuer, and
 * the distinct exposed cards with at least one alert (pure).
 *
 * An alert is counted once per alert id: a transaction that the input
 * holds twice (the same txn_id, so the same alert id) is counted as a
 * repeat, not as a second alert. The "already misused" count is the
 * number of distinct card fingerprints among the alerts. Names are
 * copied; memory grows with the distinct rules, issuers and cards (about
 * 48 bytes per card) and with the alerts (about 66 bytes per alert id).
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
 * rule hit, and its card. Returns 1 when counted; 0 when an alert with
 * its id was counted before (counted as a repeat only: the caller does
 * not write it again); -1 on allocation failure (counted as a new alert,
 * but the counts, or the repeat check, may be short; the caller reports
 * it). */
int tally_alert(struct tally *t, const struct alert *a);

/* Distinct alerts counted. */
uint64_t tally_alerts(const struct tally *t);
/* Alerts whose id had been counted before (tally_alert() answered 0). */
uint64_t tally_repeats(const struct tally *t);
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
