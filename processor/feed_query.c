/* feed_query.c - cursors, the query parameters of the alert lists and
 * alert ids; see feed_query.h. */
#include "feed_query.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "feed_text.h"
#include "text.h"

/* ---- cursors and query parameters ---- */

int feed_cursor_parse(const char *s, size_t len, struct feed_cursor *out)
{
    const char *dash = memchr(s, '-', len);
    struct feed_cursor c;
    size_t at = dash != NULL ? (size_t)(dash - s) : 0;
    if (dash == NULL || feed_text_parse_u64(s, at, &c.ms) != 0 ||
        feed_text_parse_u64(dash + 1, len - at - 1, &c.seq) != 0) {
        return -1;
    }
    if (c.ms == UINT64_MAX && c.seq == UINT64_MAX) {
        return -1;
    }
    *out = c;
    return 0;
}

int feed_cursor_format(const struct feed_cursor *c, char *buf, size_t len)
{
    return snprintf(buf, len, "%llu-%llu", (unsigned long long)c->ms,
                    (unsigned long long)c->seq);
}

int feed_cursor_cmp(const struct feed_cursor *a, const struct feed_cursor *b)
{
    if (a->ms != b->ms) {
        return a->ms < b->ms ? -1 : 1;
    }
    if (a->seq != b->seq) {
        return a->seq < b->seq ? -1 : 1;
    }
    return 0;
}

/* Percent-decodes s[0..n) into out[cap]; '+' is a space. Returns the
 * length, or -1 on a bad escape or when it does not fit. */
static long url_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (n - i < 3 || !isxdigit((unsigned char)s[i + 1]) ||
                !isxdigit((unsigned char)s[i + 2])) {
                return -1;
            }
            char hex[3] = {s[i + 1], s[i + 2], '\0'};
            ch = (char)strtol(hex, NULL, 16);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (o + 1 >= cap) {
            return -1;
        }
        out[o++] = ch;
    }
    out[o] = '\0';
    return (long)o;
}

int feed_params_parse(const char *q, int max_wait_s, int stream,
                      struct feed_params *p, char *err, size_t errlen)
{
    int seen_after = 0, seen_limit = 0, seen_wait = 0, seen_order = 0,
        seen_before = 0, seen_include = 0;
    memset(p, 0, sizeof(*p));
    p->limit = FEED_LIMIT_DEFAULT;
    if (q == NULL) {
        return 0;
    }
    const char *s = q;
    while (*s != '\0') {
        const char *amp = strchr(s, '&');
        size_t n = amp ? (size_t)(amp - s) : strlen(s);
        const char *eq = memchr(s, '=', n);
        char key[16], val[64];
        if (n == 0) {
            s += amp ? 1 : 0;
            continue;
        }
        size_t klen = eq ? (size_t)(eq - s) : n;
        long vl = -1;
        if (url_decode(s, klen, key, sizeof(key)) < 0) {
            text_errf(err, errlen, "unknown query parameter");
            return -1;
        }
        if (eq != NULL) {
            vl = url_decode(eq + 1, n - klen - 1, val, sizeof(val));
        }
        int *seen = NULL;
        if (strcmp(key, "after") == 0) {
            seen = &seen_after;
        } else if (!stream && strcmp(key, "limit") == 0) {
            seen = &seen_limit;
        } else if (!stream && strcmp(key, "wait") == 0) {
            seen = &seen_wait;
        } else if (!stream && strcmp(key, "order") == 0) {
            seen = &seen_order;
        } else if (!stream && strcmp(key, "before") == 0) {
            seen = &seen_before;
        } else if (!stream && strcmp(key, "include") == 0) {
            seen = &seen_include;
        } else {
            feed_text_ascii_only(key);
            text_errf(err, errlen, "unknown query parameter '%s' (%s)", key,
                      stream ? "the stream takes after"
                             : "use after, limit, wait, order, before, "
                               "include");
            return -1;
        }
        if (*seen) {
            text_errf(err, errlen, "query parameter '%s' given twice", key);
            return -1;
        }
        *seen = 1;
        if (seen == &seen_after || seen == &seen_before) {
            struct feed_cursor *c =
                seen == &seen_after ? &p->after : &p->before;
            if (vl <= 0 || feed_cursor_parse(val, (size_t)vl, c) != 0) {
                text_errf(err, errlen,
                          "%s must be a cursor \"<ms>-<seq>\" "
                          "as the feed returned it", key);
                return -1;
            }
            *(seen == &seen_after ? &p->has_after : &p->has_before) = 1;
        } else if (seen == &seen_include) {
            if (vl != 7 || memcmp(val, "outcome", 7) != 0) {
                text_errf(err, errlen, "include must be outcome");
                return -1;
            }
            p->outcomes = 1;
        } else if (seen == &seen_order) {
            if (vl == 6 && memcmp(val, "newest", 6) == 0) {
                p->newest = 1;
            } else if (vl != 6 || memcmp(val, "oldest", 6) != 0) {
                text_errf(err, errlen, "order must be oldest or newest");
                return -1;
            }
        } else {
            uint64_t v = 0;
            int lo = seen == &seen_limit ? 1 : 0;
            int hi = seen == &seen_limit ? FEED_LIMIT_MAX : max_wait_s;
            if (vl <= 0 || feed_text_parse_u64(val, (size_t)vl, &v) != 0 ||
                v < (uint64_t)lo || v > (uint64_t)hi) {
                if (seen == &seen_limit) {
                    text_errf(err, errlen, "limit must be %d to %d", lo, hi);
                } else {
                    text_errf(err, errlen, "wait must be 0 to %d seconds", hi);
                }
                return -1;
            }
            if (seen == &seen_limit) {
                p->limit = (int)v;
            } else {
                p->wait_s = (int)v;
            }
        }
        s += n;
        if (*s == '&') {
            s++;
        }
    }
    if (p->has_before && !p->newest) {
        text_errf(err, errlen, "before pages back: use it with order=newest");
        return -1;
    }
    if (p->newest && p->wait_s > 0) {
        text_errf(err, errlen,
                  "order=newest answers at once: wait follows new alerts "
                  "with after (the oldest order)");
        return -1;
    }
    return 0;
}

int feed_alert_id_valid(const char *s, size_t len)
{
    if (len != ALERT_ID_SIZE - 1) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (feed_text_hex_val(s[i]) < 0) {
            return 0;
        }
    }
    return 1;
}
