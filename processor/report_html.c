/* report_html.c - see report_html.h. */
#include "report_html.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* generated: build/gen/report_page.c, build/gen/cpp_report_page.c,
 * build/gen/report_chartjs.c */
const char *report_page(size_t *len);
const char *cpp_report_page(size_t *len);
const char *report_chartjs(size_t *len);

#define MARK_JS "/*@CHART_JS@*/"
#define MARK_DATA "/*@REPORT_DATA@*/"

struct buf {
    char *p;
    size_t n, cap;
    int oom;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) {
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* Copies json, each '<' as \u003c (it can only stand inside a string). */
static void put_json(struct buf *b, const char *json, size_t len)
{
    size_t from = 0;
    for (size_t i = 0; i < len; i++) {
        if (json[i] == '<') {
            put(b, json + from, i - from);
            put(b, "\\u003c", 6);
            from = i + 1;
        }
    }
    put(b, json + from, len - from);
}

int report_html_render_page(enum report_page which, const char *json,
                            size_t len, char **out, size_t *outlen)
{
    size_t plen = 0, jlen = 0;
    const char *page = which == REPORT_PAGE_REPLAY ? report_page(&plen)
                       : which == REPORT_PAGE_CPP  ? cpp_report_page(&plen)
                                                   : NULL;
    if (page == NULL) {
        return -1;
    }
    const char *js = report_chartjs(&jlen);
    const char *m1 = strstr(page, MARK_JS);
    const char *m2 = m1 ? strstr(m1, MARK_DATA) : NULL;
    if (m1 == NULL || m2 == NULL) {
        return -1; /* the build embedded another page: cannot happen */
    }
    struct buf b = {0};
    put(&b, page, (size_t)(m1 - page));
    put(&b, js, jlen);
    put(&b, m1 + strlen(MARK_JS), (size_t)(m2 - m1 - strlen(MARK_JS)));
    put_json(&b, json, len);
    const char *rest = m2 + strlen(MARK_DATA);
    put(&b, rest, plen - (size_t)(rest - page));
    if (b.oom) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    *outlen = b.n;
    return 0;
}

int report_html_render(const char *json, size_t len, char **out,
                       size_t *outlen)
{
    return report_html_render_page(REPORT_PAGE_REPLAY, json, len, out,
                                   outlen);
}

int report_html_write_page(enum report_page which, const char *path,
                           const char *json, size_t len, char *err,
                           size_t errlen)
{
    char *page = NULL;
    size_t n = 0;
    if (report_html_render_page(which, json, len, &page, &n) != 0) {
        snprintf(err, errlen, "%s: out of memory rendering the report", path);
        return -1;
    }
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.partial", path) >=
        sizeof(tmp)) {
        free(page);
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    const char *what = "open";
    int ok = f != NULL;
    if (ok) {
        what = "write";
        ok = fwrite(page, 1, n, f) == n;
        ok = (fclose(f) == 0) && ok;
    }
    int e = errno;
    free(page);
    if (ok && rename(tmp, path) != 0) {
        e = errno;
        what = "rename";
        ok = 0;
    }
    if (!ok) {
        if (f != NULL) {
            unlink(tmp);
        }
        snprintf(err, errlen, "%s: %s: %s", strcmp(what, "rename") == 0
                                                 ? path
                                                 : tmp,
                 what, strerror(e));
        return -1;
    }
    return 0;
}

int report_html_write(const char *path, const char *json, size_t len,
                      char *err, size_t errlen)
{
    return report_html_write_page(REPORT_PAGE_REPLAY, path, json, len, err,
                                  errlen);
}
