/* state.c - see state.h.
 *
 * A card's records live in a struct card (cache) once read from Redis;
 * every event is answered in process by cardstate_observe() (the
 * semantics of the script this module ran per event until issue 14), and
 * the changes it reports are collected in the write buffer ("acc") of the
 * next write. One write (one script call) is with Redis at a time; what
 * the events evaluated meanwhile produce waits in the other buffer and
 * goes as the next call when the first is answered, so a write costs one
 * round trip however many events it carries, and writes reach Redis in
 * the order the events were evaluated. An event's ack (state_release,
 * state_suppressed_by) fires when the write holding its changes is
 * answered.
 *
 * Reads: the cards of a state_run() that are not cached are read with
 * HGETALL of both hashes, all sent together (one round trip).
 */
#include "state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* One write: applies the changes of many events, in their order.
 * KEYS: win1, sup1, win2, sup2, ... (one pair per card). ARGV[1]: TTL ms
 * (every key). Then ops: "<w|s|x|y><card number>" then the field and, for
 * w (HSET win) and s (HSET sup), the value; x / y are HDEL win / sup. */
static const char LUA_WRITE[] =
    "local i, ttl = 2, ARGV[1]\n"
    "while i <= #ARGV do\n"
    "  local op = ARGV[i]\n"
    "  local c, j = string.sub(op, 1, 1), tonumber(string.sub(op, 2))\n"
    "  if c == 'w' then\n"
    "    redis.call('HSET', KEYS[2 * j - 1], ARGV[i + 1], ARGV[i + 2])\n"
    "    i = i + 3\n"
    "  elseif c == 's' then\n"
    "    redis.call('HSET', KEYS[2 * j], ARGV[i + 1], ARGV[i + 2])\n"
    "    i = i + 3\n"
    "  elseif c == 'x' then\n"
    "    redis.call('HDEL', KEYS[2 * j - 1], ARGV[i + 1]); i = i + 2\n"
    "  else\n"
    "    redis.call('HDEL', KEYS[2 * j], ARGV[i + 1]); i = i + 2\n"
    "  end\n"
    "end\n"
    "for j = 1, #KEYS do redis.call('PEXPIRE', KEYS[j], ttl) end\n"
    "return #KEYS / 2\n";

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
    struct card *hnext;        /* bucket chain */
    struct card *prev, *next;  /* LRU list: head = most recent */
    struct card *rnext;        /* run list or read list */
    struct sreq *head, *tail;  /* events waiting for their turn */
    struct cardstate cs;
    size_t bytes;      /* counted in state.bytes */
    uint64_t touched;  /* monotonic ms */
    uint64_t wnum;     /* write holding its latest change; 0 none */
    uint64_t acc_num;  /* write it has a key pair in ... */
    size_t acc_idx;    /* ... and its number there (1-based) */
    int loaded;  /* cs mirrors Redis (with the pending writes) */
    int reads;   /* HGETALL replies outstanding */
    int stale;   /* read again before the next view (state_forget) */
    int busy;    /* its event is with the callback */
    int in_run;  /* on the run list */
    int in_read; /* on the read list */
};

struct arg {
    size_t off, len;
};

struct wack {
    state_ack_cb cb;
    void *arg;
};

/* A write buffer: keys, op arguments, acks of the events it carries. */
struct acc {
    struct state *s;
    uint64_t num;
    char *buf;
    size_t len, cap;
    struct arg *keys;
    size_t nkeys, capkeys;
    struct arg *ops;
    size_t nops, capops;
    struct wack *acks;
    size_t nacks, capacks;
    int64_t ttl;
    int tries;
    int refused;
};

/* One HGETALL of a card read. */
struct read {
    struct state *s;
    struct card *c;
    int sup; /* 0 win, 1 sup */
    int refused;
};

struct state {
    struct rconn *rc;
    char prefix[32];
    char kid[CARD_KEY_ID_MAX + 1];
    char ns[48];
    char sha[41];
    int64_t grace_ms;
    struct card *buckets[BUCKETS];
    struct card *lru_head, *lru_tail;
    struct card *run_head, *run_tail;
    struct card *read_head;
    size_t n_cards;
    size_t bytes;
    size_t n_stale;
    uint64_t idle_ms;
    struct acc acc[2];
    struct acc *cur;  /* collecting */
    struct acc *fly;  /* with Redis, or NULL */
    uint64_t acked;   /* number of the last write answered */
    struct cs_scratch sc;
    struct state_sup *sups;
    size_t cap_sups;
    int destroying;
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
    for (struct card *c = s->buckets[bucket_of(fp)]; c != NULL;
         c = c->hnext) {
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

/* Frees a card that nothing refers to (no events, reads or writes). */
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
    int n = snprintf(buf, len, "%s:%s:%s:%s:%s", s->prefix, s->ns, kind,
                     s->kid, fp);
    return n > 0 && (size_t)n < len ? n : -1;
}

struct state *state_new(struct rconn *rc, const char *prefix,
                        const char *key_id, const char *ns, int64_t grace_ms)
{
    if (rc == NULL || prefix == NULL || key_id == NULL || ns == NULL ||
        grace_ms < 0 ||
        strlen(prefix) >= 32 || strlen(key_id) > CARD_KEY_ID_MAX ||
        strlen(ns) == 0 || strlen(ns) > 40 ||
        strspn(ns, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(ns)) {
        return NULL;
    }
    struct state *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->rc = rc;
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    snprintf(s->kid, sizeof(s->kid), "%s", key_id);
    snprintf(s->ns, sizeof(s->ns), "%s", ns);
    s->grace_ms = grace_ms;
    s->idle_ms = IDLE_MIN_MS;
    s->acc[0].s = s->acc[1].s = s;
    s->cur = &s->acc[0];
    s->cur->num = 1;
    /* SHA-1 of the script, for EVALSHA; EVAL loads it when Redis lost
     * its script cache (NOSCRIPT after a restart). */
    unsigned char d[20];
    unsigned int dl = 0;
    if (!EVP_Digest(LUA_WRITE, strlen(LUA_WRITE), d, &dl, EVP_sha1(), NULL) ||
        dl != 20) {
        free(s);
        return NULL;
    }
    for (int i = 0; i < 20; i++) {
        snprintf(s->sha + 2 * i, 3, "%02x", d[i]);
    }
    return s;
}

/* An error reply to `what` that is retried: logged (the same answer at
 * most once a minute) and counted for readiness while *refused is set. */
static void note_refusal(struct state *s, int *refused, const char *what,
                         const char *text)
{
    if (log_limit_ok(&s->limit, text, LOG_EVERY_S)) {
        log_error(MOD, "%s failed: %s; retrying every %d ms until Redis "
                  "accepts it (the card's events wait)", what, text,
                  RETRY_MS);
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
        log_info(MOD, "Redis %s accepts window reads and writes again",
                 rconn_address(s->rc));
        log_limit_reset(&s->limit);
    }
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
    a->len = a->nkeys = a->nops = a->nacks = 0;
    a->ttl = 0;
    a->tries = 0;
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
    if (c->acc_num != a->num) {
        char k[RMODEL_KEY_MAX];
        int kl = key_of(k, sizeof(k), s, "win", c->fp);
        if (kl < 0 || acc_put(a, k, (size_t)kl, &a->keys, &a->nkeys,
                              &a->capkeys) != 0) {
            return -1;
        }
        kl = key_of(k, sizeof(k), s, "sup", c->fp);
        if (kl < 0 || acc_put(a, k, (size_t)kl, &a->keys, &a->nkeys,
                              &a->capkeys) != 0) {
            a->nkeys--;
            return -1;
        }
        c->acc_num = a->num;
        c->acc_idx = a->nkeys / 2;
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
    c->wnum = a->num;
    return 0;
}

/* ack fires when what card c wrote so far is in Redis: at once when
 * nothing is pending, else with the write holding its latest change. */
static int add_ack(struct state *s, struct card *c, state_ack_cb cb,
                   void *arg)
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
            return -1;
        }
        a->acks = np;
        a->capacks = nc;
    }
    a->acks[a->nacks++] = (struct wack){cb, arg};
    return 0;
}

static void send_write(struct state *s, int use_eval, int delay_ms);
static void after_write(struct state *s);

static void on_write(void *arg, const redisReply *rep)
{
    struct acc *a = arg;
    struct state *s = a->s;
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
        /* NOSCRIPT: Redis lost its script cache; any other first error
         * may be EVALSHA alone refused: the whole script at once. Then,
         * until Redis accepts it, again every RETRY_MS. */
        int noscript = strncmp(rep->str, "NOSCRIPT", 8) == 0;
        if (noscript || a->tries++ == 0) {
            if (!noscript && log_limit_ok(&s->limit_sha, rep->str,
                                          LOG_EVERY_S)) {
                log_warn(MOD, "window write failed: %s; sending the whole "
                         "script (EVAL)", rep->str);
            }
            send_write(s, 1, 0);
        } else {
            note_refusal(s, &a->refused, "window update", rep->str);
            send_write(s, 0, RETRY_MS);
        }
        return;
    }
    if (rep != NULL) {
        end_refusal(s, &a->refused);
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
        acks[i].cb(acks[i].arg, rep == NULL);
    }
    free(acks);
    if (rep != NULL && !s->destroying) {
        after_write(s);
    }
}

/* Sends the write with Redis (fly) again, or cur as the next one. */
static void send_write(struct state *s, int use_eval, int delay_ms)
{
    struct acc *a = s->fly;
    if (a == NULL) {
        if (s->cur->nkeys == 0 && s->cur->nacks == 0) {
            return;
        }
        a = s->fly = s->cur;
        s->cur = a == &s->acc[0] ? &s->acc[1] : &s->acc[0];
        s->cur->num = a->num + 1;
    }
    size_t argc = 4 + a->nkeys + a->nops;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    char nk[24], ttl[24];
    snprintf(nk, sizeof(nk), "%zu", a->nkeys);
    snprintf(ttl, sizeof(ttl), "%" PRId64, a->ttl);
    if (argv == NULL || lens == NULL) {
        free(argv);
        free(lens);
        log_error(MOD, "out of memory sending a window write");
        return;
    }
    argv[0] = use_eval ? "EVAL" : "EVALSHA";
    argv[1] = use_eval ? LUA_WRITE : s->sha;
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
    int rc = delay_ms > 0
                 ? rconn_command_later(s->rc, delay_ms, (int)argc, argv,
                                       lens, on_write, a)
                 : rconn_command(s->rc, (int)argc, argv, lens, on_write, a);
    if (rc != 0) {
        log_error(MOD, "out of memory queuing a window write");
    }
    free(argv);
    free(lens);
}

/* ---- reads ---- */

static void run(struct state *s);
static void settle(struct state *s, struct card *c);

static void on_read(void *arg, const redisReply *rep);

static int issue_read(struct state *s, struct read *r, int delay_ms)
{
    char k[RMODEL_KEY_MAX];
    if (key_of(k, sizeof(k), s, r->sup ? "sup" : "win", r->c->fp) < 0) {
        return -1;
    }
    const char *argv[] = {"HGETALL", k};
    size_t lens[] = {7, strlen(k)};
    return delay_ms > 0 ? rconn_command_later(s->rc, delay_ms, 2, argv,
                                              lens, on_read, r)
                        : rconn_command(s->rc, 2, argv, lens, on_read, r);
}

static void on_read(void *arg, const redisReply *rep)
{
    struct read *r = arg;
    struct state *s = r->s;
    struct card *c = r->c;
    if (rep == NULL) {
        c->reads--;
        free(r);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR ||
        (rep->type != REDIS_REPLY_ARRAY && rep->type != REDIS_REPLY_NIL)) {
        /* Evaluated without its window the event could miss an alert:
         * the card waits, the read is sent again. */
        note_refusal(s, &r->refused, "window read",
                     rep->type == REDIS_REPLY_ERROR ? rep->str
                                                    : "unexpected reply");
        if (issue_read(s, r, RETRY_MS) != 0) {
            log_error(MOD, "out of memory queuing a window read");
        }
        return;
    }
    end_refusal(s, &r->refused);
    struct emit_ctx x = {s, c};
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY &&
                       i + 1 < rep->elements;
         i += 2) {
        const redisReply *f = rep->element[i], *v = rep->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            continue;
        }
        int rc = r->sup ? cardstate_load_sup(&c->cs, f->str, f->len, v->str,
                                             v->len)
                        : cardstate_load_win(&c->cs, f->str, f->len, v->str,
                                             v->len);
        if (rc == 1) {
            (void)emit(&x, r->sup ? CS_SUP_DEL : CS_WIN_DEL, f->str, f->len,
                       NULL, 0);
        } else if (rc < 0) {
            log_error(MOD, "out of memory reading a card's window; its "
                      "events are evaluated after a new read");
            if (!c->stale) {
                c->stale = 1;
                s->n_stale++;
            }
        }
    }
    free(r);
    if (--c->reads > 0) {
        return;
    }
    account(s, c);
    if (c->stale) {
        settle(s, c); /* read again */
        return;
    }
    c->loaded = 1;
    if (!c->in_run && c->head != NULL) {
        c->in_run = 1;
        c->rnext = NULL;
        if (s->run_tail != NULL) {
            s->run_tail->rnext = c;
        } else {
            s->run_head = c;
        }
        s->run_tail = c;
    }
    run(s);
}

/* Sends the reads of the cards on the read list (one round trip). */
static void send_reads(struct state *s)
{
    while (s->read_head != NULL) {
        struct card *c = s->read_head;
        s->read_head = c->rnext;
        c->in_read = 0;
        if (c->loaded || c->reads > 0) {
            continue;
        }
        cardstate_clear(&c->cs);
        for (int k = 0; k < 2; k++) {
            struct read *r = calloc(1, sizeof(*r));
            if (r != NULL) {
                r->s = s;
                r->c = c;
                r->sup = k;
            }
            if (r == NULL || issue_read(s, r, 0) != 0) {
                free(r);
                log_error(MOD, "out of memory queuing a window read");
                continue;
            }
            c->reads++;
        }
    }
}

static void want_read(struct state *s, struct card *c)
{
    if (!c->in_read && !c->loaded && c->reads == 0) {
        c->in_read = 1;
        c->rnext = s->read_head;
        s->read_head = c;
    }
}

/* A stale card whose writes are in Redis is read again (or dropped when
 * no event waits). */
static void settle(struct state *s, struct card *c)
{
    if (!c->stale || c->busy || c->reads > 0 || c->in_run ||
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
        send_reads(s);
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
        if (c->head != NULL || c->busy || c->reads > 0 || c->in_run ||
            c->in_read || c->wnum > s->acked) {
            return;
        }
        drop_card(s, c);
    }
}

static void after_write(struct state *s)
{
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
    evict(s);
    send_write(s, 0, 0);
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
    if (cardstate_observe(&c->cs, &ev, &s->sc, &cv, emit, &x) != 0) {
        return -1;
    }
    if (cv.n_sups > s->cap_sups) {
        struct state_sup *np = realloc(s->sups, cv.n_sups * sizeof(*np));
        if (np == NULL) {
            return -1; /* the entry is written: a retry sees it (seq) */
        }
        s->sups = np;
        s->cap_sups = cv.n_sups;
    }
    for (size_t i = 0; i < cv.n_sups; i++) {
        s->sups[i] = (struct state_sup){cv.sups[i].rule_id,
                                        cv.sups[i].last_ms,
                                        cv.sups[i].txn_id};
    }
    if (cv.n_bad > 0 && log_limit_ok(&s->limit_bad, "bad", LOG_EVERY_S)) {
        log_warn(MOD, "skipping %zu malformed window entr%s", cv.n_bad,
                 cv.n_bad == 1 ? "y" : "ies");
    }
    int64_t ttl = r->horizon > 3600000 ? r->horizon : 3600000;
    ttl = r->sup_horizon > ttl ? r->sup_horizon : ttl;
    ttl = s->grace_ms > ttl ? s->grace_ms : ttl;
    if (ttl > s->cur->ttl) {
        s->cur->ttl = ttl;
    }
    int64_t longest = r->horizon > r->sup_horizon ? r->horizon
                                                  : r->sup_horizon;
    uint64_t idle = (uint64_t)(longest < ttl / 2 ? longest : ttl / 2);
    s->idle_ms = idle > IDLE_MIN_MS ? idle : IDLE_MIN_MS;
    struct state_view v = {cv.entries, cv.n_entries, s->sups, cv.n_sups,
                           cv.newest_ms, cv.seq};
    c->busy = 1;
    r->cb(r->arg, 0, &v); /* calls state_suppressed_by, state_release */
    account(s, c);
    return 0;
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
        while (c->head != NULL && c->loaded && !c->stale && !c->busy) {
            struct sreq *r = c->head;
            c->head = r->next;
            if (c->head == NULL) {
                c->tail = NULL;
            }
            if (observe_one(s, c, r) != 0) {
                log_error(MOD, "out of memory evaluating window state for "
                          "txn %s; it is not acknowledged", r->txn_id);
                r->cb(r->arg, -1, NULL);
            }
            free(r);
        }
        settle(s, c);
    }
    send_reads(s);
    if (s->fly == NULL) {
        send_write(s, 0, 0);
    }
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
        if (!c->in_run) {
            c->in_run = 1;
            c->rnext = NULL;
            if (s->run_tail != NULL) {
                s->run_tail->rnext = c;
            } else {
                s->run_head = c;
            }
            s->run_tail = c;
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
    if (cardstate_suppress(&c->cs, rule_id, txn_id, event_ms, seq, emit,
                           &x) != 0) {
        return -1;
    }
    return add_ack(s, c, cb, arg);
}

int state_release(struct state *s, const char *fp, state_ack_cb cb,
                  void *arg)
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
            if (!c->stale && (c->loaded || c->reads > 0)) {
                c->stale = 1;
                s->n_stale++;
                settle(s, c);
            }
            c = next;
        }
    }
}

int state_health(const struct state *s, char *why, size_t whylen)
{
    if (s->n_refused == 0) {
        return 1;
    }
    snprintf(why, whylen, "Redis %s refused the %s: %s; %zu waiting, retried "
             "every %d ms", rconn_address(s->rc), s->refused_what, s->refused,
             s->n_refused, RETRY_MS);
    return 0;
}

size_t state_cached(const struct state *s)
{
    return s->n_cards;
}

void state_destroy(struct state *s)
{
    if (s == NULL) {
        return;
    }
    /* Commands with Redis were answered (NULL) by rconn_destroy(), which
     * the owner calls first; what is left only waits for its turn. */
    s->destroying = 1;
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
        free(s->acc[i].acks);
    }
    cardstate_scratch_free(&s->sc);
    free(s->sups);
    free(s);
}
