/*
 * spawn.h - the supervisor's side of starting one worker process: fork,
 * then exec of this program with WORKER_ARG, its end of a new socketpair
 * on WORKER_CHANNEL_FD (see worker.h) and its ledger on WORKER_LEDGER_FD
 * (handoff.h), and the reading of the start-up
 * report the worker then sends.  The pool (pool.c) decides when.  These
 * functions never log: messages go into the caller's buffer.
 */
#ifndef ASYA_SPAWN_H
#define ASYA_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Start exe as a worker, with ledger (a handoff_ledger_new fd, borrowed) as
 * its WORKER_LEDGER_FD.  The child starts with an empty signal mask and is
 * killed if the supervisor dies (PR_SET_PDEATHSIG).  Returns the child's pid
 * with *fd set to the supervisor's end of the channel (non-blocking,
 * close-on-exec; owned by the caller), or a negative errno with a message in
 * err.
 */
pid_t spawn_worker(const char *exe, int ledger, int *fd, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Read a worker's start-up report: its first frame (body, len bytes).
 * Returns 1 when the worker is ready, with its module in text ("echo 1.2",
 * or "-" without a name), or 0 when it failed to start, with its message in
 * text.
 */
int spawn_report(const char *body, size_t len, char *text, size_t textlen);

#endif /* ASYA_SPAWN_H */
