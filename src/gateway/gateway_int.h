/*
 * gateway_int.h - what the gateway's parts share (not for other programs).
 */
#ifndef ASYA_GW_GATEWAY_INT_H
#define ASYA_GW_GATEWAY_INT_H

#include "amqppub.h"
#include "gateway.h"
#include "gwhttp.h"
#include "gwmetrics.h"
#include "jobstore.h"
#include "routes.h"

#include <ev.h>
#include <jansson.h>
#include <sys/queue.h>

struct sse_hub;
struct report;
TAILQ_HEAD(report_list, report);
struct mcp_sessions;

struct gateway {
    struct ev_loop *loop;
    const struct gw_config *cfg;
    struct routes *routes;
    struct jobstore *store;
    struct amqppub *pub;
    struct gwhttp *http;
    struct sse_hub *sse;
    struct mcp_sessions *sessions;
    struct gw_metrics metrics;
    ev_timer sweep; /* job deadlines */
    ev_timer purge; /* old history */
    ev_timer drain; /* graceful stop */
    bool sweeping;
    bool purging;
    int inflight;            /* tool calls between their start and their last store write */
    struct report_list held; /* api.c: progress reports and finals not yet applied */
    double drain_started;
    void (*drain_done)(void *arg);
    void *drain_arg;
};

/* api.c: the HTTP entry point (every request). */
void api_handle(void *ctx, struct gwreq *req);
/* The one-line plain-text reason for a store failure, for 503 bodies. */
const char *api_store_reason(enum store_rc rc, const char *errmsg);

/* toolcall.c: run a tool call; done(arg, result) gets the CallToolResult
 * (new reference, never NULL) or NULL when the client went away. */
typedef void (*toolcall_done)(void *arg, json_t *result);
void toolcall_start(struct gateway *g, const struct tool *t, const json_t *args, toolcall_done done,
                    void *arg);

/* mcp.c: POST/DELETE/GET /mcp. */
struct mcp_sessions *mcp_sessions_new(long max_sessions);
void mcp_sessions_free(struct mcp_sessions *s);
void mcp_handle(struct gateway *g, struct gwreq *req);

/* sse.c: GET /jobs/{id}/stream and the fan-out of store notifications. */
struct sse_hub *sse_hub_new(struct gateway *g);
void sse_hub_free(struct sse_hub *h);
void sse_subscribe(struct sse_hub *h, struct gwreq *req, const char *job_id);
void sse_notify(struct sse_hub *h, const char *job_id, int64_t update_id);
/* End every stream (graceful stop). */
void sse_close_all(struct sse_hub *h);
unsigned sse_subscribers(const struct sse_hub *h);

#endif /* ASYA_GW_GATEWAY_INT_H */
