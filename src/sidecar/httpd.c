#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct httpd {
    ev_io io; /* first member: watches libmicrohttpd's epoll fd */
    ev_timer timer;
    ev_prepare prepare;
    struct ev_loop *loop;
    struct MHD_Daemon *daemon;
    struct httpd_handlers h;
    void *ctx;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body, size_t len,
                             enum MHD_ResponseMemoryMode mode, const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct httpd *d = cls;
    (void)version;
    (void)upload_data;
    static int first_call;
    if (*con_cls == NULL) {
        *con_cls = &first_call; /* answer once the headers are all in */
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* ignore bodies */
        return MHD_YES;
    }
    static char text[] = "text/plain; charset=utf-8";
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static char msg[] = "method not allowed\n";
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, msg, sizeof msg - 1, MHD_RESPMEM_PERSISTENT,
                     text);
    }
    if (strcmp(url, "/metrics") == 0) {
        size_t len = 0;
        char *body = d->h.metrics(d->ctx, &len);
        if (!body) {
            static char msg[] = "out of memory\n";
            return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, msg, sizeof msg - 1,
                         MHD_RESPMEM_PERSISTENT, text);
        }
        return reply(conn, MHD_HTTP_OK, body, len, MHD_RESPMEM_MUST_FREE,
                     "text/plain; version=0.0.4; charset=utf-8");
    }
    if (strcmp(url, "/healthz") == 0) {
        static char ok[] = "ok\n";
        return reply(conn, MHD_HTTP_OK, ok, sizeof ok - 1, MHD_RESPMEM_PERSISTENT, text);
    }
    if (strcmp(url, "/readyz") == 0) {
        const char *reason = "";
        if (d->h.ready(d->ctx, &reason)) {
            static char ok[] = "ready\n";
            return reply(conn, MHD_HTTP_OK, ok, sizeof ok - 1, MHD_RESPMEM_PERSISTENT, text);
        }
        char *body = NULL;
        if (asprintf(&body, "not ready: %s\n", reason) < 0)
            return MHD_NO;
        return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, body, strlen(body), MHD_RESPMEM_MUST_FREE,
                     text);
    }
    static char nf[] = "not found: try /metrics, /healthz or /readyz\n";
    return reply(conn, MHD_HTTP_NOT_FOUND, nf, sizeof nf - 1, MHD_RESPMEM_PERSISTENT, text);
}

static void httpd_run(struct httpd *d)
{
    MHD_run(d->daemon);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    httpd_run((struct httpd *)w);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    httpd_run((struct httpd *)((char *)w - offsetof(struct httpd, timer)));
}

/* Before the loop sleeps, arm the timer for libmicrohttpd's own timeouts. */
static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct httpd *d = (struct httpd *)((char *)w - offsetof(struct httpd, prepare));
    (void)revents;
    MHD_UNSIGNED_LONG_LONG ms;
    ev_timer_stop(loop, &d->timer);
    if (MHD_get_timeout(d->daemon, &ms) == MHD_YES) {
        ev_timer_set(&d->timer, (double)ms / 1000.0, 0.);
        ev_timer_start(loop, &d->timer);
    }
}

static int parse_addr(const char *addr, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return -EINVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 0 || port > 65535)
        return -EINVAL;
    sa->sin_port = htons((uint16_t)port);
    size_t hlen = (size_t)(colon - addr);
    if (hlen == 0) {
        sa->sin_addr.s_addr = htonl(INADDR_ANY);
        return 0;
    }
    char host[64];
    if (hlen >= sizeof host)
        return -EINVAL;
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -EINVAL;
}

struct httpd *httpd_start(struct ev_loop *loop, const char *addr, const struct httpd_handlers *h,
                          void *ctx, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    if (parse_addr(addr, &sa)) {
        snprintf(err, errlen, "ASYA_METRICS_ADDR=%s: expected :PORT or IPV4:PORT", addr);
        return NULL;
    }
    struct httpd *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->loop = loop;
    d->h = *h;
    d->ctx = ctx;
    d->daemon =
        MHD_start_daemon(MHD_USE_EPOLL, ntohs(sa.sin_port), NULL, NULL, on_request, d,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768, MHD_OPTION_END);
    if (!d->daemon) {
        snprintf(err, errlen, "ASYA_METRICS_ADDR=%s: cannot listen (port in use?)", addr);
        free(d);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info) {
        snprintf(err, errlen, "libmicrohttpd has no epoll support");
        MHD_stop_daemon(d->daemon);
        free(d);
        return NULL;
    }
    ev_io_init(&d->io, io_cb, info->epoll_fd, EV_READ);
    ev_io_start(loop, &d->io);
    ev_timer_init(&d->timer, timer_cb, 1., 0.);
    ev_prepare_init(&d->prepare, prepare_cb);
    ev_prepare_start(loop, &d->prepare);
    return d;
}

void httpd_stop(struct httpd *d)
{
    if (!d)
        return;
    ev_io_stop(d->loop, &d->io);
    ev_timer_stop(d->loop, &d->timer);
    ev_prepare_stop(d->loop, &d->prepare);
    MHD_stop_daemon(d->daemon);
    free(d);
}
