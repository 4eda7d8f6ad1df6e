/* log.h - levelled one-line logs to stderr, scoped to a module.
 *
 * Never pass card data: callers log masked PANs and fingerprints only.
 * Format: "2026-11-25T20:31:02.123Z LEVEL module: message".
 */
#ifndef CARDWATCH_LOG_H
#define CARDWATCH_LOG_H

enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO = 1,
    LOG_WARN = 2,
    LOG_ERROR = 3,
};

/* Sets the lowest level that is written (default LOG_INFO). */
void log_set_level(enum log_level lvl);

/* Parses "debug|info|warn|error"; returns 0 and sets *out, or -1. */
int log_level_parse(const char *s, enum log_level *out);

/* Writes one line. A message longer than 1 KiB is cut. */
void log_msg(enum log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* When a progress line is on the terminal, logs first clear it; the
 * progress writer registers itself here (0 = none). */
void log_set_progress_active(int on);

/* Limits repeats of one message (a Redis refusal retried every 200 ms):
 * log_limit_ok(l, text, every_s) returns 1 when text differs from the
 * last text it returned 1 for on l, or every_s seconds passed since; the
 * caller then logs. log_limit_reset() makes the next call return 1. A
 * zeroed struct is ready to use. */
struct log_limit {
    char last[256];
    unsigned long long at_ns;
};
int log_limit_ok(struct log_limit *l, const char *text, int every_s);
void log_limit_reset(struct log_limit *l);

#define log_debug(mod, ...) log_msg(LOG_DEBUG, mod, __VA_ARGS__)
#define log_info(mod, ...) log_msg(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_msg(LOG_ERROR, mod, __VA_ARGS__)

#endif
