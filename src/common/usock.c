#include "usock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len >= sizeof sa->sun_path)
        return -ENAMETOOLONG;
    memcpy(sa->sun_path, path, len + 1);
    return 0;
}

int usock_listen(const char *path, int mode, int backlog, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    int rc = fill_addr(&sa, path);
    if (rc) {
        snprintf(err, errlen, "socket path too long (max %zu bytes): %s", sizeof sa.sun_path - 1,
                 path);
        return rc;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return rc;
    }
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path); /* stale socket from a previous run */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        rc = -errno;
        snprintf(err, errlen, "bind %s: %s", path, strerror(errno));
        goto fail;
    }
    if (mode >= 0 && chmod(path, (mode_t)mode) < 0) {
        rc = -errno;
        snprintf(err, errlen, "chmod %s %o: %s", path, mode, strerror(errno));
        unlink(path);
        goto fail;
    }
    if (listen(fd, backlog) < 0) {
        rc = -errno;
        snprintf(err, errlen, "listen %s: %s", path, strerror(errno));
        unlink(path);
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return rc;
}

int usock_connect(const char *path, int nonblock)
{
    struct sockaddr_un sa;
    int rc = fill_addr(&sa, path);
    if (rc)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -errno;
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno == EINTR)
            continue;
        /* A unix socket whose backlog is full answers EAGAIN when non-blocking. */
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int usock_set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}
