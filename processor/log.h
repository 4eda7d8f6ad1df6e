/* log.h - levelled one-line logs to stderr, scoped to a module.
 *
 * Never pass card data: callers log masked PANs and fingerprints only.
 *
 * Two formats (log_set_format), one line per message either way:
 *   plain  "2026-11-25T20:31:02.123Z LEVEL module: message"
 *   json   {"ts":"2026-11-25T20:31:02.123Z","level":"info",
 *           "module":"redis","msg":"message"}
 * The JSON fields are always these four, in this order; level is one of
 * debug, info, warn, error. msg is escaped as JSON (text.h jsonw_str: '"',
 * '\\' and control characters escaped, \n \r \t \b \f by name, the rest
 * as \u00XX; valid UTF-8 passed as it is; each byte that does not start a
 * valid UTF-8 sequence written as \ufffd), so any bytes make valid JSON.
 *
 * When stderr is journald's stream (JOURNAL_STREAM, set by systemd, names
 * the device and inode of stderr), each line starts with the sd-daemon
 * priority prefix (<7> debug, <6> info, <4> warn, <3> error), which
 * journald strips and keeps as the priority; plain lines then leave out
 * the timestamp (journald stamps them). JSON lines keep their fields.
 *
 * A line is written with one write to stderr, so lines of several
 * threads do not interleave within a line.
 */
#ifndef CARDWATCH_LOG_H
#define CARDWATCH_LOG_H

enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO = 1,
    LOG_WARN = 2,
    LOG_ERROR = 3,
};

enum log_format {
    LOG_FORMAT_PLAIN = 0, /* the default */
    LOG_FORMAT_JSON = 1,
};

/* Sets the lowest level that is written (default LOG_INFO). */
void log_set_level(enum log_level lvl);

/* Parses "debug|info|warn|error"; returns 0 and sets *out, or -1. */
int log_level_parse(const char *s, enum log_level *out);

/* Sets the format of the lines that follow (default LOG_FORMAT_PLAIN).
 * Also makes the next line look again at whether stderr is journald's
 * stream (it is checked once, at the first line, and cached): call it
 * after redirecting stderr. */
void log_set_format(enum log_format fmt);

/* The format set. */
enum log_format log_get_format(void);

/* Parses "plain|json"; returns 0 and sets *out, or -1. */
int log_format_parse(const char *s, enum log_format *out);

/* 1 when a command may draw a progress line on stderr: the format is
 * plain. A progress line ("\r" redraws, no newline) between JSON lines
 * would break them, so with JSON the commands draw none. */
int log_progress_allowed(void);

/* Writes one line if lvl is at or above the level set. A message longer
 * than 1 KiB is cut (before escaping, never inside a UTF-8 sequence). */
void log_msg(enum log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A command's own message to its user (a usage error, a bad
 * configuration file), never filtered by level. Plain: exactly
 * "cardwatch CMD: message" ("cardwatch: message" when cmd is NULL), no
 * timestamp or level, as command-line tools report. JSON: a log line
 * with module cmd ("cardwatch" when cmd is NULL). Under journald both
 * get the priority prefix. Cut at 1 KiB like log_msg. */
void log_report(enum log_level lvl, const char *cmd, const char *fmt, ...)
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
