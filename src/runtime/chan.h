/*
 * chan.h - the supervisor's end of one worker's channel: a unix stream
 * socket carrying frames (frame.h) both ways, driven by the loop.
 *
 * Owns: the fd, the frame being read and the frame being written (whose
 * body is borrowed).  Whole frames read go to a callback, one per call of
 * chan_read; the end of reading goes to another.  After the worker has died,
 * chan_delivered tells whether it had read everything sent to it.
 */
#ifndef ASYA_CHAN_H
#define ASYA_CHAN_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "frame.h"

/* A whole frame arrived: takes ownership of body (len bytes, NUL-terminated;
 * free with free()).  It may close the channel.  Returns false to end
 * reading (the peer broke the protocol). */
typedef bool (*chan_frame_fn)(void *data, char *body, size_t len);

/* Reading ended: err is -EPIPE or -EPROTO (end of stream, between frames or
 * inside one), -ECONNRESET (the peer's end was dropped with bytes unread),
 * -EMSGSIZE (a frame over the limit), -ENOMEM, or another read error.  The
 * channel reads no more; it may be closed here. */
typedef void (*chan_end_fn)(void *data, int err);

struct chan {
    ev_io rio;            /* private; first member */
    ev_io wio;            /* private */
    struct ev_loop *loop; /* borrowed */
    int fd;               /* owned; -1 when closed */
    bool reset;           /* read-only: reading ended with -ECONNRESET */
    bool ended;           /* read-only: reading has ended */
    struct frame_reader rd;
    struct frame_writer wr; /* the frame being sent; its body is borrowed */
    chan_frame_fn on_frame;
    chan_end_fn on_end;
    void *data; /* passed to the callbacks */
};

/* Prepare a closed channel; loop is borrowed for its life. */
void chan_init(struct chan *ch, struct ev_loop *loop, chan_frame_fn on_frame, chan_end_fn on_end,
               void *data);

/* Take fd (non-blocking) and start reading frames of at most max_len bytes. */
void chan_open(struct chan *ch, int fd, size_t max_len);

/*
 * Start sending body (len bytes, borrowed until sent, chan_cancel or
 * chan_close) as one frame; the rest goes out as the fd becomes writable.
 * Returns 0 when it is sent or on its way, or a negative errno when not one
 * byte could be sent (the peer is gone or has shut its end).
 */
int chan_send(struct chan *ch, const char *body, size_t len) __attribute__((warn_unused_result));

/* Stop sending the frame in progress: its body is going away. */
void chan_cancel(struct chan *ch);

/*
 * Read from the channel now: hands at most one whole frame to on_frame.
 * Returns 1 after a frame (call again for more), 0 when nothing more is
 * there now, -1 when reading has ended (on_end was called, or on_frame
 * ended it) or the channel is closed.
 */
int chan_read(struct chan *ch);

/*
 * For a peer that has died: whether it had read everything sent to it, the
 * last frame included.  Bytes it never read either still sit in its socket
 * (SIOCOUTQ, when another process keeps that socket open) or were dropped
 * with it, which resets our end (chan_read then ends with -ECONNRESET; read
 * what is left with chan_read first).
 */
bool chan_delivered(const struct chan *ch);

/* Stop watching, close the fd and drop any partial frame.  Closed is fine. */
void chan_close(struct chan *ch);

#endif /* ASYA_CHAN_H */
