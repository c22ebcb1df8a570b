#include "pool.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chan.h"
#include "handoff.h"
#include "log.h"
#include "procstatus.h"
#include "protocol.h"
#include "reap.h"
#include "spawn.h"

#define CHAN_MAX      65536 /* channel frames: start-up reports and done frames */
#define EARLY_DEATH_S 1.0   /* a worker dying this soon after start counts as failing */
#define WORKER_STOP_S 5.0   /* grace for workers to run asya_fini before SIGKILL */
#define BROKEN_S      5.0   /* grace for a worker whose channel broke to exit by itself */

enum worker_state {
    W_OFF,      /* no process (restart pending, or stopped) */
    W_STARTING, /* process started, waiting for its ready frame */
    W_IDLE,
    W_BUSY,
    W_STOPPING, /* channel closed, waiting for exit */
    W_BROKEN,   /* its channel broke before a request could be sent: waiting for exit */
};

struct worker {
    struct chan ch;                /* the supervisor's end of its channel */
    struct handoff_ledger *ledger; /* owned: the slot's shared phase page */
    int ledger_fd;                 /* owned: its memfd, passed to each process of the slot */
    uint64_t kept;                 /* id of the connection whose fd the process kept, or 0 */
    ev_child child;
    ev_timer restart;
    ev_timer grace; /* W_BROKEN: kills it if it does not exit by itself */
    struct pool *pool;
    int slot;
    pid_t pid;
    enum worker_state state;
    void *owner;         /* while W_BUSY: it holds owner's connection; NULL once the client left */
    enum reap_kill kill; /* why the supervisor sent it SIGKILL, if it did */
    bool fatal_reported; /* it sent a fatal start-up line */
    bool exited;         /* being reaped: never idle again, whatever it says */
    int early_deaths;    /* consecutive deaths soon after start */
    ev_tstamp started;
};

struct pool {
    struct ev_loop *loop;             /* borrowed */
    const struct runtime_config *cfg; /* borrowed */
    const char *exe;                  /* borrowed */
    const struct pool_events *ev;     /* borrowed */
    void *ctx;
    struct worker *workers; /* owned, n of them */
    size_t n;
    bool stopped;
    bool all_ready; /* all_ready was reported */
    ev_timer stop_timer;
    unsigned long restarts[REAP_CAUSES];
};

static void worker_spawn(struct worker *w);
static void worker_kill(struct worker *w, enum reap_kill reason);

/* ---- the channel ---------------------------------------------------------- */

/* The first frame of a worker: ready or fatal. */
static void worker_control(struct worker *w, const char *body, size_t len)
{
    struct pool *p = w->pool;
    char text[1024];
    if (!spawn_report(body, len, text, sizeof text)) {
        w->fatal_reported = true;
        p->ev->start_failed(p->ctx, (long)w->pid, text);
        worker_kill(w, REAP_KILL_START);
        return;
    }
    w->state = W_IDLE;
    w->early_deaths = 0;
    log_debug("worker %ld ready (slot %d, module %s)", (long)w->pid, w->slot, text);
    if (!p->all_ready) {
        size_t ready = 0;
        for (size_t i = 0; i < p->n; i++)
            ready += p->workers[i].state == W_IDLE;
        if (ready == p->n) {
            p->all_ready = true;
            p->ev->all_ready(p->ctx);
        }
    }
    p->ev->idle(p->ctx);
}

/* A busy worker gave its connection back (a done frame). */
static void worker_done(struct worker *w, bool reusable)
{
    struct pool *p = w->pool;
    void *owner = w->owner;
    w->owner = NULL;
    w->state = W_IDLE;
    if (!reusable)
        w->kept = 0; /* it closed its copy */
    if (owner)
        p->ev->done(p->ctx, owner, reusable);
    if (!w->exited)
        p->ev->idle(p->ctx);
}

/* Sends w SIGKILL for reason, unless it was already sent one. */
static void worker_kill(struct worker *w, enum reap_kill reason)
{
    if (w->kill != REAP_KILL_NONE || w->pid <= 0)
        return;
    w->kill = reason;
    kill(w->pid, SIGKILL);
}

static void worker_protocol_error(struct worker *w, const char *what)
{
    log_error("worker %ld broke the channel protocol (%s): killing it", (long)w->pid, what);
    worker_kill(w, REAP_KILL_PROTOCOL);
}

/* A whole frame from the worker (chan_frame_fn). */
static bool worker_frame(void *data, char *body, size_t len)
{
    struct worker *w = data;
    if (w->state == W_STARTING) {
        worker_control(w, body, len);
        free(body);
        return !w->fatal_reported; /* ready (and maybe busy already), or done */
    }
    if (w->state == W_BUSY && (len == 0 || (len == strlen(HANDOFF_DONE_CLOSE) &&
                                            memcmp(body, HANDOFF_DONE_CLOSE, len) == 0))) {
        free(body);
        worker_done(w, len == 0);
        return true;
    }
    free(body);
    worker_protocol_error(w, "unexpected frame");
    return false;
}

/* The worker's channel stopped reading (chan_end_fn): at its end the exit
 * status tells the rest. */
static void worker_end(void *data, int err)
{
    if (err == -EMSGSIZE || err == -ENOMEM)
        worker_protocol_error(data, err == -EMSGSIZE ? "answer too large" : "out of memory");
}

/* ---- deaths --------------------------------------------------------------- */

static void worker_restart_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    (void)loop;
    (void)revents;
    if (!w->pool->stopped)
        worker_spawn(w);
}

static void schedule_restart(struct worker *w, bool early)
{
    double delay = early ? reap_backoff(++w->early_deaths) : 0;
    if (delay <= 0) {
        worker_spawn(w);
        return;
    }
    log_warn("worker slot %d keeps failing: restarting it in %.1fs", w->slot, delay);
    ev_timer_set(&w->restart, delay, 0);
    ev_timer_start(w->pool->loop, &w->restart);
}

static void count_restart(struct pool *p, const struct worker *w, enum worker_state was, int status)
{
    if (p->stopped || was == W_STOPPING)
        return;
    enum reap_cause cause = reap_cause(status, w->kill);
    if (cause < REAP_CAUSES)
        p->restarts[cause]++;
}

/*
 * Worker w died holding owner's connection, at phase (handoff.h): tells the
 * owner what it is owed.  Its death is charged to the request only when it
 * had consumed some of it.
 */
static void owner_of_dead(struct worker *w, void *owner, enum handoff_phase phase, int status,
                          const char *how)
{
    struct pool *p = w->pool;
    long pid = (long)w->pid;
    size_t len = 0;
    char *text = NULL;
    switch (phase) {
    case HANDOFF_IDLE:
        text = reap_error_answer(pid, p->cfg->handler, status, w->kill, false, &len);
        if (w->kill == REAP_KILL_PROTOCOL) {
            /* It broke the protocol before reading: no second chance. */
            log_warn("worker %ld %s before it took its request; answering it", pid, how);
            p->ev->answer(p->ctx, owner, text, len, true);
            return;
        }
        log_warn("worker %ld %s before it took its request; replacing it", pid, how);
        p->ev->returned(p->ctx, owner, text, len);
        return;
    case HANDOFF_READING:
    case HANDOFF_RUNNING:
        /* Reading, the stream may stand inside the request: after the
         * error answer the connection closes. */
        text = reap_error_answer(pid, p->cfg->handler, status, w->kill, true, &len);
        log_warn("worker %ld %s while handling a request; replacing it", pid, how);
        p->ev->answer(p->ctx, owner, text, len, phase == HANDOFF_READING);
        return;
    case HANDOFF_WRITING:
        /* Part of a frame may be out: nothing more can be written honestly. */
        log_warn("worker %ld %s while writing its answer: closing the connection; replacing it",
                 pid, how);
        p->ev->answer(p->ctx, owner, NULL, 0, true);
        return;
    case HANDOFF_ANSWERED:
    default:
        if (p->stopped)
            log_debug("worker %ld %s right after answering, during shutdown", pid, how);
        else
            log_warn("worker %ld %s right after answering; replacing it", pid, how);
        p->ev->done(p->ctx, owner, true);
        return;
    }
}

static void worker_child_cb(struct ev_loop *loop, ev_child *ch, int revents)
{
    struct worker *w = ch->data;
    struct pool *p = w->pool;
    int status = ch->rstatus;
    (void)revents;
    ev_child_stop(loop, ch);
    ev_timer_stop(loop, &w->grace);
    w->exited = true;

    /* A done frame may still sit in the channel: deliver it before judging. */
    while ((w->state == W_BUSY || w->state == W_STARTING) && chan_read(&w->ch) > 0)
        ;

    enum worker_state was = w->state;
    void *owner = w->owner;
    enum handoff_phase phase = handoff_get(w->ledger);
    chan_close(&w->ch);
    w->state = W_OFF;
    w->owner = NULL;

    char how[128];
    procstatus_describe(status, how, sizeof how);
    pid_t pid = w->pid;
    count_restart(p, w, was, status);
    if (was == W_BUSY && owner) {
        owner_of_dead(w, owner, phase, status, how);
    } else if (was == W_BUSY && w->kill != REAP_KILL_NONE) {
        if (p->stopped)
            log_debug("worker %ld killed during shutdown", (long)pid);
        else
            log_info("worker %ld stopped after its client disconnected; replacing it", (long)pid);
    } else if (was == W_STARTING) {
        if (!w->fatal_reported) {
            char line[PATH_MAX + 256];
            snprintf(line, sizeof line, "ASYA_HANDLER=%s: worker %s while loading the handler",
                     p->cfg->handler, how);
            p->ev->start_failed(p->ctx, (long)pid, line);
        }
    } else if (was == W_STOPPING || (was == W_BUSY && p->stopped)) {
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            log_warn("worker %ld %s while stopping", (long)pid, how);
        else
            log_debug("worker %ld stopped", (long)pid);
    } else if (was == W_BROKEN) {
        log_warn("worker %ld %s after its channel closed; replacing it", (long)pid, how);
    } else {
        log_warn("worker %ld %s while idle; replacing it", (long)pid, how);
    }
    bool early = was == W_STARTING || (was == W_IDLE && ev_now(loop) - w->started < EARLY_DEATH_S);
    w->kill = REAP_KILL_NONE;
    w->fatal_reported = w->exited = false;
    w->pid = 0;

    /* While draining, a replacement is still needed for queued requests. */
    if (p->stopped || !p->ev->need_worker(p->ctx)) {
        p->ev->exited(p->ctx);
        return;
    }
    schedule_restart(w, early);
}

/* ---- starting ------------------------------------------------------------- */

static void worker_spawn(struct worker *w)
{
    struct pool *p = w->pool;
    char err[256];
    int fd = -1;
    handoff_set(w->ledger, HANDOFF_IDLE);
    pid_t pid = spawn_worker(p->exe, w->ledger_fd, &fd, err, sizeof err);
    if (pid < 0) {
        log_error("cannot start worker: %s", err);
        schedule_restart(w, true);
        return;
    }
    w->pid = pid;
    w->state = W_STARTING;
    w->started = ev_now(p->loop);
    w->owner = NULL;
    w->kept = 0;
    w->kill = REAP_KILL_NONE;
    w->fatal_reported = w->exited = false;
    chan_open(&w->ch, fd, CHAN_MAX);
    ev_child_set(&w->child, pid, 0);
    ev_child_start(p->loop, &w->child);
    log_debug("started worker %ld (slot %d)", (long)pid, w->slot);
}

static void stop_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pool *p = t->data;
    (void)loop;
    (void)revents;
    for (size_t i = 0; i < p->n; i++) {
        struct worker *w = &p->workers[i];
        if (w->pid > 0) {
            log_warn("worker %ld did not stop in time: killing it", (long)w->pid);
            worker_kill(w, REAP_KILL_SHUTDOWN);
        }
    }
}

static void grace_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    (void)loop;
    (void)revents;
    if (w->state == W_BROKEN && w->pid > 0) {
        log_warn("worker %ld lost its channel and did not exit: killing it", (long)w->pid);
        worker_kill(w, REAP_KILL_PROTOCOL);
    }
}

/* w's channel broke while it was idle (it is ending, or it closed its end):
 * it gets no more requests and is replaced once it exits. */
static void worker_broken(struct worker *w, int err)
{
    struct pool *p = w->pool;
    log_debug("worker %ld: channel closed (%s); waiting for it to exit", (long)w->pid,
              strerror(-err));
    w->state = W_BROKEN;
    w->owner = NULL;
    ev_timer_set(&w->grace, BROKEN_S, 0);
    ev_timer_start(p->loop, &w->grace);
}

/* ---- the pool ------------------------------------------------------------- */

struct pool *pool_new(struct ev_loop *loop, const struct runtime_config *cfg, const char *exe,
                      const struct pool_events *ev, void *ctx)
{
    struct pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = (size_t)cfg->workers;
    p->workers = calloc(p->n, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->cfg = cfg;
    p->exe = exe;
    p->ev = ev;
    p->ctx = ctx;
    ev_timer_init(&p->stop_timer, stop_timer_cb, 0, 0);
    p->stop_timer.data = p;
    for (size_t i = 0; i < p->n; i++) {
        struct worker *w = &p->workers[i];
        w->pool = p;
        w->slot = (int)i;
        w->ledger = handoff_ledger_new(&w->ledger_fd);
        if (!w->ledger) {
            log_error("cannot create the ledger of worker slot %zu: %s", i,
                      strerror(-w->ledger_fd));
            p->n = i;
            pool_free(p);
            return NULL;
        }
        chan_init(&w->ch, loop, worker_frame, worker_end, w);
        ev_child_init(&w->child, worker_child_cb, 0, 0);
        w->child.data = w;
        ev_timer_init(&w->restart, worker_restart_cb, 0, 0);
        w->restart.data = w;
        ev_timer_init(&w->grace, grace_cb, 0, 0);
        w->grace.data = w;
    }
    return p;
}

void pool_start(struct pool *p)
{
    for (size_t i = 0; i < p->n && !p->stopped; i++)
        worker_spawn(&p->workers[i]);
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        chan_close(&p->workers[i].ch);
        handoff_ledger_free(p->workers[i].ledger);
        close(p->workers[i].ledger_fd);
    }
    free(p->workers);
    free(p);
}

/* An idle worker for connection id: the one that kept its fd, else the
 * first idle one; NULL when none is. */
static struct worker *pick_idle(struct pool *p, uint64_t id)
{
    struct worker *first = NULL;
    for (size_t i = 0; i < p->n; i++) {
        struct worker *w = &p->workers[i];
        if (w->state != W_IDLE || w->exited || w->kill != REAP_KILL_NONE)
            continue; /* not idle, or dying */
        if (w->kept == id)
            return w;
        if (!first)
            first = w;
    }
    return first;
}

struct worker *pool_submit(struct pool *p, int fd, uint64_t id, const unsigned char *hdr,
                           const void *prefix, size_t len, void *owner)
{
    struct worker *w;
    while ((w = pick_idle(p, id)) != NULL) {
        handoff_set(w->ledger, HANDOFF_IDLE);
        int rc = handoff_send(w->ch.fd, w->kept == id ? -1 : fd, hdr, id, prefix, len);
        if (rc == 0) {
            w->kept = id;
            w->owner = owner;
            w->state = W_BUSY;
            return w; /* if it dies now, its ledger tells how far it got */
        }
        /* Nothing could be sent: the worker is gone or going (or stuck with
         * a full channel).  The request was never its, so it goes to the
         * next idle worker. */
        worker_broken(w, rc);
        if (rc == -EAGAIN)
            worker_kill(w, REAP_KILL_PROTOCOL);
    }
    return NULL;
}

void pool_abandon(struct pool *p, struct worker *w)
{
    (void)p;
    w->owner = NULL;
    if (w->kill != REAP_KILL_NONE)
        return;
    enum handoff_phase phase = handoff_get(w->ledger);
    if (phase != HANDOFF_IDLE && phase != HANDOFF_RUNNING) {
        /* It is moving bytes, not running handler code: with the client
         * gone that ends at once, and it gives the connection back. */
        log_debug("client disconnected while worker %ld was reading or writing", (long)w->pid);
        return;
    }
    log_warn("client disconnected while worker %ld was handling its request: killing the worker",
             (long)w->pid);
    worker_kill(w, REAP_KILL_CLIENT_LEFT);
}

void pool_stop(struct pool *p)
{
    if (p->stopped)
        return;
    p->stopped = true;
    for (size_t i = 0; i < p->n; i++) {
        struct worker *w = &p->workers[i];
        ev_timer_stop(p->loop, &w->restart);
        ev_timer_stop(p->loop, &w->grace);
        if (w->pid <= 0)
            continue;
        /* A done frame may already wait: read it, so a worker that has
         * finished is stopped, not killed, and runs asya_fini. */
        while ((w->state == W_BUSY || w->state == W_STARTING) && chan_read(&w->ch) > 0)
            ;
        /* One that has its answer out (or going out) only has the done
         * frame to send: closing the channel stops it cleanly, and the
         * stop timer kills it if a client does not read its answer. */
        bool answering = w->state == W_BUSY && handoff_get(w->ledger) >= HANDOFF_WRITING;
        if ((w->state == W_BUSY && !answering) || w->state == W_STARTING)
            worker_kill(w, REAP_KILL_SHUTDOWN);
        if (w->state == W_IDLE)
            w->state = W_STOPPING;
        chan_close(&w->ch);
    }
    ev_timer_set(&p->stop_timer, WORKER_STOP_S, 0);
    ev_timer_start(p->loop, &p->stop_timer);
}

bool pool_alive(const struct pool *p)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->workers[i].pid > 0)
            return true;
    return false;
}

size_t pool_size(const struct pool *p)
{
    return p->n;
}

void pool_count(const struct pool *p, size_t *idle, size_t *busy)
{
    *idle = *busy = 0;
    for (size_t i = 0; i < p->n; i++) {
        *idle += p->workers[i].state == W_IDLE;
        *busy += p->workers[i].state == W_BUSY;
    }
}

unsigned long pool_restarts(const struct pool *p, enum reap_cause cause)
{
    return (unsigned)cause < REAP_CAUSES ? p->restarts[cause] : 0;
}
