/* log.c - see log.h.
 *
 * A line is composed whole in a buffer (with text.h's bounded JSON
 * writer, which also escapes msg in JSON) and written with one fwrite to
 * the unbuffered stderr, so it reaches the file, pipe or journald socket
 * in one write(2). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include "clock.h"
#include "text.h"

enum {
    MSG_MAX = 1024, /* a message is cut to MSG_MAX - 1 bytes */
    /* the longest line: a message of MSG_MAX - 1 bytes, each escaped to
     * at most 6 ("\u001f", "\ufffd"), plus the other fields */
    LINE_MAX_BYTES = 6 * MSG_MAX + 512,
};

static enum log_level min_level = LOG_INFO;
static enum log_format format = LOG_FORMAT_PLAIN;
static int progress_active;
static int journal = -1; /* stderr is journald's: 1 / 0, -1 = not checked */

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const level_json[] = {"debug", "info", "warn", "error"};
/* sd-daemon(3) priorities: LOG_DEBUG 7, LOG_INFO 6, LOG_WARNING 4,
 * LOG_ERR 3 */
static const char *const level_prefix[] = {"<7>", "<6>", "<4>", "<3>"};

void log_set_level(enum log_level lvl)
{
    min_level = lvl;
}

int log_level_parse(const char *s, enum log_level *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int log_limit_ok(struct log_limit *l, const char *text, int every_s)
{
    unsigned long long now = clock_mono_ns();
    if (l->at_ns != 0 && strncmp(l->last, text, sizeof(l->last) - 1) == 0 &&
        now - l->at_ns < (unsigned long long)every_s * 1000000000ull) {
        return 0;
    }
    snprintf(l->last, sizeof(l->last), "%s", text);
    l->at_ns = now;
    return 1;
}

void log_limit_reset(struct log_limit *l)
{
    l->last[0] = '\0';
    l->at_ns = 0;
}

void log_set_progress_active(int on)
{
    progress_active = on;
}

void log_set_format(enum log_format fmt)
{
    format = fmt;
    journal = -1;
}

enum log_format log_get_format(void)
{
    return format;
}

int log_format_parse(const char *s, enum log_format *out)
{
    if (strcmp(s, "plain") == 0) {
        *out = LOG_FORMAT_PLAIN;
        return 0;
    }
    if (strcmp(s, "json") == 0) {
        *out = LOG_FORMAT_JSON;
        return 0;
    }
    return -1;
}

int log_progress_allowed(void)
{
    return format == LOG_FORMAT_PLAIN;
}

/* 1 when stderr is journald's stream: JOURNAL_STREAM ("<dev>:<ino>",
 * systemd.exec(5)) names the device and inode that fstat gives for fd 2.
 * (A child whose stderr was redirected inherits the variable, hence the
 * comparison.) Checked once, cached until log_set_format. */
static int on_journal(void)
{
    if (journal >= 0) {
        return journal;
    }
    journal = 0;
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    char tail;
    struct stat st;
    if (js != NULL && sscanf(js, "%llu:%llu%c", &dev, &ino, &tail) == 2 &&
        fstat(2, &st) == 0 && (unsigned long long)st.st_dev == dev &&
        (unsigned long long)st.st_ino == ino) {
        journal = 1;
    }
    return journal;
}

/* Formats the message into msg[MSG_MAX]; returns its length. A message
 * that does not fit is cut, and then not inside a UTF-8 sequence: a last
 * sequence left incomplete by the cut is dropped whole. */
static size_t format_msg(char *msg, const char *fmt, va_list ap)
{
    int n = vsnprintf(msg, MSG_MAX, fmt, ap);
    if (n < 0) {
        msg[0] = '\0';
        return 0;
    }
    if (n < MSG_MAX) {
        return (size_t)n;
    }
    size_t len = MSG_MAX - 1, start = len;
    const unsigned char *u = (const unsigned char *)msg;
    while (start > 0 && len - start < 3 && (u[start - 1] & 0xC0) == 0x80) {
        start--;
    }
    if (start > 0 && u[start - 1] >= 0xC0) {
        start--;
        if (text_utf8_seq(u + start, len - start) == 0) {
            len = start;
        }
    }
    msg[len] = '\0';
    return len;
}

/* Writes one line of msg[0..len) at lvl from module. who: the plain
 * prefix of a command's own report ("cardwatch check"), NULL for a log
 * line. */
static void emit(enum log_level lvl, const char *module, const char *who,
                 const char *msg, size_t len)
{
    char buf[LINE_MAX_BYTES];
    struct jsonw w;
    int jr = on_journal();
    jsonw_init(&w, buf, sizeof(buf));
    if (progress_active && !jr && format == LOG_FORMAT_PLAIN) {
        JSONW_LIT(&w, "\r\033[K"); /* clear the progress line */
    }
    if (jr) {
        jsonw_cstr(&w, level_prefix[lvl]);
    }
    char ts[64] = "";
    if (format == LOG_FORMAT_JSON || (who == NULL && !jr)) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        size_t k = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(ts + k, sizeof(ts) - k, ".%03ldZ", (long)(tv.tv_usec / 1000));
    }
    if (format == LOG_FORMAT_JSON) {
        JSONW_LIT(&w, "{\"ts\":\"");
        jsonw_cstr(&w, ts);
        JSONW_LIT(&w, "\",\"level\":\"");
        jsonw_cstr(&w, level_json[lvl]);
        JSONW_LIT(&w, "\",\"module\":");
        jsonw_str(&w, module, strlen(module));
        JSONW_LIT(&w, ",\"msg\":");
        jsonw_str(&w, msg, len);
        JSONW_LIT(&w, "}");
    } else if (who != NULL) {
        jsonw_cstr(&w, who);
        JSONW_LIT(&w, ": ");
        jsonw_raw(&w, msg, len);
    } else {
        if (!jr) {
            jsonw_cstr(&w, ts);
            JSONW_LIT(&w, " ");
        }
        jsonw_cstr(&w, level_names[lvl]);
        JSONW_LIT(&w, " ");
        jsonw_cstr(&w, module);
        JSONW_LIT(&w, ": ");
        jsonw_raw(&w, msg, len);
    }
    JSONW_LIT(&w, "\n");
    int n = jsonw_end(&w);
    if (n > 0) {
        fwrite(buf, 1, (size_t)n, stderr);
    }
}

void log_msg(enum log_level lvl, const char *module, const char *fmt, ...)
{
    if (lvl < min_level) {
        return;
    }
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    size_t len = format_msg(msg, fmt, ap);
    va_end(ap);
    emit(lvl, module, NULL, msg, len);
}

void log_report(enum log_level lvl, const char *cmd, const char *fmt, ...)
{
    char msg[MSG_MAX];
    char who[64];
    snprintf(who, sizeof(who), "cardwatch%s%s", cmd != NULL ? " " : "",
             cmd != NULL ? cmd : "");
    va_list ap;
    va_start(ap, fmt);
    size_t len = format_msg(msg, fmt, ap);
    va_end(ap);
    emit(lvl, cmd != NULL ? cmd : "cardwatch", who, msg, len);
}
