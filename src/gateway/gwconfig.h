/*
 * gwconfig.h - the gateway's configuration, read once from the environment
 * (GATEWAY.md "Gateway configuration" and the README's table).  Strings are
 * borrowed from environ or defaults and live as long as the process.
 */
#ifndef ASYA_GW_GWCONFIG_H
#define ASYA_GW_GWCONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_config {
    const char *addr; /* ASYA_GATEWAY_ADDR: "" = all interfaces */
    int port;         /* ASYA_GATEWAY_PORT */
    const char *amqp_url;
    const char *exchange;
    const char *queue_prefix; /* ASYA_QUEUE_PREFIX, prepended to routing keys */
    long amqp_pool_size;      /* ASYA_RABBITMQ_POOL_SIZE: accepted, unused (one connection) */
    const char *database_url; /* "" = the in-memory store */
    long db_pool_size;        /* ASYA_DATABASE_POOL_SIZE */
    const char *migrations_dir;
    const char *config_path;  /* ASYA_CONFIG_PATH: "" = the built-in example */
    size_t max_body;          /* ASYA_GATEWAY_MAX_BODY_BYTES */
    unsigned max_connections; /* ASYA_GATEWAY_MAX_CONNECTIONS */
    unsigned idle_timeout_s;  /* ASYA_GATEWAY_IDLE_TIMEOUT */
    double sse_keepalive_s;   /* ASYA_GATEWAY_SSE_KEEPALIVE */
    size_t sse_max_backlog;   /* ASYA_GATEWAY_SSE_MAX_BACKLOG_BYTES: a slower reader is cut off */
    long max_sessions;        /* ASYA_GATEWAY_MAX_SESSIONS: MCP sessions kept */
    double history_keep_s;    /* ASYA_GATEWAY_HISTORY_RETENTION: history of terminal jobs kept */
};

/* Read the environment; on a bad value -EINVAL with one line naming the
 * variable in err.  exe_path (argv[0] resolved, may be NULL) locates db/. */
int gwconfig_load(struct gw_config *cfg, const char *exe_path, char *err, size_t errlen);

#endif /* ASYA_GW_GWCONFIG_H */
