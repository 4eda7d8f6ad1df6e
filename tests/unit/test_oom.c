/* Out-of-memory paths of the pure modules, SQLite style: for each entry
 * point that allocates, the call runs with its 1st, 2nd, 3rd ...
 * allocation failing (failalloc.h) until a run in which the armed failure
 * no longer fires - the call then completed, so every allocation point it
 * reaches has failed once. Each failing run must report the failure (an
 * error return, and "out of memory" in the message where the API gives
 * one), must not crash, and - under ASan (make unit-asan) - must leak
 * nothing: LeakSanitizer checks after every run, naming the one that
 * leaked. Entry points whose header promises no allocation are checked to
 * make none.
 *
 * Only allocations of our own objects are failed; those inside shared
 * libraries (getline, fopen, jansson, protobuf-c's decoder, OpenSSL) are
 * not (failalloc.h). Files go to a mkdtemp directory removed at the end;
 * the cards are synthetic test numbers. */
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "alert.h"
#include "breach.h"
#include "card.h"
#include "config.h"
#include "failalloc.h"
#include "feed_config.h"
#include "feed_outcome.h"
#include "feed_token.h"
#include "gen.h"
#include "listcsv.h"
#include "metrics.h"
#include "offsets.h"
#include "reader.h"
#include "route.h"
#include "rules.h"
#include "tally.h"
#include "txn.h"
#include "windows.h"

#if defined(__SANITIZE_ADDRESS__)
#define OOM_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OOM_LSAN 1
#endif
#endif
#ifdef OOM_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Luhn-valid synthetic test cards. */
#define CARD_A "4000010000000001"
#define CARD_B "4000010000000019"

static char tmpdir[] = "/tmp/cw_oom_XXXXXX";
static char root[PATH_MAX]; /* the repository, from this file's path */

static int setup(void **state)
{
    const char *me = __FILE__;
    const char *cut = strstr(me, "tests/unit/test_oom.c");

    (void)state;
    snprintf(root, sizeof(root), "%.*s", (int)(cut != NULL ? cut - me : 0),
             me);
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[PATH_MAX];

    (void)state;
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

/* ---- the loop ------------------------------------------------------- */

/* What a test allocates itself is held in static variables: a test that
 * fails half-way leaves it reachable, not a leak that every later test's
 * leak check would report. */

/* One entry point under test. setup and teardown run with nothing armed;
 * run runs with the n-th allocation failing and cleans up its own result
 * on success. */
struct oom_op {
    const char *name;
    void (*setup)(void *arg);                       /* may be NULL */
    int (*run)(void *arg, char *err, size_t errlen); /* 0, or -1 */
    void (*teardown)(void *arg);                    /* may be NULL */
    int flags;                                      /* OOM_* */
};

/* The API reports a message: it must say "out of memory". */
#define OOM_MSG 1
/* The header documents that the call works on without that allocation
 * (e.g. a table that would have grown): success is allowed. */
#define OOM_DEGRADES 2

static void leak_check(const char *name, long n)
{
#ifdef OOM_LSAN
    if (__lsan_do_recoverable_leak_check() != 0) {
        fail_msg("%s: leak (report above) with allocation %ld failing", name,
                 n);
    }
#else
    (void)name;
    (void)n;
#endif
}

/* Fails allocation 1, 2, ... of op until a run completes. Returns the
 * number of allocation points reached (the runs that failed). */
static long oom_loop(const struct oom_op *op, void *arg)
{
    for (long n = 1;; n++) {
        char err[2048] = "";
        int rc, fired;

        if (op->setup != NULL) {
            op->setup(arg);
        }
        failalloc_at(n);
        rc = op->run(arg, err, sizeof(err));
        fired = failalloc_failed();
        failalloc_at(0);
        if (op->teardown != NULL) {
            op->teardown(arg);
        }
        leak_check(op->name, n);
        if (!fired) {
            if (rc != 0) {
                fail_msg("%s: fails with every allocation granted: %s",
                         op->name, err);
            }
            print_message("%-34s %3ld allocation points\n", op->name, n - 1);
            return n - 1;
        }
        if (rc == 0 && !(op->flags & OOM_DEGRADES)) {
            fail_msg("%s: allocation %ld failed, yet the call reported "
                     "success",
                     op->name, n);
        }
        if (rc != 0 && (op->flags & OOM_MSG) &&
            strstr(err, "out of memory") == NULL) {
            fail_msg("%s: allocation %ld failed: the message does not say "
                     "so: \"%s\"",
                     op->name, n, err);
        }
        if (n > 100000) {
            fail_msg("%s: no end after %ld allocations", op->name, n);
        }
    }
}

/* The call makes no allocation of ours (the first would fail). */
#define assert_allocates_nothing(call)                                        \
    do {                                                                      \
        failalloc_at(1);                                                      \
        (void)(call);                                                         \
        long n_ = failalloc_count();                                          \
        failalloc_at(0);                                                      \
        if (n_ != 0) {                                                        \
            fail_msg("%s allocated %ld times", #call, n_);                    \
        }                                                                     \
    } while (0)

/* Writes text to tmpdir/name with mode; returns the path (static). */
static const char *write_file(const char *name, const char *text, mode_t mode)
{
    static char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

/* Reads a file under the repository into a malloc'd string. */
static char *read_repo_file(const char *rel, size_t *len)
{
    char path[PATH_MAX + 64];
    FILE *f;
    char *buf;
    long n;

    snprintf(path, sizeof(path), "%s%s", root, rel);
    f = fopen(path, "rb");
    if (f == NULL) {
        fail_msg("%s: cannot open", path);
    }
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* ---- rules ---------------------------------------------------------- */

struct rules_arg {
    const char *text;
    size_t len;
    const char *path; /* rules_load */
};

static int run_rules_parse(void *arg, char *err, size_t errlen)
{
    struct rules_arg *a = arg;
    struct ruleset *rs = rules_parse(a->text, a->len, "t.rules", err, errlen);

    rules_destroy(rs);
    return rs != NULL ? 0 : -1;
}

static int run_rules_load(void *arg, char *err, size_t errlen)
{
    struct rules_arg *a = arg;
    struct ruleset *rs = rules_load(a->path, err, errlen);

    rules_destroy(rs);
    return rs != NULL ? 0 : -1;
}

static int run_rules_builtin(void *arg, char *err, size_t errlen)
{
    struct ruleset *rs = rules_builtin();

    (void)arg;
    (void)err;
    (void)errlen;
    rules_destroy(rs);
    return rs != NULL ? 0 : -1;
}

static void test_rules_default_pack(void **state)
{
    static struct rules_arg a;
    char path[PATH_MAX + 32];
    const struct oom_op parse = {"rules_parse(default.rules)", NULL,
                                 run_rules_parse, NULL, OOM_MSG};
    const struct oom_op load = {"rules_load(default.rules)", NULL,
                                run_rules_load, NULL, OOM_MSG};
    const struct oom_op builtin = {"rules_builtin", NULL, run_rules_builtin,
                                   NULL, 0};

    (void)state;
    a.text = read_repo_file("rules/default.rules", &a.len);
    snprintf(path, sizeof(path), "%srules/default.rules", root);
    a.path = path;
    assert_true(oom_loop(&parse, &a) >= 10);
    assert_true(oom_loop(&load, &a) >= 11);
    assert_true(oom_loop(&builtin, &a) >= 3);
    free((char *)a.text);
}

static void count_warning(void *arg, const char *msg)
{
    (void)msg;
    (*(int *)arg)++;
}

/* Every construct of the language (and both kinds of warning), with more
 * than 16 rules, nodes and literals so that each array grows. */
static char *rich_rules(size_t *len)
{
    size_t cap = 16384, n = 0;
    char *t = malloc(cap);

    assert_non_null(t);
    n += (size_t)snprintf(
        t + n, cap - n,
        "# every construct\n"
        "rule never-fires\n"
        "  severity: low\n"
        "  description: Two bounds that exclude each other\n"
        "  when: exposed and amount_minor > 500 and amount_minor < 100\n"
        "rule or-never\n"
        "  severity: low\n"
        "  description: No branch can hold\n"
        "  when: exposed and (mcc > 10000 or amount_minor < 0)\n"
        "rule not-exposed\n"
        "  severity: medium\n"
        "  description: Fires on listed cards before the breach too\n"
        "  when: mcc == 5999 or currency in (\"EUR\", \"USD\", \"GBP\")\n"
        "rule everything\n"
        "  severity: critical\n"
        "  description: All the facts, windows and operators at once\n"
        "  when: exposed and not (channel in (ecommerce, moto)\n"
        "        and entry_mode == keyed)\n"
        "        and merchant_country != issuer_country\n"
        "        and issuer_id != \"\" and txn_id != \"t-\\\"q\\\\\"\n"
        "        and count(30s) >= 2 and count_declined(5m) < 9\n"
        "        and sum_amount(2h) > 1000 and distinct_merchants(1d) >= 3\n"
        "        and distinct_countries(7d) >= 2\n"
        "        and (cvv2_exposed or expiry_matches or name_exposed == "
        "true)\n"
        "        and response not in (declined) and cvv2_presented in "
        "(true)\n"
        "        and days_since_exposure_start >= 0\n"
        "        and days_since_exposure_end < 400 and true\n"
        "  suppress: 30m\n");
    for (int i = 0; i < 20; i++) {
        n += (size_t)snprintf(
            t + n, cap - n,
            "rule filler-%02d\n"
            "  severity: high\n"
            "  description: Filler rule number %d with a longer text\n"
            "  when: exposed and mcc in (%d, %d, %d) and merchant_id in "
            "(\"m-%d\", \"n-%d\") and count(%dm) >= %d\n",
            i, i, 1000 + i, 2000 + i, 3000 + i, i, i, 1 + i % 5, 2 + i);
        assert_true(n < cap);
    }
    *len = n;
    return t;
}

static void test_rules_every_construct(void **state)
{
    static struct rules_arg a;
    char err[512];
    struct ruleset *rs;
    int warnings = 0;
    const struct oom_op parse = {"rules_parse(every construct)", NULL,
                                 run_rules_parse, NULL, OOM_MSG};

    (void)state;
    a.text = rich_rules(&a.len);
    rs = rules_parse(a.text, a.len, "t.rules", err, sizeof(err));
    if (rs == NULL) {
        fail_msg("%s", err);
    }
    /* never-fires, or-never (can never fire), not-exposed */
    rules_warnings(rs, count_warning, &warnings);
    assert_int_equal(warnings, 3);
    rules_destroy(rs);
    assert_true(oom_loop(&parse, &a) >= 20);
    free((char *)a.text);
}

/* ---- config --------------------------------------------------------- */

struct config_arg {
    struct config c;
    const char *path;
};

static int run_config_init(void *arg, char *err, size_t errlen)
{
    struct config_arg *a = arg;

    (void)err;
    (void)errlen;
    return config_init(&a->c);
}

static void config_setup(void *arg)
{
    struct config_arg *a = arg;

    assert_int_equal(config_init(&a->c), 0);
}

static void config_setup_loaded(void *arg)
{
    struct config_arg *a = arg;
    char err[512];

    config_setup(arg);
    if (config_load(&a->c, a->path, err, sizeof(err)) != 0) {
        fail_msg("%s", err);
    }
}

static void config_teardown(void *arg)
{
    struct config_arg *a = arg;

    config_free(&a->c);
}

static int run_config_load(void *arg, char *err, size_t errlen)
{
    struct config_arg *a = arg;

    return config_load(&a->c, a->path, err, errlen);
}

static int run_config_check(void *arg, char *err, size_t errlen)
{
    struct config_arg *a = arg;

    /* as the commands check a configuration (main.c) */
    if (config_check(&a->c, err, errlen) != 0) {
        return -1;
    }
    return feed_config_check(&a->c, err, errlen);
}

static void test_config_sample(void **state)
{
    static struct config_arg a; /* struct config is large */
    char path[PATH_MAX + 32];
    const struct oom_op init = {"config_init", NULL, run_config_init,
                                config_teardown, 0};
    const struct oom_op load = {"config_load(deploy/cardwatch.ini)",
                                config_setup, run_config_load,
                                config_teardown, OOM_MSG};
    const struct oom_op check = {"config_check(deploy/cardwatch.ini)",
                                 config_setup_loaded, run_config_check,
                                 config_teardown, OOM_MSG};

    (void)state;
    snprintf(path, sizeof(path), "%sdeploy/cardwatch.ini", root);
    a.path = path;
    assert_true(oom_loop(&init, &a) >= 1);
    assert_true(oom_loop(&load, &a) >= 4);
    assert_true(oom_loop(&check, &a) >= 2);
}

/* Nine issuers (the issuer array grows twice), prefixes and ranges on
 * every prefix length, Kafka properties. */
static void test_config_many_issuers(void **state)
{
    static struct config_arg a;
    char text[8192];
    size_t n = 0;
    const struct oom_op load = {"config_load(9 issuers)", config_setup,
                                run_config_load, config_teardown, OOM_MSG};
    const struct oom_op check = {"config_check(9 issuers)",
                                 config_setup_loaded, run_config_check,
                                 config_teardown, OOM_MSG};

    (void)state;
    n += (size_t)snprintf(text + n, sizeof(text) - n,
                          "[kafka]\nbrokers = 127.0.0.1:9092\n"
                          "[kafka.consumer]\nfetch.wait.max.ms = 50\n"
                          "[kafka.producer]\nlinger.ms = 5\n"
                          "[redis]\naddress = 127.0.0.1:6379\n"
                          "[card]\nkey_file = /etc/cardwatch/k.key\n");
    for (int i = 0; i < 9; i++) {
        n += (size_t)snprintf(
            text + n, sizeof(text) - n,
            "[issuer bank-%d]\nname = Bank %d\nhome_country = DE\n"
            "bins = 4%d0000, 5%d00000-5%d00099, 6%d000000-6%d000009\n",
            i, i, i, i, i, i, i);
    }
    assert_true(n < sizeof(text));
    a.path = write_file("many.ini", text, 0600);
    assert_true(oom_loop(&load, &a) >= 10);
    assert_true(oom_loop(&check, &a) >= 2);
}

/* getline() allocates inside libc, out of failalloc's reach; a memory
 * limit (RLIMIT_AS) in a child process makes it fail. /dev/zero is one
 * endless line: its buffer grows until the limit. A getline() that fails
 * for want of memory is no end of file: the rest of the file would be
 * ignored and the load "succeed" with part of the config. */
static void test_config_getline_out_of_memory(void **state)
{
#ifdef OOM_LSAN
    (void)state;
    skip(); /* ASan reserves terabytes of address space: no RLIMIT_AS */
#else
    pid_t pid;
    int status;

    (void)state;
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        static struct config c;
        char err[512] = "";
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        struct rlimit rl;
        int rc;

        if (f == NULL || fscanf(f, "%ld", &pages) != 1) {
            exit(3);
        }
        fclose(f);
        rl.rlim_cur = rl.rlim_max =
            (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (64u << 20);
        if (setrlimit(RLIMIT_AS, &rl) != 0 || config_init(&c) != 0) {
            exit(3);
        }
        rc = config_load(&c, "/dev/zero", err, sizeof(err));
        /* exit(), not _exit(): a coverage build writes its counters */
        fprintf(stderr, "config_load(/dev/zero): %d: %s\n", rc, err);
        exit(rc == -1 && strstr(err, "/dev/zero:1: out of memory") != NULL
                  ? 0
                  : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
#endif
}

/* ---- transactions and alerts ---------------------------------------- */

static void make_txn(struct txn *t)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->txn_id, sizeof(t->txn_id), "t-oom-1");
    snprintf(t->pan, sizeof(t->pan), "%s", CARD_A);
    t->pan_len = (uint8_t)strlen(CARD_A);
    snprintf(t->expiry, sizeof(t->expiry), "2712");
    t->amount_minor = 1234;
    snprintf(t->currency, sizeof(t->currency), "EUR");
    t->mcc = 5411;
    snprintf(t->merchant_id, sizeof(t->merchant_id), "m-1");
    snprintf(t->merchant_country, sizeof(t->merchant_country), "FR");
    t->channel = TXN_CHANNEL_ECOMMERCE;
    t->entry_mode = TXN_ENTRY_KEYED;
    t->cvv2_presented = true;
    t->response = TXN_RESPONSE_APPROVED;
    t->event_time_ms = 1700000000000;
    assert_int_equal(txn_validate(t), TXN_OK);
}

static int run_txn_encode_protobuf(void *arg, char *err, size_t errlen)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = txn_encode_protobuf(arg, &buf, &len);

    (void)err;
    (void)errlen;
    free(buf);
    return rc;
}

static void test_txn(void **state)
{
    struct txn t, d;
    static uint8_t *pb;
    size_t pblen;
    char json[1024];
    int n;
    const struct oom_op enc = {"txn_encode_protobuf", NULL,
                               run_txn_encode_protobuf, NULL, 0};

    (void)state;
    make_txn(&t);
    assert_int_equal(oom_loop(&enc, &t), 1);

    /* decoding and validating allocate nothing (txn.h) */
    assert_int_equal(txn_encode_protobuf(&t, &pb, &pblen), 0);
    assert_allocates_nothing(txn_decode_protobuf(pb, pblen, &d));
    assert_int_equal(txn_decode_protobuf(pb, pblen, &d), TXN_OK);
    free(pb);
    n = txn_encode_json(&t, json, sizeof(json));
    assert_true(n > 0);
    assert_allocates_nothing(txn_decode_json(json, (size_t)n, &d));
    assert_int_equal(txn_decode_json(json, (size_t)n, &d), TXN_OK);
    assert_allocates_nothing(txn_validate(&d));
    assert_allocates_nothing(txn_encode_json(&t, json, sizeof(json)));
}

static void make_alert(struct alert *a)
{
    struct txn t;
    struct rule_hit hits[2] = {{"cnp-use", SEVERITY_HIGH},
                               {"velocity", SEVERITY_MEDIUM}};
    struct alert_breach br[2] = {
        {"shop-2021", 1600000000000, 1602591999999,
         BREACH_EL_PAN | BREACH_EL_EXPIRY | BREACH_EL_CVV2},
        {"forum-dump", 1650000000000, 1650086399999, BREACH_EL_PAN}};

    make_txn(&t);
    txn_forget_pan(&t);
    assert_int_equal(alert_build(a, &t, "bank-de", "k1:0123456789abcdef"
                                 "0123456789abcdef", hits, 2, br, 2,
                                 ALERT_MODE_LIVE, 1700000000500,
                                 "default.rules@0123456789ab"),
                     0);
}

static int run_alert_encode_protobuf(void *arg, char *err, size_t errlen)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = alert_encode_protobuf(arg, &buf, &len);

    (void)err;
    (void)errlen;
    free(buf);
    return rc;
}

static void test_alert(void **state)
{
    static struct alert a;
    static struct alert b;
    char json[4096];
    const struct oom_op enc = {"alert_encode_protobuf", NULL,
                               run_alert_encode_protobuf, NULL, 0};

    (void)state;
    make_alert(&a);
    assert_int_equal(oom_loop(&enc, &a), 1);
    /* building and the JSON encoding allocate nothing */
    assert_allocates_nothing(alert_encode_json(&a, json, sizeof(json)));
    assert_true(alert_encode_json(&a, json, sizeof(json)) > 0);
    assert_allocates_nothing(
        alert_build(&b, &(struct txn){.txn_id = "x"}, "", "",
                    &(struct rule_hit){"r", SEVERITY_LOW}, 1, NULL, 0,
                    ALERT_MODE_REPLAY, 1, "v"));
}

/* ---- windows -------------------------------------------------------- */

struct win_arg {
    struct win_entry *entries;
    size_t n;
    struct win_entry cur;
};

static int run_win_aggregate(void *arg, char *err, size_t errlen)
{
    struct win_arg *a = arg;
    const int64_t w[2] = {600000, 3600000};
    struct win_stats out[2];

    (void)err;
    (void)errlen;
    return win_aggregate(a->entries, a->n, &a->cur, w, 2, out);
}

static void test_windows(void **state)
{
    static struct win_arg a;
    const struct oom_op agg = {"win_aggregate(5000 entries)", NULL,
                               run_win_aggregate, NULL, 0};

    (void)state;
    a.n = 5000;
    a.entries = calloc(a.n, sizeof(*a.entries));
    assert_non_null(a.entries);
    for (size_t i = 0; i < a.n; i++) {
        snprintf(a.entries[i].txn_id, sizeof(a.entries[i].txn_id), "t-%zu",
                 i);
        a.entries[i].event_time_ms = 1700000000000 - (int64_t)i * 1000;
        a.entries[i].amount_minor = 100;
        snprintf(a.entries[i].merchant_id, sizeof(a.entries[i].merchant_id),
                 "m-%zu", i % 7);
        snprintf(a.entries[i].merchant_country,
                 sizeof(a.entries[i].merchant_country), "FR");
    }
    a.cur = a.entries[0];
    assert_int_equal(oom_loop(&agg, &a), 1);
    /* up to 4096 entries on the stack (windows.h) */
    a.n = 4095;
    assert_allocates_nothing(run_win_aggregate(&a, NULL, 0));
    free(a.entries);
}

/* ---- breach lists (CSV) --------------------------------------------- */

struct csv_arg {
    const char *path;
    char log[PATH_MAX];
    size_t rows;
};

static int on_row(void *arg, const struct list_row *row)
{
    struct csv_arg *a = arg;

    (void)row;
    a->rows++;
    return 0;
}

/* list_read with stderr captured: its message (it logs) goes to err. */
static int run_list_read(void *arg, char *err, size_t errlen)
{
    struct csv_arg *a = arg;
    struct list_stats st;
    int lfd = open(a->log, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int saved, rc;
    ssize_t n;

    assert_true(lfd >= 0);
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(lfd, STDERR_FILENO), STDERR_FILENO);
    a->rows = 0;
    rc = list_read(a->path, 0, on_row, a, &st);
    fflush(stderr);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    n = pread(lfd, err, errlen - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(lfd);
    if (rc != 0 && strstr(err, a->path) == NULL) {
        fail_msg("list_read: the message does not name the file: %s", err);
    }
    if (rc == 0 && a->rows != 3) {
        fail_msg("list_read: %zu rows instead of 3", a->rows);
    }
    return rc;
}

static void test_listcsv(void **state)
{
    static struct csv_arg a;
    char text[4096];
    char quoted[700];
    size_t n = 0;
    const struct oom_op rd = {"list_read(20 columns, long field)", NULL,
                              run_list_read, NULL, OOM_MSG};

    (void)state;
    /* 20 columns: the field offsets grow past 16; a 600-byte quoted field:
     * the record buffer grows from 256 to 1024 bytes */
    memset(quoted, 'x', 600);
    quoted[600] = '\0';
    n += (size_t)snprintf(text + n, sizeof(text) - n, "pan,expiry");
    for (int i = 3; i <= 20; i++) {
        n += (size_t)snprintf(text + n, sizeof(text) - n, ",c%d", i);
    }
    n += (size_t)snprintf(
        text + n, sizeof(text) - n,
        "\n" CARD_A ",2712\n" CARD_B ",2801,\"%s\"\n"
        "\"" CARD_A "\",,a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r\n",
        quoted);
    assert_true(n < sizeof(text));
    a.path = write_file("list.csv", text, 0600);
    a.path = strdup(a.path);
    assert_non_null(a.path);
    snprintf(a.log, sizeof(a.log), "%s/list.log", tmpdir);
    assert_true(oom_loop(&rd, &a) >= 4);
    free((char *)a.path);
}

/* ---- routes --------------------------------------------------------- */

static int run_route_new(void *arg, char *err, size_t errlen)
{
    struct route_table *rt = route_new();

    (void)arg;
    (void)err;
    (void)errlen;
    route_destroy(rt);
    return rt != NULL ? 0 : -1;
}

/* Every prefix length; merged at the front, the middle and the end of a
 * level; a range over prefixes already held by the same issuer. */
static const struct {
    const char *spec;
    int idx;
} route_specs[] = {
    {"411111", 0},          {"41111100-41111199", 1},
    {"4222222", 2},         {"5100000-5100099", 3},
    {"411112", 4},          {"41111150-41111160", 1},
    {"400000-400009", 5},   {"4222223", 6},
};

static int run_route_adds(void *arg, char *err, size_t errlen)
{
    struct route_table *rt = route_new();
    size_t n_specs = sizeof(route_specs) / sizeof(route_specs[0]);
    int rc = rt != NULL ? 0 : -1;

    (void)arg;
    if (rt == NULL) {
        snprintf(err, errlen, "route_new: out of memory");
    }
    for (size_t i = 0; rc == 0 && i < n_specs; i++) {
        rc = route_add(rt, route_specs[i].spec, route_specs[i].idx, err,
                       errlen);
    }
    if (rc == 0 && route_count(rt) != 1 + 100 + 1 + 100 + 1 + 10 + 1) {
        fail_msg("route table holds %zu prefixes", route_count(rt));
    }
    route_destroy(rt);
    return rc;
}

static int run_route_prefixes(void *arg, char *err, size_t errlen)
{
    struct route_table *rt = arg;
    char *out[8];
    size_t k = route_prefixes(rt, out, 8);
    long n = failalloc_count();

    (void)err;
    (void)errlen;
    /* fewer on allocation failure: exactly those before the failure */
    if (failalloc_failed() && k != (size_t)n - 1) {
        fail_msg("route_prefixes: %zu prefixes with allocation %ld failing",
                 k, n);
    }
    for (size_t i = 0; i < k; i++) {
        free(out[i]);
    }
    return k == 8 ? 0 : -1;
}

static void test_route(void **state)
{
    static struct route_table *rt;
    char err[256];
    const struct oom_op mk = {"route_new", NULL, run_route_new, NULL, 0};
    const struct oom_op adds = {"route_add(8 specs)", NULL, run_route_adds,
                                NULL, OOM_MSG};
    const struct oom_op pre = {"route_prefixes", NULL, run_route_prefixes,
                               NULL, 0};

    (void)state;
    assert_int_equal(oom_loop(&mk, NULL), 1);
    assert_true(oom_loop(&adds, NULL) >= 8);
    rt = route_new();
    assert_non_null(rt);
    assert_int_equal(route_add(rt, "41111100-41111109", 0, err, sizeof(err)),
                     0);
    assert_int_equal(oom_loop(&pre, rt), 8);
    /* lookups allocate nothing (route.h) */
    assert_allocates_nothing(route_lookup(rt, CARD_A, strlen(CARD_A)));
    route_destroy(rt);
}

/* ---- breaches, tally ------------------------------------------------ */

static void test_breach_allocates_nothing(void **state)
{
    uint32_t mask;
    int64_t ms;
    char err[128], buf[128];

    (void)state;
    assert_allocates_nothing(breach_elements_parse(
        "pan,expiry,cvv2,name,address,phone,email", &mask, err, sizeof(err)));
    assert_allocates_nothing(breach_elements_format(mask, buf, sizeof(buf)));
    assert_allocates_nothing(breach_date_parse("2024-02-29", 1, &ms));
    assert_allocates_nothing(breach_id_valid("shop-2021"));
}

static int run_tally_new(void *arg, char *err, size_t errlen)
{
    struct tally *t = tally_new();

    (void)arg;
    (void)err;
    (void)errlen;
    tally_destroy(t);
    return t != NULL ? 0 : -1;
}

/* 1500 alerts on distinct cards (the card table grows twice), 20 rules
 * and 17 issuers (both name arrays grow past 16). */
static int run_tally_alerts(void *arg, char *err, size_t errlen)
{
    struct tally *t = tally_new();
    struct alert *a = arg;
    int rc = t != NULL ? 0 : -1;

    (void)err;
    (void)errlen;
    for (int i = 0; rc == 0 && i < 1500; i++) {
        snprintf(a->issuer_id, sizeof(a->issuer_id), "bank-%d", i % 17);
        snprintf(a->card_fingerprint, sizeof(a->card_fingerprint),
                 "k1:%032d", i);
        snprintf(a->hits[0].rule_id, sizeof(a->hits[0].rule_id), "rule-%d",
                 i % 20);
        a->n_hits = 1;
        a->severity = SEVERITY_HIGH;
        snprintf(a->alert_id, sizeof(a->alert_id), "%032x", i);
        rc = tally_alert(t, a) < 0 ? -1 : 0;
    }
    if (rc == 0 && (tally_cards(t) != 1500 || tally_alerts(t) != 1500)) {
        fail_msg("tally: %llu cards, %llu alerts",
                 (unsigned long long)tally_cards(t),
                 (unsigned long long)tally_alerts(t));
    }
    tally_destroy(t);
    return rc;
}

static void test_tally(void **state)
{
    static struct alert a;
    const struct oom_op mk = {"tally_new", NULL, run_tally_new, NULL, 0};
    const struct oom_op alerts = {"tally_alert(1500 cards)", NULL,
                                  run_tally_alerts, NULL, 0};

    (void)state;
    assert_int_equal(oom_loop(&mk, NULL), 3);
    assert_true(oom_loop(&alerts, &a) >= 40);
}

/* ---- card keys ------------------------------------------------------ */

static const uint8_t raw_key[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                    12, 13, 14, 15, 16, 17};

static int run_card_key_new(void *arg, char *err, size_t errlen)
{
    struct card_key *k = card_key_new("k1", raw_key, sizeof(raw_key));

    (void)arg;
    (void)err;
    (void)errlen;
    card_key_destroy(k);
    return k != NULL ? 0 : -1;
}

static int run_card_key_load(void *arg, char *err, size_t errlen)
{
    struct card_key *k = card_key_load(arg, err, errlen);

    card_key_destroy(k);
    return k != NULL ? 0 : -1;
}

static int run_card_key_derive(void *arg, char *err, size_t errlen)
{
    struct card_key *k = card_key_derive(arg, "dead-letter");

    (void)err;
    (void)errlen;
    card_key_destroy(k);
    return k != NULL ? 0 : -1;
}

static void test_card(void **state)
{
    static struct card_key *k;
    char fp[CARD_FP_SIZE];
    const char *path;
    const struct oom_op mk = {"card_key_new", NULL, run_card_key_new, NULL,
                              0};
    const struct oom_op load = {"card_key_load", NULL, run_card_key_load,
                                NULL, OOM_MSG};
    const struct oom_op derive = {"card_key_derive", NULL,
                                  run_card_key_derive, NULL, 0};

    (void)state;
    assert_int_equal(oom_loop(&mk, NULL), 1);
    path = write_file("k.key",
                      "# test key\nk1 000102030405060708090a0b0c0d0e0f\n",
                      0600);
    assert_int_equal(oom_loop(&load, (void *)path), 2);
    k = card_key_new("k1", raw_key, sizeof(raw_key));
    assert_non_null(k);
    assert_int_equal(oom_loop(&derive, k), 1);
    /* fingerprints allocate nothing */
    assert_allocates_nothing(card_fingerprint(k, CARD_A, strlen(CARD_A), fp));
    card_key_destroy(k);
}

/* ---- offsets, metrics ---------------------------------------------- */

static int run_offsets_new(void *arg, char *err, size_t errlen)
{
    struct offsets *o = offsets_new();

    (void)arg;
    (void)err;
    (void)errlen;
    offsets_destroy(o);
    return o != NULL ? 0 : -1;
}

/* 3 partitions of 2100 messages each: the partition array grows twice,
 * each ring from 1024 to 4096 entries. */
static int run_offsets_register(void *arg, char *err, size_t errlen)
{
    struct offsets *o = offsets_new();
    struct offsets_ticket tk;
    int rc = o != NULL ? 0 : -1;

    (void)arg;
    (void)err;
    (void)errlen;
    for (int64_t off = 0; rc == 0 && off < 2100; off++) {
        for (int32_t part = 0; rc == 0 && part < 3; part++) {
            rc = offsets_register(o, part, off, &tk);
        }
    }
    if (rc == 0 && offsets_in_flight(o) != 3 * 2100) {
        fail_msg("offsets: %zu in flight", offsets_in_flight(o));
    }
    offsets_destroy(o);
    return rc;
}

static int run_metrics_new(void *arg, char *err, size_t errlen)
{
    struct metrics *m = metrics_new();

    (void)arg;
    (void)err;
    (void)errlen;
    metrics_destroy(m);
    return m != NULL ? 0 : -1;
}

/* 20 rules on 20 issuers (each label list grows past 16), then the text. */
static int run_metrics_counts(void *arg, char *err, size_t errlen)
{
    struct metrics *m = arg;
    char issuer[16], rule[16];
    int rc = 0;

    (void)err;
    (void)errlen;
    for (int i = 0; rc == 0 && i < 20; i++) {
        snprintf(issuer, sizeof(issuer), "bank-%d", i);
        snprintf(rule, sizeof(rule), "rule-%d", i);
        rc = metrics_alert(m, issuer, rule);
        rc = rc != 0 ? rc : metrics_alert_issuer(m, issuer);
        rc = rc != 0 ? rc : metrics_rule_suppressed(m, rule);
    }
    return rc;
}

static void metrics_setup(void *arg)
{
    struct metrics **m = arg;

    *m = metrics_new();
    assert_non_null(*m);
}

static void metrics_teardown(void *arg)
{
    struct metrics **m = arg;

    metrics_destroy(*m);
    *m = NULL;
}

static int run_metrics_counts_ref(void *arg, char *err, size_t errlen)
{
    return run_metrics_counts(*(struct metrics **)arg, err, errlen);
}

static int run_metrics_render(void *arg, char *err, size_t errlen)
{
    char *text = NULL;
    long n = metrics_render(arg, "extra_metric 1\n", &text);

    (void)err;
    (void)errlen;
    if (n >= 0 && strstr(text, "extra_metric 1") == NULL) {
        fail_msg("metrics_render: the text lacks the extra lines");
    }
    free(text);
    return n >= 0 ? 0 : -1;
}

static void test_offsets_metrics(void **state)
{
    static struct metrics *m;
    const struct oom_op onew = {"offsets_new", NULL, run_offsets_new, NULL,
                                0};
    const struct oom_op oreg = {"offsets_register(3 x 2100)", NULL,
                                run_offsets_register, NULL, 0};
    const struct oom_op mnew = {"metrics_new", NULL, run_metrics_new, NULL,
                                0};
    const struct oom_op mcount = {"metrics_alert(20 x 20)", metrics_setup,
                                  run_metrics_counts_ref, metrics_teardown,
                                  0};
    const struct oom_op mrender = {"metrics_render", NULL, run_metrics_render,
                                   NULL, 0};

    (void)state;
    assert_int_equal(oom_loop(&onew, NULL), 1);
    assert_true(oom_loop(&oreg, NULL) >= 10);
    assert_int_equal(oom_loop(&mnew, NULL), 1);
    assert_true(oom_loop(&mcount, &m) >= 6);
    m = metrics_new();
    assert_non_null(m);
    assert_int_equal(run_metrics_counts(m, NULL, 0), 0);
    assert_true(oom_loop(&mrender, m) >= 1);
    metrics_destroy(m);
    m = NULL;
}

/* ---- the replay reader, the generator ------------------------------- */

static int run_reader_open(void *arg, char *err, size_t errlen)
{
    struct reader *r = reader_open(arg, READER_AUTO, 0, err, errlen);
    struct reader_rec rec[4];
    size_t n = 0;
    int got = -1;

    if (r != NULL) {
        got = reader_next_batch(r, rec, 4, &n);
        if (got != 1 || n != 2) {
            fail_msg("reader: %d, %zu records: %s", got, n, reader_error(r));
        }
    }
    reader_close(r);
    return r != NULL ? 0 : -1;
}

static void test_reader(void **state)
{
    static char path[PATH_MAX];
    gzFile gz;
    const char lines[] = "{\"txn_id\":\"a\"}\n{\"txn_id\":\"b\"}\n";
    const struct oom_op plain = {"reader_open(JSON lines)", NULL,
                                 run_reader_open, NULL, OOM_MSG};
    const struct oom_op gzip = {"reader_open(gzip)", NULL, run_reader_open,
                                NULL, OOM_MSG};

    (void)state;
    snprintf(path, sizeof(path), "%s", write_file("in.jsonl", lines, 0600));
    assert_int_equal(oom_loop(&plain, path), 3);
    snprintf(path, sizeof(path), "%s/in.jsonl.gz", tmpdir);
    gz = gzopen(path, "wb");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, lines, sizeof(lines) - 1),
                     (int)sizeof(lines) - 1);
    assert_int_equal(gzclose(gz), Z_OK);
    assert_int_equal(oom_loop(&gzip, path), 4);
}

static int run_gen_new(void *arg, char *err, size_t errlen)
{
    static const char *const prefixes[] = {"400000", "5100001", "37000012"};
    struct gen_opts o = {
        .seed = 7,
        .prefixes = prefixes,
        .n_prefixes = 3,
        .start_ms = 1722470400000LL,
        .step_ms = 1000,
        .clean_pool = 100,
    };
    struct gen *g = gen_new(&o);

    (void)arg;
    (void)err;
    (void)errlen;
    gen_destroy(g);
    return g != NULL ? 0 : -1;
}

static void test_gen(void **state)
{
    const struct oom_op mk = {"gen_new", NULL, run_gen_new, NULL, 0};

    (void)state;
    assert_int_equal(oom_loop(&mk, NULL), 4);
}

/* ---- the feed's pure parts ------------------------------------------ */

static void tokens_setup(void *arg)
{
    struct config *c = arg;
    char err[256];
    char h1[FEED_HASH_HEX + 1], h2[FEED_HASH_HEX + 1], both[200];

    assert_int_equal(config_init(c), 0);
    assert_int_equal(feed_token_hash_hex("token-a", 7, h1), 0);
    assert_int_equal(feed_token_hash_hex("token-b", 7, h2), 0);
    snprintf(both, sizeof(both), "%s,%s", h1, h2);
    if (config_set(c, "issuer acme", "token_sha256", both, err,
                   sizeof(err)) != 0) {
        fail_msg("%s", err);
    }
}

static void tokens_teardown(void *arg)
{
    config_free(arg);
}

static int run_feed_tokens_new(void *arg, char *err, size_t errlen)
{
    struct feed_tokens *t = feed_tokens_new(arg, err, errlen);

    if (t != NULL && feed_tokens_count(t) != 2) {
        fail_msg("feed_tokens: %zu hashes", feed_tokens_count(t));
    }
    feed_tokens_destroy(t);
    return t != NULL ? 0 : -1;
}

static int run_feed_throttle(void *arg, char *err, size_t errlen)
{
    struct feed_throttle *t = feed_throttle_new(1000, 5, 60, 42);
    uint8_t key[FEED_PEER_KEY];
    char addr[32];
    int rc = t != NULL ? 0 : -1;

    (void)arg;
    (void)err;
    (void)errlen;
    /* 200 peers: the slots grow from 64 to 256 */
    for (int i = 0; rc == 0 && i < 200; i++) {
        snprintf(addr, sizeof(addr), "10.0.%d.%d", i / 250, i % 250);
        assert_int_equal(feed_peer_key(addr, key), 0);
        rc = feed_throttle_fail(t, key, 1000000000ull);
    }
    if (rc == 0 && feed_throttle_peers(t) != 200) {
        fail_msg("feed_throttle: %zu peers", feed_throttle_peers(t));
    }
    feed_throttle_destroy(t);
    return rc;
}

static int run_feed_stats(void *arg, char *err, size_t errlen)
{
    struct feed_stats st;
    char field[64];
    int rc = 0;

    (void)arg;
    (void)err;
    (void)errlen;
    memset(&st, 0, sizeof(st));
    /* 40 rules: the rule array grows from 8 to 64 */
    for (int i = 0; rc == 0 && i < 20; i++) {
        int n = snprintf(field, sizeof(field), "rule:rule-%d", i);
        rc = feed_stats_add(&st, field, (size_t)n, "3", 1);
        n = snprintf(field, sizeof(field), "rule_outcome:rule-%d:"
                     "confirmed_fraud", 20 + i);
        rc = rc != 0 ? rc : feed_stats_add(&st, field, (size_t)n, "1", 1);
    }
    if (rc == 0 && st.n_rules != 40) {
        fail_msg("feed_stats: %zu rules", st.n_rules);
    }
    feed_stats_free(&st);
    return rc;
}

static void test_feed_auth(void **state)
{
    static struct config c;
    const struct oom_op tokens = {"feed_tokens_new", tokens_setup,
                                  run_feed_tokens_new, tokens_teardown,
                                  OOM_MSG};
    /* a failed slot table leaves longer chains (feed_token.c) */
    const struct oom_op throttle = {"feed_throttle_fail(200 peers)", NULL,
                                    run_feed_throttle, NULL, OOM_DEGRADES};
    const struct oom_op stats = {"feed_stats_add(40 rules)", NULL,
                                 run_feed_stats, NULL, 0};

    (void)state;
    assert_int_equal(oom_loop(&tokens, &c), 2);
    assert_true(oom_loop(&throttle, NULL) >= 200);
    assert_int_equal(oom_loop(&stats, NULL), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_default_pack),
        cmocka_unit_test(test_rules_every_construct),
        cmocka_unit_test(test_config_sample),
        cmocka_unit_test(test_config_many_issuers),
        cmocka_unit_test(test_config_getline_out_of_memory),
        cmocka_unit_test(test_txn),
        cmocka_unit_test(test_alert),
        cmocka_unit_test(test_windows),
        cmocka_unit_test(test_listcsv),
        cmocka_unit_test(test_route),
        cmocka_unit_test(test_breach_allocates_nothing),
        cmocka_unit_test(test_tally),
        cmocka_unit_test(test_card),
        cmocka_unit_test(test_offsets_metrics),
        cmocka_unit_test(test_reader),
        cmocka_unit_test(test_gen),
        cmocka_unit_test(test_feed_auth),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
