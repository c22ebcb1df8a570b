/* Unit tests for src/common/frame.c: 4-byte big-endian length-prefixed frames. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "frame.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- header ------------------------------------------------------------- */

static void test_header_roundtrip(void **state)
{
    (void)state;
    unsigned char h[FRAME_HEADER_LEN];

    frame_put_header(h, 0x01020304u);
    assert_int_equal(h[0], 0x01);
    assert_int_equal(h[1], 0x02);
    assert_int_equal(h[2], 0x03);
    assert_int_equal(h[3], 0x04);
    assert_int_equal(frame_get_header(h), 0x01020304u);

    frame_put_header(h, 0);
    assert_memory_equal(h, "\0\0\0\0", 4);
    assert_int_equal(frame_get_header(h), 0);

    frame_put_header(h, 300);
    assert_memory_equal(h, "\x00\x00\x01\x2c", 4);

    frame_put_header(h, UINT32_MAX);
    assert_memory_equal(h, "\xff\xff\xff\xff", 4);
    assert_int_equal(frame_get_header(h), UINT32_MAX);

    const unsigned char hi[4] = {0x80, 0x00, 0x00, 0x01}; /* sign bit must not leak */
    assert_int_equal(frame_get_header(hi), 0x80000001u);
}

static void test_encode(void **state)
{
    (void)state;
    size_t n = 0;
    unsigned char *buf = frame_encode("{\"a\":1}", 7, &n);
    assert_non_null(buf);
    assert_int_equal(n, 11);
    assert_memory_equal(buf, "\0\0\0\x07{\"a\":1}", 11);
    free(buf);

    n = 99;
    buf = frame_encode(NULL, 0, &n);
    assert_non_null(buf);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "\0\0\0\0", 4);
    free(buf);

#if SIZE_MAX > UINT32_MAX
    n = 99;
    /* Too long for a 32-bit length: refused before touching body. */
    assert_null(frame_encode("x", (size_t)UINT32_MAX + 1, &n));
    assert_int_equal(n, 99);
#endif
}

/* ---- incremental reader ------------------------------------------------- */

/* A buffer with header + body. */
static unsigned char *make_frame(const char *body, size_t len, size_t *total)
{
    unsigned char *buf = frame_encode(body, len, total);
    assert_non_null(buf);
    return buf;
}

static void test_reader_whole_frame(void **state)
{
    (void)state;
    struct frame_reader r;
    frame_reader_init(&r, 1024);
    assert_false(frame_reader_partial(&r));

    size_t total, used = 99;
    unsigned char *f = make_frame("hello", 5, &total);
    assert_int_equal(frame_reader_feed(&r, f, total, &used), FRAME_COMPLETE);
    assert_int_equal(used, total);

    size_t len = 0;
    char *body = frame_reader_take(&r, &len);
    assert_non_null(body);
    assert_int_equal(len, 5);
    assert_string_equal(body, "hello"); /* NUL-terminated */
    assert_false(frame_reader_partial(&r));
    assert_null(r.body);
    assert_int_equal(r.max_len, 1024); /* take keeps the limit */
    free(body);
    free(f);
}

static void test_reader_byte_by_byte(void **state)
{
    (void)state;
    const char *msg = "{\"payload\":{\"x\":1},\"route\":{\"actors\":[\"a\"],\"current\":0}}";
    size_t total;
    unsigned char *f = make_frame(msg, strlen(msg), &total);

    struct frame_reader r;
    frame_reader_init(&r, FRAME_DEFAULT_MAX);
    for (size_t i = 0; i < total; i++) {
        size_t used = 99;
        int st = frame_reader_feed(&r, f + i, 1, &used);
        assert_int_equal(used, 1);
        if (i + 1 < total) {
            assert_int_equal(st, FRAME_INCOMPLETE);
            assert_true(frame_reader_partial(&r));
        } else {
            assert_int_equal(st, FRAME_COMPLETE);
        }
    }
    size_t len;
    char *body = frame_reader_take(&r, &len);
    assert_int_equal(len, strlen(msg));
    assert_string_equal(body, msg);
    free(body);
    free(f);
}

/* Every chunk size from 1 to the frame length gives the same body. */
static void test_reader_all_chunk_sizes(void **state)
{
    (void)state;
    char msg[300];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (char)('a' + i % 26);
    size_t total;
    unsigned char *f = make_frame(msg, sizeof msg, &total);

    for (size_t chunk = 1; chunk <= total; chunk++) {
        struct frame_reader r;
        frame_reader_init(&r, sizeof msg);
        size_t off = 0;
        int st = FRAME_INCOMPLETE;
        while (off < total) {
            size_t n = total - off < chunk ? total - off : chunk;
            size_t used;
            st = frame_reader_feed(&r, f + off, n, &used);
            assert_int_equal(used, n);
            off += used;
            if (off < total)
                assert_int_equal(st, FRAME_INCOMPLETE);
        }
        assert_int_equal(st, FRAME_COMPLETE);
        size_t len;
        char *body = frame_reader_take(&r, &len);
        assert_int_equal(len, sizeof msg);
        assert_memory_equal(body, msg, sizeof msg);
        assert_int_equal(body[len], '\0');
        free(body);
    }
    free(f);
}

static void test_reader_two_frames_one_buffer(void **state)
{
    (void)state;
    const unsigned char buf[] = "\0\0\0\x03"
                                "abc"
                                "\0\0\0\x02"
                                "de"
                                "\0\0"; /* start of a third header */
    size_t buflen = sizeof buf - 1;
    struct frame_reader r;
    frame_reader_init(&r, 64);

    size_t used;
    assert_int_equal(frame_reader_feed(&r, buf, buflen, &used), FRAME_COMPLETE);
    assert_int_equal(used, 7); /* stops at the end of the first frame */
    size_t len;
    char *b1 = frame_reader_take(&r, &len);
    assert_int_equal(len, 3);
    assert_string_equal(b1, "abc");

    size_t off = used;
    assert_int_equal(frame_reader_feed(&r, buf + off, buflen - off, &used), FRAME_COMPLETE);
    assert_int_equal(used, 6);
    char *b2 = frame_reader_take(&r, &len);
    assert_int_equal(len, 2);
    assert_string_equal(b2, "de");

    off += used;
    assert_int_equal(frame_reader_feed(&r, buf + off, buflen - off, &used), FRAME_INCOMPLETE);
    assert_int_equal(used, 2);
    assert_true(frame_reader_partial(&r));
    frame_reader_reset(&r);
    assert_false(frame_reader_partial(&r));
    free(b1);
    free(b2);
}

static void test_reader_zero_length(void **state)
{
    (void)state;
    struct frame_reader r;
    frame_reader_init(&r, 16);
    size_t used;
    assert_int_equal(frame_reader_feed(&r, "\0\0\0\0\0\0\0\x01z", 9, &used), FRAME_COMPLETE);
    assert_int_equal(used, 4);
    size_t len = 99;
    char *b = frame_reader_take(&r, &len);
    assert_non_null(b);
    assert_int_equal(len, 0);
    assert_string_equal(b, "");
    free(b);
    /* The next frame in the same buffer is intact. */
    assert_int_equal(frame_reader_feed(&r, &"\0\0\0\0\0\0\0\x01z"[4], 5, &used), FRAME_COMPLETE);
    b = frame_reader_take(&r, NULL);
    assert_string_equal(b, "z");
    free(b);
}

static void test_reader_empty_feed(void **state)
{
    (void)state;
    struct frame_reader r;
    frame_reader_init(&r, 16);
    size_t used = 99;
    assert_int_equal(frame_reader_feed(&r, "", 0, &used), FRAME_INCOMPLETE);
    assert_int_equal(used, 0);
    assert_false(frame_reader_partial(&r));
    /* Header complete, body pending, then an empty feed. */
    assert_int_equal(frame_reader_feed(&r, "\0\0\0\x02", 4, &used), FRAME_INCOMPLETE);
    assert_int_equal(used, 4);
    assert_int_equal(frame_reader_feed(&r, "", 0, &used), FRAME_INCOMPLETE);
    assert_int_equal(used, 0);
    assert_true(frame_reader_partial(&r));
    frame_reader_reset(&r); /* frees the half-filled body (valgrind checks) */
    assert_null(r.body);
    assert_int_equal(r.max_len, 16);
}

static void test_reader_exactly_max(void **state)
{
    (void)state;
    struct frame_reader r;
    frame_reader_init(&r, 3);
    size_t used;
    assert_int_equal(frame_reader_feed(&r, "\0\0\0\x03xyz", 7, &used), FRAME_COMPLETE);
    char *b = frame_reader_take(&r, NULL);
    assert_string_equal(b, "xyz");
    free(b);
}

static void test_reader_too_large(void **state)
{
    (void)state;
    struct frame_reader r;
    frame_reader_init(&r, 10);
    size_t used = 99;
    /* Header announcing 11 bytes, then body bytes that must not be consumed. */
    assert_int_equal(frame_reader_feed(&r,
                                       "\0\0\0\x0b"
                                       "0123456789A",
                                       15, &used),
                     FRAME_TOO_LARGE);
    assert_int_equal(used, 4);
    assert_int_equal(r.announced, 11);
    assert_null(r.body); /* nothing allocated for a refused length */

    /* The reader stays refused. */
    assert_int_equal(frame_reader_feed(&r, "abc", 3, &used), FRAME_TOO_LARGE);
    assert_int_equal(used, 0);
    assert_null(r.body);

    /* After a reset it reads normally again. */
    frame_reader_reset(&r);
    assert_int_equal(frame_reader_feed(&r, "\0\0\0\x01q", 5, &used), FRAME_COMPLETE);
    char *b = frame_reader_take(&r, NULL);
    assert_string_equal(b, "q");
    free(b);
}

static void test_reader_too_large_split_header(void **state)
{
    (void)state;
    struct frame_reader r;
    frame_reader_init(&r, FRAME_DEFAULT_MAX);
    size_t used;
    assert_int_equal(frame_reader_feed(&r, "\x04", 1, &used), FRAME_INCOMPLETE);
    assert_int_equal(frame_reader_feed(&r, "\x00\x00", 2, &used), FRAME_INCOMPLETE);
    /* 0x04000001 = 64 MiB + 1 */
    assert_int_equal(frame_reader_feed(&r, "\x01{}", 3, &used), FRAME_TOO_LARGE);
    assert_int_equal(used, 1);
    assert_int_equal(r.announced, FRAME_DEFAULT_MAX + 1);
    assert_null(r.body);
    frame_reader_reset(&r);
}

/* A hostile 4 GiB - 1 length from a fake peer. */
static void test_reader_4gib_header(void **state)
{
    (void)state;
    struct frame_reader r;
    frame_reader_init(&r, FRAME_DEFAULT_MAX);
    size_t used;
    assert_int_equal(frame_reader_feed(&r, "\xff\xff\xff\xff", 4, &used), FRAME_TOO_LARGE);
    assert_int_equal(used, 4);
    assert_int_equal(r.announced, UINT32_MAX);
    assert_null(r.body);
    frame_reader_reset(&r);
}

static void test_reader_complete_not_taken(void **state)
{
    (void)state;
    struct frame_reader r;
    frame_reader_init(&r, 8);
    size_t used;
    assert_int_equal(frame_reader_feed(&r,
                                       "\0\0\0\x01"
                                       "a\0\0\0\x01"
                                       "b",
                                       10, &used),
                     FRAME_COMPLETE);
    assert_int_equal(used, 5);
    /* Feeding again before take does not overwrite the ready frame. */
    assert_int_equal(frame_reader_feed(&r,
                                       "\0\0\0\x01"
                                       "b",
                                       5, &used),
                     FRAME_COMPLETE);
    assert_int_equal(used, 0);
    char *b = frame_reader_take(&r, NULL);
    assert_string_equal(b, "a");
    free(b);
}

/* ---- blocking send / recv ------------------------------------------------ */

static void make_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void test_send_recv_socketpair(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    assert_int_equal(frame_send(sv[0], "{\"x\":1}", 7), 0);
    assert_int_equal(frame_send(sv[0], "", 0), 0);

    char *body = NULL;
    size_t len = 0;
    assert_int_equal(frame_recv(sv[1], 64, &body, &len), 0);
    assert_int_equal(len, 7);
    assert_string_equal(body, "{\"x\":1}");
    free(body);

    assert_int_equal(frame_recv(sv[1], 64, &body, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal(body, "");
    free(body);

    /* Clean end of stream before any byte. */
    close(sv[0]);
    body = (char *)0x1;
    assert_int_equal(frame_recv(sv[1], 64, &body, &len), -EPIPE);
    assert_ptr_equal(body, (char *)0x1); /* untouched on error */
    close(sv[1]);
}

/* Larger than a socket buffer: the writer runs in a child process. */
static void test_send_recv_large(void **state)
{
    (void)state;
    size_t big = 3u * 1024u * 1024u + 17u;
    char *msg = malloc(big);
    assert_non_null(msg);
    for (size_t i = 0; i < big; i++)
        msg[i] = (char)('A' + i % 23);

    int sv[2];
    make_pair(sv);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[1]);
        int rc = frame_send(sv[0], msg, big);
        rc = rc ? rc : frame_send(sv[0], "tail", 4);
        _exit(rc == 0 ? 0 : 1);
    }
    close(sv[0]);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(frame_recv(sv[1], big, &body, &len), 0);
    assert_int_equal(len, big);
    assert_memory_equal(body, msg, big);
    free(body);
    assert_int_equal(frame_recv(sv[1], big, &body, &len), 0);
    assert_string_equal(body, "tail");
    free(body);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(sv[1]);
    free(msg);
}

static void test_recv_eof_mid_header(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    assert_int_equal(write(sv[0], "\0\0", 2), 2);
    close(sv[0]);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(frame_recv(sv[1], 64, &body, &len), -EPROTO);
    assert_null(body);
    close(sv[1]);
}

static void test_recv_eof_mid_body(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    assert_int_equal(write(sv[0],
                           "\0\0\0\x0a"
                           "abc",
                           7),
                     7);
    close(sv[0]);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(frame_recv(sv[1], 64, &body, &len), -EPROTO);
    assert_null(body);
    close(sv[1]);
}

static void test_recv_eof_after_header(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    assert_int_equal(write(sv[0], "\0\0\0\x05", 4), 4);
    close(sv[0]);
    char *body = NULL;
    size_t len = 0;
    /* Header read, body empty: mid-frame, not a clean EOF. */
    assert_int_equal(frame_recv(sv[1], 64, &body, &len), -EPROTO);
    assert_null(body);
    close(sv[1]);
}

static void test_recv_too_large(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    assert_int_equal(write(sv[0], "\0\0\0\x41", 4), 4); /* 65 > 64 */
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(frame_recv(sv[1], 64, &body, &len), -EMSGSIZE);
    assert_null(body);

    /* 4 GiB - 1 from a fake runtime: refused, never allocated. */
    assert_int_equal(write(sv[0], "\xff\xff\xff\xff", 4), 4);
    assert_int_equal(frame_recv(sv[1], FRAME_DEFAULT_MAX, &body, &len), -EMSGSIZE);
    assert_null(body);
    close(sv[0]);
    close(sv[1]);
}

static void test_send_too_large(void **state)
{
    (void)state;
#if SIZE_MAX > UINT32_MAX
    int sv[2];
    make_pair(sv);
    /* The body is never read: the length alone is refused. */
    assert_int_equal(frame_send(sv[0], "x", (size_t)UINT32_MAX + 1), -EMSGSIZE);
    close(sv[0]);
    char *body = NULL;
    size_t len;
    assert_int_equal(frame_recv(sv[1], 64, &body, &len), -EPIPE); /* nothing was sent */
    close(sv[1]);
#endif
}

static void test_send_peer_closed(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    close(sv[1]);
    /* MSG_NOSIGNAL: an error code, not a SIGPIPE that kills the process. */
    assert_int_equal(frame_send(sv[0], "abc", 3), -EPIPE);
    char big[8192] = {0};
    assert_int_equal(frame_send(sv[0], big, sizeof big), -EPIPE);
    close(sv[0]);
}

static void test_send_recv_pipe(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    /* Not a socket: frame_send falls back to write(2). */
    assert_int_equal(frame_send(p[1], "pipe", 4), 0);
    close(p[1]);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(frame_recv(p[0], 64, &body, &len), 0);
    assert_string_equal(body, "pipe");
    free(body);
    assert_int_equal(frame_recv(p[0], 64, &body, &len), -EPIPE);
    close(p[0]);
}

static void test_bad_fd(void **state)
{
    (void)state;
    char *body = NULL;
    size_t len;
    assert_int_equal(frame_send(-1, "x", 1), -EBADF);
    assert_int_equal(frame_recv(-1, 64, &body, &len), -EBADF);
    assert_null(body);
}

/* ---- non-blocking writer and reader ---------------------------------------- */

static void make_nb_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
}

static void test_writer_small_frame(void **state)
{
    (void)state;
    int sv[2];
    make_nb_pair(sv);
    struct frame_writer w;
    assert_int_equal(frame_writer_init(&w, "{\"a\":1}", 7), 0);
    assert_false(frame_writer_done(&w));
    assert_int_equal(frame_writer_write(&w, sv[0]), FRAME_IO_DONE);
    assert_true(frame_writer_done(&w));
    /* Done stays done: nothing more is written. */
    assert_int_equal(frame_writer_write(&w, sv[0]), FRAME_IO_DONE);
    char buf[64];
    assert_int_equal(read(sv[1], buf, sizeof buf), 11);
    assert_memory_equal(buf, "\0\0\0\x07{\"a\":1}", 11);

    assert_int_equal(frame_writer_init(&w, NULL, 0), 0); /* empty body */
    assert_int_equal(frame_writer_write(&w, sv[0]), FRAME_IO_DONE);
    assert_int_equal(read(sv[1], buf, sizeof buf), 4);
    assert_memory_equal(buf, "\0\0\0\0", 4);
    close(sv[0]);
    close(sv[1]);
}

static void test_writer_too_large(void **state)
{
    (void)state;
#if SIZE_MAX > UINT32_MAX
    struct frame_writer w;
    assert_int_equal(frame_writer_init(&w, "x", (size_t)UINT32_MAX + 1), -EMSGSIZE);
#endif
}

/* A frame far larger than a small send buffer: written in many pieces, each
 * call stopping at EAGAIN, resumed from the same writer; the reader sees
 * exactly one frame. */
static void test_writer_partial_writes(void **state)
{
    (void)state;
    int sv[2];
    make_nb_pair(sv);
    int small = 4096;
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    size_t big = 1024u * 1024u + 3u;
    char *msg = malloc(big);
    assert_non_null(msg);
    for (size_t i = 0; i < big; i++)
        msg[i] = (char)('a' + i % 26);

    struct frame_writer w;
    assert_int_equal(frame_writer_init(&w, msg, big), 0);
    struct frame_reader r;
    frame_reader_init(&r, big);
    int again = 0, reads = 0, wrc = FRAME_IO_AGAIN, rrc = FRAME_IO_AGAIN;
    size_t last_off = 0;
    while (wrc != FRAME_IO_DONE || rrc != FRAME_IO_DONE) {
        if (wrc != FRAME_IO_DONE) {
            wrc = frame_writer_write(&w, sv[0]);
            assert_true(wrc == FRAME_IO_DONE || wrc == FRAME_IO_AGAIN);
            assert_true(w.off >= last_off);
            last_off = w.off;
            again += wrc == FRAME_IO_AGAIN;
        }
        if (rrc != FRAME_IO_DONE) {
            rrc = frame_reader_read(&r, sv[1]);
            assert_true(rrc == FRAME_IO_DONE || rrc == FRAME_IO_AGAIN);
            reads++;
        }
    }
    assert_true(again > 10); /* it really was written piecewise */
    assert_true(reads > 10);
    size_t len = 0;
    char *body = frame_reader_take(&r, &len);
    assert_int_equal(len, big);
    assert_memory_equal(body, msg, big);
    assert_int_equal(body[big], '\0');
    free(body);
    /* Nothing follows. */
    assert_int_equal(frame_reader_read(&r, sv[1]), FRAME_IO_AGAIN);
    free(msg);
    close(sv[0]);
    close(sv[1]);
}

/* A writer resumes exactly where the last call stopped, inside the header or
 * inside the body (off set as if an earlier call wrote that much).  A pipe is
 * not a socket: writev. */
static void test_writer_resumes_at_offset(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    struct frame_writer w;
    char buf[16];
    assert_int_equal(frame_writer_init(&w, "xyz", 3), 0);
    w.off = 2;
    assert_int_equal(frame_writer_write(&w, p[1]), FRAME_IO_DONE);
    assert_int_equal(read(p[0], buf, sizeof buf), 5);
    assert_memory_equal(buf, "\0\x03xyz", 5);

    assert_int_equal(frame_writer_init(&w, "xyz", 3), 0);
    w.off = 5;
    assert_int_equal(frame_writer_write(&w, p[1]), FRAME_IO_DONE);
    assert_int_equal(read(p[0], buf, sizeof buf), 2);
    assert_memory_equal(buf, "yz", 2);

    /* A full pipe: nothing written, try again later. */
    int cap = fcntl(p[1], F_GETPIPE_SZ);
    assert_true(cap > 0);
    char *fill = calloc(1, (size_t)cap);
    assert_non_null(fill);
    assert_int_equal(write(p[1], fill, (size_t)cap), cap);
    assert_int_equal(frame_writer_init(&w, "xyz", 3), 0);
    assert_int_equal(frame_writer_write(&w, p[1]), FRAME_IO_AGAIN);
    assert_int_equal(w.off, 0);
    assert_int_equal(read(p[0], fill, (size_t)cap), cap);
    assert_int_equal(frame_writer_write(&w, p[1]), FRAME_IO_DONE);
    assert_int_equal(read(p[0], buf, sizeof buf), 7);
    free(fill);
    close(p[0]);
    close(p[1]);
}

static void test_writer_peer_closed(void **state)
{
    (void)state;
    int sv[2];
    make_nb_pair(sv);
    close(sv[1]);
    struct frame_writer w;
    assert_int_equal(frame_writer_init(&w, "abc", 3), 0);
    /* MSG_NOSIGNAL: an error code, not a SIGPIPE. */
    assert_int_equal(frame_writer_write(&w, sv[0]), -EPIPE);
    assert_int_equal(frame_writer_write(&w, -1), -EBADF);
    close(sv[0]);
}

/* The reader stops at the end of a frame: a pipelined second frame stays in
 * the socket until asked for. */
static void test_reader_read_stops_at_frame_end(void **state)
{
    (void)state;
    int sv[2];
    make_nb_pair(sv);
    assert_int_equal(write(sv[0], "\0\0\0\x03one\0\0\0\x03two", 14), 14);
    struct frame_reader r;
    frame_reader_init(&r, 64);
    assert_int_equal(frame_reader_read(&r, sv[1]), FRAME_IO_DONE);
    /* Complete and not taken: asking again changes nothing. */
    assert_int_equal(frame_reader_read(&r, sv[1]), FRAME_IO_DONE);
    int pending = 0;
    assert_int_equal(ioctl(sv[1], FIONREAD, &pending), 0);
    assert_int_equal(pending, 7);
    size_t len = 0;
    char *body = frame_reader_take(&r, &len);
    assert_int_equal(len, 3);
    assert_string_equal(body, "one");
    free(body);
    assert_int_equal(frame_reader_read(&r, sv[1]), FRAME_IO_DONE);
    body = frame_reader_take(&r, &len);
    assert_string_equal(body, "two");
    free(body);
    assert_int_equal(frame_reader_read(&r, sv[1]), FRAME_IO_AGAIN);
    assert_false(frame_reader_partial(&r));
    close(sv[0]);
    assert_int_equal(frame_reader_read(&r, sv[1]), -EPIPE); /* clean end */
    close(sv[1]);
}

static void test_reader_read_in_pieces(void **state)
{
    (void)state;
    int sv[2];
    make_nb_pair(sv);
    struct frame_reader r;
    frame_reader_init(&r, 64);
    const char frame[] = "\0\0\0\x05hello";
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(write(sv[0], frame + i, 1), 1);
        assert_int_equal(frame_reader_read(&r, sv[1]), FRAME_IO_AGAIN);
        assert_true(frame_reader_partial(&r));
    }
    assert_int_equal(write(sv[0], frame + 8, 1), 1);
    assert_int_equal(frame_reader_read(&r, sv[1]), FRAME_IO_DONE);
    size_t len = 0;
    char *body = frame_reader_take(&r, &len);
    assert_string_equal(body, "hello");
    free(body);

    /* A zero-length frame completes without a body read. */
    assert_int_equal(write(sv[0], "\0\0\0\0", 4), 4);
    assert_int_equal(frame_reader_read(&r, sv[1]), FRAME_IO_DONE);
    body = frame_reader_take(&r, &len);
    assert_int_equal(len, 0);
    assert_string_equal(body, "");
    free(body);
    close(sv[0]);
    close(sv[1]);
}

static void test_reader_read_eof_mid_frame(void **state)
{
    (void)state;
    int sv[2];
    make_nb_pair(sv);
    struct frame_reader r;
    frame_reader_init(&r, 64);
    assert_int_equal(write(sv[0], "\0\0", 2), 2);
    close(sv[0]);
    assert_int_equal(frame_reader_read(&r, sv[1]), -EPROTO); /* inside the header */
    close(sv[1]);
    frame_reader_reset(&r);

    make_nb_pair(sv);
    assert_int_equal(write(sv[0],
                           "\0\0\0\x0a"
                           "abc",
                           7),
                     7);
    close(sv[0]);
    assert_int_equal(frame_reader_read(&r, sv[1]), -EPROTO); /* inside the body */
    frame_reader_reset(&r);
    close(sv[1]);
}

static void test_reader_read_too_large(void **state)
{
    (void)state;
    int sv[2];
    make_nb_pair(sv);
    struct frame_reader r;
    frame_reader_init(&r, 64);
    assert_int_equal(write(sv[0],
                           "\xff\xff\xff\xff"
                           "xx",
                           6),
                     6);
    assert_int_equal(frame_reader_read(&r, sv[1]), -EMSGSIZE);
    assert_int_equal(r.announced, UINT32_MAX);
    assert_null(r.body); /* never allocated */
    /* The reader stays refused; the body bytes are not consumed. */
    assert_int_equal(frame_reader_read(&r, sv[1]), -EMSGSIZE);
    int pending = 0;
    assert_int_equal(ioctl(sv[1], FIONREAD, &pending), 0);
    assert_int_equal(pending, 2);
    frame_reader_reset(&r);
    close(sv[0]);
    close(sv[1]);
}

/* A peer that dies with our bytes unread resets the connection: the reader
 * reports -ECONNRESET once, then the end of the stream. */
static void test_reader_read_reset(void **state)
{
    (void)state;
    int sv[2];
    make_nb_pair(sv);
    assert_int_equal(write(sv[1], "unread", 6), 6);
    close(sv[0]);
    struct frame_reader r;
    frame_reader_init(&r, 64);
    assert_int_equal(frame_reader_read(&r, sv[1]), -ECONNRESET);
    assert_int_equal(frame_reader_read(&r, sv[1]), -EPIPE);
    assert_int_equal(frame_reader_read(&r, -1), -EBADF);
    close(sv[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_DFL); /* a missing MSG_NOSIGNAL would kill the test */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_roundtrip),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_reader_whole_frame),
        cmocka_unit_test(test_reader_byte_by_byte),
        cmocka_unit_test(test_reader_all_chunk_sizes),
        cmocka_unit_test(test_reader_two_frames_one_buffer),
        cmocka_unit_test(test_reader_zero_length),
        cmocka_unit_test(test_reader_empty_feed),
        cmocka_unit_test(test_reader_exactly_max),
        cmocka_unit_test(test_reader_too_large),
        cmocka_unit_test(test_reader_too_large_split_header),
        cmocka_unit_test(test_reader_4gib_header),
        cmocka_unit_test(test_reader_complete_not_taken),
        cmocka_unit_test(test_send_recv_socketpair),
        cmocka_unit_test(test_send_recv_large),
        cmocka_unit_test(test_recv_eof_mid_header),
        cmocka_unit_test(test_recv_eof_mid_body),
        cmocka_unit_test(test_recv_eof_after_header),
        cmocka_unit_test(test_recv_too_large),
        cmocka_unit_test(test_send_too_large),
        cmocka_unit_test(test_send_peer_closed),
        cmocka_unit_test(test_send_recv_pipe),
        cmocka_unit_test(test_bad_fd),
        cmocka_unit_test(test_writer_small_frame),
        cmocka_unit_test(test_writer_too_large),
        cmocka_unit_test(test_writer_partial_writes),
        cmocka_unit_test(test_writer_resumes_at_offset),
        cmocka_unit_test(test_writer_peer_closed),
        cmocka_unit_test(test_reader_read_stops_at_frame_end),
        cmocka_unit_test(test_reader_read_in_pieces),
        cmocka_unit_test(test_reader_read_eof_mid_frame),
        cmocka_unit_test(test_reader_read_too_large),
        cmocka_unit_test(test_reader_read_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
