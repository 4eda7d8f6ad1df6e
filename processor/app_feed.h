/* app_feed.h - `cardwatch feed` (the issuer alert feed on its own, beside
 * or instead of the one `cardwatch run` starts when [feed] listen is set)
 * and `cardwatch token` (a new bearer token and the hash to configure).
 */
#ifndef CARDWATCH_APP_FEED_H
#define CARDWATCH_APP_FEED_H

#include <stdio.h>

#include "config.h"

/* Serves the feed on [feed] listen and the operator endpoints (/healthz,
 * /readyz, /metrics with the feed's metrics) on [http] listen, until
 * SIGINT/SIGTERM: stop accepting, answer waiting long polls, end streams,
 * let replies in progress finish (at most 5 s, then they are answered 503
 * and given 1 s to be written), exit; a second signal exits at once.
 * Returns the process exit status: 0 after a signal, 1 when start-up
 * failed (logged). */
int app_feed(const struct config *c);

/* Writes a new token (32 random bytes from the OS, base64url) on the first
 * line of out and "token_sha256 = <hex>" on the second; a hint on where
 * each goes to hint (may be NULL). Returns 0, or 1 when no randomness
 * could be had (message on hint or stderr). */
int app_token(FILE *out, FILE *hint);

#endif
