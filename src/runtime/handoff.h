/*
 * handoff.h - lending a client connection to a worker: the supervisor passes
 * the connection's fd over the worker's channel (SCM_RIGHTS), the worker
 * reads the request and writes the answer on it directly, then gives the
 * connection back with a "done" frame.  The supervisor keeps its own fd.
 *
 * Why fd passing, and not workers accepting on the shared listening socket:
 * the supervisor must keep seeing every connection to answer control
 * requests without a worker (a health probe while every worker is busy),
 * queue requests fairly while workers are busy (bounded, with back-pressure),
 * notice a client leaving while a worker runs its request (to kill a hung
 * worker) and answer for a worker that dies mid-request.  With accepting
 * workers none of that is possible: an idle worker would take connections
 * it then cannot serve, and a dead worker's connections would be lost with
 * it.  Passing the fd keeps the supervisor in charge of connections while
 * the request and answer bytes bypass it.
 *
 * The supervisor looks at a request's first bytes with MSG_PEEK before the
 * handoff (a control request is small; an oversized header is refused), so
 * normally it consumes nothing.  Only a small frame that arrives in pieces
 * (or a header split across writes) is read by the supervisor; those bytes
 * travel in the handoff frame as a prefix and the worker reads the rest.
 *
 * The ledger: to answer honestly for a worker that dies while it holds a
 * connection, the supervisor must know how far the worker got.  Reporting
 * each step on the channel would cost the supervisor a wake-up per step, so
 * the worker records its phase in a small shared memory page instead (a
 * memfd on WORKER_LEDGER_FD), which the supervisor reads only when the
 * worker died or its client left.  A phase is set before the step it names,
 * so the supervisor errs on the safe side: it may close a connection it
 * could have answered, never answer twice or hand a half-read request on.
 *
 * Channel frames (both ways, frame.h framing):
 *   supervisor -> worker: HANDOFF frame; body = the request's 4-byte frame
 *     header as the supervisor saw it (so the worker can size its buffer and
 *     read the whole frame in one call), the connection's 8-byte id, then
 *     the prefix (0 bytes, the 4-byte header, or a whole small frame).  The
 *     client fd is attached unless the worker kept it from the last request
 *     it served (same id): passing an fd costs more than the rest of a small
 *     request's trip (SCM_RIGHTS, then a close), so a worker keeps the last
 *     connection it served, and the supervisor prefers lending a connection
 *     to the worker that has it.  Because a worker may hold a copy, the
 *     supervisor shuts a connection down (shutdown(2)) before closing it, so
 *     the client sees its end at once.
 *   worker -> supervisor: DONE frame: empty body (the connection can carry
 *     the next request) or HANDOFF_DONE_CLOSE (it cannot: the client left,
 *     the stream broke).
 * These functions never log.
 */
#ifndef ASYA_HANDOFF_H
#define ASYA_HANDOFF_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define WORKER_LEDGER_FD   4   /* the worker's ledger memfd (spawn.c maps it there) */
#define HANDOFF_PREFIX_MAX 512 /* largest prefix a handoff frame carries */
#define HANDOFF_META_LEN   12  /* the request's header and the connection id, ahead of the prefix */
#define HANDOFF_DONE_CLOSE "c" /* done frame body: close the connection */

/* How far a worker got with the connection it holds (see above). */
enum handoff_phase {
    HANDOFF_IDLE = 0, /* nothing consumed from the client (set by the supervisor) */
    HANDOFF_READING,  /* it may have consumed part of the request */
    HANDOFF_RUNNING,  /* the request is read whole; the stream is at a frame boundary */
    HANDOFF_WRITING,  /* it may have written part of a frame (progress or answer) */
    HANDOFF_ANSWERED, /* the answer is written whole */
};

/* The shared page: one per worker slot. */
struct handoff_ledger {
    volatile uint32_t phase; /* enum handoff_phase */
};

/*
 * Create a ledger: a memfd of one page, mapped here.  Returns the mapping
 * with *fd set (close-on-exec; owned by the caller, for spawn to pass on), or
 * NULL with a negative errno in *fd.  Free with handoff_ledger_free.
 */
struct handoff_ledger *handoff_ledger_new(int *fd) __attribute__((warn_unused_result));

/* Unmap a ledger from handoff_ledger_new or handoff_ledger_map.  NULL is fine. */
void handoff_ledger_free(struct handoff_ledger *lg);

/* In a worker: map the ledger on fd (then closed).  NULL on failure. */
struct handoff_ledger *handoff_ledger_map(int fd) __attribute__((warn_unused_result));

/* The id in a HANDOFF body (at least HANDOFF_META_LEN bytes). */
uint64_t handoff_body_id(const char *body);

/* Record / read a phase.  A NULL ledger reads HANDOFF_IDLE. */
void handoff_set(struct handoff_ledger *lg, enum handoff_phase phase);
enum handoff_phase handoff_get(const struct handoff_ledger *lg);

/*
 * Supervisor: send chan (non-blocking, empty between requests) one HANDOFF
 * frame, in one sendmsg: client attached (-1: none, the worker kept it), and
 * hint (the request's frame header), id and prefix (len <=
 * HANDOFF_PREFIX_MAX bytes) as its body.  Returns 0, or a negative errno when it could not
 * be sent whole (-EAGAIN: the channel is not empty, the worker is stuck).
 */
int handoff_send(int chan, int client, const unsigned char hint[FRAME_HEADER_LEN], uint64_t id,
                 const void *prefix, size_t len) __attribute__((warn_unused_result));

/*
 * Worker: receive one HANDOFF frame from chan (blocking).  Returns 0 with
 * *body (free with free(); NUL-terminated; the header hint, the id, then the
 * prefix), *len (at least HANDOFF_META_LEN) and *client (close-on-exec,
 * owned by the caller; -1 when none was attached) set; -EPIPE when the supervisor closed the
 * channel; -EPROTO for a bad length; another negative errno.
 */
int handoff_recv(int chan, char **body, size_t *len, int *client)
    __attribute__((warn_unused_result));

#endif /* ASYA_HANDOFF_H */
