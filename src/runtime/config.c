#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <asya/asya.h>

#include "duration.h"
#include "envcfg.h"
#include "frame.h"

const char *config_mode_name(int mode)
{
    return mode == ASYA_MODE_ENVELOPE ? "envelope" : "payload";
}

static bool is_identifier(const char *s)
{
    if (!*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

int config_split_handler(const char *spec, char *path, size_t pathlen, char *func, size_t funclen,
                         char *err, size_t errlen)
{
    const char *colon = spec ? strrchr(spec, ':') : NULL;
    if (!spec || !*spec) {
        snprintf(err, errlen, "ASYA_HANDLER is not set: expected <path/to/lib.so>:<function>");
        return -EINVAL;
    }
    if (!colon) {
        snprintf(err, errlen,
                 "ASYA_HANDLER=%s: missing ':<function>', expected <path/to/lib.so>:<function>",
                 spec);
        return -EINVAL;
    }
    size_t plen = (size_t)(colon - spec);
    if (plen == 0) {
        snprintf(err, errlen, "ASYA_HANDLER=%s: missing library path before ':'", spec);
        return -EINVAL;
    }
    if (plen >= pathlen) {
        snprintf(err, errlen, "ASYA_HANDLER=%s: library path is too long", spec);
        return -EINVAL;
    }
    const char *fn = colon + 1;
    if (!*fn) {
        snprintf(err, errlen, "ASYA_HANDLER=%s: missing function name after ':'", spec);
        return -EINVAL;
    }
    if (strlen(fn) >= funclen || !is_identifier(fn)) {
        snprintf(err, errlen, "ASYA_HANDLER=%s: function name '%s' is not a C identifier", spec,
                 fn);
        return -EINVAL;
    }
    memcpy(path, spec, plen);
    path[plen] = '\0';
    memcpy(func, fn, strlen(fn) + 1); /* fits: checked against funclen above */
    return 0;
}

static int load_handler(struct runtime_config *cfg, char *err, size_t errlen)
{
    cfg->handler = envcfg_str("ASYA_HANDLER", NULL, NULL, NULL);
    int rc = config_split_handler(cfg->handler, cfg->lib_path, sizeof cfg->lib_path, cfg->func,
                                  sizeof cfg->func, err, errlen);
    if (rc)
        return rc;
    /* A bare name is searched by dlopen (LD_LIBRARY_PATH...); a path must exist. */
    if (strchr(cfg->lib_path, '/') && access(cfg->lib_path, R_OK) != 0) {
        snprintf(err, errlen, "ASYA_HANDLER=%s: cannot read library %s: %s", cfg->handler,
                 cfg->lib_path, strerror(errno));
        return -EINVAL;
    }
    const char *mode = envcfg_str("ASYA_HANDLER_MODE", NULL, "payload", NULL);
    if (strcasecmp(mode, "payload") == 0) {
        cfg->mode = ASYA_MODE_PAYLOAD;
    } else if (strcasecmp(mode, "envelope") == 0) {
        cfg->mode = ASYA_MODE_ENVELOPE;
    } else {
        snprintf(err, errlen, "ASYA_HANDLER_MODE=%s: expected payload or envelope", mode);
        return -EINVAL;
    }
    return 0;
}

static int load_logging(struct runtime_config *cfg, char *err, size_t errlen)
{
    const char *level = envcfg_str("ASYA_LOG_LEVEL", NULL, "INFO", NULL);
    if (log_level_parse(level, &cfg->log_level) != 0) {
        snprintf(err, errlen, "ASYA_LOG_LEVEL=%s: expected DEBUG, INFO, WARNING or ERROR", level);
        return -EINVAL;
    }
    const char *format = envcfg_str("ASYA_LOG_FORMAT", NULL, "text", NULL);
    if (strcasecmp(format, "text") == 0) {
        cfg->log_json = false;
    } else if (strcasecmp(format, "json") == 0) {
        cfg->log_json = true;
    } else {
        snprintf(err, errlen, "ASYA_LOG_FORMAT=%s: expected text or json", format);
        return -EINVAL;
    }
    return 0;
}

int config_load(struct runtime_config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->log_level = LOG_LVL_INFO;
    int rc = load_logging(cfg, err, errlen);
    if (rc)
        return rc;
    rc = load_handler(cfg, err, errlen);
    if (rc)
        return rc;

    cfg->socket_path = envcfg_str("ASYA_SOCKET_PATH", NULL, CONFIG_DEFAULT_SOCKET, NULL);
    /* Set but empty means "leave the mode as created", so no envcfg_str here. */
    rc = envcfg_mode("ASYA_SOCKET_CHMOD", CONFIG_DEFAULT_CHMOD, &cfg->socket_mode, err, errlen);
    if (rc)
        return rc;
    cfg->ready_file = envcfg_str("ASYA_READY_FILE", NULL, NULL, NULL);

    rc = envcfg_long("ASYA_RUNTIME_WORKERS", 1, 1, CONFIG_MAX_WORKERS, &cfg->workers, err, errlen);
    if (rc)
        return rc;
    /* 0 (or unset) means no limit; a worker needs some tens of MiB to start. */
    rc = envcfg_long("ASYA_WORKER_MEMORY_MB", 0, 0, 1L << 30, &cfg->memory_mb, err, errlen);
    if (rc)
        return rc;
    if (cfg->memory_mb > 0 && cfg->memory_mb < 16) {
        snprintf(err, errlen, "ASYA_WORKER_MEMORY_MB=%ld: must be 0 (no limit) or at least 16",
                 cfg->memory_mb);
        return -EINVAL;
    }
    long max;
    rc = envcfg_long("ASYA_MAX_MESSAGE_BYTES", (long)FRAME_DEFAULT_MAX, 1024, (long)UINT32_MAX,
                     &max, err, errlen);
    if (rc)
        return rc;
    cfg->max_message = (size_t)max;
    rc = envcfg_duration("ASYA_SHUTDOWN_TIMEOUT", CONFIG_DEFAULT_SHUTDOWN, 0, &cfg->shutdown_ns,
                         err, errlen);
    if (rc)
        return rc;
    return 0;
}
