/*
 * gwhttp.h - the gateway's HTTP server: libmicrohttpd driven by the
 * gateway's libev loop (its epoll fd watched by an ev_io, no thread), with
 * replies that may come later (a request waits, suspended, for the store or
 * the broker) and streams written a piece at a time (SSE).
 *
 * One handler sees every request once its body is complete.  It answers
 * with gwreq_reply* now or later, or starts a stream.  Bodies over the
 * configured limit are answered 413 without reaching the handler.
 *
 * Lifetime: a request lives until the client is answered or gone.  Code
 * that answers later takes a reference (gwreq_hold) and drops it with
 * gwreq_release, which says whether the client is still there.
 */
#ifndef ASYA_GW_GWHTTP_H
#define ASYA_GW_GWHTTP_H

#include <ev.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct gwhttp;
struct gwreq;

typedef void (*gwhttp_handler)(void *ctx, struct gwreq *req);
/* Called once when a stream's client went away or the stream ended. */
typedef void (*gwreq_close_cb)(void *arg, struct gwreq *req);

struct gwhttp_config {
    const char *addr; /* NULL or "" = all interfaces; else a numeric IPv4 address */
    int port;
    unsigned max_connections; /* beyond it new connections wait in the accept queue */
    unsigned idle_timeout_s;  /* a connection idle this long is closed (streams excepted) */
    size_t max_body;          /* request bodies larger than this get 413 */
};

/* NULL with a reason in err (e.g. the port is in use). */
struct gwhttp *gwhttp_start(struct ev_loop *loop, const struct gwhttp_config *cfg,
                            gwhttp_handler handler, void *ctx, char *err, size_t errlen);
/* Stop accepting new connections (graceful shutdown); requests in progress go on. */
void gwhttp_quiesce(struct gwhttp *h);
/* Number of open connections. */
unsigned gwhttp_connections(const struct gwhttp *h);
/* Requests in progress (headers seen, not yet answered and sent); an idle
 * keep-alive connection has none. */
unsigned gwhttp_requests(const struct gwhttp *h);
/* Answers sent with a 4xx ([0]) and a 5xx ([1]) status so far. */
void gwhttp_errors(const struct gwhttp *h, unsigned long long out[2]);
/* Close every connection and free.  NULL is fine. */
void gwhttp_stop(struct gwhttp *h);

/* The request (borrowed, valid while the request lives). */
const char *gwreq_method(const struct gwreq *r);
const char *gwreq_path(const struct gwreq *r);
/* A request header (case-insensitive name) or NULL. */
const char *gwreq_header(const struct gwreq *r, const char *name);
/* The body (NUL-terminated for convenience) and its length. */
const char *gwreq_body(const struct gwreq *r, size_t *len);

/* Add a header to the reply or stream (copied); before gwreq_reply / gwreq_stream_begin. */
void gwreq_add_header(struct gwreq *r, const char *name, const char *value);
/* Answer (body copied).  Only the first answer of a request counts. */
void gwreq_reply(struct gwreq *r, unsigned status, const char *content_type, const char *body,
                 size_t len);
/* Plain text answer, printf-style. */
void gwreq_reply_text(struct gwreq *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* JSON answer; takes ownership of j (NULL gives 500). */
void gwreq_reply_json(struct gwreq *r, unsigned status, json_t *j);

/* Start a 200 stream of this content type.  cb (may be NULL) is called once
 * when the client goes away or after gwreq_stream_end's bytes are sent. */
void gwreq_stream_begin(struct gwreq *r, const char *content_type, gwreq_close_cb cb, void *arg);
/* Queue bytes (copied) on a stream. */
void gwreq_stream_write(struct gwreq *r, const char *data, size_t len);
/* Bytes queued and not yet taken by the socket (a slow reader's backlog). */
size_t gwreq_stream_backlog(const struct gwreq *r);
/* End the stream after what is queued. */
void gwreq_stream_end(struct gwreq *r);

/* Keep the request alive across an asynchronous step. */
void gwreq_hold(struct gwreq *r);
/* Drop a hold; returns true when the client can still be answered, false
 * when it went away (the request may then be freed: do not touch it). */
bool gwreq_release(struct gwreq *r);

#endif /* ASYA_GW_GWHTTP_H */
