/* loader.c - see loader.h. */
#include "loader.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
#include "loader_int.h"

#define MOD "load"
#define CHUNK 4000 /* cards sent before waiting for their answers */
#define BATCH 200  /* cards per script call */
#define SPLITS 1000 /* bucket splits per script call */
#define RECOUNT_BUCKETS 1024 /* buckets per count call at the commit */
#define PATH_MAX_SHOWN 512 /* of the list's path in messages */

/* The signal that interrupted a load or unload (0 = none). */
volatile sig_atomic_t loader_signal;

static void on_signal(int sig)
{
    loader_signal = sig;
}

/* SIGTERM and SIGINT set loader_signal instead of killing the process, so a
 * load stops between two chunks and says what state it left. */
void loader_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* A fresh generation marker value (32 hex from the CSPRNG). */
int loader_new_generation(char out[33])
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

struct load_stats {
    uint64_t rows, loaded, added, rejected, no_expiry;
    char refused[256]; /* Redis's first error reply to a card */
};

/* 1 when reply r is an answer to count; 0 for none (NULL: the
 * connection was closed, the wait says why) or an error reply, the first
 * of which is kept in refused[len]. */
int loader_answered(const redisReply *r, char *refused, size_t len)
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

/* One batch's answer {cards new to the breach, cards new to Redis}, or
 * its refusal kept. */
static void on_batch(void *arg, const redisReply *r)
{
    struct load_stats *st = arg;
    if (!loader_answered(r, st->refused, sizeof(st->refused))) {
        return;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        st->added += (uint64_t)r->element[0]->integer;
    }
}

struct load_ctx {
    const struct config *c;
    const struct load_opts *o;
    struct rblock *L;
    struct card_key *key;
    char sha_add[41], sha_split[41];
    char bkey[RMODEL_KEY_MAX], lay[RMODEL_KEY_MAX], bpre[RMODEL_KEY_MAX];
    struct load_stats st;
    /* the batch being filled: fingerprints and expiry tags */
    uint8_t fps[BATCH][RMODEL_FP_BIN];
    char tags[BATCH][CARD_EXPTAG_SIZE];
    size_t n_batch;
    size_t pending; /* cards sent, not yet waited for */
    uint64_t est_rows; /* of a regular file (progress), else 0 */
    int interrupted; /* stopped by SIGTERM / SIGINT */
    uint64_t t0, last;
    /* What load_begin() writes, and what it learnt */
    int64_t ws, we;
    uint32_t elements;
    char lkey[RMODEL_KEY_MAX];
    char s_now[32];
    const char *list_name;
    int begun;        /* load_begin() ran: Redis holds the breach */
    int reload;       /* of a committed breach */
    int begin_failed; /* load_begin() failed (and said why) */
    long long before; /* the breach's members when the load began */
};

static int load_begin(struct load_ctx *lc);

/* Sends the batch: one script call. Returns 0, or -1 (logged). */
static int send_batch(struct load_ctx *lc)
{
    if (lc->n_batch == 0) {
        return 0;
    }
    const char *argv[7 + 2 * BATCH];
    size_t lens[7 + 2 * BATCH];
    const char *head[] = {"EVALSHA", lc->sha_add, "2", lc->lay, lc->bkey,
                          lc->bpre, lc->o->breach_id};
    for (int i = 0; i < 7; i++) {
        argv[i] = head[i];
        lens[i] = strlen(head[i]);
    }
    for (size_t i = 0; i < lc->n_batch; i++) {
        argv[7 + 2 * i] = (const char *)lc->fps[i];
        lens[7 + 2 * i] = RMODEL_FP_BIN;
        argv[8 + 2 * i] = lc->tags[i];
        lens[8 + 2 * i] = strlen(lc->tags[i]);
    }
    int argc = 7 + 2 * (int)lc->n_batch;
    if (rblock_sendargv(lc->L, on_batch, &lc->st, argc, argv, lens) != 0) {
        return -1;
    }
    lc->pending += lc->n_batch;
    lc->n_batch = 0;
    return 0;
}

/* A split moves about half of one bucket's cards. */
int loader_split(struct rblock *L, const char *sha, const char *lay,
                 const char *bpre)
{
    for (;;) {
        redisReply *r = rblock_cmd(L, "a bucket split",
                                   "EVALSHA %s 1 %s %s %d %d", sha, lay,
                                   bpre, RMODEL_FILL, SPLITS);
        if (r == NULL) {
            return -1;
        }
        long long done = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        rblock_free(r);
        if (done < SPLITS) {
            return 0;
        }
    }
}

/* Waits for every card sent and lets the layout grow; the first refusal
 * (e.g. OOM) is reported. */
static int flush_chunk(struct load_ctx *lc)
{
    if (send_batch(lc) != 0 || rblock_wait(lc->L) != 0) {
        return -1;
    }
    if (lc->st.refused[0] != '\0') {
        log_error(MOD, "Redis %s refused a card: %s",
                  rconn_address(lc->L->rc), lc->st.refused);
        return -1;
    }
    lc->st.loaded += lc->pending;
    lc->pending = 0;
    return loader_split(lc->L, lc->sha_split, lc->lay, lc->bpre);
}

/* One accepted row: fingerprint and expiry tag into the batch; a full
 * batch is sent, every CHUNK cards waited for (pipelined). */
static int load_row(void *arg, const struct list_row *row)
{
    struct load_ctx *lc = arg;
    char fp[CARD_FP_SIZE];
    char *tag = lc->tags[lc->n_batch];
    tag[0] = '\0';
    /* Checked at every row, not only at a chunk's end: a signal that came
     * while rows of the buffer were being sent would otherwise be seen
     * only after the next read, which waits for a slow pipe's writer. */
    if (loader_signal != 0) {
        lc->interrupted = 1;
        return -1;
    }
    if (row->fingerprint != NULL) {
        /* A fingerprint under another key can never match a card: such a
         * list would monitor nothing. Checked before Redis is written
         * (load_begin() waits for the first card). */
        const char *kid = card_key_id(lc->key);
        if (strcmp(row->key_id, kid) != 0) {
            log_error(MOD, "%.*s:%lu: fingerprint under key id '%s', but "
                      "the configured [card] key id is '%s': a fingerprint "
                      "under another key never matches a card",
                      PATH_MAX_SHOWN, lc->list_name, row->line,
                      list_key_id_shown(row->key_id), kid);
            return -1;
        }
        memcpy(fp, row->fingerprint, CARD_FP_SIZE);
    } else if (card_fingerprint(lc->key, row->pan, row->len, fp) != 0) {
        log_error(MOD, "fingerprint failed (OpenSSL)");
        return -1;
    }
    if (!lc->begun && load_begin(lc) != 0) {
        return -1;
    }
    if (row->expiry[0] != '\0') {
        card_expiry_tag(lc->key, fp, row->expiry, tag);
    }
    if (rmodel_fp_bin(fp, lc->fps[lc->n_batch]) != 0) {
        return -1; /* cannot happen: card_fingerprint writes 32 hex */
    }
    if (++lc->n_batch == BATCH && send_batch(lc) != 0) {
        return -1;
    }
    if (lc->pending + lc->n_batch < CHUNK) {
        return 0;
    }
    if (loader_signal != 0) {
        lc->interrupted = 1;
        return -1;
    }
    if (flush_chunk(lc) != 0) {
        return -1;
    }
    uint64_t now = clock_mono_ns();
    if (lc->o->progress && now - lc->last > 200000000u) {
        lc->last = now;
        double rate = (double)lc->st.loaded / ((double)(now - lc->t0) / 1e9);
        fprintf(stderr, "\r\033[Kloading %s: %" PRIu64 " cards (%.0f/s)",
                lc->o->breach_id, lc->st.loaded, rate);
        if (lc->est_rows > lc->st.loaded && rate > 0) {
            /* of a regular file's estimated rows: a guide, not a count */
            fprintf(stderr, ", ~%.0f %%, ~%.0f s left",
                    100.0 * (double)lc->st.loaded / (double)lc->est_rows,
                    (double)(lc->est_rows - lc->st.loaded) / rate);
        }
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
static int load_write_meta(struct rblock *rc, const struct load_opts *o,
                           const struct card_key *key, uint32_t elements,
                           int64_t ws, int64_t we, const char *bkey,
                           const char *s_now)
{
    char elems[128], s_ws[32], s_we[32];
    breach_elements_format(elements, elems, sizeof(elems));
    snprintf(s_ws, sizeof(s_ws), "%" PRId64, ws);
    snprintf(s_we, sizeof(s_we), "%" PRId64, we);
    /* suspected: each load says it (one without --suspected confirms) */
    redisReply *r = rblock_cmd(rc, "HSET", "HSET %s window_start_ms %s "
                        "window_end_ms %s elements %s key_id %s "
                        "description %s suspected %s", bkey, s_ws, s_we,
                        elems, card_key_id(key),
                        o->description ? o->description : "",
                        o->suspected ? "1" : "0");
    rblock_free(r);
    if (r == NULL) {
        return -1;
    }
    r = rblock_cmd(rc, "HSETNX", "HSETNX %s loaded_at_ms %s", bkey, s_now);
    rblock_free(r);
    if (r == NULL) {
        return -1;
    }
    return 0;
}

/* Marks the breach (hash bkey) loading unless it has a status already.
 * Returns 1 for a reload of a committed breach, 0 for a first load (or
 * one that never committed), -1 after logging a failure. */
static int load_mark_staged(struct rblock *rc, const char *bkey)
{
    /* Staged: a first load stays invisible to lookups until its commit;
     * a reload of a committed breach keeps it visible (its cards only
     * grow). */
    redisReply *r = rblock_cmd(rc, "HSETNX", "HSETNX %s status loading", bkey);
    if (r == NULL) {
        return -1;
    }
    int reload = r->type == REDIS_REPLY_INTEGER && r->integer == 0;
    rblock_free(r);
    r = rblock_cmd(rc, "HGET", "HGET %s status", bkey);
    if (r == NULL) {
        return -1;
    }
    reload = reload && r->type == REDIS_REPLY_STRING &&
             rmodel_breach_status(r->str) == RMODEL_B_COMMITTED;
    rblock_free(r);
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
        !lc->begun ? "nothing was written to Redis"
        : reload   ? "it stays visible as committed before, with the cards "
                     "added so far"
                   : "none of it is visible to lookups (staged, not "
                     "committed); `cardwatch breaches` lists it as loading";
    if (lc->interrupted) {
        log_error(MOD, "load of breach %s interrupted by %s after %s: "
                  "%s; run the same load again to finish it",
                  o->breach_id, loader_signal == SIGINT ? "SIGINT" : "SIGTERM",
                  counts, state);
        return 128 + (int)loader_signal;
    }
    if (!lc->begun) {
        log_error(MOD, "load of breach %s stopped after %s: %s; fix the "
                  "cause and run the load again", o->breach_id, counts,
                  state);
        return 1;
    }
    log_error(MOD, "load of breach %s stopped after %s: %s; fix the "
              "cause and run the load again (or `cardwatch unload "
              "%s`)", o->breach_id, counts, state, o->breach_id);
    return 1;
}

/* Before the commit: the layout's entries as Redis holds them now (HLEN
 * over every bucket, RECOUNT_BUCKETS per call: about a second per 10 M
 * cards), and on a reload (had: the breach's members when the load began)
 * its members too (every record read: a pass over the whole set). The
 * scripts keep both counts as they add, but a record lost behind their
 * back (deleted by hand, a partial copy) and loaded again would count
 * twice, and the guard compares what it finds with these. A first load
 * finds no record of its breach lost, so its own count stands. Returns
 * 0, or -1 (logged). */
static int recount(struct load_ctx *lc, long long had)
{
    uint64_t first = 0, buckets = 1;
    long long entries = 0, members = 0;
    const char *mode = had > 0 ? "breach" : "count";
    while (first < buckets) {
        redisReply *r = rblock_cmd(lc->L, "the count before the commit",
                                   "EVAL %s 1 %s %s %" PRIu64 " %d %s %s",
                                   RMODEL_LUA_SCAN, lc->lay, lc->bpre, first,
                                   RECOUNT_BUCKETS, mode, lc->o->breach_id);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
            r->element[0]->type != REDIS_REPLY_STRING) {
            rblock_free(r);
            return -1;
        }
        buckets = strtoull(r->element[0]->str, NULL, 10);
        entries += r->element[1]->integer;
        members += r->elements == 4 ? r->element[3]->integer : 0;
        rblock_free(r);
        first += RECOUNT_BUCKETS;
    }
    redisReply *r = rblock_cmd(lc->L, "HSET", "HSET %s entries %lld", lc->lay,
                               entries);
    rblock_free(r);
    if (r != NULL && had > 0) {
        r = rblock_cmd(lc->L, "HSET", "HSET %s members %lld", lc->bkey,
                       members);
        rblock_free(r);
    }
    return r == NULL ? -1 : 0;
}

/* CONFIG GET's answer: the setting's value, or -1 (refused, unknown). */
static void on_config(void *arg, const redisReply *r)
{
    long long *v = arg;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        *v = strtoll(r->element[1]->str, NULL, 10);
    }
}

/* The compact encoding the layout counts on (rmodel.h): buckets of about
 * RMODEL_FILL cards (up to twice that before a split) and records of a
 * card in up to three breaches; Redis's defaults (128 and 64) fit. A
 * lower setting costs memory, never correctness: said, not refused. An
 * ACL that refuses CONFIG GET leaves it unsaid. */
static void check_listpack(struct rblock *L)
{
    static const struct {
        const char *name;
        long long want;
        const char *what;
    } need[] = {
        {"hash-max-listpack-entries", 128, "a bucket of cards"},
        {"hash-max-listpack-value", 64, "a card's record"},
    };
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        long long v = -1;
        const char *argv[] = {"CONFIG", "GET", need[i].name};
        size_t lens[] = {6, 3, strlen(need[i].name)};
        if (rblock_sendargv(L, on_config, &v, 3, argv, lens) != 0 ||
            rblock_wait(L) != 0) {
            return;
        }
        if (v >= 0 && v < need[i].want) {
            log_warn(MOD, "Redis %s has %s %lld: %s larger than that is kept "
                     "in Redis's ordinary encoding, several times the memory "
                     "of the compact one (about 47 bytes per card); set it "
                     "to %lld or more (Redis's default)", rconn_address(L->rc),
                     need[i].name, v, need[i].what, need[i].want);
        }
    }
}

/* The rows a regular file likely holds (its size over the mean length of
 * its first 64 KiB of lines), 0 for a pipe or stdin. */
static uint64_t estimate_rows(const char *path)
{
    struct stat st;
    if (strcmp(path, "-") == 0 || stat(path, &st) != 0 ||
        !S_ISREG(st.st_mode)) {
        return 0;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return 0;
    }
    char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf), f), lines = 0;
    fclose(f);
    for (size_t i = 0; i < n; i++) {
        lines += buf[i] == '\n';
    }
    return lines == 0 ? 0 : (uint64_t)st.st_size / (n / lines);
}

/* A first load into an empty layout starts it at the size the list
 * needs (no card moves between buckets as it grows). Returns 0, or -1
 * (logged). */
static int presize(struct load_ctx *lc)
{
    uint64_t rows = estimate_rows(lc->o->list_path);
    lc->est_rows = rows;
    int level = 0;
    while (level < 30 && (UINT64_C(2) << level) * RMODEL_FILL <= rows) {
        level++;
    }
    if (level == 0) {
        return 0;
    }
    redisReply *r = rblock_cmd(lc->L, "the layout's size", "EVAL %s 1 %s %d",
                               RMODEL_LUA_PRESIZE, lc->lay, level);
    rblock_free(r);
    return r == NULL ? -1 : 0;
}

/* The layout a load writes into: its version, its size for a first load,
 * Redis's settings for it. Returns 0, or -1 (logged). */
static int prepare_layout(struct load_ctx *lc)
{
    redisReply *r = rblock_cmd(lc->L, "HSETNX", "HSETNX %s version %s",
                               lc->lay, RMODEL_LAYOUT_VERSION);
    rblock_free(r);
    if (r == NULL || presize(lc) != 0) {
        return -1;
    }
    check_listpack(lc->L);
    return 0;
}

long long loader_members(struct rblock *L, const char *bkey)
{
    redisReply *r = rblock_cmd(L, "HGET", "HGET %s members", bkey);
    long long n = r == NULL                        ? -1
                  : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                                                  : 0;
    rblock_free(r);
    return n;
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
    long long total = loader_members(lc->L, lc->bkey);
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

/* Writes the breach to Redis before its first card (or at the end of a
 * list that had none): metadata, staged status, listed, the layout
 * ready. Waiting for the first card keeps a list refused at its header or
 * first row (a fingerprint under another key) out of Redis altogether.
 * Returns 0, or -1 after logging. */
static int load_begin(struct load_ctx *lc)
{
    const struct load_opts *o = lc->o;
    struct rblock *rc = lc->L;
    lc->begun = 1;
    lc->begin_failed = 1; /* until the end */
    /* Metadata first, so a processor that meets a card finds its breach. */
    if (load_write_meta(rc, o, lc->key, lc->elements, lc->ws, lc->we,
                        lc->bkey, lc->s_now) != 0) {
        return -1;
    }
    lc->reload = load_mark_staged(rc, lc->bkey);
    if (lc->reload < 0) {
        lc->reload = 0;
        return -1;
    }
    redisReply *r = rblock_cmd(rc, "SADD", "SADD %s %s", lc->lkey,
                               o->breach_id);
    rblock_free(r);
    if (r == NULL) {
        return -1;
    }
    /* "New" is how much the breach grew: a batch sent again after a
     * reconnect finds the cards Redis took from the dropped connection
     * already there, so the script's own answers would undercount. */
    lc->before = loader_members(rc, lc->bkey);
    if (lc->before < 0 || prepare_layout(lc) != 0) {
        return -1;
    }
    lc->t0 = clock_mono_ns();
    lc->last = lc->t0;
    lc->begin_failed = 0;
    return 0;
}

int loader_load(const struct config *c, const struct load_opts *o)
{
    char err[256];
    int64_t ws, we;
    uint32_t elements;
    int rc_exit = 1;
    struct rblock conn = {0}, *rc = &conn;
    struct card_key *key = NULL;

    if (load_opts_check(o, &ws, &we, &elements) != 0) {
        return 1;
    }
    key = card_key_load(c->key_file, err, sizeof(err));
    if (key == NULL) {
        log_error(MOD, "%s", err);
        return 1;
    }
    struct load_ctx *lcp = calloc(1, sizeof(*lcp));
    if (lcp == NULL) {
        log_error(MOD, "out of memory");
        card_key_destroy(key);
        return 1;
    }
    struct load_ctx *lc = lcp;
    lc->c = c;
    lc->o = o;
    lc->L = rc;
    lc->key = key;
    lc->ws = ws;
    lc->we = we;
    lc->elements = elements;
    lc->list_name = strcmp(o->list_path, "-") == 0 ? "<stdin>" : o->list_path;
    if (rblock_open(rc, c, MOD) != 0 ||
        rblock_script(rc, RMODEL_LUA_ADD, lc->sha_add) != 0 ||
        rblock_script(rc, RMODEL_LUA_SPLIT, lc->sha_split) != 0) {
        goto out;
    }
    rmodel_breach_key(lc->bkey, c->redis_prefix, o->breach_id);
    rmodel_breaches_key(lc->lkey, c->redis_prefix);
    rmodel_layout_key(lc->lay, c->redis_prefix, card_key_id(key));
    rmodel_bucket_prefix(lc->bpre, c->redis_prefix, card_key_id(key));
    snprintf(lc->s_now, sizeof(lc->s_now), "%" PRId64, clock_wall_ms());
    char gen[33], xkey[RMODEL_KEY_MAX];
    rmodel_exposed_key(xkey, c->redis_prefix);
    if (loader_new_generation(gen) != 0) {
        goto out;
    }
    loader_catch_signals();
    lc->t0 = clock_mono_ns();
    lc->last = lc->t0;
    struct list_stats ls;
    unsigned flags = LIST_FINGERPRINTS |
                     ((elements & BREACH_EL_EXPIRY) ? LIST_WARN_NO_EXPIRY : 0);
    int read_rc = list_read(o->list_path, flags, load_row, lc, &ls);
    if (loader_signal != 0) {
        /* After the last full chunk, or while a read waited for more of
         * the list (a pipe): the read then fails with EINTR, and the load
         * was interrupted all the same, not broken. */
        lc->interrupted = 1;
        read_rc = -1;
    }
    /* A list without a card is recorded all the same (an empty breach). */
    if (read_rc == 0 && !lc->begun && load_begin(lc) != 0) {
        read_rc = -1;
    }
    if (read_rc == 0 && flush_chunk(lc) != 0) {
        read_rc = -1;
    }
    /* How far it got, for the messages of a load that stops. */
    char counts[PATH_MAX_SHOWN + 128];
    snprintf(counts, sizeof(counts), "%" PRIu64 " rows read from %.*s (%" PRIu64
             " cards loaded, %" PRIu64 " rejected)", ls.rows, PATH_MAX_SHOWN,
             lc->list_name, lc->st.loaded, ls.rejected);
    if (read_rc != 0) {
        /* a failure to begin was reported where it happened, as Redis
         * refused or failed a command before the first card */
        rc_exit = lc->begin_failed ? 1 : load_stopped(lc, counts, lc->reload);
        goto out;
    }
    /* Commit: status, recorded count, listed, new marker - one step. */
    redisReply *r = recount(lc, lc->before) != 0
            ? NULL
            : rblock_cmd(rc, "the commit", "EVAL %s 4 %s %s %s %s %s %s %s",
                         RMODEL_LUA_COMMIT, lc->bkey, lc->lay, lc->lkey, xkey,
                         o->breach_id, gen, lc->s_now);
    if (r == NULL) {
        log_error(MOD, "breach %s was not committed after %s: %s",
                  o->breach_id, counts,
                  lc->reload ? "it stays as committed before"
                             : "it stays invisible; run the load again");
        goto out;
    }
    rblock_free(r);
    load_summary(lc, &ls, lc->list_name, lc->before);
    rc_exit = 0;
out:
    rblock_close(rc);
    card_key_destroy(key);
    free(lcp);
    return rc_exit;
}
