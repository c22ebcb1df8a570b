/*
 * supervisor.h - the asya-runtime supervisor: one libev loop that lends
 * client connections (sidecars) with a request waiting to a pool of worker
 * processes, which read the request and write the answer themselves
 * (handoff.h): the supervisor is out of the data path.
 *
 * Owns: the request queue between the two (bounded: when it is full,
 * clients stop being read, not refused), the control "stats" answer, the
 * ready file, signals and shutdown (stop accepting, finish what is in
 * flight within ASYA_SHUTDOWN_TIMEOUT, stop the workers, remove the files).
 * Client connections are conn.c's, worker processes pool.c's.  Handler code
 * never runs in the supervisor, so nothing a handler does can take it down:
 * a worker that dies is answered for (only the request it was running) and
 * replaced.
 */
#ifndef ASYA_SUPERVISOR_H
#define ASYA_SUPERVISOR_H

#include "config.h"

/*
 * Run the runtime until SIGTERM/SIGINT (then drain and return 0) or a
 * start-up failure (one error line logged, returns non-zero; no socket file
 * is left behind).  cfg is borrowed for the whole run.  exe is the path of
 * this program, re-executed with WORKER_ARG for every worker.
 */
int supervisor_run(const struct runtime_config *cfg, const char *exe);

#endif /* ASYA_SUPERVISOR_H */
