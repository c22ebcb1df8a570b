#include "gwhttp.h"

#include "textbuf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

struct header {
    char *name;
    char *value;
};

struct gwreq {
    TAILQ_ENTRY(gwreq) link; /* in gwhttp.reqs: every request not yet freed by MHD */
    struct gwhttp *h;
    struct MHD_Connection *conn;
    char *method;
    char *path;
    struct textbuf body;
    bool too_large;
    bool dispatched;
    bool suspended;
    bool done; /* MHD finished with the request: the client is gone or answered */
    int refs;  /* MHD's own + holds */
    /* the answer, built before MHD is ready to take it */
    struct MHD_Response *resp;
    unsigned status;
    bool answered;
    struct header *headers;
    size_t nheaders;
    /* streams */
    bool streaming;
    bool stream_ended;
    struct textbuf out;
    size_t out_off;
    gwreq_close_cb close_cb;
    void *close_arg;
};

TAILQ_HEAD(reqlist, gwreq);

/* Walks below are spelled out, not TAILQ_FOREACH: cppcheck cannot see
 * through that macro and reports the loop variable as uninitialised. */

struct gwhttp {
    ev_io io; /* first member: watches libmicrohttpd's epoll fd */
    ev_timer timer;
    ev_prepare prepare;
    struct ev_loop *loop;
    struct MHD_Daemon *daemon;
    gwhttp_handler handler;
    void *ctx;
    size_t max_body;
    unsigned connections;
    bool stopping;
    unsigned long long errors[2]; /* 4xx, 5xx answers */
    struct reqlist reqs;
};

static void free_req(struct gwreq *r)
{
    if (r->h)
        TAILQ_REMOVE(&r->h->reqs, r, link);
    free(r->method);
    free(r->path);
    textbuf_free(&r->body);
    textbuf_free(&r->out);
    if (r->resp)
        MHD_destroy_response(r->resp);
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r);
}

static void unref(struct gwreq *r)
{
    if (--r->refs == 0)
        free_req(r);
}

static void resume(struct gwreq *r)
{
    if (r->suspended && !r->done) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
        /* Without an internal thread libmicrohttpd makes no inter-thread
         * signal on resume: the connection is picked up by the next MHD_run,
         * which nothing would call before the next network event or timeout.
         * Queue the daemon's watcher so this loop iteration runs it. */
        ev_feed_event(r->h->loop, &r->h->io, EV_READ);
    }
}

static void add_headers(struct gwreq *r, struct MHD_Response *resp)
{
    for (size_t i = 0; i < r->nheaders; i++)
        MHD_add_response_header(resp, r->headers[i].name, r->headers[i].value);
}

/* ---- request accessors ---------------------------------------------------- */

const char *gwreq_method(const struct gwreq *r)
{
    return r->method;
}

const char *gwreq_path(const struct gwreq *r)
{
    return r->path;
}

const char *gwreq_header(const struct gwreq *r, const char *name)
{
    if (r->done)
        return NULL;
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *gwreq_body(const struct gwreq *r, size_t *len)
{
    if (len)
        *len = r->body.len;
    return r->body.data ? r->body.data : "";
}

/* ---- answers ---------------------------------------------------------------- */

void gwreq_add_header(struct gwreq *r, const char *name, const char *value)
{
    struct header *hs = realloc(r->headers, (r->nheaders + 1) * sizeof *hs);
    if (!hs)
        return;
    r->headers = hs;
    char *n = strdup(name);
    char *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return;
    }
    hs[r->nheaders].name = n;
    hs[r->nheaders].value = v;
    r->nheaders++;
}

void gwreq_reply(struct gwreq *r, unsigned status, const char *content_type, const char *body,
                 size_t len)
{
    if (r->answered || r->done)
        return;
    r->answered = true;
    if (status >= 500)
        r->h->errors[1]++;
    else if (status >= 400)
        r->h->errors[0]++;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) {
        /* Out of memory: the connection is closed by MHD when nothing is queued. */
        resume(r);
        return;
    }
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    add_headers(r, resp);
    r->resp = resp;
    r->status = status;
    resume(r);
}

void gwreq_reply_text(struct gwreq *r, unsigned status, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    gwreq_reply(r, status, "text/plain; charset=utf-8", buf, len);
}

void gwreq_reply_json(struct gwreq *r, unsigned status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        gwreq_reply_text(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return;
    }
    gwreq_reply(r, status, "application/json", text, strlen(text));
    free(text);
}

/* ---- streams ---------------------------------------------------------------- */

/* libmicrohttpd asks for more of the body: give what is queued, or park
 * the connection until gwreq_stream_write resumes it (returning 0 without
 * suspending would make the daemon spin). */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct gwreq *r = cls;
    (void)pos;
    size_t avail = r->out.len - r->out_off;
    if (avail > 0) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, r->out.data + r->out_off, n);
        r->out_off += n;
        if (r->out_off == r->out.len) {
            r->out.len = 0;
            r->out_off = 0;
        }
        return (ssize_t)n;
    }
    if (r->stream_ended || r->h->stopping)
        return MHD_CONTENT_READER_END_OF_STREAM;
    r->suspended = true;
    MHD_suspend_connection(r->conn);
    return 0;
}

void gwreq_stream_begin(struct gwreq *r, const char *content_type, gwreq_close_cb cb, void *arg)
{
    if (r->answered || r->done)
        return;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, r, NULL);
    if (!resp) {
        gwreq_reply_text(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return;
    }
    r->answered = true;
    r->streaming = true;
    r->close_cb = cb;
    r->close_arg = arg;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    add_headers(r, resp);
    r->resp = resp;
    r->status = MHD_HTTP_OK;
    resume(r);
}

void gwreq_stream_write(struct gwreq *r, const char *data, size_t len)
{
    if (!r->streaming || r->stream_ended || r->done)
        return;
    /* Keep the unsent part at the front so the buffer does not grow forever. */
    if (r->out_off > 0 && r->out_off > r->out.len / 2) {
        memmove(r->out.data, r->out.data + r->out_off, r->out.len - r->out_off);
        r->out.len -= r->out_off;
        r->out_off = 0;
    }
    textbuf_append(&r->out, data, len);
    resume(r);
}

size_t gwreq_stream_backlog(const struct gwreq *r)
{
    return r->out.len - r->out_off;
}

void gwreq_stream_end(struct gwreq *r)
{
    if (!r->streaming || r->stream_ended)
        return;
    r->stream_ended = true;
    resume(r);
}

void gwreq_hold(struct gwreq *r)
{
    r->refs++;
}

bool gwreq_release(struct gwreq *r)
{
    bool alive = !r->done;
    unref(r);
    return alive;
}

/* ---- libmicrohttpd callbacks ------------------------------------------------ */

static enum MHD_Result queue_answer(struct gwreq *r)
{
    enum MHD_Result ret = MHD_queue_response(r->conn, r->status, r->resp);
    MHD_destroy_response(r->resp);
    r->resp = NULL;
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct gwhttp *h = cls;
    (void)version;
    struct gwreq *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->h = h;
        r->conn = conn;
        r->refs = 1;
        r->method = strdup(method);
        r->path = strdup(url);
        TAILQ_INSERT_TAIL(&h->reqs, r, link);
        *con_cls = r;
        if (!r->method || !r->path)
            return MHD_NO;
        /* A declared length over the limit is refused before the body: no
         * waiting for (or reading) gigabytes that would be dropped anyway.
         * libmicrohttpd closes the connection after this early answer. */
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (end != cl && (errno == ERANGE || n > h->max_body)) {
                r->too_large = true;
                r->dispatched = true;
                gwreq_reply_text(r, MHD_HTTP_CONTENT_TOO_LARGE,
                                 "request body too large (limit %zu bytes)\n", h->max_body);
                if (r->resp)
                    return queue_answer(r);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        if (!r->too_large) {
            if (r->body.len + *upload_data_size > h->max_body) {
                r->too_large = true; /* read and drop the rest, then answer 413 */
                textbuf_free(&r->body);
            } else {
                textbuf_append(&r->body, upload_data, *upload_data_size);
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!r->dispatched) {
        r->dispatched = true;
        if (r->too_large)
            gwreq_reply_text(r, MHD_HTTP_CONTENT_TOO_LARGE,
                             "request body too large (limit %zu bytes)\n", h->max_body);
        else if (textbuf_failed(&r->body))
            gwreq_reply_text(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        else if (h->stopping)
            gwreq_reply_text(r, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down\n");
        else
            h->handler(h->ctx, r);
    }
    if (r->resp)
        return queue_answer(r);
    if (h->stopping && !r->answered) {
        gwreq_reply_text(r, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down\n");
        return queue_answer(r);
    }
    if (r->answered)
        return MHD_YES; /* a stream already queued, resumed by its reader */
    /* The answer comes later: park the connection until gwreq_reply resumes it. */
    r->suspended = true;
    MHD_suspend_connection(conn);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct gwreq *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    r->done = true;
    r->suspended = false;
    if (r->close_cb) {
        gwreq_close_cb cb = r->close_cb;
        r->close_cb = NULL;
        cb(r->close_arg, r);
    }
    unref(r);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct gwhttp *h = cls;
    (void)conn;
    (void)socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        h->connections++;
    else if (h->connections > 0)
        h->connections--;
}

/* ---- the loop --------------------------------------------------------------- */

/* At the connection limit libmicrohttpd takes its listening socket out of its
 * epoll set, and puts it back only at the start of a later run.  When a run
 * closed connections, run once more: otherwise, with nothing else to wake the
 * loop, connections waiting in the backlog would never be accepted. */
static void run_daemon(struct gwhttp *h)
{
    unsigned before = h->connections;
    MHD_run(h->daemon);
    if (h->connections < before)
        MHD_run(h->daemon);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    run_daemon((struct gwhttp *)w);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    run_daemon((struct gwhttp *)((char *)w - offsetof(struct gwhttp, timer)));
}

/* Before the loop sleeps, arm the timer for libmicrohttpd's own timeouts. */
static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct gwhttp *h = (struct gwhttp *)((char *)w - offsetof(struct gwhttp, prepare));
    (void)revents;
    MHD_UNSIGNED_LONG_LONG ms;
    ev_timer_stop(loop, &h->timer);
    if (MHD_get_timeout(h->daemon, &ms) == MHD_YES) {
        ev_timer_set(&h->timer, (double)ms / 1000.0, 0.);
        ev_timer_start(loop, &h->timer);
    }
}

struct gwhttp *gwhttp_start(struct ev_loop *loop, const struct gwhttp_config *cfg,
                            gwhttp_handler handler, void *ctx, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)cfg->port);
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    if (cfg->addr && *cfg->addr && inet_pton(AF_INET, cfg->addr, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "ASYA_GATEWAY_ADDR=%s: expected a numeric IPv4 address", cfg->addr);
        return NULL;
    }
    struct gwhttp *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->loop = loop;
    h->handler = handler;
    h->ctx = ctx;
    h->max_body = cfg->max_body;
    TAILQ_INIT(&h->reqs);
    /* No SO_REUSEPORT: a second gateway on the same port must fail to start,
     * not share the connections (MCP sessions live in one process).
     * libmicrohttpd still sets SO_REUSEADDR, so a restart binds at once.
     * 16 KiB per connection: headers and a slice of the body at a time;
     * small enough for thousands of idle SSE streams. */
    h->daemon = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC, (uint16_t)cfg->port, NULL, NULL,
        on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
        cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, h, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, errlen, "ASYA_GATEWAY_PORT=%d: cannot listen (port in use?)", cfg->port);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info) {
        snprintf(err, errlen, "libmicrohttpd has no epoll support");
        MHD_stop_daemon(h->daemon);
        free(h);
        return NULL;
    }
    ev_io_init(&h->io, io_cb, info->epoll_fd, EV_READ);
    ev_io_start(loop, &h->io);
    ev_timer_init(&h->timer, timer_cb, 1., 0.);
    ev_prepare_init(&h->prepare, prepare_cb);
    ev_prepare_start(loop, &h->prepare);
    return h;
}

void gwhttp_quiesce(struct gwhttp *h)
{
    if (!h || h->stopping)
        return;
    h->stopping = true;
    MHD_socket fd = MHD_quiesce_daemon(h->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    /* End every stream; requests waiting for the store or the broker keep
     * waiting, so a tool call in progress still gets its real answer. */
    struct gwreq *r;
    for (r = TAILQ_FIRST(&h->reqs); r; r = TAILQ_NEXT(r, link)) {
        if (r->streaming) {
            r->stream_ended = true;
            resume(r);
        }
    }
}

unsigned gwhttp_connections(const struct gwhttp *h)
{
    return h->connections;
}

unsigned gwhttp_requests(const struct gwhttp *h)
{
    unsigned n = 0;
    const struct gwreq *r;
    for (r = TAILQ_FIRST(&h->reqs); r; r = TAILQ_NEXT(r, link)) {
        if (!r->done)
            n++;
    }
    return n;
}

void gwhttp_errors(const struct gwhttp *h, unsigned long long out[2])
{
    out[0] = h->errors[0];
    out[1] = h->errors[1];
}

void gwhttp_stop(struct gwhttp *h)
{
    if (!h)
        return;
    gwhttp_quiesce(h);
    /* libmicrohttpd must not be stopped with connections still suspended:
     * wake the rest (they are answered 503 "shutting down"). */
    struct gwreq *r;
    for (r = TAILQ_FIRST(&h->reqs); r; r = TAILQ_NEXT(r, link)) {
        resume(r);
    }
    MHD_run(h->daemon);
    ev_io_stop(h->loop, &h->io);
    ev_timer_stop(h->loop, &h->timer);
    ev_prepare_stop(h->loop, &h->prepare);
    MHD_stop_daemon(h->daemon);
    /* What is left was held by work that was cancelled (the store and the
     * publisher are freed first, without calling back): free it here. */
    r = TAILQ_FIRST(&h->reqs);
    while (r) {
        struct gwreq *next = TAILQ_NEXT(r, link);
        r->h = NULL; /* the list goes with h */
        free_req(r);
        r = next;
    }
    free(h);
}
