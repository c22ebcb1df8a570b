/*
 * asya-runtime - serves a handler from a shared library on a unix socket.
 *
 * The same binary is the supervisor (normal start) and, re-executed with the
 * hidden argument --worker, each worker process.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <asya/asya.h>

#include "config.h"
#include "frame.h"
#include "log.h"
#include "protocol.h"
#include "usock.h"
#include "supervisor.h"
#include "worker.h"

#define PROGRAM "asya-runtime"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROGRAM " [--help | --version | --probe [SOCKET]]\n"
            "\n"
            "Serves a handler function from a shared library on a unix socket, speaking the\n"
            "Asya sidecar framing (4-byte big-endian length + JSON).  Handler code runs in\n"
            "supervised worker processes: a crash, hang or out-of-memory in a handler is\n"
            "answered as an error and the worker is replaced.\n"
            "\n"
            "Configuration (environment):\n"
            "  ASYA_HANDLER            <path/to/lib.so>:<function>   (required)\n"
            "  ASYA_HANDLER_MODE       payload | envelope            (default payload)\n"
            "  ASYA_SOCKET_PATH        unix socket to serve          (default %s)\n"
            "  ASYA_SOCKET_CHMOD       socket mode: 0660, 660, 0o660; empty keeps it (default "
            "0660)\n"
            "  ASYA_RUNTIME_WORKERS    worker processes              (default 1)\n"
            "  ASYA_WORKER_MEMORY_MB   RLIMIT_AS per worker in MiB   (default: no limit)\n"
            "  ASYA_MAX_MESSAGE_BYTES  largest request/answer frame  (default 67108864)\n"
            "  ASYA_READY_FILE         created once all workers are ready, removed on exit\n"
            "  ASYA_SHUTDOWN_TIMEOUT   drain time after SIGTERM, e.g. 30s (default 30s)\n"
            "  ASYA_LOG_LEVEL          DEBUG | INFO | WARNING | ERROR (default INFO)\n"
            "  ASYA_LOG_FORMAT         text | json                   (default text)\n"
            "\n"
            "Exit status: 0 after SIGTERM/SIGINT, 1 when the handler cannot be loaded or the\n"
            "socket cannot be served, 2 on a bad configuration value.\n"
            "\n"
            "--probe [SOCKET] asks a running runtime (SOCKET, else ASYA_SOCKET_PATH) for its\n"
            "worker counts and restarts by cause, prints the JSON answer and exits 0, or\n"
            "exits 1 when nothing answers within 2 s (for container health checks).\n",
            CONFIG_DEFAULT_SOCKET);
}

/* Path of this executable, for re-executing workers. */
static int self_path(const char *argv0, char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n > 0) {
        buf[n] = '\0';
        return 0;
    }
    if (argv0 && strchr(argv0, '/') && realpath(argv0, buf))
        return 0;
    return -ENOENT;
}

/* --probe: ask a running runtime for its stats (see protocol.h). */
static int probe(const char *path)
{
    if (!path)
        path = getenv("ASYA_SOCKET_PATH");
    if (!path || !*path)
        path = CONFIG_DEFAULT_SOCKET;
    int fd = usock_connect(path, 0);
    if (fd < 0) {
        fprintf(stderr, PROGRAM ": probe %s: %s\n", path, strerror(-fd));
        return 1;
    }
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char *answer = NULL;
    size_t len = 0;
    int rc = frame_send(fd, PROTO_CONTROL_STATS, strlen(PROTO_CONTROL_STATS));
    if (rc == 0)
        rc = frame_recv(fd, 1 << 20, &answer, &len);
    close(fd);
    if (rc != 0) {
        fprintf(stderr, PROGRAM ": probe %s: no answer (%s)\n", path, strerror(-rc));
        return 1;
    }
    int ok = answer[0] == '{';
    printf("%s\n", answer);
    free(answer);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    bool worker = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            printf(PROGRAM " %s (handler ABI %d)\n", ASYA_BUILD_VERSION, ASYA_ABI_MAJOR);
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--probe") == 0)
            return probe(i + 1 < argc ? argv[i + 1] : NULL);
        if (strcmp(argv[i], WORKER_ARG) == 0) {
            worker = true;
            continue;
        }
        fprintf(stderr, PROGRAM ": unknown argument '%s' (try --help)\n", argv[i]);
        return 2;
    }

    struct runtime_config cfg;
    char err[1024];
    int rc = config_load(&cfg, err, sizeof err);
    log_setup(worker ? "asya-runtime-worker" : PROGRAM, rc == 0 ? cfg.log_level : LOG_LVL_INFO,
              rc == 0 && cfg.log_json);
    if (rc != 0) {
        log_error("%s", err);
        return 2;
    }
    if (worker)
        return worker_main(WORKER_CHANNEL_FD, &cfg);

    char exe[PATH_MAX];
    if (self_path(argv[0], exe, sizeof exe) != 0) {
        log_error("cannot find the path of this executable to start workers");
        return 1;
    }
    return supervisor_run(&cfg, exe);
}
