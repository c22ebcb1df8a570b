/* config.h - asya-sidecar configuration, read once from the environment. */
#ifndef ASYA_SIDECAR_CONFIG_H
#define ASYA_SIDECAR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sidecar_config {
    const char *actor_name;   /* this actor's name (borrowed from environ) */
    char queue_name[256];     /* queue consumed: ASYA_QUEUE_NAME, else prefix + actor name */
    const char *queue_prefix; /* ASYA_QUEUE_PREFIX, "" when unset */
    const char *amqp_url;     /* ASYA_RABBITMQ_URL (borrowed; holds the password: never log) */
    const char *exchange;     /* ASYA_RABBITMQ_EXCHANGE */
    long prefetch;            /* starting prefetch: max(ASYA_RABBITMQ_PREFETCH, concurrency) */
    bool prefetch_auto;       /* ASYA_RABBITMQ_PREFETCH unset: adapted at run time */
    long prefetch_max;        /* upper bound of the adapted prefetch */
    const char *socket_path;  /* ASYA_SOCKET_PATH */
    int64_t runtime_timeout_ns;
    const char *happy_end;         /* ASYA_STEP_HAPPY_END (actor name) */
    const char *error_end;         /* ASYA_STEP_ERROR_END (actor name) */
    bool is_end_actor;             /* ASYA_IS_END_ACTOR / ASYA_IS_TERMINAL */
    long concurrency;              /* ASYA_CONCURRENCY */
    long retry_max_attempts;       /* ASYA_QUEUE_RETRY_MAX_ATTEMPTS: broker reconnects */
    int64_t retry_backoff_ns;      /* ASYA_QUEUE_RETRY_BACKOFF: first reconnect delay */
    int64_t shutdown_timeout_ns;   /* ASYA_SHUTDOWN_TIMEOUT: SIGTERM grace period */
    int64_t consumer_timeout_ns;   /* ASYA_BROKER_CONSUMER_TIMEOUT: the broker's consumer_timeout */
    long max_message_bytes;        /* ASYA_MAX_MESSAGE_BYTES */
    long max_inflight_bytes;       /* ASYA_MAX_INFLIGHT_BYTES: bodies held at once (one always) */
    long max_delivery_attempts;    /* ASYA_MAX_DELIVERY_ATTEMPTS: then poison_message */
    bool quorum;                   /* ASYA_QUEUE_TYPE=quorum */
    bool metrics_enabled;          /* ASYA_METRICS_ENABLED */
    const char *metrics_addr;      /* ASYA_METRICS_ADDR, e.g. ":8080" */
    const char *metrics_namespace; /* ASYA_METRICS_NAMESPACE */
    const char *cacert;            /* ASYA_RABBITMQ_CACERT for amqps:// (optional) */
    bool tls_verify;               /* ASYA_RABBITMQ_TLS_VERIFY */
    const char *gateway_url;       /* ASYA_GATEWAY_URL (http:// or https://), NULL when unset */
    int log_level;                 /* enum log_level */
    bool log_json;                 /* ASYA_LOG_FORMAT=json */
};

/* ASYA_MAX_INFLIGHT_BYTES's default: 32 MiB, or a quarter of the container's
 * memory limit (cgroup v2 memory.max, else v1 limit_in_bytes) when that is
 * smaller, at least 1 MiB. */
#define SIDECAR_INFLIGHT_DEFAULT ((long)32 << 20)
long sidecar_inflight_default(void);

/* Fill cfg from the environment.  Returns 0, or -EINVAL with one line
 * naming the bad variable in err. */
int sidecar_config_load(struct sidecar_config *cfg, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif /* ASYA_SIDECAR_CONFIG_H */
