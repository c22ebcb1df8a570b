#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

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
