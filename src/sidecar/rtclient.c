#include "rtclient.h"

#include "frame.h"
#include "protocol.h"
#include "usock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct slot {
    ev_io io;         /* first member: callbacks cast back; watches the runtime socket */
    ev_timer timeout; /* ASYA_RUNTIME_TIMEOUT */
    struct rtclient *rc;
    unsigned index;
    void *msg;        /* the caller's message, NULL when free */
    const char *body; /* borrowed from the caller */
    size_t len;
    struct frame_writer out;
    int fd;         /* runtime connection, kept open between calls; -1 when none */
    bool fd_reused; /* the request went on a connection that served an earlier one */
    bool retried;   /* already resent once on a fresh connection */
    struct frame_reader in;
    bool answer_started; /* some bytes of the answer arrived */
    bool progress;       /* the request asked for progress frames */
    ev_tstamp request_at;
};

struct rtclient {
    struct ev_loop *loop;
    struct rtclient_options opt;
    struct rtclient_events ev;
    void *ctx;
    struct slot *slots;
    unsigned *free_slots; /* stack of free slot indices */
    unsigned nfree;
};

int rtclient_probe(const char *socket_path)
{
    int fd = usock_connect(socket_path, 1);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

static void slot_close(struct rtclient *rc, struct slot *s)
{
    ev_io_stop(rc->loop, &s->io);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    frame_reader_reset(&s->in);
}

/* Free the slot (its connection stays open for the next call); returns the
 * message it ran. */
static void *slot_release(struct rtclient *rc, struct slot *s)
{
    void *msg = s->msg;
    ev_timer_stop(rc->loop, &s->timeout);
    if (s->fd >= 0)
        ev_io_stop(rc->loop, &s->io);
    frame_reader_reset(&s->in);
    s->msg = NULL;
    s->body = NULL;
    rc->free_slots[rc->nfree++] = s->index;
    return msg;
}

/* True when an idle kept-open connection is still usable. */
static bool conn_alive(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Open or reuse the connection and start writing the request.  Returns 0 or
 * a negative errno from connect. */
static int slot_connect_and_send(struct rtclient *rc, struct slot *s)
{
    if (s->fd >= 0 && !conn_alive(s->fd))
        slot_close(rc, s);
    s->fd_reused = s->fd >= 0;
    if (s->fd < 0) {
        int fd = usock_connect(rc->opt.socket_path, 1);
        if (fd < 0)
            return fd;
        s->fd = fd;
    }
    frame_reader_init(&s->in, rc->opt.max_answer);
    if (frame_writer_init(&s->out, s->body, s->len))
        return -EMSGSIZE;
    s->answer_started = false;
    ev_io_set(&s->io, s->fd, EV_WRITE);
    ev_io_start(rc->loop, &s->io);
    return 0;
}

static void slot_broken(struct rtclient *rc, struct slot *s, const char *why)
{
    slot_close(rc, s);
    if (!s->answer_started && s->fd_reused && !s->retried) {
        /* A kept-open connection the runtime had closed: resend once. */
        s->retried = true;
        int err = slot_connect_and_send(rc, s);
        if (err == 0) {
            s->fd_reused = false;
            return;
        }
        void *msg = slot_release(rc, s);
        rc->ev.unreachable(rc->ctx, msg, err);
        return;
    }
    void *msg = slot_release(rc, s);
    rc->ev.broken(rc->ctx, msg, why);
}

static void slot_write(struct rtclient *rc, struct slot *s)
{
    int st = frame_writer_write(&s->out, s->fd);
    if (st == FRAME_IO_AGAIN)
        return;
    if (st < 0) {
        slot_broken(rc, s, strerror(-st));
        return;
    }
    ev_io_stop(rc->loop, &s->io);
    ev_io_set(&s->io, s->fd, EV_READ);
    ev_io_start(rc->loop, &s->io);
}

/* A whole frame that is progress, not the answer: hand it over, read on.
 * Returns true when it was one. */
static bool slot_progress(struct rtclient *rc, struct slot *s)
{
    size_t len;
    if (!s->progress || !protocol_is_progress(s->in.body, s->in.body_len))
        return false;
    s->answer_started = true; /* the handler runs: never resend it */
    char *frame = frame_reader_take(&s->in, &len);
    void *msg = s->msg;
    if (rc->ev.progress)
        rc->ev.progress(rc->ctx, msg, frame, len);
    free(frame);
    return true;
}

static void slot_read(struct rtclient *rc, struct slot *s)
{
    int st;
    do
        st = frame_reader_read(&s->in, s->fd);
    while (st == FRAME_IO_DONE && slot_progress(rc, s));
    if (st == FRAME_IO_AGAIN) {
        s->answer_started = s->answer_started || frame_reader_partial(&s->in);
        return;
    }
    if (st == -EMSGSIZE || st == -ENOMEM) {
        uint32_t announced = s->in.announced;
        slot_close(rc, s);
        void *msg = slot_release(rc, s);
        rc->ev.too_large(rc->ctx, msg, announced);
        return;
    }
    if (st < 0) {
        if (st == -EPROTO)
            s->answer_started = true; /* never resend what may have run */
        slot_broken(rc, s,
                    st == -EPIPE    ? "closed before answering"
                    : st == -EPROTO ? "closed mid-answer"
                                    : strerror(-st));
        return;
    }
    size_t alen;
    char *answer = frame_reader_take(&s->in, &alen);
    double exec = ev_time() - s->request_at;
    /* A whole frame arrived, so the connection is in step even when the
     * answer turns out to be nonsense (bytes after it make the next reuse
     * check fail): free the slot first, so the next request goes out while
     * this answer is parsed and routed. */
    void *msg = slot_release(rc, s);
    rc->ev.answer(rc->ctx, msg, answer, alen, exec);
}

static void slot_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct slot *s = (struct slot *)w;
    (void)loop;
    if (!s->msg) {
        ev_io_stop(s->rc->loop, w);
        return;
    }
    if (revents & EV_WRITE)
        slot_write(s->rc, s);
    else if (revents & EV_READ)
        slot_read(s->rc, s);
}

static void slot_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct slot *s = (struct slot *)((char *)w - offsetof(struct slot, timeout));
    (void)loop;
    (void)revents;
    if (!s->msg)
        return;
    struct rtclient *rc = s->rc;
    slot_close(rc, s);
    void *msg = slot_release(rc, s);
    rc->ev.timeout(rc->ctx, msg);
}

struct rtclient *rtclient_new(struct ev_loop *loop, const struct rtclient_options *opt,
                              const struct rtclient_events *ev, void *ctx)
{
    struct rtclient *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    rc->loop = loop;
    rc->opt = *opt;
    rc->ev = *ev;
    rc->ctx = ctx;
    rc->slots = calloc(opt->slots, sizeof *rc->slots);
    rc->free_slots = calloc(opt->slots, sizeof *rc->free_slots);
    if (!rc->slots || !rc->free_slots) {
        free(rc->slots);
        free(rc->free_slots);
        free(rc);
        return NULL;
    }
    for (unsigned i = 0; i < opt->slots; i++) {
        struct slot *s = &rc->slots[i];
        s->rc = rc;
        s->index = i;
        s->fd = -1;
        ev_io_init(&s->io, slot_io_cb, -1, EV_READ);
        ev_timer_init(&s->timeout, slot_timeout_cb, 1., 0.);
        frame_reader_init(&s->in, opt->max_answer);
        rc->free_slots[rc->nfree++] = opt->slots - 1 - i;
    }
    return rc;
}

void rtclient_free(struct rtclient *rc)
{
    if (!rc)
        return;
    for (unsigned i = 0; i < rc->opt.slots; i++) {
        ev_io_stop(rc->loop, &rc->slots[i].io);
        ev_timer_stop(rc->loop, &rc->slots[i].timeout);
        if (rc->slots[i].fd >= 0)
            close(rc->slots[i].fd);
        frame_reader_reset(&rc->slots[i].in);
    }
    free(rc->slots);
    free(rc->free_slots);
    free(rc);
}

bool rtclient_has_free_slot(const struct rtclient *rc)
{
    return rc->nfree > 0;
}

int rtclient_start(struct rtclient *rc, void *msg, const char *body, size_t len, bool progress)
{
    struct slot *s = &rc->slots[rc->free_slots[rc->nfree - 1]];
    s->msg = msg;
    s->progress = progress;
    s->body = body;
    s->len = len;
    s->retried = false;
    int err = slot_connect_and_send(rc, s);
    if (err) {
        slot_close(rc, s);
        s->msg = NULL;
        s->body = NULL;
        return err;
    }
    rc->nfree--;
    s->request_at = ev_time();
    ev_timer_set(&s->timeout, rc->opt.timeout_s, 0.);
    ev_timer_start(rc->loop, &s->timeout);
    slot_write(rc, s);
    return 0;
}

void rtclient_abort_all(struct rtclient *rc)
{
    for (unsigned i = 0; i < rc->opt.slots; i++) {
        struct slot *s = &rc->slots[i];
        if (!s->msg)
            continue;
        slot_close(rc, s);
        slot_release(rc, s);
    }
}
