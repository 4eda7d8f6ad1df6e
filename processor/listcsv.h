/* listcsv.h - reading a breach list: CSV with a header naming column
 * 'pan' and optionally 'expiry' (YYMM) (pure but for the file).
 *
 * Used by `cardwatch load` and `cardwatch rules test`. The format is RFC
 * 4180: a row ends at CRLF, LF or a bare CR (or the end of the file); a
 * field in double quotes may hold commas, line breaks and doubled quotes
 * (one quote each); spaces and tabs around a field are dropped. A leading
 * UTF-8 byte order mark is skipped; blank lines and lines starting with
 * '#' are not rows. Column names are matched without regard to case; a
 * header that names a column twice is refused (which one holds the data
 * would be a guess). Line numbers count every row end, those inside
 * quoted fields too, so "file:line" is where the row starts in an editor.
 *
 * A row is rejected - reported as "file:line: rejected: ..." with the PAN
 * masked, counted and skipped - when its PAN is not 13-19 digits (spaces
 * and dashes dropped) or fails the Luhn check, when it holds a NUL byte,
 * text after a closing quote, or more non-empty fields than the header
 * has columns (a comma in an unquoted field would shift the columns). An
 * expiry that is not YYMM is reported and the row passed on without
 * expiry. The PAN handed to the callback is wiped right after the call;
 * the read buffers are wiped before list_read returns.
 */
#ifndef CARDWATCH_LISTCSV_H
#define CARDWATCH_LISTCSV_H

#include <stddef.h>
#include <stdint.h>

/* The longest record read, in bytes (its fields and quoted line breaks
 * included). A longer one stops the read: it is no breach-list row, most
 * likely a quote that is never closed. */
#define LIST_ROW_MAX 65536

struct list_row {
    const char *pan; /* digits only; borrowed for the call */
    size_t len;
    const char *expiry; /* "YYMM", or "" when the row has none */
    unsigned long line;  /* where the row starts (the header is line 1) */
};

struct list_stats {
    uint64_t rows;      /* data rows read (not blank or comment lines) */
    uint64_t rejected;  /* rows reported and skipped */
    uint64_t no_expiry; /* rows passed on without their bad expiry */
};

/* Called once per accepted row; a non-zero return stops reading (and
 * list_read returns -1). */
typedef int (*list_row_fn)(void *arg, const struct list_row *row);

/* Reads path ("-" = stdin) and calls fn once per accepted row, in file
 * order. warn_no_expiry: warn when the header has no 'expiry' column.
 * Fills *st (zeroed first; on failure it counts the rows up to the
 * stop), so that rows = accepted + rejected when 0 is returned. Returns
 * 0, or -1 after logging an error that names the place: an unreadable
 * file, an empty file, no 'pan' column, a column named twice, a quoted
 * field never closed or a row over LIST_ROW_MAX bytes (both name the line
 * where the row starts), a read error, no memory, or a stop from fn (not
 * logged here: fn says why). */
int list_read(const char *path, int warn_no_expiry, list_row_fn fn,
              void *arg, struct list_stats *st);

#endif
