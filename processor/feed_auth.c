/* feed_auth.c - see feed_auth.h. */
#include "feed_auth.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "text.h"

#define SHA256_LEN 32

/* ---- tokens ---- */

static int sha256(const void *p, size_t len, uint8_t out[SHA256_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(p, len, out, &n, EVP_sha256(), NULL) != 1 ||
        n != SHA256_LEN) {
        return -1;
    }
    return 0;
}

static void to_hex(const uint8_t *b, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[b[i] >> 4];
        out[2 * i + 1] = hx[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

int feed_token_hash_hex(const void *tok, size_t len,
                        char out[FEED_HASH_HEX + 1])
{
    uint8_t md[SHA256_LEN];
    if (sha256(tok, len, md) != 0) {
        out[0] = '\0';
        return -1;
    }
    to_hex(md, SHA256_LEN, out);
    return 0;
}

int feed_token_encode(const uint8_t *rnd, size_t n, char *out, size_t outlen)
{
    static const char b64u[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t need = (n * 4 + 2) / 3;
    if (n > 64 || outlen < need + 1) {
        return -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)rnd[i] << 16;
        size_t left = n - i;
        if (left > 1) {
            v |= (uint32_t)rnd[i + 1] << 8;
        }
        if (left > 2) {
            v |= rnd[i + 2];
        }
        out[o++] = b64u[(v >> 18) & 63];
        out[o++] = b64u[(v >> 12) & 63];
        if (left > 1) {
            out[o++] = b64u[(v >> 6) & 63];
        }
        if (left > 2) {
            out[o++] = b64u[v & 63];
        }
    }
    out[o] = '\0';
    return (int)o;
}

struct token_entry {
    uint8_t hash[SHA256_LEN];
    size_t issuer;
};

struct feed_tokens {
    struct token_entry *e;
    size_t n;
};

/* Calls fn for every hash in a comma list; stops at the first -1. */
static int each_hash(const char *list, int (*fn)(void *, const char *, size_t),
                     void *arg)
{
    const char *s = list;
    while (*s != '\0') {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (fn(arg, s, n) != 0) {
            return -1;
        }
        s += n;
        if (*s == ',') {
            s++;
        }
    }
    return 0;
}

struct build_ctx {
    struct feed_tokens *t;
    size_t issuer;
    const struct config *c;
    char *errbuf;
    size_t errlen;
    int count_only;
};

static int add_hash(void *arg, const char *s, size_t n)
{
    struct build_ctx *b = arg;
    uint8_t h[SHA256_LEN];
    if (n != FEED_HASH_HEX) {
        text_errf(b->errbuf, b->errlen,
                  "[issuer %s] token_sha256: each "
                  "hash is %d lower-case hex digits",
                  b->c->issuers[b->issuer].id, FEED_HASH_HEX);
        return -1;
    }
    for (size_t i = 0; i < SHA256_LEN; i++) {
        int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            text_errf(b->errbuf, b->errlen,
                      "[issuer %s] token_sha256: "
                      "not lower-case hex",
                      b->c->issuers[b->issuer].id);
            return -1;
        }
        h[i] = (uint8_t)(hi << 4 | lo);
    }
    if (b->count_only) {
        b->t->n++;
        return 0;
    }
    for (size_t i = 0; i < b->t->n; i++) {
        if (memcmp(b->t->e[i].hash, h, SHA256_LEN) == 0) {
            const char *other = b->c->issuers[b->t->e[i].issuer].id;
            const char *me = b->c->issuers[b->issuer].id;
            if (strcmp(other, me) == 0) {
                text_errf(b->errbuf, b->errlen,
                          "[issuer %s] token_sha256 "
                          "lists the same hash twice",
                          me);
            } else {
                text_errf(b->errbuf, b->errlen,
                          "[issuer %s] and [issuer "
                          "%s] have the same token hash: a token may "
                          "belong to one issuer only",
                          other, me);
            }
            return -1;
        }
    }
    memcpy(b->t->e[b->t->n].hash, h, SHA256_LEN);
    b->t->e[b->t->n].issuer = b->issuer;
    b->t->n++;
    return 0;
}

struct feed_tokens *feed_tokens_new(const struct config *c, char *errbuf,
                                    size_t errlen)
{
    struct feed_tokens *t = calloc(1, sizeof(*t));
    struct build_ctx b = {t, 0, c, errbuf, errlen, 1};
    if (t == NULL) {
        text_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    for (int pass = 0; pass < 2; pass++) {
        b.count_only = pass == 0;
        if (pass == 1) {
            t->e = calloc(t->n ? t->n : 1, sizeof(*t->e));
            t->n = 0;
            if (t->e == NULL) {
                text_errf(errbuf, errlen, "out of memory");
                goto err;
            }
        }
        for (size_t i = 0; i < c->n_issuers; i++) {
            b.issuer = i;
            if (each_hash(c->issuers[i].token_sha256, add_hash, &b) != 0) {
                goto err;
            }
        }
    }
    return t;
err:
    feed_tokens_destroy(t);
    return NULL;
}

size_t feed_tokens_count(const struct feed_tokens *t)
{
    return t->n;
}

long feed_tokens_match(const struct feed_tokens *t, const char *tok, size_t len)
{
    uint8_t md[SHA256_LEN];
    if (len == 0 || len > FEED_TOKEN_MAX || sha256(tok, len, md) != 0) {
        return -1;
    }
    size_t idx = 0;
    size_t any = 0;
    for (size_t i = 0; i < t->n; i++) {
        size_t eq = (size_t)(CRYPTO_memcmp(md, t->e[i].hash, SHA256_LEN) == 0);
        size_t mask = (size_t)0 - eq; /* all ones on a match */
        idx = (idx & ~mask) | (i & mask);
        any |= eq;
    }
    OPENSSL_cleanse(md, sizeof(md));
    return any ? (long)idx : -1;
}

size_t feed_tokens_issuer(const struct feed_tokens *t, size_t i)
{
    return t->e[i].issuer;
}

void feed_tokens_destroy(struct feed_tokens *t)
{
    if (t == NULL) {
        return;
    }
    free(t->e);
    free(t);
}

int feed_bearer(const char *hdr, const char **tok, size_t *len)
{
    if (hdr == NULL || strncasecmp(hdr, "Bearer", 6) != 0 || hdr[6] != ' ') {
        return -1;
    }
    const char *s = hdr + 6;
    while (*s == ' ') {
        s++;
    }
    if (*s == '\0') {
        return -1;
    }
    *tok = s;
    *len = strlen(s);
    return 0;
}

int feed_config_check(const struct config *c, char *errbuf, size_t errlen)
{
    if ((c->feed_tls_cert[0] == '\0') != (c->feed_tls_key[0] == '\0')) {
        text_errf(errbuf, errlen,
                  "[feed] tls_cert and tls_key go together: "
                  "set both (HTTPS) or neither (plain HTTP)");
        return -1;
    }
    struct feed_tokens *t = feed_tokens_new(c, errbuf, errlen);
    if (t == NULL) {
        return -1;
    }
    size_t n = t->n;
    feed_tokens_destroy(t);
    if (c->feed_listen[0] != '\0' && n == 0) {
        text_errf(errbuf, errlen,
                  "[feed] listen is set but no [issuer ID] "
                  "has a token_sha256: the feed would refuse everyone "
                  "(`cardwatch token` makes a token and its hash)");
        return -1;
    }
    return 0;
}

/* ---- cursors and query parameters ---- */

/* Parses s[0..len) as a decimal uint64 (digits only). */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

SSL_CTX *feed_tls_context(const char *cert, const char *key, char *errbuf,
                          size_t errlen)
{
    const char *what = "";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        what = "cannot create a TLS context";
        goto err;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        what = "cannot load [feed] tls_cert";
        goto err;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        what = "cannot load [feed] tls_key";
        goto err;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        what = "[feed] tls_key does not match tls_cert";
        goto err;
    }
    return ctx;
err : {
    char e[256];
    ERR_error_string_n(ERR_get_error(), e, sizeof(e));
    snprintf(errbuf, errlen, "feed: %s (%s)", what, e);
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}
}

int feed_cursor_parse(const char *s, size_t len, struct feed_cursor *out)
{
    const char *dash = memchr(s, '-', len);
    struct feed_cursor c;
    if (dash == NULL || parse_u64(s, (size_t)(dash - s), &c.ms) != 0 ||
        parse_u64(dash + 1, len - (size_t)(dash - s) - 1, &c.seq) != 0) {
        return -1;
    }
    if (c.ms == UINT64_MAX && c.seq == UINT64_MAX) {
        return -1;
    }
    *out = c;
    return 0;
}

int feed_cursor_format(const struct feed_cursor *c, char *buf, size_t len)
{
    return snprintf(buf, len, "%llu-%llu", (unsigned long long)c->ms,
                    (unsigned long long)c->seq);
}

int feed_cursor_cmp(const struct feed_cursor *a, const struct feed_cursor *b)
{
    if (a->ms != b->ms) {
        return a->ms < b->ms ? -1 : 1;
    }
    if (a->seq != b->seq) {
        return a->seq < b->seq ? -1 : 1;
    }
    return 0;
}

/* Replaces every byte of s that is not printable ASCII (or is a quote or
 * backslash) with '?', so that it can be echoed in a message. */
static void ascii_only(char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
            *s = '?';
        }
    }
}

/* Percent-decodes s[0..n) into out[cap]; '+' is a space. Returns the
 * length, or -1 on a bad escape or when it does not fit. */
static long url_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (n - i < 3 || !isxdigit((unsigned char)s[i + 1]) ||
                !isxdigit((unsigned char)s[i + 2])) {
                return -1;
            }
            char hex[3] = {s[i + 1], s[i + 2], '\0'};
            ch = (char)strtol(hex, NULL, 16);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (o + 1 >= cap) {
            return -1;
        }
        out[o++] = ch;
    }
    out[o] = '\0';
    return (long)o;
}

int feed_params_parse(const char *q, int max_wait_s, int stream,
                      struct feed_params *p, char *err, size_t errlen)
{
    int seen_after = 0, seen_limit = 0, seen_wait = 0, seen_order = 0,
        seen_before = 0, seen_include = 0;
    memset(p, 0, sizeof(*p));
    p->limit = FEED_LIMIT_DEFAULT;
    if (q == NULL) {
        return 0;
    }
    const char *s = q;
    while (*s != '\0') {
        const char *amp = strchr(s, '&');
        size_t n = amp ? (size_t)(amp - s) : strlen(s);
        const char *eq = memchr(s, '=', n);
        char key[16], val[64];
        if (n == 0) {
            s += amp ? 1 : 0;
            continue;
        }
        size_t klen = eq ? (size_t)(eq - s) : n;
        long vl = -1;
        if (url_decode(s, klen, key, sizeof(key)) < 0) {
            text_errf(err, errlen, "unknown query parameter");
            return -1;
        }
        if (eq != NULL) {
            vl = url_decode(eq + 1, n - klen - 1, val, sizeof(val));
        }
        int *seen = NULL;
        if (strcmp(key, "after") == 0) {
            seen = &seen_after;
        } else if (!stream && strcmp(key, "limit") == 0) {
            seen = &seen_limit;
        } else if (!stream && strcmp(key, "wait") == 0) {
            seen = &seen_wait;
        } else if (!stream && strcmp(key, "order") == 0) {
            seen = &seen_order;
        } else if (!stream && strcmp(key, "before") == 0) {
            seen = &seen_before;
        } else if (!stream && strcmp(key, "include") == 0) {
            seen = &seen_include;
        } else {
            ascii_only(key);
            text_errf(err, errlen, "unknown query parameter '%s' (%s)", key,
                      stream ? "the stream takes after"
                             : "use after, limit, wait, order, before, "
                               "include");
            return -1;
        }
        if (*seen) {
            text_errf(err, errlen, "query parameter '%s' given twice", key);
            return -1;
        }
        *seen = 1;
        if (seen == &seen_after || seen == &seen_before) {
            struct feed_cursor *c = seen == &seen_after ? &p->after : &p->before;
            if (vl <= 0 || feed_cursor_parse(val, (size_t)vl, c) != 0) {
                text_errf(err, errlen,
                          "%s must be a cursor \"<ms>-<seq>\" "
                          "as the feed returned it", key);
                return -1;
            }
            *(seen == &seen_after ? &p->has_after : &p->has_before) = 1;
        } else if (seen == &seen_include) {
            if (vl != 7 || memcmp(val, "outcome", 7) != 0) {
                text_errf(err, errlen, "include must be outcome");
                return -1;
            }
            p->outcomes = 1;
        } else if (seen == &seen_order) {
            if (vl == 6 && memcmp(val, "newest", 6) == 0) {
                p->newest = 1;
            } else if (vl != 6 || memcmp(val, "oldest", 6) != 0) {
                text_errf(err, errlen, "order must be oldest or newest");
                return -1;
            }
        } else {
            uint64_t v = 0;
            int lo = seen == &seen_limit ? 1 : 0;
            int hi = seen == &seen_limit ? FEED_LIMIT_MAX : max_wait_s;
            if (vl <= 0 || parse_u64(val, (size_t)vl, &v) != 0 ||
                v < (uint64_t)lo || v > (uint64_t)hi) {
                if (seen == &seen_limit) {
                    text_errf(err, errlen, "limit must be %d to %d", lo, hi);
                } else {
                    text_errf(err, errlen, "wait must be 0 to %d seconds", hi);
                }
                return -1;
            }
            if (seen == &seen_limit) {
                p->limit = (int)v;
            } else {
                p->wait_s = (int)v;
            }
        }
        s += n;
        if (*s == '&') {
            s++;
        }
    }
    if (p->has_before && !p->newest) {
        text_errf(err, errlen, "before pages back: use it with order=newest");
        return -1;
    }
    if (p->newest && p->wait_s > 0) {
        text_errf(err, errlen,
                  "order=newest answers at once: wait follows new alerts "
                  "with after (the oldest order)");
        return -1;
    }
    return 0;
}

int feed_alert_id_valid(const char *s, size_t len)
{
    if (len != ALERT_ID_SIZE - 1) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (hex_val(s[i]) < 0) {
            return 0;
        }
    }
    return 1;
}

/* ---- rate limit ---- */

int feed_bucket_take(struct feed_bucket *b, uint64_t now_ns, double rate,
                     double burst)
{
    if (!b->started) {
        b->started = 1;
        b->tokens = burst;
        b->last_ns = now_ns;
    }
    if (now_ns > b->last_ns) {
        b->tokens += (double)(now_ns - b->last_ns) / 1e9 * rate;
        if (b->tokens > burst) {
            b->tokens = burst;
        }
    }
    b->last_ns = now_ns > b->last_ns ? now_ns : b->last_ns;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }
    double wait = (1.0 - b->tokens) / rate;
    int secs = (int)wait;
    if ((double)secs < wait) {
        secs++;
    }
    return secs < 1 ? 1 : secs;
}

/* ---- failed authentications per peer ---- */

int feed_peer_key(const char *addr, uint8_t key[FEED_PEER_KEY])
{
    struct in_addr a4;
    memset(key, 0, FEED_PEER_KEY);
    if (addr == NULL) {
        return -1;
    }
    if (inet_pton(AF_INET, addr, &a4) == 1) {
        key[10] = 0xff;
        key[11] = 0xff;
        memcpy(key + 12, &a4, 4);
        return 0;
    }
    uint8_t a6[16];
    if (inet_pton(AF_INET6, addr, a6) == 1) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0,
                                           0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a6, mapped, sizeof(mapped)) == 0) {
            memcpy(key, a6, 16); /* an IPv4 peer on a dual-stack socket */
        } else {
            memcpy(key, a6, 8); /* the /64 */
        }
        return 0;
    }
    return -1;
}

struct peer {
    uint8_t key[FEED_PEER_KEY];
    double tokens;
    uint64_t last_ns;           /* tokens are up to date at this time */
    uint64_t fail_ns;           /* the last failure (the table's order) */
    struct peer *hnext;         /* hash chain */
    struct peer *newer, *older; /* by last failure */
};

struct feed_throttle {
    struct peer **slots;
    size_t n_slots; /* a power of two */
    size_t n, max;
    struct peer *newest, *oldest;
    double burst, rate; /* rate: failures regained per second */
    uint64_t window_ns, seed, evicted;
};

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static size_t peer_slot(const struct feed_throttle *t,
                        const uint8_t key[FEED_PEER_KEY])
{
    uint64_t a, b;
    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 8);
    return (size_t)(mix64(mix64(t->seed ^ a) ^ b) & (t->n_slots - 1));
}

struct feed_throttle *feed_throttle_new(size_t max_peers, int burst,
                                        int window_s, uint64_t seed)
{
    struct feed_throttle *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->max = max_peers > 0 ? max_peers : 1;
    t->burst = burst > 0 ? burst : 1;
    t->window_ns = (uint64_t)(window_s > 0 ? window_s : 1) * 1000000000ull;
    t->rate = t->burst / ((double)t->window_ns / 1e9);
    t->seed = seed;
    t->n_slots = 64; /* grows with the table, up to max_peers */
    t->slots = calloc(t->n_slots, sizeof(*t->slots));
    if (t->slots == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

static struct peer *peer_find(const struct feed_throttle *t,
                              const uint8_t key[FEED_PEER_KEY])
{
    for (struct peer *p = t->slots[peer_slot(t, key)]; p; p = p->hnext) {
        if (memcmp(p->key, key, FEED_PEER_KEY) == 0) {
            return p;
        }
    }
    return NULL;
}

static void peer_unlink(struct feed_throttle *t, struct peer *p)
{
    struct peer **pp = &t->slots[peer_slot(t, p->key)];
    while (*pp != NULL && *pp != p) {
        pp = &(*pp)->hnext;
    }
    if (*pp == p) {
        *pp = p->hnext;
    }
    if (p->newer != NULL) {
        p->newer->older = p->older;
    } else {
        t->newest = p->older;
    }
    if (p->older != NULL) {
        p->older->newer = p->newer;
    } else {
        t->oldest = p->newer;
    }
    p->hnext = p->newer = p->older = NULL;
    t->n--;
}

static void peer_link(struct feed_throttle *t, struct peer *p)
{
    size_t s = peer_slot(t, p->key);
    p->hnext = t->slots[s];
    t->slots[s] = p;
    p->newer = NULL;
    p->older = t->newest;
    if (t->newest != NULL) {
        t->newest->newer = p;
    } else {
        t->oldest = p;
    }
    t->newest = p;
    t->n++;
}

/* Doubles the slots while they are fewer than the peers (and than
 * max_peers); on allocation failure the chains just get longer. */
static void throttle_grow(struct feed_throttle *t)
{
    if (t->n < t->n_slots || t->n_slots >= t->max) {
        return;
    }
    size_t ns = t->n_slots * 2;
    struct peer **slots = calloc(ns, sizeof(*slots));
    if (slots == NULL) {
        return;
    }
    struct peer **old = t->slots;
    size_t on = t->n_slots;
    t->slots = slots;
    t->n_slots = ns;
    for (size_t i = 0; i < on; i++) {
        while (old[i] != NULL) {
            struct peer *p = old[i];
            old[i] = p->hnext;
            size_t s = peer_slot(t, p->key);
            p->hnext = slots[s];
            slots[s] = p;
        }
    }
    free(old);
}

static void peer_refill(const struct feed_throttle *t, struct peer *p,
                        uint64_t now_ns)
{
    if (now_ns > p->last_ns) {
        p->tokens += (double)(now_ns - p->last_ns) / 1e9 * t->rate;
        if (p->tokens > t->burst) {
            p->tokens = t->burst;
        }
        p->last_ns = now_ns;
    }
}

int feed_throttle_wait(struct feed_throttle *t,
                       const uint8_t key[FEED_PEER_KEY], uint64_t now_ns)
{
    struct peer *p = peer_find(t, key);
    if (p == NULL) {
        return 0;
    }
    peer_refill(t, p, now_ns);
    if (p->tokens >= 1.0) {
        return 0;
    }
    double wait = (1.0 - p->tokens) / t->rate;
    int secs = (int)wait;
    if ((double)secs < wait) {
        secs++;
    }
    return secs < 1 ? 1 : secs;
}

int feed_throttle_fail(struct feed_throttle *t,
                       const uint8_t key[FEED_PEER_KEY], uint64_t now_ns)
{
    struct peer *p = peer_find(t, key);
    if (p != NULL) {
        peer_unlink(t, p); /* linked again as the newest */
    } else {
        if (t->n >= t->max) {
            p = t->oldest; /* its memory serves the new peer */
            peer_unlink(t, p);
            t->evicted++;
        } else if ((p = malloc(sizeof(*p))) == NULL) {
            return -1;
        }
        memcpy(p->key, key, FEED_PEER_KEY);
        p->tokens = t->burst;
        p->last_ns = now_ns;
    }
    peer_refill(t, p, now_ns);
    p->tokens = p->tokens >= 1.0 ? p->tokens - 1.0 : 0.0;
    p->fail_ns = now_ns;
    peer_link(t, p);
    throttle_grow(t);
    return 0;
}

void feed_throttle_sweep(struct feed_throttle *t, uint64_t now_ns)
{
    while (t->oldest != NULL && now_ns >= t->oldest->fail_ns &&
           now_ns - t->oldest->fail_ns >= t->window_ns) {
        struct peer *p = t->oldest;
        peer_unlink(t, p);
        free(p);
    }
}

size_t feed_throttle_peers(const struct feed_throttle *t)
{
    return t != NULL ? t->n : 0;
}

uint64_t feed_throttle_evicted(const struct feed_throttle *t)
{
    return t != NULL ? t->evicted : 0;
}

void feed_throttle_destroy(struct feed_throttle *t)
{
    if (t == NULL) {
        return;
    }
    while (t->oldest != NULL) {
        struct peer *p = t->oldest;
        peer_unlink(t, p);
        free(p);
    }
    free(t->slots);
    free(t);
}

/* ---- outcomes ---- */

static const char *const outcome_names[FEED_OUTCOME_COUNT] = {
    "confirmed_fraud",
    "legitimate",
    "card_reissued",
    "card_blocked",
};

const char *feed_outcome_name(enum feed_outcome o)
{
    return (unsigned)o < FEED_OUTCOME_COUNT ? outcome_names[o] : "?";
}

int feed_outcome_parse(const char *s, size_t len, enum feed_outcome *o)
{
    for (int i = 0; i < FEED_OUTCOME_COUNT; i++) {
        if (strlen(outcome_names[i]) == len &&
            memcmp(outcome_names[i], s, len) == 0) {
            *o = (enum feed_outcome)i;
            return 0;
        }
    }
    return -1;
}

int feed_outcome_retires(enum feed_outcome o)
{
    return o == FEED_CARD_REISSUED || o == FEED_CARD_BLOCKED;
}

/* The code point of the valid UTF-8 sequence s[0..n). */
static uint32_t utf8_cp(const unsigned char *s, size_t n)
{
    if (n == 1) {
        return s[0];
    }
    uint32_t cp = s[0] & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        cp = cp << 6 | (s[i] & 0x3f);
    }
    return cp;
}

int feed_note_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t chars = 0;
    for (size_t i = 0; i < len;) {
        size_t n = text_utf8_seq(p + i, len - i);
        if (n == 0) {
            return 0;
        }
        uint32_t cp = utf8_cp(p + i, n);
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 ||
            cp == 0x2029 || (cp >= 0x202a && cp <= 0x202e) ||
            (cp >= 0x2066 && cp <= 0x2069)) {
            return 0;
        }
        i += n;
        if (++chars > FEED_NOTE_MAX) {
            return 0;
        }
    }
    return 1;
}

int feed_outcome_body(const char *body, size_t len, enum feed_outcome *o,
                      char note[FEED_NOTE_BYTES], char *err, size_t errlen)
{
    json_error_t je;
    int rc = -1, have_outcome = 0;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    note[0] = '\0';
    if (doc == NULL) {
        char why[sizeof(je.text)];
        snprintf(why, sizeof(why), "%s", je.text);
        ascii_only(why);
        text_errf(err, errlen, "the body is not valid JSON (%s)", why);
        goto out;
    }
    if (!json_is_object(doc)) {
        text_errf(err, errlen,
                  "the body must be a JSON object: "
                  "{\"outcome\":\"confirmed_fraud|legitimate|card_reissued|"
                  "card_blocked\",\"note\":\"...\"}");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(doc, key, v)
    {
        if (strcmp(key, "outcome") == 0) {
            if (!json_is_string(v) ||
                feed_outcome_parse(json_string_value(v), json_string_length(v),
                                   o) != 0) {
                text_errf(err, errlen,
                          "outcome must be one of "
                          "confirmed_fraud, legitimate, card_reissued, "
                          "card_blocked");
                goto out;
            }
            have_outcome = 1;
        } else if (strcmp(key, "note") == 0) {
            if (json_is_null(v)) {
                continue;
            }
            size_t nl = json_is_string(v) ? json_string_length(v) : 0;
            if (!json_is_string(v) ||
                !feed_note_valid(json_string_value(v), nl) ||
                nl >= FEED_NOTE_BYTES) {
                text_errf(err, errlen,
                          "note must be a string of at most "
                          "%d printable characters (no control or line "
                          "breaks)",
                          FEED_NOTE_MAX);
                goto out;
            }
            memcpy(note, json_string_value(v), nl);
            note[nl] = '\0';
        } else {
            char k[41];
            snprintf(k, sizeof(k), "%s", key);
            ascii_only(k);
            text_errf(err, errlen,
                      "unknown member '%s' (the body has "
                      "outcome and note)",
                      k);
            goto out;
        }
    }
    if (!have_outcome) {
        text_errf(err, errlen, "outcome is required");
        goto out;
    }
    rc = 0;
out:
    json_decref(doc);
    return rc;
}

static int rule_id_ok(const char *s, size_t n)
{
    if (n == 0 || n > RULE_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.')) {
            return 0;
        }
    }
    return 1;
}

static int kid_ok(const char *s, size_t n)
{
    if (n == 0 || n > CARD_KEY_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(isalnum((unsigned char)c) || c == '-' || c == '_')) {
            return 0;
        }
    }
    return 1;
}

/* Appends s to the csv buf[cap] at *len. */
static int csv_add(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + (*len ? 1 : 0) + n + 1 > cap) {
        return -1;
    }
    if (*len) {
        buf[(*len)++] = ',';
    }
    memcpy(buf + *len, s, n + 1);
    *len += n;
    return 0;
}

int feed_alert_facts_parse(const char *json, size_t len,
                           struct feed_alert_facts *out)
{
    int rc = -1;
    json_t *doc = json_loadb(json, len, 0, NULL);
    size_t rl = 0, bl = 0;
    memset(out, 0, sizeof(*out));
    if (doc == NULL || !json_is_object(doc)) {
        goto out;
    }
    json_t *hits = json_object_get(doc, "hits");
    json_t *brs = json_object_get(doc, "breaches");
    json_t *fp = json_object_get(doc, "card_fingerprint");
    if (!json_is_array(hits) || !json_is_array(brs) || !json_is_string(fp)) {
        goto out;
    }
    size_t i;
    json_t *v;
    json_array_foreach(hits, i, v)
    {
        json_t *id = json_object_get(v, "rule_id");
        if (!json_is_string(id) ||
            !rule_id_ok(json_string_value(id), json_string_length(id)) ||
            csv_add(out->rules, sizeof(out->rules), &rl,
                    json_string_value(id)) != 0) {
            goto out;
        }
    }
    json_array_foreach(brs, i, v)
    {
        json_t *id = json_object_get(v, "breach_id");
        if (!json_is_string(id) ||
            strlen(json_string_value(id)) != json_string_length(id) ||
            !breach_id_valid(json_string_value(id)) ||
            csv_add(out->breaches, sizeof(out->breaches), &bl,
                    json_string_value(id)) != 0) {
            goto out;
        }
    }
    const char *f = json_string_value(fp);
    size_t fl = json_string_length(fp);
    const char *colon = memchr(f, ':', fl);
    if (colon == NULL || !kid_ok(f, (size_t)(colon - f)) ||
        fl - (size_t)(colon - f) - 1 != CARD_FP_HEX_LEN) {
        goto out;
    }
    for (const char *p = colon + 1; p < f + fl; p++) {
        if (hex_val(*p) < 0) {
            goto out;
        }
    }
    memcpy(out->kid, f, (size_t)(colon - f));
    out->kid[colon - f] = '\0';
    memcpy(out->fp, colon + 1, CARD_FP_HEX_LEN);
    out->fp[CARD_FP_HEX_LEN] = '\0';
    rc = 0;
out:
    json_decref(doc);
    return rc;
}

/* ---- issuer statistics ---- */

static struct feed_rule_stat *rule_get(struct feed_stats *s, const char *id,
                                       size_t n)
{
    if (!rule_id_ok(id, n)) {
        return NULL;
    }
    for (size_t i = 0; i < s->n_rules; i++) {
        if (strlen(s->rules[i].rule) == n &&
            memcmp(s->rules[i].rule, id, n) == 0) {
            return &s->rules[i];
        }
    }
    if (s->n_rules == s->cap_rules) {
        size_t cap = s->cap_rules ? s->cap_rules * 2 : 8;
        struct feed_rule_stat *nr = realloc(s->rules, cap * sizeof(*nr));
        if (nr == NULL) {
            return (struct feed_rule_stat *)-1;
        }
        s->rules = nr;
        s->cap_rules = cap;
    }
    struct feed_rule_stat *r = &s->rules[s->n_rules++];
    memset(r, 0, sizeof(*r));
    memcpy(r->rule, id, n);
    r->rule[n] = '\0';
    return r;
}

static int prefixed(const char *f, size_t flen, const char *pre)
{
    size_t n = strlen(pre);
    return flen > n && memcmp(f, pre, n) == 0;
}

int feed_stats_add(struct feed_stats *s, const char *field, size_t flen,
                   const char *val, size_t vlen)
{
    uint64_t v;
    enum feed_outcome o;
    if (parse_u64(val, vlen, &v) != 0) {
        return 0;
    }
    if (flen == 6 && memcmp(field, "alerts", 6) == 0) {
        s->alerts = v;
    } else if (prefixed(field, flen, "severity:")) {
        size_t n = flen - 9;
        if (n >= sizeof(s->sev[0].name)) {
            return 0;
        }
        for (size_t i = 0; i < s->n_sev; i++) {
            if (strlen(s->sev[i].name) == n &&
                memcmp(s->sev[i].name, field + 9, n) == 0) {
                s->sev[i].n = v;
                return 0;
            }
        }
        if (s->n_sev < sizeof(s->sev) / sizeof(s->sev[0])) {
            memcpy(s->sev[s->n_sev].name, field + 9, n);
            s->sev[s->n_sev].name[n] = '\0';
            s->sev[s->n_sev++].n = v;
        }
    } else if (prefixed(field, flen, "outcome:")) {
        if (feed_outcome_parse(field + 8, flen - 8, &o) == 0) {
            s->outcome[o] = v;
        }
    } else if (prefixed(field, flen, "rule:")) {
        struct feed_rule_stat *r = rule_get(s, field + 5, flen - 5);
        if (r == (struct feed_rule_stat *)-1) {
            return -1;
        }
        if (r != NULL) {
            r->alerts = v;
        }
    } else if (prefixed(field, flen, "rule_outcome:")) {
        const char *id = field + 13;
        const char *end = field + flen;
        const char *colon = end;
        while (colon > id && colon[-1] != ':') {
            colon--;
        }
        if (colon == id ||
            feed_outcome_parse(colon, (size_t)(end - colon), &o) != 0) {
            return 0;
        }
        struct feed_rule_stat *r = rule_get(s, id, (size_t)(colon - 1 - id));
        if (r == (struct feed_rule_stat *)-1) {
            return -1;
        }
        if (r != NULL) {
            r->outcome[o] = v;
        }
    }
    return 0;
}

static int cmp_rule(const void *a, const void *b)
{
    return strcmp(((const struct feed_rule_stat *)a)->rule,
                  ((const struct feed_rule_stat *)b)->rule);
}

void feed_stats_finish(struct feed_stats *s)
{
    if (s->n_rules > 1) {
        qsort(s->rules, s->n_rules, sizeof(s->rules[0]), cmp_rule);
    }
}

void feed_stats_free(struct feed_stats *s)
{
    free(s->rules);
    memset(s, 0, sizeof(*s));
}

double feed_rule_precision(const struct feed_rule_stat *r)
{
    uint64_t a = r->outcome[FEED_CONFIRMED_FRAUD];
    uint64_t b = r->outcome[FEED_LEGITIMATE];
    if (a + b == 0) {
        return -1;
    }
    return (double)a / (double)(a + b);
}

static json_t *jcount(uint64_t v)
{
    return json_integer((json_int_t)(v > (uint64_t)INT64_MAX ? INT64_MAX : v));
}

char *feed_stats_json(const struct feed_stats *s, const char *issuer)
{
    char *out = NULL;
    json_t *doc = json_object();
    json_t *sev = json_object();
    json_t *oc = json_object();
    json_t *rules = json_object();
    if (doc == NULL || sev == NULL || oc == NULL || rules == NULL) {
        json_decref(sev);
        json_decref(oc);
        json_decref(rules);
        goto out;
    }
    json_object_set_new(doc, "issuer", json_string(issuer));
    json_object_set_new(doc, "alerts", jcount(s->alerts));
    for (size_t i = 0; i < s->n_sev; i++) {
        json_object_set_new(sev, s->sev[i].name, jcount(s->sev[i].n));
    }
    for (int i = 0; i < FEED_OUTCOME_COUNT; i++) {
        json_object_set_new(oc, outcome_names[i], jcount(s->outcome[i]));
    }
    for (size_t i = 0; i < s->n_rules; i++) {
        const struct feed_rule_stat *r = &s->rules[i];
        json_t *o = json_object();
        if (o == NULL) {
            json_decref(sev);
            json_decref(oc);
            json_decref(rules);
            goto out;
        }
        json_object_set_new(o, "alerts", jcount(r->alerts));
        for (int k = 0; k < FEED_OUTCOME_COUNT; k++) {
            json_object_set_new(o, outcome_names[k], jcount(r->outcome[k]));
        }
        double p = feed_rule_precision(r);
        json_object_set_new(
            o, "precision",
            p < 0 ? json_null()
                  : json_real((double)(long long)(p * 1e6 + 0.5) / 1e6));
        json_object_set_new(rules, r->rule, o);
    }
    json_object_set_new(doc, "by_severity", sev);
    json_object_set_new(doc, "by_outcome", oc);
    json_object_set_new(doc, "by_rule", rules);
    out = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10));
out:
    json_decref(doc);
    return out;
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void prom_label(FILE *out, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"') {
            fputc('\\', out);
            fputc(*s, out);
        } else if (*s == '\n') {
            fputs("\\n", out);
        } else {
            fputc(*s, out);
        }
    }
}

void feed_stats_prom(FILE *out, const struct feed_stats *s, const char *issuer,
                     int which)
{
    for (size_t i = 0; i < s->n_rules; i++) {
        const struct feed_rule_stat *r = &s->rules[i];
        if (which == 0) {
            for (int k = 0; k < FEED_OUTCOME_COUNT; k++) {
                fputs("cardwatch_rule_outcomes_total{issuer=\"", out);
                prom_label(out, issuer);
                fputs("\",rule=\"", out);
                prom_label(out, r->rule);
                fprintf(out, "\",outcome=\"%s\"} %llu\n", outcome_names[k],
                        (unsigned long long)r->outcome[k]);
            }
        } else {
            double p = feed_rule_precision(r);
            if (p < 0) {
                continue;
            }
            fputs("cardwatch_rule_precision{issuer=\"", out);
            prom_label(out, issuer);
            fputs("\",rule=\"", out);
            prom_label(out, r->rule);
            fprintf(out, "\"} %.6g\n", p);
        }
    }
}

/* ---- the triage page ---- */

/* Case-insensitive search for needle in s[0..n). */
static const char *find_ci(const char *s, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++) {
        if (strncasecmp(s + i, needle, m) == 0) {
            return s + i;
        }
    }
    return NULL;
}

/* Appends " 'sha256-<base64>'" of every inline <tag> element of the page
 * to out (a memstream). */
static void csp_hashes(FILE *out, const char *page, size_t len, const char *tag)
{
    char open[16], close[16];
    snprintf(open, sizeof(open), "<%s", tag);
    snprintf(close, sizeof(close), "</%s", tag);
    const char *p = page, *end = page + len;
    while (p < end) {
        const char *t = find_ci(p, (size_t)(end - p), open);
        if (t == NULL) {
            break;
        }
        const char *after = t + strlen(open);
        if (after < end && isalnum((unsigned char)*after)) {
            p = after; /* another tag, e.g. <scripts> */
            continue;
        }
        const char *gt = memchr(after, '>', (size_t)(end - after));
        if (gt == NULL) {
            break;
        }
        const char *body = gt + 1;
        const char *c = find_ci(body, (size_t)(end - body), close);
        if (c == NULL) {
            break;
        }
        int external = strcmp(tag, "script") == 0 &&
                       find_ci(after, (size_t)(gt - after), "src=") != NULL;
        if (!external) {
            uint8_t md[SHA256_LEN];
            unsigned char b64[4 * ((SHA256_LEN + 2) / 3) + 1];
            if (sha256(body, (size_t)(c - body), md) == 0) {
                EVP_EncodeBlock(b64, md, SHA256_LEN);
                fprintf(out, " 'sha256-%s'", b64);
            }
        }
        p = c + strlen(close);
    }
}

char *feed_csp(const char *page, size_t len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    if (m == NULL) {
        return NULL;
    }
    fputs("default-src 'self'; script-src 'self'", m);
    csp_hashes(m, page, len, "script");
    fputs("; style-src 'self'", m);
    csp_hashes(m, page, len, "style");
    fputs("; img-src 'self' data:; connect-src 'self'; object-src 'none'; "
          "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
          m);
    if (fclose(m) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
