/*
 * config.h - asya-runtime configuration, read once from the environment.
 *
 * Every default lives in config.c.  config_load() checks every value and
 * fails with one line naming the variable, so a bad deployment stops at start.
 */
#ifndef ASYA_CONFIG_H
#define ASYA_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define CONFIG_DEFAULT_SOCKET   "/tmp/sockets/app.sock"
#define CONFIG_DEFAULT_CHMOD    "0660"
#define CONFIG_DEFAULT_SHUTDOWN "30s"
#define CONFIG_MAX_WORKERS      1024
#define CONFIG_FUNC_MAX         256

struct runtime_config {
    const char *handler;        /* ASYA_HANDLER as given (borrowed from environ) */
    char lib_path[PATH_MAX];    /* the part before the last ':' */
    char func[CONFIG_FUNC_MAX]; /* the part after it: a C identifier */
    int mode;                   /* enum asya_mode (ASYA_HANDLER_MODE) */
    const char *socket_path;    /* ASYA_SOCKET_PATH (borrowed) */
    int socket_mode;            /* ASYA_SOCKET_CHMOD; -1 leaves the mode as created */
    const char *ready_file;     /* ASYA_READY_FILE (borrowed), NULL when unset */
    long workers;               /* ASYA_RUNTIME_WORKERS */
    long memory_mb;             /* ASYA_WORKER_MEMORY_MB; 0 when unset (no limit) */
    size_t max_message;         /* ASYA_MAX_MESSAGE_BYTES */
    int64_t shutdown_ns;        /* ASYA_SHUTDOWN_TIMEOUT */
    enum log_level log_level;   /* ASYA_LOG_LEVEL */
    bool log_json;              /* ASYA_LOG_FORMAT=json */
};

/*
 * Read and check the environment into cfg.  Returns 0, or -EINVAL with one
 * line in err naming the bad variable and what was expected.  Only cheap,
 * side-effect free checks happen here: the handler library is not opened
 * (workers do that, so handler code never runs in the supervisor).
 */
int config_load(struct runtime_config *cfg, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Split an ASYA_HANDLER value "<path/to/lib.so>:<function>" at its last ':'
 * into path and func.  Returns 0 or -EINVAL with a reason in err.
 */
int config_split_handler(const char *spec, char *path, size_t pathlen, char *func, size_t funclen,
                         char *err, size_t errlen) __attribute__((warn_unused_result));

/* The name of a mode value: "payload" or "envelope". */
const char *config_mode_name(int mode);

#endif /* ASYA_CONFIG_H */
