/* rules_int.h - private to the rules module (rules.c, rules_parse.c,
 * rules_lint.c, rules_eval.c, rules_print.c): the facts table, the
 * compiled form of a rule set, and the functions those files share.
 * Nothing outside processor/rules*.c includes it; the API is rules.h.
 *
 * A rule set is parsed (rules_parse.c) into a tree of nodes per rule,
 * checked for warnings (rules_lint.c), compiled into jump programs and
 * evaluated (rules_eval.c), and printed for warnings and explain
 * (rules_print.c). Every name is resolved at parse time: a fact becomes
 * a slot number, an enum name its value, a window its index.
 */
#ifndef CARDWATCH_RULES_INT_H
#define CARDWATCH_RULES_INT_H

#include <stddef.h>
#include <stdint.h>

#include "rules.h"

/* ---- facts ---- */

enum vtype {
    VT_BOOL,
    VT_INT,
    VT_STR,
    VT_CHANNEL,
    VT_ENTRY,
    VT_RESPONSE,
};

enum fact {
    F_TXN_ID,
    F_AMOUNT,
    F_CURRENCY,
    F_MCC,
    F_MERCHANT_ID,
    F_MERCHANT_COUNTRY,
    F_CHANNEL,
    F_ENTRY_MODE,
    F_CVV2_PRESENTED,
    F_RESPONSE,
    F_EVENT_TIME,
    F_EXPOSED,
    F_CNP,
    F_EXPIRY_EXPOSED,
    F_CVV2_EXPOSED,
    F_NAME_EXPOSED,
    F_ADDRESS_EXPOSED,
    F_EXPIRY_MATCHES,
    F_DAYS_START,
    F_DAYS_END,
    F_ISSUER_ID,
    F_ISSUER_COUNTRY,
    F_COUNT /* scalar facts; window aggregates follow */
};

enum wfunc { WF_COUNT, WF_DECLINED, WF_SUM, WF_MERCHANTS, WF_COUNTRIES, WF_N };

#define SLOT_WIN(wi, fn) (F_COUNT + (wi)*WF_N + (fn))
#define N_SLOTS (F_COUNT + WIN_MAX_WINDOWS * WF_N)

struct fact_def {
    const char *name;
    uint8_t type;
    uint8_t exposed; /* true only when an active breach exists */
    uint8_t code;    /* strings: exactly this many A-Z (0: anything) */
    int64_t lo, hi;  /* every value a valid transaction can give */
};

/* The scalar facts by enum fact (rules.c). */
extern const struct fact_def rules_facts[F_COUNT];

/* Window functions; lo is the smallest value (the window always holds the
 * current transaction, so count >= 1). */
struct wfunc_def {
    const char *name;
    int64_t lo;
};

/* The window functions by enum wfunc (rules.c). */
extern const struct wfunc_def rules_wfuncs[WF_N];

/* ---- compiled form ---- */

enum okind {
    O_SLOT, /* a fact: slot number */
    O_INT,  /* integer, boolean (0/1) or enum value */
    O_STR,  /* string literal: offset into the pool */
};

struct operand {
    uint8_t kind;
    uint16_t slot;
    uint32_t soff;
    int64_t i;
};

enum nkind {
    N_CONST, /* true / false: l.i */
    N_FACT,  /* a boolean fact: l.slot */
    N_NOT,   /* a = child */
    N_AND,   /* kids[a .. a+n) */
    N_OR,    /* kids[a .. a+n) */
    N_CMP,   /* l op r */
    N_IN,    /* l in lits[a .. a+n), neg for 'not in' */
};

enum cmp_op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };

/* "==", "!=", ... by enum cmp_op */
extern const char *const rules_op_names[OP_GE + 1];

struct node {
    uint8_t kind;
    uint8_t op;
    uint8_t type; /* N_CMP / N_IN: the type both sides share */
    uint8_t neg;
    uint32_t a, n;
    struct operand l, r;
};

/* The evaluated form: each condition is compiled into a jump program
 * of leaf tests. A test compares, yielding "less", "equal" or "greater"
 * (an 'in' test: "equal" when found, "greater" when not); mask says which
 * of those make it true (bit 0 less, 1 equal, 2 greater), and t / f name
 * the next test, or PC_TRUE / PC_FALSE. 'and', 'or' and 'not' are only
 * wiring: evaluation is one loop, no recursion, no per-node dispatch. */
enum ikind {
    I_INT_LIT,  /* iv[a] against lit */
    I_INT_SLOT, /* iv[a] against iv[b] */
    I_STR_LIT,  /* sv[a] against pool + lit */
    I_STR_SLOT, /* sv[a] against sv[b] */
    I_IN_INT,   /* iv[a] in lits[lit .. lit+n) */
    I_IN_STR,   /* sv[a] in lits[lit .. lit+n) */
};

#define PC_TRUE (-1)
#define PC_FALSE (-2)

struct instr {
    uint8_t kind;
    uint8_t mask;
    uint16_t a, b;
    int32_t t, f;
    uint32_t n;
    int64_t lit;
};

struct rule {
    struct rule_hit hit; /* id and severity, copied into hits */
    uint32_t desc;       /* pool offset */
    int64_t suppress_ms;
    uint32_t root; /* the condition as a tree (explain, warnings) */
    int32_t entry; /* ... and as a program (evaluation) */
    int line;
};

/* A parsed rule set; immutable once rules_parse() returns it. */
struct ruleset {
    char version[RULESET_VERSION_MAX + 1];
    char *name; /* file name for warnings */
    struct rule *rules;
    size_t n_rules;
    struct node *nodes;
    size_t n_nodes;
    uint32_t *kids;
    struct operand *lits;
    char *pool;
    struct instr *prog;
    size_t n_prog, cap_prog;
    int64_t windows[WIN_MAX_WINDOWS];
    char wspell[WIN_MAX_WINDOWS][16]; /* first spelling: "24h", not "1d" */
    size_t n_windows;
    char **warnings;
    size_t n_warnings, cap_warnings;
};

/* ---- evaluation context ---- */

/* The facts of one transaction, by slot. */
struct ectx {
    const struct ruleset *rs;
    int64_t iv[N_SLOTS];
    const char *sv[F_COUNT];
};

static inline int64_t ival(const struct ectx *c, const struct operand *o)
{
    return o->kind == O_SLOT ? c->iv[o->slot] : o->i;
}

static inline const char *sval(const struct ectx *c, const struct operand *o)
{
    return o->kind == O_SLOT ? c->sv[o->slot] : c->rs->pool + o->soff;
}

/* ---- small helpers (rules.c) ---- */

/* Grows *p (elements of size el) so that it holds at least need.
 * Returns 0, or -1 (out of memory or overflow; *p and *cap unchanged). */
int rules_grow(void **p, size_t *cap, size_t need, size_t el);

/* A bounded text builder: always NUL-terminated, cut to fit. */
struct sb {
    char *buf;
    size_t cap; /* including the NUL; 0 = write nothing */
    size_t len;
};

/* Starts b on buf[0..cap) (cap 0 or buf NULL: writes nothing). */
void rules_sb_init(struct sb *b, char *buf, size_t cap);
void rules_sb_putn(struct sb *b, const char *s, size_t n);
void rules_sb_puts(struct sb *b, const char *s);
/* Cuts the text back to its first len bytes. */
void rules_sb_truncate(struct sb *b, size_t len);
/* Appends printf output (at most 511 bytes of it). */
void rules_sb_printf(struct sb *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s[0..n) as a double-quoted rule string literal. */
void rules_sb_quoted(struct sb *b, const char *s, size_t n);

/* The name of value v of an enum type ("ecommerce"), "?" when none. */
const char *rules_enum_name(uint8_t type, int64_t v);

/* Writes the name of a fact slot ("amount_minor", "count(10m)"). */
void rules_slot_name(const struct ruleset *rs, size_t slot, struct sb *b);

/* ---- between the stages ---- */

/* rules_lint.c: computes the warnings of a parsed rule set into
 * rs->warnings. Returns 0, or -1 when out of memory. */
int rules_lint(struct ruleset *rs);

/* rules_eval.c: compiles every rule's tree into its program (rs->prog,
 * rule.entry). Returns 0, or -1 when out of memory. */
int rules_compile(struct ruleset *rs);

/* rules_eval.c: fills c from f (f->txn != NULL); marks active[]
 * (f->n_matches entries) when not NULL. */
void rules_fill_facts(const struct ruleset *rs, const struct rule_facts *f,
                      int *active, struct ectx *c);

/* rules_eval.c: evaluates the tree of node ni on c: 1 when it holds (the
 * same answer as the program, checked by the fuzzer). */
int rules_eval_node(const struct ruleset *rs, uint32_t ni,
                    const struct ectx *c);

/* rules_eval.c: 1 when rule r, whose condition held on t, is suppressed
 * by last (NULL: never). */
int rules_is_suppressed(const struct rule *r, const struct rule_last *last,
                        const struct txn *t);

/* rules_print.c: prints node ni in canonical form; prec is the binding
 * strength the context needs (0 none, 1 or, 2 and, 3 not). With c (may be
 * NULL), each comparison is followed by the values of its facts in
 * parentheses. */
void rules_print_node(const struct ruleset *rs, uint32_t ni, int prec,
                      const struct ectx *c, struct sb *b);

#endif
