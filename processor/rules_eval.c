/* rules_eval.c - evaluating a rule set: each rule's condition tree is
 * compiled at parse time into a jump program of leaf tests (rules_compile),
 * and rules_eval fills one array of fact values per transaction (a pass
 * over the breach matches plus the window aggregates), then runs each
 * rule's program: one loop, no recursion, nothing allocated. The tree
 * walk (rules_eval_node) serves explain, its recursion bounded by the
 * parser's nesting limit (and/or chains are n-ary nodes, not deep
 * trees); the fuzzer checks that both give the same answer.
 */
#include "rules.h"

#include <string.h>

#include "rules_int.h"

#define DAY_MS 86400000LL

/* ---- compiling trees into jump programs ---- */

/* The outcomes (bit 0 less, 1 equal, 2 greater) that make each operator
 * true. */
static const uint8_t op_masks[] = {
    [OP_EQ] = 2, [OP_NE] = 5, [OP_LT] = 1,
    [OP_LE] = 3, [OP_GT] = 4, [OP_GE] = 6,
};

/* Emits the program of node ni, going to on_true / on_false; returns the
 * entry in *entry. Returns 0, or -1 when out of memory. */
static int compile_node(struct ruleset *rs, uint32_t ni, int32_t on_true,
                        int32_t on_false, int32_t *entry)
{
    const struct node *n = &rs->nodes[ni];
    struct instr in = {.t = on_true, .f = on_false};

    switch (n->kind) {
    case N_CONST:
        *entry = n->l.i ? on_true : on_false;
        return 0;
    case N_NOT:
        return compile_node(rs, n->a, on_false, on_true, entry);
    case N_AND:
    case N_OR: {
        /* from the last operand back: each one goes on to the next when
         * it does not decide the result */
        int32_t next;
        if (compile_node(rs, rs->kids[n->a + n->n - 1], on_true, on_false,
                         &next) != 0) {
            return -1;
        }
        for (uint32_t k = n->n - 1; k-- > 0;) {
            if (compile_node(rs, rs->kids[n->a + k],
                             n->kind == N_AND ? next : on_true,
                             n->kind == N_AND ? on_false : next, &next) != 0) {
                return -1;
            }
        }
        *entry = next;
        return 0;
    }
    case N_FACT:
        in.kind = I_INT_LIT;
        in.a = n->l.slot;
        in.lit = 0;
        in.mask = op_masks[OP_NE];
        break;
    case N_CMP:
        in.a = n->l.slot;
        in.mask = op_masks[n->op];
        if (n->type == VT_STR) {
            in.kind = n->r.kind == O_SLOT ? I_STR_SLOT : I_STR_LIT;
            in.lit = n->r.soff;
        } else {
            in.kind = n->r.kind == O_SLOT ? I_INT_SLOT : I_INT_LIT;
            in.lit = n->r.i;
        }
        in.b = n->r.slot;
        break;
    default: /* N_IN */
        in.kind = n->type == VT_STR ? I_IN_STR : I_IN_INT;
        in.a = n->l.slot;
        in.lit = n->a;
        in.n = n->n;
        in.mask = n->neg ? 4 : 2;
        break;
    }
    if (rs->n_prog >= INT32_MAX ||
        rules_grow((void **)&rs->prog, &rs->cap_prog, rs->n_prog + 1,
                   sizeof(*rs->prog)) != 0) {
        return -1;
    }
    rs->prog[rs->n_prog] = in;
    *entry = (int32_t)rs->n_prog++;
    return 0;
}

int rules_compile(struct ruleset *rs)
{
    for (size_t i = 0; i < rs->n_rules; i++) {
        if (compile_node(rs, rs->rules[i].root, PC_TRUE, PC_FALSE,
                         &rs->rules[i].entry) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- evaluation ---- */

static int64_t floor_days(int64_t t, int64_t from)
{
    int64_t d, q;

    if (__builtin_sub_overflow(t, from, &d)) {
        return t > from ? INT64_MAX / DAY_MS : INT64_MIN / DAY_MS;
    }
    q = d / DAY_MS;
    return (d % DAY_MS != 0 && d < 0) ? q - 1 : q;
}

void rules_fill_facts(const struct ruleset *rs, const struct rule_facts *f,
                      int *active, struct ectx *c)
{
    const struct txn *t = f->txn;
    int64_t now = t->event_time_ms;
    int64_t start = INT64_MAX, end = INT64_MIN;
    uint32_t el = 0;
    int exposed = 0, expmatch = 0;

    c->rs = rs;
    for (size_t i = 0; i < f->n_matches; i++) {
        const struct rule_match *m = f->matches != NULL ? &f->matches[i] : NULL;
        int a =
            m != NULL && m->breach != NULL && m->breach->window_start_ms <= now;
        if (active != NULL) {
            active[i] = a;
        }
        if (!a) {
            continue;
        }
        exposed = 1;
        el |= m->breach->elements;
        expmatch |= m->expiry_known && m->expiry_match;
        start = m->breach->window_start_ms < start ? m->breach->window_start_ms
                                                   : start;
        end = m->breach->window_end_ms > end ? m->breach->window_end_ms : end;
    }
    c->iv[F_AMOUNT] = t->amount_minor;
    c->iv[F_MCC] = t->mcc;
    c->iv[F_CHANNEL] = t->channel;
    c->iv[F_ENTRY_MODE] = t->entry_mode;
    c->iv[F_CVV2_PRESENTED] = t->cvv2_presented;
    c->iv[F_RESPONSE] = t->response;
    c->iv[F_EVENT_TIME] = now;
    c->iv[F_EXPOSED] = exposed;
    c->iv[F_CNP] =
        t->channel == TXN_CHANNEL_ECOMMERCE || t->channel == TXN_CHANNEL_MOTO;
    c->iv[F_EXPIRY_EXPOSED] = (el & BREACH_EL_EXPIRY) != 0;
    c->iv[F_CVV2_EXPOSED] = (el & BREACH_EL_CVV2) != 0;
    c->iv[F_NAME_EXPOSED] = (el & BREACH_EL_NAME) != 0;
    c->iv[F_ADDRESS_EXPOSED] = (el & BREACH_EL_ADDRESS) != 0;
    c->iv[F_EXPIRY_MATCHES] = expmatch;
    c->iv[F_DAYS_START] = exposed ? floor_days(now, start) : 0;
    c->iv[F_DAYS_END] = exposed ? floor_days(now, end) : 0;
    c->sv[F_TXN_ID] = t->txn_id;
    c->sv[F_CURRENCY] = t->currency;
    c->sv[F_MERCHANT_ID] = t->merchant_id;
    c->sv[F_MERCHANT_COUNTRY] = t->merchant_country;
    c->sv[F_ISSUER_ID] = f->issuer != NULL ? f->issuer->id : "";
    c->sv[F_ISSUER_COUNTRY] = f->issuer != NULL ? f->issuer->home_country : "";
    for (size_t w = 0; w < rs->n_windows; w++) {
        int64_t *v = &c->iv[SLOT_WIN(w, 0)];
        if (f->windows != NULL) {
            const struct win_stats *s = &f->windows[w];
            v[WF_COUNT] = s->count;
            v[WF_DECLINED] = s->count_declined;
            v[WF_SUM] = s->sum_amount;
            v[WF_MERCHANTS] = s->distinct_merchants;
            v[WF_COUNTRIES] = s->distinct_countries;
        } else {
            /* no history: the window holds the current transaction */
            v[WF_COUNT] = 1;
            v[WF_DECLINED] = t->response == TXN_RESPONSE_DECLINED;
            v[WF_SUM] = t->amount_minor;
            v[WF_MERCHANTS] = t->merchant_id[0] != '\0';
            v[WF_COUNTRIES] = t->merchant_country[0] != '\0';
        }
    }
}

static int cmp_holds(uint8_t op, int d)
{
    switch (op) {
    case OP_EQ:
        return d == 0;
    case OP_NE:
        return d != 0;
    case OP_LT:
        return d < 0;
    case OP_LE:
        return d <= 0;
    case OP_GT:
        return d > 0;
    default:
        return d >= 0;
    }
}

/* Runs a rule's program from entry: 1 when the condition holds. */
static int run_program(const struct ruleset *rs, int32_t pc,
                       const struct ectx *c)
{
    while (pc >= 0) {
        const struct instr *in = &rs->prog[pc];
        unsigned idx = 2;
        switch (in->kind) {
        case I_INT_LIT: {
            int64_t x = c->iv[in->a];
            idx = (unsigned)(x >= in->lit) + (unsigned)(x > in->lit);
            break;
        }
        case I_INT_SLOT: {
            int64_t x = c->iv[in->a], y = c->iv[in->b];
            idx = (unsigned)(x >= y) + (unsigned)(x > y);
            break;
        }
        case I_STR_LIT:
        case I_STR_SLOT: {
            int d =
                strcmp(c->sv[in->a], in->kind == I_STR_LIT ? rs->pool + in->lit
                                                           : c->sv[in->b]);
            idx = (unsigned)(d >= 0) + (unsigned)(d > 0);
            break;
        }
        case I_IN_INT: {
            const struct operand *l = rs->lits + in->lit;
            int64_t x = c->iv[in->a];
            for (uint32_t k = 0; k < in->n; k++) {
                if (l[k].i == x) {
                    idx = 1;
                    break;
                }
            }
            break;
        }
        default: { /* I_IN_STR */
            const struct operand *l = rs->lits + in->lit;
            const char *x = c->sv[in->a];
            for (uint32_t k = 0; k < in->n; k++) {
                if (strcmp(x, rs->pool + l[k].soff) == 0) {
                    idx = 1;
                    break;
                }
            }
            break;
        }
        }
        pc = (in->mask >> idx) & 1u ? in->t : in->f;
    }
    return pc == PC_TRUE;
}

int rules_eval_node(const struct ruleset *rs, uint32_t ni, const struct ectx *c)
{
    const struct node *n = &rs->nodes[ni];

    switch (n->kind) {
    case N_CONST:
        return n->l.i != 0;
    case N_FACT:
        return c->iv[n->l.slot] != 0;
    case N_NOT:
        return !rules_eval_node(rs, n->a, c);
    case N_AND:
        for (uint32_t k = 0; k < n->n; k++) {
            if (!rules_eval_node(rs, rs->kids[n->a + k], c)) {
                return 0;
            }
        }
        return 1;
    case N_OR:
        for (uint32_t k = 0; k < n->n; k++) {
            if (rules_eval_node(rs, rs->kids[n->a + k], c)) {
                return 1;
            }
        }
        return 0;
    case N_CMP:
        if (n->type == VT_STR) {
            return cmp_holds(n->op, strcmp(sval(c, &n->l), sval(c, &n->r)));
        } else {
            int64_t a = ival(c, &n->l), b = ival(c, &n->r);
            return cmp_holds(n->op, (a > b) - (a < b));
        }
    case N_IN: {
        const struct operand *l = rs->lits + n->a;
        int found = 0;
        if (n->type == VT_STR) {
            const char *s = sval(c, &n->l);
            for (uint32_t k = 0; k < n->n && !found; k++) {
                found = strcmp(s, rs->pool + l[k].soff) == 0;
            }
        } else {
            int64_t v = ival(c, &n->l);
            for (uint32_t k = 0; k < n->n && !found; k++) {
                found = l[k].i == v;
            }
        }
        return found != n->neg;
    }
    default:
        return 0;
    }
}

int rules_is_suppressed(const struct rule *r, const struct rule_last *last,
                        const struct txn *t)
{
    int64_t d;

    if (last == NULL || r->suppress_ms <= 0 || last->last_ms == 0 ||
        strncmp(last->txn_id, t->txn_id, sizeof(last->txn_id)) == 0 ||
        __builtin_sub_overflow(t->event_time_ms, last->last_ms, &d)) {
        return 0;
    }
    return d >= 0 && d < r->suppress_ms;
}

size_t rules_eval(const struct ruleset *rs, const struct rule_facts *f,
                  struct rule_hit *hits, size_t cap, int *fired,
                  int *suppressed, int *active)
{
    struct ectx c;
    size_t nh = 0;

    if (rs == NULL || f == NULL || f->txn == NULL) {
        for (size_t i = 0; rs != NULL && i < rs->n_rules; i++) {
            if (fired != NULL) {
                fired[i] = 0;
            }
            if (suppressed != NULL) {
                suppressed[i] = 0;
            }
        }
        for (size_t i = 0; f != NULL && active != NULL && i < f->n_matches;
             i++) {
            active[i] = 0;
        }
        return 0;
    }
    if (hits == NULL) {
        cap = 0;
    }
    rules_fill_facts(rs, f, active, &c);
    for (size_t i = 0; i < rs->n_rules; i++) {
        const struct rule *r = &rs->rules[i];
        int ok = run_program(rs, r->entry, &c);
        int sup = ok && f->last != NULL &&
                  rules_is_suppressed(r, &f->last[i], f->txn);
        if (fired != NULL) {
            fired[i] = ok;
        }
        if (suppressed != NULL) {
            suppressed[i] = sup;
        }
        if (ok && !sup && nh < cap) {
            hits[nh++] = r->hit;
        }
    }
    return nh;
}
