/*
 * pool.h - asya-runtime's worker pool: the worker processes and their lives.
 *
 * Owns: every worker process (started by fork + exec of asya-runtime
 * --worker, reaped through ev_child), the supervisor's end of each worker's
 * channel (framed, non-blocking), the reading of each death (which request
 * it costs, which restart cause it counts as) and the restart backoff.
 *
 * A client connection whose request waits in its socket is lent to an idle
 * worker with pool_submit (its fd is passed over the channel, handoff.h);
 * the worker reads the request and writes the answer on it itself.  What
 * becomes of it comes back through pool_events: the connection given back
 * (done), an error answer owed for a worker that died after consuming some
 * of the request, or the connection returned untouched when the worker
 * ended before taking the request.  A worker's death is charged only to the
 * request that worker was running.  Handler code never runs in the
 * supervisor, so nothing a handler does can take it down.
 */
#ifndef ASYA_POOL_H
#define ASYA_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "config.h"
#include "reap.h"

struct pool;
struct worker;

/* What a pool tells its owner.  All are called from loop callbacks. */
struct pool_events {
    /* Every worker has reported ready for the first time. */
    void (*all_ready)(void *ctx);
    /* A worker became idle: queued requests can be submitted. */
    void (*idle)(void *ctx);
    /* The worker gave owner's connection back: its answer is written.
     * reusable: the stream is at a frame boundary and may carry the next
     * request (false: the client left or the stream broke; close it). */
    void (*done)(void *ctx, void *owner, bool reusable);
    /*
     * The worker holding owner's connection died after consuming (part of)
     * its request.  body (len bytes; takes ownership) is the error answer
     * owed; NULL when nothing may be written any more (part of the worker's
     * own answer may be out) or no answer could be built: close the
     * connection.  close_after: the stream is not at a frame boundary after
     * the answer (the request was read only in part).
     */
    void (*answer)(void *ctx, void *owner, char *body, size_t len, bool close_after);
    /*
     * The worker owner's connection was lent to ended before it consumed any
     * of the request, so no handler code ran for it and the request still
     * waits whole in the socket: the owner lends it again (pool_submit), or
     * answers with text, the error answer the worker's end would otherwise
     * earn (takes ownership; NULL when out of memory).
     */
    void (*returned)(void *ctx, void *owner, char *text, size_t len);
    /* Worker pid failed to start; line says why. */
    void (*start_failed)(void *ctx, long pid, const char *line);
    /* Whether a worker that died must be replaced now (false while draining
     * with nothing left to run). */
    bool (*need_worker)(void *ctx);
    /* A worker process ended and was not replaced. */
    void (*exited)(void *ctx);
};

/*
 * A pool of cfg->workers workers running exe (this program) with the
 * worker argument.  loop, cfg, exe and ev are borrowed for the pool's life.
 * No process is started until pool_start.  Returns NULL when out of memory;
 * free with pool_free.
 */
struct pool *pool_new(struct ev_loop *loop, const struct runtime_config *cfg, const char *exe,
                      const struct pool_events *ev, void *ctx) __attribute__((warn_unused_result));

/* Start every worker. */
void pool_start(struct pool *p);

/* Close every channel and free p (after the loop has stopped).  NULL is fine. */
void pool_free(struct pool *p);

/*
 * Lend the connection fd (borrowed: the worker gets its own copy, or has
 * kept one: id, never 0, names the connection for that), whose request
 * waits in the socket, to an idle worker, preferably the one that kept its
 * fd.  hdr is the request's
 * 4-byte frame header (copied; passed on as a hint).  prefix (len bytes, at
 * most HANDOFF_PREFIX_MAX; copied) is what of the request the owner already
 * consumed from the socket.  owner is passed back with what becomes of it.
 * A worker whose channel is found closed is skipped (it is replaced once it
 * exits).  Returns the worker, or NULL when none is idle.
 */
struct worker *pool_submit(struct pool *p, int fd, uint64_t id, const unsigned char *hdr,
                           const void *prefix, size_t len, void *owner);

/* The client of the connection worker w holds is gone: nobody wants the
 * answer.  A worker that runs handler code (or is about to) is killed and
 * replaced; one that is reading or writing gives the connection back by
 * itself. */
void pool_abandon(struct pool *p, struct worker *w);

/* Stop: close every channel (idle workers run asya_fini and exit), kill the
 * busy and starting ones, and kill whatever is left after a grace period.
 * No worker is restarted afterwards. */
void pool_stop(struct pool *p);

/* True while any worker process exists. */
bool pool_alive(const struct pool *p);

/* Workers in the pool, and how many are idle and busy now. */
size_t pool_size(const struct pool *p);
void pool_count(const struct pool *p, size_t *idle, size_t *busy);

/* Workers replaced so far for cause (see reap.h).  Deaths after pool_stop
 * are not counted. */
unsigned long pool_restarts(const struct pool *p, enum reap_cause cause);

#endif /* ASYA_POOL_H */
