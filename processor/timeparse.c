/* timeparse.c - see timeparse.h.
 *
 * Days since the epoch come from calendar.h (proleptic Gregorian), the
 * same arithmetic as breach.c's dates.
 */
#include "timeparse.h"

#include <stdint.h>
#include <string.h>

#include "calendar.h"
#include "text.h"

#define MS_PER_SEC INT64_C(1000)
#define MS_PER_MIN (60 * MS_PER_SEC)
#define MS_PER_HOUR (60 * MS_PER_MIN)
#define MS_PER_DAY (24 * MS_PER_HOUR)

/* How much of the input an error message quotes. */
#define QUOTE_MAX 64

#define EXPECTED                                                               \
    "expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS[.fff]Z (or +HH:MM / -HH:MM "     \
    "instead of Z), or milliseconds since 1970-01-01T00:00:00Z"

/* Reads exactly n digits at s into *out. Returns 0, or -1 when one of
 * them is not a digit (a NUL included, so s may end early). */
static int read_digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;

    for (size_t i = 0; i < n; i++) {
        if (!text_is_digit(s[i])) {
            return -1;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* All digits, at least one: milliseconds since the epoch. */
static int parse_epoch_ms(const char *s, int64_t *out_ms, char *err,
                          size_t errlen)
{
    int64_t v = 0;

    for (const char *p = s; *p != '\0'; p++) {
        int64_t digit = *p - '0';
        if (v > (INT64_MAX - digit) / 10) {
            text_errf(err, errlen,
                      "\"%.*s\": too large for milliseconds since the "
                      "epoch (at most %lld)",
                      QUOTE_MAX, s, (long long)INT64_MAX);
            return -1;
        }
        v = v * 10 + digit;
    }
    /* 1 .. 99,999,999,999 ms is 1970-01-01 to 1973-03-03: such a number
     * is far more likely seconds or a compact date (20240801) than meant
     * as milliseconds, and replaying from 1970 by mistake costs hours. */
    if (v > 0 && v < INT64_C(100000000000)) {
        text_errf(err, errlen,
                  "\"%.*s\": milliseconds since the epoch before 1973 "
                  "(seconds, or a date without dashes?); give milliseconds "
                  "(e.g. 1722470400000), YYYY-MM-DD or RFC 3339, or 0",
                  QUOTE_MAX, s);
        return -1;
    }
    *out_ms = v;
    return 0;
}

/* Reads "HH:MM:SS[.fraction]" at *pp into milliseconds of the day and
 * advances *pp past it. */
static int parse_time(const char *s, const char **pp, int64_t *ms_of_day,
                      char *err, size_t errlen)
{
    const char *p = *pp;
    unsigned hh;
    unsigned mm;
    unsigned ss;
    int64_t frac_ms = 0;

    if (read_digits(p, 2, &hh) != 0 || p[2] != ':' ||
        read_digits(p + 3, 2, &mm) != 0 || p[5] != ':' ||
        read_digits(p + 6, 2, &ss) != 0) {
        text_errf(err, errlen, "\"%.*s\": bad time of day: %s", QUOTE_MAX, s,
                  EXPECTED);
        return -1;
    }
    if (hh > 23) {
        text_errf(err, errlen, "\"%.*s\": hour %02u is not 00-23", QUOTE_MAX, s,
                  hh);
        return -1;
    }
    if (mm > 59) {
        text_errf(err, errlen, "\"%.*s\": minute %02u is not 00-59", QUOTE_MAX,
                  s, mm);
        return -1;
    }
    if (ss > 60) {
        text_errf(err, errlen, "\"%.*s\": second %02u is not 00-60", QUOTE_MAX,
                  s, ss);
        return -1;
    }
    p += 8;
    if (*p == '.') {
        size_t n = 0;
        p++;
        for (; text_is_digit(*p); p++, n++) {
            if (n < 3) {
                frac_ms = frac_ms * 10 + (*p - '0');
            }
        }
        if (n == 0) {
            text_errf(err, errlen,
                      "\"%.*s\": expected digits after '.' in the seconds",
                      QUOTE_MAX, s);
            return -1;
        }
        for (; n < 3; n++) {
            frac_ms *= 10;
        }
    }
    if (ss == 60) {
        /* A leap second: the last millisecond of second 59. */
        ss = 59;
        frac_ms = 999;
    }
    *ms_of_day = hh * MS_PER_HOUR + mm * MS_PER_MIN + ss * MS_PER_SEC + frac_ms;
    *pp = p;
    return 0;
}

/* Reads "Z", "z", "+HH:MM" or "-HH:MM" ending the string at p into the
 * offset from UTC in milliseconds (local = UTC + offset). */
static int parse_zone(const char *s, const char *p, int64_t *offset_ms,
                      char *err, size_t errlen)
{
    unsigned hh;
    unsigned mm;

    if (*p == '\0') {
        text_errf(err, errlen,
                  "\"%.*s\": no time zone: add Z for UTC or an offset such "
                  "as +02:00 (a local time is not accepted)",
                  QUOTE_MAX, s);
        return -1;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        *offset_ms = 0;
        return 0;
    }
    if ((*p == '+' || *p == '-') && read_digits(p + 1, 2, &hh) == 0 &&
        p[3] == ':' && read_digits(p + 4, 2, &mm) == 0 && p[6] == '\0') {
        if (hh > 23 || mm > 59) {
            text_errf(err, errlen,
                      "\"%.*s\": offset %.6s out of range (-23:59 to "
                      "+23:59)",
                      QUOTE_MAX, s, p);
            return -1;
        }
        *offset_ms = (int64_t)(hh * MS_PER_HOUR + mm * MS_PER_MIN);
        if (*p == '-') {
            *offset_ms = -*offset_ms;
        }
        return 0;
    }
    text_errf(err, errlen,
              "\"%.*s\": bad time zone \"%.*s\": expected Z, +HH:MM or "
              "-HH:MM at the end",
              QUOTE_MAX, s, QUOTE_MAX, p);
    return -1;
}

int timeparse_ms(const char *s, int64_t *out_ms, char *err, size_t errlen)
{
    unsigned y;
    unsigned m;
    unsigned d;
    int64_t ms;

    if (s == NULL || *s == '\0') {
        text_errf(err, errlen, "empty time: %s", EXPECTED);
        return -1;
    }
    if (strspn(s, "0123456789") == strlen(s)) {
        return parse_epoch_ms(s, out_ms, err, errlen);
    }
    if (read_digits(s, 4, &y) != 0 || s[4] != '-' ||
        read_digits(s + 5, 2, &m) != 0 || s[7] != '-' ||
        read_digits(s + 8, 2, &d) != 0) {
        text_errf(err, errlen, "\"%.*s\": %s", QUOTE_MAX, s, EXPECTED);
        return -1;
    }
    if (m < 1 || m > 12) {
        text_errf(err, errlen, "\"%.*s\": month %02u is not 01-12", QUOTE_MAX,
                  s, m);
        return -1;
    }
    if (d < 1 || d > calendar_days_in_month(y, m)) {
        text_errf(err, errlen, "\"%.*s\": day %02u does not exist in %04u-%02u",
                  QUOTE_MAX, s, d, y, m);
        return -1;
    }
    ms = calendar_days_from_civil(y, m, d) * MS_PER_DAY;
    if (s[10] == '\0') {
        *out_ms = ms;
        return 0;
    }
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') {
        text_errf(err, errlen, "\"%.*s\": %s", QUOTE_MAX, s, EXPECTED);
        return -1;
    }
    const char *p = s + 11;
    int64_t ms_of_day;
    int64_t offset_ms;
    if (parse_time(s, &p, &ms_of_day, err, errlen) != 0 ||
        parse_zone(s, p, &offset_ms, err, errlen) != 0) {
        return -1;
    }
    *out_ms = ms + ms_of_day - offset_ms;
    return 0;
}
