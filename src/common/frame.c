#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>

void frame_put_header(unsigned char hdr[FRAME_HEADER_LEN], uint32_t len)
{
    hdr[0] = (unsigned char)(len >> 24);
    hdr[1] = (unsigned char)(len >> 16);
    hdr[2] = (unsigned char)(len >> 8);
    hdr[3] = (unsigned char)len;
}

uint32_t frame_get_header(const unsigned char hdr[FRAME_HEADER_LEN])
{
    return ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | ((uint32_t)hdr[2] << 8) |
           (uint32_t)hdr[3];
}

void frame_reader_init(struct frame_reader *r, size_t max_len)
{
    memset(r, 0, sizeof *r);
    r->max_len = max_len;
}

int frame_reader_feed(struct frame_reader *r, const void *data, size_t len, size_t *consumed)
{
    const unsigned char *p = data;
    size_t used = 0;
    *consumed = 0;

    if (r->hdr_got == FRAME_HEADER_LEN && r->announced > r->max_len)
        return FRAME_TOO_LARGE;

    while (r->hdr_got < FRAME_HEADER_LEN && used < len)
        r->hdr[r->hdr_got++] = p[used++];
    if (r->hdr_got < FRAME_HEADER_LEN) {
        *consumed = used;
        return FRAME_INCOMPLETE;
    }
    if (!r->body) {
        r->announced = frame_get_header(r->hdr);
        if (r->announced > r->max_len) {
            *consumed = used;
            return FRAME_TOO_LARGE;
        }
        r->body_len = r->announced;
        r->body = malloc(r->body_len + 1);
        if (!r->body) {
            *consumed = used;
            return FRAME_NOMEM;
        }
        r->body_got = 0;
    }
    size_t want = r->body_len - r->body_got;
    size_t take = len - used < want ? len - used : want;
    if (take)
        memcpy(r->body + r->body_got, p + used, take);
    r->body_got += take;
    used += take;
    *consumed = used;
    if (r->body_got < r->body_len)
        return FRAME_INCOMPLETE;
    r->body[r->body_len] = '\0';
    return FRAME_COMPLETE;
}

int frame_reader_partial(const struct frame_reader *r)
{
    return r->hdr_got > 0;
}

char *frame_reader_take(struct frame_reader *r, size_t *len)
{
    char *body = r->body;
    if (len)
        *len = r->body_len;
    r->body = NULL;
    size_t max = r->max_len;
    frame_reader_init(r, max);
    return body;
}

void frame_reader_reset(struct frame_reader *r)
{
    free(r->body);
    size_t max = r->max_len;
    frame_reader_init(r, max);
}

unsigned char *frame_encode(const void *body, size_t len, size_t *out_len)
{
    if (len > UINT32_MAX)
        return NULL;
    unsigned char *buf = malloc(FRAME_HEADER_LEN + len);
    if (!buf)
        return NULL;
    frame_put_header(buf, (uint32_t)len);
    if (len)
        memcpy(buf + FRAME_HEADER_LEN, body, len);
    *out_len = FRAME_HEADER_LEN + len;
    return buf;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads exactly len bytes.  Returns 0, -EPIPE at end of stream before any
 * byte, -EPROTO at end of stream after some, or -errno. */
static int read_all(int fd, void *data, size_t len)
{
    char *p = data;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return got == 0 ? -EPIPE : -EPROTO;
        got += (size_t)n;
    }
    return 0;
}

int frame_send(int fd, const void *body, size_t len)
{
    if (len > UINT32_MAX)
        return -EMSGSIZE;
    unsigned char hdr[FRAME_HEADER_LEN];
    frame_put_header(hdr, (uint32_t)len);
    /* Small frames go out in one write so the peer sees them whole. */
    if (len <= 4096) {
        unsigned char buf[FRAME_HEADER_LEN + 4096];
        memcpy(buf, hdr, FRAME_HEADER_LEN);
        if (len)
            memcpy(buf + FRAME_HEADER_LEN, body, len);
        return write_all(fd, buf, FRAME_HEADER_LEN + len);
    }
    int rc = write_all(fd, hdr, FRAME_HEADER_LEN);
    return rc ? rc : write_all(fd, body, len);
}

int frame_recv(int fd, size_t max_len, char **body, size_t *len)
{
    unsigned char hdr[FRAME_HEADER_LEN];
    int rc = read_all(fd, hdr, sizeof hdr);
    if (rc)
        return rc;
    uint32_t n = frame_get_header(hdr);
    if (n > max_len)
        return -EMSGSIZE;
    char *buf = malloc((size_t)n + 1);
    if (!buf)
        return -ENOMEM;
    rc = read_all(fd, buf, n);
    if (rc) {
        free(buf);
        return rc == -EPIPE ? -EPROTO : rc;
    }
    buf[n] = '\0';
    *body = buf;
    *len = n;
    return 0;
}

/* ---- non-blocking fds ----------------------------------------------------- */

int frame_writer_init(struct frame_writer *w, const void *body, size_t len)
{
    memset(w, 0, sizeof *w);
    if (len > UINT32_MAX) {
        w->off = FRAME_HEADER_LEN;
        return -EMSGSIZE;
    }
    frame_put_header(w->hdr, (uint32_t)len);
    w->body = body;
    w->len = len;
    return 0;
}

int frame_writer_done(const struct frame_writer *w)
{
    return w->off >= FRAME_HEADER_LEN + w->len;
}

int frame_writer_write(struct frame_writer *w, int fd)
{
    while (!frame_writer_done(w)) {
        struct iovec iov[2];
        size_t n = 0;
        if (w->off < FRAME_HEADER_LEN) {
            iov[n].iov_base = w->hdr + w->off;
            iov[n].iov_len = FRAME_HEADER_LEN - w->off;
            n++;
            if (w->len) {
                iov[n].iov_base = (void *)w->body;
                iov[n].iov_len = w->len;
                n++;
            }
        } else {
            size_t boff = w->off - FRAME_HEADER_LEN;
            iov[n].iov_base = (void *)(w->body + boff);
            iov[n].iov_len = w->len - boff;
            n++;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
        ssize_t wr = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (wr < 0 && errno == ENOTSOCK)
            wr = writev(fd, iov, (int)n);
        if (wr < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return FRAME_IO_AGAIN;
            return -errno;
        }
        w->off += (size_t)wr;
    }
    return FRAME_IO_DONE;
}

/* One read(2) into buf, retrying EINTR.  Returns the byte count (> 0),
 * FRAME_IO_AGAIN, -EPIPE at end of stream, or a negative errno. */
static ssize_t read_some(int fd, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n > 0)
            return n;
        if (n == 0)
            return -EPIPE;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return FRAME_IO_AGAIN;
        return -errno;
    }
}

int frame_reader_read(struct frame_reader *r, int fd)
{
    for (;;) {
        ssize_t n;
        if (r->hdr_got < FRAME_HEADER_LEN) {
            n = read_some(fd, r->hdr + r->hdr_got, FRAME_HEADER_LEN - r->hdr_got);
            if (n <= 0)
                return n == -EPIPE && r->hdr_got ? -EPROTO : (int)n;
            r->hdr_got += (size_t)n;
            continue;
        }
        if (!r->body) {
            r->announced = frame_get_header(r->hdr);
            if (r->announced > r->max_len)
                return -EMSGSIZE;
            r->body_len = r->announced;
            r->body = malloc(r->body_len + 1);
            if (!r->body)
                return -ENOMEM;
            r->body_got = 0;
        }
        if (r->body_got == r->body_len) {
            r->body[r->body_len] = '\0';
            return FRAME_IO_DONE;
        }
        n = read_some(fd, r->body + r->body_got, r->body_len - r->body_got);
        if (n <= 0)
            return n == -EPIPE ? -EPROTO : (int)n;
        r->body_got += (size_t)n;
    }
}
