/* app_run.h - `cardwatch run`: wires source, pipeline, exposure, sink,
 * metrics and the HTTP listener on one libevent loop, and shuts them down
 * in order (stop intake, drain, commit, flush).
 */
#ifndef CARDWATCH_APP_RUN_H
#define CARDWATCH_APP_RUN_H

#include "config.h"

struct run_opts {
    int exit_at_end;    /* stop once every partition is consumed */
    int progress;       /* 1 = progress line on stderr, 0 = periodic log */
    int drain_timeout_s;
    const char *summary_json; /* write the end-of-run summary here */
};

/* Runs until SIGINT/SIGTERM (or the end, with exit_at_end). Returns the
 * process exit status: 0 after a clean drain, 1 when start-up failed
 * (message printed) or events were left unacknowledged. */
int app_run(const struct config *c, const struct run_opts *o);

#endif
