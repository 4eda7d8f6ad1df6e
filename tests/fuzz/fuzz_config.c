/* fuzz_config.c - libFuzzer target for the INI configuration
 * (config_load, then config_check and config_route when it loads).
 * Input: the text of a config file, written to a memfd and loaded through
 * /proc/self/fd/N (config_load takes a path; nothing else is opened:
 * config_brokers, which reads brokers_file, is not called).
 * Invariants: no crash, leak or sanitizer report; config_load and
 * config_check return 0 or -1; a load error is "path:line: message"; every
 * message is terminated, fits its buffer and holds no control character;
 * no message shows a run of 13 or more digits (it could be a card number)
 * that the file only has in a value - section and key names are echoed as
 * written; a bad value of a key named like a secret (password, secret,
 * token, ...) is never quoted; a loaded config has at most
 * CONFIG_MAX_ISSUERS issuers with ids of 1-32 of a-z 0-9 _ -, at most
 * CONFIG_MAX_KAFKA_PROPS properties, and config_route answers NULL or one
 * of its issuers. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "feed_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void need(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "invariant broken: %s\n", what);
        abort();
    }
}

static int is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* What inih and config.c skip at the start of a line (isspace in the C
 * locale; '\n' ends the line before). */
static int blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v';
}

/* Section headers and key names of the text, '\n'-separated, into a
 * malloc'd string: what a message may echo as written. A leading byte
 * order mark and leading blanks (CR too) are skipped; a comment names
 * nothing; a line without '=' or ':' counts as a name as a whole (an
 * over-estimate: an indented line may continue the previous value, which
 * config_load refuses). */
static char *names_of(const char *text)
{
    size_t n = strlen(text);
    char *out = malloc(n + 2);
    size_t k = 0;

    need(out != NULL, "malloc");
    if (strncmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3; /* a UTF-8 byte order mark */
    }
    for (const char *l = text; *l != '\0';) {
        const char *end = strchr(l, '\n');
        size_t len = end != NULL ? (size_t)(end - l) : strlen(l);
        const char *next = end != NULL ? end + 1 : l + len;
        size_t name = 0;

        while (l < next && blank(*l)) {
            l++;
            len--;
        }
        if (len > 0 && l[0] == '[') {
            name = len;
        } else if (len > 0 && l[0] != ';' && l[0] != '#') {
            name = strcspn(l, "=:\n");
        }
        memcpy(out + k, l, name);
        k += name;
        out[k++] = '\n';
        l = next;
    }
    out[k] = '\0';
    return out;
}

/* Line lineno (1-based) of text: its start and length, or NULL. */
static const char *line_of(const char *text, long lineno, size_t *len)
{
    const char *l = text;

    for (long i = 1; i < lineno && l != NULL; i++) {
        l = strchr(l, '\n');
        l = l != NULL ? l + 1 : NULL;
    }
    if (l == NULL || lineno < 1) {
        return NULL;
    }
    *len = strcspn(l, "\n");
    return l;
}

static int secret_name(const char *name, size_t len)
{
    static const char *const words[] = {"password", "secret", "token", ".pem",
                                        "sasl.oauthbearer.config"};
    char buf[256];

    if (len >= sizeof(buf)) {
        len = sizeof(buf) - 1;
    }
    memcpy(buf, name, len);
    buf[len] = '\0';
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcasestr(buf, words[i]) != NULL) {
            return 1;
        }
    }
    return 0;
}

/* The checks every message passes; names: see names_of(). */
static void check_message(const char *err, size_t cap, const char *names)
{
    size_t n = strnlen(err, cap);

    need(n > 0 && n < cap, "a message is set and terminated");
    for (size_t i = 0; i < n; i++) {
        need((unsigned char)err[i] >= 0x20 && err[i] != 0x7f,
             "no control character in a message");
    }
    for (size_t i = 0; i < n;) {
        size_t run = 0;
        while (i + run < n && is_digit(err[i + run])) {
            run++;
        }
        if (run >= 13) {
            need(memmem(names, strlen(names), err + i, run) != NULL,
                 "no card-like number from a value in a message");
        }
        i += run > 0 ? run : 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    static struct config c;
    char err[1024];

    if (fd < 0) {
        fd = memfd_create("fuzz_config", 0);
        need(fd >= 0, "memfd_create");
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    need(ftruncate(fd, 0) == 0 &&
             (size == 0 || pwrite(fd, data, size, 0) == (ssize_t)size),
         "write the memfd");
    /* The text as config_load sees it: up to the first NUL (a NUL is an
     * error there, at the line where it stands). */
    char *text = malloc(size + 1);
    need(text != NULL, "malloc");
    memcpy(text, data, size);
    text[size] = '\0';
    char *names = names_of(text);

    need(config_init(&c) == 0, "config_init");
    memset(err, 0, sizeof(err));
    int rc = config_load(&c, path, err, sizeof(err));
    need(rc == 0 || rc == -1, "config_load returns 0 or -1");
    if (rc != 0) {
        size_t plen = strlen(path);
        char *after = NULL;
        check_message(err, sizeof(err), names);
        need(strncmp(err, path, plen) == 0 && err[plen] == ':',
             "a load error starts with the path");
        long lineno = strtol(err + plen + 1, &after, 10);
        if (after != err + plen + 1 && *after == ':') {
            size_t len = 0;
            const char *l = line_of(text, lineno, &len);
            while (l != NULL && blank(*l)) {
                l++;
            }
            if (l != NULL && l[0] != '[' &&
                secret_name(l, strcspn(l, "=:\n"))) {
                /* "path:line: bad value 'v' for 'name' ..." */
                need(strncmp(after, ": bad value '", 13) != 0,
                     "a secret's value is never quoted");
            }
        }
        goto out;
    }
    need(c.n_issuers <= CONFIG_MAX_ISSUERS, "issuers within bounds");
    need(c.n_kafka_props <= CONFIG_MAX_KAFKA_PROPS, "kafka props in bounds");
    for (size_t i = 0; i < c.n_issuers; i++) {
        const char *id = c.issuers[i].id;
        size_t len = strnlen(id, sizeof(c.issuers[i].id));
        need(len >= 1 && len <= ISSUER_ID_MAX &&
                 strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789_-") == len,
             "issuer id of a-z 0-9 _ -");
    }
    memset(err, 0, sizeof(err));
    rc = config_check(&c, err, sizeof(err));
    if (rc == 0) { /* as the commands check a configuration (main.c) */
        rc = feed_config_check(&c, err, sizeof(err));
    }
    need(rc == 0 || rc == -1, "config_check returns 0 or -1");
    if (rc != 0) {
        check_message(err, sizeof(err), names);
    }
    /* Fixed prefixes, then the 6 to 8 first digits of each digit run. */
    static const char *const fixed[] = {"4", "411111", "41111111", "5555555",
                                        "000000", "99999999"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        const struct issuer *is = config_route(&c, fixed[i], strlen(fixed[i]));
        need(is == NULL || (is >= c.issuers && is < c.issuers + c.n_issuers),
             "a route leads to an issuer");
    }
    size_t tries = 0;
    for (const char *p = text; *p != '\0' && tries < 32; p++) {
        size_t run = strspn(p, "0123456789");
        if (run >= 6) {
            const struct issuer *is = config_route(&c, p, run > 8 ? 8 : run);
            need(is == NULL ||
                     (is >= c.issuers && is < c.issuers + c.n_issuers),
                 "a route leads to an issuer");
            p += run - 1;
            tries++;
        }
    }
out:
    config_free(&c);
    free(names);
    free(text);
    return 0;
}
