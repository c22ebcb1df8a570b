/*
 * asya-invoke - run one envelope or payload through a handler, exactly as
 * asya-runtime does, without a broker or a sidecar.
 *
 * It does not load the handler itself: it starts the real asya-runtime as a
 * child (one worker, a private socket in a temp directory), sends it one
 * request frame the way asya-sidecar does, prints the answer and stops the
 * runtime again.  So the ABI checks, the worker isolation (a crash only
 * kills the worker), the memory limit and the answer format are the
 * runtime's own, and so are its start-up error lines.
 *
 * Exit status (see usage()):
 *   0 results or no result, 1 no usable answer, 2 usage or start-up error,
 *   3 processing_error, 4 oom_error / cuda_oom_error, 5 timeout_error,
 *   6 msg_parsing_error.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <asya/asya.h>

#include "duration.h"
#include "frame.h"
#include "procstatus.h"
#include "protocol.h"
#include "usock.h"

#define PROGRAM "asya-invoke"

/* ---- exit codes --------------------------------------------------------- */

enum invoke_exit {
    EXIT_OK = 0,         /* results, or no result ([]) */
    EXIT_NO_ANSWER = 1,  /* runtime died / closed without answering / not the protocol */
    EXIT_USAGE = 2,      /* bad arguments, unreadable input, runtime could not start */
    EXIT_PROCESSING = 3, /* processing_error */
    EXIT_OOM = 4,        /* oom_error, cuda_oom_error */
    EXIT_TIMEOUT = 5,    /* timeout_error */
    EXIT_PARSING = 6,    /* msg_parsing_error */
};

#define DEFAULT_TIMEOUT       "5m"
#define DEFAULT_START_TIMEOUT "60s"
#define STOP_GRACE_MS         10000
#define POLL_STEP_MS          50

/* ---- options -------------------------------------------------------------- */

struct options {
    const char *handler; /* --handler or ASYA_HANDLER (borrowed) */
    const char *mode;    /* --mode or ASYA_HANDLER_MODE, NULL: runtime default */
    const char *memory;  /* --memory-mb (borrowed), NULL: inherit the environment */
    const char *input;   /* file name; NULL or "-" reads stdin */
    int64_t timeout_ns;  /* 0: wait forever */
    int64_t start_ns;    /* how long the runtime may take to become ready */
    char timeout_text[32];
    bool wrap_payload; /* --payload */
    bool pretty;       /* --pretty */
    int verbose;       /* -v: runtime logs at INFO; -vv: DEBUG */
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROGRAM " [options] [FILE]\n"
            "\n"
            "Runs one envelope (or, with --payload, one payload) through a handler exactly as\n"
            "asya-runtime does: it starts the real asya-runtime with one worker on a private\n"
            "socket, sends the request the way asya-sidecar does, prints the runtime's answer\n"
            "(a JSON array) on stdout and stops the runtime.  Input is read from FILE, or from\n"
            "stdin when FILE is missing or '-'.\n"
            "\n"
            "Options:\n"
            "  --handler LIB.so:FUNC  the handler (default $ASYA_HANDLER)\n"
            "  --mode payload|envelope\n"
            "                         handler mode (default $ASYA_HANDLER_MODE, else payload)\n"
            "  --payload              the input is a bare payload: wrap it into the envelope\n"
            "                         {\"id\":\"invoke-1\",\"route\":{\"actors\":[\"invoke\"],"
            "\"current\":0},\"payload\":...}\n"
            "  --timeout DURATION     give up after DURATION (Go syntax: 300ms, 5s, 2m; 0 waits\n"
            "                         forever; default $ASYA_RUNTIME_TIMEOUT, else " DEFAULT_TIMEOUT
            "): the\n"
            "                         connection is closed, so the runtime kills the worker, and\n"
            "                         a timeout_error answer is printed\n"
            "  --memory-mb N          address-space limit of the worker (ASYA_WORKER_MEMORY_MB)\n"
            "  --start-timeout DURATION\n"
            "                         how long asya_init may take (default " DEFAULT_START_TIMEOUT
            ")\n"
            "  --pretty               indent the answer\n"
            "  -v, --verbose          show the runtime's log lines (-vv: debug lines too)\n"
            "  -h, --help             this text\n"
            "  -V, --version          version and handler ABI\n"
            "\n"
            "The runtime is asya-runtime next to this program, or $ASYA_RUNTIME_BIN.  Other\n"
            "ASYA_* variables (ASYA_MAX_MESSAGE_BYTES...) and the handler's own variables are\n"
            "passed to it unchanged.  Without -v only its warnings and errors are shown, as\n"
            "'asya-runtime: ...' lines on stderr; what the handler prints goes to stderr too.\n"
            "\n"
            "Exit status:\n"
            "  0  the handler succeeded: results, or no result ([])\n"
            "  1  no usable answer: the runtime died or closed the connection without\n"
            "     answering, or answered something else than the protocol (a connection_error\n"
            "     answer is printed), or an error code not listed here\n"
            "  2  usage or start-up error: bad option, unreadable input, asya-runtime not found,\n"
            "     handler cannot be loaded (wrong path, missing function, no or wrong ABI stamp,\n"
            "     asya_init failed); the runtime's own error line is printed\n"
            "  3  processing_error (the handler failed, threw, panicked or crashed)\n"
            "  4  oom_error or cuda_oom_error\n"
            "  5  timeout_error\n"
            "  6  msg_parsing_error (malformed envelope, or --payload input that is not JSON)\n");
}

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, PROGRAM ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (try --help)\n");
    return EXIT_USAGE;
}

static int parse_duration_opt(const char *name, const char *text, int64_t *ns)
{
    if (duration_parse(text, ns) != 0) {
        fprintf(stderr,
                PROGRAM ": %s %s: expected a duration such as 300ms, 5s, 2m or 1h30m (try "
                        "--help)\n",
                name, text);
        return -1;
    }
    return 0;
}

/* Returns -1 to continue, else the exit status (help, version, bad usage). */
static int parse_args(int argc, char **argv, struct options *o)
{
    memset(o, 0, sizeof *o);
    o->handler = getenv("ASYA_HANDLER");
    o->mode = getenv("ASYA_HANDLER_MODE");
    const char *timeout = getenv("ASYA_RUNTIME_TIMEOUT");
    if (!timeout || !*timeout)
        timeout = DEFAULT_TIMEOUT;
    const char *start = DEFAULT_START_TIMEOUT;
    bool only_files = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_files && a[0] == '-' && a[1] != '\0') {
            const char *val = NULL;
            /* Options taking a value: --opt VALUE or --opt=VALUE. */
            static const char *const with_value[] = {"--handler", "--mode", "--timeout",
                                                     "--memory-mb", "--start-timeout"};
            const char *name = NULL;
            for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) {
                size_t n = strlen(with_value[k]);
                if (strncmp(a, with_value[k], n) == 0 && (a[n] == '\0' || a[n] == '=')) {
                    name = with_value[k];
                    if (a[n] == '=') {
                        val = a + n + 1;
                    } else {
                        if (i + 1 >= argc)
                            return bad_usage("%s needs a value", name);
                        val = argv[++i];
                    }
                    break;
                }
            }
            if (name && strcmp(name, "--handler") == 0) {
                o->handler = val;
            } else if (name && strcmp(name, "--mode") == 0) {
                if (strcmp(val, "payload") != 0 && strcmp(val, "envelope") != 0)
                    return bad_usage("--mode %s: expected payload or envelope", val);
                o->mode = val;
            } else if (name && strcmp(name, "--timeout") == 0) {
                timeout = val;
            } else if (name && strcmp(name, "--start-timeout") == 0) {
                start = val;
            } else if (name && strcmp(name, "--memory-mb") == 0) {
                char *end;
                errno = 0;
                long mb = strtol(val, &end, 10);
                if (errno || end == val || *end || mb < 0)
                    return bad_usage("--memory-mb %s: expected a number of MiB (0: no limit)", val);
                o->memory = val;
            } else if (strcmp(a, "--payload") == 0) {
                o->wrap_payload = true;
            } else if (strcmp(a, "--pretty") == 0) {
                o->pretty = true;
            } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
                o->verbose++;
            } else if (strcmp(a, "-vv") == 0) {
                o->verbose += 2;
            } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
                usage(stdout);
                return EXIT_OK;
            } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
                printf(PROGRAM " %s (handler ABI %d)\n", ASYA_BUILD_VERSION, ASYA_ABI_MAJOR);
                return EXIT_OK;
            } else if (strcmp(a, "--") == 0) {
                only_files = true;
            } else {
                return bad_usage("unknown option '%s'", a);
            }
            continue;
        }
        if (o->input)
            return bad_usage("one input file at most ('%s' is the second)", a);
        o->input = a;
    }

    if (!o->handler || !*o->handler)
        return bad_usage("%sno handler: give --handler <path/to/lib.so>:<function> or set "
                         "ASYA_HANDLER",
                         "");
    if (parse_duration_opt("--timeout", timeout, &o->timeout_ns) != 0 ||
        parse_duration_opt("--start-timeout", start, &o->start_ns) != 0)
        return EXIT_USAGE;
    if (o->start_ns == 0)
        o->start_ns = INT64_MAX;
    duration_format(o->timeout_ns, o->timeout_text, sizeof o->timeout_text);
    return -1;
}

/* ---- input ---------------------------------------------------------------- */

/* Read all of fd into a malloc'd NUL-terminated buffer.  Returns 0 or -errno. */
static int read_all(int fd, char **out, size_t *out_len)
{
    size_t cap = (size_t)64 * 1024, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        if (len + 1 == cap) {
            char *p = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                return -ENOMEM;
            }
            buf = p;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            return -e;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}

/*
 * Wrap a bare payload into an envelope, keeping the payload's bytes exactly
 * as given (numbers such as 2.50 or 1e300 reach the handler untouched).  The
 * payload is checked to be one JSON value first.  Returns 0 with a malloc'd
 * envelope, -EINVAL with the parser's reason in err, or -ENOMEM.
 */
static int wrap_payload(const char *payload, size_t len, char **env, size_t *env_len, char *err,
                        size_t errlen)
{
    json_error_t jerr;
    json_t *v = json_loadb(payload, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v) {
        snprintf(err, errlen, "the payload is not valid JSON: %s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        return -EINVAL;
    }
    json_decref(v);
    static const char head[] =
        "{\"id\":\"invoke-1\",\"route\":{\"actors\":[\"invoke\"],\"current\":0},\"payload\":";
    size_t n = sizeof head - 1 + len + 2;
    char *p = malloc(n);
    if (!p)
        return -ENOMEM;
    memcpy(p, head, sizeof head - 1);
    memcpy(p + sizeof head - 1, payload, len);
    p[n - 2] = '}';
    p[n - 1] = '\0';
    *env = p;
    *env_len = n - 1;
    return 0;
}

/* ---- time ----------------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * DURATION_NS_PER_S + ts.tv_nsec;
}

/* Milliseconds until deadline (INT64_MAX: none), capped at POLL_STEP_MS. */
static int poll_wait_ms(int64_t deadline)
{
    if (deadline == INT64_MAX)
        return POLL_STEP_MS;
    int64_t left = deadline - now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + DURATION_NS_PER_MS - 1) / DURATION_NS_PER_MS;
    return ms < POLL_STEP_MS ? (int)ms : POLL_STEP_MS;
}

/* ---- the runtime child ---------------------------------------------------- */

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

struct child {
    pid_t pid;       /* -1 once reaped */
    int status;      /* wait status once reaped */
    int log_fd;      /* read end of the child's stdout+stderr; -1 when closed */
    char line[4096]; /* partial line of its output */
    size_t line_len;
    int verbose;
    bool error_shown; /* an ERROR line of the runtime was printed */
    bool started;     /* it became ready */
    char dir[96];     /* private temp dir (short: the socket path must fit sun_path) */
    char sock[128];   /* dir/app.sock */
    char ready[128];  /* dir/ready */
};

/*
 * Show one line of the runtime's output.  Log lines look like
 *   2026-01-02T03:04:05.678Z WARNING asya-runtime[123]: message
 * Without -v, only WARNING and ERROR lines are shown, shortened to
 * "asya-runtime: message"; anything else (the handler's own prints) is
 * passed through unchanged.
 */
static void child_show_line(struct child *c, const char *line)
{
    bool is_log = strlen(line) > 26 && line[4] == '-' && line[10] == 'T' && line[23] == 'Z' &&
                  line[24] == ' ';
    const char *msg = NULL;
    char level[16] = "";
    char program[64] = "asya-runtime";
    if (is_log) {
        const char *p = line + 25;
        size_t n = strcspn(p, " ");
        if (n == 0 || n >= sizeof level)
            is_log = false;
        else
            memcpy(level, p, n), level[n] = '\0';
        p += n;
        p += strspn(p, " ");
        size_t pn = strcspn(p, "[");
        if (pn > 0 && pn < sizeof program)
            memcpy(program, p, pn), program[pn] = '\0';
        const char *close = strchr(p, ']');
        msg = close ? strstr(close, ": ") : NULL;
        if (!msg)
            is_log = false;
        else
            msg += 2;
    }
    if (!is_log) {
        fprintf(stderr, "%s\n", line);
        return;
    }
    if (c->verbose) {
        fprintf(stderr, "%s\n", line);
    } else if (strcmp(level, "ERROR") == 0) {
        fprintf(stderr, "%s: %s\n", program, msg);
    } else if (strcmp(level, "WARNING") == 0) {
        fprintf(stderr, "%s: warning: %s\n", program, msg);
    }
    if (strcmp(level, "ERROR") == 0)
        c->error_shown = true;
}

/* Read what the child wrote, showing whole lines.  at_end flushes a partial
 * last line.  Returns false once the pipe reached end of file. */
static bool child_pump(struct child *c, bool at_end)
{
    if (c->log_fd < 0)
        return false;
    char buf[4096];
    for (;;) {
        ssize_t n = read(c->log_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) /* EAGAIN: nothing more for now */
            break;
        if (n == 0) {
            close(c->log_fd);
            c->log_fd = -1;
            at_end = true;
            break;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n' || c->line_len == sizeof c->line - 1) {
                c->line[c->line_len] = '\0';
                child_show_line(c, c->line);
                c->line_len = 0;
                if (buf[i] == '\n')
                    continue;
            }
            c->line[c->line_len++] = buf[i];
        }
    }
    if (at_end && c->line_len) {
        c->line[c->line_len] = '\0';
        child_show_line(c, c->line);
        c->line_len = 0;
    }
    return c->log_fd >= 0;
}

/* Reap the child if it has exited.  Returns true when it is gone. */
static bool child_gone(struct child *c)
{
    if (c->pid < 0)
        return true;
    pid_t r = waitpid(c->pid, &c->status, WNOHANG);
    if (r == c->pid) {
        c->pid = -1;
        return true;
    }
    return false;
}

/* The runtime binary: $ASYA_RUNTIME_BIN, else asya-runtime next to us. */
static int find_runtime(const char *argv0, char *path, size_t len)
{
    const char *env = getenv("ASYA_RUNTIME_BIN");
    if (env && *env) {
        snprintf(path, len, "%s", env);
    } else {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
            self[n] = '\0';
        } else if (!argv0 || !strchr(argv0, '/') || !realpath(argv0, self)) {
            fprintf(stderr, PROGRAM ": cannot find the directory of this program; set "
                                    "ASYA_RUNTIME_BIN to the asya-runtime binary\n");
            return -1;
        }
        char *slash = strrchr(self, '/');
        *slash = '\0';
        int n2 = snprintf(path, len, "%s/asya-runtime", self);
        if (n2 < 0 || (size_t)n2 >= len) {
            fprintf(stderr, PROGRAM ": the path of this program is too long\n");
            return -1;
        }
    }
    if (access(path, X_OK) != 0) {
        fprintf(stderr, PROGRAM ": cannot run %s: %s%s\n", path, strerror(errno),
                env && *env ? " (from ASYA_RUNTIME_BIN)"
                            : "; install asya-runtime next to asya-invoke or set "
                              "ASYA_RUNTIME_BIN");
        return -1;
    }
    return 0;
}

/* Make the private directory, its socket and ready-file names. */
static int child_paths(struct child *c)
{
    const char *tmp = getenv("TMPDIR");
    /* A unix socket path must fit in sockaddr_un.sun_path (108 bytes). */
    if (!tmp || !*tmp || strlen(tmp) > 60)
        tmp = "/tmp";
    snprintf(c->dir, sizeof c->dir, "%s/asya-invoke-XXXXXX", tmp);
    if (!mkdtemp(c->dir)) {
        fprintf(stderr, PROGRAM ": cannot create a temp directory in %s: %s\n", tmp,
                strerror(errno));
        c->dir[0] = '\0';
        return -1;
    }
    snprintf(c->sock, sizeof c->sock, "%s/app.sock", c->dir);
    snprintf(c->ready, sizeof c->ready, "%s/ready", c->dir);
    return 0;
}

static void child_cleanup_dir(struct child *c)
{
    if (!c->dir[0])
        return;
    unlink(c->sock);
    unlink(c->ready);
    rmdir(c->dir);
}

static int child_start(struct child *c, const char *bin, const struct options *o)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        fprintf(stderr, PROGRAM ": pipe: %s\n", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, PROGRAM ": fork: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        /* The runtime must not outlive us, even if we are SIGKILLed. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        /* Its own process group: a terminal's ^C reaches only us, and we stop
         * the runtime in order (its workers would otherwise die mid-request). */
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull < 0 || dup2(devnull, STDIN_FILENO) < 0 || dup2(fds[1], STDOUT_FILENO) < 0 ||
            dup2(fds[1], STDERR_FILENO) < 0)
            _exit(127);
        const char *level = o->verbose >= 2 ? "DEBUG" : o->verbose ? "INFO" : "WARNING";
        if (setenv("ASYA_HANDLER", o->handler, 1) || setenv("ASYA_SOCKET_PATH", c->sock, 1) ||
            setenv("ASYA_READY_FILE", c->ready, 1) || setenv("ASYA_SOCKET_CHMOD", "0600", 1) ||
            setenv("ASYA_RUNTIME_WORKERS", "1", 1) || setenv("ASYA_LOG_LEVEL", level, 1) ||
            setenv("ASYA_LOG_FORMAT", "text", 1) || setenv("ASYA_SHUTDOWN_TIMEOUT", "5s", 1) ||
            (o->mode && setenv("ASYA_HANDLER_MODE", o->mode, 1)) ||
            (o->memory && setenv("ASYA_WORKER_MEMORY_MB", o->memory, 1)))
            _exit(127);
        execl(bin, "asya-runtime", (char *)NULL);
        dprintf(STDERR_FILENO, PROGRAM ": cannot execute %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    c->pid = pid;
    c->log_fd = fds[0];
    return 0;
}

/* Wait for the ready file.  Returns 0 when ready, else prints why and -1. */
static int child_wait_ready(struct child *c, const struct options *o)
{
    int64_t deadline = o->start_ns == INT64_MAX ? INT64_MAX : now_ns() + o->start_ns;
    for (;;) {
        if (access(c->ready, F_OK) == 0) {
            c->started = true;
            return 0;
        }
        if (child_gone(c)) {
            child_pump(c, true);
            if (!c->error_shown) {
                char how[128];
                procstatus_describe(c->status, how, sizeof how);
                fprintf(stderr, PROGRAM ": asya-runtime %s before it was ready\n", how);
            }
            /* A bare library name is searched by dlopen, not in the current
             * directory, exactly as in the runtime: say so. */
            const char *colon = strrchr(o->handler, ':');
            if (colon && !memchr(o->handler, '/', (size_t)(colon - o->handler))) {
                char lib[PATH_MAX];
                snprintf(lib, sizeof lib, "%.*s", (int)(colon - o->handler), o->handler);
                if (access(lib, F_OK) == 0)
                    fprintf(stderr,
                            PROGRAM ": hint: a library name without '/' is searched in the "
                                    "system library path; write ./%s\n",
                            o->handler);
            }
            return -1;
        }
        if (got_signal)
            return -1;
        if (deadline != INT64_MAX && now_ns() >= deadline) {
            char d[32];
            duration_format(o->start_ns, d, sizeof d);
            fprintf(stderr,
                    PROGRAM ": asya-runtime was not ready within %s (--start-timeout); is "
                            "asya_init stuck?\n",
                    d);
            return -1;
        }
        struct pollfd p = {.fd = c->log_fd, .events = POLLIN};
        int n = poll(&p, c->log_fd >= 0 ? 1 : 0, poll_wait_ms(deadline));
        if (n > 0)
            child_pump(c, false);
    }
}

/* SIGTERM the runtime and wait for it (SIGKILL after a grace period). */
static void child_stop(struct child *c)
{
    if (c->pid > 0 && !child_gone(c))
        kill(c->pid, SIGTERM);
    int64_t deadline = now_ns() + (int64_t)STOP_GRACE_MS * DURATION_NS_PER_MS;
    bool killed = false;
    while (!child_gone(c)) {
        if (!killed && now_ns() >= deadline) {
            fprintf(stderr, PROGRAM ": asya-runtime did not stop in time: killing it\n");
            kill(c->pid, SIGKILL);
            killed = true;
        }
        struct pollfd p = {.fd = c->log_fd, .events = POLLIN};
        if (poll(&p, c->log_fd >= 0 ? 1 : 0, POLL_STEP_MS) > 0)
            child_pump(c, false);
    }
    /* Workers are gone with the runtime; show what they had left. */
    child_pump(c, true);
    if (c->log_fd >= 0) {
        close(c->log_fd);
        c->log_fd = -1;
    }
}

/* ---- the request ---------------------------------------------------------- */

enum outcome {
    OUT_ANSWER,  /* *answer holds the runtime's answer */
    OUT_TIMEOUT, /* no answer before the deadline */
    OUT_CLOSED,  /* the connection or the runtime went away; reason in err */
    OUT_SIGNAL,  /* interrupted */
};

/*
 * Send req over a fresh connection and wait for one answer frame, showing
 * the runtime's output meanwhile.  On OUT_ANSWER, *answer (free with free())
 * and *answer_len are set.  The connection is closed on return, which, when
 * the answer has not come, makes the runtime kill the busy worker.
 */
static enum outcome request(struct child *c, const struct options *o, const char *req,
                            size_t req_len, char **answer, size_t *answer_len, char *err,
                            size_t errlen)
{
    int fd = usock_connect(c->sock, 1);
    if (fd < 0) {
        snprintf(err, errlen, "cannot connect to the runtime's socket: %s", strerror(-fd));
        return OUT_CLOSED;
    }
    struct frame_writer out;
    if (frame_writer_init(&out, req, req_len) != 0) {
        close(fd);
        snprintf(err, errlen, "cannot frame the request: over 4 GiB");
        return OUT_CLOSED;
    }
    struct frame_reader rd;
    frame_reader_init(&rd, SIZE_MAX);
    int64_t deadline = o->timeout_ns ? now_ns() + o->timeout_ns : INT64_MAX;
    enum outcome result = OUT_CLOSED;

    for (;;) {
        if (got_signal) {
            result = OUT_SIGNAL;
            break;
        }
        if (deadline != INT64_MAX && now_ns() >= deadline) {
            result = OUT_TIMEOUT;
            break;
        }
        if (child_gone(c)) {
            char how[128];
            procstatus_describe(c->status, how, sizeof how);
            snprintf(err, errlen, "asya-runtime %s while handling the request", how);
            break;
        }
        bool sending = !frame_writer_done(&out);
        struct pollfd p[2] = {
            {.fd = fd, .events = (short)(POLLIN | (sending ? POLLOUT : 0))},
            {.fd = c->log_fd, .events = POLLIN},
        };
        int n = poll(p, c->log_fd >= 0 ? 2 : 1, poll_wait_ms(deadline));
        if (n < 0 && errno != EINTR) {
            snprintf(err, errlen, "poll: %s", strerror(errno));
            break;
        }
        if (n <= 0)
            continue;
        if (p[1].revents)
            child_pump(c, false);
        if ((p[0].revents & POLLOUT) && sending) {
            int w = frame_writer_write(&out, fd);
            if (w < 0) {
                snprintf(err, errlen,
                         "the runtime closed the connection before reading the "
                         "whole request: %s",
                         strerror(-w));
                break;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            int r = frame_reader_read(&rd, fd);
            if (r == FRAME_IO_AGAIN)
                continue;
            if (r == FRAME_IO_DONE) {
                *answer = frame_reader_take(&rd, answer_len);
                result = OUT_ANSWER;
                break;
            }
            if (r == -ENOMEM)
                snprintf(err, errlen, "out of memory reading the answer");
            else
                snprintf(err, errlen, "asya-runtime closed the connection without answering");
            break;
        }
    }
    frame_reader_reset(&rd);
    close(fd);
    return result;
}

/* ---- output --------------------------------------------------------------- */

static int exit_for_code(const char *code)
{
    if (strcmp(code, PROTO_PROCESSING_ERROR) == 0)
        return EXIT_PROCESSING;
    if (strcmp(code, PROTO_OOM_ERROR) == 0 || strcmp(code, PROTO_CUDA_OOM_ERROR) == 0)
        return EXIT_OOM;
    if (strcmp(code, PROTO_TIMEOUT_ERROR) == 0)
        return EXIT_TIMEOUT;
    if (strcmp(code, PROTO_PARSING_ERROR) == 0)
        return EXIT_PARSING;
    return EXIT_NO_ANSWER;
}

/* Print an answer (raw bytes, or indented) and one summary line on stderr
 * for an error answer.  Returns the exit status it stands for. */
static int print_answer(const char *text, size_t len, bool pretty)
{
    struct runtime_response resp;
    char err[256];
    if (protocol_parse_response(text, len, &resp, err, sizeof err) != 0) {
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
        fprintf(stderr, PROGRAM ": the runtime's answer is not the protocol: %s\n", err);
        return EXIT_NO_ANSWER;
    }
    if (pretty) {
        char *s = json_dumps(resp.root, JSON_INDENT(2) | JSON_ENCODE_ANY);
        if (s) {
            fputs(s, stdout);
            free(s);
        } else {
            fwrite(text, 1, len, stdout);
        }
    } else {
        fwrite(text, 1, len, stdout);
    }
    fputc('\n', stdout);
    int rc = EXIT_OK;
    if (resp.kind == RESPONSE_ERROR) {
        const char *type = json_string_value(json_object_get(resp.details, "type"));
        const char *msg = json_string_value(json_object_get(resp.details, "message"));
        fprintf(stderr, PROGRAM ": %s%s%s%s%s\n", resp.error, type && *type ? ": " : "",
                type ? type : "", msg && *msg ? ": " : "", msg ? msg : "");
        rc = exit_for_code(resp.error);
    }
    protocol_response_free(&resp);
    return rc;
}

/* Print an answer made here (timeout, connection loss, bad input) in the
 * runtime's error format.  Returns exit status rc. */
static int print_own_error(const char *code, const char *type, const char *message, bool pretty,
                           int rc)
{
    size_t len = 0;
    char *text = protocol_error_text(code, message, type, "asya-invoke", &len);
    if (!text) {
        fprintf(stderr, PROGRAM ": %s: %s (out of memory)\n", code, message);
        return rc;
    }
    print_answer(text, len, pretty);
    free(text);
    return rc;
}

/* ---- main ----------------------------------------------------------------- */

int main(int argc, char **argv)
{
    struct options o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;

    char runtime_bin[PATH_MAX];
    if (find_runtime(argv[0], runtime_bin, sizeof runtime_bin) != 0)
        return EXIT_USAGE;

    /* Read the input before starting anything. */
    char *input = NULL;
    size_t input_len = 0;
    bool from_stdin = !o.input || strcmp(o.input, "-") == 0;
    int fd = from_stdin ? STDIN_FILENO : open(o.input, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, PROGRAM ": cannot read %s: %s\n", o.input, strerror(errno));
        return EXIT_USAGE;
    }
    if (from_stdin && isatty(fd))
        fprintf(stderr, PROGRAM ": reading the %s from the terminal; end it with Ctrl-D\n",
                o.wrap_payload ? "payload" : "envelope");
    int r = read_all(fd, &input, &input_len);
    if (!from_stdin)
        close(fd);
    if (r != 0) {
        fprintf(stderr, PROGRAM ": cannot read %s: %s\n", from_stdin ? "stdin" : o.input,
                strerror(-r));
        return EXIT_USAGE;
    }
    if (o.wrap_payload) {
        char *env = NULL, err[512];
        size_t env_len = 0;
        r = wrap_payload(input, input_len, &env, &env_len, err, sizeof err);
        if (r == -EINVAL) {
            free(input);
            return print_own_error(PROTO_PARSING_ERROR, "JSONDecodeError", err, o.pretty,
                                   EXIT_PARSING);
        }
        if (r != 0) {
            free(input);
            fprintf(stderr, PROGRAM ": out of memory\n");
            return EXIT_NO_ANSWER;
        }
        free(input);
        input = env;
        input_len = env_len;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct child c;
    memset(&c, 0, sizeof c);
    c.pid = -1;
    c.log_fd = -1;
    c.verbose = o.verbose;
    if (child_paths(&c) != 0) {
        free(input);
        return EXIT_USAGE;
    }
    if (child_start(&c, runtime_bin, &o) != 0) {
        child_cleanup_dir(&c);
        free(input);
        return EXIT_USAGE;
    }

    rc = EXIT_USAGE;
    if (child_wait_ready(&c, &o) == 0) {
        char *answer = NULL, err[512] = "";
        size_t answer_len = 0;
        enum outcome out = request(&c, &o, input, input_len, &answer, &answer_len, err, sizeof err);
        /* Stop the runtime before printing, so its last lines come first. */
        child_stop(&c);
        switch (out) {
        case OUT_ANSWER:
            rc = print_answer(answer, answer_len, o.pretty);
            free(answer);
            break;
        case OUT_TIMEOUT: {
            char msg[160];
            snprintf(msg, sizeof msg, "the runtime did not answer within %s (--timeout)",
                     o.timeout_text);
            rc = print_own_error(PROTO_TIMEOUT_ERROR, "TimeoutError", msg, o.pretty, EXIT_TIMEOUT);
            break;
        }
        case OUT_CLOSED:
            rc = print_own_error(PROTO_CONNECTION_ERROR, "ConnectionError", err, o.pretty,
                                 EXIT_NO_ANSWER);
            break;
        case OUT_SIGNAL:
            fprintf(stderr, PROGRAM ": interrupted by %s\n", strsignal(got_signal));
            rc = 128 + got_signal;
            break;
        }
    } else if (got_signal) {
        rc = 128 + got_signal;
    }
    child_stop(&c);
    /* A runtime that started and then did not stop cleanly is worth a line:
     * whatever the handler did, only its worker should have suffered. */
    if (c.started && !(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0)) {
        char how[128];
        procstatus_describe(c.status, how, sizeof how);
        fprintf(stderr, PROGRAM ": warning: asya-runtime %s while stopping\n", how);
    }
    child_cleanup_dir(&c);
    free(input);
    return rc;
}
