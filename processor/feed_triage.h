/* feed_triage.h - what the triage page (feed_page.h) is served with
 * (pure): its Content-Security-Policy, from the page's own inline scripts
 * and styles, and the one script file it loads from the feed, Chart.js
 * (the copy the replay report embeds, report_chartjs()).
 */
#ifndef CARDWATCH_FEED_TRIAGE_H
#define CARDWATCH_FEED_TRIAGE_H

#include <stddef.h>

/* The Content-Security-Policy for a page: default-src 'self', inline
 * <script> and <style> elements allowed by their SHA-256 only, no
 * plugins, no framing, no base or form targets elsewhere. Returns a
 * malloc'd header value, or NULL on allocation failure. */
char *feed_csp(const char *page, size_t len);

/* A static file the feed serves without a token. */
struct feed_asset {
    char path[64];    /* "/assets/chart-<version>.umd.js" */
    char etag[72];    /* "\"sha256-<base64url of the bytes' SHA-256>\"" */
    const char *body; /* borrowed: static bytes built into the binary */
    size_t len;
};

/* Fills a with the built-in Chart.js (report_chartjs(), its version from
 * web/package-lock.json at build time: chartjs_version()). The path
 * changes with the version, so the file may be cached for good. Returns
 * 0, or -1 when hashing fails. */
int feed_asset_chartjs(struct feed_asset *a);

/* 1 when an If-None-Match header value (a comma list of entity tags, weak
 * ones "W/..." included, or "*") names etag, else 0 (NULL: 0). */
int feed_etag_match(const char *if_none_match, const char *etag);

#endif
