/*
 * amqppub.h - the gateway's AMQP publisher: one connection, one channel in
 * confirm mode, driven by the gateway's libev loop; reconnects with backoff.
 *
 * Every publish is persistent and mandatory and completes exactly once: ok
 * when the broker confirmed it and did not return it; otherwise an error
 * ("not connected to the broker", "unroutable: NO_ROUTE", "nacked by the
 * broker", "no confirm within 10 s", "connection lost").
 */
#ifndef ASYA_GW_AMQPPUB_H
#define ASYA_GW_AMQPPUB_H

#include "textbuf.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct amqppub;

/* error: NULL when ok, else a one-line reason (borrowed for the call). */
typedef void (*amqppub_cb)(void *arg, bool ok, const char *error);

/* url: amqp:// or amqps://.  Starts connecting in the background.  NULL with
 * a reason in err for a URL it cannot parse (the password masked). */
struct amqppub *amqppub_new(struct ev_loop *loop, const char *url, const char *exchange, char *err,
                            size_t errlen);

/* Publish body (copied) to the exchange with this routing key.  cb may be
 * called before this returns (not connected). */
void amqppub_publish(struct amqppub *p, const char *routing_key, const char *body, size_t len,
                     amqppub_cb cb, void *arg);

/* True when connected with the channel in confirm mode; else *reason. */
bool amqppub_ready(struct amqppub *p, const char **reason);

/* Prometheus text (asya_gateway_publish_* counters and latency) appended. */
void amqppub_metrics(struct amqppub *p, struct textbuf *out);

/* Fail what is pending (callbacks are not called), close and free.  NULL is fine. */
void amqppub_free(struct amqppub *p);

#endif /* ASYA_GW_AMQPPUB_H */
