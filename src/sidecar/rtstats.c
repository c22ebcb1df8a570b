#include "rtstats.h"

#include "frame.h"
#include "log.h"
#include "protocol.h"
#include "usock.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define RTSTATS_TIMEOUT_S 2.0

struct rtstats {
    ev_io io; /* first member: the callback casts back */
    ev_timer every;
    ev_timer timeout;
    struct ev_loop *loop;
    const char *socket_path;
    struct metrics *stats;
    int fd;
    bool unsupported;
    struct frame_reader in;
};

static void rtstats_close(struct rtstats *r)
{
    ev_io_stop(r->loop, &r->io);
    ev_timer_stop(r->loop, &r->timeout);
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    frame_reader_reset(&r->in);
}

static void rtstats_apply(struct rtstats *r, const char *text, size_t len)
{
    json_t *o = json_loadb(text, len, 0, NULL);
    json_t *restarts = json_object_get(o, "worker_restarts");
    if (!json_is_object(o) || !json_is_object(restarts)) {
        /* The reference runtime answers an error array: stop asking. */
        r->unsupported = true;
        log_info("the runtime does not report worker stats; metrics without them");
        json_decref(o);
        return;
    }
    for (int i = 0; i < METRICS_RESTART_CAUSES; i++) /* an absent cause counts 0 */
        r->stats->runtime_restarts[i] =
            (uint64_t)json_integer_value(json_object_get(restarts, metrics_restart_causes[i]));
    r->stats->runtime_workers = json_integer_value(json_object_get(o, "workers"));
    r->stats->runtime_busy = json_integer_value(json_object_get(o, "busy"));
    r->stats->have_runtime_stats = true;
    json_decref(o);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct rtstats *r = (struct rtstats *)w;
    (void)loop;
    (void)revents;
    int st = frame_reader_read(&r->in, r->fd);
    if (st == FRAME_IO_AGAIN)
        return;
    if (st == FRAME_IO_DONE) {
        size_t len;
        char *text = frame_reader_take(&r->in, &len);
        rtstats_apply(r, text, len);
        free(text);
    }
    rtstats_close(r);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    rtstats_close((struct rtstats *)((char *)w - offsetof(struct rtstats, timeout)));
}

static void every_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct rtstats *r = (struct rtstats *)((char *)w - offsetof(struct rtstats, every));
    (void)revents;
    if (r->unsupported || r->fd >= 0)
        return;
    int fd = usock_connect(r->socket_path, 1);
    if (fd < 0)
        return;
    /* A fresh unix socket takes a frame this small at once. */
    static const char req[] = PROTO_CONTROL_STATS;
    struct frame_writer out;
    if (frame_writer_init(&out, req, sizeof req - 1) ||
        frame_writer_write(&out, fd) != FRAME_IO_DONE) {
        close(fd);
        return;
    }
    r->fd = fd;
    frame_reader_init(&r->in, 1 << 16);
    ev_io_set(&r->io, fd, EV_READ);
    ev_io_start(loop, &r->io);
    ev_timer_set(&r->timeout, RTSTATS_TIMEOUT_S, 0.);
    ev_timer_start(loop, &r->timeout);
}

struct rtstats *rtstats_new(struct ev_loop *loop, const char *socket_path, double interval_s,
                            struct metrics *stats)
{
    struct rtstats *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->loop = loop;
    r->socket_path = socket_path;
    r->stats = stats;
    r->fd = -1;
    ev_io_init(&r->io, io_cb, -1, EV_READ);
    /* The first request comes early, so /metrics has the workers soon. */
    ev_timer_init(&r->every, every_cb, 0.5, interval_s);
    ev_timer_init(&r->timeout, timeout_cb, RTSTATS_TIMEOUT_S, 0.);
    frame_reader_init(&r->in, 1 << 16);
    return r;
}

void rtstats_start(struct rtstats *r)
{
    ev_timer_start(r->loop, &r->every);
}

void rtstats_free(struct rtstats *r)
{
    if (!r)
        return;
    rtstats_close(r);
    ev_timer_stop(r->loop, &r->every);
    free(r);
}
