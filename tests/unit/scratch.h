/* scratch.h - a scratch directory for a unit test program (header only).
 *
 *   static char tmpdir[] = "/tmp/cw_NAME_XXXXXX";
 *   cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
 *
 * scratch_setup makes the directory (mkdtemp on the program's tmpdir),
 * scratch_teardown removes it with everything in it. The including file
 * defines tmpdir before including this header. */
#ifndef CARDWATCH_TESTS_SCRATCH_H
#define CARDWATCH_TESTS_SCRATCH_H

#include <stdio.h>
#include <stdlib.h>

static int scratch_setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int scratch_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd);
}

#endif
