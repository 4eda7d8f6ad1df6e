/* loader_admin.c - `cardwatch breaches [--confirm] | unload | migrate`:
 * listing, confirming and removing what `cardwatch load` wrote, and moving
 * data of the first layout to the current one (see rmodel.h). */
#include "loader.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "breach.h"
#include "card.h"
#include "clock.h"
#include "loader_int.h"
#include "log.h"
#include "rmodel.h"

#define MOD "load"
#define UNLOAD_BUCKETS 512  /* buckets per unload call */
#define SCAN_BUCKETS 256    /* buckets per read when recounting */
#define MIGRATE_BATCH 500   /* first-layout records per migrate call */

static const char *field(const redisReply *h, const char *name)
{
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        if (h->element[i]->str && strcmp(h->element[i]->str, name) == 0) {
            return h->element[i + 1]->str ? h->element[i + 1]->str : "";
        }
    }
    return "";
}

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            fprintf(out, "\\%c", ch);
        } else if (ch < 0x20) {
            fprintf(out, "\\u%04x", ch);
        } else {
            fputc(ch, out);
        }
    }
    fputc('"', out);
}

/* One breach of `breaches --json`: id, its hash h, dates {window start,
 * window end, loaded}, its members, status word and suspected flag. */
static void list_json_row(const char *id, const redisReply *h,
                          const char *const dates[3], long long members,
                          const char *status, int suspected)
{
    printf("{\"breach_id\":");
    json_str(stdout, id);
    printf(",\"window_start\":\"%s\",\"window_end\":\"%s\","
           "\"cards\":%lld,\"recorded_cards\":%lld,\"status\":\"%s\","
           "\"elements\":",
           dates[0], dates[1], members,
           strtoll(field(h, "cards"), NULL, 10), status);
    json_str(stdout, field(h, "elements"));
    printf(",\"key_id\":");
    json_str(stdout, field(h, "key_id"));
    printf(",\"suspected\":%s", suspected ? "true" : "false");
    printf(",\"loaded_at\":\"%s\",\"description\":", dates[2]);
    json_str(stdout, field(h, "description"));
    printf("}\n");
}

int loader_list(const struct config *c, int json)
{
    struct rblock conn, *rc = &conn;
    if (rblock_open(rc, c, MOD) != 0) {
        return 1;
    }
    char lkey[RMODEL_KEY_MAX];
    rmodel_breaches_key(lkey, c->redis_prefix);
    redisReply *ids = rblock_cmd(rc, "SMEMBERS", "SMEMBERS %s", lkey);
    if (ids == NULL) {
        rblock_close(rc);
        return 1;
    }
    if (!json) {
        printf("%-24s %-10s %-10s %10s  %-22s %-9s %-32s %s\n", "breach",
               "from", "to", "cards", "status", "suspected", "elements",
               "description");
    }
    int bad = 0, failed = 0;
    for (size_t i = 0; i < ids->elements; i++) {
        const char *id = ids->element[i]->str;
        char bkey[RMODEL_KEY_MAX];
        rmodel_breach_key(bkey, c->redis_prefix, id);
        redisReply *h = rblock_cmd(rc, "HGETALL", "HGETALL %s", bkey);
        if (h == NULL) {
            /* logged; the other rows still print, the exit status says
             * the list is not whole */
            failed = 1;
            continue;
        }
        long long members = strtoll(field(h, "members"), NULL, 10);
        char ckey[RMODEL_KEY_MAX];
        rmodel_breach_cards_key(ckey, c->redis_prefix, id);
        redisReply *v1 = rblock_cmd(rc, "EXISTS", "EXISTS %s", ckey);
        if (v1 == NULL) {
            /* logged; unknown whether it is of the first layout: the row
             * is left out, the exit status says the list is not whole */
            rblock_free(h);
            failed = 1;
            continue;
        }
        int first_layout = v1->integer == 1;
        rblock_free(v1);
        char status[64];
        const char *st = field(h, "status");
        const char *rec = field(h, "cards");
        enum rmodel_bstatus bs = rmodel_breach_status(st[0] ? st : NULL);
        char why[256];
        if (first_layout) {
            snprintf(status, sizeof(status), "OLD LAYOUT: migrate");
            bad = 1;
        } else if (bs == RMODEL_B_LOADING) {
            snprintf(status, sizeof(status), "LOADING (not monitored)");
            bad = 1;
        } else if (bs == RMODEL_B_UNLOADING) {
            snprintf(status, sizeof(status), "UNLOADING");
        } else if (!rmodel_breach_intact(id, rec[0] ? rec : NULL, members,
                                         why, sizeof(why))) {
            snprintf(status, sizeof(status), "INCOMPLETE (of %s)", rec);
            bad = 1;
        } else {
            snprintf(status, sizeof(status), "committed");
        }
        /* "1" from `load --suspected`; absent (older data) or "0": known */
        int suspected = strcmp(field(h, "suspected"), "1") == 0;
        char from[16], to[16], loaded[16];
        breach_date_format(strtoll(field(h, "window_start_ms"), NULL, 10),
                           from, sizeof(from));
        breach_date_format(strtoll(field(h, "window_end_ms"), NULL, 10), to,
                           sizeof(to));
        breach_date_format(strtoll(field(h, "loaded_at_ms"), NULL, 10),
                           loaded, sizeof(loaded));
        if (json) {
            const char *word = first_layout               ? "old_layout"
                               : bs == RMODEL_B_LOADING   ? "loading"
                               : bs == RMODEL_B_UNLOADING ? "unloading"
                               : status[0] == 'I'         ? "incomplete"
                                                          : "committed";
            const char *dates[3] = {from, to, loaded};
            list_json_row(id, h, dates, members, word, suspected);
        } else {
            printf("%-24s %-10s %-10s %10lld  %-22s %-9s %-32s %s\n", id,
                   from, to, members, status, suspected ? "yes" : "no",
                   field(h, "elements"), field(h, "description"));
        }
        rblock_free(h);
    }
    if (!json && ids->elements == 0) {
        printf("(no breaches loaded)\n");
    }
    char xkey[RMODEL_KEY_MAX];
    rmodel_exposed_key(xkey, c->redis_prefix);
    redisReply *mk = rblock_cmd(rc, "GET", "GET %s", xkey);
    if (mk == NULL) {
        failed = 1;
    } else if (mk->type != REDIS_REPLY_STRING) {
        fprintf(stderr, "WARNING: no exposed-card set marker (%s): Redis "
                "was emptied or nothing was loaded with this version; "
                "`cardwatch run` pauses intake until `cardwatch load` "
                "puts every breach back (or `cardwatch breaches "
                "--confirm`)\n", xkey);
        bad = 1;
    }
    if (bad) {
        fprintf(stderr, "WARNING: the exposed-card set is not complete (see "
                "the status column)\n");
    }
    rblock_free(mk);
    rblock_free(ids);
    rblock_close(rc);
    return failed;
}


/* ---- recount: what the buckets hold, per breach ---- */

struct tally {
    char (*ids)[BREACH_ID_MAX + 1];
    long long *n;
    size_t len, cap;
    long long cards; /* records */
};

static int tally_add(struct tally *t, const char *id, size_t len)
{
    for (size_t i = 0; i < t->len; i++) {
        if (strlen(t->ids[i]) == len && memcmp(t->ids[i], id, len) == 0) {
            t->n[i]++;
            return 0;
        }
    }
    if (t->len == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        void *ni = realloc(t->ids, ncap * sizeof(*t->ids));
        if (ni == NULL) {
            return -1;
        }
        t->ids = ni;
        void *nn = realloc(t->n, ncap * sizeof(*t->n));
        if (nn == NULL) {
            return -1;
        }
        t->n = nn;
        t->cap = ncap;
    }
    snprintf(t->ids[t->len], sizeof(t->ids[t->len]), "%.*s", (int)len, id);
    t->n[t->len++] = 1;
    return 0;
}

static long long tally_of(const struct tally *t, const char *id)
{
    for (size_t i = 0; i < t->len; i++) {
        if (strcmp(t->ids[i], id) == 0) {
            return t->n[i];
        }
    }
    return 0;
}

/* Counts the records of layout lay (bucket prefix bpre) per breach named
 * in them. Returns 0, or -1 (logged). */
static int recount(struct rblock *L, const char *lay, const char *bpre,
                   struct tally *t)
{
    uint64_t first = 0, buckets = 1;
    while (first < buckets) {
        redisReply *r = rblock_cmd(L, "a bucket read", "EVAL %s 1 %s %s %"
                                   PRIu64 " %d all", RMODEL_LUA_SCAN, lay,
                                   bpre, first, SCAN_BUCKETS);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
            rblock_free(r);
            return -1;
        }
        buckets = strtoull(r->element[0]->str, NULL, 10);
        const redisReply *kv = r->element[1];
        for (size_t i = 0; i + 1 < kv->elements; i += 2) {
            const char *rec = kv->element[i + 1]->str;
            size_t len = kv->element[i + 1]->len, k = 0;
            t->cards++;
            while (k < len) {
                size_t e = k;
                while (e < len && rec[e] != ';') {
                    e++;
                }
                const char *eq = memchr(rec + k, '=', e - k);
                if (eq != NULL && tally_add(t, rec + k,
                                            (size_t)(eq - rec - k)) != 0) {
                    rblock_free(r);
                    log_error(MOD, "out of memory");
                    return -1;
                }
                k = e + 1;
            }
        }
        rblock_free(r);
        first += SCAN_BUCKETS;
    }
    return 0;
}

/* The layout and bucket prefix of the key id in the configured key file.
 * Returns 0, or -1 (logged). */
static int our_layout(const struct config *c, char *lay, char *bpre)
{
    char err[256];
    struct card_key *key = card_key_load(c->key_file, err, sizeof(err));
    if (key == NULL) {
        log_error(MOD, "%s", err);
        return -1;
    }
    rmodel_layout_key(lay, c->redis_prefix, card_key_id(key));
    rmodel_bucket_prefix(bpre, c->redis_prefix, card_key_id(key));
    card_key_destroy(key);
    return 0;
}

/* Records every committed breach with the count its records hold now
 * (t), and the layout's records as committed. Returns the number of
 * committed breaches, or -1 (logged). */
static long long confirm_breaches(struct rblock *rc, const struct config *c,
                                  const redisReply *ids,
                                  const struct tally *t, long long *cards)
{
    long long n_committed = 0;
    for (size_t i = 0; i < ids->elements; i++) {
        const char *id = ids->element[i]->str;
        char bkey[RMODEL_KEY_MAX];
        rmodel_breach_key(bkey, c->redis_prefix, id);
        redisReply *st = rblock_cmd(rc, "HGET", "HGET %s status", bkey);
        if (st == NULL) {
            return -1;
        }
        enum rmodel_bstatus bs = rmodel_breach_status(
            st->type == REDIS_REPLY_STRING ? st->str : NULL);
        rblock_free(st);
        if (bs != RMODEL_B_COMMITTED) {
            printf("breach %s is not committed; left out (load it again "
                   "to finish it)\n", id);
            continue;
        }
        long long k = tally_of(t, id);
        redisReply *w = rblock_cmd(rc, "HSET", "HSET %s status committed "
                                   "cards %lld members %lld", bkey, k, k);
        rblock_free(w);
        if (w == NULL) {
            return -1;
        }
        *cards += k;
        n_committed++;
    }
    return n_committed;
}

int loader_confirm(const struct config *c)
{
    struct rblock conn, *rc = &conn;
    char lay[RMODEL_KEY_MAX], bpre[RMODEL_KEY_MAX];
    if (our_layout(c, lay, bpre) != 0 || rblock_open(rc, c, MOD) != 0) {
        return 1;
    }
    int exit_code = 1;
    struct tally t = {0};
    char lkey[RMODEL_KEY_MAX], xkey[RMODEL_KEY_MAX], gen[33];
    rmodel_breaches_key(lkey, c->redis_prefix);
    rmodel_exposed_key(xkey, c->redis_prefix);
    redisReply *ids = rblock_cmd(rc, "SMEMBERS", "SMEMBERS %s", lkey);
    if (ids == NULL || loader_new_generation(gen) != 0 ||
        recount(rc, lay, bpre, &t) != 0) {
        goto out;
    }
    long long cards = 0;
    long long n_committed = confirm_breaches(rc, c, ids, &t, &cards);
    if (n_committed < 0) {
        goto out;
    }
    redisReply *w = rblock_cmd(rc, "HSET", "HSET %s version %s entries %lld "
                               "committed %lld", lay, RMODEL_LAYOUT_VERSION,
                               t.cards, t.cards);
    rblock_free(w);
    if (w == NULL) {
        goto out;
    }
    w = rblock_cmd(rc, "SET", "SET %s %s", xkey, gen);
    rblock_free(w);
    if (w == NULL) {
        goto out;
    }
    printf("exposed-card set confirmed as it is now: %lld breaches, %lld "
           "cards (generation %s)\n", n_committed, cards, gen);
    exit_code = 0;
out:
    free(t.ids);
    free(t.n);
    rblock_free(ids);
    rblock_close(rc);
    return exit_code;
}

/* ---- unload ---- */

/* Removes breach id's entries from every bucket of layout lay, a range
 * at a time; *removed counts them. Returns 0, or -1 (logged). */
static int unload_cards(struct rblock *rc, const char *id, const char *bkey,
                        const char *lay, const char *bpre, int progress,
                        uint64_t *removed)
{
    uint64_t first = 0, buckets = 1;
    while (first < buckets) {
        if (loader_signal != 0) {
            log_error(MOD, "unload of %s interrupted after %" PRIu64 " cards; "
                      "the breach stays unloading (invisible to lookups): "
                      "run the unload again", id, *removed);
            return -1;
        }
        redisReply *r = rblock_cmd(rc, "removing cards", "EVAL %s 2 %s %s "
                                   "%s %s %" PRIu64 " %d", RMODEL_LUA_UNLOAD,
                                   lay, bkey, bpre, id, first,
                                   UNLOAD_BUCKETS);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            rblock_free(r);
            log_error(MOD, "breach %s: %" PRIu64 " cards removed, the breach "
                      "stays unloading (invisible to lookups): run the "
                      "unload again", id, *removed);
            return -1;
        }
        *removed += (uint64_t)r->element[0]->integer;
        buckets = strtoull(r->element[1]->str, NULL, 10);
        rblock_free(r);
        first += UNLOAD_BUCKETS;
        if (progress) {
            fprintf(stderr, "\r\033[Kunloading %s: %" PRIu64 " cards, %.0f %%",
                    id, *removed, buckets ? 100.0 * (double)(first < buckets
                    ? first : buckets) / (double)buckets : 100.0);
        }
    }
    return 0;
}

/* The layout the breach (hash bkey) was loaded into: its key_id's. */
static int breach_layout(struct rblock *rc, const struct config *c,
                         const char *bkey, char *lay, char *bpre)
{
    redisReply *r = rblock_cmd(rc, "HGET", "HGET %s key_id", bkey);
    if (r == NULL) {
        return -1;
    }
    if (r->type != REDIS_REPLY_STRING || r->len == 0 ||
        r->len > CARD_KEY_ID_MAX) {
        rblock_free(r);
        return our_layout(c, lay, bpre);
    }
    rmodel_layout_key(lay, c->redis_prefix, r->str);
    rmodel_bucket_prefix(bpre, c->redis_prefix, r->str);
    rblock_free(r);
    return 0;
}

/* The end of an unload: the breach's keys gone, delisted, the layout's
 * committed count what is left, a new marker. Returns 0, or -1. */
static int unload_finish(struct rblock *rc, const struct config *c,
                         const char *id, const char *bkey, const char *lay)
{
    char ckey[RMODEL_KEY_MAX], lkey[RMODEL_KEY_MAX], xkey[RMODEL_KEY_MAX];
    char gen[33];
    rmodel_breach_cards_key(ckey, c->redis_prefix, id);
    rmodel_breaches_key(lkey, c->redis_prefix);
    rmodel_exposed_key(xkey, c->redis_prefix);
    if (loader_new_generation(gen) != 0) {
        return -1;
    }
    redisReply *r = rblock_cmd(rc, "DEL", "DEL %s %s", ckey, bkey);
    rblock_free(r);
    if (r != NULL) {
        r = rblock_cmd(rc, "SREM", "SREM %s %s", lkey, id);
        rblock_free(r);
    }
    if (r != NULL) {
        r = rblock_cmd(rc, "HGET", "HGET %s entries", lay);
        long long left = r && r->type == REDIS_REPLY_STRING
                             ? strtoll(r->str, NULL, 10) : 0;
        if (r != NULL) {
            rblock_free(r);
            r = rblock_cmd(rc, "HSET", "HSET %s committed %lld", lay, left);
            rblock_free(r);
        }
    }
    if (r != NULL) {
        r = rblock_cmd(rc, "SET", "SET %s %s", xkey, gen);
        rblock_free(r);
    }
    return r == NULL ? -1 : 0;
}

int loader_unload(const struct config *c, const char *id, int progress)
{
    if (id == NULL || !breach_id_valid(id)) {
        log_error(MOD, "unload: give a breach id");
        return 1;
    }
    struct rblock conn, *rc = &conn;
    if (rblock_open(rc, c, MOD) != 0) {
        return 1;
    }
    int exit_code = 1;
    char bkey[RMODEL_KEY_MAX], lkey[RMODEL_KEY_MAX];
    char lay[RMODEL_KEY_MAX], bpre[RMODEL_KEY_MAX];
    rmodel_breach_key(bkey, c->redis_prefix, id);
    rmodel_breaches_key(lkey, c->redis_prefix);
    redisReply *r = rblock_cmd(rc, "SISMEMBER", "SISMEMBER %s %s", lkey, id);
    if (r == NULL) {
        goto out;
    }
    int known = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    rblock_free(r);
    if (!known) {
        log_error(MOD, "unload: no breach '%s' is loaded (see `cardwatch "
                  "breaches`)", id);
        goto out;
    }
    if (breach_layout(rc, c, bkey, lay, bpre) != 0) {
        goto out;
    }
    loader_catch_signals();
    /* Invisible to lookups at once, not card by card. */
    r = rblock_cmd(rc, "HSET", "HSET %s status unloading", bkey);
    rblock_free(r);
    if (r == NULL) {
        goto out;
    }
    uint64_t removed = 0;
    int rm = unload_cards(rc, id, bkey, lay, bpre, progress, &removed);
    if (progress) {
        fprintf(stderr, "\r\033[K");
    }
    if (rm != 0) {
        goto out;
    }
    if (unload_finish(rc, c, id, bkey, lay) != 0) {
        /* (Redis's answer is logged) a rerun finds it listed: it ends */
        log_error(MOD, "breach %s: its %" PRIu64 " card records are "
                  "removed, the breach itself is not: run the unload again",
                  id, removed);
        goto out;
    }
    printf("breach %s unloaded: %" PRIu64 " cards removed\n", id, removed);
    exit_code = 0;
out:
    rblock_close(rc);
    return exit_code;
}

/* ---- migrate: the first layout to the current one ---- */

/* Lua: move first-layout card records into the buckets. KEYS: layout.
 * ARGV: bucket prefix, then per card its 16-byte fingerprint and its
 * first-layout key. A record already in a bucket is kept (a rerun);
 * the old key is deleted either way. Returns the records moved. */
static const char MIGRATE_LUA[] =
    "local L, s = 0, 0\n"
    "do\n"
    "  local v = redis.call('HMGET', KEYS[1], 'level', 'split')\n"
    "  L, s = tonumber(v[1]) or 0, tonumber(v[2]) or 0\n"
    "end\n"
    "local moved = 0\n"
    "for i = 2, #ARGV - 1, 2 do\n"
    "  local rec = redis.call('GET', ARGV[i + 1])\n"
    "  if rec then\n"
    "    local a, b, c, d = string.byte(ARGV[i], 1, 4)\n"
    "    local h = ((a * 256 + b) * 256 + c) * 256 + d\n"
    "    local n = h % (2 ^ L)\n"
    "    if n < s then n = h % (2 ^ (L + 1)) end\n"
    "    local key = ARGV[1] .. string.format('%d', n)\n"
    "    if redis.call('HSETNX', key, ARGV[i], rec) == 1 then\n"
    "      moved = moved + 1\n"
    "    end\n"
    "    redis.call('DEL', ARGV[i + 1])\n"
    "  end\n"
    "end\n"
    "if moved > 0 then redis.call('HINCRBY', KEYS[1], 'entries', moved) end\n"
    "return moved\n";

struct migrate {
    struct rblock *L;
    const struct config *c;
    char kid[CARD_KEY_ID_MAX + 1]; /* of the batch */
    uint8_t fps[MIGRATE_BATCH][RMODEL_FP_BIN];
    char keys[MIGRATE_BATCH][RMODEL_KEY_MAX];
    size_t n;
    uint64_t moved, seen;
    char refused[256];
    char kids[8][CARD_KEY_ID_MAX + 1]; /* layouts touched (to split) */
    size_t n_kids;
};

static void on_migrated(void *arg, const redisReply *r)
{
    struct migrate *m = arg;
    if (loader_answered(r, m->refused, sizeof(m->refused)) &&
        r->type == REDIS_REPLY_INTEGER) {
        m->moved += (uint64_t)r->integer;
    }
}

/* Sends the batch and waits for it. Returns 0, or -1 (logged). */
static int migrate_flush(struct migrate *m)
{
    if (m->n == 0) {
        return 0;
    }
    char lay[RMODEL_KEY_MAX], bpre[RMODEL_KEY_MAX];
    rmodel_layout_key(lay, m->c->redis_prefix, m->kid);
    rmodel_bucket_prefix(bpre, m->c->redis_prefix, m->kid);
    const char *head[] = {"EVAL", MIGRATE_LUA, "1", lay, bpre};
    const char *argv[5 + 2 * MIGRATE_BATCH];
    size_t lens[5 + 2 * MIGRATE_BATCH];
    for (int i = 0; i < 5; i++) {
        argv[i] = head[i];
        lens[i] = strlen(head[i]);
    }
    for (size_t i = 0; i < m->n; i++) {
        argv[5 + 2 * i] = (const char *)m->fps[i];
        lens[5 + 2 * i] = RMODEL_FP_BIN;
        argv[6 + 2 * i] = m->keys[i];
        lens[6 + 2 * i] = strlen(m->keys[i]);
    }
    if (rblock_sendargv(m->L, on_migrated, m, 5 + 2 * (int)m->n, argv,
                        lens) != 0 ||
        rblock_wait(m->L) != 0) {
        return -1;
    }
    m->n = 0;
    if (m->refused[0] != '\0') {
        log_error(MOD, "Redis %s refused moving card records: %s",
                  rconn_address(m->L->rc), m->refused);
        return -1;
    }
    return 0;
}

/* One first-layout key "<p>:card:<kid>:<32 hex>" into the batch (other
 * keys that match the pattern are left alone). Returns 0, or -1. */
static int migrate_key(struct migrate *m, const char *key, size_t plen)
{
    const char *kid = key + plen;
    const char *colon = strrchr(kid, ':');
    if (colon == NULL || (size_t)(colon - kid) > CARD_KEY_ID_MAX ||
        colon == kid) {
        return 0;
    }
    uint8_t fp[RMODEL_FP_BIN];
    if (rmodel_fp_bin(colon + 1, fp) != 0 ||
        strlen(key) >= RMODEL_KEY_MAX) {
        return 0;
    }
    size_t kl = (size_t)(colon - kid);
    if (m->n > 0 && (strlen(m->kid) != kl ||
                     memcmp(m->kid, kid, kl) != 0) &&
        migrate_flush(m) != 0) {
        return -1;
    }
    snprintf(m->kid, sizeof(m->kid), "%.*s", (int)kl, kid);
    size_t k = 0;
    while (k < m->n_kids && strcmp(m->kids[k], m->kid) != 0) {
        k++;
    }
    if (k == m->n_kids && k < 8) {
        snprintf(m->kids[m->n_kids++], sizeof(m->kids[0]), "%s", m->kid);
    }
    memcpy(m->fps[m->n], fp, RMODEL_FP_BIN);
    snprintf(m->keys[m->n], sizeof(m->keys[0]), "%s", key);
    m->seen++;
    if (++m->n == MIGRATE_BATCH) {
        return migrate_flush(m);
    }
    return 0;
}

/* Moves every first-layout card record (SCAN MATCH <p>:card:*). */
static int migrate_records(struct migrate *m, int progress)
{
    char pattern[RMODEL_KEY_MAX + 2];
    snprintf(pattern, sizeof(pattern), "%s:card:*", m->c->redis_prefix);
    size_t plen = strlen(pattern) - 1;
    char cursor[32] = "0";
    do {
        if (loader_signal != 0) {
            log_error(MOD, "migrate interrupted after %" PRIu64 " card "
                      "records; run it again to finish", m->moved);
            return -1;
        }
        redisReply *r = rblock_cmd(m->L, "SCAN", "SCAN %s MATCH %s COUNT "
                                   "2000", cursor, pattern);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            rblock_free(r);
            return -1;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            if (migrate_key(m, r->element[1]->element[i]->str, plen) != 0) {
                rblock_free(r);
                return -1;
            }
        }
        rblock_free(r);
        if (progress) {
            fprintf(stderr, "\r\033[Kmigrating: %" PRIu64 " card records",
                    m->seen);
        }
    } while (strcmp(cursor, "0") != 0);
    return migrate_flush(m);
}

/* Per breach: its members from its first-layout set, which then goes. */
static int migrate_breaches(struct rblock *rc, const struct config *c,
                            size_t *n_breaches)
{
    char lkey[RMODEL_KEY_MAX];
    rmodel_breaches_key(lkey, c->redis_prefix);
    redisReply *ids = rblock_cmd(rc, "SMEMBERS", "SMEMBERS %s", lkey);
    if (ids == NULL) {
        return -1;
    }
    for (size_t i = 0; i < ids->elements; i++) {
        const char *id = ids->element[i]->str;
        char bkey[RMODEL_KEY_MAX], ckey[RMODEL_KEY_MAX];
        rmodel_breach_key(bkey, c->redis_prefix, id);
        rmodel_breach_cards_key(ckey, c->redis_prefix, id);
        redisReply *n = rblock_cmd(rc, "EXISTS", "EXISTS %s", ckey);
        int old = n != NULL && n->integer == 1;
        rblock_free(n);
        if (n == NULL) {
            rblock_free(ids);
            return -1;
        }
        if (!old) {
            continue;
        }
        n = rblock_cmd(rc, "SCARD", "SCARD %s", ckey);
        redisReply *w = n == NULL ? NULL
                        : rblock_cmd(rc, "HSET", "HSET %s members %lld", bkey,
                                     n->integer);
        rblock_free(w);
        rblock_free(n);
        if (w != NULL) {
            w = rblock_cmd(rc, "DEL", "DEL %s", ckey);
            rblock_free(w);
        }
        if (w == NULL) {
            rblock_free(ids);
            return -1;
        }
        (*n_breaches)++;
    }
    rblock_free(ids);
    return 0;
}

/* The layouts touched grow to their fill, get the current version and
 * their records as committed. Returns 0, or -1. */
static int migrate_layouts(struct migrate *m)
{
    char sha[41];
    if (rblock_script(m->L, RMODEL_LUA_SPLIT, sha) != 0) {
        return -1;
    }
    for (size_t k = 0; k < m->n_kids; k++) {
        char lay[RMODEL_KEY_MAX], bpre[RMODEL_KEY_MAX];
        rmodel_layout_key(lay, m->c->redis_prefix, m->kids[k]);
        rmodel_bucket_prefix(bpre, m->c->redis_prefix, m->kids[k]);
        if (loader_split(m->L, sha, lay, bpre) != 0) {
            return -1;
        }
        redisReply *r = rblock_cmd(m->L, "HGET", "HGET %s entries", lay);
        long long n = r && r->type == REDIS_REPLY_STRING
                          ? strtoll(r->str, NULL, 10) : 0;
        if (r == NULL) {
            return -1;
        }
        rblock_free(r);
        r = rblock_cmd(m->L, "HSET", "HSET %s version %s committed %lld",
                       lay, RMODEL_LAYOUT_VERSION, n);
        rblock_free(r);
        if (r == NULL) {
            return -1;
        }
    }
    return 0;
}

int loader_migrate(const struct config *c, int progress)
{
    struct rblock conn, *rc = &conn;
    if (rblock_open(rc, c, MOD) != 0) {
        return 1;
    }
    int exit_code = 1;
    struct migrate *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        log_error(MOD, "out of memory");
        goto out;
    }
    m->L = rc;
    m->c = c;
    loader_catch_signals();
    uint64_t t0 = clock_mono_ns();
    size_t n_breaches = 0;
    char xkey[RMODEL_KEY_MAX], gen[33];
    rmodel_exposed_key(xkey, c->redis_prefix);
    int rc_m = migrate_records(m, progress);
    if (progress) {
        fprintf(stderr, "\r\033[K");
    }
    if (rc_m != 0 || migrate_breaches(rc, c, &n_breaches) != 0 ||
        migrate_layouts(m) != 0 || loader_new_generation(gen) != 0) {
        log_error(MOD, "migrate stopped; run it again to finish (the "
                  "service stays paused until then)");
        goto out;
    }
    if (m->seen > 0 || n_breaches > 0) {
        redisReply *r = rblock_cmd(rc, "SET", "SET %s %s", xkey, gen);
        rblock_free(r);
        if (r == NULL) {
            goto out;
        }
    }
    printf("migrate: %" PRIu64 " card records moved to layout %s, %zu "
           "breaches; %.2f s%s\n", m->moved, RMODEL_LAYOUT_VERSION,
           n_breaches, (double)(clock_mono_ns() - t0) / 1e9,
           m->seen == 0 && n_breaches == 0 ? " (nothing to migrate)" : "");
    exit_code = 0;
out:
    free(m);
    rblock_close(rc);
    return exit_code;
}
