/*
 * reap.h - what a worker's death means, as pure functions for the pool
 * (pool.c): how long to wait before restarting a worker that keeps failing,
 * and the error answer owed to the client whose request it was running.
 * No process, fd or loop is touched here.
 */
#ifndef ASYA_REAP_H
#define ASYA_REAP_H

#include <stdbool.h>
#include <stddef.h>

#define REAP_BACKOFF_MIN_S 0.1 /* first delay after a worker dies at start */
#define REAP_BACKOFF_MAX_S 5.0

/*
 * The delay before restarting a worker that died soon after starting for
 * the early_deaths-th time in a row (1, 2, ...): REAP_BACKOFF_MIN_S,
 * doubling, capped at REAP_BACKOFF_MAX_S.  0 for early_deaths <= 0.
 */
double reap_backoff(int early_deaths);

/*
 * The error answer (a protocol error array) for the client of worker pid,
 * running handler, that ended with wait status while it ran the request.
 * bad_answer: the supervisor killed it for breaking the channel protocol.
 * Returns the text (free with free()) with *len set, or NULL when out of
 * memory.
 */
char *reap_error_answer(long pid, const char *handler, int status, bool bad_answer, size_t *len)
    __attribute__((warn_unused_result));

#endif /* ASYA_REAP_H */
