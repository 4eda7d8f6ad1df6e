/* rules.c - the rule language: parse, check, evaluate (pure).
 *
 * Parsing goes line by line: "rule ID" at column 1 opens a rule, indented
 * "key: value" lines fill it, and indented lines that are not "key:" lines
 * continue a "when:" condition. The condition's tokens (with their line and
 * column) are collected until the rule ends, then a recursive-descent
 * parser compiles them into a tree of nodes. Every name is resolved at
 * parse time: a fact becomes a slot number, an enum name its value, a
 * window its index, so evaluation only loads integers from one array of
 * fact values and compares (strings with strcmp).
 *
 * Evaluation (rules_eval) fills that array once per transaction (a pass
 * over the breach matches plus the window aggregates), then walks each
 * rule's tree with short-circuit and/or. Nothing is allocated; the
 * recursion depth is bounded by the nesting limit of the parser (and/or
 * chains are n-ary nodes, not deep trees).
 *
 * Warnings are computed once at parse time (see rules_warnings and
 * docs/rules.md): rules that can never fire (a comparison that is false on
 * every value a valid transaction can have, or conditions on the same fact
 * in one conjunction that contradict each other), and rules that do not
 * require `exposed`.
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

#include "text.h"

#define BUILTIN_VERSION "builtin-1"
#define BUILTIN_NAME "builtin"
#define RULES_FILE_MAX (1024 * 1024)
#define DESC_MAX 255
#define DEPTH_MAX 64 /* nested parentheses and 'not' */
#define DAY_MS 86400000LL
#define SHOW_MAX 40 /* bytes of user text quoted in a message */
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- facts ---- */

enum vtype {
    VT_BOOL,
    VT_INT,
    VT_STR,
    VT_CHANNEL,
    VT_ENTRY,
    VT_RESPONSE,
};

static const char *const vtype_names[] = {
    [VT_BOOL] = "a boolean",      [VT_INT] = "an integer",
    [VT_STR] = "a string",        [VT_CHANNEL] = "a channel",
    [VT_ENTRY] = "an entry mode", [VT_RESPONSE] = "a response",
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

static const struct fact_def facts[F_COUNT] = {
    [F_TXN_ID] = {"txn_id", VT_STR, 0, 0, 0, 0},
    [F_AMOUNT] = {"amount_minor", VT_INT, 0, 0, 0, INT64_MAX},
    [F_CURRENCY] = {"currency", VT_STR, 0, 3, 0, 0},
    [F_MCC] = {"mcc", VT_INT, 0, 0, 0, 9999},
    [F_MERCHANT_ID] = {"merchant_id", VT_STR, 0, 0, 0, 0},
    [F_MERCHANT_COUNTRY] = {"merchant_country", VT_STR, 0, 2, 0, 0},
    [F_CHANNEL] = {"channel", VT_CHANNEL, 0, 0, 1, 5},
    [F_ENTRY_MODE] = {"entry_mode", VT_ENTRY, 0, 0, 1, 5},
    [F_CVV2_PRESENTED] = {"cvv2_presented", VT_BOOL, 0, 0, 0, 1},
    [F_RESPONSE] = {"response", VT_RESPONSE, 0, 0, 1, 2},
    [F_EVENT_TIME] = {"event_time_ms", VT_INT, 0, 0, 1, INT64_MAX},
    [F_EXPOSED] = {"exposed", VT_BOOL, 1, 0, 0, 1},
    [F_CNP] = {"cnp", VT_BOOL, 0, 0, 0, 1},
    [F_EXPIRY_EXPOSED] = {"expiry_exposed", VT_BOOL, 1, 0, 0, 1},
    [F_CVV2_EXPOSED] = {"cvv2_exposed", VT_BOOL, 1, 0, 0, 1},
    [F_NAME_EXPOSED] = {"name_exposed", VT_BOOL, 1, 0, 0, 1},
    [F_ADDRESS_EXPOSED] = {"address_exposed", VT_BOOL, 1, 0, 0, 1},
    [F_EXPIRY_MATCHES] = {"expiry_matches", VT_BOOL, 1, 0, 0, 1},
    /* an active window started at or before the event: never negative */
    [F_DAYS_START] = {"days_since_exposure_start", VT_INT, 0, 0, 0, INT64_MAX},
    [F_DAYS_END] = {"days_since_exposure_end", VT_INT, 0, 0, INT64_MIN,
                    INT64_MAX},
    [F_ISSUER_ID] = {"issuer_id", VT_STR, 0, 0, 0, 0},
    [F_ISSUER_COUNTRY] = {"issuer_country", VT_STR, 0, 0, 0, 0},
};

/* Window functions; lo is the smallest value (the window always holds the
 * current transaction, so count >= 1). */
static const struct {
    const char *name;
    int64_t lo;
} wfuncs[WF_N] = {
    [WF_COUNT] = {"count", 1},
    [WF_DECLINED] = {"count_declined", 0},
    [WF_SUM] = {"sum_amount", 0},
    [WF_MERCHANTS] = {"distinct_merchants", 0},
    [WF_COUNTRIES] = {"distinct_countries", 0},
};

/* Names that look like facts but are card data rules never see. */
static const char *const card_data[] = {"pan",  "expiry", "cvv",
                                        "cvv2", "name",   "address"};

static const char *const keywords[] = {"and", "or", "not", "in"};

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

static const char *const op_names[] = {"==", "!=", "<", "<=", ">", ">="};

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

static const uint8_t op_masks[] = {
    [OP_EQ] = 2, [OP_NE] = 5, [OP_LT] = 1,
    [OP_LE] = 3, [OP_GT] = 4, [OP_GE] = 6,
};

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

struct ectx;

/* ---- small helpers ---- */

/* Grows *p (elements of size el) so that it holds at least need. */
static int grow(void **p, size_t *cap, size_t need, size_t el)
{
    size_t n = *cap != 0 ? *cap : 16;
    void *q;

    if (need <= *cap) {
        return 0;
    }
    while (n < need) {
        if (n > SIZE_MAX / 2 / el) {
            return -1;
        }
        n *= 2;
    }
    q = realloc(*p, n * el);
    if (q == NULL) {
        return -1;
    }
    *p = q;
    *cap = n;
    return 0;
}

/* A bounded text builder: always NUL-terminated, cut to fit. */
struct sb {
    char *buf;
    size_t cap; /* including the NUL; 0 = write nothing */
    size_t len;
};

static void sb_init(struct sb *b, char *buf, size_t cap)
{
    b->buf = cap > 0 ? buf : NULL;
    b->cap = b->buf != NULL ? cap : 0;
    b->len = 0;
    if (b->cap > 0) {
        b->buf[0] = '\0';
    }
}

static void sb_putn(struct sb *b, const char *s, size_t n)
{
    if (b->cap == 0) {
        return;
    }
    if (n > b->cap - 1 - b->len) {
        n = b->cap - 1 - b->len;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_puts(struct sb *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

/* Cuts the text back to its first len bytes. */
static void sb_truncate(struct sb *b, size_t len)
{
    if (b->cap > 0 && len < b->len) {
        b->len = len;
        b->buf[len] = '\0';
    }
}

static void sb_printf(struct sb *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sb *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0) {
        sb_putn(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
    }
}

/* Appends s[0..n) as a double-quoted rule string literal. */
static void sb_quoted(struct sb *b, const char *s, size_t n)
{
    sb_putn(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            sb_putn(b, "\\", 1);
        }
        sb_putn(b, &s[i], 1);
    }
    sb_putn(b, "\"", 1);
}

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

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
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

static const char *enum_name(uint8_t type, int64_t v)
{
    if (v < 0 || v > 255) {
        return "?";
    }
    switch (type) {
    case VT_CHANNEL:
        return txn_channel_name((enum txn_channel)v);
    case VT_ENTRY:
        return txn_entry_mode_name((enum txn_entry_mode)v);
    case VT_RESPONSE:
        return txn_response_name((enum txn_response)v);
    default:
        return "?";
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
        if (word_is(s, n, enum_name(type, v))) {
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

    sb_init(&b, buf, buflen);
    enum_lo_hi(type, &hi);
    for (int v = 1; v <= hi; v++) {
        sb_puts(&b, v == 1 ? "" : v == hi ? " or " : ", ");
        sb_puts(&b, enum_name(type, v));
    }
}

static uint8_t slot_type(size_t slot)
{
    return slot < F_COUNT ? facts[slot].type : VT_INT;
}

/* Writes the name of a fact slot ("amount_minor", "count(10m)"). */
static void slot_name(const struct ruleset *rs, size_t slot, struct sb *b)
{
    char d[32];

    if (slot < F_COUNT) {
        sb_puts(b, facts[slot].name);
        return;
    }
    slot -= F_COUNT;
    if (rs->wspell[slot / WF_N][0] != '\0') {
        sb_printf(b, "%s(%s)", wfuncs[slot % WF_N].name,
                  rs->wspell[slot / WF_N]);
        return;
    }
    win_duration_format(rs->windows[slot / WF_N], d, sizeof(d));
    sb_printf(b, "%s(%s)", wfuncs[slot % WF_N].name, d);
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
    if (grow((void **)&p->toks, &p->cap_toks, p->n_toks + 1,
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
        } else if (is_digit(c) || (c == '-' && j < len && is_digit(s[j]))) {
            int neg = c == '-';
            uint64_t v = 0;
            uint64_t limit = (uint64_t)INT64_MAX + (uint64_t)neg;
            int over = 0;
            while (j < len && is_digit(s[j])) {
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
        grow((void **)&rs->nodes, &p->cap_nodes, rs->n_nodes + 1,
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
        grow((void **)&rs->pool, &p->cap_pool, p->pool_len + n + 1, 1) != 0) {
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
    if (grow((void **)&p->scratch, &p->cap_scratch, p->n_scratch + 1,
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

    if (grow((void **)&p->rs->kids, &p->cap_kids, p->n_kids + cnt,
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
        if (word_is(s, n, facts[i].name)) {
            return i;
        }
    }
    return -1;
}

static int find_wfunc(const char *s, size_t n)
{
    for (int i = 0; i < WF_N; i++) {
        if (word_is(s, n, wfuncs[i].name)) {
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
        sb_init(&b, buf, buflen);
        slot_name(p->rs, o->slot, &b);
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
                 wfuncs[k].name, wfuncs[k].name);
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
        o->type = facts[k].type;
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
             op_names[n.op], show, vtype_names[l->type]);
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
        if (grow((void **)&p->rs->lits, &p->cap_lits, p->n_lits + 1,
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
        int ok = (c >= 'a' && c <= 'z') || is_digit(c) ||
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
    if (grow((void **)&p->rs->rules, &p->cap_rules, p->rs->n_rules + 1,
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

/* ---- warnings (parse time) ---- */

static int add_warning(struct ruleset *rs, const struct rule *r,
                       const char *msg)
{
    char buf[768];
    char *copy;

    snprintf(buf, sizeof(buf), "%s:%d: rule '%s' %s", rs->name, r->line,
             r->hit.rule_id, msg);
    if (grow((void **)&rs->warnings, &rs->cap_warnings, rs->n_warnings + 1,
             sizeof(*rs->warnings)) != 0) {
        return -1;
    }
    copy = strdup(buf);
    if (copy == NULL) {
        return -1;
    }
    rs->warnings[rs->n_warnings++] = copy;
    return 0;
}

static void print_node(const struct ruleset *rs, uint32_t ni, int prec,
                       const struct ectx *c, struct sb *b);

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
    if (grow((void **)&a->v, &a->cap, a->n + 1, sizeof(*a->v)) != 0) {
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
        st->lo = wfuncs[(slot - F_COUNT) % WF_N].lo;
        st->hi = INT64_MAX;
    } else if (type == VT_INT) {
        st->lo = facts[slot].lo;
        st->hi = facts[slot].hi;
    } else if (type != VT_STR) {
        for (int64_t v = facts[slot].lo; v <= facts[slot].hi; v++) {
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
    if (n->kind == N_CMP) {
        static const uint8_t negate[] = {OP_NE, OP_EQ, OP_GE,
                                         OP_GT, OP_LE, OP_LT};
        uint8_t op = neg ? negate[n->op] : n->op;
        int64_t c = n->r.i;
        if (n->type == VT_STR) {
            const char *lit = rs->pool + n->r.soff;
            int code = facts[n->l.slot].code;
            if (pass == 1 && op == OP_EQ) {
                if (!code_ok(lit, code)) {
                    return 1;
                }
                if (st->eq >= 0 &&
                    strcmp(rs->pool + rs->nodes[as->v[st->eq].node].r.soff,
                           lit) != 0) {
                    return 1;
                }
                st->eq = (int)ai;
            } else if (pass == 2 && op == OP_NE && st->eq >= 0) {
                return strcmp(rs->pool + rs->nodes[as->v[st->eq].node].r.soff,
                              lit) == 0;
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
    /* N_IN */
    {
        const struct operand *l = rs->lits + n->a;
        if (n->type == VT_STR) {
            int code = facts[n->l.slot].code;
            int any = 0, has_eq = 0;
            const char *eq =
                st->eq >= 0 ? rs->pool + rs->nodes[as->v[st->eq].node].r.soff
                            : NULL;
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
}

static void atom_text(const struct ruleset *rs, const struct atom *a,
                      struct sb *b)
{
    if (a->neg) {
        sb_puts(b, "not ");
    }
    print_node(rs, a->node, a->neg ? 3 : 0, NULL, b);
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
                sb_puts(why, "it requires ");
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
            sb_puts(why, " is always false");
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
                    sb_puts(why, " and ");
                    atom_text(rs, &as->v[s->second], why);
                    sb_puts(why, " cannot both hold");
                } else {
                    sb_puts(why, "the conditions on ");
                    slot_name(rs, (size_t)slot, why);
                    sb_puts(why, " cannot all hold");
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
                sb_truncate(why, mark);
                return res;
            }
            if (k == 0) {
                sb_puts(why, ", and no other 'or' branch can hold either");
            } else {
                sb_truncate(why, before);
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
        return !neg && facts[n->l.slot].exposed;
    case N_CMP:
        if (n->type == VT_BOOL && n->r.kind == O_INT && n->l.slot < F_COUNT &&
            facts[n->l.slot].exposed) {
            int wants_true = (n->op == OP_EQ) == (n->r.i != 0);
            return wants_true != (neg != 0);
        }
        return 0;
    case N_IN:
        if (n->type == VT_BOOL && facts[n->l.slot].exposed) {
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

static int compute_warnings(struct ruleset *rs)
{
    char why[512];

    for (size_t i = 0; i < rs->n_rules; i++) {
        const struct rule *r = &rs->rules[i];
        struct sb b;
        char msg[640];
        int never;
        sb_init(&b, why, sizeof(why));
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

/* ---- compiling trees into jump programs ---- */

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
        grow((void **)&rs->prog, &rs->cap_prog, rs->n_prog + 1,
             sizeof(*rs->prog)) != 0) {
        return -1;
    }
    rs->prog[rs->n_prog] = in;
    *entry = (int32_t)rs->n_prog++;
    return 0;
}

static int compile_rules(struct ruleset *rs)
{
    for (size_t i = 0; i < rs->n_rules; i++) {
        if (compile_node(rs, rs->rules[i].root, PC_TRUE, PC_FALSE,
                         &rs->rules[i].entry) != 0) {
            return -1;
        }
    }
    return 0;
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
    if (compile_rules(rs) != 0 || compute_warnings(rs) != 0) {
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

void rules_destroy(struct ruleset *rs)
{
    if (rs == NULL) {
        return;
    }
    for (size_t i = 0; i < rs->n_warnings; i++) {
        free(rs->warnings[i]);
    }
    free(rs->warnings);
    free(rs->name);
    free(rs->rules);
    free(rs->nodes);
    free(rs->kids);
    free(rs->lits);
    free(rs->pool);
    free(rs->prog);
    free(rs);
}

const char *rules_version(const struct ruleset *rs)
{
    return rs != NULL ? rs->version : "";
}

size_t rules_count(const struct ruleset *rs)
{
    return rs != NULL ? rs->n_rules : 0;
}

const char *rules_id(const struct ruleset *rs, size_t i)
{
    return rs != NULL && i < rs->n_rules ? rs->rules[i].hit.rule_id : "";
}

enum severity rules_severity(const struct ruleset *rs, size_t i)
{
    return rs != NULL && i < rs->n_rules ? rs->rules[i].hit.severity
                                         : SEVERITY_NONE;
}

const char *rules_description(const struct ruleset *rs, size_t i)
{
    return rs != NULL && i < rs->n_rules ? rs->pool + rs->rules[i].desc : "";
}

int64_t rules_suppress_ms(const struct ruleset *rs, size_t i)
{
    return rs != NULL && i < rs->n_rules ? rs->rules[i].suppress_ms : 0;
}

size_t rules_windows(const struct ruleset *rs, const int64_t **out)
{
    if (out != NULL) {
        *out = rs != NULL ? rs->windows : NULL;
    }
    return rs != NULL ? rs->n_windows : 0;
}

size_t rules_warnings(const struct ruleset *rs,
                      void (*fn)(void *arg, const char *msg), void *arg)
{
    if (rs == NULL) {
        return 0;
    }
    if (fn != NULL) {
        for (size_t i = 0; i < rs->n_warnings; i++) {
            fn(arg, rs->warnings[i]);
        }
    }
    return rs->n_warnings;
}

/* ---- evaluation ---- */

/* The facts of one transaction, by slot. */
struct ectx {
    const struct ruleset *rs;
    int64_t iv[N_SLOTS];
    const char *sv[F_COUNT];
};

static int64_t floor_days(int64_t t, int64_t from)
{
    int64_t d, q;

    if (__builtin_sub_overflow(t, from, &d)) {
        return t > from ? INT64_MAX / DAY_MS : INT64_MIN / DAY_MS;
    }
    q = d / DAY_MS;
    return (d % DAY_MS != 0 && d < 0) ? q - 1 : q;
}

/* Fills c from f (f->txn != NULL); marks active[] when given. */
static void fill_facts(const struct ruleset *rs, const struct rule_facts *f,
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

static int64_t ival(const struct ectx *c, const struct operand *o)
{
    return o->kind == O_SLOT ? c->iv[o->slot] : o->i;
}

static const char *sval(const struct ectx *c, const struct operand *o)
{
    return o->kind == O_SLOT ? c->sv[o->slot] : c->rs->pool + o->soff;
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

/* Evaluates the tree of node ni (explain: the same answer as the
 * program, checked by the fuzzer). */
static int eval_node(const struct ruleset *rs, uint32_t ni,
                     const struct ectx *c)
{
    const struct node *n = &rs->nodes[ni];

    switch (n->kind) {
    case N_CONST:
        return n->l.i != 0;
    case N_FACT:
        return c->iv[n->l.slot] != 0;
    case N_NOT:
        return !eval_node(rs, n->a, c);
    case N_AND:
        for (uint32_t k = 0; k < n->n; k++) {
            if (!eval_node(rs, rs->kids[n->a + k], c)) {
                return 0;
            }
        }
        return 1;
    case N_OR:
        for (uint32_t k = 0; k < n->n; k++) {
            if (eval_node(rs, rs->kids[n->a + k], c)) {
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

static int is_suppressed(const struct rule *r, const struct rule_last *last,
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
    fill_facts(rs, f, active, &c);
    for (size_t i = 0; i < rs->n_rules; i++) {
        const struct rule *r = &rs->rules[i];
        int ok = run_program(rs, r->entry, &c);
        int sup =
            ok && f->last != NULL && is_suppressed(r, &f->last[i], f->txn);
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

/* ---- printing (warnings and explain) ---- */

static void print_value(const struct ruleset *rs, uint8_t type,
                        const struct operand *o, const struct ectx *c,
                        struct sb *b)
{
    if (type == VT_STR) {
        const char *s = c != NULL ? sval(c, o) : rs->pool + o->soff;
        sb_quoted(b, s, strlen(s));
        return;
    }
    int64_t v = c != NULL ? ival(c, o) : o->i;
    if (type == VT_BOOL) {
        /* a fact's value reads yes/no; a literal reads as written */
        sb_puts(b, o->kind == O_SLOT ? (v ? "yes" : "no")
                                     : (v ? "true" : "false"));
    } else if (type == VT_INT) {
        sb_printf(b, "%lld", (long long)v);
    } else {
        sb_puts(b, enum_name(type, v));
    }
}

static void print_operand(const struct ruleset *rs, uint8_t type,
                          const struct operand *o, struct sb *b)
{
    if (o->kind == O_SLOT) {
        slot_name(rs, o->slot, b);
    } else {
        print_value(rs, type, o, NULL, b);
    }
}

/* Prints node ni in canonical form; prec is the binding strength the
 * context needs (0 none, 1 or, 2 and, 3 not). With c, each comparison is
 * followed by the values of its facts in parentheses. */
static void print_node(const struct ruleset *rs, uint32_t ni, int prec,
                       const struct ectx *c, struct sb *b)
{
    const struct node *n = &rs->nodes[ni];

    switch (n->kind) {
    case N_CONST:
        sb_puts(b, n->l.i ? "true" : "false");
        return;
    case N_FACT:
        slot_name(rs, n->l.slot, b);
        if (c != NULL) {
            sb_puts(b, c->iv[n->l.slot] ? " (yes)" : " (no)");
        }
        return;
    case N_NOT:
        sb_puts(b, "not ");
        print_node(rs, n->a, 3, c, b);
        return;
    case N_AND:
    case N_OR: {
        int mine = n->kind == N_OR ? 1 : 2;
        if (prec > mine) {
            sb_puts(b, "(");
        }
        for (uint32_t k = 0; k < n->n; k++) {
            if (k > 0) {
                sb_puts(b, n->kind == N_OR ? " or " : " and ");
            }
            print_node(rs, rs->kids[n->a + k], mine, c, b);
        }
        if (prec > mine) {
            sb_puts(b, ")");
        }
        return;
    }
    case N_CMP:
        print_operand(rs, n->type, &n->l, b);
        sb_printf(b, " %s ", op_names[n->op]);
        print_operand(rs, n->type, &n->r, b);
        if (c != NULL) {
            sb_puts(b, " (");
            print_value(rs, n->type, &n->l, c, b);
            if (n->r.kind == O_SLOT) {
                sb_puts(b, ", ");
                print_value(rs, n->type, &n->r, c, b);
            }
            sb_puts(b, ")");
        }
        return;
    case N_IN:
        print_operand(rs, n->type, &n->l, b);
        sb_puts(b, n->neg ? " not in (" : " in (");
        for (uint32_t k = 0; k < n->n; k++) {
            if (k > 0) {
                sb_puts(b, ", ");
            }
            print_value(rs, n->type, &rs->lits[n->a + k], NULL, b);
        }
        sb_puts(b, ")");
        if (c != NULL) {
            sb_puts(b, " (");
            print_value(rs, n->type, &n->l, c, b);
            sb_puts(b, ")");
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

    sb_init(&b, buf, buflen);
    if (rs == NULL || i >= rs->n_rules || f == NULL || f->txn == NULL) {
        return 0;
    }
    r = &rs->rules[i];
    fill_facts(rs, f, NULL, &c);
    ok = eval_node(rs, r->root, &c);
    sup = ok && f->last != NULL && is_suppressed(r, &f->last[i], f->txn);
    sb_printf(&b, "%s: %s: ", r->hit.rule_id,
              !ok   ? "no"
              : sup ? "yes (suppressed)"
                    : "yes");
    print_node(rs, r->root, 0, &c, &b);
    return (int)b.len;
}
