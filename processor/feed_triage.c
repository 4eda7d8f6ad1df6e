/* feed_triage.c - the triage page's Content-Security-Policy and its
 * Chart.js file; see feed_triage.h. */
#include "feed_triage.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "feed_text.h"

/* generated: build/gen/report_chartjs.c, build/gen/chartjs_version.c */
const char *report_chartjs(size_t *len);
const char *chartjs_version(void);

/* ---- the triage page ---- */

/* Case-insensitive search for needle in s[0..n). */
static const char *find_ci(const char *s, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++) {
        if (strncasecmp(s + i, needle, m) == 0) {
            return s + i;
        }
    }
    return NULL;
}

/* Appends " 'sha256-<base64>'" of every inline <tag> element of the page
 * to out (a memstream). */
static void csp_hashes(FILE *out, const char *page, size_t len, const char *tag)
{
    char open[16], close[16];
    snprintf(open, sizeof(open), "<%s", tag);
    snprintf(close, sizeof(close), "</%s", tag);
    const char *p = page, *end = page + len;
    while (p < end) {
        const char *t = find_ci(p, (size_t)(end - p), open);
        if (t == NULL) {
            break;
        }
        const char *after = t + strlen(open);
        if (after < end && isalnum((unsigned char)*after)) {
            p = after; /* another tag, e.g. <scripts> */
            continue;
        }
        const char *gt = memchr(after, '>', (size_t)(end - after));
        if (gt == NULL) {
            break;
        }
        const char *body = gt + 1;
        const char *c = find_ci(body, (size_t)(end - body), close);
        if (c == NULL) {
            break;
        }
        int external = strcmp(tag, "script") == 0 &&
                       find_ci(after, (size_t)(gt - after), "src=") != NULL;
        if (!external) {
            uint8_t md[FEED_SHA256_LEN];
            unsigned char b64[4 * ((FEED_SHA256_LEN + 2) / 3) + 1];
            if (feed_text_sha256(body, (size_t)(c - body), md) == 0) {
                EVP_EncodeBlock(b64, md, FEED_SHA256_LEN);
                fprintf(out, " 'sha256-%s'", b64);
            }
        }
        p = c + strlen(close);
    }
}

char *feed_csp(const char *page, size_t len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    if (m == NULL) {
        return NULL;
    }
    fputs("default-src 'self'; script-src 'self'", m);
    csp_hashes(m, page, len, "script");
    fputs("; style-src 'self'", m);
    csp_hashes(m, page, len, "style");
    fputs("; img-src 'self' data:; connect-src 'self'; object-src 'none'; "
          "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
          m);
    if (fclose(m) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* ---- Chart.js ---- */

int feed_asset_chartjs(struct feed_asset *a)
{
    uint8_t md[FEED_SHA256_LEN];
    unsigned char b64[4 * ((FEED_SHA256_LEN + 2) / 3) + 1];
    a->body = report_chartjs(&a->len);
    snprintf(a->path, sizeof(a->path), "/assets/chart-%s.umd.js",
             chartjs_version());
    if (feed_text_sha256(a->body, a->len, md) != 0) {
        return -1;
    }
    int n = EVP_EncodeBlock(b64, md, FEED_SHA256_LEN);
    /* base64url without padding: nothing to quote in a header */
    for (int i = 0; i < n; i++) {
        b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    }
    while (n > 0 && b64[n - 1] == '=') {
        b64[--n] = '\0';
    }
    snprintf(a->etag, sizeof(a->etag), "\"sha256-%s\"", (const char *)b64);
    return 0;
}

int feed_etag_match(const char *inm, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = inm;
    while (p != NULL && *p != '\0') {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
            n--;
        }
        const char *t = p;
        if (n >= 2 && strncmp(t, "W/", 2) == 0) { /* weak comparison */
            t += 2;
            n -= 2;
        }
        if ((n == 1 && t[0] == '*') ||
            (n == elen && n > 0 && memcmp(t, etag, n) == 0)) {
            return 1;
        }
        p = strchr(p, ',');
    }
    return 0;
}
