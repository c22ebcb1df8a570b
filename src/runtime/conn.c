#include "conn.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
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
#define CONTROL_MAX    256 /* largest control request looked for while paused */

static void conn_start_reading(struct conn *c);

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

void conn_close(struct conn *c)
{
    struct conn_server *s = c->srv;
    ev_io_stop(s->loop, &c->rio);
    ev_io_stop(s->loop, &c->wio);
    TAILQ_REMOVE(&s->all, c, all);
    if (s->count-- == s->max_conns && s->listening)
        ev_io_start(s->loop, &s->accept_io); /* room again */
    s->ev->closing(s->ctx, c);
    close(c->fd);
    frame_reader_reset(&c->rd);
    free(c->req);
    free(c->ans);
    free(c->prog);
    free(c);
}

static void conn_start_reading(struct conn *c)
{
    if (!c->parked)
        ev_io_start(c->srv->loop, &c->rio);
}

/* While paused: true when c's socket holds a whole control request (or its
 * end: reading then closes c), so c is read as usual. */
static bool conn_control_waiting(const struct conn *c)
{
    if (frame_reader_partial(&c->rd))
        return false; /* inside a request frame */
    unsigned char buf[FRAME_HEADER_LEN + CONTROL_MAX];
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (n <= 0)
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    if ((size_t)n < FRAME_HEADER_LEN)
        return false;
    uint32_t len = frame_get_header(buf);
    return len <= CONTROL_MAX && (size_t)n >= FRAME_HEADER_LEN + len &&
           protocol_is_control((const char *)buf + FRAME_HEADER_LEN, len);
}

static void conn_read(struct conn *c)
{
    struct conn_server *s = c->srv;
    if (s->paused && !conn_control_waiting(c)) {
        /* Back-pressure: the bytes wait in the socket until conn_pause(false). */
        c->parked = true;
        ev_io_stop(s->loop, &c->rio);
        return;
    }
    int rc = frame_reader_read(&c->rd, c->fd);
    if (rc == FRAME_IO_AGAIN)
        return;
    if (rc == FRAME_IO_DONE) {
        c->req = frame_reader_take(&c->rd, &c->req_len);
        c->state = CONN_WAITING;
        /* The socket stays watched, but only to notice the client leaving. */
        s->ev->request(s->ctx, c);
        return;
    }
    if (rc == -EMSGSIZE) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "request frame of %lu bytes exceeds ASYA_MAX_MESSAGE_BYTES (%zu bytes)",
                 (unsigned long)c->rd.announced, s->max_message);
        log_warn("%s: refused", msg);
        conn_send_error(c, PROTO_PARSING_ERROR, msg, "ValueError");
        return;
    }
    if (rc == -ENOMEM) {
        log_error("out of memory reading a request of %lu bytes", (unsigned long)c->rd.announced);
        conn_send_error(c, PROTO_PROCESSING_ERROR,
                        "asya-runtime ran out of memory reading the request", "MemoryError");
        return;
    }
    if (rc == -EPROTO)
        log_debug("client closed the connection in the middle of a frame");
    else if (rc != -EPIPE)
        log_debug("client read error: %s", strerror(-rc));
    conn_close(c);
}

/* While a request is out the socket is only watched for the client leaving;
 * pipelined input stays unread until the answer is written. */
static void conn_peek(struct conn *c)
{
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
        ev_io_stop(c->srv->loop, &c->rio);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    conn_close(c);
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = (struct conn *)w;
    (void)loop;
    (void)revents;
    if (c->state == CONN_READING)
        conn_read(c);
    else
        conn_peek(c);
}

/* Writes the progress frame in progress, if any: FRAME_IO_DONE when there is
 * none (left), FRAME_IO_AGAIN, or a negative errno. */
static int conn_write_progress(struct conn *c)
{
    if (!c->prog)
        return FRAME_IO_DONE;
    int rc = frame_writer_write(&c->pwr, c->fd);
    if (rc != FRAME_IO_AGAIN) {
        free(c->prog);
        c->prog = NULL;
    }
    return rc;
}

static void conn_write(struct conn *c)
{
    struct conn_server *s = c->srv;
    int rc = conn_write_progress(c);
    if (rc == FRAME_IO_DONE && c->state != CONN_WRITING) {
        ev_io_stop(s->loop, &c->wio); /* progress sent; the answer is not there yet */
        return;
    }
    if (rc == FRAME_IO_DONE)
        rc = frame_writer_write(&c->wr, c->fd);
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

void conn_send_answer(struct conn *c, char *body, size_t len)
{
    if (!body) {
        conn_close(c);
        return;
    }
    free(c->req);
    c->req = NULL;
    c->req_len = 0;
    free(c->ans);
    c->ans = body;
    c->state = CONN_WRITING;
    ev_io_stop(c->srv->loop, &c->rio);
    if (frame_writer_init(&c->wr, body, len) != 0) {
        log_error("answer of %zu bytes does not fit a frame", len);
        conn_close(c);
        return;
    }
    conn_write(c);
}

void conn_send_progress(struct conn *c, char *body, size_t len)
{
    if (c->state != CONN_WAITING || c->prog || frame_writer_init(&c->pwr, body, len) != 0) {
        free(body);
        return;
    }
    c->prog = body;
    conn_write(c);
}

void conn_send_error(struct conn *c, const char *code, const char *message, const char *type)
{
    size_t len = 0;
    char *text = protocol_error_text(code, message, type, "asya-runtime supervisor", &len);
    c->close_after_write = true;
    conn_send_answer(c, text, len);
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
        c->state = CONN_READING;
        if (++s->count == s->max_conns) {
            log_warn("%zu connections open: not accepting more until one closes", s->count);
            ev_io_stop(loop, &s->accept_io);
        }
        frame_reader_init(&c->rd, s->max_message);
        ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
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
    TAILQ_INIT(&s->all);
    ev_timer_init(&s->accept_retry, accept_retry_cb, ACCEPT_RETRY_S, 0);
    s->accept_retry.data = s;
}

int conn_listen(struct conn_server *s, const char *path, int mode, char *err, size_t errlen)
{
    int rc = make_parent_dirs(path, err, errlen);
    if (rc != 0)
        return rc;
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

size_t conn_in_flight(const struct conn_server *s)
{
    size_t n = 0;
    for (const struct conn *c = TAILQ_FIRST(&s->all); c; c = TAILQ_NEXT(c, all))
        n += c->state != CONN_READING;
    return n;
}
