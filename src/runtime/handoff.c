#include "handoff.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "frame.h"

#define LEDGER_BYTES 4096

struct handoff_ledger *handoff_ledger_new(int *fd)
{
    int mfd = memfd_create("asya-ledger", MFD_CLOEXEC);
    if (mfd < 0) {
        *fd = -errno;
        return NULL;
    }
    if (ftruncate(mfd, LEDGER_BYTES) != 0) {
        *fd = -errno;
        close(mfd);
        return NULL;
    }
    void *p = mmap(NULL, LEDGER_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (p == MAP_FAILED) {
        *fd = -errno;
        close(mfd);
        return NULL;
    }
    *fd = mfd;
    return p;
}

void handoff_ledger_free(struct handoff_ledger *lg)
{
    if (lg)
        munmap(lg, LEDGER_BYTES);
}

struct handoff_ledger *handoff_ledger_map(int fd)
{
    void *p = mmap(NULL, LEDGER_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

void handoff_set(struct handoff_ledger *lg, enum handoff_phase phase)
{
    if (lg)
        __atomic_store_n(&lg->phase, (uint32_t)phase, __ATOMIC_SEQ_CST);
}

enum handoff_phase handoff_get(const struct handoff_ledger *lg)
{
    return lg ? (enum handoff_phase)__atomic_load_n(&lg->phase, __ATOMIC_SEQ_CST) : HANDOFF_IDLE;
}

uint64_t handoff_body_id(const char *body)
{
    uint64_t id;
    memcpy(&id, body + FRAME_HEADER_LEN, sizeof id);
    return id;
}

int handoff_send(int chan, int client, const unsigned char hint[FRAME_HEADER_LEN], uint64_t id,
                 const void *prefix, size_t len)
{
    if (len > HANDOFF_PREFIX_MAX)
        return -EMSGSIZE;
    unsigned char head[FRAME_HEADER_LEN + HANDOFF_META_LEN];
    frame_put_header(head, (uint32_t)(HANDOFF_META_LEN + len));
    memcpy(head + FRAME_HEADER_LEN, hint, FRAME_HEADER_LEN);
    memcpy(head + FRAME_HEADER_LEN + FRAME_HEADER_LEN, &id,
           sizeof id); /* same machine: host order */
    struct iovec iov[2] = {{head, sizeof head}, {(void *)prefix, len}};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    memset(&cm, 0, sizeof cm);
    struct msghdr msg = {
        .msg_iov = iov,
        .msg_iovlen = len ? 2 : 1,
        .msg_control = client >= 0 ? cm.buf : NULL,
        .msg_controllen = client >= 0 ? sizeof cm.buf : 0,
    };
    if (client >= 0) {
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &client, sizeof client);
    }
    ssize_t n;
    do
        n = sendmsg(chan, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return (size_t)n == sizeof head + len ? 0 : -EAGAIN;
}

/* Reads exactly len bytes (blocking fd). */
static int read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EPROTO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int handoff_recv(int chan, char **prefix, size_t *len, int *client)
{
    /* The frame header, the hint and the id in one call; a prefix is rare. */
    unsigned char head[FRAME_HEADER_LEN + HANDOFF_META_LEN];
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    struct iovec iov = {head, sizeof head};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
    ssize_t n;
    do
        n = recvmsg(chan, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -EPIPE;
    int fd = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < nfd; i++) {
                int one;
                memcpy(&one, CMSG_DATA(c) + i * sizeof(int), sizeof one);
                if (fd < 0)
                    fd = one;
                else
                    close(one);
            }
        }
    }
    int rc = (size_t)n < sizeof head ? read_full(chan, head + n, sizeof head - (size_t)n) : 0;
    uint32_t blen = frame_get_header(head);
    if (rc == 0 && (blen < HANDOFF_META_LEN || blen > HANDOFF_META_LEN + HANDOFF_PREFIX_MAX ||
                    (msg.msg_flags & MSG_CTRUNC)))
        rc = -EPROTO;
    char *body = rc == 0 ? malloc(blen + 1) : NULL;
    if (rc == 0 && !body)
        rc = -ENOMEM;
    if (rc == 0) {
        memcpy(body, head + FRAME_HEADER_LEN, HANDOFF_META_LEN);
        rc = read_full(chan, body + HANDOFF_META_LEN, blen - HANDOFF_META_LEN);
    }
    if (rc != 0) {
        free(body);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    body[blen] = '\0';
    *prefix = body;
    *len = blen;
    *client = fd;
    return 0;
}
