#include "gwconfig.h"

#include "envcfg.h"
#include "jobstore.h"
#include "urlmask.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NS_PER_S 1000000000.0

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* db/ of the source tree (build/bin/asya-gateway -> ../../db), else the
 * installed copy. */
static const char *default_migrations(const char *exe_path)
{
    static char buf[PATH_MAX];
    char real[PATH_MAX];
    if (exe_path && realpath(exe_path, real)) {
        char *slash = strrchr(real, '/');
        if (slash) {
            *slash = '\0';
            int n = snprintf(buf, sizeof buf, "%s/../../db", real);
            if (n > 0 && (size_t)n < sizeof buf && is_dir(buf))
                return buf;
            n = snprintf(buf, sizeof buf, "%s/../share/asya/db", real);
            if (n > 0 && (size_t)n < sizeof buf && is_dir(buf))
                return buf;
        }
    }
    return "/usr/share/asya/db";
}

int gwconfig_load(struct gw_config *cfg, const char *exe_path, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    long v;
    int64_t ns;

    cfg->addr = envcfg_str("ASYA_GATEWAY_ADDR", NULL, "", NULL);
    if (envcfg_long("ASYA_GATEWAY_PORT", 8080, 0, 65535, &v, err, errlen))
        return -EINVAL;
    cfg->port = (int)v;
    cfg->amqp_url =
        envcfg_str("ASYA_RABBITMQ_URL", NULL, "amqp://guest:guest@localhost:5672/", NULL);
    if (strncmp(cfg->amqp_url, "amqp://", 7) != 0 && strncmp(cfg->amqp_url, "amqps://", 8) != 0) {
        char masked[512];
        urlmask_password(cfg->amqp_url, masked, sizeof masked);
        snprintf(err, errlen, "ASYA_RABBITMQ_URL=%s: expected amqp:// or amqps://", masked);
        return -EINVAL;
    }
    cfg->exchange = envcfg_str("ASYA_RABBITMQ_EXCHANGE", NULL, "asya", NULL);
    cfg->queue_prefix = envcfg_str("ASYA_QUEUE_PREFIX", NULL, "", NULL);
    if (envcfg_long("ASYA_RABBITMQ_POOL_SIZE", 20, 1, 1000, &cfg->amqp_pool_size, err, errlen))
        return -EINVAL;
    cfg->database_url = envcfg_str("ASYA_DATABASE_URL", NULL, "", NULL);
    if (*cfg->database_url && strncmp(cfg->database_url, "postgres://", 11) != 0 &&
        strncmp(cfg->database_url, "postgresql://", 13) != 0 && !strchr(cfg->database_url, '=')) {
        char masked[512];
        jobstore_mask_url(cfg->database_url, masked, sizeof masked);
        snprintf(err, errlen,
                 "ASYA_DATABASE_URL=%s: expected postgres://user:pass@host:port/db or "
                 "key=value pairs",
                 masked);
        return -EINVAL;
    }
    if (envcfg_long("ASYA_DATABASE_POOL_SIZE", 8, 1, 64, &cfg->db_pool_size, err, errlen))
        return -EINVAL;
    cfg->migrations_dir =
        envcfg_str("ASYA_GATEWAY_MIGRATIONS_DIR", NULL, default_migrations(exe_path), NULL);
    cfg->config_path = envcfg_str("ASYA_CONFIG_PATH", NULL, "", NULL);
    if (envcfg_long("ASYA_GATEWAY_MAX_BODY_BYTES", 1048576, 1024, 256L * 1024 * 1024, &v, err,
                    errlen))
        return -EINVAL;
    cfg->max_body = (size_t)v;
    if (envcfg_long("ASYA_GATEWAY_MAX_CONNECTIONS", 4096, 1, 1000000, &v, err, errlen))
        return -EINVAL;
    cfg->max_connections = (unsigned)v;
    if (envcfg_duration("ASYA_GATEWAY_IDLE_TIMEOUT", "30s", 1000000000LL, &ns, err, errlen))
        return -EINVAL;
    cfg->idle_timeout_s = (unsigned)(ns / 1000000000LL);
    if (envcfg_duration("ASYA_GATEWAY_SSE_KEEPALIVE", "15s", 10000000LL, &ns, err, errlen))
        return -EINVAL;
    cfg->sse_keepalive_s = (double)ns / NS_PER_S;
    if (envcfg_long("ASYA_GATEWAY_SSE_MAX_BACKLOG_BYTES", 1048576, 4096, 1L << 30, &v, err, errlen))
        return -EINVAL;
    cfg->sse_max_backlog = (size_t)v;
    if (envcfg_long("ASYA_GATEWAY_MAX_SESSIONS", 10000, 1, 10000000, &cfg->max_sessions, err,
                    errlen))
        return -EINVAL;
    if (envcfg_duration("ASYA_GATEWAY_HISTORY_RETENTION", "24h", 1000000000LL, &ns, err, errlen))
        return -EINVAL;
    cfg->history_keep_s = (double)ns / NS_PER_S;
    return 0;
}
