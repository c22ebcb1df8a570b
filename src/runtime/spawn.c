#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "handoff.h"
#include "usock.h"
#include "worker.h"

pid_t spawn_worker(const char *exe, int ledger, int *fd, char *err, size_t errlen)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
        int e = errno;
        snprintf(err, errlen, "socketpair: %s", strerror(e));
        return -e;
    }
    int rc = usock_set_nonblock(sp[0], 1); /* ours only: the worker's end blocks */
    if (rc != 0) {
        snprintf(err, errlen, "cannot make the channel non-blocking: %s", strerror(-rc));
        close(sp[0]);
        close(sp[1]);
        return rc;
    }
    pid_t parent = getpid();
    char *const argv[] = {(char *)"asya-runtime", (char *)WORKER_ARG, NULL};
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        snprintf(err, errlen, "fork: %s", strerror(e));
        close(sp[0]);
        close(sp[1]);
        return -e;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls until exec. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        /* Out of the way first: either may sit on the other's target. */
        int ch = fcntl(sp[1], F_DUPFD_CLOEXEC, 10);
        int lg = fcntl(ledger, F_DUPFD_CLOEXEC, 10);
        if (ch < 0 || lg < 0 || dup2(ch, WORKER_CHANNEL_FD) < 0 || dup2(lg, WORKER_LEDGER_FD) < 0)
            _exit(127);
        execv(exe, argv);
        _exit(127);
    }
    close(sp[1]);
    *fd = sp[0];
    return pid;
}

int spawn_report(const char *body, size_t len, char *text, size_t textlen)
{
    json_t *o = json_loadb(body, len, 0, NULL);
    const char *kind = json_string_value(json_object_get(o, WORKER_MSG_KEY));
    int ready = kind && strcmp(kind, WORKER_MSG_READY) == 0;
    if (ready) {
        const char *mod = json_string_value(json_object_get(o, "module"));
        const char *ver = json_string_value(json_object_get(o, "version"));
        snprintf(text, textlen, "%s%s%s", mod ? mod : "-", ver ? " " : "", ver ? ver : "");
    } else {
        const char *msg = json_string_value(json_object_get(o, "message"));
        snprintf(text, textlen, "%s", msg ? msg : "worker sent an unreadable start-up message");
    }
    json_decref(o);
    return ready;
}
