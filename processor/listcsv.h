/* listcsv.h - reading a list of cards: CSV with a header naming column
 * 'pan' (card numbers) or 'fingerprint' (keyed fingerprints), optionally
 * 'expiry' (YYMM; card numbers only) and 'first_fraud' (pure but for the
 * file).
 *
 * Used by `cardwatch load`, `gen`, `rules test` and `cpp`. The format is
 * RFC 4180: a row ends at CRLF, LF or a bare CR (or the end of the file);
 * a field in double quotes may hold commas, line breaks and doubled
 * quotes (one quote each); spaces and tabs around a field are dropped. A
 * leading UTF-8 byte order mark is skipped; blank lines and lines
 * starting with '#' are not rows. Column names are matched without regard
 * to case; a header that names a column twice is refused (which one holds
 * the data would be a guess), and so is one naming both 'pan' and
 * 'fingerprint', or 'fingerprint' with 'expiry'. Line numbers count every
 * row end, those inside quoted fields too, so "file:line" is where the
 * row starts in an editor.
 *
 * A fingerprint is written as in alerts: "<key_id>:<32 hex>" (card.h's
 * card_fingerprint under the key with that id; upper-case hex accepted).
 * A fingerprint list is read only when the caller allows it
 * (LIST_FINGERPRINTS); otherwise it is refused with "FILE is a fingerprint
 * list; this command needs card numbers".
 *
 * A row is rejected - reported as "file:line: rejected: ..." (a PAN
 * masked; of a fingerprint at most its key id and first 8 hex), counted
 * and skipped - when its PAN is not 13-19 digits (spaces and dashes
 * dropped) or fails the Luhn check, when its fingerprint is not
 * "<key_id>:<32 hex>" (key id: 1-32 of [A-Za-z0-9_-], as a key file's),
 * when it holds a NUL byte, text after a closing quote, or more non-empty
 * fields than the header has columns (a comma in an unquoted field would
 * shift the columns). An expiry that is not YYMM is reported and the row
 * passed on without expiry. 'first_fraud' is passed on as written (the
 * caller parses it). The PAN handed to the callback is wiped right after
 * the call; the read buffers are wiped before list_read returns.
 */
#ifndef CARDWATCH_LISTCSV_H
#define CARDWATCH_LISTCSV_H

#include <stddef.h>
#include <stdint.h>

/* The longest record read, in bytes (its fields and quoted line breaks
 * included). A longer one stops the read: it is no breach-list row, most
 * likely a quote that is never closed. */
#define LIST_ROW_MAX 65536

/* One accepted row. Every pointer is borrowed for the call only. */
struct list_row {
    const char *pan;    /* digits only; NULL in a fingerprint list */
    size_t len;         /* of pan; 0 in a fingerprint list */
    const char *expiry; /* "YYMM", or "" when the row has none */
    unsigned long line; /* where the row starts (the header is line 1) */
    /* A fingerprint list's card: its key id ([A-Za-z0-9_-]{1,32}) and
     * fingerprint (32 lowercase hex); both NULL in a list of PANs. */
    const char *key_id;
    const char *fingerprint;
    const char *first_fraud; /* the column as written, "" when absent */
};

struct list_stats {
    uint64_t rows;      /* data rows read (not blank or comment lines) */
    uint64_t rejected;  /* rows reported and skipped */
    uint64_t no_expiry; /* rows passed on without their bad expiry */
    int fingerprints;   /* 1: the header names 'fingerprint' */
};

/* Flags of list_read. */
#define LIST_WARN_NO_EXPIRY 1u /* warn when there is no 'expiry' column */
#define LIST_FINGERPRINTS 2u   /* a fingerprint list may be read */

/* Called once per accepted row; a non-zero return stops reading (and
 * list_read returns -1). */
typedef int (*list_row_fn)(void *arg, const struct list_row *row);

/* Reads path ("-" = stdin) and calls fn once per accepted row, in file
 * order. flags: LIST_* above (0: a list of PANs, no warning). Fills *st
 * (zeroed first; on failure it counts the rows up to the stop), so that
 * rows = accepted + rejected when 0 is returned. Returns 0, or -1 after
 * logging an error that names the place: an unreadable file, an empty
 * file, no 'pan' (or 'fingerprint') column, both, a fingerprint list the
 * flags do not allow or one with an 'expiry' column, a column named
 * twice, a quoted field never closed or a row over LIST_ROW_MAX bytes
 * (both name the line where the row starts), a read error, no memory, or
 * a stop from fn (not logged here: fn says why). */
int list_read(const char *path, unsigned flags, list_row_fn fn, void *arg,
              struct list_stats *st);

/* How a key id read from a list may be shown in a message: kid itself,
 * or "(key id not shown)" when it holds 13 digits or more (a card number
 * put in the column). Returns kid or a static string. */
const char *list_key_id_shown(const char *kid);

#endif
