/* harden.h - process settings for a program that holds card numbers.
 *
 * DESIGN.md: a raw PAN never leaves the decode stage, "not in a core dump
 * we write". Card numbers do pass through memory (Kafka message buffers,
 * the decode stage, `load` and `gen`), so cardwatch writes no core dump
 * and its memory cannot be read through ptrace or /proc/<pid>/mem by
 * other unprivileged processes of the same user.
 */
#ifndef CARDWATCH_HARDEN_H
#define CARDWATCH_HARDEN_H

#include <stddef.h>

/* The environment variable that leaves core dumps as the system has them
 * (value "1"): for debugging on a test machine, never with real cards. */
#define HARDEN_ALLOW_CORE_ENV "CARDWATCH_ALLOW_CORE_DUMPS"

/* Sets the core file size limit to 0 (soft and hard) and marks the process
 * not dumpable (prctl PR_SET_DUMPABLE 0). With HARDEN_ALLOW_CORE_ENV=1 in
 * the environment it changes nothing and sets *allowed to 1 (else 0;
 * allowed may be NULL). Returns 0, or -1 with a message in err (errlen
 * bytes) when the system refused either setting. */
int harden_no_core_dumps(int *allowed, char *err, size_t errlen);

#endif
