#include "wsetup.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"

/* ASan reserves terabytes of address space for its shadow memory, so an
 * RLIMIT_AS would make every later mmap fail; sanitizer builds skip it. */
#if defined(__SANITIZE_ADDRESS__)
#define WORKER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WORKER_ASAN 1
#endif
#endif
#ifndef WORKER_ASAN
#define WORKER_ASAN 0
#endif

/* Address space in use now, in bytes (0 when unknown). */
static size_t address_space_used(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return 0;
    unsigned long pages = 0;
    if (fscanf(f, "%lu", &pages) != 1)
        pages = 0;
    fclose(f);
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

int wsetup_memory_limit(const struct runtime_config *cfg, char *err, size_t errlen)
{
    if (cfg->memory_mb <= 0)
        return 0;
    if (WORKER_ASAN) {
        log_warn("ASYA_WORKER_MEMORY_MB=%ld ignored: RLIMIT_AS cannot work in an AddressSanitizer "
                 "build",
                 cfg->memory_mb);
        return 0;
    }
    rlim_t limit = (rlim_t)cfg->memory_mb * 1024 * 1024;
    size_t used = address_space_used();
    if (used && limit < (rlim_t)used + (rlim_t)8 * 1024 * 1024) {
        snprintf(err, errlen,
                 "ASYA_WORKER_MEMORY_MB=%ld is too small: a worker already uses %zu MiB of "
                 "address space before loading the handler",
                 cfg->memory_mb, used / ((size_t)1024 * 1024));
        return -EINVAL;
    }
    struct rlimit rl = {.rlim_cur = limit, .rlim_max = limit};
    if (setrlimit(RLIMIT_AS, &rl) != 0) {
        snprintf(err, errlen, "ASYA_WORKER_MEMORY_MB=%ld: setrlimit(RLIMIT_AS): %s", cfg->memory_mb,
                 strerror(errno));
        return -errno;
    }
    return 0;
}

/* Does nothing: see wsetup_signals. */
static void on_ignored_signal(int sig)
{
    (void)sig;
}

void wsetup_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_ignored_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

void wsetup_channel(int fd)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0)
        fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}
