/*
 * pool.h - asya-runtime's worker pool: the worker processes and their lives.
 *
 * Owns: every worker process (started by fork + exec of asya-runtime
 * --worker, reaped through ev_child), the supervisor's end of each worker's
 * channel (framed, non-blocking), the reading of each death (which request
 * it costs, which restart cause it counts as) and the restart backoff.
 *
 * A request is lent to an idle worker with pool_submit; what becomes of it
 * comes back through pool_events: an answer (the worker's, or an error
 * answer for a worker that died running it), or the request itself when the
 * worker ended before taking it.  A worker's death is charged only to the
 * request that worker was running.  Handler code never runs in the
 * supervisor, so nothing a handler does can take it down.
 */
#ifndef ASYA_POOL_H
#define ASYA_POOL_H

#include <stdbool.h>
#include <stddef.h>

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
    /*
     * The answer to the request lent by owner: the worker's answer, or an
     * error answer when the worker died running it.  Takes ownership of body
     * (len bytes); body is NULL when not even an error answer could be built.
     */
    void (*answer)(void *ctx, void *owner, char *body, size_t len);
    /* A progress frame (protocol.h) the worker sent before its answer to the
     * request of owner; takes ownership of body (len bytes). */
    void (*progress)(void *ctx, void *owner, char *body, size_t len);
    /*
     * The worker the request of owner was lent to ended before it read all
     * of it, so no handler code ran for it: the owner lends it again
     * (pool_submit), or answers with text, the error answer the worker's
     * end would otherwise earn (takes ownership; NULL when out of memory).
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
 * Lend the request body (len bytes, borrowed until its answer comes back,
 * it is returned, or pool_abandon) to an idle worker; owner is passed back
 * with the answer.  A worker whose channel is found closed is skipped (it is
 * replaced once it exits).  Returns the worker, or NULL when none is idle.
 */
struct worker *pool_submit(struct pool *p, const char *body, size_t len, void *owner);

/* The owner of the request worker w runs is gone (its client left): nobody
 * wants the answer, so the worker is killed and replaced. */
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
