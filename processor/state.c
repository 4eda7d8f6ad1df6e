/* state.c - see state.h.
 *
 * A card's records live in a struct card (the cache) once read from
 * Redis; every event is answered in process by cardstate_observe() (the
 * semantics of the script this module ran per event until issue 14), and
 * the changes it reports are collected in the write buffer ("acc") of the
 * next write: one script call (LUA_WRITE) with the window changes of every
 * card, then one HSET per suppression record, all sent together. One
 * write is with Redis at a time; what the events evaluated meanwhile
 * produce waits in the other buffer and goes when the first is answered,
 * so a write costs one round trip however many events it carries, and
 * writes reach Redis in the order the events were evaluated. An event's
 * acks (state_release, state_suppressed_by) fire when the write holding
 * its changes is answered. A card whose event recorded a suppression
 * waits until that record is written (as before the cache: an ACL that
 * refuses HSET holds that card, not the others).
 *
 * Reads: the cards of a state_run() that are not cached are read with one
 * script call (LUA_READ: HGETALL of both hashes of each), one round trip.
 */
#include "state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "cardstate.h"
#include "clock.h"
#include "log.h"
#include "rmodel.h"

#define MOD "state"
#define BUCKETS 65536
/* After an error reply (an ACL refusal, OOM) a command is sent again
 * this long after; the card's events wait meanwhile. */
#define RETRY_MS 200
#define LOG_EVERY_S 60 /* the same refusal is logged again this often */
/* Cache bound: cards without a pending write are evicted, least recently
 * used first, above this many bytes of cached records. */
#define CACHE_MAX_BYTES ((size_t)256 << 20)
#define IDLE_MIN_MS 60000 /* an idle card is kept at least this long */

/* One write: applies the window changes of many events, in their order.
 * KEYS: win1, sup1, win2, sup2, ... (one pair per card). ARGV[1]: TTL ms
 * (every key). Then ops: "<w|x|y><card number>" then the field and, for
 * w (HSET win), the value; x / y are HDEL win / sup. Suppression records
 * are plain HSETs sent right after it (one round trip): an ACL that
 * refuses HSET then names it, and the card's next event waits for them
 * as it did before the cache. */
static const char LUA_WRITE[] =
    "local i, ttl = 2, ARGV[1]\n"
    "while i <= #ARGV do\n"
    "  local op = ARGV[i]\n"
    "  local c, j = string.sub(op, 1, 1), tonumber(string.sub(op, 2))\n"
    "  if c == 'w' then\n"
    "    redis.call('HSET', KEYS[2 * j - 1], ARGV[i + 1], ARGV[i + 2])\n"
    "    i = i + 3\n"
    "  elseif c == 'x' then\n"
    "    redis.call('HDEL', KEYS[2 * j - 1], ARGV[i + 1]); i = i + 2\n"
    "  else\n"
    "    redis.call('HDEL', KEYS[2 * j], ARGV[i + 1]); i = i + 2\n"
    "  end\n"
    "end\n"
    "for j = 1, #KEYS do redis.call('PEXPIRE', KEYS[j], ttl) end\n"
    "return #KEYS / 2\n";

/* One read: both hashes of every card of a state_run() not cached.
 * KEYS: win1, sup1, win2, sup2, ... Returns their HGETALLs in order. */
static const char LUA_READ[] =
    "local out = {}\n"
    "for i = 1, #KEYS do out[i] = redis.call('HGETALL', KEYS[i]) end\n"
    "return out\n";

struct sreq {
    struct sreq *next;
    state_cb cb;
    void *arg;
    int64_t event_ms;
    int64_t horizon;
    int64_t sup_horizon;
    char txn_id[TXN_ID_MAX + 1];
    size_t record_len;
    char record[512];
};

struct card {
    char fp[CARD_FP_SIZE];
    struct card *hnext;       /* bucket chain */
    struct card *prev, *next; /* LRU list: head = most recent */
    struct card *rnext;       /* run list, read list or wait list */
    struct sreq *head, *tail; /* events waiting for their turn */
    struct cardstate cs;
    size_t bytes;     /* counted in state.bytes */
    uint64_t touched; /* monotonic ms */
    uint64_t wnum;    /* write holding its latest change; 0 none */
    uint64_t sup_num; /* write holding its latest suppression record */
    uint64_t acc_num; /* write it has a key pair in ... */
    size_t acc_idx;   /* ... and its number there (1-based) */
    int loaded;       /* cs mirrors Redis (with the pending writes) */
    int reading;      /* its read is with Redis */
    int stale;        /* read again before the next view (state_forget) */
    int busy;         /* its event is with the callback */
    int in_run;       /* on the run list */
    int in_read;      /* on the read list */
    int in_wait;      /* on the wait list (its suppression record unwritten) */
    int in_oom;       /* on the retry list (its next event found no memory) */
};

struct arg {
    size_t off, len;
};

struct wack {
    state_ack_cb cb;
    void *arg;
};

struct acc;

/* One command of a write: the script, or suppression record hset. */
struct wcmd {
    struct acc *a;
    int hset; /* -1: the script; else the record's index */
    int tries;
    int refused;
};

/* A write buffer: the script's keys and ops, the suppression records,
 * the acks of the events it carries. */
struct acc {
    struct state *s;
    uint64_t num;
    char *buf;
    size_t len, cap;
    struct arg *keys;
    size_t nkeys, capkeys;
    struct arg *ops;
    size_t nops, capops;
    struct arg *sets; /* key, field, value per record */
    size_t nsets, capsets;
    struct wack *acks;
    size_t nacks, capacks;
    int64_t ttl;
    struct wcmd *cmds; /* while with Redis */
    size_t outstanding;
    int lost; /* a command was answered NULL (destroyed) */
};

/* One read of cards. */
struct read {
    struct state *s;
    struct card **cards;
    size_t n;
    int tries;
    int refused;
};

struct state {
    struct rconn *rc;
    struct event *retry_ev; /* run() again after an allocation failed */
    struct card *oom_head;  /* cards whose next event found no memory */
    char prefix[32];
    char kid[CARD_KEY_ID_MAX + 1];
    char ns[48];
    char sha_write[41], sha_read[41];
    int64_t grace_ms;
    struct card *buckets[BUCKETS];
    struct card *lru_head, *lru_tail;
    struct card *run_head, *run_tail;
    struct card *read_head;
    struct card *wait_head;
    size_t n_cards;
    size_t bytes;
    size_t n_stale;
    uint64_t idle_ms;
    struct acc acc[2];
    struct acc *cur; /* collecting */
    struct acc *fly; /* with Redis, or NULL */
    uint64_t acked;  /* number of the last write answered */
    struct cs_scratch sc;
    struct state_sup *sups;
    size_t cap_sups;
    /* commands whose last answer was an error reply, waiting to be sent
     * again; the last such answer and what it refused (readiness) */
    size_t n_refused;
    char refused[256];
    const char *refused_what;
    struct log_limit limit, limit_sha, limit_bad;
};

static unsigned bucket_of(const char *fp)
{
    unsigned h = 2166136261u;
    for (const char *p = fp; *p; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    return h % BUCKETS;
}

static uint64_t mono_ms(void)
{
    return clock_mono_ns() / 1000000u;
}

static struct card *find_card(struct state *s, const char *fp)
{
    for (struct card *c = s->buckets[bucket_of(fp)]; c != NULL; c = c->hnext) {
        if (strcmp(c->fp, fp) == 0) {
            return c;
        }
    }
    return NULL;
}

static void lru_unlink(struct state *s, struct card *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->lru_head = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    } else {
        s->lru_tail = c->prev;
    }
    c->prev = c->next = NULL;
}

static void lru_front(struct state *s, struct card *c)
{
    c->next = s->lru_head;
    c->prev = NULL;
    if (s->lru_head != NULL) {
        s->lru_head->prev = c;
    } else {
        s->lru_tail = c;
    }
    s->lru_head = c;
}

static struct card *new_card(struct state *s, const char *fp)
{
    struct card *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    snprintf(c->fp, sizeof(c->fp), "%s", fp);
    unsigned b = bucket_of(fp);
    c->hnext = s->buckets[b];
    s->buckets[b] = c;
    lru_front(s, c);
    c->bytes = sizeof(*c);
    s->bytes += c->bytes;
    s->n_cards++;
    return c;
}

static void account(struct state *s, struct card *c)
{
    size_t b = sizeof(*c) + cardstate_bytes(&c->cs);
    s->bytes = s->bytes - c->bytes + b;
    c->bytes = b;
}

/* Frees a card that nothing refers to (no events, read, list, write). */
static void drop_card(struct state *s, struct card *c)
{
    for (struct card **pp = &s->buckets[bucket_of(c->fp)]; *pp != NULL;
         pp = &(*pp)->hnext) {
        if (*pp == c) {
            *pp = c->hnext;
            break;
        }
    }
    lru_unlink(s, c);
    s->bytes -= c->bytes;
    s->n_cards--;
    if (c->stale) {
        s->n_stale--;
    }
    cardstate_clear(&c->cs);
    free(c);
}

static int key_of(char *buf, size_t len, const struct state *s,
                  const char *kind, const char *fp)
{
    int n = snprintf(buf, len, "%s:%s:%s:%s:%s", s->prefix, s->ns, kind, s->kid,
                     fp);
    return n > 0 && (size_t)n < len ? n : -1;
}

static int sha1_hex(const char *text, char out[41])
{
    unsigned char d[20];
    unsigned int dl = 0;
    if (!EVP_Digest(text, strlen(text), d, &dl, EVP_sha1(), NULL) || dl != 20) {
        return -1;
    }
    for (int i = 0; i < 20; i++) {
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    }
    return 0;
}

static void run(struct state *s);
static void run_append(struct state *s, struct card *c);

/* What found no memory is tried again (retry_later): the cards whose
 * next event could not be evaluated, the read list, the pending write. */
static void on_retry_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct state *s = arg;
    while (s->oom_head != NULL) {
        struct card *c = s->oom_head;
        s->oom_head = c->rnext;
        c->in_oom = 0;
        if (!c->in_run) {
            run_append(s, c);
        }
    }
    run(s); /* ends with send_write() and send_reads() */
}

/* run() again in RETRY_MS, which sends the read list and the pending
 * write: after an allocation failed (the timer was made with the module:
 * arming it cannot fail). */
static void retry_later(struct state *s)
{
    struct timeval tv = {0, RETRY_MS * 1000};
    evtimer_add(s->retry_ev, &tv);
}

struct state *state_new(struct event_base *base, struct rconn *rc,
                        const char *prefix, const char *key_id,
                        const char *ns, int64_t grace_ms)
{
    if (base == NULL || rc == NULL || prefix == NULL || key_id == NULL || ns == NULL ||
        grace_ms < 0 || strlen(prefix) >= 32 ||
        strlen(key_id) > CARD_KEY_ID_MAX || strlen(ns) == 0 ||
        strlen(ns) > 40 ||
        strspn(ns, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(ns)) {
        return NULL;
    }
    struct state *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->rc = rc;
    s->retry_ev = evtimer_new(base, on_retry_ev, s);
    if (s->retry_ev == NULL) {
        free(s);
        return NULL;
    }
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    snprintf(s->kid, sizeof(s->kid), "%s", key_id);
    snprintf(s->ns, sizeof(s->ns), "%s", ns);
    s->grace_ms = grace_ms;
    s->idle_ms = IDLE_MIN_MS;
    s->acc[0].s = s->acc[1].s = s;
    s->cur = &s->acc[0];
    s->cur->num = 1;
    /* SHA-1s of the scripts, for EVALSHA; EVAL loads a script when Redis
     * lost its script cache (NOSCRIPT after a restart). */
    if (sha1_hex(LUA_WRITE, s->sha_write) != 0 ||
        sha1_hex(LUA_READ, s->sha_read) != 0) {
        event_free(s->retry_ev);
        free(s);
        return NULL;
    }
    return s;
}

/* An error reply to `what` that is retried: logged (the same answer at
 * most once a minute) and counted for readiness while *refused is set. */
static void note_refusal(struct state *s, int *refused, const char *what,
                         const char *text)
{
    if (log_limit_ok(&s->limit, text, LOG_EVERY_S)) {
        log_error(MOD,
                  "%s failed: %s; retrying every %d ms until Redis "
                  "accepts it (the card's events wait)",
                  what, text, RETRY_MS);
    }
    snprintf(s->refused, sizeof(s->refused), "%s", text);
    s->refused_what = what;
    if (!*refused) {
        *refused = 1;
        s->n_refused++;
    }
}

/* A command counted by note_refusal() was answered. */
static void end_refusal(struct state *s, int *refused)
{
    if (!*refused) {
        return;
    }
    *refused = 0;
    if (--s->n_refused == 0) {
        log_info(MOD,
                 "Redis %s accepts window updates and suppression "
                 "writes again",
                 rconn_address(s->rc));
        log_limit_reset(&s->limit);
    }
}

/* A script error that is not NOSCRIPT is first taken for EVALSHA alone
 * being refused: the whole script is sent at once (logged). Returns 1
 * when the caller sends EVAL now, 0 when it retries later. */
static int eval_now(struct state *s, const char *err, int *tries)
{
    int noscript = strncmp(err, "NOSCRIPT", 8) == 0;
    if (noscript || (*tries)++ == 0) {
        if (!noscript && log_limit_ok(&s->limit_sha, err, LOG_EVERY_S)) {
            log_warn(MOD,
                     "window update failed: %s; sending the whole "
                     "script (EVAL)",
                     err);
        }
        return 1;
    }
    return 0;
}

/* ---- the write buffer ---- */

static int acc_put(struct acc *a, const char *p, size_t n, struct arg **arr,
                   size_t *na, size_t *cap)
{
    if (a->len + n > a->cap) {
        size_t nc = a->cap ? a->cap : 4096;
        while (nc < a->len + n) {
            nc *= 2;
        }
        char *nb = realloc(a->buf, nc);
        if (nb == NULL) {
            return -1;
        }
        a->buf = nb;
        a->cap = nc;
    }
    if (*na == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        struct arg *np = realloc(*arr, nc * sizeof(**arr));
        if (np == NULL) {
            return -1;
        }
        *arr = np;
        *cap = nc;
    }
    memcpy(a->buf + a->len, p, n);
    (*arr)[(*na)++] = (struct arg){a->len, n};
    a->len += n;
    return 0;
}

static void acc_reset(struct acc *a)
{
    a->len = a->nkeys = a->nops = a->nsets = a->nacks = 0;
    a->ttl = 0;
    a->outstanding = 0;
    a->lost = 0;
    free(a->cmds);
    a->cmds = NULL;
}

/* Card c's key pair in the next write (its keys' TTL is renewed there,
 * as every event did). Returns 0, or -1 out of memory. */
static int ensure_keys(struct state *s, struct card *c)
{
    struct acc *a = s->cur;
    if (c->acc_num == a->num) {
        return 0;
    }
    char k[RMODEL_KEY_MAX];
    int kl = key_of(k, sizeof(k), s, "win", c->fp);
    if (kl < 0 ||
        acc_put(a, k, (size_t)kl, &a->keys, &a->nkeys, &a->capkeys) != 0) {
        return -1;
    }
    kl = key_of(k, sizeof(k), s, "sup", c->fp);
    if (kl < 0 ||
        acc_put(a, k, (size_t)kl, &a->keys, &a->nkeys, &a->capkeys) != 0) {
        a->nkeys--;
        return -1;
    }
    c->acc_num = a->num;
    c->acc_idx = a->nkeys / 2;
    c->wnum = a->num;
    return 0;
}

/* Context of the emit callback: the card whose change it is. */
struct emit_ctx {
    struct state *s;
    struct card *c;
};

static int emit(void *arg, enum cs_op op, const char *field, size_t flen,
                const char *val, size_t vlen)
{
    struct emit_ctx *x = arg;
    struct state *s = x->s;
    struct card *c = x->c;
    struct acc *a = s->cur;
    if (ensure_keys(s, c) != 0) {
        return -1;
    }
    if (op == CS_SUP_SET) {
        char k[RMODEL_KEY_MAX];
        int kl = key_of(k, sizeof(k), s, "sup", c->fp);
        size_t mark = a->nsets;
        if (kl < 0 ||
            acc_put(a, k, (size_t)kl, &a->sets, &a->nsets, &a->capsets) != 0 ||
            acc_put(a, field, flen, &a->sets, &a->nsets, &a->capsets) != 0 ||
            acc_put(a, val, vlen, &a->sets, &a->nsets, &a->capsets) != 0) {
            a->nsets = mark;
            return -1;
        }
        c->sup_num = a->num;
        return 0;
    }
    static const char kinds[] = {'w', 'x', 's', 'y'};
    char o[24];
    int ol = snprintf(o, sizeof(o), "%c%zu", kinds[op], c->acc_idx);
    size_t mark = a->nops;
    if (acc_put(a, o, (size_t)ol, &a->ops, &a->nops, &a->capops) != 0 ||
        acc_put(a, field, flen, &a->ops, &a->nops, &a->capops) != 0 ||
        (val != NULL &&
         acc_put(a, val, vlen, &a->ops, &a->nops, &a->capops) != 0)) {
        a->nops = mark;
        return -1;
    }
    return 0;
}

/* ack fires when what card c wrote so far is in Redis: at once when
 * nothing is pending, else with the write holding its latest change. */
static int add_ack(struct state *s, struct card *c, state_ack_cb cb, void *arg)
{
    if (c->wnum <= s->acked) {
        cb(arg, 0);
        return 0;
    }
    struct acc *a = c->wnum == s->cur->num ? s->cur : s->fly;
    if (a->nacks == a->capacks) {
        size_t nc = a->capacks ? a->capacks * 2 : 256;
        struct wack *np = realloc(a->acks, nc * sizeof(*np));
        if (np == NULL) {
            log_error(MOD, "out of memory waiting for a window write; the "
                      "event is not acknowledged");
            return -1;
        }
        a->acks = np;
        a->capacks = nc;
    }
    a->acks[a->nacks++] = (struct wack){cb, arg};
    return 0;
}

static void run(struct state *s);
static void on_write(void *arg, const redisReply *rep);

static int issue_script(struct state *s, struct wcmd *w, int use_eval,
                        int delay_ms)
{
    struct acc *a = w->a;
    size_t argc = 4 + a->nkeys + a->nops;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    char nk[24], ttl[24];
    snprintf(nk, sizeof(nk), "%zu", a->nkeys);
    snprintf(ttl, sizeof(ttl), "%" PRId64, a->ttl);
    int rc = -1;
    if (argv != NULL && lens != NULL) {
        argv[0] = use_eval ? "EVAL" : "EVALSHA";
        argv[1] = use_eval ? LUA_WRITE : s->sha_write;
        argv[2] = nk;
        size_t k = 3;
        for (size_t i = 0; i < a->nkeys; i++, k++) {
            argv[k] = a->buf + a->keys[i].off;
            lens[k] = a->keys[i].len;
        }
        argv[k] = ttl;
        lens[k++] = strlen(ttl);
        for (size_t i = 0; i < a->nops; i++, k++) {
            argv[k] = a->buf + a->ops[i].off;
            lens[k] = a->ops[i].len;
        }
        for (int i = 0; i < 3; i++) {
            lens[i] = strlen(argv[i]);
        }
        rc = delay_ms > 0
                 ? rconn_command_later(s->rc, delay_ms, (int)argc, argv, lens,
                                       on_write, w)
                 : rconn_command(s->rc, (int)argc, argv, lens, on_write, w);
    }
    free(argv);
    free(lens);
    return rc;
}

static int issue_hset(struct state *s, struct wcmd *w, int delay_ms)
{
    struct acc *a = w->a;
    const struct arg *g = &a->sets[3 * (size_t)w->hset];
    const char *argv[] = {"HSET", a->buf + g[0].off, a->buf + g[1].off,
                          a->buf + g[2].off};
    size_t lens[] = {4, g[0].len, g[1].len, g[2].len};
    return delay_ms > 0 ? rconn_command_later(s->rc, delay_ms, 4, argv, lens,
                                              on_write, w)
                        : rconn_command(s->rc, 4, argv, lens, on_write, w);
}

/* Puts card c at the end of the run list (it has events to evaluate),
 * unless it waits on the retry list (which runs it). */
static void run_append(struct state *s, struct card *c)
{
    if (c->in_oom) {
        return;
    }
    c->in_run = 1;
    c->rnext = NULL;
    if (s->run_tail != NULL) {
        s->run_tail->rnext = c;
    } else {
        s->run_head = c;
    }
    s->run_tail = c;
}

/* Every command of write a was answered. */
static void write_done(struct state *s, struct acc *a)
{
    int lost = a->lost;
    if (!lost) {
        s->acked = a->num;
    }
    s->fly = NULL;
    /* An ack may finish events and batches, and the source may hand over
     * new events from there (state_run): a is free before they run. */
    struct wack *acks = a->acks;
    size_t n = a->nacks;
    a->acks = NULL;
    a->capacks = 0;
    acc_reset(a);
    for (size_t i = 0; i < n; i++) {
        acks[i].cb(acks[i].arg, lost);
    }
    free(acks);
    if (lost) {
        return; /* destroyed: nothing more is sent */
    }
    /* cards whose suppression record is written go on */
    for (struct card **pp = &s->wait_head; *pp != NULL;) {
        struct card *c = *pp;
        if (c->sup_num > s->acked) {
            pp = &c->rnext;
            continue;
        }
        *pp = c->rnext;
        c->in_wait = 0;
        if (!c->in_run) {
            run_append(s, c);
        }
    }
    run(s);
}

static void on_write(void *arg, const redisReply *rep)
{
    struct wcmd *w = arg;
    struct acc *a = w->a;
    struct state *s = a->s;
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
        /* Until it is written, the events it carries stay unacknowledged
         * (and a card whose suppression record it is waits). */
        int rc;
        if (w->hset < 0) {
            int now = eval_now(s, rep->str, &w->tries);
            if (!now) {
                note_refusal(s, &w->refused, "window update", rep->str);
            }
            rc = issue_script(s, w, now, now ? 0 : RETRY_MS);
        } else {
            note_refusal(s, &w->refused, "suppression write", rep->str);
            rc = issue_hset(s, w, RETRY_MS);
        }
        if (rc == 0) {
            return;
        }
        log_error(MOD, "out of memory queuing a window write again");
        a->lost = 1;
    } else if (rep == NULL) {
        a->lost = 1;
    } else {
        end_refusal(s, &w->refused);
    }
    if (--a->outstanding == 0) {
        write_done(s, a);
    }
}

/* Sends cur as the next write when none is with Redis. */
static void send_write(struct state *s)
{
    if (s->fly != NULL) {
        return;
    }
    struct acc *a = s->cur;
    size_t nsets = a->nsets / 3;
    if (a->nkeys == 0 && nsets == 0) {
        return; /* acks are only added to writes with changes */
    }
    size_t n = (a->nkeys > 0) + nsets;
    a->cmds = calloc(n, sizeof(*a->cmds));
    if (a->cmds == NULL) {
        log_error(MOD, "out of memory sending a window write; tried again "
                       "in %d ms", RETRY_MS);
        retry_later(s);
        return;
    }
    s->fly = a;
    s->cur = a == &s->acc[0] ? &s->acc[1] : &s->acc[0];
    s->cur->num = a->num + 1;
    a->outstanding = n;
    size_t k = 0;
    if (a->nkeys > 0) {
        a->cmds[k] = (struct wcmd){a, -1, 0, 0};
        if (issue_script(s, &a->cmds[k], 0, 0) != 0) {
            log_error(MOD, "out of memory queuing a window write");
            a->lost = 1;
            a->outstanding--;
        }
        k++;
    }
    for (size_t i = 0; i < nsets; i++, k++) {
        a->cmds[k] = (struct wcmd){a, (int)i, 0, 0};
        if (issue_hset(s, &a->cmds[k], 0) != 0) {
            log_error(MOD, "out of memory queuing a suppression write");
            a->lost = 1;
            a->outstanding--;
        }
    }
    if (a->outstanding == 0) {
        write_done(s, a);
    }
}

/* ---- reads ---- */

static void settle(struct state *s, struct card *c);

static void on_read(void *arg, const redisReply *rep);

static int issue_read(struct state *s, struct read *r, int use_eval,
                      int delay_ms)
{
    size_t argc = 3 + 2 * r->n;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    char *keys = malloc(2 * r->n * RMODEL_KEY_MAX);
    char nk[24];
    int rc = -1;
    snprintf(nk, sizeof(nk), "%zu", 2 * r->n);
    if (argv != NULL && lens != NULL && keys != NULL) {
        argv[0] = use_eval ? "EVAL" : "EVALSHA";
        argv[1] = use_eval ? LUA_READ : s->sha_read;
        argv[2] = nk;
        for (int i = 0; i < 3; i++) {
            lens[i] = strlen(argv[i]);
        }
        rc = 0;
        for (size_t i = 0; i < 2 * r->n && rc == 0; i++) {
            char *k = keys + i * RMODEL_KEY_MAX;
            int kl = key_of(k, RMODEL_KEY_MAX, s, i % 2 ? "sup" : "win",
                            r->cards[i / 2]->fp);
            argv[3 + i] = k;
            lens[3 + i] = kl < 0 ? 0 : (size_t)kl;
            rc = kl < 0 ? -1 : 0;
        }
        if (rc == 0) {
            rc = delay_ms > 0
                     ? rconn_command_later(s->rc, delay_ms, (int)argc, argv,
                                           lens, on_read, r)
                     : rconn_command(s->rc, (int)argc, argv, lens, on_read, r);
        }
    }
    free(argv);
    free(lens);
    free(keys);
    return rc;
}

static void free_read(struct read *r)
{
    free(r->cards);
    free(r);
}

/* Loads one hash of card c from reply h (an HGETALL array). */
static void load_hash(struct state *s, struct card *c, const redisReply *h,
                      int sup)
{
    struct emit_ctx x = {s, c};
    for (size_t i = 0; h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements;
         i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            continue;
        }
        int rc =
            sup ? cardstate_load_sup(&c->cs, f->str, f->len, v->str, v->len)
                : cardstate_load_win(&c->cs, f->str, f->len, v->str, v->len);
        if (rc == 1) { /* malformed: deleted, as the script did */
            (void)emit(&x, sup ? CS_SUP_DEL : CS_WIN_DEL, f->str, f->len, NULL,
                       0);
        } else if (rc < 0 && !c->stale) {
            log_error(MOD, "out of memory reading a card's window; its "
                           "events wait for a new read");
            c->stale = 1;
            s->n_stale++;
        }
    }
}

static void on_read(void *arg, const redisReply *rep)
{
    struct read *r = arg;
    struct state *s = r->s;
    if (rep == NULL) { /* destroyed */
        for (size_t i = 0; i < r->n; i++) {
            r->cards[i]->reading = 0;
        }
        free_read(r);
        return;
    }
    int ok = rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 * r->n;
    if (!ok) {
        /* Evaluated without its window an event could miss an alert:
         * the cards wait, the read is sent again. */
        const char *err = rep->type == REDIS_REPLY_ERROR
                              ? rep->str
                              : "unexpected reply to the window read";
        int now = eval_now(s, err, &r->tries);
        if (!now) {
            note_refusal(s, &r->refused, "window update", err);
        }
        if (issue_read(s, r, now, now ? 0 : RETRY_MS) != 0) {
            log_error(MOD, "out of memory queuing a window read");
            for (size_t i = 0; i < r->n; i++) {
                r->cards[i]->reading = 0; /* read by the next run */
            }
            free_read(r);
        }
        return;
    }
    end_refusal(s, &r->refused);
    for (size_t i = 0; i < r->n; i++) {
        struct card *c = r->cards[i];
        cardstate_clear(&c->cs);
        load_hash(s, c, rep->element[2 * i], 0);
        load_hash(s, c, rep->element[2 * i + 1], 1);
        c->reading = 0;
        account(s, c);
        if (c->stale) {
            settle(s, c); /* read again */
            continue;
        }
        c->loaded = 1;
        if (!c->in_run && c->head != NULL) {
            run_append(s, c);
        }
    }
    free_read(r);
    run(s);
}


/* Sends one read for the cards on the read list (one round trip). */
static void send_reads(struct state *s)
{
    size_t n = 0;
    for (struct card *c = s->read_head; c != NULL; c = c->rnext) {
        n++;
    }
    if (n == 0) {
        return;
    }
    struct read *r = calloc(1, sizeof(*r));
    struct card **cards = malloc(n * sizeof(*cards));
    if (r == NULL || cards == NULL) {
        free(r);
        free(cards);
        log_error(MOD, "out of memory queuing a window read; tried again "
                       "in %d ms", RETRY_MS);
        retry_later(s);
        return;
    }
    r->s = s;
    r->cards = cards;
    while (s->read_head != NULL) {
        struct card *c = s->read_head;
        s->read_head = c->rnext;
        c->in_read = 0;
        if (!c->loaded && !c->reading) {
            c->reading = 1;
            r->cards[r->n++] = c;
        }
    }
    if (r->n == 0) {
        free_read(r);
        return;
    }
    if (issue_read(s, r, 0, 0) != 0) {
        log_error(MOD, "out of memory queuing a window read; tried again "
                       "in %d ms", RETRY_MS);
        retry_later(s);
        for (size_t i = 0; i < r->n; i++) {
            r->cards[i]->reading = 0;
            r->cards[i]->in_read = 1;
            r->cards[i]->rnext = s->read_head;
            s->read_head = r->cards[i];
        }
        free_read(r);
    }
}

static void want_read(struct state *s, struct card *c)
{
    if (!c->in_read && !c->loaded && !c->reading) {
        c->in_read = 1;
        c->rnext = s->read_head;
        s->read_head = c;
    }
}

/* A stale card whose writes are in Redis is read again (or dropped when
 * no event waits for it). */
static void settle(struct state *s, struct card *c)
{
    if (!c->stale || c->busy || c->reading || c->in_run || c->in_wait ||
        c->wnum > s->acked) {
        return;
    }
    c->stale = 0;
    s->n_stale--;
    c->loaded = 0;
    cardstate_clear(&c->cs);
    account(s, c);
    if (c->head != NULL) {
        want_read(s, c);
    } else if (!c->in_read) {
        drop_card(s, c);
    }
}

/* Evicts idle cards with nothing pending, least recent first, while the
 * cache is over its bound or the card idled past idle_ms. */
static void evict(struct state *s)
{
    uint64_t now = mono_ms();
    while (s->lru_tail != NULL) {
        struct card *c = s->lru_tail;
        if (s->bytes <= CACHE_MAX_BYTES && now - c->touched < s->idle_ms) {
            return;
        }
        if (c->head != NULL || c->busy || c->reading || c->in_run ||
            c->in_read || c->in_wait || c->wnum > s->acked) {
            return;
        }
        drop_card(s, c);
    }
}

/* ---- events ---- */

static int observe_one(struct state *s, struct card *c, struct sreq *r)
{
    struct cs_event ev = {
        .txn_id = r->txn_id,
        .event_ms = r->event_ms,
        .record = r->record,
        .record_len = r->record_len,
        .horizon_ms = r->horizon,
        .sup_horizon_ms = r->sup_horizon,
        .now_ms = clock_wall_ms(),
        .grace_ms = s->grace_ms,
    };
    struct emit_ctx x = {s, c};
    struct cs_view cv;
    if (ensure_keys(s, c) != 0 ||
        cardstate_observe(&c->cs, &ev, &s->sc, &cv, emit, &x) != 0) {
        return -1;
    }
    if (cv.n_sups > s->cap_sups) {
        struct state_sup *np = realloc(s->sups, cv.n_sups * sizeof(*np));
        if (np == NULL) {
            return -1; /* its entry is written: a retry sees its view */
        }
        s->sups = np;
        s->cap_sups = cv.n_sups;
    }
    for (size_t i = 0; i < cv.n_sups; i++) {
        s->sups[i] = (struct state_sup){cv.sups[i].rule_id, cv.sups[i].last_ms,
                                        cv.sups[i].txn_id};
    }
    /* an entry another version wrote, or damaged: kept, never counted */
    if (cv.n_bad > 0 && log_limit_ok(&s->limit_bad, "bad", LOG_EVERY_S)) {
        log_warn(MOD,
                 "skipping a malformed window entry (%zu of the "
                 "card's; logged at most once a minute)",
                 cv.n_bad);
    }
    /* Wall-clock TTL as a safety net (an idle card's state goes);
     * pruning is by event time. */
    int64_t ttl = r->horizon > 3600000 ? r->horizon : 3600000;
    ttl = r->sup_horizon > ttl ? r->sup_horizon : ttl;
    ttl = s->grace_ms > ttl ? s->grace_ms : ttl;
    if (ttl > s->cur->ttl) {
        s->cur->ttl = ttl;
    }
    int64_t longest = r->horizon > r->sup_horizon ? r->horizon : r->sup_horizon;
    uint64_t idle = (uint64_t)(longest < ttl / 2 ? longest : ttl / 2);
    s->idle_ms = idle > IDLE_MIN_MS ? idle : IDLE_MIN_MS;
    struct state_view v = {cv.entries, cv.n_entries, s->sups,
                           cv.n_sups,  cv.newest_ms, cv.seq};
    c->busy = 1;
    r->cb(r->arg, 0, &v); /* calls state_suppressed_by, state_release */
    account(s, c);
    return 0;
}

/* The card's next event may run: cached, released, and no suppression
 * record of an earlier event still unwritten. */
static int may_run(const struct state *s, const struct card *c)
{
    return c->head != NULL && c->loaded && !c->stale && !c->busy &&
           c->sup_num <= s->acked;
}

static void run(struct state *s)
{
    while (s->run_head != NULL) {
        struct card *c = s->run_head;
        s->run_head = c->rnext;
        if (s->run_head == NULL) {
            s->run_tail = NULL;
        }
        c->in_run = 0;
        while (may_run(s, c)) {
            struct sreq *r = c->head;
            c->head = r->next;
            if (c->head == NULL) {
                c->tail = NULL;
            }
            if (observe_one(s, c, r) != 0) {
                /* The event goes back to the head of its card, which
                 * waits: evaluating the card's next events without it
                 * would give them (and it, when re-processed after a
                 * restart) another view, and could lose an alert. A
                 * failed evaluation changed nothing, or only added its
                 * own entry, which a retry finds (the same view). */
                log_error(MOD,
                          "out of memory evaluating window state for "
                          "txn %s; tried again in %d ms",
                          r->txn_id, RETRY_MS);
                r->next = c->head;
                c->head = r;
                if (c->tail == NULL) {
                    c->tail = r;
                }
                c->in_oom = 1;
                c->rnext = s->oom_head;
                s->oom_head = c;
                retry_later(s);
                break;
            }
            free(r);
        }
        if (c->in_oom) {
            continue;
        }
        if (c->head != NULL && c->sup_num > s->acked && !c->in_wait) {
            c->in_wait = 1;
            c->rnext = s->wait_head;
            s->wait_head = c;
        }
        settle(s, c);
    }
    if (s->n_stale > 0) {
        for (size_t b = 0; b < BUCKETS && s->n_stale > 0; b++) {
            struct card *c = s->buckets[b];
            while (c != NULL) {
                struct card *next = c->hnext;
                settle(s, c);
                c = next;
            }
        }
    }
    send_reads(s);
    send_write(s);
    evict(s);
}

int state_observe(struct state *s, const char *fp, const struct win_entry *e,
                  int64_t horizon_ms, int64_t sup_horizon_ms, state_cb cb,
                  void *arg)
{
    struct sreq *r = malloc(sizeof(*r));
    if (r == NULL) {
        return -1;
    }
    int len = win_entry_encode(e, r->record, sizeof(r->record));
    struct card *c = len < 0 ? NULL : find_card(s, fp);
    if (len >= 0 && c == NULL) {
        c = new_card(s, fp);
    }
    if (c == NULL) {
        free(r);
        return -1;
    }
    r->next = NULL;
    r->record_len = (size_t)len;
    r->cb = cb;
    r->arg = arg;
    snprintf(r->txn_id, sizeof(r->txn_id), "%s", e->txn_id);
    r->event_ms = e->event_time_ms;
    r->horizon = horizon_ms;
    r->sup_horizon = sup_horizon_ms;
    if (c->tail != NULL) {
        c->tail->next = r;
    } else {
        c->head = r;
    }
    c->tail = r;
    c->touched = mono_ms();
    lru_unlink(s, c);
    lru_front(s, c);
    if (c->loaded && !c->stale) {
        if (!c->in_run && !c->in_wait) {
            run_append(s, c);
        }
    } else if (!c->stale) {
        want_read(s, c);
    }
    return 0;
}

void state_run(struct state *s)
{
    run(s);
}

int state_suppressed_by(struct state *s, const char *fp, const char *rule_id,
                        int64_t event_ms, const char *txn_id, int64_t seq,
                        state_ack_cb cb, void *arg)
{
    struct card *c = find_card(s, fp);
    if (c == NULL || !c->loaded) {
        return -1;
    }
    struct emit_ctx x = {s, c};
    if (cardstate_suppress(&c->cs, rule_id, txn_id, event_ms, seq, emit, &x) !=
        0) {
        return -1;
    }
    return add_ack(s, c, cb, arg);
}

int state_release(struct state *s, const char *fp, state_ack_cb cb, void *arg)
{
    struct card *c = find_card(s, fp);
    if (c == NULL) {
        cb(arg, 0);
        return 0;
    }
    c->busy = 0;
    return add_ack(s, c, cb, arg);
}

void state_forget(struct state *s)
{
    for (size_t b = 0; b < BUCKETS; b++) {
        struct card *c = s->buckets[b];
        while (c != NULL) {
            struct card *next = c->hnext;
            if (!c->stale && (c->loaded || c->reading)) {
                c->stale = 1;
                s->n_stale++;
                settle(s, c);
            }
            c = next;
        }
    }
    send_reads(s);
}

int state_health(const struct state *s, char *why, size_t whylen)
{
    if (s->n_refused == 0) {
        return 1;
    }
    snprintf(why, whylen,
             "Redis %s refused the %s: %s; %zu waiting, retried "
             "every %d ms",
             rconn_address(s->rc), s->refused_what, s->refused, s->n_refused,
             RETRY_MS);
    return 0;
}

void state_destroy(struct state *s)
{
    if (s == NULL) {
        return;
    }
    event_free(s->retry_ev);
    /* Commands with Redis were answered (NULL) by rconn_destroy(), which
     * the owner calls first; what is left only waits for its turn. */
    for (int i = 0; i < 2; i++) {
        struct acc *a = &s->acc[i];
        for (size_t k = 0; k < a->nacks; k++) {
            a->acks[k].cb(a->acks[k].arg, 1);
        }
        a->nacks = 0;
    }
    for (size_t b = 0; b < BUCKETS; b++) {
        struct card *c = s->buckets[b];
        while (c != NULL) {
            struct card *next = c->hnext;
            struct sreq *r = c->head;
            while (r != NULL) {
                struct sreq *rn = r->next;
                r->cb(r->arg, -1, NULL);
                free(r);
                r = rn;
            }
            cardstate_clear(&c->cs);
            free(c);
            c = next;
        }
    }
    for (int i = 0; i < 2; i++) {
        free(s->acc[i].buf);
        free(s->acc[i].keys);
        free(s->acc[i].ops);
        free(s->acc[i].sets);
        free(s->acc[i].acks);
        free(s->acc[i].cmds);
    }
    cardstate_scratch_free(&s->sc);
    free(s->sups);
    free(s);
}
