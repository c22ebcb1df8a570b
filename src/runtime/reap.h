/*
 * reap.h - what a worker's death means, as pure functions for the pool
 * (pool.c): how long to wait before restarting a worker that keeps failing,
 * whether a dead worker had taken the request lent to it, and the error
 * answer owed to that request's client.
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
 * Whether a worker that died while a request was lent to it had taken that
 * request, that is read all of it, so that the handler may have run it:
 * written tells that the whole request was sent, reset that the worker's
 * end was closed with bytes unread (ECONNRESET on ours), unread counts the
 * bytes still queued to it (SIOCOUTQ; a child of the worker may keep its
 * socket open).  A request the worker never took cost it nothing and may be
 * lent to another worker.
 */
bool reap_taken(bool written, bool reset, int unread);

/*
 * The error answer (a protocol error array) for the client of worker pid,
 * running handler, that ended with wait status while the request was lent
 * to it.  bad_answer: the supervisor killed it for breaking the channel
 * protocol.  taken: as reap_taken (the message then says "while handling
 * the request", otherwise "before it read the request").  Returns the text
 * (free with free()) with *len set, or NULL when out of memory.
 */
char *reap_error_answer(long pid, const char *handler, int status, bool bad_answer, bool taken,
                        size_t *len) __attribute__((warn_unused_result));

#endif /* ASYA_REAP_H */
