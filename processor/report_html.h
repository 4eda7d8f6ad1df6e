/* report_html.h - the HTML reports: a page template with Chart.js
 * (web/package-lock.json) and a report's JSON built in, one
 * self-contained page that opens offline. Two pages: replay's
 * (web/report.html) and cpp's (web/cpp_report.html), one look.
 *
 * The templates and Chart.js are generated into the binary at build time
 * (scripts/embed.py; see the Makefile). The report JSON is the one the
 * command's `--report` writes (app_replay.c, app_cpp.c); it must hold
 * counts, ids and dates only - the page shows what it is given.
 */
#ifndef CARDWATCH_REPORT_HTML_H
#define CARDWATCH_REPORT_HTML_H

#include <stddef.h>

/* Which page. */
enum report_page {
    REPORT_PAGE_REPLAY = 0, /* web/report.html: `replay --report-html` */
    REPORT_PAGE_CPP,        /* web/cpp_report.html: `cpp --report-html` */
};

/* Renders page around json (len bytes of a JSON object): every '<' of
 * it is written as \u003c so that nothing in it can end the script
 * element it sits in. Returns 0 with a malloc'd, NUL-terminated page in
 * *out (its length in *outlen; the caller frees it), or -1 on allocation
 * failure or an unknown page. Pure. */
int report_html_render_page(enum report_page page, const char *json,
                            size_t len, char **out, size_t *outlen);

/* Renders page and writes it to path through path.partial (renamed into
 * place when whole; removed on failure). Returns 0, or -1 with "PATH:
 * what failed: strerror" in err. */
int report_html_write_page(enum report_page page, const char *path,
                           const char *json, size_t len, char *err,
                           size_t errlen);

/* report_html_render_page(REPORT_PAGE_REPLAY, ...): the replay's page.
 * Renders the page around json (len bytes of a JSON object): every '<' of
 * it is written as \u003c so that nothing in it can end the script
 * element it sits in. Returns 0 with a malloc'd, NUL-terminated page in
 * *out (its length in *outlen; the caller frees it), or -1 on allocation
 * failure. Pure. */
int report_html_render(const char *json, size_t len, char **out,
                       size_t *outlen);

/* report_html_write_page(REPORT_PAGE_REPLAY, ...): the replay's page.
 * Renders the page and writes it to path through path.partial (renamed
 * into place when whole; removed on failure). Returns 0, or -1 with
 * "PATH: what failed: strerror" in err. */
int report_html_write(const char *path, const char *json, size_t len,
                      char *err, size_t errlen);

#endif
