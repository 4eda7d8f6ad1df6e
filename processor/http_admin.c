/* http_admin.c - see http_admin.h. */
#include "http_admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "log.h"

#define MOD "http"

struct http_admin {
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    struct http_admin_ops ops;
    int port;
};

static void reply_text(struct evhttp_request *req, int code,
                       const char *reason, const char *ctype,
                       const char *body)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      ctype);
    evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

static int is_get(struct evhttp_request *req)
{
    enum evhttp_cmd_type t = evhttp_request_get_command(req);
    return t == EVHTTP_REQ_GET || t == EVHTTP_REQ_HEAD;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct http_admin *h = arg;
    const char *uri = evhttp_request_get_uri(req);
    char path[64] = "";
    const char *q = strchr(uri, '?');
    size_t n = q ? (size_t)(q - uri) : strlen(uri);
    if (n < sizeof(path)) {
        memcpy(path, uri, n);
        path[n] = '\0';
    }
    if (strcmp(path, "/admin/rules/reload") == 0) {
        if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
            reply_text(req, 405, "Method Not Allowed", "text/plain",
                       "use POST\n");
            return;
        }
        char msg[1200], body[1300];
        if (h->ops.reload == NULL) {
            reply_text(req, 404, "Not Found", "text/plain", "not found\n");
        } else if (h->ops.reload(h->ops.arg, msg, sizeof(msg)) == 0) {
            snprintf(body, sizeof(body), "reloaded: %s\n", msg);
            reply_text(req, 200, "OK", "text/plain", body);
        } else {
            snprintf(body, sizeof(body), "refused: %s\n", msg);
            reply_text(req, 422, "Unprocessable Entity", "text/plain", body);
        }
        return;
    }
    if (!is_get(req)) {
        reply_text(req, 405, "Method Not Allowed", "text/plain",
                   "method not allowed\n");
        return;
    }
    if (strcmp(path, "/admin/rules") == 0 && h->ops.rules_version != NULL) {
        char body[256];
        snprintf(body, sizeof(body), "%s\n", h->ops.rules_version(h->ops.arg));
        reply_text(req, 200, "OK", "text/plain", body);
    } else if (strcmp(path, "/healthz") == 0) {
        reply_text(req, 200, "OK", "text/plain", "ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        char why[1024] = "";
        if (h->ops.ready(h->ops.arg, why, sizeof(why))) {
            reply_text(req, 200, "OK", "text/plain", "ready\n");
        } else {
            char body[1100];
            snprintf(body, sizeof(body), "not ready: %s\n", why);
            reply_text(req, 503, "Service Unavailable", "text/plain", body);
        }
    } else if (strcmp(path, "/metrics") == 0) {
        char *text = h->ops.metrics(h->ops.arg);
        if (text == NULL) {
            reply_text(req, 500, "Internal Server Error", "text/plain",
                       "metrics unavailable\n");
            return;
        }
        reply_text(req, 200, "OK", "text/plain; version=0.0.4", text);
        free(text);
    } else {
        reply_text(req, 404, "Not Found", "text/plain", "not found\n");
    }
}

struct http_admin *http_admin_new(struct event_base *base, const char *listen,
                                  const struct http_admin_ops *ops,
                                  char *errbuf, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof(host)) {
        snprintf(errbuf, errlen, "http: bad listen address '%s'", listen);
        return NULL;
    }
    /* "[v6]:port" (the form the config demands) binds to v6 */
    size_t skip = listen[0] == '[' && colon > listen && colon[-1] == ']';
    memcpy(host, listen + skip, (size_t)(colon - listen) - 2 * skip);
    host[(size_t)(colon - listen) - 2 * skip] = '\0';
    int port = atoi(colon + 1);
    struct http_admin *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(errbuf, errlen, "http: out of memory");
        return NULL;
    }
    h->ops = *ops;
    h->http = evhttp_new(base);
    if (h->http == NULL) {
        snprintf(errbuf, errlen, "http: out of memory");
        goto err;
    }
    evhttp_set_max_body_size(h->http, 4096);
    evhttp_set_max_headers_size(h->http, 8192);
    evhttp_set_timeout(h->http, 10);
    evhttp_set_gencb(h->http, on_request, h);
    h->sock = evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port);
    if (h->sock == NULL) {
        snprintf(errbuf, errlen, "http: cannot listen on %s (in use or not "
                 "a local address)", listen);
        goto err;
    }
    struct sockaddr_storage ss;
    ev_socklen_t sl = sizeof(ss);
    evutil_socket_t fd = evhttp_bound_socket_get_fd(h->sock);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            h->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    log_info(MOD, "listening on %.*s:%d (/healthz /readyz /metrics "
             "/admin/rules)", (int)(colon - listen), listen, h->port);
    return h;
err:
    http_admin_destroy(h);
    return NULL;
}

int http_admin_port(const struct http_admin *h)
{
    return h->port;
}

void http_admin_destroy(struct http_admin *h)
{
    if (h == NULL) {
        return;
    }
    if (h->http != NULL) {
        evhttp_free(h->http);
    }
    free(h);
}
