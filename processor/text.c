/* text.c - see text.h. */
#include "text.h"

#include <limits.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void text_errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errbuf == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

size_t text_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];

    if (c < 0x80) {
        return 1;
    }
    if (c < 0xc2 || c > 0xf4) {
        return 0;
    }
    if (c < 0xe0) {
        return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    }
    if (c < 0xf0) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
            (c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f)) {
            return 0;
        }
        return 3;
    }
    if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
        (s[3] & 0xc0) != 0x80 || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f)) {
        return 0;
    }
    return 4;
}

ssize_t text_next_line(FILE *f, char **line, size_t *cap, unsigned long *lineno)
{
    ssize_t len;

    while ((len = getline(line, cap, f)) >= 0) {
        (*lineno)++;
        while (len > 0 &&
               ((*line)[len - 1] == '\n' || (*line)[len - 1] == '\r')) {
            (*line)[--len] = '\0';
        }
        if (len > 0) {
            return len;
        }
    }
    return -1;
}

/* ---- JSON writer ---- */

void jsonw_init(struct jsonw *w, char *buf, size_t buflen)
{
    w->buf = buflen > 0 ? buf : NULL;
    w->cap = buflen > 0 ? buflen - 1 : 0;
    w->len = 0;
    w->overflow = buflen == 0;
}

void jsonw_cstr(struct jsonw *w, const char *s)
{
    jsonw_raw(w, s, strlen(s));
}

void jsonw_str(struct jsonw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    JSONW_LIT(w, "\"");
    while (i < n && !w->overflow) {
        /* The common case: a run of printable ASCII, copied at once. */
        size_t run = i;
        while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' &&
               p[run] != '\\') {
            run++;
        }
        jsonw_raw(w, s + i, run - i);
        i = run;
        if (i >= n) {
            break;
        }
        if (p[i] >= 0x80) {
            size_t k = text_utf8_seq(p + i, n - i);
            if (k == 0) {
                JSONW_LIT(w, "\\ufffd");
                i++;
            } else {
                jsonw_raw(w, s + i, k);
                i += k;
            }
            continue;
        }
        switch (p[i]) {
        case '"':
            JSONW_LIT(w, "\\\"");
            break;
        case '\\':
            JSONW_LIT(w, "\\\\");
            break;
        case '\n':
            JSONW_LIT(w, "\\n");
            break;
        case '\r':
            JSONW_LIT(w, "\\r");
            break;
        case '\t':
            JSONW_LIT(w, "\\t");
            break;
        case '\b':
            JSONW_LIT(w, "\\b");
            break;
        case '\f':
            JSONW_LIT(w, "\\f");
            break;
        default: {
            char esc[6] = {
                '\\', 'u', '0', '0', hex[p[i] >> 4], hex[p[i] & 0x0f]};
            jsonw_raw(w, esc, sizeof(esc));
            break;
        }
        }
        i++;
    }
    JSONW_LIT(w, "\"");
}

void jsonw_field(struct jsonw *w, const char *s, size_t size)
{
    jsonw_str(w, s, strnlen(s, size));
}

void jsonw_i64(struct jsonw *w, int64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        *--p = '-';
    }
    jsonw_raw(w, p, (size_t)(tmp + sizeof(tmp) - p));
}

int jsonw_end(struct jsonw *w)
{
    if (w->overflow || w->len > INT_MAX) {
        if (w->buf != NULL) {
            w->buf[0] = '\0';
        }
        return -1;
    }
    w->buf[w->len] = '\0';
    return (int)w->len;
}

void text_thousands(uint64_t v, char *buf, size_t len)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
    size_t n = strlen(tmp), o = 0;
    for (size_t i = 0; i < n && o + 2 < len; i++) {
        buf[o++] = tmp[i];
        if ((n - i - 1) % 3 == 0 && i + 1 < n) {
            buf[o++] = ',';
        }
    }
    if (len > 0) {
        buf[o < len ? o : len - 1] = '\0';
    }
}
