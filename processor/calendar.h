/* calendar.h - proleptic Gregorian dates as days since 1970-01-01 (pure).
 *
 * One home for the calendar arithmetic that dates in breach windows
 * (breach.c) and times on the command line (timeparse.c) share: Howard
 * Hinnant's days_from_civil / civil_from_days, exact for every int64
 * year that does not overflow. Nothing here allocates or fails.
 */
#ifndef CARDWATCH_CALENDAR_H
#define CARDWATCH_CALENDAR_H

#include <stdint.h>

#define CALENDAR_MS_PER_DAY INT64_C(86400000)

/* Days since 1970-01-01 of year y, month m (1-12), day d (1-31); not
 * checked (see calendar_days_in_month). Negative before 1970. */
int64_t calendar_days_from_civil(int64_t y, unsigned m, unsigned d);

/* The date of a day number (days since 1970-01-01, may be negative):
 * year, month 1-12, day 1-31. */
void calendar_civil_from_days(int64_t days, int64_t *y, unsigned *m,
                              unsigned *d);

/* Days in month m (1-12) of year y: 28-31, leap years included. m out
 * of range answers 0. */
unsigned calendar_days_in_month(int64_t y, unsigned m);

#endif
