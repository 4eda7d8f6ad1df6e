/* listcsv.c - see listcsv.h. */
#include "listcsv.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "card.h"
#include "log.h"
#include "text.h"

#define MOD "list"

/* ---- CSV (RFC 4180) ---- */

#define IN_SIZE 65536

/* A CSV reader: one record at a time into fields, counting lines. */
struct csv {
    FILE *f;
    const char *fname;
    unsigned char *in; /* read buffer (IN_SIZE) */
    size_t ipos, ilen;
    int ieof;
    int ierr;            /* errno of a read error, 0 = none */
    unsigned long line;  /* the line the next byte is on (1-based) */
    char *buf;           /* the record's fields, each NUL-terminated */
    size_t len, cap;
    size_t *off;         /* where each field starts in buf */
    size_t nf, capf;
    unsigned long row_line; /* the line the record starts on */
    int first_quoted;       /* field 0 was quoted */
    int has_nul;            /* a NUL byte in the record */
    size_t bad_quote;       /* 1 + column of text after a closing quote */
};

static int fill(struct csv *c)
{
    if (c->ipos < c->ilen) {
        return 1;
    }
    if (c->ieof) {
        return 0;
    }
    c->ipos = 0;
    errno = 0;
    c->ilen = fread(c->in, 1, IN_SIZE, c->f);
    if (c->ierr == 0 && ferror(c->f)) {
        /* The errno of the read that failed: when fread() returned data
         * before it, the error shows on the next call, with no errno. */
        c->ierr = errno != 0 ? errno : EIO;
    }
    if (c->ilen == 0) {
        c->ieof = 1;
        if (c->ierr != 0) {
            log_error(MOD, "%s:%lu: read error: %s", c->fname, c->line,
                      strerror(c->ierr));
        }
        return 0;
    }
    return 1;
}

static int nextc(struct csv *c)
{
    return fill(c) ? c->in[c->ipos++] : EOF;
}

static int peekc(struct csv *c)
{
    return fill(c) ? c->in[c->ipos] : EOF;
}

/* After a CR: a following LF belongs to the same line end. */
static void eat_lf(struct csv *c)
{
    if (peekc(c) == '\n') {
        c->ipos++;
    }
}

/* Appends one byte to the record. Returns 0, or -1 (logged) when the
 * record grows past LIST_ROW_MAX or memory runs out. */
static int put(struct csv *c, char ch)
{
    if (c->len == c->cap) {
        if (c->cap >= LIST_ROW_MAX) {
            log_error(MOD, "%s:%lu: row longer than %d bytes (a quoted "
                      "field that is never closed?)", c->fname, c->row_line,
                      LIST_ROW_MAX);
            return -1;
        }
        /* doubling from 256 meets LIST_ROW_MAX exactly */
        _Static_assert(LIST_ROW_MAX >= 256 &&
                           (LIST_ROW_MAX & (LIST_ROW_MAX - 1)) == 0,
                       "LIST_ROW_MAX must be a power of two >= 256");
        size_t ncap = c->cap ? c->cap * 2 : 256;
        char *nb = malloc(ncap);
        if (nb == NULL) {
            log_error(MOD, "%s: out of memory", c->fname);
            return -1;
        }
        if (c->len > 0) {
            memcpy(nb, c->buf, c->len);
            memset(c->buf, 0, c->len); /* it may hold a PAN */
        }
        free(c->buf);
        c->buf = nb;
        c->cap = ncap;
    }
    c->buf[c->len++] = ch;
    return 0;
}

static int new_field(struct csv *c)
{
    if (c->nf == c->capf) {
        size_t ncap = c->capf ? c->capf * 2 : 16;
        size_t *no = realloc(c->off, ncap * sizeof(*no));
        if (no == NULL) {
            log_error(MOD, "%s: out of memory", c->fname);
            return -1;
        }
        c->off = no;
        c->capf = ncap;
    }
    c->off[c->nf++] = c->len;
    return 0;
}

static const char *fieldv(const struct csv *c, size_t i)
{
    return c->buf + c->off[i];
}

/* Wipes the record (it may hold a PAN). */
static void wipe(struct csv *c)
{
    if (c->buf != NULL) {
        memset(c->buf, 0, c->len);
    }
    c->len = 0;
    c->nf = 0;
}

/* Skips a line (a comment) up to and including its end. */
static void skip_line(struct csv *c)
{
    for (;;) {
        int ch = nextc(c);
        if (ch == EOF) {
            return;
        }
        if (ch == '\n' || ch == '\r') {
            if (ch == '\r') {
                eat_lf(c);
            }
            c->line++;
            return;
        }
    }
}

/* Reads one record: fields separated by commas, ended by CRLF, LF, a bare
 * CR or the end of the file. A field that starts with a double quote
 * (spaces before it allowed) runs to the next lone quote and may hold
 * commas, line breaks and doubled quotes (one quote each); text between
 * its closing quote and the next comma marks the record (bad_quote).
 * Unquoted fields are taken as they are (a quote inside is a character),
 * with spaces and tabs around them trimmed. Lines that start with '#' are
 * comments and skipped. Returns 1 with a record, 0 at the end of the file,
 * -1 after logging an error (a quoted field never closed, a record over
 * LIST_ROW_MAX bytes, a read error, no memory). */
static int csv_record(struct csv *c)
{
    int ch;
    wipe(c);
    c->has_nul = 0;
    c->bad_quote = 0;
    c->first_quoted = 0;
    for (;;) {
        ch = nextc(c);
        if (ch != '#') {
            break;
        }
        skip_line(c);
    }
    if (ch == EOF) {
        return c->ierr != 0 ? -1 : 0;
    }
    c->row_line = c->line;
    for (;;) {
        /* one field; ch is its first byte */
        if (new_field(c) != 0) {
            return -1;
        }
        while (ch == ' ' || ch == '\t') {
            ch = nextc(c);
        }
        if (ch == '"') {
            if (c->nf == 1) {
                c->first_quoted = 1;
            }
            for (;;) {
                ch = nextc(c);
                if (ch == EOF) {
                    if (c->ierr != 0) {
                        return -1;
                    }
                    log_error(MOD, "%s:%lu: a quoted field is never closed "
                              "(the rest of the file would be one field); "
                              "nothing after this line was read", c->fname,
                              c->row_line);
                    return -1;
                }
                if (ch == '"') {
                    if (peekc(c) != '"') {
                        break;
                    }
                    c->ipos++;
                } else if (ch == '\r' || ch == '\n') {
                    c->line++;
                    if (ch == '\r' && peekc(c) == '\n') {
                        if (put(c, '\r') != 0) {
                            return -1;
                        }
                        ch = nextc(c);
                    }
                } else if (ch == '\0') {
                    c->has_nul = 1;
                    continue;
                }
                if (put(c, (char)ch) != 0) {
                    return -1;
                }
            }
            ch = nextc(c);
            while (ch == ' ' || ch == '\t') {
                ch = nextc(c);
            }
            if (ch != ',' && ch != '\r' && ch != '\n' && ch != EOF) {
                if (c->bad_quote == 0) {
                    c->bad_quote = c->nf;
                }
                while (ch != ',' && ch != '\r' && ch != '\n' && ch != EOF) {
                    ch = nextc(c);
                }
            }
        } else {
            size_t start = c->len;
            while (ch != ',' && ch != '\r' && ch != '\n' && ch != EOF) {
                if (ch == '\0') {
                    c->has_nul = 1;
                } else if (put(c, (char)ch) != 0) {
                    return -1;
                }
                ch = nextc(c);
            }
            while (c->len > start &&
                   (c->buf[c->len - 1] == ' ' || c->buf[c->len - 1] == '\t')) {
                c->len--;
            }
        }
        if (put(c, '\0') != 0) {
            return -1;
        }
        if (ch == ',') {
            ch = nextc(c);
            continue;
        }
        if (ch == '\r') {
            eat_lf(c);
        }
        if (ch != EOF) {
            c->line++;
        } else if (c->ierr != 0) {
            return -1;
        }
        return 1;
    }
}

/* A record that is one empty unquoted field: a blank line. */
static int blank(const struct csv *c)
{
    return c->nf == 1 && !c->first_quoted && fieldv(c, 0)[0] == '\0';
}

/* Keeps the digits of a PAN field, dropping spaces and dashes. Returns the
 * digit count, or -1 when any other character is present or it is too
 * long. */
static int pan_digits(const char *in, char *out, size_t outlen)
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        if (*p == ' ' || *p == '-') {
            continue;
        }
        if (!isdigit((unsigned char)*p) || n + 1 >= outlen) {
            return -1;
        }
        out[n++] = *p;
    }
    out[n] = '\0';
    return (int)n;
}

static int expiry_ok(const char *e)
{
    if (strlen(e) != 4) {
        return 0;
    }
    for (int i = 0; i < 4; i++) {
        if (!isdigit((unsigned char)e[i])) {
            return 0;
        }
    }
    int mm = (e[2] - '0') * 10 + (e[3] - '0');
    return mm >= 1 && mm <= 12;
}

/* Header names are printed in errors; one that looks like card data (the
 * file has no header and starts with a card) is named by its column. */
static void name_for_log(const char *name, size_t col, char *out,
                         size_t outlen)
{
    size_t digits = 0;
    for (const char *p = name; *p; p++) {
        digits += isdigit((unsigned char)*p) != 0;
    }
    if (digits >= 6) {
        snprintf(out, outlen, "column %zu", col + 1);
    } else {
        snprintf(out, outlen, "column '%.64s'", name);
    }
}

/* Trims spaces and tabs around a header name in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        s[--n] = '\0';
    }
    return s;
}

/* The columns of a list (SIZE_MAX: absent). */
struct cols {
    size_t n;   /* columns the header names */
    size_t pan, fp, exp, ff;
};

/* Checks the columns the header named against the flags of list_read.
 * Returns 0, or -1 after logging why the list cannot be read. */
static int header_check(const struct csv *c, unsigned flags,
                        const struct cols *k)
{
    if (k->pan != SIZE_MAX && k->fp != SIZE_MAX) {
        log_error(MOD, "%s:%lu: the header names both 'pan' and "
                  "'fingerprint'; a list holds card numbers or fingerprints, "
                  "not both", c->fname, c->row_line);
        return -1;
    }
    if (k->pan == SIZE_MAX && k->fp == SIZE_MAX) {
        log_error(MOD, "%s:%lu: the header has no column 'pan'%s", c->fname,
                  c->row_line,
                  (flags & LIST_FINGERPRINTS) ? " or 'fingerprint'" : "");
        return -1;
    }
    if (k->fp != SIZE_MAX && !(flags & LIST_FINGERPRINTS)) {
        log_error(MOD, "%s is a fingerprint list; this command needs card "
                  "numbers (line %lu names column 'fingerprint', not 'pan')",
                  c->fname, c->row_line);
        return -1;
    }
    if (k->fp != SIZE_MAX && k->exp != SIZE_MAX) {
        log_error(MOD, "%s:%lu: a fingerprint list cannot have column "
                  "'expiry' (expiries are taken only with their card "
                  "numbers); remove the column", c->fname, c->row_line);
        return -1;
    }
    if (k->exp == SIZE_MAX && (flags & LIST_WARN_NO_EXPIRY)) {
        log_warn(MOD, "%s: no 'expiry' column although the breach exposed "
                 "expiry; expiry matches will be unknown", c->fname);
    }
    return 0;
}

/* Reads the header: finds 'pan' or 'fingerprint', 'expiry' and
 * 'first_fraud', refuses a name given twice. Returns 0, or -1 after
 * logging why. */
static int read_header(struct csv *c, unsigned flags, struct cols *k)
{
    int r;
    do {
        r = csv_record(c);
    } while (r == 1 && blank(c));
    if (r < 0) {
        return -1;
    }
    if (r == 0) {
        log_error(MOD, "%s:1: empty file (no header); expected a header "
                  "with column 'pan'%s", c->fname,
                  (flags & LIST_FINGERPRINTS) ? " or 'fingerprint'" : "");
        return -1;
    }
    k->n = c->nf;
    k->pan = k->fp = k->exp = k->ff = SIZE_MAX;
    for (size_t i = 0; i < c->nf; i++) {
        char *name = trim(c->buf + c->off[i]);
        c->off[i] = (size_t)(name - c->buf);
        if (name[0] == '\0') {
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcasecmp(fieldv(c, j), name) == 0) {
                char what[80];
                name_for_log(name, i, what, sizeof(what));
                log_error(MOD, "%s:%lu: %s is named twice (columns %zu and "
                          "%zu); which one holds the data is unclear: rename "
                          "or remove one", c->fname, c->row_line, what, j + 1,
                          i + 1);
                return -1;
            }
        }
        if (strcasecmp(name, "pan") == 0) {
            k->pan = i;
        } else if (strcasecmp(name, "fingerprint") == 0) {
            k->fp = i;
        } else if (strcasecmp(name, "expiry") == 0) {
            k->exp = i;
        } else if (strcasecmp(name, "first_fraud") == 0) {
            k->ff = i;
        } else if (strcasecmp(name, "cvv") == 0 ||
                   strcasecmp(name, "cvv2") == 0) {
            log_warn(MOD, "%s:%lu: column '%s' is ignored: cardwatch never "
                     "stores a CVV", c->fname, c->row_line, name);
        }
    }
    return header_check(c, flags, k);
}

/* Why a record cannot be a row, or NULL. why gets the text. */
static const char *row_fault(const struct csv *c, size_t ncols, char *why,
                             size_t whylen)
{
    if (c->has_nul) {
        return "NUL byte in the row";
    }
    if (c->bad_quote != 0) {
        snprintf(why, whylen, "text after a closing quote in column %zu",
                 c->bad_quote);
        return why;
    }
    for (size_t i = ncols; i < c->nf; i++) {
        if (fieldv(c, i)[0] != '\0') {
            snprintf(why, whylen, "%zu fields, the header has %zu (a comma "
                     "in an unquoted field?)", c->nf, ncols);
            return why;
        }
    }
    return NULL;
}

/* Field col of the record, "" when the column is absent or the row is
 * shorter. */
static const char *field_or_empty(const struct csv *c, size_t col)
{
    return col < c->nf ? fieldv(c, col) : "";
}

const char *list_key_id_shown(const char *kid)
{
    size_t digits = 0;
    for (const char *p = kid; *p; p++) {
        digits += text_is_digit(*p);
    }
    return digits < CARD_PAN_MIN ? kid : "(key id not shown)";
}

/* Parses a fingerprint field "<key_id>:<32 hex>" (hex in either case):
 * the key id into kid, the hex lowercased into hex. Returns 1, or 0 with
 * why the field is no fingerprint in why - showing at most the key id
 * (not when it holds 13 digits or more: a card number put there) and the
 * first 8 hex after it. */
static int fp_parse(const char *in, char kid[CARD_KEY_ID_MAX + 1],
                    char hex[CARD_FP_SIZE], char *why, size_t whylen)
{
    const char *colon = strchr(in, ':');
    size_t klen = colon != NULL ? (size_t)(colon - in) : 0;
    if (in[0] == '\0') {
        snprintf(why, whylen, "no fingerprint");
        return 0;
    }
    if (colon == NULL || !card_key_id_valid(in, klen)) {
        snprintf(why, whylen, "fingerprint is not <key_id>:<32 hex> (%s)",
                 colon == NULL ? "no ':'"
                               : "the key id is not 1-32 of A-Z a-z 0-9 _ -");
        return 0;
    }
    memcpy(kid, in, klen);
    kid[klen] = '\0';
    const char *h = colon + 1;
    size_t n = 0;
    while (n < CARD_FP_HEX_LEN && text_hex_val(h[n]) >= 0) {
        hex[n] = (char)tolower((unsigned char)h[n]);
        n++;
    }
    hex[n] = '\0';
    if (n == CARD_FP_HEX_LEN && h[n] == '\0') {
        return 1;
    }
    snprintf(why, whylen, "fingerprint %s:%.8s%s is not <key_id>:<32 hex>",
             list_key_id_shown(kid), hex,
             n > 8 || h[n] != '\0' ? "..." : "");
    return 0;
}

/* The card of an accepted record: its PAN checked (a fingerprint list:
 * its fingerprint) and expiry, then handed to fn. Returns 1 to stop
 * reading (fn asked to), else 0 (the row taken or rejected). */
static int take_row(struct csv *c, const struct cols *k, list_row_fn fn,
                    void *arg, struct list_stats *st)
{
    char why[160];
    struct list_row row = {NULL, 0, "", c->row_line, NULL, NULL,
                           field_or_empty(c, k->ff)};
    if (k->fp != SIZE_MAX) {
        char kid[CARD_KEY_ID_MAX + 1], hex[CARD_FP_SIZE];
        if (!fp_parse(field_or_empty(c, k->fp), kid, hex, why, sizeof(why))) {
            log_warn(MOD, "%s:%lu: rejected: %s", c->fname, c->row_line, why);
            st->rejected++;
            return 0;
        }
        row.key_id = kid;
        row.fingerprint = hex;
        return fn(arg, &row) != 0;
    }
    char pan[CARD_PAN_MAX + 2];
    int n = k->pan < c->nf ? pan_digits(fieldv(c, k->pan), pan, sizeof(pan))
                           : -1;
    if (n < CARD_PAN_MIN || n > CARD_PAN_MAX) {
        log_warn(MOD, "%s:%lu: rejected: PAN is not %d-%d digits", c->fname,
                 c->row_line, CARD_PAN_MIN, CARD_PAN_MAX);
        st->rejected++;
        memset(pan, 0, sizeof(pan));
        return 0;
    }
    char masked[CARD_MASK_SIZE];
    card_mask(pan, (size_t)n, masked);
    if (!card_luhn_ok(pan, (size_t)n)) {
        log_warn(MOD, "%s:%lu: rejected: PAN %s fails the Luhn check",
                 c->fname, c->row_line, masked);
        st->rejected++;
        memset(pan, 0, sizeof(pan));
        return 0;
    }
    const char *exp = field_or_empty(c, k->exp);
    if (exp[0] != '\0' && !expiry_ok(exp)) {
        log_warn(MOD, "%s:%lu: expiry of %s is not YYMM; card loaded without "
                 "expiry", c->fname, c->row_line, masked);
        st->no_expiry++;
        exp = "";
    }
    row.pan = pan;
    row.len = (size_t)n;
    row.expiry = exp;
    int stop = fn(arg, &row);
    memset(pan, 0, sizeof(pan));
    return stop != 0;
}

int list_read(const char *path, unsigned flags, list_row_fn fn, void *arg,
              struct list_stats *st)
{
    int rc = -1;
    memset(st, 0, sizeof(*st));
    int is_stdin = strcmp(path, "-") == 0;
    struct csv c = {.fname = is_stdin ? "<stdin>" : path, .line = 1};
    c.f = is_stdin ? stdin : fopen(path, "r");
    if (c.f == NULL) {
        log_error(MOD, "%s: %s", path, strerror(errno));
        return -1;
    }
    c.in = malloc(IN_SIZE);
    if (c.in == NULL) {
        log_error(MOD, "%s: out of memory", c.fname);
        goto out;
    }
    /* A UTF-8 byte order mark (spreadsheet exports) is not data. */
    if (fill(&c) && c.ilen >= 3 && memcmp(c.in, "\xEF\xBB\xBF", 3) == 0) {
        c.ipos = 3;
    }
    struct cols k;
    if (read_header(&c, flags, &k) != 0) {
        goto out;
    }
    st->fingerprints = k.fp != SIZE_MAX;
    int r;
    while ((r = csv_record(&c)) == 1) {
        if (blank(&c)) {
            continue;
        }
        st->rows++;
        char why[128];
        const char *fault = row_fault(&c, k.n, why, sizeof(why));
        if (fault != NULL) {
            log_warn(MOD, "%s:%lu: rejected: %s", c.fname, c.row_line, fault);
            st->rejected++;
            continue;
        }
        if (take_row(&c, &k, fn, arg, st)) {
            goto out;
        }
    }
    if (r < 0) {
        goto out; /* logged */
    }
    rc = 0;
out:
    wipe(&c);
    free(c.buf);
    free(c.off);
    if (c.in != NULL) {
        memset(c.in, 0, IN_SIZE); /* the file's bytes: PANs */
    }
    free(c.in);
    if (!is_stdin) {
        fclose(c.f);
    }
    return rc;
}
