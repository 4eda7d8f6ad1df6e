/* listcsv.h - reading a breach list: CSV with a header naming column
 * 'pan' and optionally 'expiry' (YYMM) (pure but for the file).
 *
 * Used by `cardwatch load` and `cardwatch rules test`. A row whose PAN is
 * not 13-19 digits or fails the Luhn check is reported as
 * "file:line: rejected: ..." with the PAN masked and skipped; an expiry
 * that is not YYMM is reported and the row passed on without expiry. The
 * PAN handed to the callback is wiped right after the call.
 */
#ifndef CARDWATCH_LISTCSV_H
#define CARDWATCH_LISTCSV_H

#include <stddef.h>
#include <stdint.h>

struct list_row {
    const char *pan; /* digits only; borrowed for the call */
    size_t len;
    const char *expiry; /* "YYMM", or "" when the row has none */
    unsigned long line;
};

struct list_stats {
    uint64_t rows;     /* data rows read */
    uint64_t rejected; /* rows skipped for their PAN */
    uint64_t no_expiry; /* rows passed on without their bad expiry */
};

/* Called once per accepted row; a non-zero return stops reading (and
 * list_read returns -1). */
typedef int (*list_row_fn)(void *arg, const struct list_row *row);

/* Reads path ("-" = stdin). warn_no_expiry: warn when the header has no
 * 'expiry' column. Fills *st. Returns 0, or -1 after logging an error
 * that names the place (unreadable file, no header, no 'pan' column, a
 * stop from fn). */
int list_read(const char *path, int warn_no_expiry, list_row_fn fn,
              void *arg, struct list_stats *st);

#endif
