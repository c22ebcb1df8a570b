/*
 * sidecar.c - the actor loop: wires the broker connection, the runtime
 * client and the message flow (flow.c) together on one libev loop, and owns
 * reconnecting, runtime availability, readiness and shutdown.
 */
#include "sidecar.h"

#include "flow.h"
#include "log.h"
#include "prefetch.h"
#include "publish.h"
#include "reports.h"
#include "sidecar_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEARTBEAT_S         30
#define RUNTIME_RETRY_FIRST 0.1 /* seconds before probing an unreachable runtime again */
#define RUNTIME_RETRY_MAX   5.0
#define RECONNECT_MAX_DELAY 30.0
#define RUNTIME_PROBE_S     2.0
#define PREFETCH_ADAPT_S    0.25 /* how often the automatic prefetch is reconsidered */
#define RUNTIME_STATS_S     5.0  /* how often asya-runtime's worker stats are fetched */
#define GRACE_CONFIRM_S     5.0  /* after the grace period: wait this long for confirms */

/* ---- broker failure and runtime availability ---------------------------------------- */

void sidecar_broker_fail(struct sidecar *sc, const char *why)
{
    if (sc->broker_failed)
        return;
    sc->broker_failed = true;
    snprintf(sc->broker_error, sizeof sc->broker_error, "%s", why ? why : "connection lost");
    ev_timer_set(&sc->lost, 0., 0.);
    ev_timer_start(sc->loop, &sc->lost);
}

void sidecar_runtime_down(struct sidecar *sc, const char *why)
{
    char err[256];
    if (!sc->runtime_down) {
        sc->runtime_down = true;
        sc->stats.runtime_pauses++;
        log_warn("runtime unreachable at %s (%s): pausing consumption until it answers",
                 sc->cfg->socket_path, why);
        if (broker_consuming(sc->broker) && broker_cancel(sc->broker, err, sizeof err))
            sidecar_broker_fail(sc, err);
        sc->runtime_backoff = RUNTIME_RETRY_FIRST;
        ev_timer_set(&sc->runtime_retry, sc->runtime_backoff, 0.);
        ev_timer_start(sc->loop, &sc->runtime_retry);
    }
    /* Messages waiting for a slot go back too. */
    flow_requeue_waiting(sc, REQUEUE_RUNTIME_UNAVAILABLE);
    sidecar_update_ready(sc);
}

static void runtime_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    int err = rtclient_probe(sc->cfg->socket_path);
    if (err) {
        sc->runtime_backoff *= 2;
        if (sc->runtime_backoff > RUNTIME_RETRY_MAX)
            sc->runtime_backoff = RUNTIME_RETRY_MAX;
        log_debug("runtime still unreachable: %s", strerror(-err));
        ev_timer_set(&sc->runtime_retry, sc->runtime_backoff, 0.);
        ev_timer_start(loop, &sc->runtime_retry);
        return;
    }
    sc->runtime_down = false;
    log_info("runtime at %s answers again: resuming consumption", sc->cfg->socket_path);
    if (!sc->shutting_down && !sc->bytes_paused && broker_connected(sc->broker)) {
        char text[256];
        if (broker_consume(sc->broker, text, sizeof text))
            sidecar_broker_fail(sc, text);
    }
    sidecar_update_ready(sc);
}

/* While idle, check the runtime now and then so readiness reflects a runtime
 * that died between messages. */
static void runtime_probe_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    if (sc->runtime_down || sc->shutting_down || sc->pool.active > 0)
        return;
    int err = rtclient_probe(sc->cfg->socket_path);
    if (err && broker_connected(sc->broker))
        sidecar_runtime_down(sc, strerror(-err));
}

/* ---- broker connection ----------------------------------------------------------- */

static void broker_poll_now(struct sidecar *sc)
{
    char err[256];
    if (!sc->broker_failed && broker_connected(sc->broker) &&
        broker_poll(sc->broker, err, sizeof err))
        sidecar_broker_fail(sc, err);
}

static void broker_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)w;
    (void)revents;
    broker_poll_now(ev_userdata(loop));
}

/* End of every loop iteration: send batched acks, then read frames that
 * rabbitmq-c buffered during a synchronous call (no socket event will come
 * for those). */
static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    if (!sc->broker_failed) {
        publish_flush_acks(sc);
        if (broker_pending(sc->broker)) {
            broker_poll_now(sc);
            publish_flush_acks(sc);
        }
    }
    if (sc->shutting_down && sc->pool.active == 0 && sc->pool.nacks == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    broker_poll_now(ev_userdata(loop));
}

static void schedule_reconnect(struct sidecar *sc)
{
    double delay = (double)sc->cfg->retry_backoff_ns / 1e9;
    for (long i = 1; i < sc->reconnect_attempt && delay < RECONNECT_MAX_DELAY; i++)
        delay *= 2;
    if (delay > RECONNECT_MAX_DELAY)
        delay = RECONNECT_MAX_DELAY;
    if (sc->reconnect_attempt == 0)
        delay = 0;
    ev_timer_set(&sc->reconnect, delay, 0.);
    ev_timer_start(sc->loop, &sc->reconnect);
}

static void reconnect_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    char err[256];
    if (broker_connect(sc->broker, err, sizeof err)) {
        sc->reconnect_attempt++;
        log_error("broker connection failed (attempt %ld of %ld): %s", sc->reconnect_attempt,
                  sc->cfg->retry_max_attempts, err);
        if (sc->reconnect_attempt >= sc->cfg->retry_max_attempts) {
            log_error("giving up on the broker after %ld attempts", sc->reconnect_attempt);
            sc->exit_code = 1;
            ev_break(loop, EVBREAK_ALL);
            return;
        }
        schedule_reconnect(sc);
        return;
    }
    if (sc->reconnect_attempt > 0)
        sc->stats.broker_reconnects++;
    sc->reconnect_attempt = 0;
    sc->broker_failed = false;
    log_info("connected to the broker; queue %s, prefetch %u%s, concurrency %ld",
             sc->cfg->queue_name, sc->prefetch, sc->cfg->prefetch_auto ? " (automatic)" : "",
             sc->cfg->concurrency);
    ev_io_set(&sc->broker_io, broker_fd(sc->broker), EV_READ);
    ev_io_start(loop, &sc->broker_io);
    if (sc->shutting_down) {
        sidecar_check_drained(sc);
        return;
    }
    /* Probe the runtime before consuming, so nothing is taken that cannot run. */
    int perr = rtclient_probe(sc->cfg->socket_path);
    if (perr) {
        sidecar_runtime_down(sc, strerror(-perr));
        return;
    }
    sc->bytes_paused = false; /* what it held is being redelivered */
    if (!sc->runtime_down && broker_consume(sc->broker, err, sizeof err))
        sidecar_broker_fail(sc, err);
    sidecar_update_ready(sc);
}

/* Drop every message and runtime call in progress (the broker redelivers
 * what was not acked). */
static void drop_all(struct sidecar *sc)
{
    rtclient_abort_all(sc->rt); /* the runtime replaces the busy workers */
    reports_abort_all(sc);
    msgpool_release_all(&sc->pool);
    confirm_reset(&sc->confirms);
    sc->stats.active = 0;
    sc->stats.inflight_bytes = 0;
}

/* Tear down after a lost connection, then reconnect with backoff. */
static void lost_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    log_error("broker connection lost: %s; unacked messages will be redelivered", sc->broker_error);
    ev_io_stop(loop, &sc->broker_io);
    drop_all(sc);
    broker_disconnect(sc->broker);
    sidecar_update_ready(sc);
    if (sc->shutting_down) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    sc->reconnect_attempt = 1;
    schedule_reconnect(sc);
}

/* ---- readiness and shutdown --------------------------------------------------------- */

void sidecar_update_ready(struct sidecar *sc)
{
    const char *why = NULL;
    char blocked[sizeof sc->stats.not_ready];
    if (sc->shutting_down) {
        why = "shutting down";
    } else if (!broker_connected(sc->broker)) {
        why = "not connected to the broker";
    } else if (broker_blocked(sc->broker)) {
        snprintf(blocked, sizeof blocked, "the broker blocked publishing: %s", sc->blocked_reason);
        why = blocked;
    } else if (sc->runtime_down) {
        why = "runtime unreachable";
    } else if (!broker_consuming(sc->broker) && !sc->bytes_paused) {
        why = "not consuming"; /* a pause for bytes is back-pressure, not unreadiness */
    }
    sc->stats.ready = why == NULL;
    snprintf(sc->stats.not_ready, sizeof sc->stats.not_ready, "%s", why ? why : "");
}

void sidecar_bytes_freed(struct sidecar *sc)
{
    char err[256];
    if (!sc->bytes_paused || sc->pool.bytes > (size_t)sc->cfg->max_inflight_bytes / 2)
        return;
    sc->bytes_paused = false;
    log_debug("half of ASYA_MAX_INFLIGHT_BYTES is free: resuming consumption");
    if (!sc->shutting_down && !sc->runtime_down && broker_connected(sc->broker) &&
        !broker_consuming(sc->broker) && broker_consume(sc->broker, err, sizeof err))
        sidecar_broker_fail(sc, err);
}

void sidecar_check_drained(struct sidecar *sc)
{
    if (sc->shutting_down && sc->pool.active == 0)
        log_info("drained; exiting");
    /* prepare_cb breaks the loop once the last acks are out. */
}

static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    if (sc->grace_over) {
        log_warn("%u message(s) still wait for confirms of what they produced; exiting (the "
                 "broker redelivers them)",
                 sc->pool.active);
        drop_all(sc);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    sc->grace_over = true;
    log_warn("shutdown grace period over with %u message(s) in flight; requeueing those not "
             "yet published",
             sc->pool.active);
    if (publish_grace_over(sc) || !broker_connected(sc->broker)) {
        drop_all(sc);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    ev_timer_stop(loop, &sc->grace);
    ev_timer_set(&sc->grace, GRACE_CONFIRM_S, 0.);
    ev_timer_start(loop, &sc->grace);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)revents;
    if (sc->shutting_down) {
        log_warn("second signal: exiting now");
        sc->grace_over = false;
        grace_cb(loop, NULL, 0);
        return;
    }
    sc->shutting_down = true;
    log_info("received %s: draining %u in-flight message(s)",
             w->signum == SIGTERM ? "SIGTERM" : "SIGINT", sc->pool.active);
    char err[256];
    if (broker_consuming(sc->broker) && broker_cancel(sc->broker, err, sizeof err))
        log_warn("cancel consumer: %s", err);
    /* Messages that have not started go straight back to the queue, and so
     * do those waiting to go back after a final status the gateway missed. */
    flow_requeue_waiting(sc, REQUEUE_SHUTDOWN);
    reports_shutdown(sc);
    ev_timer_stop(loop, &sc->reconnect);
    ev_timer_stop(loop, &sc->runtime_retry);
    sidecar_update_ready(sc);
    if (!broker_connected(sc->broker)) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    ev_timer_set(&sc->grace, (double)sc->cfg->shutdown_timeout_ns / 1e9, 0.);
    ev_timer_start(loop, &sc->grace);
    sidecar_check_drained(sc);
}

/* ---- automatic prefetch --------------------------------------------------------------- */

void sidecar_prefetch_adapt(struct sidecar *sc)
{
    if (!broker_connected(sc->broker))
        return;
    const struct sidecar_config *cfg = sc->cfg;
    if (!sc->prefetch_want)
        sc->prefetch_want = sc->prefetch;
    if (cfg->prefetch_auto)
        sc->prefetch_want =
            prefetch_choose(sc->ewma_exec, sc->prefetch_want, cfg->concurrency, cfg->prefetch_max);
    unsigned n = prefetch_fit_bytes(sc->prefetch_want, cfg->max_inflight_bytes, sc->ewma_len);
    /* After a delivery was sent back for its bytes: no more than is held now,
     * until half the budget is free again (else the broker sends it straight back). */
    if (sc->bytes_capped && sc->pool.bytes > (size_t)cfg->max_inflight_bytes / 2) {
        unsigned held = sc->pool.active ? sc->pool.active : 1;
        if (held < n)
            n = held;
    } else {
        sc->bytes_capped = false;
    }
    if (n == sc->prefetch)
        return;
    char err[256];
    log_info("prefetch %u -> %u (handler %.2f ms, messages %.0f bytes on average)", sc->prefetch, n,
             sc->ewma_exec * 1e3, sc->ewma_len);
    sc->prefetch = n;
    if (broker_set_prefetch(sc->broker, n, err, sizeof err))
        sidecar_broker_fail(sc, err);
}

static void prefetch_adapt_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    sidecar_prefetch_adapt(ev_userdata(loop));
}

/* ---- health ------------------------------------------------------------------------ */

static char *http_metrics(void *ctx, size_t *len)
{
    struct sidecar *sc = ctx;
    return metrics_render(&sc->stats, len);
}

static bool http_ready(void *ctx, const char **reason)
{
    struct sidecar *sc = ctx;
    sidecar_update_ready(sc);
    *reason = sc->stats.not_ready;
    return sc->stats.ready;
}

/* ---- lifecycle -------------------------------------------------------------------- */

static void init_watchers(struct sidecar *sc)
{
    ev_io_init(&sc->broker_io, broker_io_cb, -1, EV_READ);
    ev_prepare_init(&sc->prepare, prepare_cb);
    ev_timer_init(&sc->heartbeat, heartbeat_cb, HEARTBEAT_S / 3.0, HEARTBEAT_S / 3.0);
    ev_timer_init(&sc->reconnect, reconnect_cb, 0., 0.);
    ev_timer_init(&sc->lost, lost_cb, 0., 0.);
    ev_timer_init(&sc->runtime_retry, runtime_retry_cb, RUNTIME_RETRY_FIRST, 0.);
    ev_timer_init(&sc->runtime_probe, runtime_probe_cb, RUNTIME_PROBE_S, RUNTIME_PROBE_S);
    ev_timer_init(&sc->grace, grace_cb, 1., 0.);
    ev_timer_init(&sc->backlog_retry, flow_backlog_retry_cb, 0.01, 0.);
    ev_timer_init(&sc->unpark, publish_unpark_cb, 0.005, 0.);
    /* The first look comes early: a fast handler should not start narrow for long. */
    ev_timer_init(&sc->prefetch_adapt, prefetch_adapt_cb, 0.05, PREFETCH_ADAPT_S);
    ev_signal_init(&sc->sigterm, signal_cb, SIGTERM);
    ev_signal_init(&sc->sigint, signal_cb, SIGINT);
}

struct sidecar *sidecar_new(const struct sidecar_config *cfg, char *err, size_t errlen)
{
    struct sidecar *sc = calloc(1, sizeof *sc);
    if (!sc) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sc->cfg = cfg;
    sc->loop = ev_default_loop(EVFLAG_AUTO);
    if (!sc->loop) {
        snprintf(err, errlen, "cannot create the event loop");
        free(sc);
        return NULL;
    }
    ev_set_userdata(sc->loop, sc);
    confirm_init(&sc->confirms);
    metrics_init(&sc->stats, cfg->metrics_namespace, cfg->queue_name);
    sc->names.actor = cfg->actor_name;
    sc->names.happy_end = cfg->happy_end;
    sc->names.error_end = cfg->error_end;
    sc->prefetch = (unsigned)cfg->prefetch;
    const struct rtclient_options ro = {
        .socket_path = cfg->socket_path,
        .slots = (unsigned)cfg->concurrency,
        .max_answer = (size_t)cfg->max_message_bytes,
        .timeout_s = (double)cfg->runtime_timeout_ns / 1e9,
    };
    struct broker_options opt = {
        .url = cfg->amqp_url,
        .exchange = cfg->exchange,
        .queue = cfg->queue_name,
        .prefetch = (unsigned)cfg->prefetch,
        .quorum = cfg->quorum,
        .cacert = cfg->cacert,
        .tls_verify = cfg->tls_verify,
        .heartbeat_s = HEARTBEAT_S,
    };
    sc->rt = rtclient_new(sc->loop, &ro, &flow_runtime_events, sc);
    sc->broker = broker_new(&opt, &flow_broker_events, sc);
    sc->rtstats = rtstats_new(sc->loop, cfg->socket_path, RUNTIME_STATS_S, &sc->stats);
    /* Twice the largest prefetch: when the prefetch changes, the consumer
     * is replaced and the old one's deliveries are still in flight. */
    if (!sc->rt || !sc->broker || !sc->rtstats ||
        msgpool_init(&sc->pool, (unsigned)cfg->prefetch_max * 2) != 0) {
        snprintf(err, errlen, "out of memory");
        sidecar_free(sc);
        return NULL;
    }
    if (reports_init(sc, err, errlen)) {
        sidecar_free(sc);
        return NULL;
    }
    init_watchers(sc);
    sidecar_update_ready(sc);
    if (cfg->metrics_enabled) {
        struct httpd_handlers h = {.metrics = http_metrics, .ready = http_ready};
        sc->httpd = httpd_start(sc->loop, cfg->metrics_addr, &h, sc, err, errlen);
        if (!sc->httpd) {
            sidecar_free(sc);
            return NULL;
        }
    }
    return sc;
}

int sidecar_run(struct sidecar *sc)
{
    ev_prepare_start(sc->loop, &sc->prepare);
    ev_timer_start(sc->loop, &sc->heartbeat);
    ev_timer_start(sc->loop, &sc->runtime_probe);
    /* Always: a configured prefetch is still held within ASYA_MAX_INFLIGHT_BYTES. */
    ev_timer_start(sc->loop, &sc->prefetch_adapt);
    if (sc->cfg->metrics_enabled)
        rtstats_start(sc->rtstats);
    ev_signal_start(sc->loop, &sc->sigterm);
    ev_signal_start(sc->loop, &sc->sigint);
    schedule_reconnect(sc);
    ev_run(sc->loop, 0);
    publish_flush_acks(sc);
    broker_disconnect(sc->broker);
    return sc->exit_code;
}

void sidecar_free(struct sidecar *sc)
{
    if (!sc)
        return;
    reports_free(sc);
    rtclient_free(sc->rt);
    rtstats_free(sc->rtstats);
    msgpool_free(&sc->pool);
    confirm_free(&sc->confirms);
    broker_free(sc->broker);
    httpd_stop(sc->httpd);
    metrics_free(&sc->stats);
    if (sc->loop)
        ev_loop_destroy(sc->loop);
    free(sc);
}

const struct metrics *sidecar_metrics(const struct sidecar *sc)
{
    return &sc->stats;
}
