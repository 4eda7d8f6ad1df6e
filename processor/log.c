/* log.c - see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "clock.h"

static enum log_level min_level = LOG_INFO;
static int progress_active;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

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

void log_msg(enum log_level lvl, const char *module, const char *fmt, ...)
{
    if (lvl < min_level) {
        return;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s%s.%03ldZ %s %s: %s\n", progress_active ? "\r\033[K" : "",
            ts, (long)(tv.tv_usec / 1000), level_names[lvl], module, msg);
}
