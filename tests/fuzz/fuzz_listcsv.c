/* fuzz_listcsv.c - libFuzzer target for the breach-list CSV reader
 * (list_read in listcsv.h), through its public API only.
 * Input: byte 0 = options (bit 0: LIST_WARN_NO_EXPIRY; bits 1-4: stop
 * after that many accepted rows, 0 = never; bit 5: LIST_FINGERPRINTS),
 * the rest = the file. The file is a memfd read through /proc/self/fd/N
 * (list_read takes a path).
 * Invariants: no crash, leak or sanitizer report; list_read returns 0 or
 * -1; every accepted row has a PAN of CARD_PAN_MIN..CARD_PAN_MAX digits
 * that passes the Luhn check, an expiry that is "" or YYMM with a month
 * 01-12 - or, only when bit 5 allows fingerprint lists, no PAN or expiry
 * but a valid key id and 32 lowercase hex - and a line number above the
 * previous row's, at least 2 (the header is line 1) and at most the
 * file's line count (a line ends at CRLF, LF or a bare CR, as listcsv.h
 * says); the statistics add up (rows = accepted + rejected when the file
 * was read to its end, no_expiry <= accepted); a stop from the callback
 * makes it return -1 right after that row. Logs are switched off (they
 * would fill the fuzz log): the messages are checked by the unit and
 * end-to-end tests. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "card.h"
#include "listcsv.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
    uint64_t accepted;
    uint64_t stop_at; /* 0 = never */
    unsigned long last_line;
    unsigned long max_line;
    int fingerprints; /* LIST_FINGERPRINTS was given */
};

static void need(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "invariant broken: %s\n", what);
        abort();
    }
}

static int on_row(void *arg, const struct list_row *row)
{
    struct seen *s = arg;

    need(row->expiry != NULL && row->first_fraud != NULL, "row fields set");
    if (row->fingerprint != NULL) {
        need(s->fingerprints, "a fingerprint row only when allowed");
        need(row->pan == NULL && row->len == 0 && row->expiry[0] == '\0',
             "a fingerprint row has no PAN or expiry");
        need(row->key_id != NULL &&
                 card_key_id_valid(row->key_id, strlen(row->key_id)),
             "a valid key id");
        need(strlen(row->fingerprint) == CARD_FP_HEX_LEN,
             "fingerprint of 32 hex");
        for (size_t i = 0; i < CARD_FP_HEX_LEN; i++) {
            char ch = row->fingerprint[i];
            need((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'),
                 "fingerprint is lowercase hex");
        }
        need(row->line >= 2 && row->line > s->last_line &&
                 row->line <= s->max_line,
             "line numbers increase within the file");
        s->last_line = row->line;
        s->accepted++;
        return s->stop_at != 0 && s->accepted == s->stop_at;
    }
    need(row->pan != NULL && row->key_id == NULL, "a PAN row");
    need(row->len >= CARD_PAN_MIN && row->len <= CARD_PAN_MAX,
         "PAN of 13-19 digits");
    for (size_t i = 0; i < row->len; i++) {
        need(row->pan[i] >= '0' && row->pan[i] <= '9', "PAN is digits only");
    }
    need(card_luhn_ok(row->pan, row->len), "PAN passes Luhn");
    if (row->expiry[0] != '\0') {
        const char *e = row->expiry;
        need(strlen(e) == 4, "expiry is YYMM");
        for (int i = 0; i < 4; i++) {
            need(e[i] >= '0' && e[i] <= '9', "expiry is digits");
        }
        int mm = (e[2] - '0') * 10 + (e[3] - '0');
        need(mm >= 1 && mm <= 12, "expiry month 01-12");
    }
    need(row->line >= 2 && row->line > s->last_line &&
             row->line <= s->max_line,
         "line numbers increase within the file");
    s->last_line = row->line;
    s->accepted++;
    return s->stop_at != 0 && s->accepted == s->stop_at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    struct list_stats st;
    struct seen s;

    if (size < 1) {
        return 0;
    }
    if (fd < 0) {
        /* Above LOG_ERROR: nothing is written. */
        log_set_level((enum log_level)(LOG_ERROR + 1));
        fd = memfd_create("fuzz_listcsv", 0);
        need(fd >= 0, "memfd_create");
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    need(ftruncate(fd, 0) == 0 &&
             (n == 0 || pwrite(fd, d, n, 0) == (ssize_t)n),
         "write the memfd");

    memset(&s, 0, sizeof(s));
    s.stop_at = (data[0] >> 1) & 15;
    s.max_line = 1;
    for (size_t i = 0; i < n; i++) { /* row ends: CRLF, LF, bare CR */
        s.max_line +=
            d[i] == '\n' || (d[i] == '\r' && (i + 1 == n || d[i + 1] != '\n'));
    }
    memset(&st, 0xa5, sizeof(st));
    unsigned flags = (data[0] & 1 ? LIST_WARN_NO_EXPIRY : 0) |
                     (data[0] & 32 ? LIST_FINGERPRINTS : 0);
    s.fingerprints = (flags & LIST_FINGERPRINTS) != 0;
    int rc = list_read(path, flags, on_row, &s, &st);
    need(rc == 0 || rc == -1, "returns 0 or -1");
    need(st.rejected <= st.rows && st.no_expiry <= s.accepted &&
             s.accepted <= st.rows,
         "statistics within rows");
    if (s.stop_at != 0 && s.accepted == s.stop_at) {
        need(rc == -1, "a stop from the callback fails the read");
    } else if (rc == 0) {
        need(st.rows == s.accepted + st.rejected,
             "rows = accepted + rejected");
    }
    return 0;
}
