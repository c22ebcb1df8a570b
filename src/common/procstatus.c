#include "procstatus.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

const char *procstatus_signame(int sig, char *buf, size_t len)
{
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(buf, len, "SIG%s", abbrev);
    else
        snprintf(buf, len, "SIG%d", sig);
    return buf;
}

const char *procstatus_describe(int status, char *buf, size_t len)
{
    char name[32];
    if (WIFEXITED(status)) {
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        snprintf(buf, len, "was killed by %s (%s)",
                 procstatus_signame(WTERMSIG(status), name, sizeof name),
                 strsignal(WTERMSIG(status)));
    } else {
        snprintf(buf, len, "ended with wait status %#x", (unsigned)status);
    }
    return buf;
}
