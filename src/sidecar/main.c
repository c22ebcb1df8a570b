/* asya-sidecar: consumes an actor's queue and relays envelopes to its runtime. */
#include "config.h"
#include "duration.h"
#include "log.h"
#include "sidecar.h"
#include "urlmask.h"

#include <asya/asya.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static void usage(void)
{
    fputs("usage: asya-sidecar [--version | --help]\n"
          "\n"
          "Consumes the actor's RabbitMQ queue, sends each envelope to the runtime on a\n"
          "unix socket and routes the results. Configured by environment variables:\n"
          "  ASYA_ACTOR_NAME / ASYA_QUEUE_NAME   queue to consume (required)\n"
          "  ASYA_RABBITMQ_URL                   amqp://guest:guest@localhost:5672/\n"
          "  ASYA_RABBITMQ_EXCHANGE              asya\n"
          "  ASYA_RABBITMQ_PREFETCH              automatic (see README)\n"
          "  ASYA_SOCKET_PATH                    /tmp/sockets/app.sock\n"
          "  ASYA_RUNTIME_TIMEOUT                5m\n"
          "  ASYA_STEP_HAPPY_END/ERROR_END       happy-end / error-end\n"
          "  ASYA_IS_END_ACTOR                   false\n"
          "  ASYA_CONCURRENCY                    1\n"
          "  ASYA_QUEUE_RETRY_MAX_ATTEMPTS       10\n"
          "  ASYA_QUEUE_RETRY_BACKOFF            1s\n"
          "  ASYA_SHUTDOWN_TIMEOUT               30s\n"
          "  ASYA_MAX_MESSAGE_BYTES              67108864\n"
          "  ASYA_MAX_DELIVERY_ATTEMPTS          5\n"
          "  ASYA_QUEUE_TYPE                     classic | quorum\n"
          "  ASYA_QUEUE_PREFIX                   (none)\n"
          "  ASYA_METRICS_ENABLED/ADDR           true / :8080\n"
          "  ASYA_GATEWAY_URL                    (none): progress and final statuses\n"
          "  ASYA_LOG_LEVEL, ASYA_LOG_FORMAT     INFO, text | json\n"
          "See the README for the full table and failure semantics.\n",
          stdout);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        if (strcmp(argv[1], "--version") == 0) {
            printf("asya-sidecar %s (handler ABI %d)\n", ASYA_BUILD_VERSION, ASYA_ABI_MAJOR);
            return 0;
        }
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
            usage();
            return 0;
        }
        fprintf(stderr, "asya-sidecar: unknown argument %s (try --help)\n", argv[1]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sidecar_config cfg;
    char err[512];
    if (sidecar_config_load(&cfg, err, sizeof err)) {
        fprintf(stderr, "asya-sidecar: configuration error: %s\n", err);
        return 2;
    }
    log_setup("asya-sidecar", (enum log_level)cfg.log_level, cfg.log_json);
    log_set_actor(cfg.actor_name);
    char masked[512];
    urlmask_password(cfg.amqp_url, masked, sizeof masked);
    log_info("starting: broker %s, exchange %s, queue %s, runtime %s", masked, cfg.exchange,
             cfg.queue_name, cfg.socket_path);
    if (cfg.consumer_timeout_ns > 0 && cfg.runtime_timeout_ns >= cfg.consumer_timeout_ns) {
        char rt[32], ct[32];
        duration_format(cfg.runtime_timeout_ns, rt, sizeof rt);
        duration_format(cfg.consumer_timeout_ns, ct, sizeof ct);
        log_warn("ASYA_RUNTIME_TIMEOUT=%s is not below the broker's consumer_timeout (%s, "
                 "ASYA_BROKER_CONSUMER_TIMEOUT): the broker would close the channel under a "
                 "long-running message and redeliver it; raise consumer_timeout in "
                 "rabbitmq.conf and set ASYA_BROKER_CONSUMER_TIMEOUT to match",
                 rt, ct);
    }
    if (cfg.gateway_url) {
        urlmask_password(cfg.gateway_url, masked, sizeof masked);
        log_info("reporting %s to the gateway at %s",
                 cfg.is_end_actor ? "final statuses" : "progress", masked);
    }
    struct sidecar *sc = sidecar_new(&cfg, err, sizeof err);
    if (!sc) {
        fprintf(stderr, "asya-sidecar: %s\n", err);
        return 1;
    }
    int rc = sidecar_run(sc);
    sidecar_free(sc);
    return rc;
}
