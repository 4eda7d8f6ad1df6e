/* timeparse.h - points in time from the command line, as Unix epoch
 * milliseconds UTC (pure).
 *
 * No time zone, locale or libc time function is involved: calendar dates
 * go through the proleptic Gregorian days-from-civil arithmetic, and a
 * time without an explicit offset is refused rather than read as local
 * time.
 */
#ifndef CARDWATCH_TIMEPARSE_H
#define CARDWATCH_TIMEPARSE_H

#include <stddef.h>
#include <stdint.h>

/* Parses s into milliseconds since 1970-01-01T00:00:00Z. Accepted forms:
 *
 *   1722470400000                  milliseconds since the epoch: digits
 *                                  only (no sign, no spaces), 0 or
 *                                  100000000000 (1973-03-03) up to
 *                                  INT64_MAX; smaller numbers are refused
 *                                  (seconds or 20240801 by mistake)
 *   2024-08-01                     midnight UTC of that day
 *   2024-08-01T00:00:00Z           RFC 3339: 'T', 't' or one space between
 *   2024-08-01t00:00:00.123z       date and time; 'Z' or 'z' for UTC, or an
 *   2024-08-01 02:00:00+02:00      offset +HH:MM / -HH:MM (HH <= 23,
 *   2024-07-31T20:00:00.5-04:00    MM <= 59; -00:00 is UTC)
 *
 * Years are 0000-9999 (earlier than 1970 gives a negative result), days
 * must exist in their month (Feb 29 only in leap years), hours 00-23,
 * minutes 00-59, seconds 00-60. A fraction of a second has 1 or more
 * digits after the '.'; digits past milliseconds are cut off (rounded
 * towards the earlier time, never up into the next millisecond). Second
 * 60 (a leap second, which Unix time does not count) is accepted and read
 * as second 59 plus its fraction clamped to .999: it stays after every
 * earlier instant of that minute and before the next minute. A time
 * without 'Z' or an offset is refused: it would be a local time.
 *
 * Returns 0 and sets *out_ms; on anything else returns -1, leaves *out_ms
 * alone and writes what was wrong and what is expected into err[errlen]
 * (err may be NULL or errlen 0: nothing is written). s NULL is an
 * error. */
int timeparse_ms(const char *s, int64_t *out_ms, char *err, size_t errlen);

#endif
