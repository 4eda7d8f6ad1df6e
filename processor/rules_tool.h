/* rules_tool.h - `cardwatch rules check` and `cardwatch rules test`: the
 * analysts' tools, offline (no Redis, no Kafka). `test` keeps window state
 * in memory with the same code (windows.c) the live pipeline uses.
 */
#ifndef CARDWATCH_RULES_TOOL_H
#define CARDWATCH_RULES_TOOL_H

#include <stdio.h>

#include "config.h"

/* Checks each file; prints "file:line:col: message" for the first error
 * of a file, "file:line: warning: ..." for warnings, and "file: ok (N
 * rules, version V)" otherwise. Returns the exit status: 0 when every
 * file parses, 1 otherwise. */
int rules_tool_check(int nfiles, char *const *files, FILE *out);

struct rules_test_opts {
    const char *rules_path;
    const char *input;        /* JSON-lines transactions, "-" = stdin */
    const char *exposed_csv;  /* may be NULL: then no card is exposed */
    const char *breach_id;    /* defaults to "test" */
    const char *window_start; /* YYYY-MM-DD, default 1970-01-01 */
    const char *window_end;   /* YYYY-MM-DD, default 9999-12-31 */
    const char *elements;     /* default "pan,expiry" */
    const struct config *config; /* issuers (may be NULL) */
    int all;                  /* also print transactions with no hit */
};

/* Evaluates the rules on every transaction in input order, printing per
 * transaction the masked PAN, the rules that fire (and suppressed ones)
 * and why. Never prints a PAN. Returns the exit status (1 on a bad rule
 * file, unreadable input or list; invalid lines are reported and
 * skipped). */
int rules_tool_test(const struct rules_test_opts *o, FILE *out);

#endif
