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

enum reap_cause reap_cause(int status, enum reap_kill kill)
{
    if (kill == REAP_KILL_SHUTDOWN)
        return REAP_CAUSE_NONE;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
        switch (kill) {
        case REAP_KILL_CLIENT_LEFT:
            return REAP_CAUSE_TIMEOUT_KILL;
        case REAP_KILL_PROTOCOL:
            return REAP_CAUSE_PROTOCOL_KILL;
        case REAP_KILL_START:
            return REAP_CAUSE_EXIT; /* it was exiting anyway: killing only hurries it */
        default:
            return REAP_CAUSE_OOM_KILL;
        }
    }
    return WIFSIGNALED(status) ? REAP_CAUSE_CRASH : REAP_CAUSE_EXIT;
}

const char *reap_cause_name(enum reap_cause cause)
{
    static const char *const names[REAP_CAUSES] = {
        [REAP_CAUSE_CRASH] = "crash",
        [REAP_CAUSE_OOM_KILL] = "oom_kill",
        [REAP_CAUSE_TIMEOUT_KILL] = "timeout_kill",
        [REAP_CAUSE_PROTOCOL_KILL] = "protocol_kill",
        [REAP_CAUSE_EXIT] = "exit",
    };
    return (unsigned)cause < REAP_CAUSES ? names[cause] : NULL;
}

char *reap_error_answer(long pid, const char *handler, int status, enum reap_kill kill, bool taken,
                        size_t *len)
{
    char msg[512], tb[PATH_MAX + 128], name[32];
    const char *code = PROTO_PROCESSING_ERROR;
    const char *type;
    const char *when = taken ? "while handling the request" : "before it read the request";
    snprintf(tb, sizeof tb, "worker process %ld running handler %s", pid, handler);
    enum reap_cause cause = reap_cause(status, kill);
    if (kill == REAP_KILL_PROTOCOL)
        cause = REAP_CAUSE_PROTOCOL_KILL; /* the breach, whatever it then died of */
    else if (cause == REAP_CAUSE_EXIT && !WIFEXITED(status))
        cause = REAP_CAUSE_NONE;
    switch (cause) {
    case REAP_CAUSE_PROTOCOL_KILL:
        type = "WorkerProtocolError";
        snprintf(msg, sizeof msg, "worker process %ld sent an invalid or oversized answer", pid);
        break;
    case REAP_CAUSE_OOM_KILL:
        code = PROTO_OOM_ERROR;
        type = "MemoryError";
        snprintf(msg, sizeof msg,
                 "worker process %ld was killed by SIGKILL %s (likely out of memory: kernel or "
                 "cgroup OOM killer)",
                 pid, when);
        break;
    case REAP_CAUSE_CRASH:
        type = procstatus_signame(WTERMSIG(status), name, sizeof name);
        snprintf(msg, sizeof msg, "worker process %ld was killed by signal %s (%s) %s", pid, type,
                 strsignal(WTERMSIG(status)), when);
        break;
    case REAP_CAUSE_EXIT:
        type = "WorkerExit";
        snprintf(msg, sizeof msg, "worker process %ld exited with status %d %s", pid,
                 WEXITSTATUS(status), when);
        break;
    default: /* the supervisor's own kill: no client is normally left to tell */
        type = "WorkerKilled";
        snprintf(msg, sizeof msg, "worker process %ld was killed by asya-runtime %s", pid, when);
        break;
    }
    return protocol_error_text(code, msg, type, tb, len);
}
