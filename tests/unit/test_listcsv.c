/* Unit tests for listcsv.c: breach lists as RFC 4180 CSV - row ends
 * (CRLF, LF, bare CR), quoted fields (commas, line breaks, doubled
 * quotes), a leading UTF-8 BOM, duplicate header names, rejected rows by
 * the line where they start, and the counts. Files go to a mkdtemp
 * directory removed at the end; the cards are synthetic test numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "card.h"
#include "listcsv.h"

/* Luhn-valid synthetic test cards. */
#define A "4000010000000001"
#define B "4000010000000019"
#define C "4000010000000027"
#define D "5100000000000016"

static char tmpdir[] = "/tmp/cw_listcsv_XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[PATH_MAX];
    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
    return rmdir(tmpdir);
}

/* ---- helpers ------------------------------------------------------- */

#define MAX_ROWS 16

/* What list_read handed over and logged. */
struct got {
    int rc;
    struct list_stats st;
    size_t n;
    char pan[MAX_ROWS][CARD_PAN_MAX + 1];
    char expiry[MAX_ROWS][5];
    unsigned long line[MAX_ROWS];
    char kid[MAX_ROWS][CARD_KEY_ID_MAX + 1]; /* "" for a PAN row */
    char fp[MAX_ROWS][CARD_FP_SIZE];          /* "" for a PAN row */
    char first_fraud[MAX_ROWS][32];
    unsigned flags;  /* of list_read */
    int stop_after; /* the callback asks to stop after this many; 0 = no */
    char log[16384]; /* stderr during the call */
    char path[PATH_MAX];
};

static int on_row(void *arg, const struct list_row *row)
{
    struct got *g = arg;
    assert_true(g->n < MAX_ROWS);
    assert_non_null(row->first_fraud);
    snprintf(g->first_fraud[g->n], sizeof(g->first_fraud[g->n]), "%s",
             row->first_fraud);
    if (row->fingerprint != NULL) {
        /* a fingerprint list: no PAN, no expiry */
        assert_true(g->flags & LIST_FINGERPRINTS);
        assert_null(row->pan);
        assert_int_equal(row->len, 0);
        assert_string_equal(row->expiry, "");
        snprintf(g->kid[g->n], sizeof(g->kid[g->n]), "%s", row->key_id);
        snprintf(g->fp[g->n], sizeof(g->fp[g->n]), "%s", row->fingerprint);
        g->pan[g->n][0] = '\0';
        g->expiry[g->n][0] = '\0';
        g->line[g->n] = row->line;
        g->n++;
        return g->stop_after > 0 && g->n >= (size_t)g->stop_after;
    }
    assert_null(row->key_id);
    assert_true(row->len >= CARD_PAN_MIN && row->len <= CARD_PAN_MAX);
    assert_int_equal(strlen(row->pan), row->len);
    memcpy(g->pan[g->n], row->pan, row->len + 1);
    snprintf(g->expiry[g->n], sizeof(g->expiry[g->n]), "%s", row->expiry);
    g->line[g->n] = row->line;
    g->n++;
    return g->stop_after > 0 && g->n >= (size_t)g->stop_after;
}

/* Reads g->path ("-": stdin) with list_read, stderr captured into g->log
 * (by way of the file name.log in the directory). */
static void read_list(const char *name, struct got *g)
{
    char logpath[PATH_MAX];
    snprintf(logpath, sizeof(logpath), "%s/%s.log", tmpdir, name);
    int lfd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(lfd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(lfd, STDERR_FILENO), STDERR_FILENO);
    g->rc = list_read(g->path, g->flags, on_row, g, &g->st);
    fflush(stderr);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    ssize_t n = pread(lfd, g->log, sizeof(g->log) - 1, 0);
    g->log[n > 0 ? n : 0] = '\0';
    close(lfd);
}

/* Writes data (len bytes) to a file called name and reads it with
 * list_read, stderr captured into g->log. */
static void read_bytes(const char *name, const char *data, size_t len,
                       struct got *g)
{
    snprintf(g->path, sizeof(g->path), "%s/%s", tmpdir, name);
    FILE *f = fopen(g->path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    read_list(name, g);
}

static void read_text(const char *name, const char *text, struct got *g)
{
    read_bytes(name, text, strlen(text), g);
}

/* The log holds "<dir>/<name>:<suffix>" (file:line and what follows). */
static void assert_logged(const struct got *g, const char *name,
                          const char *suffix)
{
    char want[PATH_MAX + 256];
    snprintf(want, sizeof(want), "%s/%s:%s", tmpdir, name, suffix);
    if (strstr(g->log, want) == NULL) {
        fail_msg("expected \"%s\" in the log:\n%s", want, g->log);
    }
}

static void assert_counts(const struct got *g, uint64_t rows,
                          uint64_t rejected, uint64_t no_expiry)
{
    assert_int_equal(g->st.rows, rows);
    assert_int_equal(g->st.rejected, rejected);
    assert_int_equal(g->st.no_expiry, no_expiry);
}

/* ---- row ends -------------------------------------------------------- */

static void test_lf_rows(void **state)
{
    (void)state;
    struct got g = {0};
    read_text("lf.csv", "pan,expiry\n" A ",2612\n" B ",2701\n", &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.pan[0], A);
    assert_string_equal(g.expiry[0], "2612");
    assert_int_equal(g.line[0], 2);
    assert_string_equal(g.pan[1], B);
    assert_string_equal(g.expiry[1], "2701");
    assert_int_equal(g.line[1], 3);
    assert_counts(&g, 2, 0, 0);
}

static void test_crlf_rows(void **state)
{
    (void)state;
    struct got g = {0};
    read_text("crlf.csv", "pan,expiry\r\n" A ",2612\r\n" B ",2701\r\n", &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.expiry[0], "2612");
    assert_string_equal(g.pan[1], B);
    assert_int_equal(g.line[1], 3);
    assert_counts(&g, 2, 0, 0);
}

/* The red team's file: a bare CR between two rows joined them, and the
 * second card was lost without a word. */
static void test_bare_cr_ends_a_row(void **state)
{
    (void)state;
    struct got g = {0};
    read_text("cr1.csv", "pan,expiry\n" A ",2612\r" B ",2612\n", &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.pan[0], A);
    assert_string_equal(g.pan[1], B);
    assert_int_equal(g.line[0], 2);
    assert_int_equal(g.line[1], 3);
    assert_counts(&g, 2, 0, 0);
}

/* A file with CR line ends only (old Mac style) loaded nothing. */
static void test_cr_only_file(void **state)
{
    (void)state;
    struct got g = {0};
    read_text("cr2.csv", "pan,expiry\r" A ",2612\r" B ",2701\r" C ",2702\r",
              &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.pan[2], C);
    assert_string_equal(g.expiry[2], "2702");
    assert_int_equal(g.line[2], 4);
    assert_counts(&g, 3, 0, 0);
}

/* Every row end in one file, blank lines between, no end at the end. */
static void test_mixed_row_ends_and_blank_lines(void **state)
{
    (void)state;
    struct got g = {0};
    read_text("mixed.csv",
              "pan,expiry\r\n" A ",2612\r" B ",2701\n\r\n\n" C ",2702\r\r"
              "# a comment line\n" D ",2703",
              &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 4);
    assert_int_equal(g.line[0], 2);
    assert_int_equal(g.line[1], 3);
    assert_int_equal(g.line[2], 6);
    assert_int_equal(g.line[3], 9);
    assert_string_equal(g.pan[3], D);
    assert_string_equal(g.expiry[3], "2703");
    assert_counts(&g, 4, 0, 0);
}

/* ---- header ---------------------------------------------------------- */

static void test_duplicate_header_refused(void **state)
{
    (void)state;
    struct got g = {0};
    /* Before: the last 'pan' column won, silently. */
    read_text("dup1.csv", "pan,pan\n" A "," B "\n", &g);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.n, 0);
    assert_logged(&g, "dup1.csv", "1: column 'pan' is named twice");

    struct got g2 = {0};
    read_text("dup2.csv", "expiry,PAN,name,Expiry\n2612," A ",x,2701\n", &g2);
    assert_int_equal(g2.rc, -1);
    assert_int_equal(g2.n, 0);
    assert_logged(&g2, "dup2.csv", "1: column 'Expiry' is named twice");

    /* Any repeated name is ambiguous, not just ours. */
    struct got g3 = {0};
    read_text("dup3.csv", "\"pan\",note,\" note \"\n" A ",a,b\n", &g3);
    assert_int_equal(g3.rc, -1);
    assert_logged(&g3, "dup3.csv", "1: column 'note' is named twice");
}

static void test_utf8_bom_accepted(void **state)
{
    (void)state;
    struct got g = {0};
    read_text("bom.csv", "\xEF\xBB\xBFpan,expiry\r\n" A ",2612\r\n", &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.pan[0], A);
    assert_string_equal(g.expiry[0], "2612");
    assert_counts(&g, 1, 0, 0);
    /* A BOM anywhere else is not skipped: here it spoils the header. */
    struct got g2 = {0};
    read_text("bom2.csv", "x,\xEF\xBB\xBFpan\n1," A "\n", &g2);
    assert_int_equal(g2.rc, -1);
    assert_logged(&g2, "bom2.csv", "1: the header has no column 'pan'");
}

static void test_empty_and_header_only(void **state)
{
    (void)state;
    struct got g = {0};
    read_text("empty.csv", "", &g);
    assert_int_equal(g.rc, -1);
    assert_logged(&g, "empty.csv", "1: empty file");

    struct got g2 = {0};
    read_text("bomonly.csv", "\xEF\xBB\xBF", &g2);
    assert_int_equal(g2.rc, -1);
    assert_logged(&g2, "bomonly.csv", "1: empty file");

    struct got g3 = {0};
    read_text("hdr.csv", "pan,expiry\r\n", &g3);
    assert_int_equal(g3.rc, 0);
    assert_int_equal(g3.n, 0);
    assert_counts(&g3, 0, 0, 0);

    struct got g4 = {0};
    read_text("nopan.csv", "card,expiry\n" A ",2612\n", &g4);
    assert_int_equal(g4.rc, -1);
    assert_logged(&g4, "nopan.csv", "1: the header has no column 'pan'");
}

/* More columns than the old parser's 64. */
static void test_wide_header(void **state)
{
    (void)state;
    char buf[2048] = "";
    size_t o = 0;
    for (int i = 0; i < 70; i++) {
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "c%d,", i);
    }
    o += (size_t)snprintf(buf + o, sizeof(buf) - o, "pan\n");
    for (int i = 0; i < 70; i++) {
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%d,", i);
    }
    snprintf(buf + o, sizeof(buf) - o, A "\n");
    struct got g = {0};
    read_text("wide.csv", buf, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.pan[0], A);
}

/* ---- quoted fields --------------------------------------------------- */

static void test_quoted_fields(void **state)
{
    (void)state;
    struct got g = {0};
    read_text("quoted.csv",
              "\"pan\",\"expiry\"\n"
              "\"" A "\",\"2612\"\n"
              "\"4000 0100 0000 0019\", \"2701\" \n"  /* spaces around */
              "\"\"\"" "\",2702\n",                   /* a field '"' */
              &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.pan[0], A);
    assert_string_equal(g.expiry[0], "2612");
    assert_string_equal(g.pan[1], B);
    assert_string_equal(g.expiry[1], "2701");
    assert_counts(&g, 3, 1, 0);
    assert_logged(&g, "quoted.csv", "4: rejected: PAN is not 13-19 digits");
}

/* Tabs count as spaces around fields and header names: before a plain
 * field, after a quoted one, and on both sides of a header name. */
static void test_tabs_around_fields(void **state)
{
    (void)state;
    struct got g = {0};
    read_text("tabs.csv",
              "\tpan\t,\t expiry \t\n"
              "\t" A ",\t2612\n"
              "\"" B "\"\t,\"2701\"\t \n",
              &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.pan[0], A);
    assert_string_equal(g.expiry[0], "2612");
    assert_string_equal(g.pan[1], B);
    assert_string_equal(g.expiry[1], "2701");
    assert_counts(&g, 2, 0, 0);

    /* blanks inside quoted header names are trimmed as well */
    struct got q = {0};
    read_text("qtabs.csv", "\"\tpan\t\",\" expiry\t \"\n" C ",2703\n", &q);
    assert_int_equal(q.rc, 0);
    assert_int_equal(q.n, 1);
    assert_string_equal(q.pan[0], C);
    assert_string_equal(q.expiry[0], "2703");
    assert_counts(&q, 1, 0, 0);
}

/* Doubled quotes and commas inside a quoted field before the PAN column
 * shifted the columns: the PAN was read from the wrong field. */
static void test_doubled_quotes_keep_columns(void **state)
{
    (void)state;
    struct got g = {0};
    read_text("dq.csv",
              "name,pan,expiry\n"
              "\"Smith, \"\"JJ\"\", Jr\"," A ",2612\n"
              "\"\"\"quoted\"\"\"," B ",2701\n"
              "\"a,b\"\"\"\"c\"," C ",2702\n",
              &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.pan[0], A);
    assert_string_equal(g.expiry[0], "2612");
    assert_string_equal(g.pan[1], B);
    assert_string_equal(g.expiry[1], "2701");
    assert_string_equal(g.pan[2], C);
    assert_string_equal(g.expiry[2], "2702");
    assert_counts(&g, 3, 0, 0);
}

/* Line breaks inside quotes belong to the field; a row is named by the
 * line where it starts. */
static void test_line_breaks_in_quotes(void **state)
{
    (void)state;
    struct got g = {0};
    read_text("nl.csv",
              "pan,address,expiry\n"
              A ",\"1 Main St\nSpringfield\",2612\n"       /* lines 2-3 */
              B ",\"CRLF\r\ninside\rand CR\",2701\r\n"      /* lines 4-6 */
              "4000010000000018,\"x\ny\",2702\n"            /* 7-8: Luhn */
              C ",,2713\n",                                  /* 9 */
              &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.line[0], 2);
    assert_string_equal(g.expiry[0], "2612");
    assert_int_equal(g.line[1], 4);
    assert_string_equal(g.expiry[1], "2701");
    assert_int_equal(g.line[2], 9);
    assert_string_equal(g.expiry[2], "");
    assert_counts(&g, 4, 1, 1);
    assert_logged(&g, "nl.csv",
                  "7: rejected: PAN 400001******0018 fails the Luhn check");
    assert_logged(&g, "nl.csv", "9: expiry of 400001******0027 is not YYMM");
}

static void test_malformed_quotes(void **state)
{
    (void)state;
    struct got g = {0};
    read_text("mq.csv",
              "pan,expiry\n"
              "\"" A "\"x,2612\n"         /* text after the closing quote */
              B ",2701\n"
              "ab\"c\"," C ",2702\n",     /* a quote inside: literal */
              &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.pan[0], B);
    assert_counts(&g, 3, 2, 0);
    assert_logged(&g, "mq.csv", "2: rejected: text after a closing quote");

    /* An open quote runs to the end of the file: refused, naming where
     * it opened (the cards after it would be lost otherwise). */
    struct got g2 = {0};
    read_text("open.csv",
              "pan,note\n" A ",ok\n" B ",\"never closed\n" C ",x\n" D ",y\n",
              &g2);
    assert_int_equal(g2.rc, -1);
    assert_int_equal(g2.n, 1);
    assert_logged(&g2, "open.csv", "3: a quoted field is never closed");
}

/* ---- rows ------------------------------------------------------------ */

static void test_rejected_rows_and_counts(void **state)
{
    (void)state;
    struct got g = {0};
    read_text("rej.csv",
              "pan,expiry,cvv\n"
              A ",2612,123\n"
              "12345,2612,1\n"              /* 3: too short */
              "4000010000000002,2612,1\n"   /* 4: Luhn */
              B ",1399,1\n"                 /* 5: bad expiry, passed on */
              ",2612\n"                     /* 6: no PAN */
              C ",2612,1,,\n"               /* 7: empty extra fields: ok */
              D ",2612,1,oops\n",           /* 8: one field too many */
              &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.expiry[1], "");
    assert_counts(&g, 7, 4, 1);
    assert_logged(&g, "rej.csv", "3: rejected: PAN is not 13-19 digits");
    assert_logged(&g, "rej.csv",
                  "4: rejected: PAN 400001******0002 fails the Luhn check");
    assert_logged(&g, "rej.csv", "5: expiry of 400001******0019 is not YYMM");
    assert_logged(&g, "rej.csv", "6: rejected: PAN is not 13-19 digits");
    assert_logged(&g, "rej.csv",
                  "8: rejected: 4 fields, the header has 3");
    assert_logged(&g, "rej.csv", "1: column 'cvv' is ignored");
    /* no raw test card in what was logged */
    assert_null(strstr(g.log, A));
    assert_null(strstr(g.log, "4000010000000002"));
}

static void test_nul_byte_rejects_the_row(void **state)
{
    (void)state;
    static const char data[] = "pan\n" A "\n4000\0" "010000000019\n" C "\n";
    struct got g = {0};
    read_bytes("nul.csv", data, sizeof(data) - 1, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.pan[1], C);
    assert_counts(&g, 3, 1, 0);
    assert_logged(&g, "nul.csv", "3: rejected: NUL byte");
}

static void test_stop_from_callback(void **state)
{
    (void)state;
    struct got g = {.stop_after = 1};
    read_text("stop.csv", "pan\n" A "\n" B "\n", &g);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.st.rows, 1);
}

static void test_row_too_long(void **state)
{
    (void)state;
    size_t big = LIST_ROW_MAX + 100;
    char *data = malloc(big + 64);
    assert_non_null(data);
    size_t o = (size_t)sprintf(data, "pan,note\n" A ",");
    memset(data + o, 'x', big);
    o += big;
    o += (size_t)sprintf(data + o, "\n" B ",x\n");
    struct got g = {0};
    read_bytes("long.csv", data, o, &g);
    free(data);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.n, 0);
    assert_logged(&g, "long.csv", "2: row longer than");
}

/* A row of exactly LIST_ROW_MAX bytes as stored (each field and its
 * terminating NUL) is read; one byte more is refused, by its line. */
static void test_row_at_the_limit(void **state)
{
    (void)state;
    /* row 2 holds A (16 + 1) and the note: 17 + note + 1 bytes */
    size_t fit = LIST_ROW_MAX - 18;
    char *data = malloc(LIST_ROW_MAX + 64);
    assert_non_null(data);
    for (int extra = 0; extra < 2; extra++) {
        size_t o = (size_t)sprintf(data, "pan,note\n" A ",");
        memset(data + o, 'n', fit + (size_t)extra);
        o += fit + (size_t)extra;
        o += (size_t)sprintf(data + o, "\n" B ",x\n");
        struct got g = {0};
        read_bytes("limit.csv", data, o, &g);
        if (extra == 0) {
            assert_int_equal(g.rc, 0);
            assert_int_equal(g.n, 2);
            assert_string_equal(g.pan[1], B);
            assert_int_equal(g.line[1], 3);
        } else {
            assert_int_equal(g.rc, -1);
            assert_int_equal(g.n, 0);
            assert_logged(&g, "limit.csv", "2: row longer than 65536 bytes");
        }
    }
    /* the byte past the limit is the CR of a line break inside quotes */
    size_t o = (size_t)sprintf(data, "pan,note\n" A ",\"");
    memset(data + o, 'n', fit + 1);
    o += fit + 1;
    o += (size_t)sprintf(data + o, "\r\nmore\"\n" B ",x\n");
    struct got g = {0};
    read_bytes("limit-crlf.csv", data, o, &g);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.n, 0);
    assert_logged(&g, "limit-crlf.csv", "2: row longer than 65536 bytes");
    free(data);
}

/* A path that opens but cannot be read (a directory): the read error,
 * and nothing is taken. */
static void test_read_error(void **state)
{
    (void)state;
    struct got g = {0};
    snprintf(g.path, sizeof(g.path), "%s", tmpdir);
    read_list("dir", &g);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.n, 0);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "%s:1: read error: Is a directory", tmpdir);
    if (strstr(g.log, want) == NULL) {
        fail_msg("expected \"%s\" in the log:\n%s", want, g.log);
    }
}

/* stdin holds data (len bytes), then the connection is reset: the peer
 * closed with data of ours unread. */
static int stdin_reset_after(const char *data, size_t len)
{
    int sv[2];
    int saved = dup(STDIN_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[1], data, len), (ssize_t)len);
    assert_int_equal(write(sv[0], "x", 1), 1);
    close(sv[1]);
    assert_int_equal(dup2(sv[0], STDIN_FILENO), STDIN_FILENO);
    close(sv[0]);
    clearerr(stdin);
    return saved;
}

/* A read error in the middle of a row - inside a quoted field, or in an
 * unquoted one - fails the read: the rows before it were handed over,
 * the cut row is not, and the error is logged with its cause (it said
 * "Input/output error" when the failed read came after data in the same
 * fread), not taken for the end of the file or a quote never closed. */
static void test_read_error_mid_row(void **state)
{
    (void)state;
    static const char *const cut[] = {
        "pan,note\n" A ",x\n" B ",\"quoted, not closed",
        "pan,note\n" A ",x\n" B ",unquoted",
    };
    for (size_t i = 0; i < 2; i++) {
        struct got g = {0};
        snprintf(g.path, sizeof(g.path), "-");
        int saved = stdin_reset_after(cut[i], strlen(cut[i]));
        read_list("stdin", &g);
        clearerr(stdin);
        assert_int_equal(dup2(saved, STDIN_FILENO), STDIN_FILENO);
        close(saved);
        assert_int_equal(g.rc, -1);
        assert_int_equal(g.n, 1);
        assert_string_equal(g.pan[0], A);
        if (strstr(g.log, "<stdin>:3: read error: Connection reset by "
                          "peer") == NULL ||
            strstr(g.log, "never closed") != NULL) {
            fail_msg("case %zu: log:\n%s", i, g.log);
        }
    }
}

static void test_missing_file(void **state)
{
    (void)state;
    struct list_stats st;
    assert_int_equal(list_read("/nonexistent/cw/list.csv", 0, on_row, NULL,
                               &st),
                     -1);
    assert_int_equal(st.rows, 0);
}

/* ---- fingerprint lists ---------------------------------------------- */

#define FP1 "00112233445566778899aabbccddeeff"
#define FP2 "ffeeddccbbaa99887766554433221100"

/* A fingerprint list (what `cardwatch cpp --emit-breach` writes): key id
 * and lowercased hex per row, first_fraud passed on as written, the rest
 * of the CSV rules (BOM, CRLF, quotes, comments) as for card numbers. */
static void test_fingerprint_list(void **state)
{
    (void)state;
    struct got g = {.flags = LIST_FINGERPRINTS};
    read_text("fp.csv",
              "\xEF\xBB\xBF" "Fingerprint,note,first_fraud\r\n"
              "k1:" FP1 ",\"a, b\",2024-05-01\r\n"
              "# a comment\r\n"
              "  K_2-x:FFEEDDCCBBAA99887766554433221100 ,,\r\n"
              "\"k1:" FP2 "\"\r\n",
              &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.st.fingerprints, 1);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.kid[0], "k1");
    assert_string_equal(g.fp[0], FP1);
    assert_string_equal(g.first_fraud[0], "2024-05-01");
    assert_int_equal(g.line[0], 2);
    assert_string_equal(g.kid[1], "K_2-x");
    assert_string_equal(g.fp[1], FP2); /* lowercased */
    assert_string_equal(g.first_fraud[1], "");
    assert_int_equal(g.line[1], 4);
    assert_string_equal(g.fp[2], FP2);
    assert_string_equal(g.first_fraud[2], ""); /* a short row */
    assert_counts(&g, 3, 0, 0);
    assert_string_equal(g.log, "");

    /* a list of PANs read with the flag: st.fingerprints 0, first_fraud
     * passed on too */
    struct got p = {.flags = LIST_FINGERPRINTS};
    read_text("pff.csv", "pan,first_fraud\n" A ",2024-05-01T10:00:00Z\n" B
              "\n", &p);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.st.fingerprints, 0);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.kid[0], "");
    assert_string_equal(p.first_fraud[0], "2024-05-01T10:00:00Z");
    assert_string_equal(p.first_fraud[1], "");
}

/* Fingerprints that are not "<key_id>:<32 hex>": rejected by their line,
 * showing at most the key id and 8 hex - never a card number put in the
 * column. */
static void test_fingerprint_rows_rejected(void **state)
{
    (void)state;
    struct got g = {.flags = LIST_FINGERPRINTS};
    read_text("fpbad.csv",
              "fingerprint\n"
              "k1:" FP1 "\n"                          /* 2 ok */
              "k1:0011\n"                             /* 3 short */
              "k1:" FP1 "00\n"                        /* 4 long */
              "k1:0011223344556677889gaabbccddeeff\n" /* 5 not hex */
              "bad id:" FP1 "\n"                      /* 6 key id */
              A "\n"                                  /* 7 a PAN */
              A ":" FP1 "\n"                          /* 8 digits key id */
              "12345678901234:" A "\n"                /* 9 PAN as hex */
              "\"\"\n"                                /* 10 empty */
              ":" FP1 "\n"                            /* 11 no key id */
              "k12345678901234567890123456789012:" FP1 "\n" /* 12 33 chars */
              "k1: " FP1 "\n",                        /* 13 space */
              &g);
    assert_int_equal(g.rc, 0);
    /* line 8: a key id may be all digits (as in a key file); the caller
     * shows it with list_key_id_shown() */
    assert_int_equal(g.n, 2);
    assert_string_equal(g.fp[0], FP1);
    assert_string_equal(g.kid[1], A);
    assert_string_equal(list_key_id_shown(g.kid[1]), "(key id not shown)");
    assert_string_equal(list_key_id_shown("k1"), "k1");
    assert_counts(&g, 12, 10, 0);
    assert_logged(&g, "fpbad.csv",
                  "3: rejected: fingerprint k1:0011 is not <key_id>:<32 hex>");
    assert_logged(&g, "fpbad.csv",
                  "4: rejected: fingerprint k1:00112233... is not");
    assert_logged(&g, "fpbad.csv",
                  "5: rejected: fingerprint k1:00112233... is not");
    assert_logged(&g, "fpbad.csv", "6: rejected: fingerprint is not "
                  "<key_id>:<32 hex> (the key id is not 1-32 of");
    assert_logged(&g, "fpbad.csv", "7: rejected: fingerprint is not "
                  "<key_id>:<32 hex> (no ':')");
    assert_logged(&g, "fpbad.csv", "9: rejected: fingerprint (key id not "
                  "shown):40000100... is not");
    assert_logged(&g, "fpbad.csv", "10: rejected: no fingerprint");
    assert_logged(&g, "fpbad.csv", "11: rejected: fingerprint is not "
                  "<key_id>:<32 hex> (the key id");
    assert_logged(&g, "fpbad.csv", "12: rejected: fingerprint is not");
    assert_logged(&g, "fpbad.csv", "13: rejected: fingerprint k1:... is not");
    if (strstr(g.log, A) != NULL || strstr(g.log, "4000010000") != NULL) {
        fail_msg("a card number in the log:\n%s", g.log);
    }
}

/* Headers a fingerprint list cannot have, and callers that need card
 * numbers (gen, rules test: no LIST_FINGERPRINTS). */
static void test_fingerprint_headers_refused(void **state)
{
    (void)state;
    struct got g1 = {.flags = LIST_FINGERPRINTS};
    read_text("both.csv", "pan,fingerprint\n" A ",k1:" FP1 "\n", &g1);
    assert_int_equal(g1.rc, -1);
    assert_int_equal(g1.n, 0);
    assert_logged(&g1, "both.csv", "1: the header names both 'pan' and "
                  "'fingerprint'");

    struct got g2 = {.flags = LIST_FINGERPRINTS};
    read_text("fpexp.csv", "fingerprint,expiry\nk1:" FP1 ",2612\n", &g2);
    assert_int_equal(g2.rc, -1);
    assert_int_equal(g2.n, 0);
    assert_logged(&g2, "fpexp.csv", "1: a fingerprint list cannot have "
                  "column 'expiry'");

    struct got g3 = {0};
    read_text("needpan.csv", "note,FINGERPRINT\nx,k1:" FP1 "\n", &g3);
    assert_int_equal(g3.rc, -1);
    assert_int_equal(g3.n, 0);
    if (strstr(g3.log, "needpan.csv is a fingerprint list; this command "
                       "needs card numbers") == NULL) {
        fail_msg("log:\n%s", g3.log);
    }

    struct got g4 = {.flags = LIST_FINGERPRINTS};
    read_text("neither.csv", "card\n" A "\n", &g4);
    assert_int_equal(g4.rc, -1);
    assert_logged(&g4, "neither.csv", "1: the header has no column 'pan' or "
                  "'fingerprint'");

    /* the expiry warning still speaks for a fingerprint list */
    struct got g5 = {.flags = LIST_FINGERPRINTS | LIST_WARN_NO_EXPIRY};
    read_text("fpwarn.csv", "fingerprint\nk1:" FP1 "\n", &g5);
    assert_int_equal(g5.rc, 0);
    assert_int_equal(g5.n, 1);
    assert_logged(&g5, "fpwarn.csv", " no 'expiry' column although the "
                  "breach exposed expiry");
}

/* A stop from the callback on a fingerprint row stops the read. */
static void test_fingerprint_stop(void **state)
{
    (void)state;
    struct got g = {.flags = LIST_FINGERPRINTS, .stop_after = 1};
    read_text("fpstop.csv", "fingerprint\nk1:" FP1 "\nk1:" FP2 "\n", &g);
    assert_int_equal(g.rc, -1);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.st.rows, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lf_rows),
        cmocka_unit_test(test_crlf_rows),
        cmocka_unit_test(test_bare_cr_ends_a_row),
        cmocka_unit_test(test_cr_only_file),
        cmocka_unit_test(test_mixed_row_ends_and_blank_lines),
        cmocka_unit_test(test_duplicate_header_refused),
        cmocka_unit_test(test_utf8_bom_accepted),
        cmocka_unit_test(test_empty_and_header_only),
        cmocka_unit_test(test_wide_header),
        cmocka_unit_test(test_tabs_around_fields),
        cmocka_unit_test(test_quoted_fields),
        cmocka_unit_test(test_doubled_quotes_keep_columns),
        cmocka_unit_test(test_line_breaks_in_quotes),
        cmocka_unit_test(test_malformed_quotes),
        cmocka_unit_test(test_rejected_rows_and_counts),
        cmocka_unit_test(test_nul_byte_rejects_the_row),
        cmocka_unit_test(test_stop_from_callback),
        cmocka_unit_test(test_row_too_long),
        cmocka_unit_test(test_row_at_the_limit),
        cmocka_unit_test(test_read_error),
        cmocka_unit_test(test_read_error_mid_row),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_fingerprint_list),
        cmocka_unit_test(test_fingerprint_rows_rejected),
        cmocka_unit_test(test_fingerprint_headers_refused),
        cmocka_unit_test(test_fingerprint_stop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
