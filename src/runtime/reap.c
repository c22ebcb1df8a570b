#include "reap.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "procstatus.h"
#include "protocol.h"

double reap_backoff(int early_deaths)
{
    if (early_deaths <= 0)
        return 0;
    double delay = REAP_BACKOFF_MIN_S;
    for (int i = 1; i < early_deaths && delay < REAP_BACKOFF_MAX_S; i++)
        delay *= 2;
    return delay > REAP_BACKOFF_MAX_S ? REAP_BACKOFF_MAX_S : delay;
}

bool reap_taken(bool written, bool reset, int unread)
{
    return written && !reset && unread <= 0;
}

char *reap_error_answer(long pid, const char *handler, int status, bool bad_answer, bool taken,
                        size_t *len)
{
    char msg[512], tb[PATH_MAX + 128], name[32];
    const char *code = PROTO_PROCESSING_ERROR;
    const char *type;
    const char *when = taken ? "while handling the request" : "before it read the request";
    snprintf(tb, sizeof tb, "worker process %ld running handler %s", pid, handler);
    if (bad_answer) {
        type = "WorkerProtocolError";
        snprintf(msg, sizeof msg, "worker process %ld sent an invalid or oversized answer", pid);
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
        code = PROTO_OOM_ERROR;
        type = "MemoryError";
        snprintf(msg, sizeof msg,
                 "worker process %ld was killed by SIGKILL %s (likely out of memory: kernel or "
                 "cgroup OOM killer)",
                 pid, when);
    } else if (WIFSIGNALED(status)) {
        type = procstatus_signame(WTERMSIG(status), name, sizeof name);
        snprintf(msg, sizeof msg, "worker process %ld was killed by signal %s (%s) %s", pid, type,
                 strsignal(WTERMSIG(status)), when);
    } else {
        type = "WorkerExit";
        snprintf(msg, sizeof msg, "worker process %ld exited with status %d %s", pid,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1, when);
    }
    return protocol_error_text(code, msg, type, tb, len);
}
