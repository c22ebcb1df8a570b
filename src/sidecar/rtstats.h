/*
 * rtstats.h - the periodic "stats" control request to asya-runtime (worker
 * counts and restarts by cause), for the sidecar's /metrics.
 *
 * Owns its own short-lived runtime connection and timers.  A runtime that
 * does not understand the request (the reference runtime answers an error)
 * is asked once and never again.
 */
#ifndef ASYA_RTSTATS_H
#define ASYA_RTSTATS_H

#include "metrics.h"

#include <ev.h>

struct rtstats;

/* Ask the runtime at socket_path every interval_s seconds and store the
 * answer in *stats (borrowed, must outlive it).  Returns NULL on allocation
 * failure.  Nothing is sent before rtstats_start. */
struct rtstats *rtstats_new(struct ev_loop *loop, const char *socket_path, double interval_s,
                            struct metrics *stats);
void rtstats_start(struct rtstats *r);
/* Stop, close and free.  NULL is fine. */
void rtstats_free(struct rtstats *r);

#endif /* ASYA_RTSTATS_H */
