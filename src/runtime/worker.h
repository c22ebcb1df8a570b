/*
 * worker.h - the worker process: runs one handler, one request at a time.
 *
 * A worker is asya-runtime re-executed by the supervisor with the hidden
 * argument "--worker", its end of a socketpair on fd WORKER_CHANNEL_FD and
 * its ledger on WORKER_LEDGER_FD (handoff.h).  It speaks the sidecar framing
 * on that channel:
 *   1. It sends one control frame, WORKER_MSG_READY or WORKER_MSG_FATAL
 *      (JSON objects {"asya_worker": "ready"|"fatal", "message": ...}).
 *   2. Then it receives client connections (handoff.h): for each it reads
 *      the request frame (an envelope) from the client, writes the answer
 *      frame to the client, and gives the connection back with a done frame,
 *      until the supervisor closes the channel; it then runs asya_fini and
 *      exits 0.  Before an answer it may write progress frames (protocol.h)
 *      to the client, only for a request that asked for them.
 */
#ifndef ASYA_WORKER_H
#define ASYA_WORKER_H

#include <stddef.h>

#include "config.h"
#include "handoff.h"
#include "loader.h"

#define WORKER_CHANNEL_FD 3
#define WORKER_ARG        "--worker"
#define WORKER_MSG_KEY    "asya_worker"
#define WORKER_MSG_READY  "ready"
#define WORKER_MSG_FATAL  "fatal"

/* What worker_handle needs to run one request. */
struct worker_ctx {
    const struct loader *ld;       /* borrowed: an open handler library */
    int mode;                      /* enum asya_mode */
    size_t max_answer;             /* answers (all results together) stay within this */
    int client_fd;                 /* the lent client: where asya_call.progress frames go, or -1 */
    struct handoff_ledger *ledger; /* borrowed: where the phases go, or NULL */
};

/*
 * Run one request in this process: validate the envelope in req (len bytes,
 * NUL-terminated), call the handler and build the answer exactly as the
 * reference runtime shapes it:
 *   [{"payload": <result>, "route": <route as received>}, ...]  (payload mode)
 *   [<result envelope>, ...]                                    (envelope mode)
 *   []                                                          (no result)
 *   [{"error": <code>, "details": {"message", "type", "traceback"}}]
 * Returns 0 with *answer (free with free()) and *answer_len set; the answer
 * may be an error answer.  Returns -ENOMEM only when not even an error answer
 * could be allocated.
 */
int worker_handle(const struct worker_ctx *ctx, const char *req, size_t len, char **answer,
                  size_t *answer_len) __attribute__((warn_unused_result));

/*
 * The worker process's main: load the handler named by cfg, report ready or
 * fatal on channel fd, then serve requests until the channel closes.
 * Returns the process exit status (0 after a clean stop).
 */
int worker_main(int fd, const struct runtime_config *cfg);

#endif /* ASYA_WORKER_H */
