/*
 * supervisor.h - the asya-runtime supervisor: a libev loop that owns the
 * unix socket, a pool of pre-forked worker processes and the relay between
 * clients (sidecars) and workers.
 *
 * Model: the supervisor reads a whole request frame from a client, queues it
 * until a worker is idle, writes it to that worker over a socketpair in the
 * same framing and relays the worker's answer back.  A client connection
 * carries one request at a time (further input is not read until the answer
 * is sent: back-pressure instead of failure) and stays open for the next one.
 * Handler code never runs in the supervisor, so nothing a handler does can
 * take it down: a worker that dies is answered for and replaced.
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
