/* Unit tests for src/runtime/handoff.c: lending a connection over a real
 * socketpair (with and without its fd, with a prefix) and the shared ledger. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "handoff.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const unsigned char hint[FRAME_HEADER_LEN] = {0, 0, 1, 2};

static void pair(int sp[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
}

static void test_fd_travels_with_hint_and_id(void **state)
{
    (void)state;
    int ch[2], cl[2];
    pair(ch);
    pair(cl);
    assert_int_equal(handoff_send(ch[0], cl[0], hint, 42, NULL, 0), 0);
    char *body = NULL;
    size_t len = 0;
    int fd = -1;
    assert_int_equal(handoff_recv(ch[1], &body, &len, &fd), 0);
    assert_int_equal(len, HANDOFF_META_LEN);
    assert_memory_equal(body, hint, sizeof hint);
    assert_int_equal(handoff_body_id(body), 42);
    assert_true(fd >= 0 && fd != cl[0]);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC); /* never inherited by a handler's programs */
    /* The same socket: what the client writes, the received fd reads. */
    assert_int_equal(write(cl[1], "hi", 2), 2);
    char buf[4] = {0};
    assert_int_equal(read(fd, buf, sizeof buf), 2);
    assert_string_equal(buf, "hi");
    free(body);
    close(fd);
    close(ch[0]);
    close(ch[1]);
    close(cl[0]);
    close(cl[1]);
}

static void test_kept_connection_and_prefix(void **state)
{
    (void)state;
    int ch[2];
    pair(ch);
    assert_int_equal(handoff_send(ch[0], -1, hint, 7, "\0\0\0\3abc", 7), 0);
    char *body = NULL;
    size_t len = 0;
    int fd = 99;
    assert_int_equal(handoff_recv(ch[1], &body, &len, &fd), 0);
    assert_int_equal(fd, -1);
    assert_int_equal(len, HANDOFF_META_LEN + 7);
    assert_int_equal(handoff_body_id(body), 7);
    assert_memory_equal(body + HANDOFF_META_LEN, "\0\0\0\3abc", 7);
    assert_int_equal(body[len], '\0');
    free(body);
    char big[HANDOFF_PREFIX_MAX + 1] = {0};
    assert_int_equal(handoff_send(ch[0], -1, hint, 7, big, sizeof big), -EMSGSIZE);
    close(ch[0]);
    assert_int_equal(handoff_recv(ch[1], &body, &len, &fd), -EPIPE);
    close(ch[1]);
}

static void test_bad_frames(void **state)
{
    (void)state;
    int ch[2];
    pair(ch);
    /* Shorter than the hint and id: a protocol error. */
    assert_int_equal(write(ch[0], "\0\0\0\2abcdefghijkl", 16), 16);
    char *body = NULL;
    size_t len = 0;
    int fd = -1;
    assert_int_equal(handoff_recv(ch[1], &body, &len, &fd), -EPROTO);
    /* A stream ending inside a frame. */
    assert_int_equal(write(ch[0], "\0\0\0\40abcdefghijkl", 16), 16);
    shutdown(ch[0], SHUT_WR);
    close(ch[0]);
    assert_int_equal(handoff_recv(ch[1], &body, &len, &fd), -EPROTO);
    close(ch[1]);
}

static void test_send_to_full_or_gone_channel(void **state)
{
    (void)state;
    int ch[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, ch), 0);
    char junk[4096] = {0};
    while (write(ch[0], junk, sizeof junk) > 0)
        ;
    assert_int_equal(handoff_send(ch[0], -1, hint, 1, NULL, 0), -EAGAIN);
    close(ch[1]);
    assert_int_equal(handoff_send(ch[0], -1, hint, 1, NULL, 0), -EPIPE);
    close(ch[0]);
}

static void test_ledger_is_shared_across_processes(void **state)
{
    (void)state;
    int fd = -1;
    struct handoff_ledger *lg = handoff_ledger_new(&fd);
    assert_non_null(lg);
    assert_true(fd >= 0);
    assert_int_equal(handoff_get(lg), HANDOFF_IDLE);
    assert_int_equal(handoff_get(NULL), HANDOFF_IDLE);
    handoff_set(NULL, HANDOFF_RUNNING); /* nothing happens */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* As a worker does: its own mapping of the same memfd. */
        struct handoff_ledger *mine = handoff_ledger_map(dup(fd));
        if (!mine)
            _exit(2);
        handoff_set(mine, HANDOFF_WRITING);
        handoff_ledger_free(mine);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(handoff_get(lg), HANDOFF_WRITING);
    handoff_set(lg, HANDOFF_IDLE);
    assert_int_equal(handoff_get(lg), HANDOFF_IDLE);
    handoff_ledger_free(lg);
    handoff_ledger_free(NULL);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_travels_with_hint_and_id),
        cmocka_unit_test(test_kept_connection_and_prefix),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_send_to_full_or_gone_channel),
        cmocka_unit_test(test_ledger_is_shared_across_processes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
