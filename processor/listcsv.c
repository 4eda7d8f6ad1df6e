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

#define MOD "list"

/* ---- CSV ---- */

/* Splits line into at most max fields at commas; strips spaces and one
 * pair of double quotes around each field. Modifies line. */
static int split_csv(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    while (n < max) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        char *start = p;
        int quoted = *p == '"';
        if (quoted) {
            start = ++p;
            while (*p && *p != '"') {
                p++;
            }
            char *end = p;
            if (*p == '"') {
                p++;
            }
            *end = '\0';
            while (*p && *p != ',') {
                p++;
            }
        } else {
            while (*p && *p != ',') {
                p++;
            }
        }
        char *next = *p ? p + 1 : NULL;
        if (*p == ',') {
            *p = '\0';
        }
        /* trim the tail */
        size_t len = strlen(start);
        while (len > 0 && isspace((unsigned char)start[len - 1])) {
            start[--len] = '\0';
        }
        fields[n++] = start;
        if (next == NULL) {
            break;
        }
        p = next;
    }
    return n;
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

int list_read(const char *path, int warn_no_expiry, list_row_fn fn,
              void *arg, struct list_stats *st)
{
    int rc = -1;
    char *line = NULL;
    size_t cap = 0;
    char *fields[64];
    memset(st, 0, sizeof(*st));
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    const char *fname = strcmp(path, "-") == 0 ? "<stdin>" : path;
    if (f == NULL) {
        log_error(MOD, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (getline(&line, &cap, f) < 0) {
        log_error(MOD, "%s:1: empty file; expected a header with column "
                  "'pan'", fname);
        goto out;
    }
    line[strcspn(line, "\r\n")] = '\0';
    int nf = split_csv(line, fields, 64);
    int col_pan = -1, col_exp = -1;
    for (int i = 0; i < nf; i++) {
        if (strcasecmp(fields[i], "pan") == 0) {
            col_pan = i;
        } else if (strcasecmp(fields[i], "expiry") == 0) {
            col_exp = i;
        } else if (strcasecmp(fields[i], "cvv") == 0 ||
                   strcasecmp(fields[i], "cvv2") == 0) {
            log_warn(MOD, "%s:1: column '%s' is ignored: cardwatch never "
                     "stores a CVV", fname, fields[i]);
        }
    }
    if (col_pan < 0) {
        log_error(MOD, "%s:1: the header has no column 'pan'", fname);
        goto out;
    }
    if (col_exp < 0 && warn_no_expiry) {
        log_warn(MOD, "%s: no 'expiry' column although the breach exposed "
                 "expiry; expiry matches will be unknown", fname);
    }
    unsigned long lineno = 1;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#') {
            continue;
        }
        st->rows++;
        nf = split_csv(line, fields, 64);
        char pan[CARD_PAN_MAX + 2];
        int n = col_pan < nf ? pan_digits(fields[col_pan], pan, sizeof(pan))
                             : -1;
        if (n < CARD_PAN_MIN || n > CARD_PAN_MAX) {
            log_warn(MOD, "%s:%lu: rejected: PAN is not %d-%d digits", fname,
                     lineno, CARD_PAN_MIN, CARD_PAN_MAX);
            st->rejected++;
            continue;
        }
        char masked[CARD_MASK_SIZE];
        card_mask(pan, (size_t)n, masked);
        if (!card_luhn_ok(pan, (size_t)n)) {
            log_warn(MOD, "%s:%lu: rejected: PAN %s fails the Luhn check",
                     fname, lineno, masked);
            st->rejected++;
            memset(pan, 0, sizeof(pan));
            continue;
        }
        const char *exp = "";
        if (col_exp >= 0 && col_exp < nf && fields[col_exp][0] != '\0') {
            if (expiry_ok(fields[col_exp])) {
                exp = fields[col_exp];
            } else {
                log_warn(MOD, "%s:%lu: expiry of %s is not YYMM; card "
                         "loaded without expiry", fname, lineno, masked);
                st->no_expiry++;
            }
        }
        struct list_row row = {pan, (size_t)n, exp, lineno};
        int stop = fn(arg, &row);
        memset(pan, 0, sizeof(pan));
        /* The line buffer held the PAN too. */
        memset(line, 0, cap);
        if (stop) {
            goto out;
        }
    }
    rc = 0;
out:
    if (line != NULL) {
        memset(line, 0, cap);
    }
    free(line);
    if (f != stdin) {
        fclose(f);
    }
    return rc;
}
