/* feed_token.c - bearer tokens, the per-token rate limit and the per-peer
 * throttle of failed authentications; see feed_token.h. */
#include "feed_token.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "feed_text.h"
#include "rng.h"
#include "text.h"

/* ---- tokens ---- */

static void to_hex(const uint8_t *b, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[b[i] >> 4];
        out[2 * i + 1] = hx[b[i] & 15];
    }
    out[2 * n] = '\0';
}

int feed_token_hash_hex(const void *tok, size_t len,
                        char out[FEED_HASH_HEX + 1])
{
    uint8_t md[FEED_SHA256_LEN];
    if (feed_text_sha256(tok, len, md) != 0) {
        out[0] = '\0';
        return -1;
    }
    to_hex(md, FEED_SHA256_LEN, out);
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
    uint8_t hash[FEED_SHA256_LEN];
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
    uint8_t h[FEED_SHA256_LEN];
    if (n != FEED_HASH_HEX) {
        text_errf(b->errbuf, b->errlen,
                  "[issuer %s] token_sha256: each "
                  "hash is %d lower-case hex digits",
                  b->c->issuers[b->issuer].id, FEED_HASH_HEX);
        return -1;
    }
    for (size_t i = 0; i < FEED_SHA256_LEN; i++) {
        int hi = feed_text_hex_val(s[2 * i]),
            lo = feed_text_hex_val(s[2 * i + 1]);
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
        if (memcmp(b->t->e[i].hash, h, FEED_SHA256_LEN) == 0) {
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
    memcpy(b->t->e[b->t->n].hash, h, FEED_SHA256_LEN);
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
    uint8_t md[FEED_SHA256_LEN];
    if (len == 0 || len > FEED_TOKEN_MAX ||
        feed_text_sha256(tok, len, md) != 0) {
        return -1;
    }
    size_t idx = 0;
    size_t any = 0;
    for (size_t i = 0; i < t->n; i++) {
        size_t eq =
            (size_t)(CRYPTO_memcmp(md, t->e[i].hash, FEED_SHA256_LEN) == 0);
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

static size_t peer_slot(const struct feed_throttle *t,
                        const uint8_t key[FEED_PEER_KEY])
{
    uint64_t a, b;
    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 8);
    return (size_t)(rng_fmix64(rng_fmix64(t->seed ^ a) ^ b) & (t->n_slots - 1));
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
