/* http_admin.h - the operator's HTTP listener on evhttp: GET /healthz,
 * GET /readyz, GET /metrics (Prometheus text), GET /admin/rules (active
 * rule-set version) and POST /admin/rules/reload (hot reload, like
 * SIGHUP). Every request ends in exactly one reply. The listener is meant
 * for loopback or an operations network: it has no authentication.
 */
#ifndef CARDWATCH_HTTP_ADMIN_H
#define CARDWATCH_HTTP_ADMIN_H

#include <stddef.h>

struct event_base;
struct http_admin;

struct http_admin_ops {
    /* Returns 1 when ready; else 0 with a short reason in why. */
    int (*ready)(void *arg, char *why, size_t whylen);
    /* Returns the metrics text (malloc'd, caller frees) or NULL. */
    char *(*metrics)(void *arg);
    /* Reloads the rules: 0 with the new version in msg, or -1 with the
     * reason (the running set stays). NULL = not offered. */
    int (*reload)(void *arg, char *msg, size_t msglen);
    /* The active rule-set version (borrowed). */
    const char *(*rules_version)(void *arg);
    void *arg;
};

/* Listens on "host:port" or "[v6 address]:port" (loopback by default in
 * the config). Returns NULL with a message in errbuf when the address is
 * bad or taken. */
struct http_admin *http_admin_new(struct event_base *base, const char *listen,
                                  const struct http_admin_ops *ops,
                                  char *errbuf, size_t errlen);

/* The port actually bound (useful with port 0). */
int http_admin_port(const struct http_admin *h);

/* Stops listening and frees. NULL is a no-op. */
void http_admin_destroy(struct http_admin *h);

#endif
