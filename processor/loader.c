/* loader.c - see loader.h. */
#include "loader.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>

#include "breach.h"
#include "card.h"
#include "clock.h"
#include "listcsv.h"
#include "log.h"
#include "redis_cfg.h"
#include "rmodel.h"

#define MOD "load"
#define CHUNK 1000
#define PATH_MAX_SHOWN 512 /* of the list's path in messages */

/* The signal that interrupted a load or unload (0 = none). */
static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    g_signal = sig;
}

/* SIGTERM and SIGINT set g_signal instead of killing the process, so a
 * load stops between two chunks and says what state it left. */
static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* A fresh generation marker value (32 hex from the CSPRNG). */
static int new_generation(char out[33])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) {
        log_error(MOD, "no random bytes for the generation marker");
        return -1;
    }
    for (int i = 0; i < 16; i++) {
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    }
    return 0;
}

/* ---- a blocking face on the Redis connection ----
 * These are command-line tools: each call runs the connection's loop until
 * Redis answered. Commands are written with hiredis's format strings
 * (binary safe: %s, %b, %lld), turned into an argv for redis_conn. */

#define WAIT_MS 30000 /* for an answer, reconnects included */

struct lconn {
    struct event_base *base;
    struct rconn *rc;
};

static int lopen(struct lconn *L, const struct config *c)
{
    char err[512];
    L->rc = NULL;
    L->base = event_base_new();
    if (L->base == NULL) {
        log_error(MOD, "out of memory");
        return -1;
    }
    struct redis_cfg_use use = {.name = "redis", .while_down = "the "
                                "command waits"};
    L->rc = redis_cfg_connect(L->base, c, &use, err, sizeof(err));
    if (L->rc == NULL) {
        log_error(MOD, "%s", err);
        event_base_free(L->base);
        L->base = NULL;
        return -1;
    }
    return 0;
}

static void lclose(struct lconn *L)
{
    rconn_destroy(L->rc);
    if (L->base != NULL) {
        event_base_free(L->base);
    }
    L->rc = NULL;
    L->base = NULL;
}

/* Waits until every command sent was answered. */
static int lwait(struct lconn *L)
{
    char err[512];
    if (rconn_wait(L->rc, WAIT_MS, err, sizeof(err)) != 0) {
        log_error(MOD, "%s", err);
        return -1;
    }
    return 0;
}

/* Splits a RESP request ("*N\r\n$len\r\nbytes\r\n"...) as hiredis's
 * formatter writes it into argv pointing into buf. Returns argc, -1 when
 * it is not one (it always is). */
static int resp_split(const char *buf, size_t len, const char **argv,
                      size_t *lens, int max)
{
    const char *p = buf, *end = buf + len;
    if (p >= end || *p != '*') {
        return -1;
    }
    long n = strtol(p + 1, (char **)&p, 10);
    if (n <= 0 || n > max || end - p < 2) {
        return -1;
    }
    p += 2;
    for (long i = 0; i < n; i++) {
        if (p >= end || *p != '$') {
            return -1;
        }
        long l = strtol(p + 1, (char **)&p, 10);
        if (l < 0 || end - p < l + 4) {
            return -1;
        }
        argv[i] = p + 2;
        lens[i] = (size_t)l;
        p += 2 + l + 2;
    }
    return (int)n;
}

typedef void (*lreply_cb)(void *arg, const redisReply *r);

/* Queues one command (format as for redisCommand). cb gets the reply
 * (borrowed; NULL when the connection is destroyed first). */
static int lsendv(struct lconn *L, lreply_cb cb, void *arg, const char *fmt,
                  va_list ap)
{
    if (L->rc == NULL) {
        return -1; /* closed after a failure */
    }
    char *buf = NULL;
    int len = redisvFormatCommand(&buf, fmt, ap);
    if (len < 0) {
        log_error(MOD, "out of memory");
        return -1;
    }
    const char *argv[16];
    size_t lens[16];
    int argc = resp_split(buf, (size_t)len, argv, lens, 16);
    int rc = argc > 0 ? rconn_command(L->rc, argc, argv, lens, cb, arg) : -1;
    free(buf);
    if (rc != 0) {
        log_error(MOD, "out of memory");
    }
    return rc;
}

static int lsend(struct lconn *L, lreply_cb cb, void *arg, const char *fmt,
                 ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = lsendv(L, cb, arg, fmt, ap);
    va_end(ap);
    return rc;
}

/* A deep copy of a reply, freed with reply_free(). */
static redisReply *reply_copy(const redisReply *r)
{
    redisReply *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->type = r->type;
    c->integer = r->integer;
    if (r->str != NULL) {
        c->str = malloc(r->len + 1);
        if (c->str == NULL) {
            free(c);
            return NULL;
        }
        memcpy(c->str, r->str, r->len);
        c->str[r->len] = '\0';
        c->len = r->len;
    }
    if (r->elements > 0) {
        c->element = calloc(r->elements, sizeof(*c->element));
        if (c->element == NULL) {
            free(c->str);
            free(c);
            return NULL;
        }
        c->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++) {
            c->element[i] = reply_copy(r->element[i]);
            if (c->element[i] == NULL) {
                c->type = REDIS_REPLY_NIL; /* a failed copy: not a reply */
            }
        }
    }
    return c;
}

static void reply_free(redisReply *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->elements; i++) {
        reply_free(r->element[i]);
    }
    free(r->element);
    free(r->str);
    free(r);
}

struct lanswer {
    redisReply *r;
    int done;
};

static void on_answer(void *arg, const redisReply *r)
{
    struct lanswer *a = arg;
    a->done = 1;
    a->r = r != NULL ? reply_copy(r) : NULL;
}

/* Runs one command to its answer; returns the reply (caller frees with
 * reply_free) or NULL after logging the failure. */
static redisReply *cmd(struct lconn *L, const char *what, const char *fmt,
                       ...)
{
    struct lanswer *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        log_error(MOD, "out of memory");
        return NULL;
    }
    va_list ap;
    va_start(ap, fmt);
    int rc = lsendv(L, on_answer, a, fmt, ap);
    va_end(ap);
    if (rc != 0) {
        free(a);
        return NULL;
    }
    if (lwait(L) != 0) {
        /* still queued: its late answer must find a live context */
        lclose(L);
        reply_free(a->r);
        free(a);
        return NULL;
    }
    redisReply *r = a->r;
    free(a);
    if (r == NULL) {
        log_error(MOD, "Redis %s failed: out of memory", what);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        log_error(MOD, "Redis %s refused %s: %s", rconn_address(L->rc), what,
                  r->str);
        reply_free(r);
        return NULL;
    }
    return r;
}

static int load_script(struct lconn *L, const char *src, char sha[41])
{
    redisReply *r = cmd(L, "SCRIPT LOAD", "SCRIPT LOAD %s", src);
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
        reply_free(r);
        return -1;
    }
    memcpy(sha, r->str, 41);
    reply_free(r);
    return 0;
}

struct load_stats {
    uint64_t rows, loaded, added, rejected, no_expiry;
    char refused[256]; /* Redis's first error reply to a card */
};

/* 1 when reply r is an answer to count; 0 for none (NULL: the
 * connection was closed, the wait says why) or an error reply, the first
 * of which is kept in refused[len]. */
static int answered(const redisReply *r, char *refused, size_t len)
{
    if (r == NULL) {
        return 0;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        if (refused[0] == '\0') {
            snprintf(refused, len, "%s", r->str);
        }
        return 0;
    }
    return 1;
}

/* One card's answer: counted, or its refusal kept. */
static void on_card(void *arg, const redisReply *r)
{
    struct load_stats *st = arg;
    if (!answered(r, st->refused, sizeof(st->refused))) {
        return;
    }
    st->loaded++;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        st->added++;
    }
}

static int flush_chunk(struct lconn *L, struct load_stats *st);

struct load_ctx {
    const struct config *c;
    const struct load_opts *o;
    struct lconn *L;
    struct card_key *key;
    const char *sha;
    const char *ckey;
    struct load_stats st;
    int pending;
    int interrupted; /* stopped by SIGTERM / SIGINT */
    uint64_t t0, last;
};

/* One accepted row: fingerprint, expiry tag, queue the EVALSHA; flush
 * every CHUNK rows (pipelined). */
static int load_row(void *arg, const struct list_row *row)
{
    struct load_ctx *lc = arg;
    char fp[CARD_FP_SIZE], tag[CARD_EXPTAG_SIZE] = "";
    /* Checked at every row, not only at a chunk's end: a signal that came
     * while rows of the buffer were being sent would otherwise be seen
     * only after the next read, which waits for a slow pipe's writer. */
    if (g_signal != 0) {
        lc->interrupted = 1;
        return -1;
    }
    if (card_fingerprint(lc->key, row->pan, row->len, fp) != 0) {
        log_error(MOD, "fingerprint failed (OpenSSL)");
        return -1;
    }
    if (row->expiry[0] != '\0') {
        card_expiry_tag(lc->key, fp, row->expiry, tag);
    }
    char cardkey[RMODEL_KEY_MAX];
    char member[CARD_KEY_ID_MAX + CARD_FP_SIZE + 1];
    const char *kid = card_key_id(lc->key);
    rmodel_card_key(cardkey, lc->c->redis_prefix, kid, fp);
    snprintf(member, sizeof(member), "%s:%s", kid, fp);
    if (lsend(lc->L, on_card, &lc->st, "EVALSHA %s 2 %s %s %s %s %s",
              lc->sha, cardkey, lc->ckey, lc->o->breach_id, tag,
              member) != 0) {
        return -1;
    }
    if (++lc->pending < CHUNK) {
        return 0;
    }
    if (g_signal != 0) {
        lc->interrupted = 1;
        return -1;
    }
    if (flush_chunk(lc->L, &lc->st) != 0) {
        return -1;
    }
    lc->pending = 0;
    uint64_t now = clock_mono_ns();
    if (lc->o->progress && now - lc->last > 200000000u) {
        lc->last = now;
        fprintf(stderr, "\r\033[Kloading %s: %" PRIu64 " cards (%.0f/s)",
                lc->o->breach_id, lc->st.loaded,
                (double)lc->st.loaded / ((double)(now - lc->t0) / 1e9));
    }
    return 0;
}

/* Waits for every card sent; the first refusal (e.g. OOM) is reported. */
static int flush_chunk(struct lconn *L, struct load_stats *st)
{
    if (lwait(L) != 0) {
        return -1;
    }
    if (st->refused[0] != '\0') {
        log_error(MOD, "Redis %s refused a card: %s", rconn_address(L->rc),
                  st->refused);
        return -1;
    }
    return 0;
}

/* Checks the options of a load: breach id, window, elements, description
 * and list file. Returns 0 with the window in *ws, *we and the elements
 * in *elements, or -1 after logging what is wrong. */
static int load_opts_check(const struct load_opts *o, int64_t *ws, int64_t *we,
                           uint32_t *elements)
{
    char err[256];
    if (o->breach_id == NULL || !breach_id_valid(o->breach_id)) {
        log_error(MOD, "--breach: give an id of 1-%d characters "
                  "[A-Za-z0-9._-]", BREACH_ID_MAX);
        return -1;
    }
    if (o->window_start == NULL ||
        breach_date_parse(o->window_start, 0, ws) != 0) {
        log_error(MOD, "--window-start: give a date YYYY-MM-DD");
        return -1;
    }
    if (o->window_end == NULL || breach_date_parse(o->window_end, 1, we) != 0) {
        log_error(MOD, "--window-end: give a date YYYY-MM-DD");
        return -1;
    }
    if (*we < *ws) {
        log_error(MOD, "--window-end is before --window-start");
        return -1;
    }
    if (o->elements == NULL ||
        breach_elements_parse(o->elements, elements, err, sizeof(err)) != 0) {
        log_error(MOD, "--elements: %s", o->elements ? err : "required, "
                  "e.g. pan,expiry,cvv2,name,address");
        return -1;
    }
    if (!(*elements & BREACH_EL_PAN)) {
        log_error(MOD, "--elements must include pan: a list of cards "
                  "exposes their numbers");
        return -1;
    }
    if (o->description != NULL && strlen(o->description) > BREACH_DESC_MAX) {
        log_error(MOD, "--description: at most %d characters",
                  BREACH_DESC_MAX);
        return -1;
    }
    if (o->list_path == NULL) {
        log_error(MOD, "give the list file (CSV with a header naming column "
                  "'pan', optionally 'expiry')");
        return -1;
    }
    return 0;
}

/* Writes the breach's metadata (hash bkey) and its first load time
 * s_now. Returns 0, or -1 after logging the failure. */
static int load_write_meta(struct lconn *rc, const struct load_opts *o,
                           const struct card_key *key, uint32_t elements,
                           int64_t ws, int64_t we, const char *bkey,
                           const char *s_now)
{
    char elems[128], s_ws[32], s_we[32];
    breach_elements_format(elements, elems, sizeof(elems));
    snprintf(s_ws, sizeof(s_ws), "%" PRId64, ws);
    snprintf(s_we, sizeof(s_we), "%" PRId64, we);
    redisReply *r = cmd(rc, "HSET", "HSET %s window_start_ms %s "
                        "window_end_ms %s elements %s key_id %s "
                        "description %s", bkey, s_ws, s_we, elems,
                        card_key_id(key), o->description ? o->description
                                                         : "");
    reply_free(r);
    if (r == NULL) {
        return -1;
    }
    r = cmd(rc, "HSETNX", "HSETNX %s loaded_at_ms %s", bkey, s_now);
    reply_free(r);
    if (r == NULL) {
        return -1;
    }
    return 0;
}

/* Marks the breach (hash bkey) loading unless it has a status already.
 * Returns 1 for a reload of a committed breach, 0 for a first load (or
 * one that never committed), -1 after logging a failure. */
static int load_mark_staged(struct lconn *rc, const char *bkey)
{
    /* Staged: a first load stays invisible to lookups until its commit;
     * a reload of a committed breach keeps it visible (its cards only
     * grow). */
    redisReply *r = cmd(rc, "HSETNX", "HSETNX %s status loading", bkey);
    if (r == NULL) {
        return -1;
    }
    int reload = r->type == REDIS_REPLY_INTEGER && r->integer == 0;
    reply_free(r);
    r = cmd(rc, "HGET", "HGET %s status", bkey);
    if (r == NULL) {
        return -1;
    }
    reload = reload && r->type == REDIS_REPLY_STRING &&
             rmodel_breach_status(r->str) == RMODEL_B_COMMITTED;
    reply_free(r);
    return reload;
}

/* Says why a load stopped before its commit (counts: how far it got) and
 * what state it left. Returns the exit status: 128 + the signal for an
 * interrupted load, 1 otherwise. */
static int load_stopped(const struct load_ctx *lc, const char *counts,
                        int reload)
{
    const struct load_opts *o = lc->o;
    if (o->progress) {
        fprintf(stderr, "\r\033[K");
    }
    const char *state =
        reload ? "it stays visible as committed before, with the cards "
                 "added so far"
               : "none of it is visible to lookups (staged, not "
                 "committed); `cardwatch breaches` lists it as loading";
    if (lc->interrupted) {
        log_error(MOD, "load of breach %s interrupted by %s after %s: "
                  "%s; run the same load again to finish it",
                  o->breach_id, g_signal == SIGINT ? "SIGINT" : "SIGTERM",
                  counts, state);
        return 128 + (int)g_signal;
    }
    log_error(MOD, "load of breach %s stopped after %s: %s; fix the "
              "cause and run the load again (or `cardwatch unload "
              "%s`)", o->breach_id, counts, state, o->breach_id);
    return 1;
}

/* Prints the counts of a committed load: the breach's set had before
 * cards when it started (-1: unknown); ls is the list read. */
static void load_summary(const struct load_ctx *lc, const struct list_stats *ls,
                         const char *list_name, long long before)
{
    const struct load_opts *o = lc->o;
    struct load_stats st = lc->st;
    st.rows = ls->rows;
    st.rejected = ls->rejected;
    uint64_t t0 = lc->t0;
    if (o->progress) {
        fprintf(stderr, "\r\033[K");
    }
    redisReply *r = cmd(lc->L, "SCARD", "SCARD %s", lc->ckey);
    long long total = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    reply_free(r);
    if (total >= 0 && before >= 0 && total >= before) {
        st.added = (uint64_t)(total - before);
    }
    double secs = (double)(clock_mono_ns() - t0) / 1e9;
    /* Every count, always (0 included): rows read = loaded + rejected. */
    printf("breach %s: %" PRIu64 " rows read from %.*s: %" PRIu64 " cards "
           "loaded (%" PRIu64 " new), %" PRIu64 " rejected, %" PRIu64
           " loaded without expiry (not YYMM); %lld cards in the breach; "
           "%.2f s (%.0f cards/s)\n",
           o->breach_id, st.rows, PATH_MAX_SHOWN, list_name, st.loaded,
           st.added, st.rejected, ls->no_expiry, total, secs,
           secs > 0 ? (double)st.loaded / secs : 0.0);
    if (st.loaded == 0) {
        log_warn(MOD, "no card of %.*s was loaded (%s); breach %s holds "
                 "%lld cards", PATH_MAX_SHOWN, list_name,
                 st.rows == 0 ? "no data rows" : "every row was rejected",
                 o->breach_id, total);
    }
}

int loader_load(const struct config *c, const struct load_opts *o)
{
    char err[256];
    int64_t ws, we;
    uint32_t elements;
    int rc_exit = 1;
    struct lconn conn = {0}, *rc = &conn;
    struct card_key *key = NULL;

    if (load_opts_check(o, &ws, &we, &elements) != 0) {
        return 1;
    }
    key = card_key_load(c->key_file, err, sizeof(err));
    if (key == NULL) {
        log_error(MOD, "%s", err);
        return 1;
    }
    if (lopen(rc, c) != 0) {
        goto out;
    }
    char sha_add[41];
    if (load_script(rc, RMODEL_LUA_ADD, sha_add) != 0) {
        goto out;
    }
    char bkey[RMODEL_KEY_MAX], ckey[RMODEL_KEY_MAX], lkey[RMODEL_KEY_MAX];
    rmodel_breach_key(bkey, c->redis_prefix, o->breach_id);
    rmodel_breach_cards_key(ckey, c->redis_prefix, o->breach_id);
    rmodel_breaches_key(lkey, c->redis_prefix);
    char s_now[32];
    snprintf(s_now, sizeof(s_now), "%" PRId64, clock_wall_ms());
    /* Metadata first, so a processor that meets a card finds its breach. */
    if (load_write_meta(rc, o, key, elements, ws, we, bkey, s_now) != 0) {
        goto out;
    }
    int reload = load_mark_staged(rc, bkey);
    if (reload < 0) {
        goto out;
    }
    char gen[33], xkey[RMODEL_KEY_MAX];
    rmodel_exposed_key(xkey, c->redis_prefix);
    if (new_generation(gen) != 0) {
        goto out;
    }
    catch_signals();
    redisReply *r = cmd(rc, "SADD", "SADD %s %s", lkey, o->breach_id);
    reply_free(r);
    if (r == NULL) {
        goto out;
    }
    /* "New" is how much the breach's set grew: a chunk sent again after
     * a reconnect finds the cards Redis took from the dropped connection
     * already there, so the script's own answers would undercount. */
    r = cmd(rc, "SCARD", "SCARD %s", ckey);
    if (r == NULL) {
        goto out;
    }
    long long before = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    reply_free(r);

    struct load_ctx lc = {
        .c = c, .o = o, .L = rc, .key = key, .sha = sha_add, .ckey = ckey,
        .t0 = clock_mono_ns(),
    };
    lc.last = lc.t0;
    struct list_stats ls;
    const char *list_name = strcmp(o->list_path, "-") == 0 ? "<stdin>"
                                                             : o->list_path;
    int read_rc = list_read(o->list_path, (elements & BREACH_EL_EXPIRY) != 0,
                            load_row, &lc, &ls);
    if (g_signal != 0) {
        /* After the last full chunk, or while a read waited for more of
         * the list (a pipe): the read then fails with EINTR, and the load
         * was interrupted all the same, not broken. */
        lc.interrupted = 1;
        read_rc = -1;
    }
    if (read_rc == 0 && lc.pending > 0 &&
        flush_chunk(rc, &lc.st) != 0) {
        read_rc = -1;
    }
    /* How far it got, for the messages of a load that stops. */
    char counts[PATH_MAX_SHOWN + 128];
    snprintf(counts, sizeof(counts), "%" PRIu64 " rows read from %.*s (%" PRIu64
             " cards loaded, %" PRIu64 " rejected)", ls.rows, PATH_MAX_SHOWN,
             list_name, lc.st.loaded, ls.rejected);
    if (read_rc != 0) {
        rc_exit = load_stopped(&lc, counts, reload);
        goto out;
    }
    /* Commit: status, recorded count, listed, new marker - one step. */
    r = cmd(rc, "the commit", "EVAL %s 4 %s %s %s %s %s %s %s",
            RMODEL_LUA_COMMIT, bkey, ckey, lkey, xkey, o->breach_id, gen,
            s_now);
    if (r == NULL) {
        log_error(MOD, "breach %s was not committed after %s: %s",
                  o->breach_id, counts,
                  reload ? "it stays as committed before"
                         : "it stays invisible; run the load again");
        goto out;
    }
    reply_free(r);
    load_summary(&lc, &ls, list_name, before);
    rc_exit = 0;
out:
    lclose(rc);
    card_key_destroy(key);
    return rc_exit;
}

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

int loader_list(const struct config *c, int json)
{
    struct lconn conn, *rc = &conn;
    if (lopen(rc, c) != 0) {
        return 1;
    }
    char lkey[RMODEL_KEY_MAX];
    rmodel_breaches_key(lkey, c->redis_prefix);
    redisReply *ids = cmd(rc, "SMEMBERS", "SMEMBERS %s", lkey);
    if (ids == NULL) {
        lclose(rc);
        return 1;
    }
    if (!json) {
        printf("%-24s %-10s %-10s %10s  %-22s %-32s %s\n", "breach", "from",
               "to", "cards", "status", "elements", "description");
    }
    int bad = 0, failed = 0;
    for (size_t i = 0; i < ids->elements; i++) {
        const char *id = ids->element[i]->str;
        char bkey[RMODEL_KEY_MAX], ckey[RMODEL_KEY_MAX];
        rmodel_breach_key(bkey, c->redis_prefix, id);
        rmodel_breach_cards_key(ckey, c->redis_prefix, id);
        redisReply *h = cmd(rc, "HGETALL", "HGETALL %s", bkey);
        redisReply *n = cmd(rc, "SCARD", "SCARD %s", ckey);
        if (h == NULL || n == NULL) {
            /* logged; the other rows still print, the exit status says
             * the list is not whole */
            reply_free(h);
            reply_free(n);
            failed = 1;
            continue;
        }
        char status[64];
        const char *st = field(h, "status");
        const char *rec = field(h, "cards");
        enum rmodel_bstatus bs = rmodel_breach_status(st[0] ? st : NULL);
        char why[256];
        if (bs == RMODEL_B_LOADING) {
            snprintf(status, sizeof(status), "LOADING (not monitored)");
            bad = 1;
        } else if (bs == RMODEL_B_UNLOADING) {
            snprintf(status, sizeof(status), "UNLOADING");
        } else if (!rmodel_breach_intact(id, rec[0] ? rec : NULL, n->integer,
                                         why, sizeof(why))) {
            snprintf(status, sizeof(status), "INCOMPLETE (of %s)", rec);
            bad = 1;
        } else {
            snprintf(status, sizeof(status), "committed");
        }
        char from[16], to[16], loaded[16];
        breach_date_format(strtoll(field(h, "window_start_ms"), NULL, 10),
                           from, sizeof(from));
        breach_date_format(strtoll(field(h, "window_end_ms"), NULL, 10), to,
                           sizeof(to));
        breach_date_format(strtoll(field(h, "loaded_at_ms"), NULL, 10),
                           loaded, sizeof(loaded));
        if (json) {
            printf("{\"breach_id\":");
            json_str(stdout, id);
            printf(",\"window_start\":\"%s\",\"window_end\":\"%s\","
                   "\"cards\":%lld,\"recorded_cards\":%lld,"
                   "\"status\":\"%s\",\"elements\":",
                   from, to, n->integer, strtoll(rec, NULL, 10),
                   bs == RMODEL_B_LOADING     ? "loading"
                   : bs == RMODEL_B_UNLOADING ? "unloading"
                   : status[0] == 'I'         ? "incomplete"
                                              : "committed");
            json_str(stdout, field(h, "elements"));
            printf(",\"key_id\":");
            json_str(stdout, field(h, "key_id"));
            printf(",\"loaded_at\":\"%s\",\"description\":", loaded);
            json_str(stdout, field(h, "description"));
            printf("}\n");
        } else {
            printf("%-24s %-10s %-10s %10lld  %-22s %-32s %s\n", id, from,
                   to, n->integer, status, field(h, "elements"),
                   field(h, "description"));
        }
        reply_free(h);
        reply_free(n);
    }
    if (!json && ids->elements == 0) {
        printf("(no breaches loaded)\n");
    }
    char xkey[RMODEL_KEY_MAX];
    rmodel_exposed_key(xkey, c->redis_prefix);
    redisReply *mk = cmd(rc, "GET", "GET %s", xkey);
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
    reply_free(mk);
    reply_free(ids);
    lclose(rc);
    return failed;
}

int loader_confirm(const struct config *c)
{
    struct lconn conn, *rc = &conn;
    if (lopen(rc, c) != 0) {
        return 1;
    }
    int exit_code = 1;
    char lkey[RMODEL_KEY_MAX], xkey[RMODEL_KEY_MAX], gen[33];
    rmodel_breaches_key(lkey, c->redis_prefix);
    rmodel_exposed_key(xkey, c->redis_prefix);
    redisReply *ids = cmd(rc, "SMEMBERS", "SMEMBERS %s", lkey);
    if (ids == NULL || new_generation(gen) != 0) {
        goto out;
    }
    long long cards = 0;
    size_t n_committed = 0;
    for (size_t i = 0; i < ids->elements; i++) {
        const char *id = ids->element[i]->str;
        char bkey[RMODEL_KEY_MAX], ckey[RMODEL_KEY_MAX];
        rmodel_breach_key(bkey, c->redis_prefix, id);
        rmodel_breach_cards_key(ckey, c->redis_prefix, id);
        redisReply *st = cmd(rc, "HGET", "HGET %s status", bkey);
        if (st == NULL) {
            goto out;
        }
        enum rmodel_bstatus bs = rmodel_breach_status(
            st->type == REDIS_REPLY_STRING ? st->str : NULL);
        reply_free(st);
        if (bs != RMODEL_B_COMMITTED) {
            printf("breach %s is not committed; left out (load it again "
                   "to finish it)\n", id);
            continue;
        }
        redisReply *n = cmd(rc, "SCARD", "SCARD %s", ckey);
        if (n == NULL) {
            goto out;
        }
        long long k = n->integer;
        reply_free(n);
        redisReply *w = cmd(rc, "HSET", "HSET %s status committed cards %lld",
                            bkey, k);
        reply_free(w);
        if (w == NULL) {
            goto out;
        }
        cards += k;
        n_committed++;
    }
    redisReply *w = cmd(rc, "SET", "SET %s %s", xkey, gen);
    reply_free(w);
    if (w == NULL) {
        goto out;
    }
    printf("exposed-card set confirmed as it is now: %zu breaches, %lld "
           "cards (generation %s)\n", n_committed, cards, gen);
    exit_code = 0;
out:
    reply_free(ids);
    lclose(rc);
    return exit_code;
}

struct unload_stats {
    uint64_t removed;
    char refused[256]; /* Redis's first error reply to a removal */
};

/* One card entry removed (or already gone: the script is idempotent), or
 * its refusal kept: the breach must not be dropped while a card record
 * that names it is left behind. */
static void on_removed(void *arg, const redisReply *r)
{
    struct unload_stats *st = arg;
    if (!answered(r, st->refused, sizeof(st->refused))) {
        return;
    }
    st->removed++;
}

/* Removes every card record of breach id (the members of set ckey) with
 * the removal script sha, a set scan at a time; us counts them. Returns
 * 0, or -1 when Redis failed (logged) or a scan answered something else. */
static int unload_cards(struct lconn *rc, const struct config *c,
                        const char *id, const char *ckey, const char *sha,
                        int progress, struct unload_stats *us)
{
    char cursor[32] = "0";
    do {
        redisReply *s = cmd(rc, "SSCAN", "SSCAN %s %s COUNT 1000", ckey,
                            cursor);
        if (s == NULL || s->type != REDIS_REPLY_ARRAY || s->elements != 2) {
            reply_free(s);
            return -1;
        }
        snprintf(cursor, sizeof(cursor), "%s", s->element[0]->str);
        redisReply *members = s->element[1];
        for (size_t i = 0; i < members->elements; i++) {
            const char *m = members->element[i]->str;
            const char *colon = strchr(m, ':');
            if (colon == NULL) {
                continue;
            }
            char kid[CARD_KEY_ID_MAX + 1];
            size_t kl = (size_t)(colon - m);
            if (kl > CARD_KEY_ID_MAX) {
                continue;
            }
            memcpy(kid, m, kl);
            kid[kl] = '\0';
            char cardkey[RMODEL_KEY_MAX];
            rmodel_card_key(cardkey, c->redis_prefix, kid, colon + 1);
            if (lsend(rc, on_removed, us, "EVALSHA %s 1 %s %s", sha,
                      cardkey, id) != 0) {
                reply_free(s);
                return -1;
            }
        }
        reply_free(s);
        if (lwait(rc) != 0) {
            log_error(MOD, "Redis failed while unloading %s", id);
            return -1;
        }
        if (us->refused[0] != '\0') {
            if (progress) {
                fprintf(stderr, "\r\033[K");
            }
            log_error(MOD, "Redis %s refused removing a card of breach %s: "
                      "%s; %" PRIu64 " cards removed, the breach stays "
                      "unloading (invisible to lookups): run the unload "
                      "again", rconn_address(rc->rc), id, us->refused,
                      us->removed);
            return -1;
        }
        if (progress) {
            fprintf(stderr, "\r\033[Kunloading %s: %" PRIu64 " cards", id,
                    us->removed);
        }
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

int loader_unload(const struct config *c, const char *id, int progress)
{
    if (id == NULL || !breach_id_valid(id)) {
        log_error(MOD, "unload: give a breach id");
        return 1;
    }
    struct lconn conn, *rc = &conn;
    if (lopen(rc, c) != 0) {
        return 1;
    }
    int exit_code = 1;
    char bkey[RMODEL_KEY_MAX], ckey[RMODEL_KEY_MAX], lkey[RMODEL_KEY_MAX];
    rmodel_breach_key(bkey, c->redis_prefix, id);
    rmodel_breach_cards_key(ckey, c->redis_prefix, id);
    rmodel_breaches_key(lkey, c->redis_prefix);
    redisReply *r = cmd(rc, "SISMEMBER", "SISMEMBER %s %s", lkey, id);
    if (r == NULL) {
        goto out;
    }
    int known = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    reply_free(r);
    if (!known) {
        log_error(MOD, "unload: no breach '%s' is loaded (see `cardwatch "
                  "breaches`)", id);
        goto out;
    }
    char sha[41];
    if (load_script(rc, RMODEL_LUA_REMOVE, sha) != 0) {
        goto out;
    }
    /* Invisible to lookups at once, not card by card. */
    r = cmd(rc, "HSET", "HSET %s status unloading", bkey);
    reply_free(r);
    if (r == NULL) {
        goto out;
    }
    struct unload_stats us = {0};
    if (unload_cards(rc, c, id, ckey, sha, progress, &us) != 0) {
        goto out;
    }
    if (progress) {
        fprintf(stderr, "\r\033[K");
    }
    r = cmd(rc, "DEL", "DEL %s %s", ckey, bkey);
    reply_free(r);
    if (r != NULL) {
        r = cmd(rc, "SREM", "SREM %s %s", lkey, id);
        reply_free(r);
    }
    if (r == NULL) {
        /* (Redis's answer is logged) a rerun finds it listed: it ends */
        log_error(MOD, "breach %s: its %" PRIu64 " card records are "
                  "removed, the breach itself is not: run the unload again",
                  id, us.removed);
        goto out;
    }
    char xkey[RMODEL_KEY_MAX], gen[33];
    rmodel_exposed_key(xkey, c->redis_prefix);
    if (new_generation(gen) != 0) {
        goto out;
    }
    r = cmd(rc, "SET", "SET %s %s", xkey, gen);
    reply_free(r);
    if (r == NULL) {
        goto out;
    }
    printf("breach %s unloaded: %" PRIu64 " cards removed\n", id,
           us.removed);
    exit_code = 0;
out:
    lclose(rc);
    return exit_code;
}
