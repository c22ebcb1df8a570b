/*
 * conn.h - asya-runtime's client connections (sidecars, asya-invoke, probes).
 *
 * Owns: the listening socket and its file, and every client connection: its
 * fd, its per-client state, the noticing of a request and the writing of the
 * supervisor's own answers (control requests, refusals, errors for workers
 * that died).
 *
 * It does not read requests for workers.  When a request arrives it looks
 * at its first bytes with MSG_PEEK: a control request (small, whole) is read
 * and handed to the owner to answer; a frame over the size limit is refused;
 * any other request is left in the socket and the owner is told through
 * conn_events.request, to lend the connection to a worker (handoff.h).  Only
 * a small frame that arrives in pieces is read here (see handoff.h, the
 * prefix).  While a request is out the socket is not read at all: pipelined
 * input waits there (back-pressure instead of failure), and the connection
 * is only watched for the client leaving (EPOLLRDHUP, so bytes waiting in
 * the socket do not wake the loop: client sockets are in an epoll set of
 * the server's own, see conn.c).
 *
 * A full listen backlog would make clients' connect() fail (EAGAIN), an
 * outage, so connections are accepted whenever file descriptors allow, also
 * while the owner's queue is full (conn_pause): then only new requests are
 * not taken, and their bytes wait in the clients' sockets.
 */
#ifndef ASYA_CONN_H
#define ASYA_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <ev.h>

#include "frame.h"

struct conn_server;
struct worker;

#define CONN_CONTROL_MAX 256 /* largest control request; smaller frames may be read here */

enum conn_state {
    CONN_READING,  /* waiting for a request, or idle between requests */
    CONN_WAITING,  /* a request is with the owner: queued, lent to a worker, or control */
    CONN_WRITING,  /* writing an answer of the supervisor's */
    CONN_SKIPPING, /* dropping the rest of a request answered without a worker */
};

struct conn {
    ev_io wio;               /* private; first member */
    struct conn_server *srv; /* read-only: the server it belongs to */
    int fd;                  /* read-only, owned; lent to workers (they get a copy) */
    uint64_t id;             /* read-only: unique for the server's life, never 0 */
    enum conn_state state;   /* read-only */
    bool control;            /* read-only while CONN_WAITING: a control request */
    /* Read-only while CONN_WAITING: what of the request was consumed from the
     * socket (nothing, its header, or a small frame whole; a control request
     * always whole). */
    unsigned char pre[FRAME_HEADER_LEN + CONN_CONTROL_MAX];
    size_t pre_len;
    unsigned char hdr[FRAME_HEADER_LEN]; /* read-only while CONN_WAITING: its frame header */
    /* The owner's, while CONN_WAITING; conn.c never touches them. */
    struct worker *worker;   /* borrowed: the worker it is lent to */
    bool queued;             /* the request waits in the owner's queue */
    unsigned returns;        /* workers that ended before taking the request */
    TAILQ_ENTRY(conn) queue; /* the owner's queue */
    /* Private. */
    bool close_after_write; /* the stream cannot continue */
    bool parked;            /* not read until the server resumes */
    bool ep_added;          /* in the server's epoll set */
    bool closed;            /* closed, freed after the current event batch */
    bool kick;              /* read once after resuming (see conn_pause) */
    uint32_t ep_events;     /* what the epoll set watches it for */
    uint64_t skip_left;     /* bytes of an answered request still to drop */
    struct frame_writer wr;
    char *ans; /* owned: the answer being written */
    TAILQ_ENTRY(conn) all;
};

TAILQ_HEAD(conn_list, conn);

/* What a server tells its owner.  Both are called from loop callbacks. */
struct conn_events {
    /* A request arrived on c, which is now CONN_WAITING: a control request
     * (c->control, read whole into c->pre), to answer with conn_send_answer;
     * or a request waiting in the socket, to lend (c->fd, c->pre) and then
     * end with conn_returned, or answer with conn_send_answer. */
    void (*request)(void *ctx, struct conn *c);
    /* c is closing (the client left, an I/O error, conn_close): it is already
     * off the server's list and is freed when this returns.  Drop every
     * reference to it. */
    void (*closing)(void *ctx, struct conn *c);
};

struct conn_server {
    struct ev_loop *loop;         /* borrowed */
    const struct conn_events *ev; /* borrowed */
    void *ctx;                    /* passed to ev */
    const char *path;             /* borrowed: the socket file while listening */
    size_t max_message;           /* largest request body accepted */
    size_t max_conns;             /* accepting stops at this many connections */
    size_t count;                 /* connections open */
    uint64_t last_id;             /* the id of the last connection accepted */
    int listen_fd;
    bool listening;
    bool paused;      /* requests are not read (the owner's queue is full) */
    bool draining;    /* no accepts; connections close once answered */
    bool dispatching; /* inside an event batch: closed conns wait in dead */
    int ep_fd;        /* epoll set of the client sockets (see conn.c) */
    ev_io accept_io;
    ev_io ep_io;
    ev_timer accept_retry;
    ev_timer kick;
    struct conn_list all;
    struct conn_list dead;
};

/*
 * Prepare s (not listening yet).  loop, ev and ctx are borrowed for the
 * server's life.  Requests over max_message bytes are refused with an error
 * answer; at most max_conns connections are open at once (more wait in the
 * listen backlog).
 */
void conn_server_init(struct conn_server *s, struct ev_loop *loop, size_t max_message,
                      size_t max_conns, const struct conn_events *ev, void *ctx);

/*
 * Create the parent directories of path, listen on it (mode as for
 * usock_listen) and start accepting.  path is borrowed until conn_unlisten.
 * Returns 0, or a negative errno with a message in err.
 */
int conn_listen(struct conn_server *s, const char *path, int mode, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Stop accepting: close the listening socket and remove its file. */
void conn_unlisten(struct conn_server *s);

/*
 * Pause or resume taking requests (bounded queueing: the owner's queue is
 * full).  Connections are still accepted while paused, and a control request
 * that waits whole in a socket is still read and handed over (a health probe
 * must not fail because the workers are busy).
 */
void conn_pause(struct conn_server *s, bool paused);

/* Start draining: stop accepting, close idle connections, and close the
 * others once their answer is written. */
void conn_drain(struct conn_server *s);

/* Close every connection, answered or not. */
void conn_close_all(struct conn_server *s);

/* Connections with a request out or an answer being written. */
size_t conn_in_flight(const struct conn_server *s);

/*
 * Answer c's request with body (len bytes; takes ownership, free()d once
 * written).  close_after: close c once it is written (the request was not
 * consumed, or the stream broke).  A NULL body closes c instead.
 */
void conn_send_answer(struct conn *c, char *body, size_t len, bool close_after);

/*
 * Before conn_send_answer for a request no worker consumed: once the answer
 * is written, the request's bytes still in the socket are read and dropped,
 * so the connection stays usable.  Returns 0, or -EPROTO when the request's
 * header cannot be seen (then close instead).
 */
int conn_skip_request(struct conn *c) __attribute__((warn_unused_result));

/* The worker c was lent to gave it back, its answer written: c takes the
 * next request, or closes when !reusable (or while draining). */
void conn_returned(struct conn *c, bool reusable);

/* Answer c's request with an error frame and close c once it is written. */
void conn_send_error(struct conn *c, const char *code, const char *message, const char *type);

/* Release what conn_listen set up beyond the socket (after conn_close_all). */
void conn_server_done(struct conn_server *s);

/* Close c now and free it; conn_events.closing runs first. */
void conn_close(struct conn *c);

#endif /* ASYA_CONN_H */
