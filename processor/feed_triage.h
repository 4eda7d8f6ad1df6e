/* feed_triage.h - the headers the triage page (feed_page.h) is served
 * with (pure): its Content-Security-Policy, from the page's own inline
 * scripts and styles.
 */
#ifndef CARDWATCH_FEED_TRIAGE_H
#define CARDWATCH_FEED_TRIAGE_H

#include <stddef.h>

/* The Content-Security-Policy for a page: default-src 'self', inline
 * <script> and <style> elements allowed by their SHA-256 only, no
 * plugins, no framing, no base or form targets elsewhere. Returns a
 * malloc'd header value, or NULL on allocation failure. */
char *feed_csp(const char *page, size_t len);

#endif
