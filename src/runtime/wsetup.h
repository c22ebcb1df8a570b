/*
 * wsetup.h - a worker process's state before any handler code runs: its
 * signal dispositions and mask, its channel's close-on-exec flag, and its
 * memory limit (ASYA_WORKER_MEMORY_MB).  Called by worker_main (worker.c).
 */
#ifndef ASYA_WSETUP_H
#define ASYA_WSETUP_H

#include <stddef.h>

#include "config.h"

/*
 * Empty the signal mask.  SIGINT and SIGTERM (a terminal's ^C or a kill of
 * the whole process group: the supervisor owns shutdown, it closes the
 * channel and the worker then runs asya_fini) and SIGPIPE (a write to a
 * closed pipe is an EPIPE error, as under the reference Python runtime) do
 * nothing to the worker.  They are caught by a function that does nothing
 * rather than set to SIG_IGN: an ignored signal stays ignored across exec,
 * so every program a handler runs (popen, system, posix_spawn) would start
 * with SIGINT, SIGTERM and SIGPIPE ignored, while a caught one is reset to
 * its default.  Other dispositions, inherited from whoever started the
 * runtime, are left as they are.
 */
void wsetup_signals(void);

/* Mark the channel fd close-on-exec: programs a handler runs do not inherit
 * it (they would keep it open after the worker died). */
void wsetup_channel(int fd);

/*
 * Apply cfg->memory_mb (when set) as RLIMIT_AS.  Refuses a limit below what
 * the worker already uses plus 8 MiB; skipped with a warning in
 * AddressSanitizer builds, whose shadow memory needs terabytes of address
 * space.  Returns 0, or a negative errno with a message in err.
 */
int wsetup_memory_limit(const struct runtime_config *cfg, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif /* ASYA_WSETUP_H */
