/* rules_parse.c - rule text to the compiled form: the lexer, the
 * recursive-descent condition parser, the "rule" / "key: value" lines,
 * and the entry points rules_parse, rules_load and rules_builtin.
 *
 * Parsing goes line by line: "rule ID" at column 1 opens a rule, indented
 * "key: value" lines fill it, and indented lines that are not "key:" lines
 * continue a "when:" condition. The condition's tokens (with their line and
 * column) are collected until the rule ends, then a recursive-descent
 * parser compiles them into a tree of nodes. Every name is resolved at
 * parse time: a fact becomes a slot number, an enum name its value, a
 * window its index, so evaluation only loads integers from one array of
 * fact values and compares (strings with strcmp). Once the text is read,
 * rules_parse sorts the windows, compiles the trees into programs
 * (rules_eval.c) and computes the warnings (rules_lint.c).
 */
#include "rules.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "rules_int.h"
#include "text.h"

#define BUILTIN_VERSION "builtin-1"
#define BUILTIN_NAME "builtin"
#define RULES_FILE_MAX (1024 * 1024)
#define DESC_MAX 255
#define DEPTH_MAX 64 /* nested parentheses and 'not' */
#define SHOW_MAX 40  /* bytes of user text quoted in a message */
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- names ---- */

static const char *const vtype_names[] = {
    [VT_BOOL] = "a boolean",      [VT_INT] = "an integer",
    [VT_STR] = "a string",        [VT_CHANNEL] = "a channel",
    [VT_ENTRY] = "an entry mode", [VT_RESPONSE] = "a response",
};

/* Names that look like facts but are card data rules never see. */
static const char *const card_data[] = {"pan",  "expiry", "cvv",
                                        "cvv2", "name",   "address"};

static const char *const keywords[] = {"and", "or", "not", "in"};

/* ---- small helpers ---- */

/* Writes user text s[0..n) for a message: 'text', cut at SHOW_MAX bytes
 * with "..." appended. */
static void show_text(const char *s, size_t n, char *buf, size_t buflen)
{
    snprintf(buf, buflen, "'%.*s%s'", (int)(n > SHOW_MAX ? SHOW_MAX : n), s,
             n > SHOW_MAX ? "..." : "");
}

static int is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_ident_char(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

static int word_is(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && memcmp(s, w, n) == 0;
}

static int enum_lo_hi(uint8_t type, int *hi)
{
    switch (type) {
    case VT_CHANNEL:
        *hi = TXN_CHANNEL_ATM;
        return 1;
    case VT_ENTRY:
        *hi = TXN_ENTRY_ON_FILE;
        return 1;
    case VT_RESPONSE:
        *hi = TXN_RESPONSE_DECLINED;
        return 1;
    default:
        *hi = 0;
        return 0;
    }
}

static int is_enum(uint8_t type)
{
    int hi;

    return enum_lo_hi(type, &hi);
}

/* Looks up an enum name (never "unspecified": no valid transaction has
 * it). Returns the value, or -1. */
static int enum_lookup(uint8_t type, const char *s, size_t n)
{
    int hi;

    if (!enum_lo_hi(type, &hi)) {
        return -1;
    }
    for (int v = 1; v <= hi; v++) {
        if (word_is(s, n, rules_enum_name(type, v))) {
            return v;
        }
    }
    return -1;
}

/* "card_present, ecommerce, moto, recurring or atm" */
static void enum_list(uint8_t type, char *buf, size_t buflen)
{
    struct sb b;
    int hi;

    rules_sb_init(&b, buf, buflen);
    enum_lo_hi(type, &hi);
    for (int v = 1; v <= hi; v++) {
        rules_sb_puts(&b, v == 1 ? "" : v == hi ? " or " : ", ");
        rules_sb_puts(&b, rules_enum_name(type, v));
    }
}

/* ---- tokens ---- */

enum tok_type {
    TK_END,
    TK_IDENT,
    TK_INT,
    TK_WORDNUM, /* digits run into letters: "10m" */
    TK_STR,     /* s/len: between the quotes, escapes not yet resolved */
    TK_LP,
    TK_RP,
    TK_COMMA,
    TK_OP,
};

struct token {
    uint8_t type;
    uint8_t op;
    int line;
    int col;
    const char *s;
    size_t len;
    int64_t i;
};

/* ---- parser state ---- */

enum key {
    K_NONE,
    K_SEVERITY,
    K_DESCRIPTION,
    K_WHEN,
    K_SUPPRESS,
};

static const char *const key_names[] = {
    [K_NONE] = "",
    [K_SEVERITY] = "severity",
    [K_DESCRIPTION] = "description",
    [K_WHEN] = "when",
    [K_SUPPRESS] = "suppress",
};

struct parser {
    const char *name;
    char *errbuf;
    size_t errlen;
    int failed;

    struct ruleset *rs;
    size_t cap_rules, cap_nodes, n_kids, cap_kids, n_lits, cap_lits;
    size_t pool_len, cap_pool;
    uint32_t *scratch;
    size_t n_scratch, cap_scratch;

    /* the condition being collected / parsed */
    struct token *toks;
    size_t n_toks, cap_toks;
    size_t pos;
    int depth;
    int end_line, end_col; /* just after the last token */

    /* the rule being read */
    int in_rule;
    struct rule cur;
    int have[K_SUPPRESS + 1];
    int last_key;
    int when_line, when_col;
};

static void perr(struct parser *p, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records the first error as "name:line:col: message". */
static void perr(struct parser *p, int line, int col, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (p->failed) {
        return;
    }
    p->failed = 1;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    text_errf(p->errbuf, p->errlen, "%s:%d:%d: %s", p->name, line, col, msg);
}

static int oom(struct parser *p, int line, int col)
{
    perr(p, line, col, "out of memory");
    return -1;
}

/* Writes how a token reads in a message: 'and', "x", end of condition. */
static void tok_show(const struct token *t, char *buf, size_t buflen)
{
    int n = t->len > SHOW_MAX ? SHOW_MAX : (int)t->len;
    const char *dots = t->len > SHOW_MAX ? "..." : "";

    if (t->type == TK_END) {
        snprintf(buf, buflen, "the end of the condition");
    } else if (t->type == TK_STR) {
        snprintf(buf, buflen, "\"%.*s%s\"", n, t->s, dots);
    } else {
        snprintf(buf, buflen, "'%.*s%s'", n, t->s, dots);
    }
}

static int push_tok(struct parser *p, const struct token *t)
{
    if (rules_grow((void **)&p->toks, &p->cap_toks, p->n_toks + 1,
                   sizeof(*p->toks)) != 0) {
        return oom(p, t->line, t->col);
    }
    p->toks[p->n_toks++] = *t;
    p->end_line = t->line;
    p->end_col = t->col + (int)t->len + (t->type == TK_STR ? 2 : 0);
    return 0;
}

/* Tokenizes s[i..len) of one line (a condition or its continuation). */
static int lex_line(struct parser *p, int line, const char *s, size_t len,
                    size_t i)
{
    while (i < len) {
        struct token t = {.line = line, .col = (int)i + 1, .s = s + i};
        char c = s[i];
        size_t j = i + 1;

        if (c == ' ' || c == '\t') {
            i++;
            continue;
        }
        if (c == '#') {
            break;
        }
        if (is_ident_start(c)) {
            while (j < len && is_ident_char(s[j])) {
                j++;
            }
            t.type = TK_IDENT;
        } else if (text_is_digit(c) || (c == '-' && j < len && text_is_digit(s[j]))) {
            int neg = c == '-';
            uint64_t v = 0;
            uint64_t limit = (uint64_t)INT64_MAX + (uint64_t)neg;
            int over = 0;
            while (j < len && text_is_digit(s[j])) {
                j++;
            }
            for (size_t k = i + (size_t)neg; k < j; k++) {
                unsigned d = (unsigned)(s[k] - '0');
                if (v > (limit - d) / 10) {
                    over = 1;
                    break;
                }
                v = v * 10 + d;
            }
            t.type = TK_INT;
            if (j < len && is_ident_char(s[j])) {
                while (j < len && is_ident_char(s[j])) {
                    j++;
                }
                t.type = TK_WORDNUM;
            } else if (over) {
                char show[64];
                show_text(s + i, j - i, show, sizeof(show));
                perr(p, line, t.col, "integer out of range: %s", show);
                return -1;
            } else {
                t.i = !neg                      ? (int64_t)v
                      : v > (uint64_t)INT64_MAX ? INT64_MIN
                                                : -(int64_t)v;
            }
        } else if (c == '"') {
            for (;;) {
                if (j >= len) {
                    perr(p, line, t.col, "unterminated string");
                    return -1;
                }
                if (s[j] == '"') {
                    break;
                }
                if (s[j] == '\\') {
                    if (j + 1 >= len) {
                        perr(p, line, t.col, "unterminated string");
                        return -1;
                    }
                    if (s[j + 1] != '"' && s[j + 1] != '\\') {
                        perr(p, line, (int)j + 1,
                             "unknown escape in string (only \\\" and \\\\)");
                        return -1;
                    }
                    j++;
                }
                j++;
            }
            t.type = TK_STR;
            t.s = s + i + 1;
            t.len = j - i - 1;
            if (push_tok(p, &t) != 0) {
                return -1;
            }
            i = j + 1;
            continue;
        } else if (c == '(' || c == ')' || c == ',') {
            t.type = c == '(' ? TK_LP : c == ')' ? TK_RP : TK_COMMA;
        } else if (c == '=' || c == '!') {
            if (j >= len || s[j] != '=') {
                perr(p, line, t.col,
                     c == '=' ? "unexpected '=' (compare with '==')"
                              : "unexpected '!' (use 'not' or '!=')");
                return -1;
            }
            t.type = TK_OP;
            t.op = c == '=' ? OP_EQ : OP_NE;
            j++;
        } else if (c == '<' || c == '>') {
            int eq = j < len && s[j] == '=';
            t.type = TK_OP;
            t.op = c == '<' ? (eq ? OP_LE : OP_LT) : (eq ? OP_GE : OP_GT);
            j += (size_t)eq;
        } else if ((unsigned char)c >= 0x21 && (unsigned char)c <= 0x7e) {
            perr(p, line, t.col, "unexpected character '%c'", c);
            return -1;
        } else {
            perr(p, line, t.col, "unexpected character (byte 0x%02x)",
                 (unsigned char)c);
            return -1;
        }
        t.len = j - i;
        if (push_tok(p, &t) != 0) {
            return -1;
        }
        i = j;
    }
    return 0;
}

/* ---- building the compiled form ---- */

static int add_node(struct parser *p, const struct node *n, uint32_t *out,
                    const struct token *at)
{
    struct ruleset *rs = p->rs;

    if (rs->n_nodes >= UINT32_MAX ||
        rules_grow((void **)&rs->nodes, &p->cap_nodes, rs->n_nodes + 1,
                   sizeof(*rs->nodes)) != 0) {
        return oom(p, at->line, at->col);
    }
    rs->nodes[rs->n_nodes] = *n;
    *out = (uint32_t)rs->n_nodes++;
    return 0;
}

/* Appends s[0..n) and a NUL to the pool; resolves \" and \\ when
 * unescape is set. */
static int pool_add(struct parser *p, const char *s, size_t n, int unescape,
                    uint32_t *off, int line, int col)
{
    struct ruleset *rs = p->rs;

    if (p->pool_len + n + 1 > UINT32_MAX ||
        rules_grow((void **)&rs->pool, &p->cap_pool, p->pool_len + n + 1, 1) !=
            0) {
        return oom(p, line, col);
    }
    *off = (uint32_t)p->pool_len;
    for (size_t i = 0; i < n; i++) {
        if (unescape && s[i] == '\\' && i + 1 < n) {
            i++;
        }
        rs->pool[p->pool_len++] = s[i];
    }
    rs->pool[p->pool_len++] = '\0';
    return 0;
}

static int push_scratch(struct parser *p, uint32_t v, const struct token *at)
{
    if (rules_grow((void **)&p->scratch, &p->cap_scratch, p->n_scratch + 1,
                   sizeof(*p->scratch)) != 0) {
        return oom(p, at->line, at->col);
    }
    p->scratch[p->n_scratch++] = v;
    return 0;
}

/* Makes an n-ary and/or node of scratch[base..]. */
static int make_list(struct parser *p, uint8_t kind, size_t base, uint32_t *out,
                     const struct token *at)
{
    struct node n = {.kind = kind};
    size_t cnt = p->n_scratch - base;

    if (rules_grow((void **)&p->rs->kids, &p->cap_kids, p->n_kids + cnt,
                   sizeof(*p->rs->kids)) != 0) {
        return oom(p, at->line, at->col);
    }
    memcpy(p->rs->kids + p->n_kids, p->scratch + base,
           cnt * sizeof(*p->scratch));
    n.a = (uint32_t)p->n_kids;
    n.n = (uint32_t)cnt;
    p->n_kids += cnt;
    p->n_scratch = base;
    return add_node(p, &n, out, at);
}

/* ---- condition parser ---- */

static const struct token *cur_tok(const struct parser *p)
{
    return &p->toks[p->pos];
}

static int tok_is_word(const struct token *t, const char *w)
{
    return t->type == TK_IDENT && word_is(t->s, t->len, w);
}

static int is_keyword(const struct token *t)
{
    for (size_t i = 0; i < NELEM(keywords); i++) {
        if (tok_is_word(t, keywords[i])) {
            return 1;
        }
    }
    return 0;
}

static int find_fact(const char *s, size_t n)
{
    for (int i = 0; i < F_COUNT; i++) {
        if (word_is(s, n, rules_facts[i].name)) {
            return i;
        }
    }
    return -1;
}

static int find_wfunc(const char *s, size_t n)
{
    for (int i = 0; i < WF_N; i++) {
        if (word_is(s, n, rules_wfuncs[i].name)) {
            return i;
        }
    }
    return -1;
}

/* An operand as parsed, before it is resolved against the other side. */
enum pkind {
    PK_FACT,
    PK_INT,
    PK_BOOL,
    PK_STR,
    PK_WORD, /* a bare word: an enum name, or an unknown fact */
    PK_ENUM,
};

struct pop {
    uint8_t kind;
    uint8_t type; /* not meaningful for PK_WORD */
    uint16_t slot;
    int64_t i;
    const struct token *tok;
};

static int pop_is_lit(const struct pop *o)
{
    return o->kind != PK_FACT && o->kind != PK_WORD;
}

/* How an operand reads in a message: count(10m), 3, "x", moto. */
static void pop_show(const struct parser *p, const struct pop *o, char *buf,
                     size_t buflen)
{
    if (o->kind == PK_FACT) {
        struct sb b;
        rules_sb_init(&b, buf, buflen);
        rules_slot_name(p->rs, o->slot, &b);
    } else {
        tok_show(o->tok, buf, buflen);
        if (o->kind != PK_STR && buflen > 2) {
            /* drop the quotes of 'x': values read better bare */
            size_t n = strlen(buf);
            if (n >= 2 && buf[0] == '\'') {
                memmove(buf, buf + 1, n - 2);
                buf[n - 2] = '\0';
            }
        }
    }
}

static int register_window(struct parser *p, int64_t ms, const struct token *at,
                           size_t *wi)
{
    struct ruleset *rs = p->rs;

    for (size_t i = 0; i < rs->n_windows; i++) {
        if (rs->windows[i] == ms) {
            *wi = i;
            return 0;
        }
    }
    if (rs->n_windows == WIN_MAX_WINDOWS) {
        perr(p, at->line, at->col,
             "too many different windows (at most %d per rule file)",
             WIN_MAX_WINDOWS);
        return -1;
    }
    rs->windows[rs->n_windows] = ms;
    if (at->len < sizeof(rs->wspell[0])) {
        memcpy(rs->wspell[rs->n_windows], at->s, at->len);
    }
    *wi = rs->n_windows++;
    return 0;
}

static int parse_operand(struct parser *p, struct pop *o)
{
    const struct token *t = cur_tok(p);
    char show[64];
    int k;

    memset(o, 0, sizeof(*o));
    o->tok = t;
    switch (t->type) {
    case TK_INT:
        o->kind = PK_INT;
        o->type = VT_INT;
        o->i = t->i;
        p->pos++;
        return 0;
    case TK_STR:
        o->kind = PK_STR;
        o->type = VT_STR;
        p->pos++;
        return 0;
    case TK_WORDNUM:
        tok_show(t, show, sizeof(show));
        perr(p, t->line, t->col, "bad number %s", show);
        return -1;
    case TK_IDENT:
        break;
    default:
        tok_show(t, show, sizeof(show));
        perr(p, t->line, t->col, "expected a fact or a value, got %s", show);
        return -1;
    }
    if (tok_is_word(t, "true") || tok_is_word(t, "false")) {
        o->kind = PK_BOOL;
        o->type = VT_BOOL;
        o->i = tok_is_word(t, "true");
        p->pos++;
        return 0;
    }
    if (is_keyword(t)) {
        tok_show(t, show, sizeof(show));
        perr(p, t->line, t->col, "expected a fact or a value, got %s", show);
        return -1;
    }
    if ((k = find_wfunc(t->s, t->len)) >= 0) {
        const struct token *lp, *d;
        int64_t ms;
        size_t wi;
        p->pos++;
        lp = cur_tok(p);
        d = lp->type == TK_LP ? &p->toks[p->pos + 1] : lp;
        if (lp->type != TK_LP || d->type == TK_RP || d->type == TK_END) {
            perr(p, t->line, t->col, "%s needs a window, e.g. %s(10m)",
                 rules_wfuncs[k].name, rules_wfuncs[k].name);
            return -1;
        }
        if ((d->type != TK_WORDNUM && d->type != TK_INT &&
             d->type != TK_IDENT) ||
            win_duration_parse(d->s, d->len, &ms) != 0) {
            tok_show(d, show, sizeof(show));
            perr(p, d->line, d->col,
                 "bad duration %s (e.g. 500ms, 30s, 10m, 1h, 7d; at most "
                 "366d)",
                 show);
            return -1;
        }
        p->pos += 2;
        if (cur_tok(p)->type != TK_RP) {
            const struct token *e = cur_tok(p);
            if (e->type == TK_END) {
                perr(p, lp->line, lp->col,
                     "unbalanced parentheses: '(' is not closed");
            } else {
                tok_show(e, show, sizeof(show));
                perr(p, e->line, e->col,
                     "expected ')' after the window, got %s", show);
            }
            return -1;
        }
        p->pos++;
        if (register_window(p, ms, d, &wi) != 0) {
            return -1;
        }
        o->kind = PK_FACT;
        o->type = VT_INT;
        o->slot = (uint16_t)SLOT_WIN(wi, k);
        return 0;
    }
    if ((k = find_fact(t->s, t->len)) >= 0) {
        o->kind = PK_FACT;
        o->type = rules_facts[k].type;
        o->slot = (uint16_t)k;
        p->pos++;
        return 0;
    }
    for (size_t i = 0; i < NELEM(card_data); i++) {
        if (word_is(t->s, t->len, card_data[i])) {
            perr(p, t->line, t->col,
                 "unknown fact '%s' (card data is not available to rules)",
                 card_data[i]);
            return -1;
        }
    }
    o->kind = PK_WORD;
    p->pos++;
    return 0;
}

static int unknown_fact(struct parser *p, const struct pop *o)
{
    char show[64];

    tok_show(o->tok, show, sizeof(show));
    perr(p, o->tok->line, o->tok->col, "unknown fact %s", show);
    return -1;
}

/* Resolves a bare word or a string against an enum type. */
static int resolve_enum(struct parser *p, struct pop *o, uint8_t type)
{
    char show[64], list[128];
    int v;

    if (o->kind != PK_WORD && o->kind != PK_STR) {
        return 0;
    }
    v = enum_lookup(type, o->tok->s, o->tok->len);
    if (v < 0) {
        tok_show(o->tok, show, sizeof(show));
        enum_list(type, list, sizeof(list));
        perr(p, o->tok->line, o->tok->col, "unknown %s %s (expected %s)",
             type == VT_CHANNEL ? "channel"
             : type == VT_ENTRY ? "entry mode"
                                : "response",
             show, list);
        return -1;
    }
    o->kind = PK_ENUM;
    o->type = type;
    o->i = v;
    return 0;
}

static int to_operand(struct parser *p, const struct pop *o,
                      struct operand *out)
{
    memset(out, 0, sizeof(*out));
    switch (o->kind) {
    case PK_FACT:
        out->kind = O_SLOT;
        out->slot = o->slot;
        return 0;
    case PK_STR:
        out->kind = O_STR;
        return pool_add(p, o->tok->s, o->tok->len, 1, &out->soff, o->tok->line,
                        o->tok->col);
    default:
        out->kind = O_INT;
        out->i = o->i;
        return 0;
    }
}

static int type_mismatch(struct parser *p, const struct token *at,
                         const struct pop *l, const struct pop *r)
{
    char a[96], b[96];

    pop_show(p, l, a, sizeof(a));
    pop_show(p, r, b, sizeof(b));
    perr(p, at->line, at->col,
         "type mismatch: cannot compare %s (%s) with %s (%s)", a,
         vtype_names[l->type], b, vtype_names[r->type]);
    return -1;
}

static int parse_comparison(struct parser *p, struct pop *l, uint32_t *out)
{
    const struct token *opt = cur_tok(p);
    struct node n = {.kind = N_CMP, .op = opt->op};
    struct pop r;
    char show[96];

    p->pos++;
    if (parse_operand(p, &r) != 0) {
        return -1;
    }
    /* bare words and strings next to an enum fact are enum names */
    if (l->kind == PK_FACT && is_enum(l->type)) {
        if (resolve_enum(p, &r, l->type) != 0) {
            return -1;
        }
    } else if (r.kind == PK_FACT && is_enum(r.type)) {
        if (resolve_enum(p, l, r.type) != 0) {
            return -1;
        }
    }
    if (l->kind == PK_WORD) {
        return unknown_fact(p, l);
    }
    if (r.kind == PK_WORD) {
        return unknown_fact(p, &r);
    }
    if (pop_is_lit(l) && pop_is_lit(&r)) {
        perr(p, l->tok->line, l->tok->col,
             "comparison of two constants (one side must be a fact)");
        return -1;
    }
    if (l->type != r.type) {
        return type_mismatch(p, opt, l, &r);
    }
    if (n.op >= OP_LT && l->type != VT_INT) {
        pop_show(p, pop_is_lit(l) ? &r : l, show, sizeof(show));
        perr(p, opt->line, opt->col, "'%s' needs integers, but %s is %s",
             rules_op_names[n.op], show, vtype_names[l->type]);
        return -1;
    }
    /* the fact goes left: "3 < count(1h)" is "count(1h) > 3" */
    if (pop_is_lit(l)) {
        static const uint8_t flip[] = {OP_EQ, OP_NE, OP_GT,
                                       OP_GE, OP_LT, OP_LE};
        struct pop t = *l;
        *l = r;
        r = t;
        n.op = flip[n.op];
    }
    n.type = l->type;
    if (to_operand(p, l, &n.l) != 0 || to_operand(p, &r, &n.r) != 0) {
        return -1;
    }
    return add_node(p, &n, out, opt);
}

static int parse_membership(struct parser *p, struct pop *l, int neg,
                            uint32_t *out)
{
    const struct token *lp;
    struct node n = {.kind = N_IN, .neg = (uint8_t)neg};
    char show[96];
    size_t base = p->n_lits;

    p->pos += neg ? 2 : 1;
    if (l->kind == PK_WORD) {
        return unknown_fact(p, l);
    }
    if (l->kind != PK_FACT) {
        perr(p, l->tok->line, l->tok->col,
             "the left side of '%s' must be a fact", neg ? "not in" : "in");
        return -1;
    }
    lp = cur_tok(p);
    if (lp->type != TK_LP) {
        tok_show(lp, show, sizeof(show));
        perr(p, lp->line, lp->col, "expected '(' after '%s', got %s",
             neg ? "not in" : "in", show);
        return -1;
    }
    p->pos++;
    if (cur_tok(p)->type == TK_RP) {
        perr(p, lp->line, lp->col, "empty 'in ()' list");
        return -1;
    }
    for (;;) {
        const struct token *e = cur_tok(p);
        struct pop v;
        if (e->type == TK_END) {
            perr(p, lp->line, lp->col,
                 "unbalanced parentheses: '(' is not closed");
            return -1;
        }
        if (e->type != TK_INT && e->type != TK_STR && e->type != TK_IDENT &&
            e->type != TK_WORDNUM) {
            tok_show(e, show, sizeof(show));
            perr(p, e->line, e->col, "expected a value, got %s", show);
            return -1;
        }
        if (e->type == TK_IDENT && !is_keyword(e) &&
            (find_fact(e->s, e->len) >= 0 || find_wfunc(e->s, e->len) >= 0)) {
            tok_show(e, show, sizeof(show));
            perr(p, e->line, e->col, "'in' lists take values, not facts (%s)",
                 show);
            return -1;
        }
        if (is_keyword(e)) {
            tok_show(e, show, sizeof(show));
            perr(p, e->line, e->col, "expected a value, got %s", show);
            return -1;
        }
        if (parse_operand(p, &v) != 0) {
            return -1;
        }
        if (is_enum(l->type) && resolve_enum(p, &v, l->type) != 0) {
            return -1;
        }
        if (v.kind == PK_WORD) {
            tok_show(e, show, sizeof(show));
            perr(p, e->line, e->col, "expected %s, got %s",
                 vtype_names[l->type], show);
            return -1;
        }
        if (v.type != l->type) {
            return type_mismatch(p, e, l, &v);
        }
        if (rules_grow((void **)&p->rs->lits, &p->cap_lits, p->n_lits + 1,
                       sizeof(*p->rs->lits)) != 0) {
            return oom(p, e->line, e->col);
        }
        if (to_operand(p, &v, &p->rs->lits[p->n_lits]) != 0) {
            return -1;
        }
        p->n_lits++;
        e = cur_tok(p);
        if (e->type == TK_COMMA) {
            p->pos++;
            continue;
        }
        if (e->type == TK_RP) {
            p->pos++;
            break;
        }
        if (e->type == TK_END) {
            perr(p, lp->line, lp->col,
                 "unbalanced parentheses: '(' is not closed");
            return -1;
        }
        tok_show(e, show, sizeof(show));
        perr(p, e->line, e->col, "expected ',' or ')', got %s", show);
        return -1;
    }
    n.type = l->type;
    n.a = (uint32_t)base;
    n.n = (uint32_t)(p->n_lits - base);
    if (to_operand(p, l, &n.l) != 0) {
        return -1;
    }
    return add_node(p, &n, out, lp);
}

static int parse_or(struct parser *p, uint32_t *out);

static int enter(struct parser *p, const struct token *t)
{
    if (++p->depth > DEPTH_MAX) {
        perr(p, t->line, t->col,
             "condition nested too deeply (more than %d levels)", DEPTH_MAX);
        return -1;
    }
    return 0;
}

static int parse_primary(struct parser *p, uint32_t *out)
{
    const struct token *t = cur_tok(p);
    struct pop l;
    char show[96];

    if (t->type == TK_LP) {
        p->pos++;
        if (enter(p, t) != 0 || parse_or(p, out) != 0) {
            return -1;
        }
        p->depth--;
        if (cur_tok(p)->type != TK_RP) {
            const struct token *e = cur_tok(p);
            if (e->type == TK_END) {
                perr(p, t->line, t->col,
                     "unbalanced parentheses: '(' is not closed");
            } else {
                tok_show(e, show, sizeof(show));
                perr(p, e->line, e->col, "expected ')', got %s", show);
            }
            return -1;
        }
        p->pos++;
        return 0;
    }
    if (t->type == TK_END) {
        perr(p, t->line, t->col, "unexpected end of condition");
        return -1;
    }
    if (t->type == TK_RP || t->type == TK_COMMA || t->type == TK_OP ||
        is_keyword(t)) {
        tok_show(t, show, sizeof(show));
        perr(p, t->line, t->col, "expected a condition, got %s", show);
        return -1;
    }
    if (parse_operand(p, &l) != 0) {
        return -1;
    }
    t = cur_tok(p);
    if (t->type == TK_OP) {
        return parse_comparison(p, &l, out);
    }
    if (tok_is_word(t, "in")) {
        return parse_membership(p, &l, 0, out);
    }
    if (tok_is_word(t, "not")) {
        if (!tok_is_word(&p->toks[p->pos + 1], "in")) {
            const struct token *e = &p->toks[p->pos + 1];
            tok_show(e, show, sizeof(show));
            perr(p, e->line, e->col, "expected 'in' after 'not', got %s", show);
            return -1;
        }
        return parse_membership(p, &l, 1, out);
    }
    if (l.kind == PK_WORD) {
        return unknown_fact(p, &l);
    }
    if (l.type != VT_BOOL) {
        pop_show(p, &l, show, sizeof(show));
        if (pop_is_lit(&l)) {
            perr(p, l.tok->line, l.tok->col, "expected a condition, got %s",
                 show);
        } else {
            perr(p, l.tok->line, l.tok->col,
                 "%s is %s, not a condition (compare it)", show,
                 vtype_names[l.type]);
        }
        return -1;
    }
    {
        struct node n = {.kind = l.kind == PK_FACT ? N_FACT : N_CONST};
        if (to_operand(p, &l, &n.l) != 0) {
            return -1;
        }
        return add_node(p, &n, out, l.tok);
    }
}

static int parse_not(struct parser *p, uint32_t *out)
{
    const struct token *t = cur_tok(p);

    if (tok_is_word(t, "not")) {
        struct node n = {.kind = N_NOT};
        p->pos++;
        if (enter(p, t) != 0 || parse_not(p, &n.a) != 0) {
            return -1;
        }
        p->depth--;
        return add_node(p, &n, out, t);
    }
    return parse_primary(p, out);
}

/* One level of and/or: first { word next }, as an n-ary node. */
static int parse_list(struct parser *p, const char *word, uint8_t kind,
                      int (*next)(struct parser *, uint32_t *), uint32_t *out)
{
    const struct token *at = cur_tok(p);
    size_t base = p->n_scratch;
    uint32_t k;

    if (next(p, &k) != 0) {
        return -1;
    }
    if (!tok_is_word(cur_tok(p), word)) {
        *out = k;
        return 0;
    }
    if (push_scratch(p, k, at) != 0) {
        return -1;
    }
    while (tok_is_word(cur_tok(p), word)) {
        p->pos++;
        if (next(p, &k) != 0 || push_scratch(p, k, at) != 0) {
            return -1;
        }
    }
    return make_list(p, kind, base, out, at);
}

static int parse_and(struct parser *p, uint32_t *out)
{
    return parse_list(p, "and", N_AND, parse_not, out);
}

static int parse_or(struct parser *p, uint32_t *out)
{
    return parse_list(p, "or", N_OR, parse_and, out);
}

/* ---- lines and rules ---- */

static int valid_rule_id(const char *s, size_t n)
{
    if (n < 1 || n > RULE_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || text_is_digit(c) ||
                 (i > 0 && (c == '_' || c == '-'));
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* Ends the rule being read: checks it, compiles its condition. */
static int finish_rule(struct parser *p)
{
    struct rule *r = &p->cur;
    struct token end;
    char show[96];

    if (!p->in_rule) {
        return 0;
    }
    p->in_rule = 0;
    if (!p->have[K_SEVERITY]) {
        perr(p, r->line, 1, "rule '%s' has no severity", r->hit.rule_id);
        return -1;
    }
    if (!p->have[K_DESCRIPTION]) {
        perr(p, r->line, 1, "rule '%s' has no description", r->hit.rule_id);
        return -1;
    }
    if (!p->have[K_WHEN]) {
        perr(p, r->line, 1, "rule '%s' has no 'when:' condition",
             r->hit.rule_id);
        return -1;
    }
    if (p->n_toks == 0) {
        perr(p, p->when_line, p->when_col, "empty condition");
        return -1;
    }
    end = (struct token){
        .type = TK_END, .line = p->end_line, .col = p->end_col, .s = ""};
    if (push_tok(p, &end) != 0) {
        return -1;
    }
    p->pos = 0;
    p->depth = 0;
    p->n_scratch = 0;
    if (parse_or(p, &r->root) != 0) {
        return -1;
    }
    if (cur_tok(p)->type != TK_END) {
        const struct token *t = cur_tok(p);
        tok_show(t, show, sizeof(show));
        if (t->type == TK_RP) {
            perr(p, t->line, t->col, "unbalanced parentheses: ')' without '('");
        } else {
            perr(p, t->line, t->col,
                 "unexpected %s after a complete condition (missing 'and' "
                 "or 'or'?)",
                 show);
        }
        return -1;
    }
    p->n_toks = 0;
    if (rules_grow((void **)&p->rs->rules, &p->cap_rules, p->rs->n_rules + 1,
                   sizeof(*p->rs->rules)) != 0) {
        return oom(p, r->line, 1);
    }
    p->rs->rules[p->rs->n_rules++] = *r;
    return 0;
}

/* "rule ID" at column 1. */
static int start_rule(struct parser *p, int line, const char *s, size_t len)
{
    size_t i = 4, j;

    if (finish_rule(p) != 0) {
        return -1;
    }
    if (p->rs->n_rules >= RULES_MAX_RULES) {
        perr(p, line, 1, "too many rules (at most %d)", RULES_MAX_RULES);
        return -1;
    }
    while (i < len && (s[i] == ' ' || s[i] == '\t')) {
        i++;
    }
    if (i == len || s[i] == '#') {
        perr(p, line, (int)i + 1, "missing rule id after 'rule'");
        return -1;
    }
    j = i;
    while (j < len && s[j] != ' ' && s[j] != '\t') {
        j++;
    }
    if (!valid_rule_id(s + i, j - i)) {
        char show[64];
        show_text(s + i, j - i, show, sizeof(show));
        perr(p, line, (int)i + 1,
             "bad rule id %s (lower-case letters, digits, '_' and '-', at "
             "most %d, starting with a letter or digit)",
             show, RULE_ID_MAX);
        return -1;
    }
    for (size_t k = 0; k < p->rs->n_rules; k++) {
        if (word_is(s + i, j - i, p->rs->rules[k].hit.rule_id)) {
            perr(p, line, (int)i + 1,
                 "duplicate rule id '%s' (first defined at line %d)",
                 p->rs->rules[k].hit.rule_id, p->rs->rules[k].line);
            return -1;
        }
    }
    memset(&p->cur, 0, sizeof(p->cur));
    memcpy(p->cur.hit.rule_id, s + i, j - i);
    p->cur.line = line;
    while (j < len && (s[j] == ' ' || s[j] == '\t')) {
        j++;
    }
    if (j < len && s[j] != '#') {
        perr(p, line, (int)j + 1, "unexpected text after the rule id");
        return -1;
    }
    p->in_rule = 1;
    memset(p->have, 0, sizeof(p->have));
    p->last_key = K_NONE;
    p->n_toks = 0;
    return 0;
}

/* The single word of a severity/suppress value, then only a comment. */
static int one_word(struct parser *p, int line, const char *s, size_t len,
                    size_t i, const char *what, size_t *end)
{
    size_t j = i;

    while (j < len && s[j] != ' ' && s[j] != '\t') {
        j++;
    }
    *end = j;
    if (j == i) {
        perr(p, line, (int)i + 1, "missing %s", what);
        return -1;
    }
    while (j < len && (s[j] == ' ' || s[j] == '\t')) {
        j++;
    }
    if (j < len && s[j] != '#') {
        perr(p, line, (int)j + 1, "unexpected text after the %s", what);
        return -1;
    }
    return 0;
}

static int key_value(struct parser *p, int line, const char *s, size_t len,
                     int key, size_t v)
{
    size_t end;
    char word[32];
    char show[64];

    switch (key) {
    case K_SEVERITY:
        if (one_word(p, line, s, len, v, "severity", &end) != 0) {
            return -1;
        }
        snprintf(word, sizeof(word), "%.*s",
                 (int)(end - v < sizeof(word) - 1 ? end - v : sizeof(word) - 1),
                 s + v);
        p->cur.hit.severity =
            end - v < sizeof(word) - 1 ? severity_parse(word) : SEVERITY_NONE;
        if (p->cur.hit.severity == SEVERITY_NONE) {
            show_text(s + v, end - v, show, sizeof(show));
            perr(p, line, (int)v + 1,
                 "unknown severity %s (expected low, medium, high or "
                 "critical)",
                 show);
            return -1;
        }
        return 0;
    case K_SUPPRESS:
        if (one_word(p, line, s, len, v, "duration", &end) != 0) {
            return -1;
        }
        if (win_duration_parse(s + v, end - v, &p->cur.suppress_ms) != 0) {
            show_text(s + v, end - v, show, sizeof(show));
            perr(p, line, (int)v + 1,
                 "bad duration %s (e.g. 500ms, 30s, 10m, 1h, 7d; at most "
                 "366d)",
                 show);
            return -1;
        }
        return 0;
    case K_DESCRIPTION:
        end = len;
        while (end > v && (s[end - 1] == ' ' || s[end - 1] == '\t')) {
            end--;
        }
        if (end == v) {
            perr(p, line, (int)v + 1, "empty description");
            return -1;
        }
        if (end - v > DESC_MAX) {
            perr(p, line, (int)v + 1, "description longer than %d bytes",
                 DESC_MAX);
            return -1;
        }
        return pool_add(p, s + v, end - v, 0, &p->cur.desc, line, (int)v + 1);
    default: /* K_WHEN */
        return lex_line(p, line, s, len, v);
    }
}

/* Checks a line's bytes: no control characters but tab, valid UTF-8. */
static int check_bytes(struct parser *p, int line, const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\t' || (c >= 0x20 && c < 0x7f)) {
            i++;
            continue;
        }
        if (c < 0x20 || c == 0x7f) {
            perr(p, line, (int)i + 1, "control character (byte 0x%02x)", c);
            return -1;
        }
        size_t n = text_utf8_seq((const unsigned char *)s + i, len - i);
        if (n == 0) {
            perr(p, line, (int)i + 1, "invalid UTF-8");
            return -1;
        }
        i += n;
    }
    return 0;
}

static int parse_line(struct parser *p, int line, const char *s, size_t len)
{
    size_t i = 0, w, k;
    char show[64];

    if (check_bytes(p, line, s, len) != 0) {
        return -1;
    }
    while (i < len && (s[i] == ' ' || s[i] == '\t')) {
        i++;
    }
    if (i == len || s[i] == '#') {
        return 0;
    }
    /* a "key:" line: word, optional blanks, ':' */
    w = i;
    if (is_ident_start(s[i])) {
        while (w < len && (is_ident_char(s[w]) || s[w] == '-')) {
            w++;
        }
    }
    k = w;
    while (k < len && (s[k] == ' ' || s[k] == '\t')) {
        k++;
    }
    int is_key = w > i && k < len && s[k] == ':';

    if (i == 0) {
        if (w == 4 && memcmp(s, "rule", 4) == 0 &&
            (w == len || s[w] == ' ' || s[w] == '\t' || s[w] == '#')) {
            return start_rule(p, line, s, len);
        }
        if (is_key) {
            show_text(s, w, show, sizeof(show));
            perr(p, line, 1, "key %s must be indented under a 'rule' line",
                 show);
        } else {
            perr(p, line, 1, "expected 'rule <id>' at the start of the line");
        }
        return -1;
    }
    if (!is_key) {
        if (!p->in_rule) {
            perr(p, line, (int)i + 1,
                 "expected 'rule <id>' at the start of the line");
            return -1;
        }
        if (p->last_key != K_WHEN) {
            perr(p, line, (int)i + 1,
                 "expected 'key: value' (only a 'when:' condition continues "
                 "on further lines)");
            return -1;
        }
        return lex_line(p, line, s, len, i);
    }
    if (!p->in_rule) {
        show_text(s + i, w - i, show, sizeof(show));
        perr(p, line, (int)i + 1,
             "key %s outside a rule (start with 'rule <id>')", show);
        return -1;
    }
    int key = K_NONE;
    for (int q = K_SEVERITY; q <= K_SUPPRESS; q++) {
        if (word_is(s + i, w - i, key_names[q])) {
            key = q;
        }
    }
    if (key == K_NONE) {
        show_text(s + i, w - i, show, sizeof(show));
        perr(p, line, (int)i + 1,
             "unknown key %s (expected severity, description, when or "
             "suppress)",
             show);
        return -1;
    }
    if (p->have[key]) {
        perr(p, line, (int)i + 1, "duplicate key '%s' in rule '%s'",
             key_names[key], p->cur.hit.rule_id);
        return -1;
    }
    p->have[key] = 1;
    p->last_key = key;
    if (key == K_WHEN) {
        p->when_line = line;
        p->when_col = (int)i + 1;
        p->end_line = line;
        p->end_col = (int)len + 1;
    }
    k++;
    while (k < len && (s[k] == ' ' || s[k] == '\t')) {
        k++;
    }
    return key_value(p, line, s, len, key, k);
}

/* ---- parse entry points ---- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* Sorts the windows ascending and renumbers the window slots. */
static void sort_windows(struct ruleset *rs)
{
    int64_t old[WIN_MAX_WINDOWS];
    char spell[WIN_MAX_WINDOWS][sizeof(rs->wspell[0])];
    size_t map[WIN_MAX_WINDOWS];

    memcpy(old, rs->windows, sizeof(old));
    memcpy(spell, rs->wspell, sizeof(spell));
    qsort(rs->windows, rs->n_windows, sizeof(rs->windows[0]), cmp_i64);
    for (size_t i = 0; i < rs->n_windows; i++) {
        for (size_t j = 0; j < rs->n_windows; j++) {
            if (rs->windows[j] == old[i]) {
                map[i] = j;
                memcpy(rs->wspell[j], spell[i], sizeof(spell[i]));
            }
        }
    }
    for (size_t i = 0; i < rs->n_nodes; i++) {
        struct operand *o[2] = {&rs->nodes[i].l, &rs->nodes[i].r};
        for (int k = 0; k < 2; k++) {
            if (o[k]->kind == O_SLOT && o[k]->slot >= F_COUNT &&
                (rs->nodes[i].kind == N_CMP || rs->nodes[i].kind == N_IN ||
                 rs->nodes[i].kind == N_FACT)) {
                size_t s = o[k]->slot - F_COUNT;
                o[k]->slot = (uint16_t)SLOT_WIN(map[s / WF_N], s % WF_N);
            }
        }
    }
}

static void set_version(struct ruleset *rs, const char *name, const char *text,
                        size_t len)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const char *base = strrchr(name, '/');
    char h[13];

    base = base != NULL ? base + 1 : name;
    if (!EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL) || mdlen < 6) {
        snprintf(rs->version, sizeof(rs->version), "%.51s@?", base);
        return;
    }
    for (int i = 0; i < 6; i++) {
        h[2 * i] = hex[md[i] >> 4];
        h[2 * i + 1] = hex[md[i] & 15];
    }
    h[12] = '\0';
    /* 51 + '@' + 12 = RULESET_VERSION_MAX */
    snprintf(rs->version, sizeof(rs->version), "%.51s@%s", base, h);
}

struct ruleset *rules_parse(const char *text, size_t len, const char *filename,
                            char *errbuf, size_t errlen)
{
    struct parser p;
    struct ruleset *rs = NULL;
    size_t off = 0;
    int line = 0;

    memset(&p, 0, sizeof(p));
    p.name = filename != NULL ? filename : "<rules>";
    p.errbuf = errbuf;
    p.errlen = errlen;
    if (errbuf != NULL && errlen > 0) {
        errbuf[0] = '\0';
    }
    if (text == NULL && len > 0) {
        perr(&p, 1, 1, "no text");
        goto err;
    }
    rs = calloc(1, sizeof(*rs));
    if (rs == NULL || (rs->name = strdup(p.name)) == NULL) {
        perr(&p, 1, 1, "out of memory");
        goto err;
    }
    p.rs = rs;
    while (off < len) {
        const char *s = text + off;
        const char *nl = memchr(s, '\n', len - off);
        size_t n = nl != NULL ? (size_t)(nl - s) : len - off;
        off += n + (nl != NULL);
        if (n > 0 && s[n - 1] == '\r') {
            n--;
        }
        if (++line == INT32_MAX || n > INT32_MAX / 2) {
            perr(&p, line, 1, "input too large");
            goto err;
        }
        if (parse_line(&p, line, s, n) != 0) {
            goto err;
        }
    }
    if (finish_rule(&p) != 0) {
        goto err;
    }
    if (rs->n_rules == 0) {
        perr(&p, 1, 1, "no rules in the file");
        goto err;
    }
    sort_windows(rs);
    set_version(rs, p.name, text != NULL ? text : "", len);
    if (rules_compile(rs) != 0 || rules_lint(rs) != 0) {
        perr(&p, 1, 1, "out of memory");
        goto err;
    }
    free(p.toks);
    free(p.scratch);
    return rs;
err:
    free(p.toks);
    free(p.scratch);
    rules_destroy(rs);
    return NULL;
}

struct ruleset *rules_load(const char *path, char *errbuf, size_t errlen)
{
    struct ruleset *rs = NULL;
    char *buf = NULL;
    size_t len = 0;
    struct stat sb;
    int fd = -1;

    if (path == NULL) {
        text_errf(errbuf, errlen, "(null): no path");
        return NULL;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        text_errf(errbuf, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        text_errf(errbuf, errlen, "%s: not a regular file", path);
        goto out;
    }
    buf = malloc(RULES_FILE_MAX + 1);
    if (buf == NULL) {
        text_errf(errbuf, errlen, "%s: out of memory", path);
        goto out;
    }
    while (len <= RULES_FILE_MAX) {
        ssize_t n = read(fd, buf + len, RULES_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            text_errf(errbuf, errlen, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    if (len > RULES_FILE_MAX) {
        text_errf(errbuf, errlen, "%s: larger than 1 MiB", path);
        goto out;
    }
    rs = rules_parse(buf, len, path, errbuf, errlen);
out:
    if (fd >= 0) {
        close(fd);
    }
    free(buf);
    return rs;
}

static const char builtin_text[] =
    "# Any use of a card that a breach listed, once the breach window has\n"
    "# started: the card is in criminal hands.\n"
    "rule exposed-card-use\n"
    "  severity: high\n"
    "  description: Transaction on a card exposed in a data breach\n"
    "  when: exposed\n";

struct ruleset *rules_builtin(void)
{
    char err[256];
    struct ruleset *rs = rules_parse(builtin_text, sizeof(builtin_text) - 1,
                                     BUILTIN_NAME, err, sizeof(err));

    if (rs != NULL) {
        snprintf(rs->version, sizeof(rs->version), "%s", BUILTIN_VERSION);
    }
    return rs;
}
