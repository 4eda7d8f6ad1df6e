/* feed_query.h - what a request to the issuer feed names (pure): cursors
 * (positions in an issuer's feed), the query parameters of the alert
 * lists and alert ids.
 *
 * Nothing here does I/O or logs; results go into memory the caller owns.
 */
#ifndef CARDWATCH_FEED_QUERY_H
#define CARDWATCH_FEED_QUERY_H

#include <stddef.h>
#include <stdint.h>

#define FEED_LIMIT_DEFAULT 100
#define FEED_LIMIT_MAX 1000
#define FEED_CURSOR_SIZE 48 /* "<ms>-<seq>" with NUL */

/* ---- cursors and query parameters ---- */

/* A position in an issuer's feed: a Redis stream id "<ms>-<seq>". The
 * zero cursor (0-0) is before every entry. */
struct feed_cursor {
    uint64_t ms, seq;
};

/* Parses "<ms>-<seq>" (decimal, no sign, no leading spaces, each fitting
 * 64 bits; the largest id of all is refused, nothing can follow it).
 * Returns 0, or -1 when s is not a cursor. */
int feed_cursor_parse(const char *s, size_t len, struct feed_cursor *out);

/* Writes "<ms>-<seq>" into buf (FEED_CURSOR_SIZE is enough). Returns the
 * length. */
int feed_cursor_format(const struct feed_cursor *c, char *buf, size_t len);

/* <0, 0, >0 as a is before, at, after b. */
int feed_cursor_cmp(const struct feed_cursor *a, const struct feed_cursor *b);

/* Parameters of GET /v1/alerts (and, with stream set, of
 * /v1/alerts/stream, which takes only after). */
struct feed_params {
    struct feed_cursor after; /* 0-0 when not given */
    int has_after;
    int limit;  /* 1 .. FEED_LIMIT_MAX, default FEED_LIMIT_DEFAULT */
    int wait_s; /* 0 .. max_wait_s; 0 = answer at once */
    int newest; /* order=newest: newest first (never with wait) */
    struct feed_cursor before; /* with newest: only entries before it */
    int has_before;
    int outcomes; /* include=outcome: each item carries its outcome */
};

/* Parses the raw query string q (NULL or "" = none; %XX and '+' decoded)
 * into p. Accepted keys: after, limit, wait, order (oldest | newest),
 * before (only with order=newest, which cannot wait) and include
 * (outcome); the stream takes after only; each key at most once. Returns
 * 0, or -1 with a message for the client in err (e.g. "limit must be 1 to
 * 1000"). */
int feed_params_parse(const char *q, int max_wait_s, int stream,
                      struct feed_params *p, char *err, size_t errlen);

/* 1 when s[0..len) is an alert id: 32 lower-case hex digits. */
int feed_alert_id_valid(const char *s, size_t len);

#endif
