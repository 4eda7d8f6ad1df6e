/* cardstate.c - see cardstate.h. Written to follow the Lua script it
 * replaces line by line (state.c, LUA_OBSERVE before issue 14): the
 * comments name the script's variables. */
#include "cardstate.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lua's %-?%d+ (neg 1) or %d+ (neg 0) at s[*i..len): sets *out (digits
 * beyond int64 saturate) and moves *i past it. Returns 0, or -1. */
static int lua_int(const char *s, size_t len, size_t *i, int neg, int64_t *out)
{
    size_t k = *i;
    int minus = 0;
    uint64_t v = 0;
    if (neg && k < len && s[k] == '-') {
        minus = 1;
        k++;
    }
    size_t start = k;
    while (k < len && s[k] >= '0' && s[k] <= '9') {
        if (v < (uint64_t)INT64_MAX) {
            v = v * 10 + (uint64_t)(s[k] - '0');
        }
        k++;
    }
    if (k == start) {
        return -1;
    }
    if (v > (uint64_t)INT64_MAX) {
        v = (uint64_t)INT64_MAX;
    }
    *out = minus ? -(int64_t)v : (int64_t)v;
    *i = k;
    return 0;
}

/* s[*i] == c: moves past it. */
static int expect(const char *s, size_t len, size_t *i, char c)
{
    if (*i < len && s[*i] == c) {
        (*i)++;
        return 0;
    }
    return -1;
}

/* A win value, new format first, then the one before sequence numbers.
 * Sets *rec to the offset of the record. Returns 0, or -1 (malformed). */
static int parse_win(const char *v, size_t len, struct cs_entry *e, size_t *rec)
{
    size_t i = 0;
    if (lua_int(v, len, &i, 1, &e->t) == 0 && expect(v, len, &i, ':') == 0 &&
        lua_int(v, len, &i, 0, &e->q) == 0 && expect(v, len, &i, ':') == 0 &&
        lua_int(v, len, &i, 1, &e->nw) == 0 && expect(v, len, &i, ':') == 0 &&
        lua_int(v, len, &i, 0, &e->seen) == 0 && expect(v, len, &i, ':') == 0) {
        e->has_nw = 1;
        *rec = i;
        return 0;
    }
    i = 0;
    if (lua_int(v, len, &i, 1, &e->t) == 0 && expect(v, len, &i, ':') == 0) {
        e->q = 0;
        e->seen = 0;
        e->nw = 0;
        e->has_nw = 0;
        *rec = i;
        return 0;
    }
    return -1;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) {
        return 0;
    }
    size_t nc = *cap ? *cap : 8;
    while (nc < need) {
        nc *= 2;
    }
    void *np = realloc(*p, nc * size);
    if (np == NULL) {
        return -1;
    }
    *p = np;
    *cap = nc;
    return 0;
}

int cardstate_load_win(struct cardstate *cs, const char *field, size_t flen,
                       const char *val, size_t vlen)
{
    struct cs_entry e;
    size_t rec = 0;
    memset(&e, 0, sizeof(e));
    if (parse_win(val, vlen, &e, &rec) != 0) {
        return 1;
    }
    e.rec_ok = win_entry_decode(val + rec, vlen - rec, &e.rec) == 0;
    if (grow((void **)&cs->e, &cs->cap, cs->n + 1, sizeof(*cs->e)) != 0 ||
        (e.field = dup_n(field, flen)) == NULL) {
        return -1;
    }
    cs->e[cs->n++] = e;
    return 0;
}

/* Parses a sup field and value into s (strings owned). Returns 0, 1
 * malformed, -1 out of memory. */
static int parse_sup(struct cs_sup *s, const char *f, size_t flen,
                     const char *v, size_t vlen)
{
    const char *bar = memchr(f, '|', flen);
    size_t i = 0;
    memset(s, 0, sizeof(*s));
    if (lua_int(v, vlen, &i, 1, &s->ms) != 0 || expect(v, vlen, &i, '|') != 0) {
        return 1;
    }
    const char *txn;
    size_t tl, rl;
    if (bar != NULL) { /* "<rule>|<txn>" -> "<ms>|<seq>" */
        if (lua_int(v, vlen, &i, 0, &s->q) != 0 || i != vlen) {
            return 1;
        }
        rl = (size_t)(bar - f);
        txn = bar + 1;
        tl = flen - rl - 1;
    } else { /* "<rule>" -> "<ms>|<txn>": before sequence numbers */
        s->q = 0;
        rl = flen;
        txn = v + i;
        tl = vlen - i;
    }
    s->field = dup_n(f, flen);
    s->value = dup_n(v, vlen);
    s->rule = dup_n(f, rl);
    s->stxn = dup_n(txn, tl);
    if (s->field == NULL || s->value == NULL || s->rule == NULL ||
        s->stxn == NULL) {
        free(s->field);
        free(s->value);
        free(s->rule);
        free(s->stxn);
        return -1;
    }
    return 0;
}

static void free_sup(struct cs_sup *s)
{
    free(s->field);
    free(s->value);
    free(s->rule);
    free(s->stxn);
}

int cardstate_load_sup(struct cardstate *cs, const char *field, size_t flen,
                       const char *val, size_t vlen)
{
    if (grow((void **)&cs->s, &cs->caps, cs->ns + 1, sizeof(*cs->s)) != 0) {
        return -1;
    }
    struct cs_sup s;
    int rc = parse_sup(&s, field, flen, val, vlen);
    if (rc == 0) {
        cs->s[cs->ns++] = s;
    }
    return rc;
}

static void remove_entry(struct cardstate *cs, size_t i)
{
    free(cs->e[i].field);
    cs->e[i] = cs->e[--cs->n];
}

static void remove_sup(struct cardstate *cs, size_t i)
{
    free_sup(&cs->s[i]);
    cs->s[i] = cs->s[--cs->ns];
}

/* Adds the event's entry at its first arrival: seq maxq + 1, the card's
 * newest and now recorded with it (HSET emitted first). Returns 0, or -1
 * with the card unchanged. */
static int add_first(struct cardstate *cs, const struct cs_event *ev,
                     struct cs_scratch *sc, int64_t maxq, int64_t newest,
                     cs_emit_fn emit, void *arg)
{
    struct cs_entry e;
    memset(&e, 0, sizeof(e));
    e.t = ev->event_ms;
    e.q = maxq + 1;
    e.nw = newest;
    e.seen = ev->now_ms;
    e.has_nw = 1;
    e.rec_ok = win_entry_decode(ev->record, ev->record_len, &e.rec) == 0;
    char head[96];
    int hl = snprintf(head, sizeof(head),
                      "%" PRId64 ":%" PRId64 ":%" PRId64 ":%" PRId64 ":", e.t,
                      e.q, e.nw, e.seen);
    size_t fl = strlen(ev->txn_id);
    char *val = malloc((size_t)hl + ev->record_len + 1);
    if (val == NULL ||
        grow((void **)&cs->e, &cs->cap, cs->n + 1, sizeof(*cs->e)) != 0 ||
        grow((void **)&sc->e, &sc->cap_e, cs->n + 2, sizeof(*sc->e)) != 0 ||
        (e.field = dup_n(ev->txn_id, fl)) == NULL) {
        free(val);
        return -1;
    }
    memcpy(val, head, (size_t)hl);
    memcpy(val + hl, ev->record, ev->record_len);
    size_t vl = (size_t)hl + ev->record_len;
    val[vl] = '\0';
    int rc = emit(arg, CS_WIN_SET, e.field, fl, val, vl);
    free(val);
    if (rc != 0) {
        free(e.field);
        return -1;
    }
    cs->e[cs->n++] = e;
    return 0;
}

/* Suppression: deletes the records below slim (when a rule suppresses)
 * and puts in sc->s, per rule, the latest record of an earlier arrival
 * (seq below qv, another txn, at or before the event time). Returns how
 * many rules have one. */
static size_t view_sups(struct cardstate *cs, const struct cs_event *ev,
                        struct cs_scratch *sc, int64_t qv, int64_t slim,
                        cs_emit_fn emit, void *arg)
{
    size_t ns = 0;
    for (size_t i = cs->ns; i-- > 0;) {
        const struct cs_sup *s = &cs->s[i];
        if (ev->sup_horizon_ms > 0 && s->ms < slim) {
            (void)emit(arg, CS_SUP_DEL, s->field, strlen(s->field), NULL, 0);
            remove_sup(cs, i);
            continue;
        }
        if (!(s->q < qv && strcmp(s->stxn, ev->txn_id) != 0 &&
              s->ms <= ev->event_ms)) {
            continue;
        }
        size_t k = 0;
        while (k < ns && strcmp(sc->s[k].rule_id, s->rule) != 0) {
            k++;
        }
        if (k == ns) {
            sc->s[ns].rule_id = s->rule;
            sc->s[ns].last_ms = s->ms;
            sc->s[ns].txn_id = s->stxn;
            ns++;
        } else if (s->ms > sc->s[k].last_ms) {
            sc->s[k].last_ms = s->ms;
            sc->s[k].txn_id = s->stxn;
        }
    }
    return ns;
}

int cardstate_observe(struct cardstate *cs, const struct cs_event *ev,
                      struct cs_scratch *sc, struct cs_view *v, cs_emit_fn emit,
                      void *arg)
{
    /* local newest, maxq, mine: over the entries Redis holds */
    int64_t newest = ev->event_ms, maxq = 0;
    size_t mine = SIZE_MAX;
    for (size_t i = 0; i < cs->n; i++) {
        const struct cs_entry *e = &cs->e[i];
        if (e->q > maxq) {
            maxq = e->q;
        }
        if (e->t > newest) {
            newest = e->t;
        }
        if (mine == SIZE_MAX && strcmp(e->field, ev->txn_id) == 0) {
            mine = i;
        }
    }
    if (grow((void **)&sc->e, &sc->cap_e, cs->n + 1, sizeof(*sc->e)) != 0 ||
        grow((void **)&sc->s, &sc->cap_s, cs->ns + 1, sizeof(*sc->s)) != 0) {
        return -1;
    }
    if (mine == SIZE_MAX) {
        if (add_first(cs, ev, sc, maxq, newest, emit, arg) != 0) {
            return -1;
        }
        mine = cs->n - 1;
    }
    const struct cs_entry *me = &cs->e[mine];
    /* an entry from before sequence numbers sees what was there */
    int64_t qv = me->has_nw ? me->q : INT64_MAX;
    int64_t nwv = me->has_nw ? me->nw : newest;
    int64_t floor = nwv - ev->horizon_ms;
    int64_t lim = newest - ev->horizon_ms;
    int64_t slim = newest - ev->sup_horizon_ms;
    size_t n = 0, bad = 0;
    for (size_t i = 0; i < cs->n; i++) {
        const struct cs_entry *e = &cs->e[i];
        if (i != mine && e->q < qv && e->t >= floor) {
            if (e->rec_ok) {
                sc->e[n++] = e->rec;
            } else {
                bad++;
            }
        }
        if (e->seen > ev->now_ms - ev->grace_ms) {
            int64_t f = (e->has_nw ? e->nw : newest) - ev->horizon_ms;
            if (f < lim) {
                lim = f;
            }
            if (e->t - ev->sup_horizon_ms < slim) {
                slim = e->t - ev->sup_horizon_ms;
            }
        }
    }
    if (me->t >= floor) {
        if (me->rec_ok) {
            sc->e[n++] = me->rec;
        } else {
            bad++;
        }
    }
    v->seq = me->q;
    v->newest_ms = nwv;
    v->entries = sc->e;
    v->n_entries = n;
    v->n_bad = bad;
    for (size_t i = cs->n; i-- > 0;) {
        if (cs->e[i].t < lim) {
            (void)emit(arg, CS_WIN_DEL, cs->e[i].field, strlen(cs->e[i].field),
                       NULL, 0);
            remove_entry(cs, i);
        }
    }
    size_t ns = view_sups(cs, ev, sc, qv, slim, emit, arg);
    v->sups = sc->s;
    v->n_sups = ns;
    return 0;
}

int cardstate_suppress(struct cardstate *cs, const char *rule_id,
                       const char *txn_id, int64_t event_ms, int64_t seq,
                       cs_emit_fn emit, void *arg)
{
    if (strchr(rule_id, '|') != NULL) {
        return -1;
    }
    size_t fl = strlen(rule_id) + 1 + strlen(txn_id);
    char *f = malloc(fl + 1);
    char val[48];
    int vl = snprintf(val, sizeof(val), "%" PRId64 "|%" PRId64, event_ms, seq);
    if (f == NULL ||
        grow((void **)&cs->s, &cs->caps, cs->ns + 1, sizeof(*cs->s)) != 0) {
        free(f);
        return -1;
    }
    snprintf(f, fl + 1, "%s|%s", rule_id, txn_id);
    struct cs_sup s;
    if (parse_sup(&s, f, fl, val, (size_t)vl) != 0) {
        free(f);
        return -1;
    }
    if (emit(arg, CS_SUP_SET, f, fl, val, (size_t)vl) != 0) {
        free_sup(&s);
        free(f);
        return -1;
    }
    free(f);
    for (size_t i = 0; i < cs->ns; i++) {
        if (strcmp(cs->s[i].field, s.field) == 0) {
            free_sup(&cs->s[i]);
            cs->s[i] = s;
            return 0;
        }
    }
    cs->s[cs->ns++] = s;
    return 0;
}

void cardstate_clear(struct cardstate *cs)
{
    for (size_t i = 0; i < cs->n; i++) {
        free(cs->e[i].field);
    }
    for (size_t i = 0; i < cs->ns; i++) {
        free_sup(&cs->s[i]);
    }
    free(cs->e);
    free(cs->s);
    memset(cs, 0, sizeof(*cs));
}

size_t cardstate_bytes(const struct cardstate *cs)
{
    return cs->cap * sizeof(*cs->e) + cs->caps * sizeof(*cs->s);
}

void cardstate_scratch_free(struct cs_scratch *sc)
{
    free(sc->e);
    free(sc->s);
    memset(sc, 0, sizeof(*sc));
}
