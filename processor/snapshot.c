/* snapshot.c - see snapshot.h. */
#include "snapshot.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "breach.h"
#include "log.h"
#include "rmodel.h"

#define MOD "snapshot"
#define SCAN_BUCKETS 256 /* buckets per read */
#define SCAN_BUCKETS_S "256"
#define LOOKUP_CHUNK 1000

struct slot {
    char fp[CARD_FP_HEX_LEN];
    uint32_t first; /* into hits */
    uint16_t count;
    uint8_t used;
};

/* The loading state; outlives the snapshot while requests are pending so
 * that a late reply never touches freed memory. */
struct loader {
    struct snapshot *s; /* NULL once the snapshot was destroyed */
    int pending;        /* requests on the connection */
};

struct snapshot {
    struct exposure *x;
    struct rconn *rc;
    struct loader *ld;
    char prefix[32];
    char kid[CARD_KEY_ID_MAX + 1];
    char breach[BREACH_ID_MAX + 1]; /* "" = every breach */
    snapshot_done_cb cb;
    void *cb_arg;
    int failed;
    int done;
    /* breaches (checked to exist), and where the read of the buckets is */
    char **bids;
    size_t n_bids;
    uint64_t scan_next, scan_buckets;
    /* fingerprints found, deduplicated through the table */
    struct slot *tab;
    size_t tab_mask, n_cards;
    size_t n_exposed; /* cards with a hit kept (of the breach asked) */
    char (*found)[CARD_FP_HEX_LEN + 1];
    size_t n_found, cap_found, next_lookup;
    struct exposure_hit *hits;
    size_t n_hits, cap_hits;
    uint32_t *first;
    uint16_t *count;
    size_t cap_res;
};

static uint64_t fp_hash(const char *fp)
{
    uint64_t h = 0;
    for (int i = 0; i < 16; i++) {
        unsigned c = (unsigned char)fp[i];
        h = (h << 4) | (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return h * 0x9E3779B97F4A7C15ull;
}

static struct slot *find_slot(const struct snapshot *s, const char *fp)
{
    size_t i = (size_t)(fp_hash(fp) >> 20) & s->tab_mask;
    for (;;) {
        struct slot *sl = &s->tab[i];
        if (!sl->used || memcmp(sl->fp, fp, CARD_FP_HEX_LEN) == 0) {
            return sl;
        }
        i = (i + 1) & s->tab_mask;
    }
}

static int grow_table(struct snapshot *s)
{
    size_t ncap = s->tab ? (s->tab_mask + 1) * 2 : 1024;
    struct slot *old = s->tab;
    size_t old_n = s->tab ? s->tab_mask + 1 : 0;
    s->tab = calloc(ncap, sizeof(*s->tab));
    if (s->tab == NULL) {
        s->tab = old;
        return -1;
    }
    s->tab_mask = ncap - 1;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i].used) {
            *find_slot(s, old[i].fp) = old[i];
        }
    }
    free(old);
    return 0;
}

static void finish(struct snapshot *s, int status, const char *err)
{
    if (s->done) {
        return;
    }
    s->done = 1;
    if (status == 0) {
        log_info(MOD, "exposed set copied: %zu card(s) from %zu breach(es)",
                 s->n_exposed, s->n_bids);
    }
    s->cb(s->cb_arg, status, err);
}

static void fail(struct snapshot *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void fail(struct snapshot *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    s->failed = 1;
    finish(s, -1, msg);
}

/* Takes a request slot; returns the snapshot, or NULL when it is gone. */
static struct snapshot *reply_owner(struct loader *ld)
{
    ld->pending--;
    if (ld->s == NULL && ld->pending == 0) {
        free(ld);
        return NULL;
    }
    return ld->s;
}

static int command(struct snapshot *s, int argc, const char **argv,
                   rconn_cb cb)
{
    size_t lens[8];
    for (int i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
    }
    s->ld->pending++;
    if (rconn_command(s->rc, argc, argv, lens, cb, s->ld) != 0) {
        s->ld->pending--;
        return -1;
    }
    return 0;
}

static void next_step(struct snapshot *s);

static void on_lookup(void *arg, int status, const struct exposure_result *res)
{
    struct snapshot *s = reply_owner(arg);
    if (s == NULL || s->failed) {
        return;
    }
    if (status != 0) {
        fail(s, "%s", "Redis connection closed while copying the exposed "
                      "set");
        return;
    }
    size_t base = s->next_lookup;
    for (size_t i = 0; i < res->n_cards; i++) {
        struct slot *sl = find_slot(s, s->found[base + i]);
        uint16_t kept = 0;
        sl->first = (uint32_t)s->n_hits;
        for (uint16_t k = 0; k < res->count[i]; k++) {
            const struct exposure_hit *h = &res->hits[res->first[i] + k];
            if (s->breach[0] != '\0' &&
                strcmp(h->breach->id, s->breach) != 0) {
                continue;
            }
            if (s->n_hits == s->cap_hits) {
                size_t ncap = s->cap_hits ? s->cap_hits * 2 : 1024;
                struct exposure_hit *nh =
                    realloc(s->hits, ncap * sizeof(*nh));
                if (nh == NULL) {
                    fail(s, "%s", "out of memory copying the exposed set");
                    return;
                }
                s->hits = nh;
                s->cap_hits = ncap;
            }
            s->hits[s->n_hits++] = *h;
            kept++;
        }
        sl->count = kept;
        s->n_exposed += kept > 0;
    }
    s->next_lookup += res->n_cards;
    next_step(s);
}

static void lookup_next_chunk(struct snapshot *s)
{
    size_t n = s->n_found - s->next_lookup;
    if (n > LOOKUP_CHUNK) {
        n = LOOKUP_CHUNK;
    }
    const char *fps[LOOKUP_CHUNK];
    for (size_t i = 0; i < n; i++) {
        fps[i] = s->found[s->next_lookup + i];
    }
    s->ld->pending++;
    if (exposure_lookup(s->x, fps, n, on_lookup, s->ld) != 0) {
        s->ld->pending--;
        fail(s, "%s", "out of memory copying the exposed set");
    }
}

static int add_found(struct snapshot *s, const char *bin, size_t len)
{
    if (len != RMODEL_FP_BIN) {
        return 0; /* not a card field */
    }
    char fp[CARD_FP_SIZE];
    rmodel_fp_hex((const uint8_t *)bin, fp);
    if ((s->n_cards + 1) * 2 > s->tab_mask + 1 && grow_table(s) != 0) {
        return -1;
    }
    struct slot *sl = find_slot(s, fp);
    if (sl->used) {
        return 0; /* listed by an earlier breach too */
    }
    if (s->n_found == s->cap_found) {
        size_t ncap = s->cap_found ? s->cap_found * 2 : 1024;
        void *nf = realloc(s->found, ncap * sizeof(*s->found));
        if (nf == NULL) {
            return -1;
        }
        s->found = nf;
        s->cap_found = ncap;
    }
    memcpy(sl->fp, fp, CARD_FP_HEX_LEN);
    sl->used = 1;
    sl->count = 0;
    memcpy(s->found[s->n_found], fp, CARD_FP_HEX_LEN);
    s->found[s->n_found][CARD_FP_HEX_LEN] = '\0';
    s->n_found++;
    s->n_cards++;
    return 0;
}

/* One range of buckets read: {buckets, {fingerprints}, marker}. */
static void on_scan(void *arg, const struct redisReply *r)
{
    struct snapshot *s = reply_owner(arg);
    if (s == NULL || s->failed) {
        return;
    }
    if (r == NULL) {
        fail(s, "%s", "Redis connection closed while copying the exposed "
                      "set");
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        fail(s, "Redis %s refused reading the exposed cards: %s",
             rconn_address(s->rc), r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
        fail(s, "%s", "reading the exposed cards answered unexpectedly");
        return;
    }
    const struct redisReply *m = r->element[1];
    for (size_t i = 0; i < m->elements; i++) {
        if (m->element[i]->type == REDIS_REPLY_STRING &&
            add_found(s, m->element[i]->str, m->element[i]->len) != 0) {
            fail(s, "%s", "out of memory copying the exposed set");
            return;
        }
    }
    s->scan_buckets = strtoull(r->element[0]->str, NULL, 10);
    s->scan_next += SCAN_BUCKETS;
    next_step(s);
}

/* Reads the next range of buckets (every card of our key id, in bucket
 * order: a split during the read moves cards to a later bucket, never an
 * earlier one), or looks up the next chunk of cards once all were read. */
static void next_step(struct snapshot *s)
{
    if (s->scan_next < s->scan_buckets) {
        char lay[RMODEL_KEY_MAX], bpre[RMODEL_KEY_MAX], first[24];
        if (rmodel_layout_key(lay, s->prefix, s->kid) < 0 ||
            rmodel_bucket_prefix(bpre, s->prefix, s->kid) < 0) {
            fail(s, "%s", "key id too long");
            return;
        }
        snprintf(first, sizeof(first), "%" PRIu64, s->scan_next);
        const char *argv[] = {"EVAL", RMODEL_LUA_SCAN, "1", lay, bpre,
                              first, SCAN_BUCKETS_S, "keys"};
        if (command(s, 8, argv, on_scan) != 0) {
            fail(s, "%s", "out of memory copying the exposed set");
        }
        return;
    }
    if (s->next_lookup < s->n_found) {
        lookup_next_chunk(s);
        return;
    }
    finish(s, 0, NULL);
}

static int add_bid(struct snapshot *s, const char *id, size_t len)
{
    char **nb = realloc(s->bids, (s->n_bids + 1) * sizeof(*nb));
    if (nb == NULL) {
        return -1;
    }
    s->bids = nb;
    s->bids[s->n_bids] = strndup(id, len);
    if (s->bids[s->n_bids] == NULL) {
        return -1;
    }
    s->n_bids++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void on_breaches(void *arg, const struct redisReply *r)
{
    struct snapshot *s = reply_owner(arg);
    if (s == NULL || s->failed) {
        return;
    }
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        fail(s, "Redis %s refused the list of breaches: %s",
             rconn_address(s->rc), r->str);
        return;
    }
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        fail(s, "%s", r == NULL ? "Redis connection closed while listing "
                                  "breaches"
                                : "listing breaches answered unexpectedly");
        return;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const struct redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING && e->len > BREACH_ID_MAX) {
            /* no load writes it: named, not passed over */
            fail(s, "breach id too long: %.*s", (int)e->len, e->str);
            return;
        }
        if (e->type == REDIS_REPLY_STRING && add_bid(s, e->str, e->len)) {
            fail(s, "%s", "out of memory copying the exposed set");
            return;
        }
    }
    if (s->n_bids > 1) {
        qsort(s->bids, s->n_bids, sizeof(s->bids[0]), cmp_str);
    }
    next_step(s);
}

static void on_ismember(void *arg, const struct redisReply *r)
{
    struct snapshot *s = reply_owner(arg);
    if (s == NULL || s->failed) {
        return;
    }
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        fail(s, "Redis %s refused the check that breach %s is loaded: %s",
             rconn_address(s->rc), s->breach, r->str);
        return;
    }
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        fail(s, "%s", r == NULL ? "Redis connection closed while checking "
                                  "the breach"
                                : "checking the breach answered "
                                  "unexpectedly");
        return;
    }
    if (r->integer != 1) {
        fail(s, "breach '%s' is not loaded ('cardwatch breaches' lists the "
                "loaded ones)", s->breach);
        return;
    }
    if (add_bid(s, s->breach, strlen(s->breach)) != 0) {
        fail(s, "%s", "out of memory copying the exposed set");
        return;
    }
    next_step(s);
}

struct snapshot *snapshot_load(struct exposure *x, struct rconn *rc,
                               const char *prefix,
                               const char *key_id, const char *breach,
                               snapshot_done_cb cb, void *arg, char *errbuf,
                               size_t errlen)
{
    struct snapshot *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->ld = calloc(1, sizeof(*s->ld))) == NULL ||
        grow_table(s) != 0) {
        snprintf(errbuf, errlen, "snapshot: out of memory");
        goto err;
    }
    if (strlen(prefix) >= sizeof(s->prefix) ||
        strlen(key_id) >= sizeof(s->kid) ||
        (breach != NULL && !breach_id_valid(breach))) {
        snprintf(errbuf, errlen, "snapshot: bad %s",
                 breach != NULL && !breach_id_valid(breach) ? "breach id"
                                                             : "options");
        goto err;
    }
    s->ld->s = s;
    s->x = x;
    s->rc = rc;
    s->cb = cb;
    s->cb_arg = arg;
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    snprintf(s->kid, sizeof(s->kid), "%s", key_id);
    s->scan_buckets = 1; /* at least bucket 0; the first read says more */
    snprintf(s->breach, sizeof(s->breach), "%s", breach ? breach : "");
    char key[RMODEL_KEY_MAX];
    rmodel_breaches_key(key, s->prefix);
    int st;
    if (breach != NULL) {
        const char *argv[] = {"SISMEMBER", key, breach};
        st = command(s, 3, argv, on_ismember);
    } else {
        const char *argv[] = {"SMEMBERS", key};
        st = command(s, 2, argv, on_breaches);
    }
    if (st != 0) {
        snprintf(errbuf, errlen, "snapshot: out of memory");
        goto err;
    }
    return s;
err:
    snapshot_destroy(s);
    return NULL;
}

int snapshot_lookup(struct snapshot *s, const char *const *fps, size_t n,
                    struct exposure_result *res)
{
    if (n > s->cap_res) {
        uint32_t *f = realloc(s->first, n * sizeof(*f));
        if (f != NULL) {
            s->first = f;
        }
        uint16_t *c = realloc(s->count, n * sizeof(*c));
        if (c != NULL) {
            s->count = c;
        }
        if (f == NULL || c == NULL) {
            return -1;
        }
        s->cap_res = n;
    }
    for (size_t i = 0; i < n; i++) {
        const struct slot *sl = find_slot(s, fps[i]);
        if (sl->used) {
            s->first[i] = sl->first;
            s->count[i] = sl->count;
        } else {
            s->first[i] = 0;
            s->count[i] = 0;
        }
    }
    res->n_cards = n;
    res->first = s->first;
    res->count = s->count;
    res->hits = s->hits;
    return 0;
}

size_t snapshot_cards(const struct snapshot *s)
{
    return s->n_exposed;
}

void snapshot_destroy(struct snapshot *s)
{
    if (s == NULL) {
        return;
    }
    if (s->ld != NULL) {
        if (s->ld->pending == 0) {
            free(s->ld);
        } else {
            s->ld->s = NULL; /* freed by the last reply */
        }
    }
    for (size_t i = 0; i < s->n_bids; i++) {
        free(s->bids[i]);
    }
    free(s->bids);
    free(s->tab);
    free(s->found);
    free(s->hits);
    free(s->first);
    free(s->count);
    free(s);
}
