#include "conn.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "protocol.h"
#include "usock.h"

/* As many pending connections as the system allows: Linux caps the value at
 * net.core.somaxconn (4096 by default). */
#define LISTEN_BACKLOG INT_MAX
#define ACCEPT_BURST   64  /* accepts per loop iteration */
#define ACCEPT_RETRY_S 0.1 /* after running out of fds or memory */
#define EVENT_BURST    64  /* connection events handled per loop iteration */

static void conn_start_reading(struct conn *c);
static void conn_read(struct conn *c);

/* ---- helpers ------------------------------------------------------------- */

/* Creates the parent directories of path (like mkdir -p). */
static int make_parent_dirs(const char *path, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof dir) {
        snprintf(err, errlen, "path too long");
        return -ENAMETOOLONG;
    }
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory %.300s: %s", dir, strerror(errno));
            return -errno;
        }
        *p = '/';
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create directory %.300s: %s", dir, strerror(errno));
        return -errno;
    }
    return 0;
}

/* ---- one connection ------------------------------------------------------- */

/*
 * Client sockets are watched through the server's own epoll set (one ev_io
 * for all of them), not an ev_io each: while a connection is lent its
 * request bytes sit in the socket, and it must be watched for the client
 * leaving only (EPOLLRDHUP), which libev cannot express; and a stopped
 * ev_io stays in libev's kernel set until it fires once more, a spurious
 * wake-up per request.  Here lending and taking back cost one
 * EPOLL_CTL_MOD each.
 */
static void conn_set_events(struct conn *c, uint32_t events)
{
    struct conn_server *s = c->srv;
    if (c->ep_added && c->ep_events == events)
        return;
    struct epoll_event e = {.events = events, .data.ptr = c};
    if (epoll_ctl(s->ep_fd, c->ep_added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e) != 0) {
        log_warn("epoll_ctl on a client connection: %s", strerror(errno));
        return;
    }
    c->ep_added = true;
    c->ep_events = events;
}

void conn_close(struct conn *c)
{
    struct conn_server *s = c->srv;
    if (c->closed)
        return;
    c->closed = true;
    ev_io_stop(s->loop, &c->wio);
    /* Before close: a worker may hold a copy of the fd, which would keep it
     * in the set. */
    if (c->ep_added)
        epoll_ctl(s->ep_fd, EPOLL_CTL_DEL, c->fd, NULL);
    TAILQ_REMOVE(&s->all, c, all);
    if (s->count-- == s->max_conns && s->listening)
        ev_io_start(s->loop, &s->accept_io); /* room again */
    s->ev->closing(s->ctx, c);
    /* A worker may keep a copy of the fd (handoff.h): shut the connection
     * down, so the client sees its end now, not when that copy goes. */
    shutdown(c->fd, SHUT_RDWR);
    close(c->fd);
    free(c->ans);
    c->ans = NULL;
    if (s->dispatching) {
        TAILQ_INSERT_TAIL(&s->dead, c, all); /* later events of this batch may name it */
        return;
    }
    free(c);
}

static void conn_start_reading(struct conn *c)
{
    conn_set_events(c, c->parked ? 0 : EPOLLIN);
}

/* Refuses a request frame announcing len bytes: an error answer, then close. */
static void conn_refuse(struct conn *c, uint32_t len)
{
    char msg[256];
    snprintf(msg, sizeof msg,
             "request frame of %lu bytes exceeds ASYA_MAX_MESSAGE_BYTES (%zu bytes)",
             (unsigned long)len, c->srv->max_message);
    log_warn("%s: refused", msg);
    /* Take the header (it was only peeked): closing with it unread would
     * reset the connection before the client reads the answer. */
    if (c->pre_len < FRAME_HEADER_LEN) {
        unsigned char hdr[FRAME_HEADER_LEN];
        ssize_t n = recv(c->fd, hdr, FRAME_HEADER_LEN - c->pre_len, MSG_DONTWAIT);
        (void)n;
    }
    conn_send_error(c, PROTO_PARSING_ERROR, msg, "ValueError");
}

/* A request is there: hands it to the owner (or parks c while paused). */
static void conn_request(struct conn *c, bool control)
{
    struct conn_server *s = c->srv;
    if (!control && s->paused) {
        /* Back-pressure: the bytes wait in the socket until conn_pause(false). */
        c->parked = true;
        conn_set_events(c, 0);
        return;
    }
    if (c->pre_len >= FRAME_HEADER_LEN)
        memcpy(c->hdr, c->pre, FRAME_HEADER_LEN);
    c->state = CONN_WAITING;
    c->control = control;
    if (control)
        conn_set_events(c, 0);
    s->ev->request(s->ctx, c);
    /* From now on only the client leaving matters (set after the owner lent
     * it, off the request's path; c may be gone or answered by now). */
    if (!control && !c->closed && c->state == CONN_WAITING)
        conn_set_events(c, EPOLLRDHUP);
}

/* Whether a small frame can be a control request at all: it must hold the
 * key.  Much cheaper than protocol_is_control's memmem on every small
 * request (memchr is vectorised, and envelopes hold few '_'). */
static bool conn_may_be_control(const unsigned char *data, size_t len)
{
    static const char key[] = PROTO_CONTROL_KEY; /* "asya_control": '_' at 4 */
    const unsigned char *end = data + len;
    const unsigned char *p = data + 4;
    while (p < end && (p = memchr(p, '_', (size_t)(end - p))) != NULL) {
        if ((size_t)(end - p) >= sizeof key - 1 - 4 && memcmp(p - 4, key, sizeof key - 1) == 0)
            return true;
        p++;
    }
    return false;
}

static bool conn_is_control(const unsigned char *data, size_t len)
{
    return conn_may_be_control(data, len) && protocol_is_control((const char *)data, len);
}

/* What c->pre holds: -1 not enough to decide yet, 0 a header of a large
 * frame (lend it as is), 1 a small frame whole. */
static int conn_pre_state(const struct conn *c)
{
    if (c->pre_len < FRAME_HEADER_LEN)
        return -1;
    uint32_t len = frame_get_header(c->pre);
    if (len > CONN_CONTROL_MAX)
        return 0;
    return c->pre_len >= FRAME_HEADER_LEN + len ? 1 : -1;
}

static void conn_read(struct conn *c)
{
    struct conn_server *s = c->srv;
    if (c->pre_len == 0) {
        /* The usual case: the request's start is there; look without taking. */
        unsigned char buf[FRAME_HEADER_LEN + CONN_CONTROL_MAX];
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            if (n < 0 && errno != ECONNRESET)
                log_debug("client read error: %s", strerror(errno));
            conn_close(c); /* the client left between requests */
            return;
        }
        if ((size_t)n >= FRAME_HEADER_LEN) {
            memcpy(c->hdr, buf, FRAME_HEADER_LEN);
            uint32_t len = frame_get_header(buf);
            if (len > s->max_message) {
                conn_refuse(c, len);
                return;
            }
            if (len > CONN_CONTROL_MAX) {
                conn_request(c, false);
                return;
            }
            if ((size_t)n >= FRAME_HEADER_LEN + len) {
                if (!conn_is_control(buf + FRAME_HEADER_LEN, len)) {
                    conn_request(c, false);
                    return;
                }
                /* A control request: answered here, so it is taken. */
                ssize_t got = recv(c->fd, c->pre, FRAME_HEADER_LEN + len, MSG_DONTWAIT);
                if (got != (ssize_t)(FRAME_HEADER_LEN + len)) {
                    conn_close(c);
                    return;
                }
                c->pre_len = (size_t)got;
                conn_request(c, true);
                return;
            }
        }
        /* A header, or a small frame, still arriving: it is read here (a
         * few bytes), so waiting for the rest does not spin the loop. */
    }
    int ready = conn_pre_state(c);
    if (ready < 0) {
        size_t want = c->pre_len < FRAME_HEADER_LEN
                          ? FRAME_HEADER_LEN - c->pre_len
                          : FRAME_HEADER_LEN + frame_get_header(c->pre) - c->pre_len;
        ssize_t n = recv(c->fd, c->pre + c->pre_len, want, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            log_debug("client closed the connection in the middle of a frame");
            conn_close(c);
            return;
        }
        c->pre_len += (size_t)n;
        if (c->pre_len >= FRAME_HEADER_LEN && frame_get_header(c->pre) > s->max_message) {
            conn_refuse(c, frame_get_header(c->pre));
            return;
        }
        ready = conn_pre_state(c);
        if (ready < 0)
            return;
    }
    bool control =
        ready == 1 && conn_is_control(c->pre + FRAME_HEADER_LEN, c->pre_len - FRAME_HEADER_LEN);
    conn_request(c, control);
}

/* After an answer: drops the rest of the request it answered, still in the
 * socket (no worker took it), so the stream stays framed. */
static void conn_skip(struct conn *c)
{
    char buf[65536];
    while (c->skip_left > 0) {
        size_t want = c->skip_left < sizeof buf ? (size_t)c->skip_left : sizeof buf;
        ssize_t n = recv(c->fd, buf, want, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->skip_left -= (uint64_t)n;
    }
    if (c->close_after_write || c->srv->draining) {
        conn_close(c);
        return;
    }
    c->state = CONN_READING;
}

/* One readiness event of c's socket. */
static void conn_event(struct conn *c, uint32_t events)
{
    switch (c->state) {
    case CONN_READING:
        conn_read(c);
        break;
    case CONN_SKIPPING:
        conn_skip(c);
        break;
    case CONN_WAITING:
        if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            log_debug("client left while its request was out");
            conn_close(c);
        }
        break;
    default:
        conn_set_events(c, 0);
        break;
    }
}

static void conns_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn_server *s = w->data;
    struct epoll_event evs[EVENT_BURST];
    (void)loop;
    (void)revents;
    int n = epoll_wait(s->ep_fd, evs, EVENT_BURST, 0);
    s->dispatching = true;
    for (int i = 0; i < n; i++) {
        struct conn *c = evs[i].data.ptr;
        if (!c->closed)
            conn_event(c, evs[i].events);
    }
    s->dispatching = false;
    while (!TAILQ_EMPTY(&s->dead)) {
        struct conn *c = TAILQ_FIRST(&s->dead);
        TAILQ_REMOVE(&s->dead, c, all);
        free(c);
    }
}

/* Conns parked with their request already read whole into pre get no more
 * readiness: read them once after resuming. */
static void kick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct conn_server *s = t->data;
    (void)loop;
    (void)revents;
    s->dispatching = true;
    for (struct conn *c = TAILQ_FIRST(&s->all); c; c = TAILQ_NEXT(c, all)) {
        if (c->kick && !c->closed) {
            c->kick = false;
            if (c->state == CONN_READING && !c->parked)
                conn_read(c);
        }
    }
    s->dispatching = false;
    while (!TAILQ_EMPTY(&s->dead)) {
        struct conn *c = TAILQ_FIRST(&s->dead);
        TAILQ_REMOVE(&s->dead, c, all);
        free(c);
    }
}

static void conn_write(struct conn *c)
{
    struct conn_server *s = c->srv;
    int rc = frame_writer_write(&c->wr, c->fd);
    if (rc == FRAME_IO_AGAIN) {
        ev_io_start(s->loop, &c->wio);
        return;
    }
    ev_io_stop(s->loop, &c->wio);
    if (rc < 0) {
        log_debug("client went away before its answer was written: %s", strerror(-rc));
        conn_close(c);
        return;
    }
    free(c->ans);
    c->ans = NULL;
    if (c->skip_left > 0) {
        c->state = CONN_SKIPPING;
        conn_set_events(c, EPOLLIN);
        return;
    }
    if (c->close_after_write || s->draining) {
        conn_close(c);
        return;
    }
    c->state = CONN_READING;
    conn_start_reading(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_write(w->data);
}

void conn_send_answer(struct conn *c, char *body, size_t len, bool close_after)
{
    if (!body) {
        conn_close(c);
        return;
    }
    conn_set_events(c, 0);
    c->pre_len = 0;
    c->control = false;
    free(c->ans);
    c->ans = body;
    c->state = CONN_WRITING;
    c->close_after_write = c->close_after_write || close_after;
    if (frame_writer_init(&c->wr, body, len) != 0) {
        log_error("answer of %zu bytes does not fit a frame", len);
        conn_close(c);
        return;
    }
    conn_write(c);
}

int conn_skip_request(struct conn *c)
{
    unsigned char hdr[FRAME_HEADER_LEN];
    if (c->pre_len >= FRAME_HEADER_LEN) {
        memcpy(hdr, c->pre, sizeof hdr);
    } else {
        ssize_t n = recv(c->fd, hdr, sizeof hdr, MSG_PEEK | MSG_DONTWAIT);
        if (n != (ssize_t)sizeof hdr)
            return -EPROTO;
    }
    uint64_t whole = FRAME_HEADER_LEN + (uint64_t)frame_get_header(hdr);
    c->skip_left = whole > c->pre_len ? whole - c->pre_len : 0;
    return 0;
}

void conn_returned(struct conn *c, bool reusable)
{
    c->pre_len = 0;
    if (!reusable || c->srv->draining) {
        conn_close(c);
        return;
    }
    c->state = CONN_READING;
    conn_start_reading(c);
}

void conn_send_error(struct conn *c, const char *code, const char *message, const char *type)
{
    size_t len = 0;
    char *text = protocol_error_text(code, message, type, "asya-runtime supervisor", &len);
    conn_send_answer(c, text, len, true);
}

/* ---- the server ----------------------------------------------------------- */

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn_server *s = w->data;
    (void)revents;
    for (int i = 0; i < ACCEPT_BURST && s->count < s->max_conns; i++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn("accept: %s; retrying in 100ms", strerror(errno));
                ev_io_stop(loop, &s->accept_io);
                ev_timer_start(loop, &s->accept_retry);
                return;
            }
            log_error("accept: %s", strerror(errno));
            return;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            log_error("out of memory accepting a connection");
            close(fd);
            continue;
        }
        c->srv = s;
        c->fd = fd;
        c->id = ++s->last_id;
        c->state = CONN_READING;
        if (++s->count == s->max_conns) {
            log_warn("%zu connections open: not accepting more until one closes", s->count);
            ev_io_stop(loop, &s->accept_io);
        }
        ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
        c->wio.data = c;
        TAILQ_INSERT_TAIL(&s->all, c, all);
        conn_start_reading(c);
    }
}

static void accept_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct conn_server *s = t->data;
    (void)revents;
    if (s->listening && s->count < s->max_conns)
        ev_io_start(loop, &s->accept_io);
}

void conn_server_init(struct conn_server *s, struct ev_loop *loop, size_t max_message,
                      size_t max_conns, const struct conn_events *ev, void *ctx)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->ev = ev;
    s->ctx = ctx;
    s->max_message = max_message;
    s->max_conns = max_conns ? max_conns : 1;
    s->listen_fd = -1;
    s->ep_fd = -1;
    TAILQ_INIT(&s->all);
    TAILQ_INIT(&s->dead);
    ev_timer_init(&s->kick, kick_cb, 0, 0);
    s->kick.data = s;
    ev_timer_init(&s->accept_retry, accept_retry_cb, ACCEPT_RETRY_S, 0);
    s->accept_retry.data = s;
}

int conn_listen(struct conn_server *s, const char *path, int mode, char *err, size_t errlen)
{
    int rc = make_parent_dirs(path, err, errlen);
    if (rc != 0)
        return rc;
    if (s->ep_fd < 0) {
        s->ep_fd = epoll_create1(EPOLL_CLOEXEC);
        if (s->ep_fd < 0) {
            snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
            return -errno;
        }
        ev_io_init(&s->ep_io, conns_cb, s->ep_fd, EV_READ);
        s->ep_io.data = s;
        ev_io_start(s->loop, &s->ep_io);
    }
    int fd = usock_listen(path, mode, LISTEN_BACKLOG, err, errlen);
    if (fd < 0)
        return fd;
    s->listen_fd = fd;
    s->path = path;
    s->listening = true;
    ev_io_init(&s->accept_io, accept_cb, fd, EV_READ);
    s->accept_io.data = s;
    if (s->count < s->max_conns)
        ev_io_start(s->loop, &s->accept_io);
    return 0;
}

void conn_unlisten(struct conn_server *s)
{
    if (!s->listening)
        return;
    ev_io_stop(s->loop, &s->accept_io);
    ev_timer_stop(s->loop, &s->accept_retry);
    close(s->listen_fd);
    s->listen_fd = -1;
    unlink(s->path);
    s->listening = false;
}

void conn_pause(struct conn_server *s, bool paused)
{
    if (s->paused == paused)
        return;
    s->paused = paused;
    if (paused)
        return; /* connections park when they next have input */
    /* An explicit walk, not TAILQ_FOREACH: cppcheck cannot see through the
     * macro and reports c->state as uninitialized. */
    for (struct conn *c = TAILQ_FIRST(&s->all); c; c = TAILQ_NEXT(c, all)) {
        if (c->parked) {
            c->parked = false;
            conn_start_reading(c);
            if (c->pre_len > 0) {
                /* Its request may sit whole in c->pre: no readiness would come. */
                c->kick = true;
                ev_timer_start(s->loop, &s->kick);
            }
        }
    }
}

static void close_all(struct conn_server *s, bool only_idle)
{
    struct conn *c = TAILQ_FIRST(&s->all);
    while (c) {
        struct conn *next = TAILQ_NEXT(c, all);
        if (!only_idle || c->state == CONN_READING)
            conn_close(c);
        c = next;
    }
}

void conn_drain(struct conn_server *s)
{
    s->draining = true;
    conn_unlisten(s);
    close_all(s, true); /* idle keep-alive connections */
}

void conn_close_all(struct conn_server *s)
{
    close_all(s, false);
}

void conn_server_done(struct conn_server *s)
{
    ev_timer_stop(s->loop, &s->kick);
    if (s->ep_fd < 0)
        return;
    ev_io_stop(s->loop, &s->ep_io);
    close(s->ep_fd);
    s->ep_fd = -1;
}

size_t conn_in_flight(const struct conn_server *s)
{
    size_t n = 0;
    for (const struct conn *c = TAILQ_FIRST(&s->all); c; c = TAILQ_NEXT(c, all))
        n += c->state != CONN_READING && c->state != CONN_SKIPPING;
    return n;
}
