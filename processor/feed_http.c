/* feed_http.c - see feed_http.h.
 *
 * A byte-at-a-time state machine (as http-parser and llhttp are): a head
 * that arrives one byte per read is never scanned twice, so a slow client
 * costs the same as a fast one.
 */
#include "feed_http.h"

#include <string.h>

enum state {
    S_LEAD,     /* before the request line (empty lines allowed) */
    S_LEAD_LF,  /* CR of an empty leading line seen */
    S_METHOD,
    S_TARGET0,  /* first byte of the target */
    S_TARGET,
    S_VERSION,
    S_RL_LF,    /* CR after the version seen */
    S_LINE,     /* start of a header line, or of the final empty line */
    S_NAME,
    S_OWS,      /* after the colon */
    S_VALUE,
    S_VAL_LF,   /* CR after a value seen */
    S_END_LF,   /* CR of the final empty line seen */
};

/* Headers that may come once: a second copy is refused. */
enum watched {
    W_CONTENT_LENGTH,
    W_TRANSFER_ENCODING,
    W_AUTHORIZATION,
    W_HOST,
    W_LAST_EVENT_ID,
    W_COUNT
};

static const char *const watched_name[W_COUNT] = {
    "content-length", "transfer-encoding", "authorization", "host",
    "last-event-id",
};

static const char *const duplicate_error[W_COUNT] = {
    "duplicate Content-Length header",
    "duplicate Transfer-Encoding header",
    "duplicate Authorization header",
    "duplicate Host header",
    "duplicate Last-Event-ID header",
};

#define E_REQUEST_LINE "malformed request line"
#define E_VERSION "malformed request line: HTTP/1.1 or HTTP/1.0 expected"
#define E_CTL_REQUEST_LINE "control character in the request line"
#define E_CTL_HEADER "control character in a header line"
#define E_BARE_LF "bare LF: every line must end in CRLF"
#define E_BARE_CR "bare CR: every line must end in CRLF"
#define E_FOLD "folded header line (obs-fold) is not accepted"
#define E_COLON_SPACE "whitespace before the colon of a header"
#define E_NO_COLON "header line without a colon"
#define E_NAME "malformed header name"
#define E_CL "invalid Content-Length: digits only, once"
#define E_TE_CL "Transfer-Encoding together with Content-Length"
#define E_TE "a request body needs Content-Length (Transfer-Encoding is not " \
             "accepted)"
#define E_HEAD_BODY "a HEAD or TRACE request cannot have a body"
#define E_TOO_LARGE "request head too large (8 KiB at most)"
#define E_LEADING "too many empty lines before the request"

/* RFC 9110 tchar: the characters of a token. */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
        (c >= 'A' && c <= 'Z')) {
        return 1;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A control byte other than HTAB (C0 and DEL). */
static int is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

void feed_http_head_init(struct feed_http_head *h)
{
    memset(h, 0, sizeof(*h));
    h->st = S_LEAD;
    h->res = FEED_HTTP_MORE;
    h->cur = -1;
    h->in_path = 1;
}

static enum feed_http_result bad(struct feed_http_head *h, int status,
                                 const char *error)
{
    h->status = status;
    h->error = error;
    h->res = FEED_HTTP_BAD;
    return FEED_HTTP_BAD;
}

/* The name just read is complete (at its colon). */
static enum feed_http_result name_done(struct feed_http_head *h)
{
    h->cur = -1;
    for (int w = 0; w < W_COUNT; w++) {
        if (h->n_name == strlen(watched_name[w]) &&
            memcmp(h->name, watched_name[w], h->n_name) == 0) {
            if (h->seen & (1u << w)) {
                return bad(h, 400, duplicate_error[w]);
            }
            h->seen |= 1u << w;
            h->cur = w;
        }
    }
    h->cl_st = 0;
    return FEED_HTTP_MORE;
}

/* One byte of the value of the current header (not OWS before it). */
static enum feed_http_result value_byte(struct feed_http_head *h,
                                        unsigned char c)
{
    if (h->cur != W_CONTENT_LENGTH) {
        return FEED_HTTP_MORE;
    }
    if (c >= '0' && c <= '9') {
        if (h->cl_st == 2) {
            return bad(h, 400, E_CL);
        }
        h->cl_st = 1;
        if (h->content_length >= 100000000000000ull) { /* 15 digits */
            h->content_length = FEED_HTTP_BODY_HUGE;
        } else {
            h->content_length = h->content_length * 10 + (uint64_t)(c - '0');
        }
        return FEED_HTTP_MORE;
    }
    if ((c == ' ' || c == '\t') && h->cl_st == 1) {
        h->cl_st = 2; /* trailing OWS */
        return FEED_HTTP_MORE;
    }
    if ((c == ' ' || c == '\t') && h->cl_st == 2) {
        return FEED_HTTP_MORE;
    }
    return bad(h, 400, E_CL);
}

/* The current header line ended (its LF). */
static enum feed_http_result line_done(struct feed_http_head *h)
{
    if (h->cur == W_CONTENT_LENGTH && h->cl_st == 0) {
        return bad(h, 400, E_CL); /* empty value */
    }
    h->cur = -1;
    return FEED_HTTP_MORE;
}

/* The final empty line came: the checks that need the whole head. */
static enum feed_http_result head_done(struct feed_http_head *h)
{
    int te = (h->seen & (1u << W_TRANSFER_ENCODING)) != 0;
    int cl = (h->seen & (1u << W_CONTENT_LENGTH)) != 0;
    if (te && cl) {
        return bad(h, 400, E_TE_CL);
    }
    if (te) {
        return bad(h, 411, E_TE);
    }
    if (h->content_length > 0 &&
        (strcmp(h->method, "HEAD") == 0 || strcmp(h->method, "TRACE") == 0)) {
        return bad(h, 400, E_HEAD_BODY);
    }
    h->res = FEED_HTTP_DONE;
    return FEED_HTTP_DONE;
}

static enum feed_http_result step(struct feed_http_head *h, unsigned char c);

/* step() in the request line and the empty lines before it. */
static enum feed_http_result step_request_line(struct feed_http_head *h,
                                               unsigned char c)
{
    static const char version[] = "HTTP/1.";
    switch (h->st) {
    case S_LEAD:
        if (c == '\r') {
            h->st = S_LEAD_LF;
            return FEED_HTTP_MORE;
        }
        if (c == '\n') {
            return bad(h, 400, E_BARE_LF);
        }
        if (!is_tchar(c)) {
            return bad(h, 400, is_ctl(c) ? E_CTL_REQUEST_LINE : E_REQUEST_LINE);
        }
        h->st = S_METHOD;
        return step(h, c); /* the byte starts the method */
    case S_METHOD:
        if (c == ' ') {
            h->st = S_TARGET0;
            return FEED_HTTP_MORE;
        }
        if (c == '\r' || c == '\n' || is_ctl(c)) {
            return bad(h, 400,
                       c == '\n'   ? E_BARE_LF
                       : c == '\r' ? E_REQUEST_LINE
                                   : E_CTL_REQUEST_LINE);
        }
        if (!is_tchar(c) || h->n_method >= FEED_HTTP_METHOD_MAX) {
            return bad(h, 400, E_REQUEST_LINE);
        }
        h->method[h->n_method++] = (char)c;
        return FEED_HTTP_MORE;
    case S_LEAD_LF:
        if (c != '\n') {
            return bad(h, 400, E_BARE_CR);
        }
        if (++h->n_lead > FEED_HTTP_LEADING_CRLF) {
            return bad(h, 400, E_LEADING);
        }
        h->skip = 2 * h->n_lead;
        h->st = S_LEAD;
        return FEED_HTTP_MORE;
    case S_TARGET0:
    case S_TARGET:
        if (c == ' ' && h->st == S_TARGET) {
            h->st = S_VERSION;
            return FEED_HTTP_MORE;
        }
        if (c == '\n') {
            return bad(h, 400, E_BARE_LF);
        }
        if (is_ctl(c)) {
            return bad(h, 400, E_CTL_REQUEST_LINE);
        }
        if (c <= 0x20 || c >= 0x7f) {
            return bad(h, 400, E_REQUEST_LINE);
        }
        h->st = S_TARGET;
        if (c == '?' || c == '#') {
            h->in_path = 0;
        }
        if (h->in_path && h->n_path + 1 < sizeof(h->path)) {
            h->path[h->n_path++] = (char)c;
        }
        return FEED_HTTP_MORE;
    case S_VERSION:
        if (h->n_version < sizeof(version) - 1) {
            if (c != (unsigned char)version[h->n_version]) {
                return bad(h, 400,
                           c == '\n'  ? E_BARE_LF
                           : is_ctl(c) ? E_CTL_REQUEST_LINE
                                       : E_VERSION);
            }
            h->n_version++;
            return FEED_HTTP_MORE;
        }
        if (h->n_version == sizeof(version) - 1) {
            if (c != '0' && c != '1') {
                return bad(h, 400, is_ctl(c) ? E_CTL_REQUEST_LINE : E_VERSION);
            }
            h->n_version++;
            return FEED_HTTP_MORE;
        }
        if (c == '\r') {
            h->st = S_RL_LF;
            return FEED_HTTP_MORE;
        }
        return bad(h, 400,
                   c == '\n'   ? E_BARE_LF
                   : is_ctl(c) ? E_CTL_REQUEST_LINE
                               : E_VERSION);
    case S_RL_LF:
        if (c != '\n') {
            return bad(h, 400, E_BARE_CR);
        }
        h->st = S_LINE;
        return FEED_HTTP_MORE;
    default:
        break;
    }
    return bad(h, 400, E_REQUEST_LINE);
}

/* step() in the header lines and the final empty line. */
static enum feed_http_result step_header(struct feed_http_head *h,
                                         unsigned char c)
{
    switch (h->st) {
    case S_LINE:
        if (c == '\r') {
            h->st = S_END_LF;
            return FEED_HTTP_MORE;
        }
        if (c == ' ' || c == '\t') {
            return bad(h, 400, E_FOLD);
        }
        if (c == '\n') {
            return bad(h, 400, E_BARE_LF);
        }
        if (!is_tchar(c)) {
            return bad(h, 400, is_ctl(c) ? E_CTL_HEADER : E_NAME);
        }
        h->st = S_NAME;
        h->n_name = 0;
        return step(h, c);
    case S_NAME:
        if (c == ':') {
            h->st = S_OWS;
            return name_done(h);
        }
        if (c == ' ' || c == '\t') {
            return bad(h, 400, E_COLON_SPACE);
        }
        if (c == '\r' || c == '\n') {
            return bad(h, 400, E_NO_COLON);
        }
        if (!is_tchar(c)) {
            return bad(h, 400, is_ctl(c) ? E_CTL_HEADER : E_NAME);
        }
        if (h->n_name < sizeof(h->name)) {
            h->name[h->n_name] =
                (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        h->n_name++; /* a longer name matches no watched one */
        return FEED_HTTP_MORE;
    case S_OWS:
        if (c == ' ' || c == '\t') {
            return FEED_HTTP_MORE;
        }
        h->st = S_VALUE;
        return step(h, c);
    case S_VALUE:
        if (c == '\r') {
            h->st = S_VAL_LF;
            return FEED_HTTP_MORE;
        }
        if (c == '\n') {
            return bad(h, 400, E_BARE_LF);
        }
        if (is_ctl(c)) {
            return bad(h, 400, E_CTL_HEADER);
        }
        return value_byte(h, c);
    case S_VAL_LF:
        if (c != '\n') {
            return bad(h, 400, E_BARE_CR);
        }
        h->st = S_LINE;
        return line_done(h);
    case S_END_LF:
        if (c != '\n') {
            return bad(h, 400, E_BARE_CR);
        }
        return head_done(h);
    default:
        break;
    }
    return bad(h, 400, E_REQUEST_LINE);
}

/* Advances h by one byte (a byte that ends one state and starts the next
 * is stepped again, once, in the next). */
static enum feed_http_result step(struct feed_http_head *h, unsigned char c)
{
    switch (h->st) {
    case S_LEAD:
    case S_LEAD_LF:
    case S_METHOD:
    case S_TARGET0:
    case S_TARGET:
    case S_VERSION:
    case S_RL_LF:
        return step_request_line(h, c);
    case S_LINE:
    case S_NAME:
    case S_OWS:
    case S_VALUE:
    case S_VAL_LF:
    case S_END_LF:
        return step_header(h, c);
    }
    return bad(h, 400, E_REQUEST_LINE);
}

enum feed_http_result feed_http_head_parse(struct feed_http_head *h,
                                           const char *buf, size_t n,
                                           size_t *used)
{
    *used = 0;
    if (h->res != FEED_HTTP_MORE) {
        return (enum feed_http_result)h->res;
    }
    for (size_t i = 0; i < n; i++) {
        if (h->len >= FEED_HTTP_HEAD_MAX) {
            *used = i;
            return bad(h, 431, E_TOO_LARGE);
        }
        enum feed_http_result r = step(h, (unsigned char)buf[i]);
        if (r == FEED_HTTP_BAD) {
            *used = i;
            return r;
        }
        h->len++;
        if (r == FEED_HTTP_DONE) {
            *used = i + 1;
            return r;
        }
    }
    *used = n;
    return FEED_HTTP_MORE;
}
