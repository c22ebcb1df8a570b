#include "chan.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/sockios.h>

/* Nothing being sent: an empty frame, already written. */
static void writer_idle(struct frame_writer *w)
{
    memset(w, 0, sizeof *w);
    w->off = FRAME_HEADER_LEN;
}

static void chan_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    (void)chan_read((struct chan *)w);
}

static void chan_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct chan *ch = w->data;
    (void)revents;
    if (frame_writer_write(&ch->wr, ch->fd) != FRAME_IO_AGAIN)
        ev_io_stop(loop, w); /* done, or the peer is dying: its end tells */
}

void chan_init(struct chan *ch, struct ev_loop *loop, chan_frame_fn on_frame, chan_end_fn on_end,
               void *data)
{
    memset(ch, 0, sizeof *ch);
    ch->loop = loop;
    ch->fd = -1;
    ch->on_frame = on_frame;
    ch->on_end = on_end;
    ch->data = data;
    ev_io_init(&ch->rio, chan_read_cb, -1, EV_READ);
    ev_io_init(&ch->wio, chan_write_cb, -1, EV_WRITE);
    ch->wio.data = ch;
    frame_reader_init(&ch->rd, 0);
    writer_idle(&ch->wr);
}

void chan_open(struct chan *ch, int fd, size_t max_len)
{
    chan_close(ch);
    ch->fd = fd;
    ch->reset = ch->ended = false;
    frame_reader_init(&ch->rd, max_len);
    writer_idle(&ch->wr);
    ev_io_set(&ch->rio, fd, EV_READ);
    ev_io_set(&ch->wio, fd, EV_WRITE);
    ev_io_start(ch->loop, &ch->rio);
}

int chan_send(struct chan *ch, const char *body, size_t len)
{
    if (ch->fd < 0)
        return -EBADF;
    int rc = frame_writer_init(&ch->wr, body, len);
    if (rc == 0)
        rc = frame_writer_write(&ch->wr, ch->fd);
    if (rc == FRAME_IO_AGAIN)
        ev_io_start(ch->loop, &ch->wio);
    return rc >= 0 || ch->wr.off > 0 ? 0 : rc;
}

void chan_cancel(struct chan *ch)
{
    ev_io_stop(ch->loop, &ch->wio);
}

static void chan_end_reading(struct chan *ch)
{
    ch->ended = true;
    ev_io_stop(ch->loop, &ch->rio);
}

int chan_read(struct chan *ch)
{
    if (ch->fd < 0 || ch->ended)
        return -1;
    int rc = frame_reader_read(&ch->rd, ch->fd);
    if (rc == FRAME_IO_AGAIN)
        return 0;
    if (rc == FRAME_IO_DONE) {
        size_t len;
        char *body = frame_reader_take(&ch->rd, &len);
        if (!ch->on_frame(ch->data, body, len) && ch->fd >= 0)
            chan_end_reading(ch);
        return ch->fd >= 0 && !ch->ended ? 1 : -1;
    }
    ch->reset = rc == -ECONNRESET;
    chan_end_reading(ch);
    ch->on_end(ch->data, rc);
    return -1;
}

bool chan_delivered(const struct chan *ch)
{
    int unread = 0;
    if (ch->fd >= 0 && ioctl(ch->fd, SIOCOUTQ, &unread) != 0)
        unread = 0;
    return frame_writer_done(&ch->wr) && !ch->reset && unread <= 0;
}

void chan_close(struct chan *ch)
{
    ev_io_stop(ch->loop, &ch->rio);
    ev_io_stop(ch->loop, &ch->wio);
    if (ch->fd >= 0)
        close(ch->fd);
    ch->fd = -1;
    frame_reader_reset(&ch->rd);
}
