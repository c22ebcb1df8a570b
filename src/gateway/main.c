/*
 * asya-gateway: MCP tools that start jobs, jobs in PostgreSQL (or memory),
 * progress over SSE.  GATEWAY.md is the contract; the README has the
 * configuration table.
 */
#include "gateway.h"
#include "gwconfig.h"
#include "jobstore.h"
#include "routes.h"

#include "envcfg.h"
#include "log.h"
#include "urlmask.h"

#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void usage(FILE *f)
{
    fputs("usage: asya-gateway [--version] [--help]\n"
          "\n"
          "MCP tools that start jobs on an Asya pipeline, jobs stored in PostgreSQL (or\n"
          "memory), progress streamed over SSE.  Configured by the environment:\n"
          "\n"
          "  variable                            default\n"
          "  ASYA_GATEWAY_PORT                   8080\n"
          "  ASYA_GATEWAY_ADDR                   (all interfaces)\n"
          "  ASYA_RABBITMQ_URL                   amqp://guest:guest@localhost:5672/\n"
          "  ASYA_RABBITMQ_EXCHANGE              asya\n"
          "  ASYA_QUEUE_PREFIX                   (none)\n"
          "  ASYA_RABBITMQ_POOL_SIZE             20 (accepted; one connection is used)\n"
          "  ASYA_DATABASE_URL                   (empty: jobs in memory)\n"
          "  ASYA_DATABASE_POOL_SIZE             8\n"
          "  ASYA_GATEWAY_MIGRATIONS_DIR         db/ of the build, else /usr/share/asya/db\n"
          "  ASYA_CONFIG_PATH                    (empty: one built-in echo tool)\n"
          "  ASYA_GATEWAY_MAX_BODY_BYTES         1048576\n"
          "  ASYA_GATEWAY_MAX_CONNECTIONS        4096\n"
          "  ASYA_GATEWAY_IDLE_TIMEOUT           30s\n"
          "  ASYA_GATEWAY_SSE_KEEPALIVE          15s\n"
          "  ASYA_GATEWAY_SSE_MAX_BACKLOG_BYTES  1048576\n"
          "  ASYA_GATEWAY_MAX_SESSIONS           10000\n"
          "  ASYA_GATEWAY_HISTORY_RETENTION      24h\n"
          "  ASYA_LOG_LEVEL                      INFO\n"
          "  ASYA_LOG_FORMAT                     text\n"
          "\n"
          "Endpoints: POST /tools/call, GET /jobs/{id}[/stream|/active],\n"
          "POST /jobs/{id}/progress|heartbeat|final, /mcp, /health, /readyz, /metrics.\n"
          "Bad configuration exits 2 with one line naming the variable or file:line.\n",
          f);
}

struct app {
    struct gateway *g;
    ev_signal sigterm;
    ev_signal sigint;
    bool stopping;
};

static void stopped(void *arg)
{
    struct app *a = arg;
    ev_break(EV_DEFAULT, EVBREAK_ALL);
    (void)a;
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    struct app *a = w->data;
    if (a->stopping) {
        log_warn("second signal: stopping now");
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    a->stopping = true;
    log_info("signal %d: stopping (finishing replies, closing streams)", w->signum);
    gateway_shutdown(a->g, stopped, a);
}

/* Thousands of SSE streams need thousands of descriptors. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("asya-gateway %s\n", ASYA_BUILD_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        fprintf(stderr, "asya-gateway: unknown argument %s\n", argv[i]);
        usage(stderr);
        return 2;
    }
    char err[1024];
    enum log_level level = LOG_LVL_INFO;
    const char *lvl = envcfg_str("ASYA_LOG_LEVEL", NULL, "INFO", NULL);
    if (log_level_parse(lvl, &level) != 0) {
        fprintf(stderr, "asya-gateway: ASYA_LOG_LEVEL=%s: expected DEBUG, INFO, WARNING or ERROR\n",
                lvl);
        return 2;
    }
    const char *fmt = envcfg_str("ASYA_LOG_FORMAT", NULL, "text", NULL);
    if (strcmp(fmt, "text") != 0 && strcmp(fmt, "json") != 0) {
        fprintf(stderr, "asya-gateway: ASYA_LOG_FORMAT=%s: expected text or json\n", fmt);
        return 2;
    }
    log_setup("asya-gateway", level, strcmp(fmt, "json") == 0);

    struct gw_config cfg;
    if (gwconfig_load(&cfg, argv[0], err, sizeof err) != 0) {
        fprintf(stderr, "asya-gateway: %s\n", err);
        return 2;
    }
    struct routes *routes = NULL;
    if (routes_load(cfg.config_path, &routes, err, sizeof err) != 0) {
        fprintf(stderr, "asya-gateway: ASYA_CONFIG_PATH: %s\n", err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    struct ev_loop *loop = EV_DEFAULT;
    struct app a = {0};
    size_t ntools = routes->ntools;
    a.g = gateway_new(loop, &cfg, routes, err, sizeof err);
    if (!a.g) {
        fprintf(stderr, "asya-gateway: %s\n", err);
        return 2;
    }
    char amqp[512], db[512];
    urlmask_password(cfg.amqp_url, amqp, sizeof amqp);
    jobstore_mask_url(cfg.database_url, db, sizeof db); /* libpq's key=value form too */
    log_info("listening on %s:%d; %zu tool(s) from %s; store %s; broker %s exchange %s",
             *cfg.addr ? cfg.addr : "*", cfg.port, ntools,
             *cfg.config_path ? cfg.config_path : "(built-in example)",
             *cfg.database_url ? db : "memory", amqp, cfg.exchange);
    ev_signal_init(&a.sigterm, signal_cb, SIGTERM);
    a.sigterm.data = &a;
    ev_signal_start(loop, &a.sigterm);
    ev_signal_init(&a.sigint, signal_cb, SIGINT);
    a.sigint.data = &a;
    ev_signal_start(loop, &a.sigint);
    ev_run(loop, 0);
    gateway_free(a.g);
    ev_signal_stop(loop, &a.sigterm);
    ev_signal_stop(loop, &a.sigint);
    log_info("stopped");
    return 0;
}
