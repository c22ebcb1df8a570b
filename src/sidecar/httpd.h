/*
 * httpd.h - the sidecar's HTTP endpoint (/metrics, /healthz, /readyz) on
 * libmicrohttpd, driven from the sidecar's own libev loop: no extra thread,
 * so the handlers read the sidecar's state without locks.  libmicrohttpd
 * parses the requests; malformed, oversized and slow ones are its problem,
 * bounded by a connection limit, a per-connection memory limit and a timeout.
 */
#ifndef ASYA_HTTPD_H
#define ASYA_HTTPD_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct httpd;

/* What the endpoint serves; called on the loop thread. */
struct httpd_handlers {
    /* Exposition text (malloc'd, the server frees it) or NULL on failure. */
    char *(*metrics)(void *ctx, size_t *len);
    /* True when ready; otherwise *reason (borrowed) says why. */
    bool (*ready)(void *ctx, const char **reason);
};

/*
 * Listen on addr: ":8080" (all interfaces), "127.0.0.1:9090" or "host:port"
 * with a numeric IPv4 host.  Returns NULL with a reason in err.
 */
struct httpd *httpd_start(struct ev_loop *loop, const char *addr, const struct httpd_handlers *h,
                          void *ctx, char *err, size_t errlen);

/* Stop listening and free.  NULL is fine. */
void httpd_stop(struct httpd *d);

#endif /* ASYA_HTTPD_H */
