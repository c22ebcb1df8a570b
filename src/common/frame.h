/*
 * frame.h - the sidecar <-> runtime framing: a 4-byte big-endian length, then
 * that many bytes of UTF-8 JSON.
 */
#ifndef ASYA_FRAME_H
#define ASYA_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_LEN 4

/* Default ASYA_MAX_MESSAGE_BYTES: 64 MiB. */
#define FRAME_DEFAULT_MAX ((size_t)64 * 1024 * 1024)

/* Write / read the 4-byte big-endian header. */
void frame_put_header(unsigned char hdr[FRAME_HEADER_LEN], uint32_t len);
uint32_t frame_get_header(const unsigned char hdr[FRAME_HEADER_LEN]);

/* Result of frame_reader_feed. */
enum frame_status {
    FRAME_INCOMPLETE = 0, /* need more bytes */
    FRAME_COMPLETE = 1,   /* one frame ready: take it with frame_reader_take */
    FRAME_TOO_LARGE = -1, /* the header announced more than max_len bytes */
    FRAME_NOMEM = -2,     /* allocating the body failed */
};

/*
 * Incremental decoder for non-blocking sockets.  The body buffer is allocated
 * only once the header is known to be within max_len, so a hostile length
 * never makes it allocate.
 */
struct frame_reader {
    unsigned char hdr[FRAME_HEADER_LEN];
    size_t hdr_got;
    char *body; /* owned; NUL-terminated once complete */
    size_t body_len;
    size_t body_got;
    size_t max_len;
    uint32_t announced; /* length from the header, valid when hdr_got == 4 */
};

/* Prepare an empty reader that accepts bodies of at most max_len bytes. */
void frame_reader_init(struct frame_reader *r, size_t max_len);

/*
 * Consume bytes from data (len bytes) until one frame completes or data runs
 * out; *consumed tells how many were used (the rest belong to the next
 * frame).  Returns an enum frame_status.  After FRAME_TOO_LARGE the reader
 * stays in that state; r->announced holds the refused length.
 */
int frame_reader_feed(struct frame_reader *r, const void *data, size_t len, size_t *consumed);

/* True when some bytes of a frame have been consumed but it is not complete. */
int frame_reader_partial(const struct frame_reader *r);

/* After FRAME_COMPLETE: hand over the body (NUL-terminated; free with free())
 * and its length, and reset the reader for the next frame. */
char *frame_reader_take(struct frame_reader *r, size_t *len);

/* Drop any partial frame and free its buffer; the reader can be reused. */
void frame_reader_reset(struct frame_reader *r);

/* Allocate header + body in one buffer (free with free()); *out_len gets the
 * total.  Returns NULL on allocation failure or if len does not fit 32 bits. */
unsigned char *frame_encode(const void *body, size_t len, size_t *out_len);

/* Blocking helpers for simple peers (workers, tools, tests).  Both retry
 * EINTR and partial transfers. */

/* Send one frame.  Returns 0 or a negative errno. */
int frame_send(int fd, const void *body, size_t len) __attribute__((warn_unused_result));

/*
 * Receive one frame.  Returns 0 with *body (NUL-terminated, free with free())
 * and *len set; -EPIPE on a clean end of stream before any byte; -EPROTO on a
 * stream that ends mid-frame; -EMSGSIZE if the header announces more than
 * max_len (the body is not read); or another negative errno.
 */
int frame_recv(int fd, size_t max_len, char **body, size_t *len)
    __attribute__((warn_unused_result));

/* ---- non-blocking fds --------------------------------------------------------
 *
 * frame_writer_write and frame_reader_read move one frame between memory and
 * a non-blocking fd, a piece at a time: call again when the fd is ready.
 * Besides a negative errno they return one of these.
 */
#define FRAME_IO_AGAIN 0 /* the fd would block: wait until it is ready, then call again */
#define FRAME_IO_DONE  1 /* the whole frame is written / one whole frame has been read */

/* One outgoing frame: its header and a borrowed body. */
struct frame_writer {
    unsigned char hdr[FRAME_HEADER_LEN];
    const char *body; /* borrowed: must stay valid until the frame is written */
    size_t len;
    size_t off; /* header + body bytes written so far */
};

/*
 * Prepare w to send body (len bytes, borrowed; NULL is fine when len is 0)
 * as one frame.  Returns 0, or -EMSGSIZE when len does not fit the 32-bit
 * header (w is then an empty, finished frame).
 */
int frame_writer_init(struct frame_writer *w, const void *body, size_t len)
    __attribute__((warn_unused_result));

/*
 * Write what fits of w's frame to fd, resuming where the last call stopped:
 * header and body go out together (sendmsg with MSG_NOSIGNAL, so a closed
 * peer is -EPIPE and never SIGPIPE; writev when fd is not a socket).
 * Retries EINTR.  Returns FRAME_IO_DONE once everything is written,
 * FRAME_IO_AGAIN when fd is full, or a negative errno.
 */
int frame_writer_write(struct frame_writer *w, int fd) __attribute__((warn_unused_result));

/* True once the whole frame has been written. */
int frame_writer_done(const struct frame_writer *w);

/*
 * Read from fd into r until one frame is complete, never past its end, so
 * the bytes of a following frame stay in fd (a peer may pipeline).  The body
 * is read straight into its buffer.  Retries EINTR.  Returns FRAME_IO_DONE
 * (take the body with frame_reader_take), FRAME_IO_AGAIN (fd has nothing
 * more now), -EPIPE at end of stream between frames, -EPROTO at end of
 * stream inside a frame, -EMSGSIZE when the header announces more than
 * r->max_len (r->announced holds the length; the reader stays refused),
 * -ENOMEM when the body cannot be allocated, or a negative errno of read(2)
 * such as -ECONNRESET.
 */
int frame_reader_read(struct frame_reader *r, int fd) __attribute__((warn_unused_result));

#endif /* ASYA_FRAME_H */
