/*
 * reap.h - what a worker's death means, as pure functions for the pool
 * (pool.c): which restart cause it counts as, how long to wait before
 * restarting a worker that keeps failing, and the error answer owed to the
 * client of the request it had.  No process, fd or loop is touched here.
 */
#ifndef ASYA_REAP_H
#define ASYA_REAP_H

#include <stdbool.h>
#include <stddef.h>

#define REAP_BACKOFF_MIN_S 0.1 /* first delay after a worker dies at start */
#define REAP_BACKOFF_MAX_S 5.0

/* Why the supervisor itself sent a worker SIGKILL, if it did. */
enum reap_kill {
    REAP_KILL_NONE,        /* it did not */
    REAP_KILL_CLIENT_LEFT, /* the client left mid-request (the sidecar's timeout fired) */
    REAP_KILL_PROTOCOL,    /* the worker broke the channel protocol, or lost its channel */
    REAP_KILL_START,       /* the worker reported a fatal start-up error */
    REAP_KILL_SHUTDOWN,    /* the runtime is stopping */
};

/* Why a worker was replaced: the "worker_restarts" of a stats answer. */
enum reap_cause {
    REAP_CAUSE_CRASH,         /* killed by a signal other than SIGKILL */
    REAP_CAUSE_OOM_KILL,      /* killed by a SIGKILL the supervisor did not send (OOM killer) */
    REAP_CAUSE_TIMEOUT_KILL,  /* killed by the supervisor: its client gave up */
    REAP_CAUSE_PROTOCOL_KILL, /* killed by the supervisor: it broke the channel protocol */
    REAP_CAUSE_EXIT,          /* exited by itself (a failed start included) */
    REAP_CAUSES,
    REAP_CAUSE_NONE = REAP_CAUSES /* not a restart: the runtime is stopping */
};

/*
 * The cause a worker's end counts as, from its wait status and why the
 * supervisor killed it (kill).  A SIGKILL counts as the supervisor's own
 * kill only when the supervisor sent one; a worker that ended otherwise
 * (it crashed or exited before the kill landed) counts as what it did.
 */
enum reap_cause reap_cause(int status, enum reap_kill kill);

/* The name of cause in a stats answer ("oom_kill"...), or NULL. */
const char *reap_cause_name(enum reap_cause cause);

/*
 * The delay before restarting a worker that died soon after starting for
 * the early_deaths-th time in a row (1, 2, ...): REAP_BACKOFF_MIN_S,
 * doubling, capped at REAP_BACKOFF_MAX_S.  0 for early_deaths <= 0.
 */
double reap_backoff(int early_deaths);

/*
 * The error answer (a protocol error array) for the client of worker pid,
 * running handler, that ended with wait status while the request was lent
 * to it; kill as for reap_cause.  An OOM kill answers oom_error, anything
 * else processing_error with a type naming the failure (the signal,
 * WorkerExit, WorkerProtocolError, WorkerKilled).  taken: the worker had
 * read all of the request (the message then says "while handling the
 * request", otherwise "before it read the request").  Returns the text (free with free()) with *len
 * set, or NULL when out of memory.
 */
char *reap_error_answer(long pid, const char *handler, int status, enum reap_kill kill, bool taken,
                        size_t *len) __attribute__((warn_unused_result));

#endif /* ASYA_REAP_H */
