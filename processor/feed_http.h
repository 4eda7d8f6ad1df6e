/* feed_http.h - the request-head gate of the issuer feed (feed.c): a
 * strict, incremental HTTP/1.1 request-head parser that decides from the
 * raw bytes whether evhttp may see a request at all.
 *
 * Why a parser of our own: evhttp (libevent 2.1.12) reads a request before
 * the feed's callback runs, and on the way it keeps, or silently repairs,
 * what makes the framing of a request ambiguous (http.c,
 * evhttp_parse_headers_ and evhttp_get_body_length):
 *   - every header line is kept, duplicates included, each name as sent;
 *     evhttp_find_header() returns the FIRST of two Content-Length (or
 *     Authorization) headers, so the bytes a proxy that takes the last
 *     one counts as body were run as a second request;
 *   - "Transfer-Encoding : chunked" is stored under the name
 *     "Transfer-Encoding " (space kept), which no lookup matches: ignored;
 *   - Content-Length goes through strtoll: "+24" and " 24" are 24;
 *   - a line starting with SP or HTAB (obs-fold) is glued to the previous
 *     value with one space: the headers no longer show it;
 *   - lines are handled as C strings: a NUL ends a value, and the bytes
 *     after it on that line vanish without a trace;
 *   - a bare LF ends a line, a bare CR stays inside a value, and spaces at
 *     the end of the request line are trimmed.
 * Where evhttp loses the evidence, the headers it hands over cannot show
 * it, so feed.c holds every byte back from evhttp (an input-buffer
 * callback on the connection's bufferevent) until this parser has read the
 * whole head: evhttp then gets only heads accepted here, followed by
 * exactly content_length body bytes, and one request at a time.
 *
 * Accepted: up to FEED_HTTP_LEADING_CRLF empty lines, then
 *   method SP request-target SP HTTP-version CRLF
 * (method a token of at most FEED_HTTP_METHOD_MAX characters, target
 * visible ASCII, version HTTP/1.0 or HTTP/1.1), header lines
 *   field-name ":" OWS field-value OWS CRLF
 * (name a token, nothing between it and the colon; value bytes HTAB, SP,
 * 0x21-0x7E or 0x80-0xFF), an empty line; FEED_HTTP_HEAD_MAX bytes at most.
 * Refused, with 400 unless said: any other control byte (NUL, DEL, CR or
 * LF alone); a folded line; whitespace before a colon; a Content-Length
 * that is not 1*DIGIT (no sign, no list) or given twice, even with the
 * same value; Transfer-Encoding with Content-Length; Transfer-Encoding
 * alone (411: a body must come with Content-Length; the feed's bodies are
 * small JSON); Transfer-Encoding, Authorization, Host or Last-Event-ID
 * twice; a body on HEAD or TRACE (evhttp reads none: it would be the next
 * request); a longer head (431).
 *
 * Pure: no I/O, no allocation, no clock; bytes may come in any pieces.
 */
#ifndef CARDWATCH_FEED_HTTP_H
#define CARDWATCH_FEED_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define FEED_HTTP_HEAD_MAX 8192    /* bytes of a head, leading CRLFs included */
#define FEED_HTTP_METHOD_MAX 16    /* characters of a method */
#define FEED_HTTP_PATH_KEEP 96     /* the path kept for the log, with NUL */
#define FEED_HTTP_LEADING_CRLF 4   /* empty lines skipped before a request */
#define FEED_HTTP_BODY_HUGE UINT64_MAX /* content_length of 16+ digits */

enum feed_http_result {
    FEED_HTTP_MORE = 0, /* all bytes taken; the head goes on */
    FEED_HTTP_DONE,     /* the head ended and is accepted */
    FEED_HTTP_BAD,      /* refused: status and error say why */
};

/* One request head being read. Zero it (or feed_http_head_init) per
 * request; the fields below the line are the parser's own. */
struct feed_http_head {
    /* After DONE; method and path also after BAD once the request line
     * had come that far (else ""). */
    char method[FEED_HTTP_METHOD_MAX + 1];
    char path[FEED_HTTP_PATH_KEEP]; /* the target up to '?' or '#', cut */
    uint64_t content_length; /* 0 when absent; FEED_HTTP_BODY_HUGE */
    int status;              /* after BAD: 400, 411 or 431 */
    const char *error;       /* after BAD: for the client (static text) */
    size_t len;              /* bytes of the head taken so far */
    size_t skip;             /* of those, the empty lines before the
                                request line (evhttp refuses them) */
    /* ---- parser state ---- */
    int st, res;
    size_t n_method, n_path, n_version, n_lead;
    char name[24]; /* the header name being read, lower case, cut */
    size_t n_name;
    int cur;      /* which watched header the line is (-1: none) */
    unsigned seen; /* bit per watched header */
    int cl_st;    /* Content-Length value: 0 none yet, 1 digits, 2 after */
    int in_path;  /* still copying the path (no '?' or '#' yet) */
};

/* Starts a new head in h. */
void feed_http_head_init(struct feed_http_head *h);

/* Reads buf[0..n) as the next bytes of h's head. Returns FEED_HTTP_MORE
 * when all n bytes were taken and the head goes on (*used = n),
 * FEED_HTTP_DONE when it ended inside buf (*used = bytes up to and
 * including its last LF; what follows is the body or the next request)
 * and FEED_HTTP_BAD when it is refused (*used = bytes taken before the
 * offending one; h->status, h->error). After DONE or BAD, further calls
 * return the same result and take nothing. */
enum feed_http_result feed_http_head_parse(struct feed_http_head *h,
                                           const char *buf, size_t n,
                                           size_t *used);

#endif
