/* report_html.h - the replay's HTML report: web/report.html with Chart.js
 * (web/package-lock.json) and the report's JSON built in, one
 * self-contained page that opens offline.
 *
 * The page, Chart.js and the template are generated into the binary at
 * build time (scripts/embed.py; see the Makefile). The report JSON is the
 * one `--report` writes (app_replay.c); it must hold counts only - the
 * page shows what it is given.
 */
#ifndef CARDWATCH_REPORT_HTML_H
#define CARDWATCH_REPORT_HTML_H

#include <stddef.h>

/* Renders the page around json (len bytes of a JSON object): every '<' of
 * it is written as \u003c so that nothing in it can end the script
 * element it sits in. Returns 0 with a malloc'd, NUL-terminated page in
 * *out (its length in *outlen; the caller frees it), or -1 on allocation
 * failure. Pure. */
int report_html_render(const char *json, size_t len, char **out,
                       size_t *outlen);

/* Renders the page and writes it to path through path.partial (renamed
 * into place when whole; removed on failure). Returns 0, or -1 with
 * "PATH: what failed: strerror" in err. */
int report_html_write(const char *path, const char *json, size_t len,
                      char *err, size_t errlen);

#endif
