/* breach.c - breach ids, exposed-element lists and UTC calendar dates.
 *
 * Dates use calendar.h's proleptic Gregorian arithmetic, so no time
 * zone, locale or libc time function is involved.
 */
#include "breach.h"

#include <stdio.h>
#include <string.h>

#include "calendar.h"
#include "text.h"

#define MS_PER_DAY CALENDAR_MS_PER_DAY

/* Canonical order: bit i has name element_names[i]. */
static const char *const element_names[BREACH_EL_COUNT] = {
    "pan", "expiry", "cvv2", "name", "address", "phone", "email",
};

int breach_id_valid(const char *id)
{
    size_t len;

    if (id == NULL) {
        return 0;
    }
    len = strnlen(id, BREACH_ID_MAX + 1);
    if (len < 1 || len > BREACH_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

const char *breach_element_name(uint32_t bit)
{
    for (int i = 0; i < BREACH_EL_COUNT; i++) {
        if (bit == (1u << i)) {
            return element_names[i];
        }
    }
    return NULL;
}

int breach_elements_parse(const char *csv, uint32_t *mask, char *errbuf,
                          size_t errlen)
{
    uint32_t m = 0;
    const char *p = csv;

    if (csv == NULL || csv[0] == '\0') {
        text_errf(errbuf, errlen, "empty element list");
        return -1;
    }
    for (;;) {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        int found = -1;

        for (int i = 0; i < BREACH_EL_COUNT; i++) {
            if (strlen(element_names[i]) == n &&
                memcmp(element_names[i], p, n) == 0) {
                found = i;
                break;
            }
        }
        if (n == 0) {
            text_errf(errbuf, errlen, "empty element in list");
            return -1;
        }
        if (found < 0) {
            text_errf(errbuf, errlen,
                      "unknown element \"%.*s\" (known: pan, expiry, cvv2, "
                      "name, address, phone, email)",
                      n > 32 ? 32 : (int)n, p);
            return -1;
        }
        m |= 1u << found;
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    *mask = m;
    return 0;
}

int breach_elements_format(uint32_t mask, char *buf, size_t buflen)
{
    size_t len = 0;

    if (buflen == 0) {
        return -1;
    }
    for (int i = 0; i < BREACH_EL_COUNT; i++) {
        size_t n;
        if (!(mask & (1u << i))) {
            continue;
        }
        n = strlen(element_names[i]);
        if (len + (len > 0) + n >= buflen) {
            buf[0] = '\0';
            return -1;
        }
        if (len > 0) {
            buf[len++] = ',';
        }
        memcpy(buf + len, element_names[i], n);
        len += n;
    }
    buf[len] = '\0';
    return (int)len;
}

int breach_date_parse(const char *s, int end_of_day, int64_t *ms)
{
    static const char shape[] = "dddd-dd-dd";
    int64_t y;
    unsigned m;
    unsigned d;

    if (s == NULL || strnlen(s, sizeof(shape)) != sizeof(shape) - 1) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        int digit = s[i] >= '0' && s[i] <= '9';
        if (shape[i] == 'd' ? !digit : s[i] != shape[i]) {
            return -1;
        }
    }
    y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 +
        (s[3] - '0');
    m = (unsigned)((s[5] - '0') * 10 + (s[6] - '0'));
    d = (unsigned)((s[8] - '0') * 10 + (s[9] - '0'));
    if (y < 1 || m < 1 || m > 12 || d < 1 || d > calendar_days_in_month(y, m)) {
        return -1;
    }
    *ms = calendar_days_from_civil(y, m, d) * MS_PER_DAY +
          (end_of_day ? MS_PER_DAY - 1 : 0);
    return 0;
}

void breach_date_format(int64_t ms, char *buf, size_t buflen)
{
    int64_t days = ms / MS_PER_DAY;
    int64_t y;
    unsigned m;
    unsigned d;

    if (buf == NULL || buflen == 0) {
        return;
    }
    if (ms % MS_PER_DAY < 0) {
        days--; /* floor, not truncation, before the epoch */
    }
    calendar_civil_from_days(days, &y, &m, &d);
    snprintf(buf, buflen, "%04lld-%02u-%02u", (long long)y, m, d);
}
