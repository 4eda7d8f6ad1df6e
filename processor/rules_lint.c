/* rules_lint.c - the warnings of a rule set, computed once at parse time
 * (rules_warnings, docs/rules.md): rules that can never fire (a
 * comparison that is false on every value a valid transaction can have,
 * or conditions on the same fact in one conjunction that contradict each
 * other), and rules that do not require `exposed`. The proofs are sound,
 * not complete: a rule without a warning may still never fire.
 */
#include "rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules_int.h"

/* ---- warnings (parse time) ---- */

static uint8_t slot_type(size_t slot)
{
    return slot < F_COUNT ? rules_facts[slot].type : VT_INT;
}

static int add_warning(struct ruleset *rs, const struct rule *r,
                       const char *msg)
{
    char buf[768];
    char *copy;

    snprintf(buf, sizeof(buf), "%s:%d: rule '%s' %s", rs->name, r->line,
             r->hit.rule_id, msg);
    if (rules_grow((void **)&rs->warnings, &rs->cap_warnings,
                   rs->n_warnings + 1, sizeof(*rs->warnings)) != 0) {
        return -1;
    }
    copy = strdup(buf);
    if (copy == NULL) {
        return -1;
    }
    rs->warnings[rs->n_warnings++] = copy;
    return 0;
}

/* An atom of a conjunction: a leaf node, possibly negated; or an or-like
 * node (or; negated and) that is never true when all its branches are. */
struct atom {
    uint32_t node;
    uint8_t neg;
};

struct atoms {
    struct atom *v;
    size_t n, cap;
    int failed;
};

static void collect(const struct ruleset *rs, uint32_t ni, int neg,
                    struct atoms *a)
{
    const struct node *n = &rs->nodes[ni];

    if (n->kind == N_NOT) {
        collect(rs, n->a, !neg, a);
        return;
    }
    if ((n->kind == N_AND && !neg) || (n->kind == N_OR && neg)) {
        for (uint32_t k = 0; k < n->n; k++) {
            collect(rs, rs->kids[n->a + k], neg, a);
        }
        return;
    }
    if (rules_grow((void **)&a->v, &a->cap, a->n + 1, sizeof(*a->v)) != 0) {
        a->failed = 1;
        return;
    }
    a->v[a->n++] = (struct atom){ni, (uint8_t)neg};
}

/* What a conjunction has learnt about one slot. */
struct slotst {
    int64_t lo, hi; /* integers */
    uint32_t mask;  /* enums and booleans: allowed values */
    int eq;         /* strings: atom index of an '== literal', -1 */
    int n_seen;     /* atoms on this slot seen in pass 1 */
    int first;      /* the first two of them */
    int second;
};

static void slot_init(size_t slot, struct slotst *st)
{
    uint8_t type = slot_type(slot);

    memset(st, 0, sizeof(*st));
    st->eq = -1;
    st->first = -1;
    st->second = -1;
    if (slot >= F_COUNT) {
        st->lo = rules_wfuncs[(slot - F_COUNT) % WF_N].lo;
        st->hi = INT64_MAX;
    } else if (type == VT_INT) {
        st->lo = rules_facts[slot].lo;
        st->hi = rules_facts[slot].hi;
    } else if (type != VT_STR) {
        for (int64_t v = rules_facts[slot].lo; v <= rules_facts[slot].hi; v++) {
            st->mask |= 1u << v;
        }
    }
}

/* The slot an atom constrains, or -1 (constants, fact against fact). */
static int atom_slot(const struct ruleset *rs, const struct atom *a)
{
    const struct node *n = &rs->nodes[a->node];

    if (n->kind == N_FACT) {
        return n->l.slot == F_CNP ? F_CHANNEL : n->l.slot;
    }
    if ((n->kind == N_CMP && n->r.kind != O_SLOT) || n->kind == N_IN) {
        return n->l.slot;
    }
    return -1;
}

static int code_ok(const char *s, int code)
{
    if (code == 0) {
        return 1;
    }
    for (int i = 0; i < code; i++) {
        if (s[i] < 'A' || s[i] > 'Z') {
            return 0;
        }
    }
    return s[code] == '\0';
}

/* The literal an '== literal' atom fixed a string slot to (st->eq), or
 * NULL when none did. */
static const char *eq_literal(const struct ruleset *rs, const struct atoms *as,
                              const struct slotst *st)
{
    return st->eq >= 0 ? rs->pool + rs->nodes[as->v[st->eq].node].r.soff : NULL;
}

/* apply_atom() on a boolean fact (cnp: the channels it stands for). */
static int apply_fact(const struct node *n, int neg, struct slotst *st,
                      int pass)
{
    if (pass == 1) {
        if (n->l.slot == F_CNP) {
            uint32_t cnp =
                (1u << TXN_CHANNEL_ECOMMERCE) | (1u << TXN_CHANNEL_MOTO);
            st->mask &= neg ? ~cnp : cnp;
        } else {
            st->mask &= 1u << (neg ? 0 : 1);
        }
    }
    return st->mask == 0;
}

/* apply_atom() on 'fact op literal' (atom ai of as). */
static int apply_cmp(const struct ruleset *rs, const struct atoms *as,
                     size_t ai, const struct node *n, int neg,
                     struct slotst *st, int pass)
{
    static const uint8_t negate[] = {OP_NE, OP_EQ, OP_GE, OP_GT, OP_LE, OP_LT};
    uint8_t op = neg ? negate[n->op] : n->op;
    int64_t c = n->r.i;

    if (n->type == VT_STR) {
        const char *lit = rs->pool + n->r.soff;
        int code = rules_facts[n->l.slot].code;
        if (pass == 1 && op == OP_EQ) {
            if (!code_ok(lit, code)) {
                return 1;
            }
            if (st->eq >= 0 && strcmp(eq_literal(rs, as, st), lit) != 0) {
                return 1;
            }
            st->eq = (int)ai;
        } else if (pass == 2 && op == OP_NE && st->eq >= 0) {
            return strcmp(eq_literal(rs, as, st), lit) == 0;
        }
        return 0;
    }
    if (n->type != VT_INT) {
        if (pass == 1 && c >= 0 && c < 32) {
            st->mask &= op == OP_EQ ? 1u << c : ~(1u << c);
        }
        return st->mask == 0;
    }
    if (pass == 2) {
        return op == OP_NE && st->lo == c && st->hi == c;
    }
    switch (op) {
    case OP_EQ:
        st->lo = st->lo > c ? st->lo : c;
        st->hi = st->hi < c ? st->hi : c;
        break;
    case OP_LT:
        if (c == INT64_MIN) {
            return 1;
        }
        st->hi = st->hi < c - 1 ? st->hi : c - 1;
        break;
    case OP_LE:
        st->hi = st->hi < c ? st->hi : c;
        break;
    case OP_GT:
        if (c == INT64_MAX) {
            return 1;
        }
        st->lo = st->lo > c + 1 ? st->lo : c + 1;
        break;
    case OP_GE:
        st->lo = st->lo > c ? st->lo : c;
        break;
    default:
        break;
    }
    return st->lo > st->hi;
}

/* apply_atom() on 'fact in (...)' ('not in' when neg). */
static int apply_in(const struct ruleset *rs, const struct atoms *as,
                    const struct node *n, int neg, struct slotst *st, int pass)
{
    const struct operand *l = rs->lits + n->a;

    if (n->type == VT_STR) {
        int code = rules_facts[n->l.slot].code;
        int any = 0, has_eq = 0;
        const char *eq = eq_literal(rs, as, st);
        for (uint32_t k = 0; k < n->n; k++) {
            const char *s = rs->pool + l[k].soff;
            any |= code_ok(s, code);
            has_eq |= eq != NULL && strcmp(s, eq) == 0;
        }
        if (pass == 1) {
            return !neg && !any;
        }
        return eq != NULL && (neg ? has_eq : !has_eq);
    }
    if (n->type != VT_INT) {
        uint32_t m = 0;
        for (uint32_t k = 0; k < n->n; k++) {
            if (l[k].i >= 0 && l[k].i < 32) {
                m |= 1u << l[k].i;
            }
        }
        if (pass == 1) {
            st->mask &= neg ? ~m : m;
        }
        return st->mask == 0;
    }
    if (pass == 1) {
        int64_t lo = INT64_MAX, hi = INT64_MIN;
        if (neg) {
            return 0;
        }
        for (uint32_t k = 0; k < n->n; k++) {
            lo = l[k].i < lo ? l[k].i : lo;
            hi = l[k].i > hi ? l[k].i : hi;
        }
        st->lo = st->lo > lo ? st->lo : lo;
        st->hi = st->hi < hi ? st->hi : hi;
        return st->lo > st->hi;
    }
    for (uint32_t k = 0; k < n->n; k++) {
        int inside = l[k].i >= st->lo && l[k].i <= st->hi;
        if (!neg && inside) {
            return 0;
        }
        if (neg && st->lo == st->hi && l[k].i == st->lo) {
            return 1;
        }
    }
    return !neg;
}

/* Applies atom a to the state of its slot. Pass 1 narrows (bounds, enum
 * masks, string equality); pass 2 checks what bounds cannot hold ('!=',
 * 'in' lists of integers and strings). Returns 1 when no value is left. */
static int apply_atom(const struct ruleset *rs, const struct atoms *as,
                      size_t ai, struct slotst *st, int pass)
{
    const struct atom *a = &as->v[ai];
    const struct node *n = &rs->nodes[a->node];
    int neg = a->neg ^ (n->kind == N_IN ? n->neg : 0);

    if (n->kind == N_FACT) {
        return apply_fact(n, neg, st, pass);
    }
    if (n->kind == N_CMP) {
        return apply_cmp(rs, as, ai, n, neg, st, pass);
    }
    return apply_in(rs, as, n, neg, st, pass);
}

static void atom_text(const struct ruleset *rs, const struct atom *a,
                      struct sb *b)
{
    if (a->neg) {
        rules_sb_puts(b, "not ");
    }
    rules_print_node(rs, a->node, a->neg ? 3 : 0, NULL, b);
}

static int never_true(const struct ruleset *rs, uint32_t ni, int neg,
                      struct sb *why);

/* Returns 1 when the conjunction of as can never hold, with the reason;
 * 0 when not proven; -1 when out of memory. */
static int conj_never(const struct ruleset *rs, struct atoms *as,
                      struct sb *why)
{
    struct slotst *st;
    int res = 0;

    /* each atom alone, on every value its fact can have */
    for (size_t i = 0; i < as->n; i++) {
        const struct node *n = &rs->nodes[as->v[i].node];
        int slot = atom_slot(rs, &as->v[i]);
        struct slotst one;
        if (n->kind == N_CONST) {
            if ((n->l.i != 0) == (as->v[i].neg != 0)) {
                rules_sb_puts(why, "it requires ");
                atom_text(rs, &as->v[i], why);
                return 1;
            }
            continue;
        }
        if (n->kind == N_AND || n->kind == N_OR) {
            res = never_true(rs, as->v[i].node, as->v[i].neg, why);
            if (res != 0) {
                return res;
            }
            continue;
        }
        if (slot < 0) {
            continue;
        }
        slot_init((size_t)slot, &one);
        if (apply_atom(rs, as, i, &one, 1) || apply_atom(rs, as, i, &one, 2)) {
            atom_text(rs, &as->v[i], why);
            rules_sb_puts(why, " is always false");
            return 1;
        }
    }
    /* together */
    st = malloc(N_SLOTS * sizeof(*st));
    if (st == NULL) {
        return -1;
    }
    for (size_t s = 0; s < N_SLOTS; s++) {
        slot_init(s, &st[s]);
    }
    for (int pass = 1; pass <= 2 && !res; pass++) {
        for (size_t i = 0; i < as->n && !res; i++) {
            int slot = atom_slot(rs, &as->v[i]);
            struct slotst *s;
            if (slot < 0) {
                continue;
            }
            s = &st[slot];
            if (pass == 1) {
                s->first = s->n_seen == 0 ? (int)i : s->first;
                s->second = s->n_seen == 1 ? (int)i : s->second;
                s->n_seen++;
            }
            if (apply_atom(rs, as, i, s, pass)) {
                res = 1;
                if (s->n_seen == 2) {
                    atom_text(rs, &as->v[s->first], why);
                    rules_sb_puts(why, " and ");
                    atom_text(rs, &as->v[s->second], why);
                    rules_sb_puts(why, " cannot both hold");
                } else {
                    rules_sb_puts(why, "the conditions on ");
                    rules_slot_name(rs, (size_t)slot, why);
                    rules_sb_puts(why, " cannot all hold");
                }
            }
        }
    }
    free(st);
    return res;
}

/* Returns 1 when node ni (negated when neg) is false on every
 * transaction, with the reason in why. Sound, not complete: 0 means
 * "not proven". -1 when out of memory. */
static int never_true(const struct ruleset *rs, uint32_t ni, int neg,
                      struct sb *why)
{
    const struct node *n = &rs->nodes[ni];
    struct atoms as = {0};
    int res;

    while (n->kind == N_NOT) {
        neg = !neg;
        ni = n->a;
        n = &rs->nodes[ni];
    }
    if ((n->kind == N_OR && !neg) || (n->kind == N_AND && neg)) {
        /* or-like: never true when no branch can be; the first branch's
         * reason is kept */
        size_t mark = why->len;
        for (uint32_t k = 0; k < n->n; k++) {
            size_t before = why->len;
            res = never_true(rs, rs->kids[n->a + k], neg, why);
            if (res <= 0) {
                rules_sb_truncate(why, mark);
                return res;
            }
            if (k == 0) {
                rules_sb_puts(why,
                              ", and no other 'or' branch can hold either");
            } else {
                rules_sb_truncate(why, before);
            }
        }
        return 1;
    }
    collect(rs, ni, neg, &as);
    res = as.failed ? -1 : conj_never(rs, &as, why);
    free(as.v);
    return res;
}

/* Returns 1 when node ni (negated when neg) can only hold on an exposed
 * card (`exposed` or a fact about an active breach is required). */
static int requires_exposed(const struct ruleset *rs, uint32_t ni, int neg)
{
    const struct node *n = &rs->nodes[ni];

    switch (n->kind) {
    case N_CONST:
        return (n->l.i != 0) == (neg != 0); /* false requires anything */
    case N_FACT:
        return !neg && rules_facts[n->l.slot].exposed;
    case N_CMP:
        if (n->type == VT_BOOL && n->r.kind == O_INT && n->l.slot < F_COUNT &&
            rules_facts[n->l.slot].exposed) {
            int wants_true = (n->op == OP_EQ) == (n->r.i != 0);
            return wants_true != (neg != 0);
        }
        return 0;
    case N_IN:
        if (n->type == VT_BOOL && rules_facts[n->l.slot].exposed) {
            /* in (true) or not in (false), negations included */
            uint32_t m = 0;
            for (uint32_t k = 0; k < n->n; k++) {
                m |= rs->lits[n->a + k].i != 0 ? 2u : 1u;
            }
            m = (n->neg != 0) != (neg != 0) ? (~m & 3u) : m;
            return m == 2u;
        }
        return 0;
    case N_NOT:
        return requires_exposed(rs, n->a, !neg);
    case N_AND:
    case N_OR: {
        int any_mode = (n->kind == N_AND) != (neg != 0);
        for (uint32_t k = 0; k < n->n; k++) {
            int r = requires_exposed(rs, rs->kids[n->a + k], neg);
            if (any_mode && r) {
                return 1;
            }
            if (!any_mode && !r) {
                return 0;
            }
        }
        return !any_mode;
    }
    default:
        return 0;
    }
}

int rules_lint(struct ruleset *rs)
{
    char why[512];

    for (size_t i = 0; i < rs->n_rules; i++) {
        const struct rule *r = &rs->rules[i];
        struct sb b;
        char msg[640];
        int never;
        rules_sb_init(&b, why, sizeof(why));
        never = never_true(rs, r->root, 0, &b);
        if (never < 0) {
            return -1;
        }
        if (never) {
            snprintf(msg, sizeof(msg), "can never fire: %s", why);
            if (add_warning(rs, r, msg) != 0) {
                return -1;
            }
        } else if (!requires_exposed(rs, r->root, 0)) {
            if (add_warning(rs, r,
                            "does not require exposed: it can also fire on "
                            "a listed card before its breach window starts") !=
                0) {
                return -1;
            }
        }
    }
    return 0;
}
