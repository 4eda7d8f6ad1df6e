/* harden.c - see harden.h. */
#include "harden.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

int harden_no_core_dumps(int *allowed, char *err, size_t errlen)
{
    const char *env = getenv(HARDEN_ALLOW_CORE_ENV);
    int allow = env != NULL && strcmp(env, "1") == 0;
    if (allowed != NULL) {
        *allowed = allow;
    }
    if (allow) {
        return 0;
    }
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0) {
        snprintf(err, errlen, "cannot turn core dumps off (setrlimit): %s",
                 strerror(errno));
        return -1;
    }
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        snprintf(err, errlen,
                 "cannot mark the process not dumpable (prctl): %s",
                 strerror(errno));
        return -1;
    }
    return 0;
}
