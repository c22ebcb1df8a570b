#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>

#include "frame.h"
#include "log.h"
#include "protocol.h"
#include "usock.h"
#include "worker.h"

/* ---- constants ----------------------------------------------------------- */

#define LISTEN_BACKLOG 1024
#define QUEUE_MAX      1024  /* queued requests before clients stop being read */
#define ACCEPT_BURST   64    /* accepts per loop iteration */
#define READ_CHUNK     65536 /* bytes per read(2) */
#define ANSWER_SLACK   65536 /* worker answers may exceed the limit by an error text */
#define RESTART_MIN_S  0.1   /* first delay after a worker dies at start */
#define RESTART_MAX_S  5.0
#define EARLY_DEATH_S  1.0 /* a worker dying this soon after start counts as failing */
#define WORKER_STOP_S  5.0 /* grace for workers to run asya_fini before SIGKILL */

/* ---- types --------------------------------------------------------------- */

struct supervisor;
struct worker;

enum conn_state {
    CONN_READING, /* reading a request frame */
    CONN_QUEUED,  /* request complete, waiting for a worker */
    CONN_BUSY,    /* request in a worker */
    CONN_WRITING, /* writing the answer */
};

struct conn {
    ev_io rio; /* first member: callbacks cast back */
    ev_io wio;
    struct supervisor *sv;
    int fd; /* owned */
    enum conn_state state;
    struct frame_reader rd;
    char *req; /* owned: the request body while queued or busy */
    size_t req_len;
    unsigned char ans_hdr[FRAME_HEADER_LEN];
    char *ans; /* owned: the answer body while writing */
    size_t ans_len;
    size_t ans_off;          /* header + body bytes written */
    bool close_after_write;  /* the stream cannot continue (oversized frame) */
    struct worker *worker;   /* borrowed, while CONN_BUSY */
    TAILQ_ENTRY(conn) all;   /* every connection */
    TAILQ_ENTRY(conn) queue; /* while CONN_QUEUED */
};

enum worker_state {
    W_OFF,      /* no process (restart pending, or stopped) */
    W_STARTING, /* process started, waiting for its ready frame */
    W_IDLE,
    W_BUSY,
    W_STOPPING, /* channel closed, waiting for exit */
};

struct worker {
    ev_io rio;
    ev_io wio;
    ev_child child;
    ev_timer restart;
    struct supervisor *sv;
    int slot;
    pid_t pid;
    int fd; /* owned: supervisor end of the channel, -1 when none */
    enum worker_state state;
    struct frame_reader rd;
    struct conn *conn; /* borrowed, while W_BUSY; NULL if its client went away */
    unsigned char req_hdr[FRAME_HEADER_LEN];
    size_t req_off;
    bool killed_by_us;   /* SIGKILLed because its client left: no answer owed */
    bool bad_answer;     /* killed because its answer broke the protocol */
    bool fatal_reported; /* it sent a fatal start-up line */
    int early_deaths;    /* consecutive deaths soon after start */
    ev_tstamp started;
};

TAILQ_HEAD(conn_list, conn);

struct supervisor {
    struct ev_loop *loop;
    const struct runtime_config *cfg; /* borrowed */
    const char *exe;                  /* borrowed */
    int listen_fd;
    bool listening;  /* socket file exists and is ours */
    bool ready_file; /* ready file created by us */
    bool serving;    /* all workers were ready once; start-up is over */
    bool paused;     /* the queue is full: no accepts, no reads */
    bool stopping;   /* SIGTERM seen */
    bool workers_stopping;
    int exit_code;
    ev_io accept_io;
    ev_timer accept_retry;
    ev_timer shutdown_timer;
    ev_timer stop_timer;
    ev_signal sigterm;
    ev_signal sigint;
    struct worker *workers;
    size_t nworkers;
    struct conn_list conns;
    struct conn_list queue;
    size_t queued;
    /* Worker deaths by cause, for the control "stats" answer. */
    unsigned long restarts_crash, restarts_oom_kill, restarts_timeout_kill, restarts_exit;
};

static void conn_close(struct conn *c);
static void conn_start_reading(struct conn *c);
static void conn_send_answer(struct conn *c, char *body, size_t len);
static void dispatch(struct supervisor *sv);
static void worker_spawn(struct worker *w);
static void check_drained(struct supervisor *sv);
static void begin_shutdown(struct supervisor *sv, int exit_code);

/* ---- helpers ------------------------------------------------------------- */

/* "SIGSEGV" for a signal number, into buf. */
static const char *signal_name(int sig, char *buf, size_t len)
{
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(buf, len, "SIG%s", abbrev);
    else
        snprintf(buf, len, "SIG%d", sig);
    return buf;
}

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

/*
 * Writes what fits of a 4-byte header followed by body, resuming at *off
 * (counted over header + body).  Returns 1 when all is written, 0 when the
 * socket is full, or a negative errno.
 */
static int write_frame_nb(int fd, const unsigned char *hdr, const char *body, size_t len,
                          size_t *off)
{
    size_t total = FRAME_HEADER_LEN + len;
    while (*off < total) {
        struct iovec iov[2];
        int n = 0;
        if (*off < FRAME_HEADER_LEN) {
            iov[n].iov_base = (void *)(hdr + *off);
            iov[n].iov_len = FRAME_HEADER_LEN - *off;
            n++;
            if (len) {
                iov[n].iov_base = (void *)body;
                iov[n].iov_len = len;
                n++;
            }
        } else {
            size_t boff = *off - FRAME_HEADER_LEN;
            iov[n].iov_base = (void *)(body + boff);
            iov[n].iov_len = len - boff;
            n++;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        *off += (size_t)w;
    }
    return 1;
}

static char *error_text(const char *code, const char *message, const char *type,
                        const char *traceback, size_t *len)
{
    return protocol_error_text(code, message, type, traceback, len);
}

/* ---- queue and back-pressure --------------------------------------------- */

static void set_paused(struct supervisor *sv, bool paused)
{
    if (sv->paused == paused)
        return;
    sv->paused = paused;
    struct conn *c;
    if (paused) {
        log_warn("request queue full (%d waiting): pausing reads until a worker frees up",
                 QUEUE_MAX);
        if (sv->listening)
            ev_io_stop(sv->loop, &sv->accept_io);
        TAILQ_FOREACH(c, &sv->conns, all) {
            if (c->state == CONN_READING)
                ev_io_stop(sv->loop, &c->rio);
        }
    } else {
        log_info("request queue has room again: resuming reads");
        if (sv->listening && !sv->stopping)
            ev_io_start(sv->loop, &sv->accept_io);
        TAILQ_FOREACH(c, &sv->conns, all) {
            if (c->state == CONN_READING)
                conn_start_reading(c);
        }
    }
}

static void queue_push(struct conn *c)
{
    struct supervisor *sv = c->sv;
    c->state = CONN_QUEUED;
    TAILQ_INSERT_TAIL(&sv->queue, c, queue);
    sv->queued++;
    if (sv->queued >= QUEUE_MAX)
        set_paused(sv, true);
}

static void queue_remove(struct conn *c)
{
    struct supervisor *sv = c->sv;
    TAILQ_REMOVE(&sv->queue, c, queue);
    sv->queued--;
    if (sv->paused && sv->queued < QUEUE_MAX / 2)
        set_paused(sv, false);
}

/* ---- client connections --------------------------------------------------- */

static void conn_close(struct conn *c)
{
    struct supervisor *sv = c->sv;
    ev_io_stop(sv->loop, &c->rio);
    ev_io_stop(sv->loop, &c->wio);
    if (c->state == CONN_QUEUED)
        queue_remove(c);
    if (c->state == CONN_BUSY && c->worker) {
        /* The client left while a worker runs its request (its timeout
         * fired): nobody wants the answer, so the worker is killed rather than
         * left running, and replaced. */
        struct worker *w = c->worker;
        w->conn = NULL;
        if (!w->killed_by_us) {
            w->killed_by_us = true;
            log_warn("client disconnected while worker %ld was handling its request: killing "
                     "the worker",
                     (long)w->pid);
            kill(w->pid, SIGKILL);
        }
    }
    TAILQ_REMOVE(&sv->conns, c, all);
    close(c->fd);
    frame_reader_reset(&c->rd);
    free(c->req);
    free(c->ans);
    free(c);
    if (sv->stopping)
        check_drained(sv);
}

static void conn_start_reading(struct conn *c)
{
    if (c->state == CONN_READING && c->sv->paused)
        return; /* back-pressure: resumed by set_paused() */
    ev_io_start(c->sv->loop, &c->rio);
}

/* The answer to a control "stats" request (see protocol.h), or NULL. */
static char *stats_text(const struct supervisor *sv, size_t *len)
{
    size_t idle = 0, busy = 0;
    for (size_t i = 0; i < sv->nworkers; i++) {
        idle += sv->workers[i].state == W_IDLE;
        busy += sv->workers[i].state == W_BUSY;
    }
    json_t *o =
        json_pack("{s:s, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I}}", "asya_runtime",
                  ASYA_BUILD_VERSION, "workers", (json_int_t)sv->nworkers, "idle", (json_int_t)idle,
                  "busy", (json_int_t)busy, "queued", (json_int_t)sv->queued, "worker_restarts",
                  "crash", (json_int_t)sv->restarts_crash, "oom_kill",
                  (json_int_t)sv->restarts_oom_kill, "timeout_kill",
                  (json_int_t)sv->restarts_timeout_kill, "exit", (json_int_t)sv->restarts_exit);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s)
        *len = strlen(s);
    return s;
}

/* A complete request frame arrived. */
static void conn_got_request(struct conn *c)
{
    c->req = frame_reader_take(&c->rd, &c->req_len);
    if (protocol_is_control(c->req, c->req_len)) {
        /* Answered here, without a worker: a cheap health and stats probe. */
        size_t len = 0;
        char *text = stats_text(c->sv, &len);
        if (text)
            conn_send_answer(c, text, len);
        else
            conn_close(c);
        return;
    }
    queue_push(c);
    /* Keep watching the socket, but only to notice the client leaving. */
    dispatch(c->sv);
}

/* Replies with an error and closes once it is written. */
static void conn_fail(struct conn *c, const char *code, const char *message, const char *type)
{
    size_t len = 0;
    char *text = error_text(code, message, type, "asya-runtime supervisor", &len);
    if (!text) {
        conn_close(c);
        return;
    }
    c->close_after_write = true;
    conn_send_answer(c, text, len);
}

static void conn_read(struct conn *c)
{
    char buf[READ_CHUNK];
    for (;;) {
        struct frame_reader *r = &c->rd;
        size_t need = r->hdr_got < FRAME_HEADER_LEN ? FRAME_HEADER_LEN - r->hdr_got
                                                    : r->body_len - r->body_got;
        if (need > sizeof buf)
            need = sizeof buf;
        ssize_t n = read(c->fd, buf, need);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            log_debug("client read error: %s", strerror(errno));
            conn_close(c);
            return;
        }
        if (n == 0) {
            if (frame_reader_partial(r))
                log_debug("client closed the connection in the middle of a frame");
            conn_close(c);
            return;
        }
        size_t used = 0;
        int st = frame_reader_feed(r, buf, (size_t)n, &used);
        if (st == FRAME_COMPLETE) {
            conn_got_request(c);
            return;
        }
        if (st == FRAME_TOO_LARGE) {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "request frame of %lu bytes exceeds ASYA_MAX_MESSAGE_BYTES (%zu bytes)",
                     (unsigned long)r->announced, c->sv->cfg->max_message);
            log_warn("%s: refused", msg);
            ev_io_stop(c->sv->loop, &c->rio);
            conn_fail(c, PROTO_PARSING_ERROR, msg, "ValueError");
            return;
        }
        if (st == FRAME_NOMEM) {
            log_error("out of memory reading a request of %lu bytes", (unsigned long)r->announced);
            ev_io_stop(c->sv->loop, &c->rio);
            conn_fail(c, PROTO_PROCESSING_ERROR,
                      "asya-runtime ran out of memory reading the request", "MemoryError");
            return;
        }
    }
}

/* While a request is queued or in a worker the socket is only watched for
 * the client leaving; pipelined input stays unread until the answer is out. */
static void conn_peek(struct conn *c)
{
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
        ev_io_stop(c->sv->loop, &c->rio);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (c->state == CONN_QUEUED)
        log_debug("client left while its request was queued: dropping it");
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

static void conn_write(struct conn *c)
{
    int rc = write_frame_nb(c->fd, c->ans_hdr, c->ans, c->ans_len, &c->ans_off);
    if (rc == 0) {
        ev_io_start(c->sv->loop, &c->wio);
        return;
    }
    ev_io_stop(c->sv->loop, &c->wio);
    if (rc < 0) {
        log_debug("client went away before its answer was written: %s", strerror(-rc));
        conn_close(c);
        return;
    }
    free(c->ans);
    c->ans = NULL;
    if (c->close_after_write || c->sv->stopping) {
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

/* Takes ownership of body. */
static void conn_send_answer(struct conn *c, char *body, size_t len)
{
    free(c->req);
    c->req = NULL;
    c->worker = NULL;
    c->state = CONN_WRITING;
    ev_io_stop(c->sv->loop, &c->rio);
    c->ans = body;
    c->ans_len = len;
    c->ans_off = 0;
    frame_put_header(c->ans_hdr, (uint32_t)len);
    conn_write(c);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct supervisor *sv = w->data;
    (void)revents;
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(sv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn("accept: %s; retrying in 100ms", strerror(errno));
                ev_io_stop(loop, &sv->accept_io);
                ev_timer_start(loop, &sv->accept_retry);
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
        c->sv = sv;
        c->fd = fd;
        c->state = CONN_READING;
        frame_reader_init(&c->rd, sv->cfg->max_message);
        ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
        ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
        c->wio.data = c;
        TAILQ_INSERT_TAIL(&sv->conns, c, all);
        conn_start_reading(c);
    }
}

static void accept_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct supervisor *sv = t->data;
    (void)revents;
    if (sv->listening && !sv->paused && !sv->stopping)
        ev_io_start(loop, &sv->accept_io);
}

/* ---- serving -------------------------------------------------------------- */

static void remove_files(struct supervisor *sv)
{
    if (sv->listening) {
        ev_io_stop(sv->loop, &sv->accept_io);
        ev_timer_stop(sv->loop, &sv->accept_retry);
        close(sv->listen_fd);
        sv->listen_fd = -1;
        unlink(sv->cfg->socket_path);
        sv->listening = false;
    }
    if (sv->ready_file) {
        unlink(sv->cfg->ready_file);
        sv->ready_file = false;
    }
}

/* All workers reported ready for the first time: open the socket. */
static void start_serving(struct supervisor *sv)
{
    const struct runtime_config *cfg = sv->cfg;
    char err[512];
    sv->serving = true;
    if (make_parent_dirs(cfg->socket_path, err, sizeof err) != 0) {
        log_error("ASYA_SOCKET_PATH=%s: %s", cfg->socket_path, err);
        begin_shutdown(sv, 1);
        return;
    }
    int fd = usock_listen(cfg->socket_path, cfg->socket_mode, LISTEN_BACKLOG, err, sizeof err);
    if (fd < 0) {
        log_error("ASYA_SOCKET_PATH=%s: %s", cfg->socket_path, err);
        begin_shutdown(sv, 1);
        return;
    }
    sv->listen_fd = fd;
    sv->listening = true;
    ev_io_init(&sv->accept_io, accept_cb, fd, EV_READ);
    sv->accept_io.data = sv;
    ev_io_start(sv->loop, &sv->accept_io);

    if (cfg->ready_file) {
        int rfd = open(cfg->ready_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (rfd < 0) {
            log_error("ASYA_READY_FILE=%s: cannot create it: %s", cfg->ready_file, strerror(errno));
            begin_shutdown(sv, 1);
            return;
        }
        char line[32];
        int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
        ssize_t wr = write(rfd, line, (size_t)n);
        (void)wr;
        close(rfd);
        sv->ready_file = true;
    }
    log_info("ready: serving %s (%s mode) on %s with %zu worker(s)", cfg->handler,
             config_mode_name(cfg->mode), cfg->socket_path, sv->nworkers);
}

/* Hands queued requests to idle workers. */
static void dispatch(struct supervisor *sv)
{
    for (size_t i = 0; i < sv->nworkers && sv->queued > 0; i++) {
        struct worker *w = &sv->workers[i];
        if (w->state != W_IDLE)
            continue;
        struct conn *c = TAILQ_FIRST(&sv->queue);
        queue_remove(c);
        c->state = CONN_BUSY;
        c->worker = w;
        w->conn = c;
        w->state = W_BUSY;
        w->req_off = 0;
        frame_put_header(w->req_hdr, (uint32_t)c->req_len);
        int rc = write_frame_nb(w->fd, w->req_hdr, c->req, c->req_len, &w->req_off);
        if (rc == 0)
            ev_io_start(sv->loop, &w->wio);
        /* rc < 0: the worker is dying; its exit answers the request. */
    }
}

/* ---- workers -------------------------------------------------------------- */

static void worker_fatal_at_start(struct worker *w, const char *line)
{
    struct supervisor *sv = w->sv;
    if (!sv->serving && !sv->stopping) {
        log_error("%s", line);
        begin_shutdown(sv, 1);
    } else if (!sv->stopping) {
        log_error("worker %ld failed to start: %s", (long)w->pid, line);
    }
}

/* The first frame of a worker: ready or fatal. */
static void worker_control(struct worker *w, const char *body, size_t len)
{
    json_t *o = json_loadb(body, len, 0, NULL);
    const char *kind = json_string_value(json_object_get(o, WORKER_MSG_KEY));
    const char *msg = json_string_value(json_object_get(o, "message"));
    if (kind && strcmp(kind, WORKER_MSG_READY) == 0) {
        struct supervisor *sv = w->sv;
        w->state = W_IDLE;
        w->early_deaths = 0;
        const char *mod = json_string_value(json_object_get(o, "module"));
        const char *ver = json_string_value(json_object_get(o, "version"));
        log_debug("worker %ld ready (slot %d, module %s %s)", (long)w->pid, w->slot,
                  mod ? mod : "-", ver ? ver : "");
        json_decref(o);
        if (!sv->serving && !sv->stopping) {
            size_t ready = 0;
            for (size_t i = 0; i < sv->nworkers; i++)
                ready += sv->workers[i].state == W_IDLE;
            if (ready == sv->nworkers)
                start_serving(sv);
        }
        if (!sv->workers_stopping)
            dispatch(sv); /* queued requests still run while draining */
        check_drained(sv);
        return;
    }
    w->fatal_reported = true;
    worker_fatal_at_start(w, msg ? msg : "worker sent an unreadable start-up message");
    json_decref(o);
    kill(w->pid, SIGKILL);
}

/* An answer from a busy worker. Takes ownership of body. */
static void worker_answer(struct worker *w, char *body, size_t len)
{
    struct conn *c = w->conn;
    w->conn = NULL;
    w->state = W_IDLE;
    ev_io_stop(w->sv->loop, &w->wio);
    if (c)
        conn_send_answer(c, body, len);
    else
        free(body);
    if (!w->sv->workers_stopping)
        dispatch(w->sv); /* queued requests still run while draining */
    check_drained(w->sv);
}

static void worker_protocol_error(struct worker *w, const char *what)
{
    log_error("worker %ld broke the channel protocol (%s): killing it", (long)w->pid, what);
    w->bad_answer = true;
    ev_io_stop(w->sv->loop, &w->rio);
    kill(w->pid, SIGKILL);
}

/* Reads what the worker sent.  Returns false at end of stream or error. */
static bool worker_read(struct worker *w)
{
    char buf[READ_CHUNK];
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return true;
            return false;
        }
        if (n == 0)
            return false;
        size_t off = 0;
        while (off < (size_t)n) {
            size_t used = 0;
            int st = frame_reader_feed(&w->rd, buf + off, (size_t)n - off, &used);
            off += used;
            if (st == FRAME_INCOMPLETE)
                break;
            if (st != FRAME_COMPLETE) {
                worker_protocol_error(w,
                                      st == FRAME_TOO_LARGE ? "answer too large" : "out of memory");
                return false;
            }
            size_t len;
            char *body = frame_reader_take(&w->rd, &len);
            if (w->state == W_STARTING) {
                worker_control(w, body, len);
                free(body);
            } else if (w->state == W_BUSY) {
                worker_answer(w, body, len);
            } else {
                free(body);
                worker_protocol_error(w, "unexpected frame");
                return false;
            }
            if (w->fd < 0 || w->state == W_OFF)
                return false;
        }
    }
}

static void worker_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker *w = io->data;
    (void)revents;
    if (!worker_read(w))
        ev_io_stop(loop, &w->rio); /* the exit status (ev_child) tells the rest */
}

static void worker_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker *w = io->data;
    (void)revents;
    if (w->state != W_BUSY || !w->conn) {
        ev_io_stop(loop, io);
        return;
    }
    int rc = write_frame_nb(w->fd, w->req_hdr, w->conn->req, w->conn->req_len, &w->req_off);
    if (rc != 0)
        ev_io_stop(loop, io); /* done, or the worker is dying */
}

/* Describes how a process ended: "exited with status 3", "killed by SIGSEGV". */
static void describe_status(int status, char *buf, size_t len)
{
    char name[32];
    if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by %s (%s)", signal_name(WTERMSIG(status), name, sizeof name),
                 strsignal(WTERMSIG(status)));
    else if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else
        snprintf(buf, len, "ended with wait status %#x", status);
}

/* Answers the client of a worker that died mid-request. */
static void answer_for_dead_worker(struct worker *w, struct conn *c, int status)
{
    const struct runtime_config *cfg = w->sv->cfg;
    char msg[512], tb[PATH_MAX + 128], name[32];
    const char *code = PROTO_PROCESSING_ERROR;
    const char *type;
    snprintf(tb, sizeof tb, "worker process %ld running handler %s", (long)w->pid, cfg->handler);
    if (w->bad_answer) {
        type = "WorkerProtocolError";
        snprintf(msg, sizeof msg, "worker process %ld sent an invalid or oversized answer",
                 (long)w->pid);
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
        code = PROTO_OOM_ERROR;
        type = "MemoryError";
        snprintf(msg, sizeof msg,
                 "worker process %ld was killed by SIGKILL while handling the request (likely "
                 "out of memory: kernel or cgroup OOM killer)",
                 (long)w->pid);
    } else if (WIFSIGNALED(status)) {
        type = signal_name(WTERMSIG(status), name, sizeof name);
        snprintf(msg, sizeof msg,
                 "worker process %ld was killed by signal %s (%s) while handling the request",
                 (long)w->pid, type, strsignal(WTERMSIG(status)));
    } else {
        type = "WorkerExit";
        snprintf(msg, sizeof msg,
                 "worker process %ld exited with status %d while handling the request",
                 (long)w->pid, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    size_t len = 0;
    char *text = error_text(code, msg, type, tb, &len);
    if (text)
        conn_send_answer(c, text, len);
    else
        conn_close(c);
}

static void worker_restart_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    (void)loop;
    (void)revents;
    if (!w->sv->workers_stopping)
        worker_spawn(w);
}

static void schedule_restart(struct worker *w, bool early)
{
    double delay = 0;
    if (early) {
        w->early_deaths++;
        delay = RESTART_MIN_S;
        for (int i = 1; i < w->early_deaths && delay < RESTART_MAX_S; i++)
            delay *= 2;
        if (delay > RESTART_MAX_S)
            delay = RESTART_MAX_S;
    }
    if (delay <= 0) {
        worker_spawn(w);
        return;
    }
    log_warn("worker slot %d keeps failing: restarting it in %.1fs", w->slot, delay);
    ev_timer_set(&w->restart, delay, 0);
    ev_timer_start(w->sv->loop, &w->restart);
}

static void worker_child_cb(struct ev_loop *loop, ev_child *ch, int revents)
{
    struct worker *w = ch->data;
    struct supervisor *sv = w->sv;
    int status = ch->rstatus;
    (void)revents;
    ev_child_stop(loop, ch);

    /* An answer may still sit in the channel: deliver it before judging. */
    if (w->fd >= 0 && (w->state == W_BUSY || w->state == W_STARTING))
        (void)worker_read(w);

    enum worker_state was = w->state;
    struct conn *c = w->conn;
    ev_io_stop(loop, &w->rio);
    ev_io_stop(loop, &w->wio);
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    frame_reader_reset(&w->rd);
    w->state = W_OFF;
    w->conn = NULL;

    char how[128];
    describe_status(status, how, sizeof how);
    pid_t pid = w->pid;
    if (was == W_BUSY && w->killed_by_us && !sv->stopping)
        sv->restarts_timeout_kill++; /* its client gave up (the sidecar's timeout) */
    else if (was != W_STOPPING && !sv->stopping) {
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            sv->restarts_oom_kill++;
        else if (WIFSIGNALED(status))
            sv->restarts_crash++;
        else
            sv->restarts_exit++;
    }
    if (was == W_BUSY && c) {
        c->worker = NULL;
        log_warn("worker %ld %s while handling a request; replacing it", (long)pid, how);
        answer_for_dead_worker(w, c, status);
    } else if (was == W_BUSY && w->killed_by_us) {
        if (sv->stopping)
            log_debug("worker %ld killed during shutdown", (long)pid);
        else
            log_info("worker %ld stopped after its client disconnected; replacing it", (long)pid);
    } else if (was == W_STARTING) {
        if (!w->fatal_reported) {
            char line[PATH_MAX + 256];
            snprintf(line, sizeof line, "ASYA_HANDLER=%s: worker %s while loading the handler",
                     sv->cfg->handler, how);
            worker_fatal_at_start(w, line);
        }
    } else if (was == W_STOPPING) {
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            log_warn("worker %ld %s while stopping", (long)pid, how);
        else
            log_debug("worker %ld stopped", (long)pid);
    } else {
        log_warn("worker %ld %s while idle; replacing it", (long)pid, how);
    }
    bool early = was == W_STARTING || (was == W_IDLE && ev_now(loop) - w->started < EARLY_DEATH_S);
    w->killed_by_us = w->bad_answer = w->fatal_reported = false;
    w->pid = 0;

    if (sv->stopping && (sv->workers_stopping || sv->queued == 0)) {
        check_drained(sv);
        return;
    }
    /* While draining, a replacement is still needed for queued requests. */
    schedule_restart(w, early);
}

static void worker_spawn(struct worker *w)
{
    struct supervisor *sv = w->sv;
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
        log_error("cannot start worker: socketpair: %s", strerror(errno));
        schedule_restart(w, true);
        return;
    }
    pid_t parent = getpid();
    char *const argv[] = {(char *)"asya-runtime", (char *)WORKER_ARG, NULL};
    pid_t pid = fork();
    if (pid < 0) {
        log_error("cannot start worker: fork: %s", strerror(errno));
        close(sp[0]);
        close(sp[1]);
        schedule_restart(w, true);
        return;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls until exec. */
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        if (sp[1] == WORKER_CHANNEL_FD) {
            int fl = fcntl(sp[1], F_GETFD);
            fcntl(sp[1], F_SETFD, fl & ~FD_CLOEXEC);
        } else if (dup2(sp[1], WORKER_CHANNEL_FD) < 0) {
            _exit(127);
        }
        execv(sv->exe, argv);
        _exit(127);
    }
    close(sp[1]);
    if (usock_set_nonblock(sp[0], 1) != 0)
        log_warn("worker channel: cannot make it non-blocking");
    w->pid = pid;
    w->fd = sp[0];
    w->state = W_STARTING;
    w->started = ev_now(sv->loop);
    w->conn = NULL;
    w->killed_by_us = w->bad_answer = w->fatal_reported = false;
    frame_reader_init(&w->rd, sv->cfg->max_message + ANSWER_SLACK);
    ev_child_set(&w->child, pid, 0);
    ev_child_start(sv->loop, &w->child);
    ev_io_set(&w->rio, w->fd, EV_READ);
    ev_io_set(&w->wio, w->fd, EV_WRITE);
    ev_io_start(sv->loop, &w->rio);
    log_debug("started worker %ld (slot %d)", (long)pid, w->slot);
}

/* ---- shutdown ------------------------------------------------------------- */

static bool workers_alive(struct supervisor *sv)
{
    for (size_t i = 0; i < sv->nworkers; i++)
        if (sv->workers[i].pid > 0)
            return true;
    return false;
}

static void stop_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct supervisor *sv = t->data;
    (void)loop;
    (void)revents;
    for (size_t i = 0; i < sv->nworkers; i++) {
        struct worker *w = &sv->workers[i];
        if (w->pid > 0) {
            log_warn("worker %ld did not stop in time: killing it", (long)w->pid);
            kill(w->pid, SIGKILL);
        }
    }
}

/* Closes every worker's channel (they run asya_fini and exit) and kills
 * those still busy or starting. */
static void stop_workers(struct supervisor *sv)
{
    if (sv->workers_stopping)
        return;
    sv->workers_stopping = true;
    for (size_t i = 0; i < sv->nworkers; i++) {
        struct worker *w = &sv->workers[i];
        ev_timer_stop(sv->loop, &w->restart);
        if (w->pid <= 0)
            continue;
        if (w->state == W_BUSY || w->state == W_STARTING) {
            w->killed_by_us = true;
            kill(w->pid, SIGKILL);
        }
        if (w->state == W_IDLE)
            w->state = W_STOPPING;
        ev_io_stop(sv->loop, &w->rio);
        ev_io_stop(sv->loop, &w->wio);
        if (w->fd >= 0) {
            close(w->fd);
            w->fd = -1;
        }
    }
    ev_timer_set(&sv->stop_timer, WORKER_STOP_S, 0);
    ev_timer_start(sv->loop, &sv->stop_timer);
    check_drained(sv);
}

/* Called whenever work finishes while stopping: moves shutdown along. */
static void check_drained(struct supervisor *sv)
{
    if (!sv->stopping)
        return;
    if (!sv->workers_stopping) {
        /* An explicit walk, not TAILQ_FOREACH: cppcheck cannot see through the
         * macro and reports c->state as uninitialized. */
        for (struct conn *c = TAILQ_FIRST(&sv->conns); c; c = TAILQ_NEXT(c, all)) {
            if (c->state != CONN_READING)
                return; /* still in flight */
        }
        stop_workers(sv);
        return;
    }
    if (!workers_alive(sv))
        ev_break(sv->loop, EVBREAK_ALL);
}

static void close_all_conns(struct supervisor *sv, bool only_idle)
{
    struct conn *c = TAILQ_FIRST(&sv->conns);
    while (c) {
        struct conn *next = TAILQ_NEXT(c, all);
        if (!only_idle || c->state == CONN_READING)
            conn_close(c);
        c = next;
    }
}

static void shutdown_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct supervisor *sv = t->data;
    (void)loop;
    (void)revents;
    size_t n = 0;
    struct conn *c;
    TAILQ_FOREACH(c, &sv->conns, all)
        n++;
    if (n)
        log_warn("shutdown timeout: abandoning %zu request(s) still in flight", n);
    stop_workers(sv); /* kills busy workers first, so closing conns does not */
    close_all_conns(sv, false);
    check_drained(sv);
}

static void begin_shutdown(struct supervisor *sv, int exit_code)
{
    if (exit_code > sv->exit_code)
        sv->exit_code = exit_code;
    if (sv->stopping)
        return;
    sv->stopping = true;
    remove_files(sv);
    close_all_conns(sv, true); /* idle keep-alive connections */
    if (exit_code != 0 || !sv->serving) {
        shutdown_timer_cb(sv->loop, &sv->shutdown_timer, 0);
        return;
    }
    size_t n = 0;
    struct conn *c;
    TAILQ_FOREACH(c, &sv->conns, all)
        n++;
    log_info("shutting down: finishing %zu request(s) in flight (timeout %.3gs)", n,
             (double)sv->cfg->shutdown_ns / 1e9);
    ev_timer_set(&sv->shutdown_timer, (double)sv->cfg->shutdown_ns / 1e9, 0);
    ev_timer_start(sv->loop, &sv->shutdown_timer);
    check_drained(sv);
}

static void signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    struct supervisor *sv = s->data;
    (void)loop;
    (void)revents;
    if (sv->stopping) {
        log_warn("%s again: stopping now", s->signum == SIGINT ? "SIGINT" : "SIGTERM");
        ev_timer_stop(sv->loop, &sv->shutdown_timer);
        shutdown_timer_cb(sv->loop, &sv->shutdown_timer, 0);
        return;
    }
    log_info("%s received", s->signum == SIGINT ? "SIGINT" : "SIGTERM");
    begin_shutdown(sv, 0);
}

/* ---- entry point ---------------------------------------------------------- */

int supervisor_run(const struct runtime_config *cfg, const char *exe)
{
    struct supervisor sv;
    memset(&sv, 0, sizeof sv);
    sv.cfg = cfg;
    sv.exe = exe;
    sv.listen_fd = -1;
    TAILQ_INIT(&sv.conns);
    TAILQ_INIT(&sv.queue);

    signal(SIGPIPE, SIG_IGN);
    sv.loop = ev_default_loop(EVFLAG_AUTO);
    if (!sv.loop) {
        log_error("cannot initialise the event loop (libev)");
        return 1;
    }
    sv.nworkers = (size_t)cfg->workers;
    sv.workers = calloc(sv.nworkers, sizeof *sv.workers);
    if (!sv.workers) {
        log_error("out of memory");
        return 1;
    }

    ev_timer_init(&sv.accept_retry, accept_retry_cb, 0.1, 0);
    sv.accept_retry.data = &sv;
    ev_timer_init(&sv.shutdown_timer, shutdown_timer_cb, 0, 0);
    sv.shutdown_timer.data = &sv;
    ev_timer_init(&sv.stop_timer, stop_timer_cb, 0, 0);
    sv.stop_timer.data = &sv;
    ev_signal_init(&sv.sigterm, signal_cb, SIGTERM);
    sv.sigterm.data = &sv;
    ev_signal_init(&sv.sigint, signal_cb, SIGINT);
    sv.sigint.data = &sv;
    ev_signal_start(sv.loop, &sv.sigterm);
    ev_signal_start(sv.loop, &sv.sigint);

    log_info("asya-runtime %s starting: handler %s, %s mode, %zu worker(s)%s", ASYA_BUILD_VERSION,
             cfg->handler, config_mode_name(cfg->mode), sv.nworkers,
             cfg->memory_mb ? ", memory limit set" : "");
    for (size_t i = 0; i < sv.nworkers; i++) {
        struct worker *w = &sv.workers[i];
        w->sv = &sv;
        w->slot = (int)i;
        w->fd = -1;
        ev_io_init(&w->rio, worker_read_cb, -1, EV_READ);
        w->rio.data = w;
        ev_io_init(&w->wio, worker_write_cb, -1, EV_WRITE);
        w->wio.data = w;
        ev_child_init(&w->child, worker_child_cb, 0, 0);
        w->child.data = w;
        ev_timer_init(&w->restart, worker_restart_cb, 0, 0);
        w->restart.data = w;
    }
    for (size_t i = 0; i < sv.nworkers && !sv.stopping; i++)
        worker_spawn(&sv.workers[i]);

    ev_run(sv.loop, 0);

    remove_files(&sv);
    close_all_conns(&sv, false);
    for (size_t i = 0; i < sv.nworkers; i++) {
        struct worker *w = &sv.workers[i];
        if (w->fd >= 0)
            close(w->fd);
        frame_reader_reset(&w->rd);
    }
    free(sv.workers);
    ev_loop_destroy(sv.loop);
    if (sv.exit_code == 0)
        log_info("stopped");
    return sv.exit_code;
}
