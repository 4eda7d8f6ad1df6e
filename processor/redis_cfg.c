/* redis_cfg.c - see redis_cfg.h. */
#include "redis_cfg.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "secret_file.h"

static int startup_check(struct rconn *rc, const struct config *c,
                         char *err, size_t errlen);

/* Longest password we read (Redis allows more; ours are generated). */
#define PASSWORD_MAX 512

struct rconn *redis_cfg_connect(struct event_base *base,
                                const struct config *c,
                                const struct redis_cfg_use *use, char *err,
                                size_t errlen)
{
    char pw[PASSWORD_MAX + 1];
    size_t pwlen = 0;
    int have_pw = c->redis_password_file[0] != '\0';
    if (have_pw) {
        char e[512];
        if (secret_file_read(c->redis_password_file, "[redis] password_file",
                             pw, PASSWORD_MAX, &pwlen, e, sizeof(e)) != 0) {
            snprintf(err, errlen, "%s", e);
            return NULL;
        }
        /* the first line; a trailing newline is not part of it */
        pwlen = strcspn(pw, "\r\n");
        pw[pwlen] = '\0';
        if (pwlen == 0) {
            OPENSSL_cleanse(pw, sizeof(pw));
            snprintf(err, errlen, "[redis] password_file %s: empty",
                     c->redis_password_file);
            return NULL;
        }
    }
    struct rconn_opts o = {
        .name = use->name,
        .host = c->redis_host,
        .port = c->redis_port,
        .sentinels = c->redis_sentinels[0] ? c->redis_sentinels : NULL,
        .master_name = c->redis_master_name[0] ? c->redis_master_name : NULL,
        .username = c->redis_username[0] ? c->redis_username : NULL,
        .password = have_pw ? pw : NULL,
        .tls = c->redis_tls,
        .tls_ca_file = c->redis_tls_ca_file[0] ? c->redis_tls_ca_file : NULL,
        .tls_cert_file =
            c->redis_tls_cert_file[0] ? c->redis_tls_cert_file : NULL,
        .tls_key_file = c->redis_tls_key_file[0] ? c->redis_tls_key_file : NULL,
        .tls_server_name =
            c->redis_tls_server_name[0] ? c->redis_tls_server_name : NULL,
        .timeout_ms = c->redis_timeout_ms,
        .while_down = use->while_down,
        .metrics = use->metrics,
        .on_state = use->on_state,
        .state_arg = use->state_arg,
        .subscribe = use->subscribe,
        .on_message = use->on_message,
        .message_arg = use->message_arg,
    };
    struct rconn *rc = rconn_new(base, &o, err, errlen);
    OPENSSL_cleanse(pw, sizeof(pw));
    if (rc != NULL && use->startup_check &&
        startup_check(rc, c, err, errlen) != 0) {
        rconn_destroy(rc);
        return NULL;
    }
    return rc;
}

static void on_ping(void *arg, const struct redisReply *r)
{
    (void)arg;
    (void)r; /* the answer only shows the connection works */
}

/* Waits for the first answer to a PING; -1 only for a refused
 * configuration (see redis_cfg_use.startup_check). */
static int startup_check(struct rconn *rc, const struct config *c,
                         char *err, size_t errlen)
{
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    if (rconn_command(rc, 1, argv, lens, on_ping, NULL) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char why[512];
    /* timeout_ms bounds the connect and the handshake; the connection's
     * timer (100 ms ticks) must get to say why before this wait ends */
    if (rconn_wait(rc, c->redis_timeout_ms + 500, why, sizeof(why)) == 0) {
        return 0;
    }
    const char *msg = NULL;
    enum rconn_error kind = rconn_error(rc, &msg);
    if (kind == RCONN_E_AUTH || kind == RCONN_E_TLS ||
        kind == RCONN_E_ROLE || kind == RCONN_E_PROTOCOL) {
        snprintf(err, errlen, "%s", msg && msg[0] ? msg : why);
        return -1;
    }
    return 0;
}

void redis_cfg_describe(const struct config *c, char *buf, size_t len)
{
    if (c->redis_sentinels[0] != '\0') {
        snprintf(buf, len, "master '%s' via sentinels %s%s",
                 c->redis_master_name, c->redis_sentinels,
                 c->redis_tls ? " (TLS)" : "");
    } else {
        snprintf(buf, len, "%s:%d%s", c->redis_host, c->redis_port,
                 c->redis_tls ? " (TLS)" : "");
    }
}
