/* Unit tests for log.c: log_limit_ok(), the limit on repeats of one
 * message (a Redis refusal retried every 200 ms is logged once a
 * minute); and the lines themselves, with stderr redirected to a file:
 * the JSON format (parsed back with jansson, an independent parser), the
 * journald priority prefix, level filtering, the 1 KiB cut and a
 * command's own reports. */
#include <fcntl.h>
#include <jansson.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static void test_repeat_is_limited(void **state)
{
    (void)state;
    struct log_limit l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(log_limit_ok(&l, "NOPERM evalsha", 60), 1);
    assert_int_equal(log_limit_ok(&l, "NOPERM evalsha", 60), 0);
    assert_int_equal(log_limit_ok(&l, "NOPERM evalsha", 60), 0);
}

static void test_new_text_is_logged(void **state)
{
    (void)state;
    struct log_limit l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(log_limit_ok(&l, "NOPERM evalsha", 60), 1);
    assert_int_equal(log_limit_ok(&l, "NOPERM eval", 60), 1);
    assert_int_equal(log_limit_ok(&l, "NOPERM evalsha", 60), 1);
    assert_int_equal(log_limit_ok(&l, "NOPERM evalsha", 60), 0);
}

static void test_reset_and_interval(void **state)
{
    (void)state;
    struct log_limit l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(log_limit_ok(&l, "OOM", 60), 1);
    log_limit_reset(&l);
    assert_int_equal(log_limit_ok(&l, "OOM", 60), 1);
    assert_int_equal(log_limit_ok(&l, "OOM", 60), 0);
    /* every_s 0: the interval has always passed */
    assert_int_equal(log_limit_ok(&l, "OOM", 0), 1);
    assert_int_equal(log_limit_ok(&l, "OOM", 0), 1);
}

static void test_long_text_compares_its_kept_prefix(void **state)
{
    (void)state;
    struct log_limit l;
    memset(&l, 0, sizeof(l));
    char a[400], b[400];
    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[350] = 'y'; /* differs after what is kept: the same message */
    assert_int_equal(log_limit_ok(&l, a, 60), 1);
    assert_int_equal(log_limit_ok(&l, b, 60), 0);
}

/* ---- the lines: stderr captured into a file ---- */

struct cap {
    int fd;    /* the file stderr goes to */
    int saved; /* the real stderr */
    char path[64];
};

/* Points stderr at a new file; then sets fmt and lvl (log_set_format
 * after the redirection: the journald check looks at the new stderr). */
static void cap_begin(struct cap *c, enum log_format fmt, enum log_level lvl)
{
    snprintf(c->path, sizeof(c->path), "/tmp/cw_test_log_XXXXXX");
    c->fd = mkstemp(c->path);
    assert_true(c->fd >= 0);
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(c->fd, STDERR_FILENO), STDERR_FILENO);
    log_set_format(fmt);
    log_set_level(lvl);
}

/* Restores stderr and the defaults; returns what was written (a
 * NUL-terminated copy the caller frees). */
static char *cap_end(struct cap *c)
{
    fflush(stderr);
    assert_int_equal(dup2(c->saved, STDERR_FILENO), STDERR_FILENO);
    close(c->saved);
    log_set_format(LOG_FORMAT_PLAIN);
    log_set_level(LOG_INFO);
    log_set_progress_active(0);
    off_t n = lseek(c->fd, 0, SEEK_END);
    assert_true(n >= 0);
    char *out = malloc((size_t)n + 1);
    assert_non_null(out);
    assert_int_equal(pread(c->fd, out, (size_t)n, 0), n);
    out[n] = '\0';
    close(c->fd);
    unlink(c->path);
    return out;
}

/* Sets JOURNAL_STREAM to the device and inode of the capture file, as
 * systemd does for a service's stderr. */
static void set_journal_stream(const struct cap *c)
{
    struct stat st;
    char v[64];
    assert_int_equal(fstat(c->fd, &st), 0);
    snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    assert_int_equal(setenv("JOURNAL_STREAM", v, 1), 0);
}

static void assert_matches(const char *s, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, s, 0, NULL, 0);
    regfree(&re);
    if (rc != 0) {
        fail_msg("'%s' does not match /%s/", s, pattern);
    }
}

/* Parses one JSON line (line[0..len), no newline) and checks that it is
 * an object of exactly ts, level, module, msg, in that order, with ts in
 * the documented form, and the level and module given. Returns msg (a
 * copy the caller frees). */
static char *json_line(const char *line, size_t len, const char *level,
                       const char *module, size_t *msg_len)
{
    json_error_t jerr;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL) {
        fail_msg("not JSON (%s): %.*s", jerr.text, (int)len, line);
    }
    assert_true(json_is_object(o));
    assert_int_equal(json_object_size(o), 4);
    assert_true(strncmp(line, "{\"ts\":\"", 7) == 0);
    assert_non_null(strstr(line, "\",\"level\":\""));
    const char *ts = json_string_value(json_object_get(o, "ts"));
    assert_non_null(ts);
    assert_matches(ts, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                       "[0-9]{2}\\.[0-9]{3}Z$");
    assert_string_equal(json_string_value(json_object_get(o, "level")), level);
    assert_string_equal(json_string_value(json_object_get(o, "module")),
                        module);
    json_t *m = json_object_get(o, "msg");
    assert_true(json_is_string(m));
    *msg_len = json_string_length(m);
    char *msg = malloc(*msg_len + 1);
    assert_non_null(msg);
    memcpy(msg, json_string_value(m), *msg_len + 1);
    json_decref(o);
    return msg;
}

/* A JSON line: the four fields, one line, a message that round-trips
 * through a JSON parser unchanged when it is valid UTF-8 with quotes,
 * backslashes and control characters; no raw control byte on the line. */
static void test_json_line_and_escaping(void **state)
{
    (void)state;
    static const char text[] = "say \"hi\" \\ path C:\\x\nnext\tline\r\x01"
                               "\x1f del\x7f caf\xc3\xa9 \xe2\x82\xac "
                               "\xf0\x9f\x98\x80 end";
    struct cap c;
    unsetenv("JOURNAL_STREAM");
    cap_begin(&c, LOG_FORMAT_JSON, LOG_INFO);
    log_info("redis", "%s", text);
    char *out = cap_end(&c);
    size_t n = strlen(out);
    assert_true(n > 1 && out[n - 1] == '\n');
    assert_null(memchr(out, '\n', n - 1)); /* one line */
    for (size_t i = 0; i + 1 < n; i++) {
        assert_true((unsigned char)out[i] >= 0x20);
    }
    assert_non_null(strstr(out, "\\u0001\\u001f"));
    assert_non_null(strstr(out, "\\\"hi\\\" \\\\ path"));
    size_t mlen;
    char *msg = json_line(out, n - 1, "info", "redis", &mlen);
    assert_int_equal(mlen, strlen(text));
    assert_memory_equal(msg, text, mlen);
    free(msg);
    free(out);
}

/* Bytes that are not valid UTF-8 (a stray 0xff, a lead byte followed by
 * ASCII, a UTF-16 surrogate, an overlong '/') become U+FFFD, one per
 * byte, and the line is still valid JSON; a NUL-free message passes. */
static void test_json_invalid_utf8(void **state)
{
    (void)state;
    struct cap c;
    unsetenv("JOURNAL_STREAM");
    cap_begin(&c, LOG_FORMAT_JSON, LOG_INFO);
    log_warn("load", "a\xff" "b\xc3(c\xed\xa0\x80" "d\xc0\xaf" "e");
    char *out = cap_end(&c);
    size_t mlen;
    char *msg = json_line(out, strlen(out) - 1, "warn", "load", &mlen);
    static const char want[] = "a\xef\xbf\xbd" "b\xef\xbf\xbd(c"
                               "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                               "d\xef\xbf\xbd\xef\xbf\xbd" "e";
    assert_string_equal(msg, want);
    assert_non_null(strstr(out, "a\\ufffdb\\ufffd(c"));
    free(msg);
    free(out);
}

/* Logs msg (one %s) in fmt and returns the message as written: the JSON
 * msg field, or what follows "module: " on the plain line. */
static char *logged_msg(enum log_format fmt, const char *msg, size_t *len)
{
    struct cap c;
    unsetenv("JOURNAL_STREAM");
    cap_begin(&c, fmt, LOG_INFO);
    log_error("cut", "%s", msg);
    char *out = cap_end(&c);
    size_t n = strlen(out);
    assert_true(n > 0 && out[n - 1] == '\n');
    if (fmt == LOG_FORMAT_JSON) {
        char *m = json_line(out, n - 1, "error", "cut", len);
        free(out);
        return m;
    }
    char *p = strstr(out, " ERROR cut: ");
    assert_non_null(p);
    p += strlen(" ERROR cut: ");
    *len = (size_t)(out + n - 1 - p);
    memmove(out, p, *len);
    out[*len] = '\0';
    return out;
}

/* The 1 KiB cut: a long message keeps its first 1023 bytes in both
 * formats; the cut comes before escaping (1023 quotes, each escaped,
 * parse back whole) and never splits a UTF-8 sequence (a euro sign or an
 * e-acute cut in two is left out, not turned into U+FFFD). */
static void test_long_message_cut(void **state)
{
    (void)state;
    char big[2100];
    for (int f = LOG_FORMAT_PLAIN; f <= LOG_FORMAT_JSON; f++) {
        size_t len;
        memset(big, 'x', 2000);
        big[2000] = '\0';
        char *m = logged_msg((enum log_format)f, big, &len);
        assert_int_equal(len, 1023);
        assert_memory_equal(m, big, 1023);
        free(m);

        memset(big, '"', 2000);
        m = logged_msg((enum log_format)f, big, &len);
        assert_int_equal(len, 1023);
        assert_memory_equal(m, big, 1023);
        free(m);

        memset(big, 'x', 1021); /* the euro's 3 bytes at 1021..1023 */
        strcpy(big + 1021, "\xe2\x82\xac\xe2\x82\xac");
        m = logged_msg((enum log_format)f, big, &len);
        assert_int_equal(len, 1021);
        free(m);

        memset(big, 'x', 1022); /* e-acute's 2 bytes at 1022..1023 */
        strcpy(big + 1022, "\xc3\xa9yy");
        m = logged_msg((enum log_format)f, big, &len);
        assert_int_equal(len, 1022);
        free(m);

        memset(big, 'x', 1020); /* a whole euro sign ends at 1023: kept */
        strcpy(big + 1020, "\xe2\x82\xac" "zz");
        m = logged_msg((enum log_format)f, big, &len);
        assert_int_equal(len, 1023);
        assert_memory_equal(m + 1020, "\xe2\x82\xac", 3);
        free(m);
    }
}

/* Under journald (JOURNAL_STREAM names stderr's device:inode) a plain
 * line is "<prio>LEVEL module: msg" with no timestamp, and a JSON line
 * gets the prefix ahead of the object; when JOURNAL_STREAM names another
 * file (stderr redirected by a parent) or is malformed, lines are as
 * they are outside journald. */
static void test_journald_prefix(void **state)
{
    (void)state;
    struct cap c;
    cap_begin(&c, LOG_FORMAT_PLAIN, LOG_DEBUG);
    set_journal_stream(&c);
    log_set_format(LOG_FORMAT_PLAIN); /* the check is cached */
    log_debug("rules", "d %d", 1);
    log_info("redis", "connected");
    log_warn("redis", "slow");
    log_error("kafka", "gone");
    log_report(LOG_ERROR, "check", "bad key");
    char *out = cap_end(&c);
    assert_string_equal(out, "<7>DEBUG rules: d 1\n"
                             "<6>INFO redis: connected\n"
                             "<4>WARN redis: slow\n"
                             "<3>ERROR kafka: gone\n"
                             "<3>cardwatch check: bad key\n");
    free(out);

    cap_begin(&c, LOG_FORMAT_JSON, LOG_INFO);
    set_journal_stream(&c);
    log_set_format(LOG_FORMAT_JSON);
    log_warn("redis", "slow");
    out = cap_end(&c);
    assert_true(strncmp(out, "<4>{", 4) == 0);
    size_t mlen;
    char *msg = json_line(out + 3, strlen(out) - 4, "warn", "redis", &mlen);
    assert_string_equal(msg, "slow");
    free(msg);
    free(out);

    static const char *const not_ours[] = {"1:1", "garbage", "", NULL};
    for (size_t i = 0; i < 4; i++) {
        cap_begin(&c, LOG_FORMAT_PLAIN, LOG_INFO);
        if (not_ours[i] != NULL) {
            setenv("JOURNAL_STREAM", not_ours[i], 1);
        } else { /* right numbers, trailing junk */
            set_journal_stream(&c);
            char v[80];
            snprintf(v, sizeof(v), "%sx", getenv("JOURNAL_STREAM"));
            setenv("JOURNAL_STREAM", v, 1);
        }
        log_set_format(LOG_FORMAT_PLAIN);
        log_warn("redis", "slow");
        out = cap_end(&c);
        assert_matches(out, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\."
                            "[0-9]{3}Z WARN redis: slow\n$");
        free(out);
    }
    unsetenv("JOURNAL_STREAM");
}

/* Level filtering is the same in both formats: below the level nothing
 * is written; a command's report (log_report) is never filtered. */
static void test_level_filtering(void **state)
{
    (void)state;
    unsetenv("JOURNAL_STREAM");
    for (int f = LOG_FORMAT_PLAIN; f <= LOG_FORMAT_JSON; f++) {
        struct cap c;
        cap_begin(&c, (enum log_format)f, LOG_WARN);
        log_debug("m", "one");
        log_info("m", "two");
        log_warn("m", "three");
        log_error("m", "four");
        log_set_level(LOG_ERROR);
        log_warn("m", "five");
        log_report(LOG_WARN, NULL, "six");
        log_set_level(LOG_DEBUG);
        log_debug("m", "seven");
        char *out = cap_end(&c);
        static const char *const want[] = {"three", "four", "six", "seven"};
        static const char *const lv[] = {"warn", "error", "warn", "debug"};
        static const char *const plain[] = {
            " WARN m: three", " ERROR m: four", "cardwatch: six",
            " DEBUG m: seven"};
        char *line = out;
        for (size_t i = 0; i < 4; i++) {
            char *nl = strchr(line, '\n');
            assert_non_null(nl);
            *nl = '\0';
            if (f == LOG_FORMAT_JSON) {
                size_t mlen;
                char *m = json_line(line, (size_t)(nl - line), lv[i],
                                    i == 2 ? "cardwatch" : "m", &mlen);
                assert_string_equal(m, want[i]);
                free(m);
            } else {
                const char *p = strstr(line, plain[i]);
                assert_non_null(p);
                assert_string_equal(p, plain[i]);
            }
            line = nl + 1;
        }
        assert_string_equal(line, "");
        free(out);
    }
}

/* A command's own report: plain exactly "cardwatch CMD: msg" (the form
 * scripts and tests grep), JSON with module CMD. */
static void test_report(void **state)
{
    (void)state;
    struct cap c;
    unsetenv("JOURNAL_STREAM");
    cap_begin(&c, LOG_FORMAT_PLAIN, LOG_INFO);
    log_report(LOG_ERROR, "check", "key file %s: %s", "k", "missing");
    log_report(LOG_ERROR, NULL, "no configuration");
    char *out = cap_end(&c);
    assert_string_equal(out, "cardwatch check: key file k: missing\n"
                             "cardwatch: no configuration\n");
    free(out);
    cap_begin(&c, LOG_FORMAT_JSON, LOG_INFO);
    log_report(LOG_ERROR, "check", "a \"quoted\" path");
    out = cap_end(&c);
    size_t mlen;
    char *m = json_line(out, strlen(out) - 1, "error", "check", &mlen);
    assert_string_equal(m, "a \"quoted\" path");
    free(m);
    free(out);
}

/* With a progress line on the terminal a plain line first clears it; a
 * JSON line never carries the terminal codes, and commands draw no
 * progress line at all with JSON (log_progress_allowed). */
static void test_progress_and_json(void **state)
{
    (void)state;
    struct cap c;
    unsetenv("JOURNAL_STREAM");
    cap_begin(&c, LOG_FORMAT_PLAIN, LOG_INFO);
    assert_int_equal(log_progress_allowed(), 1);
    log_set_progress_active(1);
    log_info("run", "plain");
    char *out = cap_end(&c);
    assert_true(strncmp(out, "\r\033[K", 4) == 0);
    free(out);
    cap_begin(&c, LOG_FORMAT_JSON, LOG_INFO);
    assert_int_equal(log_progress_allowed(), 0);
    log_set_progress_active(1);
    log_info("run", "json");
    out = cap_end(&c);
    size_t mlen;
    char *m = json_line(out, strlen(out) - 1, "info", "run", &mlen);
    assert_string_equal(m, "json");
    free(m);
    free(out);
}

/* The option and [log] values: exactly these words. */
static void test_parse_names(void **state)
{
    (void)state;
    enum log_format f = LOG_FORMAT_JSON;
    assert_int_equal(log_format_parse("plain", &f), 0);
    assert_int_equal(f, LOG_FORMAT_PLAIN);
    assert_int_equal(log_format_parse("json", &f), 0);
    assert_int_equal(f, LOG_FORMAT_JSON);
    assert_int_equal(log_format_parse("JSON", &f), -1);
    assert_int_equal(log_format_parse("", &f), -1);
    log_set_format(LOG_FORMAT_JSON);
    assert_int_equal(log_get_format(), LOG_FORMAT_JSON);
    log_set_format(LOG_FORMAT_PLAIN);
    enum log_level l = LOG_INFO;
    assert_int_equal(log_level_parse("error", &l), 0);
    assert_int_equal(l, LOG_ERROR);
    assert_int_equal(log_level_parse("warning", &l), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repeat_is_limited),
        cmocka_unit_test(test_new_text_is_logged),
        cmocka_unit_test(test_reset_and_interval),
        cmocka_unit_test(test_long_text_compares_its_kept_prefix),
        cmocka_unit_test(test_json_line_and_escaping),
        cmocka_unit_test(test_json_invalid_utf8),
        cmocka_unit_test(test_long_message_cut),
        cmocka_unit_test(test_journald_prefix),
        cmocka_unit_test(test_level_filtering),
        cmocka_unit_test(test_report),
        cmocka_unit_test(test_progress_and_json),
        cmocka_unit_test(test_parse_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
