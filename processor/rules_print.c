/* rules_print.c - conditions as text: the canonical form of a rule's
 * condition (quoted in warnings, rules_lint.c) and rules_explain, which
 * evaluates a rule's tree on one transaction and prints it with the
 * value of each fact.
 */
#include "rules.h"

#include <string.h>

#include "rules_int.h"

/* ---- printing (warnings and explain) ---- */

static void print_value(const struct ruleset *rs, uint8_t type,
                        const struct operand *o, const struct ectx *c,
                        struct sb *b)
{
    if (type == VT_STR) {
        const char *s = c != NULL ? sval(c, o) : rs->pool + o->soff;
        rules_sb_quoted(b, s, strlen(s));
        return;
    }
    int64_t v = c != NULL ? ival(c, o) : o->i;
    if (type == VT_BOOL) {
        /* a fact's value reads yes/no; a literal reads as written */
        rules_sb_puts(b, o->kind == O_SLOT ? (v ? "yes" : "no")
                                           : (v ? "true" : "false"));
    } else if (type == VT_INT) {
        rules_sb_printf(b, "%lld", (long long)v);
    } else {
        rules_sb_puts(b, rules_enum_name(type, v));
    }
}

static void print_operand(const struct ruleset *rs, uint8_t type,
                          const struct operand *o, struct sb *b)
{
    if (o->kind == O_SLOT) {
        rules_slot_name(rs, o->slot, b);
    } else {
        print_value(rs, type, o, NULL, b);
    }
}

void rules_print_node(const struct ruleset *rs, uint32_t ni, int prec,
                      const struct ectx *c, struct sb *b)
{
    const struct node *n = &rs->nodes[ni];

    switch (n->kind) {
    case N_CONST:
        rules_sb_puts(b, n->l.i ? "true" : "false");
        return;
    case N_FACT:
        rules_slot_name(rs, n->l.slot, b);
        if (c != NULL) {
            rules_sb_puts(b, c->iv[n->l.slot] ? " (yes)" : " (no)");
        }
        return;
    case N_NOT:
        rules_sb_puts(b, "not ");
        rules_print_node(rs, n->a, 3, c, b);
        return;
    case N_AND:
    case N_OR: {
        int mine = n->kind == N_OR ? 1 : 2;
        if (prec > mine) {
            rules_sb_puts(b, "(");
        }
        for (uint32_t k = 0; k < n->n; k++) {
            if (k > 0) {
                rules_sb_puts(b, n->kind == N_OR ? " or " : " and ");
            }
            rules_print_node(rs, rs->kids[n->a + k], mine, c, b);
        }
        if (prec > mine) {
            rules_sb_puts(b, ")");
        }
        return;
    }
    case N_CMP:
        print_operand(rs, n->type, &n->l, b);
        rules_sb_printf(b, " %s ", rules_op_names[n->op]);
        print_operand(rs, n->type, &n->r, b);
        if (c != NULL) {
            rules_sb_puts(b, " (");
            print_value(rs, n->type, &n->l, c, b);
            if (n->r.kind == O_SLOT) {
                rules_sb_puts(b, ", ");
                print_value(rs, n->type, &n->r, c, b);
            }
            rules_sb_puts(b, ")");
        }
        return;
    case N_IN:
        print_operand(rs, n->type, &n->l, b);
        rules_sb_puts(b, n->neg ? " not in (" : " in (");
        for (uint32_t k = 0; k < n->n; k++) {
            if (k > 0) {
                rules_sb_puts(b, ", ");
            }
            print_value(rs, n->type, &rs->lits[n->a + k], NULL, b);
        }
        rules_sb_puts(b, ")");
        if (c != NULL) {
            rules_sb_puts(b, " (");
            print_value(rs, n->type, &n->l, c, b);
            rules_sb_puts(b, ")");
        }
        return;
    default:
        return;
    }
}

int rules_explain(const struct ruleset *rs, size_t i,
                  const struct rule_facts *f, char *buf, size_t buflen)
{
    struct ectx c;
    struct sb b;
    const struct rule *r;
    int ok, sup;

    rules_sb_init(&b, buf, buflen);
    if (rs == NULL || i >= rs->n_rules || f == NULL || f->txn == NULL) {
        return 0;
    }
    r = &rs->rules[i];
    rules_fill_facts(rs, f, NULL, &c);
    ok = rules_eval_node(rs, r->root, &c);
    sup = ok && f->last != NULL && rules_is_suppressed(r, &f->last[i], f->txn);
    rules_sb_printf(&b, "%s: %s: ", r->hit.rule_id,
                    !ok   ? "no"
                    : sup ? "yes (suppressed)"
                          : "yes");
    rules_print_node(rs, r->root, 0, &c, &b);
    return (int)b.len;
}
