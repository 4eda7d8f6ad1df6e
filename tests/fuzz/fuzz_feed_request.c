/* fuzz_feed_request.c - libFuzzer target for what the issuer feed parses
 * from a request (feed_query.c, feed_token.c, feed_outcome.c): query
 * strings, cursors, Authorization values and outcome bodies all come from
 * the network.
 * Input: byte 0 = options (bit 0: the stream's query rules), the rest =
 * the data, given to every parser.
 * Invariants: no crash or sanitizer report; accepted parameters are in
 * range and consistent (before only with order=newest, newest never
 * waits, the stream takes only after); refusals carry a message of
 * printable ASCII (it goes into a JSON answer); a parsed cursor formats
 * to text that parses back to the same cursor; a bearer token lies inside
 * the header value and is not empty; an accepted outcome body has a known
 * outcome and a note feed_note_valid accepts. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feed_outcome.h"
#include "feed_query.h"
#include "feed_token.h"

static void need(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "invariant broken: %s\n", what);
        abort();
    }
}

static void printable(const char *err, size_t cap)
{
    size_t n = strnlen(err, cap);
    need(n > 0 && n < cap, "an error message is set and terminated");
    for (size_t i = 0; i < n; i++) {
        need(err[i] >= 0x20 && err[i] < 0x7f, "error message is printable ASCII");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    int stream = data[0] & 1;
    const char *d = (const char *)data + 1;
    size_t n = size - 1;
    char *s = malloc(n + 1); /* NUL-terminated copy (query, header) */
    if (s == NULL) {
        return 0;
    }
    memcpy(s, d, n);
    s[n] = '\0';

    struct feed_params p;
    char err[160];
    err[0] = '\0';
    if (feed_params_parse(s, 60, stream, &p, err, sizeof(err)) == 0) {
        need(p.limit >= 1 && p.limit <= FEED_LIMIT_MAX, "limit in range");
        need(p.wait_s >= 0 && p.wait_s <= 60, "wait in range");
        need(!p.has_before || p.newest, "before only with order=newest");
        need(!(p.newest && p.wait_s > 0), "order=newest never waits");
        if (stream) {
            need(!p.newest && !p.has_before && !p.outcomes && p.wait_s == 0 &&
                     p.limit == FEED_LIMIT_DEFAULT,
                 "the stream takes only after");
        }
    } else {
        printable(err, sizeof(err));
    }

    struct feed_cursor c, c2;
    if (feed_cursor_parse(d, n, &c) == 0) {
        char buf[FEED_CURSOR_SIZE];
        int len = feed_cursor_format(&c, buf, sizeof(buf));
        need(len > 0 && (size_t)len < sizeof(buf), "cursor formats");
        need(feed_cursor_parse(buf, (size_t)len, &c2) == 0 &&
                 feed_cursor_cmp(&c, &c2) == 0,
             "a formatted cursor parses back to itself");
    }

    const char *tok = NULL;
    size_t tlen = 0;
    if (feed_bearer(s, &tok, &tlen) == 0) {
        need(tok > s && tok + tlen <= s + n && tlen > 0,
             "the token lies inside the header and is not empty");
    }

    enum feed_outcome o;
    char *note = malloc(FEED_NOTE_BYTES);
    if (note != NULL) {
        err[0] = '\0';
        if (feed_outcome_body(d, n, &o, note, err, sizeof(err)) == 0) {
            need((int)o >= 0 && o < FEED_OUTCOME_COUNT, "known outcome");
            need(feed_note_valid(note, strlen(note)), "the note is valid");
        } else {
            printable(err, sizeof(err));
        }
        free(note);
    }
    (void)feed_note_valid(d, n);
    (void)feed_alert_id_valid(d, n);
    free(s);
    return 0;
}
