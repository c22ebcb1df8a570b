/*
 * rtclient.h - the sidecar's client of the runtime socket: up to
 * ASYA_CONCURRENCY calls in flight, one slot each.
 *
 * Owns the slots, their runtime connections (kept open between calls while
 * the runtime keeps them; the reference runtime closes after every answer),
 * the framed non-blocking request writes and answer reads, and the
 * per-call ASYA_RUNTIME_TIMEOUT timer.  A request that went out on a reused
 * connection the runtime had already closed is resent once on a fresh one.
 * The caller's message is an opaque pointer; its body must stay valid until
 * one of the events for it has been called.  Every event is called after the
 * call's slot is free again, so the callee may start the next call at once.
 */
#ifndef ASYA_RTCLIENT_H
#define ASYA_RTCLIENT_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rtclient;

struct rtclient_options {
    const char *socket_path; /* borrowed */
    unsigned slots;          /* ASYA_CONCURRENCY */
    size_t max_answer;       /* ASYA_MAX_MESSAGE_BYTES */
    double timeout_s;        /* ASYA_RUNTIME_TIMEOUT */
};

struct rtclient_events {
    /* A progress frame (protocol.h) ahead of the answer of a call started
     * with progress; frame (NUL-terminated) is only borrowed.  The call goes
     * on: its slot stays taken.  NULL: progress frames are ignored. */
    void (*progress)(void *ctx, void *msg, const char *frame, size_t len);
    /* A whole answer: answer (NUL-terminated) is the callee's to free(). */
    void (*answer)(void *ctx, void *msg, char *answer, size_t len, double exec_s);
    /* The connection broke after the request went out (the runtime died). */
    void (*broken)(void *ctx, void *msg, const char *why);
    /* The answer announced more than max_answer bytes. */
    void (*too_large)(void *ctx, void *msg, uint32_t announced);
    /* No answer in time; the connection was dropped, which makes
     * asya-runtime kill and replace the worker. */
    void (*timeout)(void *ctx, void *msg);
    /* The resend on a fresh connection could not connect (-errno). */
    void (*unreachable)(void *ctx, void *msg, int err);
};

/* Returns NULL on allocation failure.  Free with rtclient_free. */
struct rtclient *rtclient_new(struct ev_loop *loop, const struct rtclient_options *opt,
                              const struct rtclient_events *ev, void *ctx);

/* Close every connection and free.  NULL is fine. */
void rtclient_free(struct rtclient *rc);

/* True when a slot is free for rtclient_start. */
bool rtclient_has_free_slot(const struct rtclient *rc);

/*
 * Start a call of msg with body (borrowed) on a free slot (one must exist).
 * progress: body asked the runtime for progress frames (protocol.h), so
 * frames that are progress go to the progress event instead of ending the call.
 * Returns 0, or a negative errno from connecting when the runtime cannot be
 * reached: -EAGAIN means its accept backlog is full (it is busy, not down).
 * On error no slot is taken and no event will come.  On success an event
 * for msg may already have been called (the write failed at once).
 */
int rtclient_start(struct rtclient *rc, void *msg, const char *body, size_t len, bool progress)
    __attribute__((warn_unused_result));

/* Drop every call in progress without events (connections closed, so the
 * runtime replaces busy workers). */
void rtclient_abort_all(struct rtclient *rc);

/* Connect to the runtime socket and hang up: 0 when it accepts, else a
 * negative errno. */
int rtclient_probe(const char *socket_path);

#endif /* ASYA_RTCLIENT_H */
