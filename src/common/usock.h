/* usock.h - unix stream socket helpers.  They return an fd or a negative
 * errno and never log; messages go into the caller's buffer. */
#ifndef ASYA_USOCK_H
#define ASYA_USOCK_H

#include <stddef.h>

/* Remove a stale socket file at path, bind, chmod (mode < 0 leaves it) and
 * listen.  The fd is non-blocking and close-on-exec.  Returns the fd, or a
 * negative errno with a message in err. */
int usock_listen(const char *path, int mode, int backlog, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Connect to path.  With nonblock the fd is non-blocking (a unix connect
 * completes or fails at once).  Returns the fd or a negative errno
 * (-ENOENT: no socket file, -ECONNREFUSED: nobody listening). */
int usock_connect(const char *path, int nonblock) __attribute__((warn_unused_result));

/* Set or clear O_NONBLOCK.  Returns 0 or a negative errno. */
int usock_set_nonblock(int fd, int on);

#endif /* ASYA_USOCK_H */
