/* text.h - text helpers: error messages, UTF-8, a bounded JSON writer
 * (pure), and a line reader for JSON-lines input.
 *
 * Apart from text_next_line(), nothing here allocates, logs or does I/O:
 * every function writes only into memory the caller owns and passes in.
 */
#ifndef CARDWATCH_TEXT_H
#define CARDWATCH_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

/* 1 when c is an ASCII digit '0'-'9', else 0 (no locale, unlike
 * isdigit()). */
static inline int text_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The value of hex digit c (0-9, a-f, A-F), or -1 when c is not one. */
static inline int text_hex_val(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Writes v with thousands separators ("1,234,567") into buf (at least 32
 * bytes for any uint64_t; a shorter buf gets a truncated number). */
void text_thousands(uint64_t v, char *buf, size_t len);

/* Formats a message into errbuf[errlen] like snprintf (cut to fit, always
 * NUL-terminated). errbuf NULL or errlen 0 is allowed: nothing is
 * written. It cannot fail. */
void text_errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Length (1-4) of the valid UTF-8 sequence that starts at s[0], with n >= 1
 * bytes readable at s; 0 when it is not valid UTF-8 (a stray continuation
 * byte, an overlong form, a surrogate, a value above U+10FFFF, or a
 * sequence cut short by n). ASCII, NUL included, is 1. */
size_t text_utf8_seq(const unsigned char *s, size_t n);

/* Reads the next line of f that is not empty once its trailing CR/LF
 * characters are cut off, and returns it NUL-terminated in *line with
 * that length (> 0). *line and *cap are getline(3)'s: the caller starts
 * with NULL and 0, the buffer grows as needed and the caller frees *line
 * (also after -1). *lineno counts every line read, empty ones included,
 * so after a return it is the 1-based number of the line returned.
 * Returns -1 at end of file and on a read error (ferror(f) tells which).
 * Lines are taken as they are: a NUL byte inside one is part of it. */
ssize_t text_next_line(FILE *f, char **line, size_t *cap,
                       unsigned long *lineno);

/* A JSON writer into a buffer the caller owns. It never allocates and
 * never writes past the buffer: a write that does not fit sets overflow,
 * which is sticky (every later write is dropped), so a caller writes all
 * of its text and checks once, at jsonw_end(). */
struct jsonw {
    char *buf;  /* NULL when the buffer has no room at all */
    size_t cap; /* room for text, excluding the NUL */
    size_t len;
    int overflow;
};

/* Starts writing into buf[buflen], which the caller keeps owning;
 * buflen 0 starts in overflow. */
void jsonw_init(struct jsonw *w, char *buf, size_t buflen);

/* Appends s[0..n) as it is (no quoting, no escaping). Inline: it is the
 * step of every other write. */
static inline void jsonw_raw(struct jsonw *w, const char *s, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = 1;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

/* Appends a string literal as it is; its length is known at compile time. */
#define JSONW_LIT(w, lit) jsonw_raw((w), "" lit, sizeof(lit) - 1)

/* Appends the C string s as it is: for text known to need no escaping
 * (enum names, formatted dates). */
void jsonw_cstr(struct jsonw *w, const char *s);

/* Appends s[0..n) as a quoted JSON string: '"', '\\' and the control
 * characters below 0x20 escaped (\n \r \t \b \f by name, the others as
 * \u00XX), each byte that does not start a valid UTF-8 sequence replaced
 * by \ufffd, so the output is valid JSON for any input bytes. */
void jsonw_str(struct jsonw *w, const char *s, size_t n);

/* jsonw_str() of a fixed-size char field s[size]: up to its first NUL, or
 * all size bytes when it has none. */
void jsonw_field(struct jsonw *w, const char *s, size_t size);

/* Appends v in decimal. */
void jsonw_i64(struct jsonw *w, int64_t v);

/* Ends the text: NUL-terminates it and returns its length. Returns -1,
 * with buf "" (unless buflen was 0), when a write overflowed or the text
 * is longer than INT_MAX; the rest of what was written stays in buf (a
 * caller that wrote secrets wipes buf[0..w->len) itself). */
int jsonw_end(struct jsonw *w);

#endif
