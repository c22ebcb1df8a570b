/* Unit tests for src/runtime/chan.c: the supervisor's end of a worker's
 * channel, over real socketpairs and real child processes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "chan.h"
#include "usock.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

/* What the callbacks saw. */
struct seen {
    int frames;
    char last[64];
    int ends;
    int end_err;
    bool stop; /* on_frame ends reading */
};

static bool on_frame(void *data, char *body, size_t len)
{
    struct seen *s = data;
    s->frames++;
    snprintf(s->last, sizeof s->last, "%.*s", (int)len, body);
    free(body);
    return !s->stop;
}

static void on_end(void *data, int err)
{
    struct seen *s = data;
    s->ends++;
    s->end_err = err;
}

struct fixture {
    struct ev_loop *loop;
    struct chan ch;
    struct seen seen;
    int peer; /* the worker's end */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(f->loop);
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    chan_init(&f->ch, f->loop, on_frame, on_end, &f->seen);
    assert_int_equal(usock_set_nonblock(sp[0], 1), 0);
    chan_open(&f->ch, sp[0], 64);
    f->peer = sp[1];
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    chan_close(&f->ch);
    chan_close(&f->ch); /* closed is fine */
    if (f->peer >= 0)
        close(f->peer);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

static void put(int fd, const char *bytes, size_t n)
{
    assert_int_equal(write(fd, bytes, n), (ssize_t)n);
}

static void test_one_frame_per_read(void **state)
{
    struct fixture *f = *state;
    put(f->peer,
        "\0\0\0\x01"
        "a\0\0\0\x02"
        "bc",
        11);
    assert_int_equal(chan_read(&f->ch), 1);
    assert_string_equal(f->seen.last, "a");
    assert_int_equal(chan_read(&f->ch), 1);
    assert_string_equal(f->seen.last, "bc");
    assert_int_equal(chan_read(&f->ch), 0); /* nothing more now */
    assert_int_equal(f->seen.frames, 2);
    assert_int_equal(f->seen.ends, 0);
}

static void test_end_of_stream(void **state)
{
    struct fixture *f = *state;
    close(f->peer);
    f->peer = -1;
    assert_int_equal(chan_read(&f->ch), -1);
    assert_int_equal(f->seen.ends, 1);
    assert_int_equal(f->seen.end_err, -EPIPE);
    assert_false(f->ch.reset);
    /* Reading has ended: no second report. */
    assert_int_equal(chan_read(&f->ch), -1);
    assert_int_equal(f->seen.ends, 1);
}

static void test_frame_too_large(void **state)
{
    struct fixture *f = *state;
    put(f->peer, "\xff\xff\xff\xff", 4);
    assert_int_equal(chan_read(&f->ch), -1);
    assert_int_equal(f->seen.end_err, -EMSGSIZE);
    assert_int_equal(chan_read(&f->ch), -1);
    assert_int_equal(f->seen.ends, 1);
}

static void test_callback_ends_reading(void **state)
{
    struct fixture *f = *state;
    f->seen.stop = true;
    put(f->peer,
        "\0\0\0\x01"
        "a\0\0\0\x01"
        "b",
        10);
    assert_int_equal(chan_read(&f->ch), -1);
    assert_true(f->ch.ended);
    assert_int_equal(chan_read(&f->ch), -1);
    assert_int_equal(f->seen.frames, 1);
    assert_int_equal(f->seen.ends, 0); /* not an end of stream */
}

/* The peer read the whole request: delivered, before and after its end. */
static void test_delivered_when_read(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(chan_send(&f->ch, "req", 3), 0);
    char buf[16];
    assert_int_equal(read(f->peer, buf, sizeof buf), 7);
    assert_memory_equal(buf, "\0\0\0\x03req", 7);
    assert_true(chan_delivered(&f->ch));
    close(f->peer);
    f->peer = -1;
    assert_int_equal(chan_read(&f->ch), -1);
    assert_int_equal(f->seen.end_err, -EPIPE);
    assert_true(chan_delivered(&f->ch));
}

/* The peer's socket went away with the request unread: our end is reset. */
static void test_not_delivered_when_dropped_unread(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(chan_send(&f->ch, "req", 3), 0);
    close(f->peer);
    f->peer = -1;
    assert_int_equal(chan_read(&f->ch), -1);
    assert_int_equal(f->seen.end_err, -ECONNRESET);
    assert_true(f->ch.reset);
    assert_false(chan_delivered(&f->ch));
}

/* A process that exits with the request unread, while another (its child)
 * keeps the socket open: nothing is reset, the bytes are still queued. */
static void test_not_delivered_while_queued(void **state)
{
    struct fixture *f = *state;
    int hold[2];
    assert_int_equal(pipe(hold), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char c;
        close(hold[1]);
        (void)read(hold[0], &c, 1); /* holds f->peer until the pipe closes */
        _exit(0);
    }
    close(hold[0]);
    assert_int_equal(chan_send(&f->ch, "req", 3), 0);
    close(f->peer); /* the "worker" is gone; its child still has the socket */
    f->peer = -1;
    assert_int_equal(chan_read(&f->ch), 0);
    assert_false(chan_delivered(&f->ch));
    close(hold[1]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /* The last holder went away with the bytes unread. */
    assert_int_equal(chan_read(&f->ch), -1);
    assert_int_equal(f->seen.end_err, -ECONNRESET);
    assert_false(chan_delivered(&f->ch));
}

/* A request larger than the socket buffer goes out as the loop finds the fd
 * writable; until all of it is read it is not delivered. */
static void test_partial_send_resumes(void **state)
{
    struct fixture *f = *state;
    int small = 4096;
    assert_int_equal(setsockopt(f->ch.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    size_t big = 256u * 1024u;
    char *body = malloc(big);
    assert_non_null(body);
    memset(body, 'x', big);
    assert_int_equal(chan_send(&f->ch, body, big), 0);
    assert_false(frame_writer_done(&f->ch.wr));
    assert_false(chan_delivered(&f->ch));
    size_t got = 0;
    char buf[8192];
    assert_int_equal(usock_set_nonblock(f->peer, 1), 0);
    for (int spins = 0; got < big + 4 && spins < 100000; spins++) {
        ev_run(f->loop, EVRUN_NOWAIT);
        ssize_t n = read(f->peer, buf, sizeof buf);
        if (n > 0)
            got += (size_t)n;
    }
    assert_int_equal(got, big + 4);
    assert_true(frame_writer_done(&f->ch.wr));
    assert_true(chan_delivered(&f->ch));
    free(body);
}

/* Cancelled: the rest is never written (its body is going away). */
static void test_cancel(void **state)
{
    struct fixture *f = *state;
    int small = 4096;
    assert_int_equal(setsockopt(f->ch.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    size_t big = 256u * 1024u;
    char *body = calloc(1, big);
    assert_non_null(body);
    assert_int_equal(chan_send(&f->ch, body, big), 0);
    size_t off = f->ch.wr.off;
    chan_cancel(&f->ch);
    free(body);
    char buf[8192];
    assert_int_equal(usock_set_nonblock(f->peer, 1), 0);
    for (int i = 0; i < 100; i++) {
        ev_run(f->loop, EVRUN_NOWAIT);
        (void)read(f->peer, buf, sizeof buf);
    }
    assert_int_equal(f->ch.wr.off, off);
    assert_false(chan_delivered(&f->ch));
}

static void test_send_to_gone_peer(void **state)
{
    struct fixture *f = *state;
    /* It shut its reading side: not one byte goes out. */
    assert_int_equal(shutdown(f->peer, SHUT_RD), 0);
    assert_int_equal(chan_send(&f->ch, "req", 3), -EPIPE);
    close(f->peer);
    f->peer = -1;
    assert_int_equal(chan_send(&f->ch, "req", 3), -EPIPE);
    chan_close(&f->ch);
    assert_int_equal(chan_send(&f->ch, "req", 3), -EBADF);
    assert_int_equal(chan_read(&f->ch), -1);
}

int main(void)
{
    signal(SIGPIPE, SIG_DFL); /* a write without MSG_NOSIGNAL would kill the test */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_frame_per_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_end_of_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_ends_reading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivered_when_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_delivered_when_dropped_unread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_delivered_while_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_send_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_to_gone_peer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
