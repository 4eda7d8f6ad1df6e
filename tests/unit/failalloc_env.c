/* failalloc_env.c - arms failalloc (failalloc.h) from the environment at
 * start-up, for a whole program: linked, with failalloc.o and the
 * allocator wrapped, into the cardwatch-failalloc binary (Makefile) that
 * the end-to-end out-of-memory sweep runs (tests/e2e/test_oom_sweep.py).
 * Unset, the binary behaves as cardwatch.
 *
 *   CARDWATCH_FAILALLOC_RECORD=FILE   count the calls of every allocation
 *                                     site; at exit write one "SITE CALLS"
 *                                     line per site to FILE
 *   CARDWATCH_FAILALLOC_SITE=SITE[:N] the N-th call (default 1) from SITE
 *                                     fails with ENOMEM
 *   CARDWATCH_FAILALLOC_FIRED=FILE    written ("SITE\n") when it fails
 *
 * A SITE is a signed decimal byte offset (failalloc.h). */
#include "failalloc.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *record_path;
static const char *fired_path;

/* Called inside the failing allocation: no allocation here. */
static void on_fire(long off)
{
    char line[32];
    int len;
    int fd;

    if (fired_path == NULL) {
        return;
    }
    len = snprintf(line, sizeof(line), "%ld\n", off);
    fd = open(fired_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (write(fd, line, (size_t)len) != len) {
            /* the sweep then reports the site as not reached */
        }
        close(fd);
    }
}

static void write_record(void)
{
    static long off[4096], calls[4096];
    long n = failalloc_sites(off, calls, 4096);
    FILE *f = fopen(record_path, "w");

    if (f == NULL) {
        perror(record_path);
        return;
    }
    for (long i = 0; i < n; i++) {
        fprintf(f, "%ld %ld\n", off[i], calls[i]);
    }
    if (fclose(f) != 0) {
        perror(record_path);
    }
}

__attribute__((constructor)) static void failalloc_env(void)
{
    const char *site = getenv("CARDWATCH_FAILALLOC_SITE");

    record_path = getenv("CARDWATCH_FAILALLOC_RECORD");
    fired_path = getenv("CARDWATCH_FAILALLOC_FIRED");
    if (record_path != NULL && *record_path != '\0') {
        failalloc_record();
        atexit(write_record);
    }
    if (site != NULL && *site != '\0') {
        char *end;
        long off = strtol(site, &end, 10);
        long nth = *end == ':' ? strtol(end + 1, NULL, 10) : 1;
        failalloc_site(off, nth, on_fire);
    }
}
