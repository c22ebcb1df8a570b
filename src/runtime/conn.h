/*
 * conn.h - asya-runtime's client connections (sidecars, asya-invoke, probes).
 *
 * Owns: the listening socket and its file, and every client connection: its
 * fd, its per-client state and the framed, non-blocking reading of one
 * request and writing of its answer.
 *
 * It does not know what a request means.  A complete request frame is handed
 * to the owner (the supervisor) through conn_events.request; the owner
 * answers it, then or later, with conn_send_answer.  While a request is out
 * the socket is only watched for the client leaving: pipelined input stays
 * unread until the answer is written (back-pressure instead of failure), and
 * the connection then stays open for the next request.
 *
 * A full listen backlog would make clients' connect() fail (EAGAIN), an
 * outage, so connections are accepted whenever file descriptors allow, also
 * while the owner's queue is full (conn_pause): then only reading requests
 * stops, and bytes wait in the clients' sockets.
 */
#ifndef ASYA_CONN_H
#define ASYA_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>

#include <ev.h>

#include "frame.h"

struct conn_server;
struct worker;

enum conn_state {
    CONN_READING, /* reading a request frame, or idle between requests */
    CONN_WAITING, /* the request is with the owner, waiting for its answer */
    CONN_WRITING, /* writing the answer */
};

struct conn {
    ev_io rio;               /* private; first member: callbacks cast back */
    ev_io wio;               /* private */
    struct conn_server *srv; /* read-only: the server it belongs to */
    int fd;                  /* private, owned */
    enum conn_state state;   /* read-only */
    char *req;               /* read-only: the request body while CONN_WAITING (owned) */
    size_t req_len;
    /* The owner's, while CONN_WAITING; conn.c never touches them. */
    struct worker *worker;   /* borrowed: the worker running the request */
    bool queued;             /* the request waits in the owner's queue */
    unsigned returns;        /* workers that ended before taking the request */
    TAILQ_ENTRY(conn) queue; /* the owner's queue */
    /* Private. */
    bool close_after_write; /* the stream cannot continue (oversized frame) */
    bool parked;            /* not read until the server resumes */
    struct frame_reader rd;
    struct frame_writer wr;
    char *ans; /* owned: the answer being written */
    struct frame_writer pwr;
    char *prog; /* owned: the progress frame being written, ahead of any answer */
    TAILQ_ENTRY(conn) all;
};

TAILQ_HEAD(conn_list, conn);

/* What a server tells its owner.  Both are called from loop callbacks. */
struct conn_events {
    /* A whole request arrived on c: c->req and c->req_len are set and c is
     * CONN_WAITING.  Answer it with conn_send_answer, now or later. */
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
    int listen_fd;
    bool listening;
    bool paused;   /* requests are not read (the owner's queue is full) */
    bool draining; /* no accepts; connections close once answered */
    ev_io accept_io;
    ev_timer accept_retry;
    struct conn_list all;
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
 * Pause or resume reading requests (bounded queueing: the owner's queue is
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
 * written).  A NULL body (no answer could be built) closes c instead.
 */
void conn_send_answer(struct conn *c, char *body, size_t len);

/*
 * While c's request is out: send body (len bytes, a progress frame; takes
 * ownership) ahead of the answer.  Best effort and bounded: while an earlier
 * one is still being written this one is dropped, and an answer that comes
 * meanwhile goes out right after it.
 */
void conn_send_progress(struct conn *c, char *body, size_t len);

/* Answer c's request with an error frame and close c once it is written. */
void conn_send_error(struct conn *c, const char *code, const char *message, const char *type);

/* Close c now and free it; conn_events.closing runs first. */
void conn_close(struct conn *c);

#endif /* ASYA_CONN_H */
