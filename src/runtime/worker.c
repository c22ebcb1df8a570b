#include "worker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "envelope.h"
#include "jscan.h"
#include "jspan.h"
#include "frame.h"
#include "handoff.h"
#include "log.h"
#include "protocol.h"
#include "wsetup.h"

#define TYPE_MAX    128
#define MESSAGE_MAX ((size_t)16 * 1024)

/* Last resort when even an error answer cannot be allocated. */
static const char oom_answer[] =
    "[{\"error\":\"oom_error\",\"details\":{\"message\":\"out of memory while building the "
    "answer\",\"type\":\"MemoryError\",\"traceback\":\"asya-runtime worker\"}}]";

/* ---- a growing byte buffer ------------------------------------------------ */

struct sbuf {
    char *p; /* owned */
    size_t len;
    size_t cap;
};

static int sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* ---- the request's members as received ------------------------------------
 *
 * The answer carries the payload and route exactly as received (numbers keep
 * their spelling; jansson would print 0.1 as 0.10000000000000001), so the
 * worker slices them out of the request text (jspan.h).
 */

/* A member's text as received, or re-serialised when it cannot be sliced.
 * Returns a NUL-terminated copy (free with free()), or NULL on OOM. */
static char *member_text(const char *req, size_t len, const struct envelope *env, const char *key,
                         size_t *out_len)
{
    const char *vs = NULL;
    size_t vl = 0;
    const struct jscan_member *m =
        env->scan ? jscan_find(env->scan->top, env->scan->top_count, key) : NULL;
    if (m) {
        vs = m->value; /* scanned: the span is at hand */
        vl = m->value_len;
    }
    if (m || jspan_member(req, len, key, &vs, &vl)) {
        char *s = malloc(vl + 1);
        if (!s)
            return NULL;
        memcpy(s, vs, vl);
        s[vl] = '\0';
        *out_len = vl;
        return s;
    }
    char *s = json_dumps(json_object_get(envelope_json(env), key), JSON_COMPACT | JSON_ENCODE_ANY);
    if (s)
        *out_len = strlen(s);
    return s;
}

/* The request asks for progress frames ("asya_progress": true). */
static bool progress_asked(const struct envelope *env)
{
    if (env->scan) {
        const struct jscan_member *m =
            jscan_find(env->scan->top, env->scan->top_count, PROTO_PROGRESS_KEY);
        return m && m->type == JSCAN_TRUE;
    }
    return json_is_true(json_object_get(env->root, PROTO_PROGRESS_KEY));
}

/* ---- one call -------------------------------------------------------------- */

struct call_host {
    const struct worker_ctx *ctx;
    const struct envelope *in; /* the validated request */
    const char *route;         /* route text as received (payload mode) */
    size_t route_len;
    struct sbuf out; /* "[" result "," result ... (no closing bracket yet) */
    size_t results;
    bool out_of_memory; /* appending a result failed */
    char *err_type;     /* from set_error; owned */
    char *err_message;  /* from set_error; owned */
    bool rejected;      /* emit refused a result; the first reason follows */
    bool progress_on;   /* the request asked for progress frames */
    double progress_at; /* monotonic time of the last one sent; 0 = none yet */
    char reject_type[TYPE_MAX];
    char reject_message[1024];
};

__attribute__((format(printf, 3, 4))) static int reject(struct call_host *h, const char *type,
                                                        const char *fmt, ...)
{
    if (!h->rejected) {
        h->rejected = true;
        snprintf(h->reject_type, sizeof h->reject_type, "%s", type);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(h->reject_message, sizeof h->reject_message, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Checks an envelope-mode result; returns 0 or reject()'s -1. */
static int check_result_envelope(struct call_host *h, json_t *v)
{
    if (!json_is_object(v))
        return reject(h, "EnvelopeError", "result %zu is not a JSON object", h->results);
    struct envelope out;
    char why[256];
    if (envelope_from_json(v, ENVELOPE_ALLOW_FINISHED, &out, why, sizeof why) != 0)
        return reject(h, "EnvelopeError", "result %zu is not a valid envelope: %s", h->results,
                      why);
    bool same = envelope_route_prefix_equal(h->in, &out);
    envelope_free(&out);
    if (!same)
        return reject(h, "RouteError",
                      "result %zu rewrites route.actors[0..%zu], the part of the route that has "
                      "already run",
                      h->results, h->in->current);
    return 0;
}

static int host_emit(struct asya_call *call, const char *json, size_t len)
{
    struct call_host *h = call->host;
    if (!json)
        return reject(h, "ResultError", "result %zu is NULL", h->results);
    while (len && is_ws(json[0])) {
        json++;
        len--;
    }
    while (len && is_ws(json[len - 1]))
        len--;

    /* A payload in canonical form (jscan.h) is valid JSON: no parse needed. */
    enum jscan_type type;
    if (h->ctx->mode != ASYA_MODE_PAYLOAD || jscan_value(json, len, &type) != len) {
        json_error_t jerr;
        json_t *v = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!v)
            return reject(h, "ResultError", "result %zu is not valid JSON: %s", h->results,
                          jerr.text);
        int rc = 0;
        if (h->ctx->mode == ASYA_MODE_ENVELOPE)
            rc = check_result_envelope(h, v);
        json_decref(v);
        if (rc)
            return rc;
    }

    static const char head[] = "{\"payload\":";
    static const char mid[] = ",\"route\":";
    size_t piece = len;
    if (h->ctx->mode == ASYA_MODE_PAYLOAD)
        piece += sizeof head - 1 + sizeof mid - 1 + h->route_len + 1;
    /* Separator before it and the closing ']' after the last one. */
    if (h->out.len + 1 + piece + 1 > h->ctx->max_answer)
        return reject(h, "ResultError",
                      "results exceed ASYA_MAX_MESSAGE_BYTES (%zu bytes) at result %zu",
                      h->ctx->max_answer, h->results);

    int fail = sbuf_add(&h->out, h->results ? "," : "[", 1);
    if (h->ctx->mode == ASYA_MODE_PAYLOAD) {
        fail = fail || sbuf_add(&h->out, head, sizeof head - 1);
        fail = fail || sbuf_add(&h->out, json, len);
        fail = fail || sbuf_add(&h->out, mid, sizeof mid - 1);
        fail = fail || sbuf_add(&h->out, h->route, h->route_len);
        fail = fail || sbuf_add(&h->out, "}", 1);
    } else {
        fail = fail || sbuf_add(&h->out, json, len);
    }
    if (fail) {
        h->out_of_memory = true;
        return -1;
    }
    h->results++;
    return 0;
}

static char *copy_capped(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void host_set_error(struct asya_call *call, const char *type, const char *message)
{
    struct call_host *h = call->host;
    free(h->err_type);
    free(h->err_message);
    h->err_type = type ? copy_capped(type, TYPE_MAX) : NULL;
    h->err_message = message ? copy_capped(message, MESSAGE_MAX) : NULL;
}

/* ---- progress ------------------------------------------------------------- */

/* ---- the client connection ------------------------------------------------
 *
 * The client fd is lent by the supervisor (handoff.h).  Its O_NONBLOCK flag
 * belongs to the open file, shared with the supervisor, so it stays set and
 * the worker waits in poll() itself.
 */

static int wait_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    while (poll(&p, 1, -1) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

/* Writes w's frame whole to the client, waiting as needed. */
static int client_write_frame(int fd, struct frame_writer *w)
{
    for (;;) {
        int rc = frame_writer_write(w, fd);
        if (rc != FRAME_IO_AGAIN)
            return rc < 0 ? rc : 0;
        rc = wait_fd(fd, POLLOUT);
        if (rc)
            return rc;
    }
}

/* A progress frame: best effort.  When the client cannot take one byte now
 * it is dropped; once part of it is out it is finished (the stream must stay
 * framed).  The ledger says WRITING meanwhile.  Returns 0 when sent. */
static int client_write_progress(const struct worker_ctx *ctx, const char *text, size_t len)
{
    struct frame_writer w;
    if (ctx->client_fd < 0 || frame_writer_init(&w, text, len) != 0)
        return -EINVAL;
    handoff_set(ctx->ledger, HANDOFF_WRITING);
    int rc = frame_writer_write(&w, ctx->client_fd);
    if (rc == FRAME_IO_AGAIN && w.off == 0)
        rc = -EAGAIN; /* nothing went out: drop it */
    else if (rc == FRAME_IO_AGAIN)
        rc = client_write_frame(ctx->client_fd, &w);
    else if (rc == FRAME_IO_DONE)
        rc = 0;
    if (rc == 0 || rc == -EAGAIN)
        handoff_set(ctx->ledger, HANDOFF_RUNNING);
    return rc;
}

/* Reads exactly len bytes from the client, waiting as needed. */
static int client_read_full(int fd, char *p, size_t len)
{
    while (len) {
        ssize_t n = recv(fd, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0)
            return -EPROTO; /* the client left mid-frame */
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = wait_fd(fd, POLLIN);
        if (rc)
            return rc;
    }
    return 0;
}

/*
 * Reads the request frame the supervisor lent.  hint is its header as the
 * supervisor saw it; prefix (pre_len bytes) what of it the supervisor had
 * consumed: none, its header, or all of it.  The body is allocated before
 * any byte is consumed, so a worker that cannot hold the request dies
 * (-ENOMEM) leaving it whole in the socket for the next worker; then the
 * rest of the frame is read, header and body in one call when it is all
 * there.  Returns 0 with *buf (free with free()), *req (the body, inside
 * buf) and *len set, -ENOMEM, -EMSGSIZE, or another negative errno (the
 * stream is then unusable).
 */
static int client_read_request(const struct worker_ctx *ctx, const unsigned char *hint,
                               const char *pre, size_t pre_len, size_t max, char **buf, char **req,
                               size_t *len)
{
    size_t blen = frame_get_header(hint);
    if (blen > max)
        return -EMSGSIZE;
    size_t whole = FRAME_HEADER_LEN + blen;
    if (pre_len > whole)
        return -EPROTO;
    char *p = malloc(whole + 1);
    if (!p)
        return -ENOMEM;
    handoff_set(ctx->ledger, HANDOFF_READING);
    memcpy(p, pre, pre_len);
    int rc = client_read_full(ctx->client_fd, p + pre_len, whole - pre_len);
    if (rc == 0 && memcmp(p, hint, FRAME_HEADER_LEN) != 0)
        rc = -EPROTO; /* not what the supervisor saw: the stream is not where it thought */
    if (rc) {
        free(p);
        return rc;
    }
    p[whole] = '\0';
    handoff_set(ctx->ledger, HANDOFF_RUNNING);
    *buf = p;
    *req = p + FRAME_HEADER_LEN;
    *len = blen;
    return 0;
}

#define PROGRESS_INTERVAL_S 0.1 /* a handler may call progress in a tight loop */

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int host_progress(struct asya_call *call, double fraction, const char *message)
{
    struct call_host *h = call->host;
    if (!(fraction >= 0.0 && fraction <= 1.0)) /* NaN too */
        return -1;
    if (!h->progress_on)
        return 1;
    double now = monotonic_s();
    if (h->progress_at > 0 && now - h->progress_at < PROGRESS_INTERVAL_S)
        return 1;
    size_t len = 0;
    char *text = protocol_progress_text(fraction, message, &len);
    if (!text)
        return 1;
    int rc = client_write_progress(h->ctx, text, len);
    free(text);
    if (rc) /* not sent: the client is slow (dropped) or gone (the answer's write says so) */
        return 1;
    h->progress_at = now;
    return 0;
}

static int error_answer(const char *code, const char *message, const char *type,
                        const char *traceback, char **answer, size_t *answer_len)
{
    *answer = protocol_error_text(code, message, type, traceback, answer_len);
    return *answer ? 0 : -ENOMEM;
}

/* Turns what the handler did into the answer text. */
static int build_answer(const struct worker_ctx *ctx, struct call_host *h, int status,
                        char **answer, size_t *answer_len)
{
    char tb[768];
    const char *label = ctx->ld->label;
    const char *code = PROTO_PROCESSING_ERROR;
    const char *type = h->err_type;
    const char *message = h->err_message;
    char buf[256];

    switch (status) {
    case ASYA_OK:
    case ASYA_ERROR:
        if (h->out_of_memory) {
            snprintf(tb, sizeof tb, "handler %s: appending result %zu", label, h->results);
            return error_answer(PROTO_OOM_ERROR, "out of memory while collecting results",
                                "MemoryError", tb, answer, answer_len);
        }
        if (h->rejected) {
            /* The runtime's reason beats the handler's generic one. */
            snprintf(tb, sizeof tb, "handler %s: result rejected by asya-runtime", label);
            return error_answer(PROTO_PROCESSING_ERROR, h->reject_message, h->reject_type, tb,
                                answer, answer_len);
        }
        if (status == ASYA_OK) {
            if (h->results == 0 || sbuf_add(&h->out, "]", 1) != 0) {
                if (h->results)
                    return error_answer(PROTO_OOM_ERROR, "out of memory finishing the answer",
                                        "MemoryError", label, answer, answer_len);
                *answer = strdup("[]");
                *answer_len = 2;
                return *answer ? 0 : -ENOMEM;
            }
            *answer = h->out.p;
            *answer_len = h->out.len;
            h->out.p = NULL;
            return 0;
        }
        if (!type || !*type)
            type = "HandlerError";
        if (!message)
            message = "handler reported an error";
        snprintf(tb, sizeof tb, "handler %s returned ASYA_ERROR", label);
        break;
    case ASYA_OOM:
        code = PROTO_OOM_ERROR;
        if (!type || !*type)
            type = "MemoryError";
        if (!message || !*message)
            message = "handler reported out of memory";
        snprintf(tb, sizeof tb, "handler %s returned ASYA_OOM", label);
        break;
    case ASYA_CUDA_OOM:
        code = PROTO_CUDA_OOM_ERROR;
        if (!type || !*type)
            type = "OutOfMemoryError";
        if (!message || !*message)
            message = "handler reported CUDA out of memory";
        snprintf(tb, sizeof tb, "handler %s returned ASYA_CUDA_OOM", label);
        break;
    default:
        type = "HandlerError";
        snprintf(buf, sizeof buf,
                 "handler returned unknown status %d (expected ASYA_OK, ASYA_ERROR, ASYA_OOM or "
                 "ASYA_CUDA_OOM)",
                 status);
        message = buf;
        snprintf(tb, sizeof tb, "handler %s returned %d", label, status);
        break;
    }
    return error_answer(code, message, type, tb, answer, answer_len);
}

int worker_handle(const struct worker_ctx *ctx, const char *req, size_t len, char **answer,
                  size_t *answer_len)
{
    struct envelope env;
    char why[512];
    int rc;
    *answer = NULL;
    *answer_len = 0;

    if (envelope_parse(req, len, ENVELOPE_ALLOW_FINISHED | ENVELOPE_SCAN, &env, why, sizeof why) !=
        0) {
        const char *type = strncmp(why, "invalid JSON", 12) == 0 ? "JSONDecodeError" : "ValueError";
        rc = error_answer(PROTO_PARSING_ERROR, why, type, "asya-runtime: envelope validation",
                          answer, answer_len);
        goto out;
    }

    struct call_host h;
    memset(&h, 0, sizeof h);
    h.ctx = ctx;
    h.in = &env;
    h.progress_on = ctx->client_fd >= 0 && progress_asked(&env);

    char *payload = NULL;
    size_t payload_len = 0;
    char *route = member_text(req, len, &env, "route", &h.route_len);
    if (ctx->mode == ASYA_MODE_PAYLOAD)
        payload = member_text(req, len, &env, "payload", &payload_len);
    if (!route || (ctx->mode == ASYA_MODE_PAYLOAD && !payload)) {
        free(route);
        free(payload);
        envelope_free(&env);
        rc = error_answer(PROTO_OOM_ERROR, "out of memory preparing the request", "MemoryError",
                          "asya-runtime worker", answer, answer_len);
        goto out;
    }
    h.route = route;

    struct asya_call call = {
        .size = sizeof(struct asya_call),
        .mode = (uint32_t)ctx->mode,
        .input = ctx->mode == ASYA_MODE_PAYLOAD ? payload : req,
        .input_len = ctx->mode == ASYA_MODE_PAYLOAD ? payload_len : len,
        .envelope = req,
        .envelope_len = len,
        .emit = host_emit,
        .set_error = host_set_error,
        .host = &h,
        .progress = host_progress,
    };
    if (env.id)
        log_debug_id(env.id, "calling %s (%zu bytes)", ctx->ld->label, len);
    int status = ctx->ld->fn(&call);
    rc = build_answer(ctx, &h, status, answer, answer_len);

    free(h.out.p);
    free(h.err_type);
    free(h.err_message);
    free(route);
    free(payload);
    envelope_free(&env);
out:
    if (rc == -ENOMEM) {
        *answer = malloc(sizeof oom_answer);
        if (!*answer)
            return -ENOMEM;
        memcpy(*answer, oom_answer, sizeof oom_answer);
        *answer_len = sizeof oom_answer - 1;
        rc = 0;
    }
    return rc;
}

/* ---- the worker process ---------------------------------------------------- */

static int send_control(int fd, const char *kind, const char *message, const struct loader *ld)
{
    json_t *o = json_object();
    if (!o)
        return -ENOMEM;
    json_object_set_new(o, WORKER_MSG_KEY, json_string(kind));
    if (message)
        json_object_set_new(o, "message", json_string(message));
    if (ld && ld->module_name)
        json_object_set_new(o, "module", json_string(ld->module_name));
    if (ld && ld->module_version)
        json_object_set_new(o, "version", json_string(ld->module_version));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return -ENOMEM;
    int rc = frame_send(fd, s, strlen(s));
    free(s);
    return rc;
}

/*
 * Serves the request on the lent connection ctx->client_fd: reads it, runs
 * it, writes the answer.  Returns 0 with *reusable telling whether the
 * connection can carry another request; -ENOMEM when the request could
 * not even be allocated (nothing was consumed), -ECANCELED when not even an
 * error answer could be (the request was read): the worker must exit.
 */
static int worker_serve(const struct worker_ctx *ctx, const char *body, size_t body_len, size_t max,
                        bool *reusable)
{
    char *buf = NULL, *req = NULL;
    size_t len = 0;
    *reusable = false;
    int rc = client_read_request(ctx, (const unsigned char *)body, body + HANDOFF_META_LEN,
                                 body_len - HANDOFF_META_LEN, max, &buf, &req, &len);
    if (rc == -ENOMEM)
        return rc;
    if (rc) {
        log_debug("reading the request: %s", strerror(-rc));
        return 0;
    }
    char *answer = NULL;
    size_t answer_len = 0;
    rc = worker_handle(ctx, req, len, &answer, &answer_len);
    free(buf);
    if (rc) {
        log_error("out of memory building an answer");
        return -ECANCELED; /* exit: the supervisor answers for the request */
    }
    struct frame_writer w;
    handoff_set(ctx->ledger, HANDOFF_WRITING);
    rc = frame_writer_init(&w, answer, answer_len);
    if (rc == 0)
        rc = client_write_frame(ctx->client_fd, &w);
    free(answer);
    if (rc) {
        log_debug("client went away before its answer was written: %s", strerror(-rc));
        return 0;
    }
    handoff_set(ctx->ledger, HANDOFF_ANSWERED);
    *reusable = true;
    return 0;
}

int worker_main(int fd, const struct runtime_config *cfg)
{
    char err[1024];
    struct loader ld;

    wsetup_signals();
    wsetup_channel(fd);
    struct handoff_ledger *ledger = handoff_ledger_map(WORKER_LEDGER_FD);

    if (wsetup_memory_limit(cfg, err, sizeof err) != 0 ||
        loader_open(&ld, cfg->handler, cfg->lib_path, cfg->func, err, sizeof err) != 0) {
        handoff_ledger_free(ledger);
        if (send_control(fd, WORKER_MSG_FATAL, err, NULL) != 0)
            log_error("%s", err); /* the supervisor is gone; say it ourselves */
        return 1;
    }
    if (!ledger) {
        snprintf(err, sizeof err, "worker: cannot map its ledger (fd %d): %s", WORKER_LEDGER_FD,
                 strerror(errno));
        if (send_control(fd, WORKER_MSG_FATAL, err, NULL) != 0)
            log_error("%s", err);
        loader_close(&ld);
        return 1;
    }
    if (send_control(fd, WORKER_MSG_READY, NULL, &ld) != 0) {
        handoff_ledger_free(ledger);
        loader_close(&ld);
        return 1;
    }
    struct worker_ctx ctx = {.ld = &ld,
                             .mode = cfg->mode,
                             .max_answer = cfg->max_message,
                             .client_fd = -1,
                             .ledger = ledger};
    int status = 0;
    int kept_fd = -1; /* the last connection served, kept for the next request on it */
    uint64_t kept_id = 0;
    for (;;) {
        char *pre = NULL;
        size_t pre_len = 0;
        int cfd = -1;
        int rc = handoff_recv(fd, &pre, &pre_len, &cfd);
        if (rc == -EPIPE)
            break; /* the supervisor closed the channel: clean stop */
        if (rc) {
            log_error("worker channel: %s", strerror(-rc));
            status = 1;
            break;
        }
        uint64_t id = handoff_body_id(pre);
        if (cfd >= 0) {
            if (kept_fd >= 0)
                close(kept_fd);
            kept_fd = cfd;
            kept_id = id;
        } else if (kept_fd < 0 || id != kept_id) {
            log_error("worker channel: a connection lent without its fd");
            free(pre);
            status = 1;
            break;
        }
        ctx.client_fd = kept_fd;
        bool reusable = false;
        rc = worker_serve(&ctx, pre, pre_len, cfg->max_message, &reusable);
        free(pre);
        ctx.client_fd = -1;
        if (rc == -ENOMEM || rc == -ECANCELED) {
            /* -ENOMEM: nothing of the request was consumed, it waits for
             * the next worker; -ECANCELED: the supervisor answers it. */
            if (rc == -ENOMEM)
                log_error("out of memory for a request: exiting");
            status = 1;
            break;
        }
        if (!reusable) {
            close(kept_fd); /* the supervisor closes it too */
            kept_fd = -1;
        }
        rc = frame_send(fd, HANDOFF_DONE_CLOSE, reusable ? 0 : strlen(HANDOFF_DONE_CLOSE));
        if (rc) {
            log_debug("worker channel closed while giving the connection back: %s", strerror(-rc));
            break;
        }
    }
    if (kept_fd >= 0)
        close(kept_fd);
    handoff_ledger_free(ledger);
    loader_close(&ld);
    return status;
}
