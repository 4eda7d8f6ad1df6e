/* feed_page.h - the issuer triage page (web/triage.html), built into the
 * binary so that the feed serves it without files on disk.
 *
 * The bytes are generated at build time from web/triage.html into
 * build/gen/feed_page.c (see the Makefile); they are static, borrowed.
 */
#ifndef CARDWATCH_FEED_PAGE_H
#define CARDWATCH_FEED_PAGE_H

#include <stddef.h>

/* The page (UTF-8 HTML with its script and style inline) and its length. */
const char *feed_page(size_t *len);

#endif
