/* state.c - see state.h. */
#include "state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "alert.h"
#include "clock.h"
#include "log.h"
#include "rmodel.h"

#define MOD "state"
#define BUCKETS 4096
/* After an error reply (an ACL refusal, OOM) a command is sent again
 * this long after; the card's events wait meanwhile. */
#define RETRY_MS 200
#define LOG_EVERY_S 60 /* the same refusal is logged again this often */

/* One call per exposed event, atomic in Redis. Window entries are
 *   win hash: txn_id -> "<event ms>:<seq>:<newest ms>:<seen ms>:<record>"
 * seq: the card's arrival order (1 + the highest seq held) given when the
 * txn id is first added; newest: the card's newest event time at that
 * moment; seen: the caller's wall clock then. Values written before
 * sequence numbers ("<event ms>:<record>") count as seq 0, before all.
 * Suppression records are
 *   sup hash: "<rule id>|<txn_id>" -> "<event ms>|<seq>"
 * (older "<rule id>" -> "<event ms>|<txn_id>" count as seq 0).
 *
 * The answer for the event is a function of its first arrival only, so a
 * re-processed event (crash, rebalance, redelivery) gets the same view:
 * the entries of seq lower than its own with event time at or above its
 * floor (its newest minus the horizon), and per rule the latest earlier
 * suppression record at or before its event time. Entries below the
 * card's current floor are deleted unless an entry seen within the grace
 * may still be re-evaluated and needs them (its own floor is lower).
 * KEYS: win, sup. ARGV: txn_id, record, event ms, horizon ms, ttl ms,
 * now ms, grace ms, suppression horizon ms (0: no rule suppresses).
 * Returns {records, {rule, "<ms>|<txn_id>", ...}, newest, seq}. */
static const char LUA_OBSERVE[] =
    "local function num(x) return string.format('%d', x) end\n"
    "local txn, ev = ARGV[1], tonumber(ARGV[3])\n"
    "local hz, now = tonumber(ARGV[4]), tonumber(ARGV[6])\n"
    "local grace, suph = tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "local E, maxq, newest, mine = {}, 0, ev, nil\n"
    "for i = 1, #all, 2 do\n"
    "  local v = all[i + 1]\n"
    "  local t, q, nw, seen, rec =\n"
    "    string.match(v, '^(%-?%d+):(%d+):(%-?%d+):(%d+):(.*)$')\n"
    "  if t == nil then\n"
    "    t, rec = string.match(v, '^(%-?%d+):(.*)$'); q = 0; seen = 0\n"
    "  end\n"
    "  if t == nil then redis.call('HDEL', KEYS[1], all[i]) else\n"
    "    local e = {f = all[i], t = tonumber(t), q = tonumber(q),\n"
    "               nw = tonumber(nw), seen = tonumber(seen), rec = rec}\n"
    "    E[#E + 1] = e\n"
    "    if e.q > maxq then maxq = e.q end\n"
    "    if e.t > newest then newest = e.t end\n"
    "    if e.f == txn then mine = e end\n"
    "  end\n"
    "end\n"
    "if mine == nil then\n"
    "  mine = {f = txn, t = ev, q = maxq + 1, nw = newest, seen = now,\n"
    "          rec = ARGV[2]}\n"
    "  E[#E + 1] = mine\n"
    "  redis.call('HSET', KEYS[1], txn, ARGV[3] .. ':' .. num(mine.q) ..\n"
    "             ':' .. num(newest) .. ':' .. ARGV[6] .. ':' .. ARGV[2])\n"
    "end\n"
    /* an entry from before sequence numbers sees what was there (old view) */
    "local qv, nwv = mine.q, mine.nw or newest\n"
    "if mine.nw == nil then qv = math.huge end\n"
    "local floor, lim, slim = nwv - hz, newest - hz, newest - suph\n"
    "local out = {}\n"
    "for _, e in ipairs(E) do\n"
    "  if e ~= mine and e.q < qv and e.t >= floor then\n"
    "    out[#out + 1] = e.rec\n"
    "  end\n"
    "  if e.seen > now - grace then\n"
    "    local f = (e.nw or newest) - hz\n"
    "    if f < lim then lim = f end\n"
    "    if e.t - suph < slim then slim = e.t - suph end\n"
    "  end\n"
    "end\n"
    "if mine.t >= floor then out[#out + 1] = mine.rec end\n"
    "for _, e in ipairs(E) do\n"
    "  if e.t < lim then redis.call('HDEL', KEYS[1], e.f) end\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
    "local sup = redis.call('HGETALL', KEYS[2])\n"
    "local best, order = {}, {}\n"
    "for i = 1, #sup, 2 do\n"
    "  local f, v = sup[i], sup[i + 1]\n"
    "  local rule, stxn = string.match(f, '^([^|]*)|(.*)$')\n"
    "  local ms, q\n"
    "  if rule then ms, q = string.match(v, '^(%-?%d+)|(%d+)$') else\n"
    "    rule = f; ms, stxn = string.match(v, '^(%-?%d+)|(.*)$'); q = 0\n"
    "  end\n"
    "  ms, q = tonumber(ms), tonumber(q)\n"
    "  if ms == nil or (suph > 0 and ms < slim) then\n"
    "    redis.call('HDEL', KEYS[2], f)\n"
    "  elseif q < qv and stxn ~= txn and ms <= ev then\n"
    "    if best[rule] == nil then order[#order + 1] = rule end\n"
    "    if best[rule] == nil or ms > best[rule][1] then\n"
    "      best[rule] = {ms, stxn}\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if #sup > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[5]) end\n"
    "local sv = {}\n"
    "for _, r in ipairs(order) do\n"
    "  sv[#sv + 1] = r; sv[#sv + 1] = num(best[r][1]) .. '|' .. best[r][2]\n"
    "end\n"
    "return {out, sv, nwv, mine.q}\n";

struct sreq {
    struct state *s;
    struct cardq *cq;
    struct sreq *next;
    char value[512];
    size_t value_len;
    char txn_id[TXN_ID_MAX + 1];
    char event_ms[24];
    char horizon[24];
    char ttl[24];
    char now[24];
    char sup_horizon[24];
    state_cb cb;
    void *arg;
    int tries;
    int refused; /* its last answer was an error: counted in n_refused */
};

struct cardq {
    char fp[CARD_FP_SIZE];
    struct cardq *next; /* bucket chain */
    struct sreq *head, *tail;
    int busy; /* head is with Redis or its callback */
    int acks; /* suppression writes not yet acknowledged: the next event
                 waits for them */
};

struct ack {
    struct state *s;
    struct cardq *c;
    state_ack_cb cb;
    void *arg;
    int refused;
    char key[RMODEL_KEY_MAX];
    char field[RULE_ID_MAX + TXN_ID_MAX + 2];
    char val[48];
};

struct state {
    struct rconn *rc;
    char prefix[32];
    char kid[CARD_KEY_ID_MAX + 1];
    char ns[48];
    char sha[41];
    int64_t grace_ms;
    struct cardq *buckets[BUCKETS];
    int destroying;
    /* commands whose last answer was an error reply, waiting to be sent
     * again; the last such answer and what it refused (readiness) */
    size_t n_refused;
    char refused[256];
    const char *refused_what;
    struct log_limit limit, limit_sha;
};

static unsigned bucket_of(const char *fp)
{
    unsigned h = 2166136261u;
    for (const char *p = fp; *p; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    return h % BUCKETS;
}

static struct cardq *find_card(struct state *s, const char *fp, int create)
{
    unsigned b = bucket_of(fp);
    for (struct cardq *c = s->buckets[b]; c != NULL; c = c->next) {
        if (strcmp(c->fp, fp) == 0) {
            return c;
        }
    }
    if (!create) {
        return NULL;
    }
    struct cardq *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    snprintf(c->fp, sizeof(c->fp), "%s", fp);
    c->next = s->buckets[b];
    s->buckets[b] = c;
    return c;
}

static void drop_card(struct state *s, struct cardq *c)
{
    unsigned b = bucket_of(c->fp);
    for (struct cardq **pp = &s->buckets[b]; *pp != NULL;
         pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            free(c);
            return;
        }
    }
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
    /* SHA-1 of the script, for EVALSHA; EVAL loads it when Redis lost
     * its script cache (NOSCRIPT after a restart). */
    unsigned char d[20];
    unsigned int dl = 0;
    if (!EVP_Digest(LUA_OBSERVE, strlen(LUA_OBSERVE), d, &dl, EVP_sha1(),
                    NULL) ||
        dl != 20) {
        free(s);
        return NULL;
    }
    for (int i = 0; i < 20; i++) {
        snprintf(s->sha + 2 * i, 3, "%02x", d[i]);
    }
    return s;
}

static void issue(struct state *s, struct sreq *r, int use_eval,
                  int delay_ms);

/* An error reply to `what` (a window update, a suppression write) that is
 * retried: logged (the same answer at most once a minute) and counted
 * for readiness while *refused is set. */
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
        log_info(MOD, "Redis %s accepts window updates and suppression "
                 "writes again", rconn_address(s->rc));
        log_limit_reset(&s->limit);
    }
}

/* The card's next event goes to Redis once the previous one is released
 * and its suppression writes are acknowledged; an idle card is dropped. */
static void card_next(struct state *s, struct cardq *c)
{
    if (c->busy || c->acks > 0) {
        return;
    }
    if (c->head != NULL) {
        issue(s, c->head, 0, 0);
    } else {
        drop_card(s, c);
    }
}

static int parse_view(const redisReply *rep, struct win_entry **entries,
                      size_t *n, struct state_sup **sups, size_t *ns,
                      int64_t *newest, int64_t *seq)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 ||
        rep->element[0]->type != REDIS_REPLY_ARRAY ||
        rep->element[1]->type != REDIS_REPLY_ARRAY ||
        rep->element[2]->type != REDIS_REPLY_INTEGER ||
        rep->element[3]->type != REDIS_REPLY_INTEGER ||
        rep->element[3]->integer < 0) {
        return -1;
    }
    const redisReply *ents = rep->element[0];
    const redisReply *sup = rep->element[1];
    *entries = calloc(ents->elements + 1, sizeof(**entries));
    *sups = calloc(sup->elements / 2 + 1, sizeof(**sups));
    if (*entries == NULL || *sups == NULL) {
        return -1;
    }
    *n = 0;
    for (size_t i = 0; i < ents->elements; i++) {
        const redisReply *e = ents->element[i];
        if (e->type != REDIS_REPLY_STRING ||
            win_entry_decode(e->str, e->len, &(*entries)[*n]) != 0) {
            log_warn(MOD, "skipping a malformed window entry");
            continue;
        }
        (*n)++;
    }
    *ns = 0;
    for (size_t i = 0; i + 1 < sup->elements; i += 2) {
        const redisReply *k = sup->element[i];
        const redisReply *v = sup->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            continue;
        }
        char *bar = memchr(v->str, '|', v->len);
        if (bar == NULL) {
            continue;
        }
        (*sups)[*ns].rule_id = k->str;
        (*sups)[*ns].last_ms = strtoll(v->str, NULL, 10);
        (*sups)[*ns].txn_id = bar + 1;
        (*ns)++;
    }
    *newest = (int64_t)rep->element[2]->integer;
    *seq = (int64_t)rep->element[3]->integer;
    return 0;
}

static void on_observe(void *arg, const redisReply *rep)
{
    struct sreq *r = arg;
    struct state *s = r->s;
    struct cardq *c = r->cq;
    if (rep == NULL) {
        /* Destroyed before Redis answered. */
        c->busy = 0;
        c->head = r->next;
        r->cb(r->arg, -1, NULL);
        free(r);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        /* NOSCRIPT: Redis lost its script cache; any other first error
         * may be EVALSHA alone refused: the whole script at once. Then,
         * until Redis accepts it, again every RETRY_MS: evaluated without
         * its window the event could miss an alert. */
        int noscript = strncmp(rep->str, "NOSCRIPT", 8) == 0;
        if (noscript || r->tries++ == 0) {
            if (!noscript && log_limit_ok(&s->limit_sha, rep->str,
                                          LOG_EVERY_S)) {
                log_warn(MOD, "window update failed: %s; sending the whole "
                         "script (EVAL)", rep->str);
            }
            issue(s, r, 1, 0);
        } else {
            note_refusal(s, &r->refused, "window update", rep->str);
            issue(s, r, 0, RETRY_MS);
        }
        return;
    }
    end_refusal(s, &r->refused);
    struct win_entry *entries = NULL;
    struct state_sup *sups = NULL;
    size_t n = 0, ns = 0;
    int64_t newest = strtoll(r->event_ms, NULL, 10);
    int64_t seq = 0;
    struct win_entry self;
    if (parse_view(rep, &entries, &n, &sups, &ns, &newest, &seq) != 0) {
        log_error(MOD, "window update answered unexpectedly (type %d); "
                  "evaluating with this transaction alone", rep->type);
        free(entries);
        free(sups);
        entries = NULL;
        sups = NULL;
        n = ns = 0;
        if (win_entry_decode(r->value, r->value_len, &self) == 0) {
            entries = &self;
            n = 1;
        }
    }
    struct state_view v = {entries, n, sups, ns, newest, seq};
    c->head = r->next;
    if (c->head == NULL) {
        c->tail = NULL;
    }
    r->cb(r->arg, 0, &v); /* calls state_release(): c may be gone now */
    if (entries != &self) {
        free(entries);
    }
    free(sups);
    free(r);
}

static void issue(struct state *s, struct sreq *r, int use_eval,
                  int delay_ms)
{
    char win[RMODEL_KEY_MAX], sup[RMODEL_KEY_MAX], grace[24];
    snprintf(grace, sizeof(grace), "%" PRId64, s->grace_ms);
    /* "seen" of a first arrival: when it went to Redis (a re-send after a
     * reconnect is a new first arrival only if the first never ran) */
    snprintf(r->now, sizeof(r->now), "%" PRId64, clock_wall_ms());
    key_of(win, sizeof(win), s, "win", r->cq->fp);
    key_of(sup, sizeof(sup), s, "sup", r->cq->fp);
    const char *argv[] = {use_eval ? "EVAL" : "EVALSHA",
                          use_eval ? LUA_OBSERVE : s->sha,
                          "2",
                          win,
                          sup,
                          r->txn_id,
                          r->value,
                          r->event_ms,
                          r->horizon,
                          r->ttl,
                          r->now,
                          grace,
                          r->sup_horizon};
    enum { ARGC = sizeof(argv) / sizeof(argv[0]) };
    size_t lens[ARGC];
    for (int i = 0; i < ARGC; i++) {
        lens[i] = strlen(argv[i]);
    }
    lens[6] = r->value_len;
    r->cq->busy = 1;
    int rc = delay_ms > 0 ? rconn_command_later(s->rc, delay_ms, ARGC, argv,
                                                lens, on_observe, r)
                          : rconn_command(s->rc, ARGC, argv, lens,
                                          on_observe, r);
    if (rc != 0) {
        log_error(MOD, "out of memory queuing a window update");
    }
}

int state_observe(struct state *s, const char *fp, const struct win_entry *e,
                  int64_t horizon_ms, int64_t sup_horizon_ms, state_cb cb,
                  void *arg)
{
    struct sreq *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return -1;
    }
    int len = win_entry_encode(e, r->value, sizeof(r->value));
    struct cardq *c = len < 0 ? NULL : find_card(s, fp, 1);
    if (c == NULL) {
        free(r);
        return -1;
    }
    r->value_len = (size_t)len;
    r->s = s;
    r->cq = c;
    r->cb = cb;
    r->arg = arg;
    snprintf(r->txn_id, sizeof(r->txn_id), "%s", e->txn_id);
    snprintf(r->event_ms, sizeof(r->event_ms), "%" PRId64, e->event_time_ms);
    snprintf(r->horizon, sizeof(r->horizon), "%" PRId64, horizon_ms);
    snprintf(r->sup_horizon, sizeof(r->sup_horizon), "%" PRId64,
             sup_horizon_ms);
    /* Wall-clock TTL as a safety net (an idle card's state goes);
     * pruning is by event time. */
    int64_t ttl = horizon_ms > 3600000 ? horizon_ms : 3600000;
    ttl = sup_horizon_ms > ttl ? sup_horizon_ms : ttl;
    ttl = s->grace_ms > ttl ? s->grace_ms : ttl;
    snprintf(r->ttl, sizeof(r->ttl), "%" PRId64, ttl);
    if (c->tail != NULL) {
        c->tail->next = r;
    } else {
        c->head = r;
    }
    c->tail = r;
    if (!c->busy && c->acks == 0) {
        issue(s, r, 0, 0);
    }
    return 0;
}

static int send_ack(struct ack *a, int delay_ms);

static void on_ack(void *arg, const redisReply *rep)
{
    struct ack *a = arg;
    struct state *s = a->s;
    struct cardq *c = a->c;
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
        /* Until it is written, a later event of the card would not be
         * suppressed by it: the card waits, the write is sent again. */
        note_refusal(s, &a->refused, "suppression write", rep->str);
        if (send_ack(a, RETRY_MS) == 0) {
            return;
        }
        log_error(MOD, "out of memory queuing a suppression write");
    }
    int err = rep == NULL || rep->type == REDIS_REPLY_ERROR;
    if (rep != NULL) {
        end_refusal(s, &a->refused);
    }
    c->acks--;
    a->cb(a->arg, err);
    free(a);
    if (rep != NULL) {
        card_next(s, c); /* c may be gone now */
    }
}

static int send_ack(struct ack *a, int delay_ms)
{
    const char *argv[] = {"HSET", a->key, a->field, a->val};
    size_t lens[] = {4, strlen(a->key), strlen(a->field), strlen(a->val)};
    return delay_ms > 0 ? rconn_command_later(a->s->rc, delay_ms, 4, argv,
                                              lens, on_ack, a)
                        : rconn_command(a->s->rc, 4, argv, lens, on_ack, a);
}

int state_suppressed_by(struct state *s, const char *fp, const char *rule_id,
                        int64_t event_ms, const char *txn_id, int64_t seq,
                        state_ack_cb cb, void *arg)
{
    struct ack *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return -1;
    }
    int fl = snprintf(a->field, sizeof(a->field), "%s|%s", rule_id, txn_id);
    if (key_of(a->key, sizeof(a->key), s, "sup", fp) < 0 || fl < 0 ||
        (size_t)fl >= sizeof(a->field) || strchr(rule_id, '|') != NULL) {
        free(a);
        return -1;
    }
    struct cardq *c = find_card(s, fp, 1);
    if (c == NULL) {
        free(a);
        return -1;
    }
    a->s = s;
    a->c = c;
    a->cb = cb;
    a->arg = arg;
    snprintf(a->val, sizeof(a->val), "%" PRId64 "|%" PRId64, event_ms, seq);
    if (send_ack(a, 0) != 0) {
        free(a);
        card_next(s, c); /* created here: not left behind */
        return -1;
    }
    c->acks++;
    return 0;
}

void state_release(struct state *s, const char *fp)
{
    struct cardq *c = find_card(s, fp, 0);
    if (c == NULL) {
        return;
    }
    c->busy = 0;
    card_next(s, c);
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

void state_destroy(struct state *s)
{
    if (s == NULL) {
        return;
    }
    /* Requests with Redis are answered (status -1) by rconn_destroy(),
     * which the owner calls first; what is left only waits for its turn. */
    for (size_t b = 0; b < BUCKETS; b++) {
        struct cardq *c = s->buckets[b];
        while (c != NULL) {
            struct cardq *next = c->next;
            /* A busy head is still owned by the Redis connection
             * (state_destroy must come after rconn_destroy). */
            struct sreq *r = c->busy && c->head ? c->head->next : c->head;
            while (r != NULL) {
                struct sreq *rn = r->next;
                r->cb(r->arg, -1, NULL);
                free(r);
                r = rn;
            }
            free(c);
            c = next;
        }
    }
    free(s);
}
