/* kafka_loop.c - see kafka_loop.h. */
#include "kafka_loop.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "text.h"

struct kafka_loop_watch {
    rd_kafka_queue_t *q;
    int pipefd[2];
    struct event *ev;
    int io_enabled; /* q's io event points at pipefd[1] */
    void (*fn)(void *arg);
    void *arg;
};

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct kafka_loop_watch *w = arg;
    char buf[256];

    (void)what;
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    w->fn(w->arg);
}

struct kafka_loop_watch *kafka_loop_watch(struct event_base *base,
                                          rd_kafka_queue_t *q,
                                          void (*fn)(void *arg), void *arg,
                                          char *errbuf, size_t errlen)
{
    struct kafka_loop_watch *w = calloc(1, sizeof(*w));

    if (w == NULL) {
        text_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    w->q = q;
    w->pipefd[0] = w->pipefd[1] = -1;
    w->fn = fn;
    w->arg = arg;
    if (pipe2(w->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
        text_errf(errbuf, errlen, "pipe: out of descriptors");
        goto err;
    }
    rd_kafka_queue_io_event_enable(q, w->pipefd[1], "1", 1);
    w->io_enabled = 1;
    w->ev = event_new(base, w->pipefd[0], EV_READ | EV_PERSIST, on_readable, w);
    if (w->ev == NULL || event_add(w->ev, NULL) != 0) {
        text_errf(errbuf, errlen, "out of memory");
        goto err;
    }
    return w;
err:
    kafka_loop_unwatch(w);
    return NULL;
}

void kafka_loop_unwatch(struct kafka_loop_watch *w)
{
    if (w == NULL) {
        return;
    }
    if (w->io_enabled) {
        rd_kafka_queue_io_event_enable(w->q, -1, NULL, 0);
    }
    if (w->ev != NULL) {
        event_free(w->ev);
    }
    if (w->pipefd[0] >= 0) {
        close(w->pipefd[0]);
    }
    if (w->pipefd[1] >= 0) {
        close(w->pipefd[1]);
    }
    free(w);
}
