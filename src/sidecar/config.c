#include "config.h"

#include "routing.h"

#include "duration.h"
#include "envcfg.h"
#include "frame.h"
#include "log.h"
#include "urlmask.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_URL "amqp://guest:guest@localhost:5672/"

/* The memory limit of this process's cgroup in bytes, or 0 when there is none. */
static long cgroup_memory_limit(void)
{
    static const char *const files[] = {"/sys/fs/cgroup/memory.max",
                                        "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        FILE *f = fopen(files[i], "r");
        if (!f)
            continue;
        char line[64] = "";
        bool got = fgets(line, sizeof line, f) != NULL;
        fclose(f);
        if (!got || strncmp(line, "max", 3) == 0)
            return 0;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(line, &end, 10);
        /* cgroup v1 says "no limit" with a huge number. */
        if (errno || end == line || v == 0 || v >= (1ULL << 62))
            return 0;
        return v > (unsigned long long)LONG_MAX ? 0 : (long)v;
    }
    return 0;
}

long sidecar_inflight_default(void)
{
    long limit = cgroup_memory_limit();
    long d = SIDECAR_INFLIGHT_DEFAULT;
    if (limit > 0 && limit / 4 < d)
        d = limit / 4;
    return d < (1L << 20) ? (1L << 20) : d;
}

int sidecar_config_load(struct sidecar_config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    int rc;

    cfg->queue_prefix = envcfg_str("ASYA_QUEUE_PREFIX", NULL, "", NULL);
    const char *actor = envcfg_str("ASYA_ACTOR_NAME", NULL, NULL, NULL);
    const char *queue = envcfg_str("ASYA_QUEUE_NAME", NULL, NULL, NULL);
    if (!actor && !queue) {
        snprintf(err, errlen, "ASYA_ACTOR_NAME (or ASYA_QUEUE_NAME) is required");
        return -EINVAL;
    }
    /* AMQP names are at most 255 bytes: never truncate into another queue's name. */
    int qlen;
    if (queue) {
        qlen = snprintf(cfg->queue_name, sizeof cfg->queue_name, "%s", queue);
        size_t plen = strlen(cfg->queue_prefix);
        /* The actor name is the queue name without the prefix. */
        if (!actor)
            actor = strncmp(queue, cfg->queue_prefix, plen) == 0 ? queue + plen : queue;
    } else {
        qlen = snprintf(cfg->queue_name, sizeof cfg->queue_name, "%s%s", cfg->queue_prefix, actor);
    }
    if (qlen < 0 || (size_t)qlen >= sizeof cfg->queue_name) {
        snprintf(err, errlen, "%s: queue name longer than %zu bytes",
                 queue ? "ASYA_QUEUE_NAME" : "ASYA_QUEUE_PREFIX + ASYA_ACTOR_NAME",
                 sizeof cfg->queue_name - 1);
        return -EINVAL;
    }
    cfg->actor_name = actor;

    cfg->amqp_url = envcfg_str("ASYA_RABBITMQ_URL", NULL, DEFAULT_URL, NULL);
    if (strncmp(cfg->amqp_url, "amqp://", 7) != 0 && strncmp(cfg->amqp_url, "amqps://", 8) != 0) {
        char masked[512];
        urlmask_password(cfg->amqp_url, masked, sizeof masked);
        snprintf(err, errlen, "ASYA_RABBITMQ_URL=%s: expected amqp:// or amqps://", masked);
        return -EINVAL;
    }
    cfg->exchange = envcfg_str("ASYA_RABBITMQ_EXCHANGE", NULL, "asya", NULL);
    cfg->socket_path = envcfg_str("ASYA_SOCKET_PATH", NULL, "/tmp/sockets/app.sock", NULL);
    cfg->happy_end = envcfg_str("ASYA_STEP_HAPPY_END", NULL, "happy-end", NULL);
    cfg->error_end = envcfg_str("ASYA_STEP_ERROR_END", NULL, "error-end", NULL);
    /* Every failure report goes to error-end: a name the broker refuses would
     * leave nowhere to send one. */
    const char *ends[2][2] = {{"ASYA_STEP_HAPPY_END", cfg->happy_end},
                              {"ASYA_STEP_ERROR_END", cfg->error_end}};
    for (int i = 0; i < 2; i++) {
        char q[ROUTING_QUEUE_MAX + 1], why[256];
        if (routing_queue_name(cfg->queue_prefix, ends[i][1], q, sizeof q, why, sizeof why)) {
            snprintf(err, errlen, "%s=%s: %s", ends[i][0], ends[i][1], why);
            return -EINVAL;
        }
    }
    cfg->metrics_addr = envcfg_str("ASYA_METRICS_ADDR", NULL, ":8080", NULL);
    cfg->metrics_namespace = envcfg_str("ASYA_METRICS_NAMESPACE", NULL, "asya_actor", NULL);
    cfg->cacert = envcfg_str("ASYA_RABBITMQ_CACERT", NULL, NULL, NULL);
    /* Progress reports and, for end actors, final statuses (GATEWAY.md). */
    cfg->gateway_url = envcfg_str("ASYA_GATEWAY_URL", NULL, NULL, NULL);
    if (cfg->gateway_url && strncmp(cfg->gateway_url, "http://", 7) != 0 &&
        strncmp(cfg->gateway_url, "https://", 8) != 0) {
        char masked[512];
        urlmask_password(cfg->gateway_url, masked, sizeof masked);
        snprintf(err, errlen, "ASYA_GATEWAY_URL=%s: expected http:// or https://", masked);
        return -EINVAL;
    }

    long prefetch;
    if ((rc = envcfg_long("ASYA_CONCURRENCY", 1, 1, 4096, &cfg->concurrency, err, errlen)) ||
        (rc = envcfg_long("ASYA_RABBITMQ_PREFETCH", 1, 1, 65535, &prefetch, err, errlen)) ||
        (rc = envcfg_long("ASYA_QUEUE_RETRY_MAX_ATTEMPTS", 10, 1, 1000000, &cfg->retry_max_attempts,
                          err, errlen)) ||
        (rc = envcfg_long("ASYA_MAX_MESSAGE_BYTES", (long)FRAME_DEFAULT_MAX, 1024, 0x7fffffffL,
                          &cfg->max_message_bytes, err, errlen)) ||
        (rc = envcfg_long("ASYA_MAX_DELIVERY_ATTEMPTS", 5, 1, 1000000, &cfg->max_delivery_attempts,
                          err, errlen)) ||
        (rc = envcfg_long("ASYA_MAX_INFLIGHT_BYTES", sidecar_inflight_default(), 65536, LONG_MAX,
                          &cfg->max_inflight_bytes, err, errlen)))
        return rc;
    /* Prefetch bounds the messages this sidecar holds: running, waiting for a
     * runtime slot, and published but waiting for the broker's confirms.
     * Unset, the sidecar adapts it to keep confirms pipelined for fast
     * handlers without hoarding messages behind slow ones (see README). */
    cfg->prefetch_auto = envcfg_str("ASYA_RABBITMQ_PREFETCH", NULL, NULL, NULL) == NULL;
    if (cfg->prefetch_auto)
        prefetch = cfg->concurrency * 2 + 2;
    cfg->prefetch = prefetch > cfg->concurrency ? prefetch : cfg->concurrency;
    cfg->prefetch_max = cfg->prefetch_auto
                            ? (cfg->concurrency * 4 > 256 ? cfg->concurrency * 4 : 256)
                            : cfg->prefetch;

    if ((rc = envcfg_duration("ASYA_RUNTIME_TIMEOUT", "5m", DURATION_NS_PER_MS,
                              &cfg->runtime_timeout_ns, err, errlen)) ||
        (rc = envcfg_duration("ASYA_QUEUE_RETRY_BACKOFF", "1s", DURATION_NS_PER_MS,
                              &cfg->retry_backoff_ns, err, errlen)) ||
        (rc = envcfg_duration("ASYA_SHUTDOWN_TIMEOUT", "30s", 0, &cfg->shutdown_timeout_ns, err,
                              errlen)) ||
        (rc = envcfg_duration("ASYA_BROKER_CONSUMER_TIMEOUT", "30m", 0, &cfg->consumer_timeout_ns,
                              err, errlen)))
        return rc;

    if ((rc = envcfg_bool("ASYA_IS_END_ACTOR", "ASYA_IS_TERMINAL", false, &cfg->is_end_actor, err,
                          errlen)) ||
        (rc =
             envcfg_bool("ASYA_METRICS_ENABLED", NULL, true, &cfg->metrics_enabled, err, errlen)) ||
        (rc = envcfg_bool("ASYA_RABBITMQ_TLS_VERIFY", NULL, true, &cfg->tls_verify, err, errlen)))
        return rc;

    const char *qtype = envcfg_str("ASYA_QUEUE_TYPE", NULL, "classic", NULL);
    if (strcmp(qtype, "classic") == 0) {
        cfg->quorum = false;
    } else if (strcmp(qtype, "quorum") == 0) {
        cfg->quorum = true;
    } else {
        snprintf(err, errlen, "ASYA_QUEUE_TYPE=%s: expected classic or quorum", qtype);
        return -EINVAL;
    }

    enum log_level level = LOG_LVL_INFO;
    const char *lvl = envcfg_str("ASYA_LOG_LEVEL", NULL, "INFO", NULL);
    if (log_level_parse(lvl, &level) != 0) {
        snprintf(err, errlen, "ASYA_LOG_LEVEL=%s: expected DEBUG, INFO, WARNING or ERROR", lvl);
        return -EINVAL;
    }
    cfg->log_level = (int)level;
    const char *fmt = envcfg_str("ASYA_LOG_FORMAT", NULL, "text", NULL);
    if (strcmp(fmt, "text") != 0 && strcmp(fmt, "json") != 0) {
        snprintf(err, errlen, "ASYA_LOG_FORMAT=%s: expected text or json", fmt);
        return -EINVAL;
    }
    cfg->log_json = strcmp(fmt, "json") == 0;
    return 0;
}
