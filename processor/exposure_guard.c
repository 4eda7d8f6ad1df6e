/* exposure_guard.c - the exposed-card set guard of the exposure module
 * (see exposure.h): a lookup is answered only from a Redis whose set
 * passed the full check under the marker its lookup read; the check, the
 * presence count over every card bucket, the idle marker read. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "clock.h"
#include "exposure_int.h"
#include "log.h"
#include "metrics.h"
#include "redis_conn.h"
#include "rmodel.h"

#define MOD "exposure"

/* The check: the marker, the layout (version, entries, committed), then
 * per breach id its status, recorded count, members and whether it still
 * has a set of the first layout, read in one atomic step. Not flagged
 * no-writes, unlike the lookup: while Redis pauses writes (a failover
 * under way) a check waits for the server that will be the master,
 * rather than approve the one handing over. */
static const char CHECK_LUA[] =
    "local out = {redis.call('GET', KEYS[1]) or false,\n"
    "  redis.call('HMGET', KEYS[3], 'version', 'entries', 'committed')}\n"
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
    "  local h = ARGV[1] .. id\n"
    "  local v = redis.call('HMGET', h, 'status', 'cards', 'members')\n"
    "  out[#out + 1] = {id, v[1] or '', v[2] or '',\n"
    "    tonumber(v[3] or '0'), redis.call('EXISTS', h .. ':cards')}\n"
    "end\n"
    "return out\n";

/* The presence count reads this many buckets per call (a few ms of
 * Redis time each). */
#define PASS_BUCKETS 4096

/* 1 when reply element el is the marker value the last check approved. */
int xp_marker_ok(const struct exposure *x, const redisReply *el)
{
    return x->guard == G_OK && el->type == REDIS_REPLY_STRING &&
           el->len == strlen(x->gen) && memcmp(el->str, x->gen, el->len) == 0;
}

/* ---- the exposed-card set guard ---- */

static void guard_bad(struct exposure *x, const char *why)
{
    if (x->guard != G_BAD || strcmp(x->why, why) != 0) {
        log_error(MOD, "%s; %s until it is back", why, x->while_down);
    }
    snprintf(x->why, sizeof(x->why), "%s", why);
    x->guard = G_BAD;
    if (x->metrics != NULL) {
        metrics_gauge(x->metrics, METRICS_G_EXPOSED_SET_OK, 0);
    }
    xp_report_state(x);
}

/* INFO with every check: a Redis that may evict can drop exposed cards
 * one by one, which no count would notice in time; no persistence means
 * a restart empties it (the guard then pauses intake: said once). */
static void on_info(struct exposure *x, const redisReply *r, void *arg)
{
    (void)arg;
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        return; /* destroyed, or INFO not allowed: nothing to say */
    }
    const char *p = strstr(r->str, "\nmaxmemory_policy:");
    if (p != NULL) {
        p += strlen("\nmaxmemory_policy:");
        size_t len = strcspn(p, "\r\n");
        snprintf(x->policy, sizeof(x->policy), "%.*s", (int)len, p);
    }
    if (strstr(r->str, "\naof_enabled:0") != NULL &&
        !x->warned_persistence) {
        x->warned_persistence = 1;
        x->want_save_config = 1;
    }
}

/* CONFIG GET save, asked when AOF is off: empty = no persistence at all.
 * Refused by an ACL that does not grant CONFIG GET: then nothing is said. */
static void on_save_config(struct exposure *x, const redisReply *r,
                           void *arg)
{
    (void)arg;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[1]->len == 0) {
        log_warn(MOD, "Redis %s has no persistence (appendonly no, save "
                 "\"\"): a restart empties it, and cardwatch then pauses "
                 "until the breaches are loaded again", rconn_address(x->rc));
    }
}

/* The check passed: the set under marker gen is the one lookups answer
 * from. */
static void approve(struct exposure *x)
{
    const char *addr = rconn_address(x->rc);
    int changed = strcmp(x->pass_gen, x->gen) != 0;
    if (x->guard == G_BAD || changed) {
        log_info(MOD, "exposed-card set in Redis %s checked: %zu breaches, "
                 "%lld cards (generation %s)", addr, x->pass_breaches,
                 x->pass_cards, x->pass_gen);
    }
    snprintf(x->seen, sizeof(x->seen), "%s", x->pass_seen);
    if (changed) {
        snprintf(x->gen, sizeof(x->gen), "%s", x->pass_gen);
        /* Loads or unloads happened: breach metadata is fetched again. */
        for (size_t i = 0; i < x->n_breaches; i++) {
            if (x->breaches[i]->state != B_FETCHING) {
                x->breaches[i]->state = B_UNKNOWN;
            }
        }
    }
    x->guard = G_OK;
    x->why[0] = '\0';
    x->last_check_ns = clock_mono_ns(); /* the next one 30 s after this */
    if (x->metrics != NULL) {
        metrics_gauge(x->metrics, METRICS_G_EXPOSED_SET_OK, 1);
        metrics_gauge(x->metrics, METRICS_G_EXPOSED_CARDS,
                      (double)x->pass_cards);
    }
    xp_report_state(x);
    x->issue_held(x);
    xp_filter_want(x); /* reads queue behind the held lookups */
}

static void pass_step(struct exposure *x);

/* One count call answered: {buckets, cards in the range, marker}. */
static void on_pass(struct exposure *x, const redisReply *r, void *arg)
{
    (void)arg;
    x->passing = 0;
    if (r == NULL) {
        return; /* the connection is going away */
    }
    if (r->type == REDIS_REPLY_ERROR) {
        char why[sizeof(x->why)];
        snprintf(why, sizeof(why), "cannot count the exposed cards in Redis "
                 "%s: %s", rconn_address(x->rc), r->str);
        guard_bad(x, why);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_INTEGER) {
        guard_bad(x, "the exposed-card count got an unexpected reply");
        return;
    }
    const redisReply *mk = r->element[2];
    if (mk->type != REDIS_REPLY_STRING || strlen(x->pass_gen) != mk->len ||
        memcmp(mk->str, x->pass_gen, mk->len) != 0) {
        xp_start_check(x); /* a load or unload committed meanwhile */
        return;
    }
    uint64_t buckets = strtoull(r->element[0]->str, NULL, 10);
    x->pass_sum += r->element[1]->integer;
    x->pass_next += PASS_BUCKETS;
    if (x->pass_next < buckets) {
        if (x->guard == G_OK && strcmp(x->pass_gen, x->gen) == 0) {
            /* the periodic count of the set lookups already use: one
             * range per tick (a few ms of Redis every 100 ms) */
            x->pass_paced = 1;
        } else {
            pass_step(x); /* lookups wait for this verdict */
        }
        return;
    }
    if (x->pass_sum < x->pass_want) {
        char why[sizeof(x->why)];
        snprintf(why, sizeof(why), "the exposed-card set in Redis %s holds "
                 "%lld of the %lld cards committed (cards were deleted, or "
                 "Redis lost data); load the breaches again", 
                 rconn_address(x->rc), x->pass_sum, x->pass_want);
        guard_bad(x, why);
        return;
    }
    approve(x);
}

static void pass_step(struct exposure *x)
{
    char first[24], count[24];
    snprintf(first, sizeof(first), "%" PRIu64, x->pass_next);
    snprintf(count, sizeof(count), "%d", PASS_BUCKETS);
    const char *argv[] = {"EVAL", RMODEL_LUA_SCAN, "2", x->lkey, x->xkey,
                          x->bprefix, first, count, "count"};
    size_t lens[] = {4, strlen(RMODEL_LUA_SCAN), 1, x->lkey_len,
                     x->xkey_len, x->bprefix_len, strlen(first),
                     strlen(count), 5};
    if (xp_cmd(x, 9, argv, lens, on_pass, NULL) == 0) {
        x->passing = 1;
    }
}

/* Reads the breaches of a check reply r (elements 2..): their statuses
 * against recorded counts, into x->pass_seen / pass_cards /
 * pass_breaches. Returns 0, or -1 after guard_bad. */
static int check_breaches(struct exposure *x, const redisReply *r)
{
    char why[sizeof(x->why)];
    x->pass_cards = 0;
    x->pass_breaches = 0;
    x->pass_seen[0] = '\0';
    for (size_t i = 2; i < r->elements; i++) {
        const redisReply *b = r->element[i];
        if (b->type != REDIS_REPLY_ARRAY || b->elements != 5 ||
            b->element[0]->type != REDIS_REPLY_STRING ||
            b->element[3]->type != REDIS_REPLY_INTEGER) {
            continue;
        }
        if (b->element[4]->integer == 1) {
            snprintf(why, sizeof(why), "Redis %s holds breach %s in the "
                     "first data layout (cardwatch before 2026-12), which "
                     "this version does not read; run `cardwatch migrate`",
                     rconn_address(x->rc), b->element[0]->str);
            guard_bad(x, why);
            return -1;
        }
        const char *st = b->element[1]->str;
        if (rmodel_breach_status(st && st[0] ? st : NULL) !=
            RMODEL_B_COMMITTED) {
            continue; /* staged: not part of the set yet */
        }
        const char *rec = b->element[2]->str;
        if (!rmodel_breach_intact(b->element[0]->str,
                                  rec && rec[0] ? rec : NULL,
                                  b->element[3]->integer, why, sizeof(why))) {
            size_t len = strlen(why);
            snprintf(why + len, sizeof(why) - len, " (recorded by `cardwatch "
                     "load`; the set is incomplete): load it again");
            guard_bad(x, why);
            return -1;
        }
        x->pass_cards += b->element[3]->integer;
        x->pass_breaches++;
        size_t sl = strlen(x->pass_seen);
        if (sl + 1 < sizeof(x->pass_seen)) {
            snprintf(x->pass_seen + sl, sizeof(x->pass_seen) - sl,
                     "%s%s %lld cards", sl ? ", " : "", b->element[0]->str,
                     b->element[3]->integer);
        }
    }
    return 0;
}

/* The layout element of a check reply: {version, entries, committed}.
 * Returns 0 with the committed count in x->pass_want, or -1 after
 * guard_bad. */
static int check_layout(struct exposure *x, const redisReply *lay)
{
    char why[sizeof(x->why)];
    if (lay->type != REDIS_REPLY_ARRAY || lay->elements != 3) {
        guard_bad(x, "the exposed-card set check got an unexpected reply");
        return -1;
    }
    const redisReply *ver = lay->element[0];
    x->pass_want = lay->element[2]->type == REDIS_REPLY_STRING
                       ? strtoll(lay->element[2]->str, NULL, 10)
                       : 0;
    if (ver->type == REDIS_REPLY_STRING &&
        strcmp(ver->str, RMODEL_LAYOUT_VERSION) != 0) {
        snprintf(why, sizeof(why), "Redis %s holds the exposed cards in data "
                 "layout %s, which this version (layout %s) does not read: "
                 "run the cardwatch that wrote it", rconn_address(x->rc),
                 ver->str, RMODEL_LAYOUT_VERSION);
        guard_bad(x, why);
        return -1;
    }
    return 0;
}

static void on_check(struct exposure *x, const redisReply *r, void *arg)
{
    (void)arg;
    x->checking = 0;
    if (r == NULL) {
        return; /* the connection is going away */
    }
    x->last_check_ns = clock_mono_ns();
    const char *addr = rconn_address(x->rc);
    char why[sizeof(x->why)];
    if (x->want_save_config) {
        x->want_save_config = 0;
        const char *argv[] = {"CONFIG", "GET", "save"};
        size_t lens[] = {6, 3, 4};
        (void)xp_cmd(x, 3, argv, lens, on_save_config, NULL);
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "cannot check the exposed-card set in "
                 "Redis %s: %s", addr, r->str);
        guard_bad(x, why);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
        guard_bad(x, "the exposed-card set check got an unexpected reply");
        return;
    }
    if (x->policy[0] != '\0' && strcmp(x->policy, "noeviction") != 0) {
        snprintf(why, sizeof(why), "Redis %s has maxmemory-policy %s: it "
                 "may evict exposed cards; set maxmemory-policy noeviction",
                 addr, x->policy);
        guard_bad(x, why);
        return;
    }
    const redisReply *mk = r->element[0];
    if (mk->type != REDIS_REPLY_STRING) {
        snprintf(why, sizeof(why), "the exposed-card set is gone from Redis "
                 "%s (no marker %s%s%s%s%s%s): Redis was emptied (restart "
                 "without persistence, FLUSHALL, failover to an empty "
                 "replica) or nothing was ever loaded; run `cardwatch load` "
                 "for every breach (or `cardwatch breaches --confirm`)",
                 addr, x->xkey, x->gen[0] ? ", last seen " : "", x->gen,
                 x->gen[0] ? " holding " : "", x->gen[0] ? x->seen : "",
                 x->gen[0] && x->seen[0] == '\0' ? "no breach" : "");
        guard_bad(x, why);
        return;
    }
    if (check_layout(x, r->element[1]) != 0 || check_breaches(x, r) != 0) {
        return;
    }
    snprintf(x->pass_gen, sizeof(x->pass_gen), "%.*s", (int)mk->len,
             mk->str);
    x->pass_next = 0;
    x->pass_sum = 0;
    if (!x->passing) {
        pass_step(x);
    }
}

/* Runs the full check unless one is in flight: INFO (eviction policy,
 * persistence), then one script (marker, every breach's status, recorded
 * count and present count); the answers come in that order. */
void xp_start_check(struct exposure *x)
{
    x->pass_paced = 0; /* a check starts over: a paced count gives way */
    if (x->checking || x->passing || !x->link_up) {
        return;
    }
    char bkey[RMODEL_KEY_MAX], lkey[RMODEL_KEY_MAX];
    int blen = rmodel_breach_key(bkey, x->prefix, "");
    int llen = rmodel_breaches_key(lkey, x->prefix);
    if (blen < 0 || llen < 0) {
        return;
    }
    const char *info[] = {"INFO"};
    size_t info_len[] = {4};
    (void)xp_cmd(x, 1, info, info_len, on_info, NULL);
    const char *argv[] = {"EVAL", CHECK_LUA, "3", x->xkey, lkey, x->lkey,
                          bkey};
    size_t lens[] = {4, sizeof(CHECK_LUA) - 1, 1, x->xkey_len,
                     (size_t)llen, x->lkey_len, (size_t)blen};
    if (xp_cmd(x, 7, argv, lens, on_check, NULL) == 0) {
        x->checking = 1;
    }
}

/* Between full checks an instance reads the marker alone (a lookup reads
 * it in every lookup; this is for an idle instance and the feed). */
static void on_marker(struct exposure *x, const redisReply *r, void *arg)
{
    (void)arg;
    x->marker_asked = 0;
    if (r == NULL || x->guard != G_OK) {
        return;
    }
    if (!xp_marker_ok(x, r)) {
        x->guard = G_UNCHECKED;
        xp_report_state(x);
        xp_start_check(x);
    }
}

void xp_guard_tick(struct exposure *x, uint64_t now)
{
    if (x->checking || x->passing || !x->link_up) {
        return;
    }
    if (x->pass_paced) {
        x->pass_paced = 0;
        pass_step(x);
        return;
    }
    uint64_t since = now - x->last_check_ns;
    if (since > (uint64_t)REFRESH_MS * 1000000ull ||
        (x->guard != G_OK && since > (uint64_t)MARKER_MS * 1000000ull)) {
        xp_start_check(x);
        return;
    }
    if (x->guard == G_OK && !x->marker_asked &&
        now - x->last_marker_ns > (uint64_t)MARKER_MS * 1000000ull) {
        const char *argv[] = {"GET", x->xkey};
        size_t lens[] = {3, x->xkey_len};
        x->last_marker_ns = now;
        if (xp_cmd(x, 2, argv, lens, on_marker, NULL) == 0) {
            x->marker_asked = 1;
        }
    }
}
