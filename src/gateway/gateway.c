/*
 * gateway.c - the gateway object: builds its parts, sweeps deadlines every
 * second (deadlines live in the store, so a restarted gateway, or another
 * replica, fails overdue jobs), purges old history every hour, and stops
 * gracefully.
 */
#include "gateway_int.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_INTERVAL_S 1.0
#define PURGE_INTERVAL_S 3600.0
#define DRAIN_LIMIT_S    8.0 /* the exit comes within 10 s of the signal */

static void on_store_notify(void *ctx, const char *job_id, int64_t update_id)
{
    struct gateway *g = ctx;
    if (g->sse)
        sse_notify(g->sse, job_id, update_id);
}

static void on_expired(void *arg, enum store_rc rc, const struct job_update *ups, size_t n,
                       const char *errmsg)
{
    struct gateway *g = arg;
    (void)ups;
    g->sweeping = false;
    if (rc != STORE_OK) {
        log_debug("deadline sweep failed: %s", api_store_reason(rc, errmsg));
        return;
    }
    for (size_t i = 0; i < n; i++)
        gw_metrics_job_final(&g->metrics, false, true, 0);
    if (n > 0)
        log_info("%zu job(s) timed out", n);
}

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct gateway *g = (struct gateway *)((char *)w - offsetof(struct gateway, sweep));
    const char *reason;
    if (g->sweeping || !g->store->ops->ready(g->store, &reason))
        return;
    g->sweeping = true;
    g->store->ops->expire(g->store, job_now_ms(), on_expired, g);
}

static void on_purged(void *arg, enum store_rc rc, const struct job_update *ups, size_t n,
                      const char *errmsg)
{
    struct gateway *g = arg;
    (void)ups;
    g->purging = false;
    if (rc != STORE_OK)
        log_warn("history purge failed: %s", api_store_reason(rc, errmsg));
    else if (n > 0)
        log_info("purged %zu history entries of finished jobs", n);
}

static void purge_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct gateway *g = (struct gateway *)((char *)w - offsetof(struct gateway, purge));
    if (g->purging)
        return;
    g->purging = true;
    int64_t keep_ms = (int64_t)(g->cfg->history_keep_s * 1000.0);
    g->store->ops->purge(g->store, job_now_ms() - keep_ms, on_purged, g);
}

struct gateway *gateway_new(struct ev_loop *loop, const struct gw_config *cfg,
                            struct routes *routes, char *err, size_t errlen)
{
    struct gateway *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        routes_free(routes);
        return NULL;
    }
    g->loop = loop;
    g->cfg = cfg;
    g->routes = routes;
    TAILQ_INIT(&g->held);
    if (gw_metrics_init(&g->metrics, routes->ntools) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (*cfg->database_url)
        g->store = jobstore_pg_new(loop, cfg->database_url, cfg->migrations_dir,
                                   (int)cfg->db_pool_size, on_store_notify, g, err, errlen);
    else
        g->store = jobstore_mem_new(on_store_notify, g);
    if (!g->store)
        goto fail;
    g->pub = amqppub_new(loop, cfg->amqp_url, cfg->exchange, err, errlen);
    if (!g->pub)
        goto fail;
    g->sse = sse_hub_new(g);
    g->sessions = mcp_sessions_new(cfg->max_sessions);
    if (!g->sse || !g->sessions) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    struct gwhttp_config hc = {.addr = cfg->addr,
                               .port = cfg->port,
                               .max_connections = cfg->max_connections,
                               .idle_timeout_s = cfg->idle_timeout_s,
                               .max_body = cfg->max_body};
    g->http = gwhttp_start(loop, &hc, api_handle, g, err, errlen);
    if (!g->http)
        goto fail;
    ev_timer_init(&g->sweep, sweep_cb, SWEEP_INTERVAL_S, SWEEP_INTERVAL_S);
    ev_timer_start(loop, &g->sweep);
    /* First purge a minute after start, then hourly. */
    ev_timer_init(&g->purge, purge_cb, 60.0, PURGE_INTERVAL_S);
    ev_timer_start(loop, &g->purge);
    return g;
fail:
    gateway_free(g);
    return NULL;
}

static void drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct gateway *g = (struct gateway *)((char *)w - offsetof(struct gateway, drain));
    /* Idle keep-alive connections do not hold the exit: they are closed
     * with the daemon. */
    bool idle = g->inflight == 0 && gwhttp_requests(g->http) == 0;
    if (!idle && ev_now(loop) - g->drain_started < DRAIN_LIMIT_S)
        return;
    if (!idle)
        log_warn("stopping with %d tool call(s) and %u request(s) still open", g->inflight,
                 gwhttp_requests(g->http));
    ev_timer_stop(loop, &g->drain);
    void (*done)(void *) = g->drain_done;
    done(g->drain_arg);
}

void gateway_shutdown(struct gateway *g, void (*done)(void *arg), void *arg)
{
    if (g->drain_done)
        return;
    g->drain_done = done;
    g->drain_arg = arg;
    g->drain_started = ev_now(g->loop);
    ev_timer_stop(g->loop, &g->sweep);
    ev_timer_stop(g->loop, &g->purge);
    sse_close_all(g->sse);
    gwhttp_quiesce(g->http);
    ev_timer_init(&g->drain, drain_cb, 0.05, 0.05);
    ev_timer_start(g->loop, &g->drain);
}

void gateway_free(struct gateway *g)
{
    if (!g)
        return;
    ev_timer_stop(g->loop, &g->sweep);
    ev_timer_stop(g->loop, &g->purge);
    ev_timer_stop(g->loop, &g->drain);
    /* The store and the publisher first: their pending callbacks are dropped,
     * so nothing touches the requests gwhttp_stop frees. */
    if (g->store)
        g->store->ops->free(g->store);
    amqppub_free(g->pub);
    sse_hub_free(g->sse);
    gwhttp_stop(g->http);
    mcp_sessions_free(g->sessions);
    gw_metrics_free(&g->metrics);
    routes_free(g->routes);
    free(g);
}
