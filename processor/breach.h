/* breach.h - breach metadata, exposed elements and dates (pure).
 *
 * A breach is loaded once (cardwatch load) and kept in Redis; the processor
 * caches the metadata. Card records only name the breach, never the values
 * that were exposed.
 */
#ifndef CARDWATCH_BREACH_H
#define CARDWATCH_BREACH_H

#include <stddef.h>
#include <stdint.h>

#define BREACH_ID_MAX 64
#define BREACH_DESC_MAX 255

/* Exposed elements, as a bit mask. */
enum breach_element {
    BREACH_EL_PAN = 1u << 0,
    BREACH_EL_EXPIRY = 1u << 1,
    BREACH_EL_CVV2 = 1u << 2,
    BREACH_EL_NAME = 1u << 3,
    BREACH_EL_ADDRESS = 1u << 4,
    BREACH_EL_PHONE = 1u << 5,
    BREACH_EL_EMAIL = 1u << 6,
};
#define BREACH_EL_COUNT 7

struct breach {
    char id[BREACH_ID_MAX + 1];
    char description[BREACH_DESC_MAX + 1];
    int64_t window_start_ms; /* 00:00:00.000 UTC of the first day */
    int64_t window_end_ms;   /* 23:59:59.999 UTC of the last day */
    uint32_t elements;       /* enum breach_element bits */
    uint64_t card_count;
    int64_t loaded_at_ms;
};

/* Returns 1 when id is 1..BREACH_ID_MAX of [A-Za-z0-9._-], else 0. */
int breach_id_valid(const char *id);

/* Parses "pan,expiry,cvv2,name,address,phone,email" (any subset, any
 * order, no spaces) into *mask. Returns 0, or -1 with the unknown element
 * named in errbuf. An empty list is an error. */
int breach_elements_parse(const char *csv, uint32_t *mask, char *errbuf,
                          size_t errlen);

/* Writes the elements of mask as a comma list in the canonical order.
 * Returns the length, or -1 if buf is too small. */
int breach_elements_format(uint32_t mask, char *buf, size_t buflen);

/* Name of one element bit ("pan", ...), or NULL for an unknown bit. */
const char *breach_element_name(uint32_t bit);

/* Parses a date "YYYY-MM-DD" (UTC) into ms since the epoch: the first
 * millisecond of the day, or the last one when end_of_day is 1.
 * Returns 0, or -1 for anything that is not a real calendar date. */
int breach_date_parse(const char *s, int end_of_day, int64_t *ms);

/* Formats ms since the epoch as "YYYY-MM-DD" (UTC) into buf (>= 11 bytes). */
void breach_date_format(int64_t ms, char *buf, size_t buflen);

#endif
