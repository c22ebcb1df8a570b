/*
 * gateway.h - asya-gateway as one object on a libev loop: the HTTP API
 * (api.c), MCP (mcp.c), tool calls (toolcall.c), SSE streams (sse.c), the
 * job store (jobstore.h), the AMQP publisher (amqppub.h), job deadlines and
 * the hourly purge of old history.
 */
#ifndef ASYA_GW_GATEWAY_H
#define ASYA_GW_GATEWAY_H

#include "gwconfig.h"
#include "routes.h"

#include <ev.h>
#include <stddef.h>

struct gateway;

/* Takes ownership of routes.  NULL with a reason in err (e.g. the port is
 * in use, a database URL that cannot be parsed). */
struct gateway *gateway_new(struct ev_loop *loop, const struct gw_config *cfg,
                            struct routes *routes, char *err, size_t errlen);

/* Graceful stop: no new connections, SSE streams end, replies in progress
 * finish; done() is called once nothing is pending (or after 10 s). */
void gateway_shutdown(struct gateway *g, void (*done)(void *arg), void *arg);

void gateway_free(struct gateway *g);

#endif /* ASYA_GW_GATEWAY_H */
