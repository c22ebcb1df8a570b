#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>

#include "conn.h"
#include "log.h"
#include "pool.h"
#include "protocol.h"

#define QUEUE_MAX  1024 /* queued requests before clients stop being read */
#define RETURN_MAX 3    /* workers in a row that may end before taking one request */

struct supervisor {
    struct ev_loop *loop;
    const struct runtime_config *cfg; /* borrowed */
    struct conn_server conns;
    struct pool *pool;      /* owned */
    struct conn_list queue; /* requests waiting for a worker, oldest first */
    size_t queued;
    bool ready_file;       /* ready file created by us */
    bool serving;          /* all workers were ready once; start-up is over */
    bool stopping;         /* SIGTERM seen, or a fatal start-up error */
    bool workers_stopping; /* nothing left in flight: the pool is stopping */
    int exit_code;
    ev_timer shutdown_timer;
    ev_signal sigterm;
    ev_signal sigint;
};

static void check_drained(struct supervisor *sv);
static void begin_shutdown(struct supervisor *sv, int exit_code);

/* ---- the request queue ----------------------------------------------------- */

static void set_paused(struct supervisor *sv, bool paused)
{
    if (sv->conns.paused == paused)
        return;
    if (paused)
        log_warn("request queue full (%d waiting): pausing reads until a worker frees up",
                 QUEUE_MAX);
    else
        log_info("request queue has room again: resuming reads");
    conn_pause(&sv->conns, paused);
}

/* Queues c's request, last; at_head: first (it had been lent already). */
static void queue_push(struct supervisor *sv, struct conn *c, bool at_head)
{
    c->queued = true;
    if (at_head)
        TAILQ_INSERT_HEAD(&sv->queue, c, queue);
    else
        TAILQ_INSERT_TAIL(&sv->queue, c, queue);
    sv->queued++;
    if (sv->queued >= QUEUE_MAX)
        set_paused(sv, true);
}

static void queue_remove(struct supervisor *sv, struct conn *c)
{
    c->queued = false;
    TAILQ_REMOVE(&sv->queue, c, queue);
    sv->queued--;
    if (sv->conns.paused && sv->queued < QUEUE_MAX / 2)
        set_paused(sv, false);
}

/* Hands queued requests to idle workers, oldest first. */
static void dispatch(struct supervisor *sv)
{
    while (sv->queued > 0) {
        struct conn *c = TAILQ_FIRST(&sv->queue);
        struct worker *w = pool_submit(sv->pool, c->fd, c->id, c->hdr, c->pre, c->pre_len, c);
        if (!w)
            return;
        queue_remove(sv, c);
        c->worker = w;
    }
}

/*
 * The answer to a control "stats" request (see protocol.h), or NULL:
 *   {"asya_runtime": "<version>", "workers": n, "idle": n, "busy": n,
 *    "queued": n, "worker_restarts": {"crash": n, "oom_kill": n,
 *    "timeout_kill": n, "protocol_kill": n, "exit": n}}
 */
static char *stats_text(const struct supervisor *sv, size_t *len)
{
    size_t idle, busy;
    pool_count(sv->pool, &idle, &busy);
    json_t *restarts = json_object();
    for (int i = 0; i < REAP_CAUSES; i++)
        json_object_set_new(restarts, reap_cause_name((enum reap_cause)i),
                            json_integer((json_int_t)pool_restarts(sv->pool, (enum reap_cause)i)));
    json_t *o =
        json_pack("{s:s, s:I, s:I, s:I, s:I, s:o}", "asya_runtime", ASYA_BUILD_VERSION, "workers",
                  (json_int_t)pool_size(sv->pool), "idle", (json_int_t)idle, "busy",
                  (json_int_t)busy, "queued", (json_int_t)sv->queued, "worker_restarts", restarts);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s)
        *len = strlen(s);
    return s;
}

/* ---- connection events ------------------------------------------------------ */

static void on_request(void *ctx, struct conn *c)
{
    struct supervisor *sv = ctx;
    if (c->control) {
        /* Answered here, without a worker: a cheap health and stats probe. */
        size_t len = 0;
        char *text = stats_text(sv, &len);
        conn_send_answer(c, text, len, false);
        return;
    }
    c->returns = 0;
    queue_push(sv, c, false);
    dispatch(sv);
}

static void on_closing(void *ctx, struct conn *c)
{
    struct supervisor *sv = ctx;
    if (c->queued) {
        log_debug("client left while its request was queued: dropping it");
        queue_remove(sv, c);
    } else if (c->worker) {
        /* The client left while a worker runs its request (its timeout
         * fired): nobody wants the answer, so the worker is killed rather
         * than left running, and replaced. */
        pool_abandon(sv->pool, c->worker);
        c->worker = NULL;
    }
    if (sv->stopping)
        check_drained(sv);
}

static const struct conn_events conn_events = {
    .request = on_request,
    .closing = on_closing,
};

/* ---- pool events -------------------------------------------------------------- */

/* All workers reported ready for the first time: open the socket. */
static void on_all_ready(void *ctx)
{
    struct supervisor *sv = ctx;
    const struct runtime_config *cfg = sv->cfg;
    char err[512];
    if (sv->stopping)
        return;
    sv->serving = true;
    if (conn_listen(&sv->conns, cfg->socket_path, cfg->socket_mode, err, sizeof err) != 0) {
        log_error("ASYA_SOCKET_PATH=%s: %s", cfg->socket_path, err);
        begin_shutdown(sv, 1);
        return;
    }
    if (cfg->ready_file) {
        int rfd = open(cfg->ready_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (rfd < 0) {
            log_error("ASYA_READY_FILE=%s: cannot create it: %s", cfg->ready_file, strerror(errno));
            begin_shutdown(sv, 1);
            return;
        }
        char line[32];
        int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
        ssize_t wr = write(rfd, line, (size_t)n);
        (void)wr;
        close(rfd);
        sv->ready_file = true;
    }
    log_info("ready: serving %s (%s mode) on %s with %zu worker(s)", cfg->handler,
             config_mode_name(cfg->mode), cfg->socket_path, pool_size(sv->pool));
}

static void on_idle(void *ctx)
{
    struct supervisor *sv = ctx;
    if (!sv->workers_stopping)
        dispatch(sv); /* queued requests still run while draining */
    check_drained(sv);
}

static void on_done(void *ctx, void *owner, bool reusable)
{
    struct conn *c = owner;
    (void)ctx;
    c->worker = NULL;
    conn_returned(c, reusable);
}

static void on_answer(void *ctx, void *owner, char *body, size_t len, bool close_after)
{
    struct conn *c = owner;
    (void)ctx;
    c->worker = NULL;
    conn_send_answer(c, body, len, close_after);
}

static void on_returned(void *ctx, void *owner, char *text, size_t len)
{
    struct supervisor *sv = ctx;
    struct conn *c = owner;
    c->worker = NULL;
    if (++c->returns >= RETURN_MAX) {
        /* The request itself may be what stops workers from taking it. */
        log_warn("%u workers in a row ended before taking a request: answering it with an error",
                 c->returns);
        /* It is still unread in the socket: dropped once answered. */
        conn_send_answer(c, text, len, conn_skip_request(c) != 0);
        return;
    }
    free(text);
    /* Never the worker's: it waits for the next live worker, first in line. */
    queue_push(sv, c, true);
    if (!sv->workers_stopping)
        dispatch(sv);
}

static void on_start_failed(void *ctx, long pid, const char *line)
{
    struct supervisor *sv = ctx;
    if (!sv->serving && !sv->stopping) {
        log_error("%s", line);
        begin_shutdown(sv, 1);
    } else if (!sv->stopping) {
        log_error("worker %ld failed to start: %s", pid, line);
    }
}

static bool on_need_worker(void *ctx)
{
    const struct supervisor *sv = ctx;
    return !sv->stopping || sv->queued > 0;
}

static void on_exited(void *ctx)
{
    check_drained(ctx);
}

static const struct pool_events pool_events = {
    .all_ready = on_all_ready,
    .idle = on_idle,
    .done = on_done,
    .answer = on_answer,
    .returned = on_returned,
    .start_failed = on_start_failed,
    .need_worker = on_need_worker,
    .exited = on_exited,
};

/* ---- shutdown ------------------------------------------------------------------ */

static void remove_files(struct supervisor *sv)
{
    conn_unlisten(&sv->conns);
    if (sv->ready_file) {
        unlink(sv->cfg->ready_file);
        sv->ready_file = false;
    }
}

/* Called whenever work finishes while stopping: moves shutdown along. */
static void check_drained(struct supervisor *sv)
{
    if (!sv->stopping)
        return;
    if (!sv->workers_stopping) {
        if (conn_in_flight(&sv->conns) > 0)
            return;
        sv->workers_stopping = true;
        pool_stop(sv->pool);
    }
    if (!pool_alive(sv->pool))
        ev_break(sv->loop, EVBREAK_ALL);
}

static void shutdown_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct supervisor *sv = t->data;
    (void)loop;
    (void)revents;
    size_t n = conn_in_flight(&sv->conns);
    if (n)
        log_warn("shutdown timeout: abandoning %zu request(s) still in flight", n);
    /* Kills busy workers first, so closing their connections does not. */
    sv->workers_stopping = true;
    pool_stop(sv->pool);
    conn_close_all(&sv->conns);
    check_drained(sv);
}

static void begin_shutdown(struct supervisor *sv, int exit_code)
{
    if (exit_code > sv->exit_code)
        sv->exit_code = exit_code;
    if (sv->stopping)
        return;
    sv->stopping = true;
    remove_files(sv);
    conn_drain(&sv->conns);
    if (exit_code != 0 || !sv->serving) {
        shutdown_timer_cb(sv->loop, &sv->shutdown_timer, 0);
        return;
    }
    log_info("shutting down: finishing %zu request(s) in flight (timeout %.3gs)",
             conn_in_flight(&sv->conns), (double)sv->cfg->shutdown_ns / 1e9);
    ev_timer_set(&sv->shutdown_timer, (double)sv->cfg->shutdown_ns / 1e9, 0);
    ev_timer_start(sv->loop, &sv->shutdown_timer);
    check_drained(sv);
}

static void signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    struct supervisor *sv = s->data;
    (void)loop;
    (void)revents;
    if (sv->stopping) {
        log_warn("%s again: stopping now", s->signum == SIGINT ? "SIGINT" : "SIGTERM");
        ev_timer_stop(sv->loop, &sv->shutdown_timer);
        shutdown_timer_cb(sv->loop, &sv->shutdown_timer, 0);
        return;
    }
    log_info("%s received", s->signum == SIGINT ? "SIGINT" : "SIGTERM");
    begin_shutdown(sv, 0);
}

/* Connections the supervisor may hold open: its file descriptor limit, less
 * what the workers' channels and the rest of the runtime need. */
static size_t max_connections(const struct runtime_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return (size_t)1 << 20;
    size_t reserve = 2 * (size_t)cfg->workers + 32;
    return rl.rlim_cur > reserve + 16 ? (size_t)rl.rlim_cur - reserve : 16;
}

/* ---- entry point ---------------------------------------------------------------- */

int supervisor_run(const struct runtime_config *cfg, const char *exe)
{
    struct supervisor sv;
    memset(&sv, 0, sizeof sv);
    sv.cfg = cfg;
    TAILQ_INIT(&sv.queue);

    signal(SIGPIPE, SIG_IGN);
    sv.loop = ev_default_loop(EVFLAG_AUTO);
    if (!sv.loop) {
        log_error("cannot initialise the event loop (libev)");
        return 1;
    }
    sv.pool = pool_new(sv.loop, cfg, exe, &pool_events, &sv);
    if (!sv.pool) {
        log_error("out of memory");
        return 1;
    }
    conn_server_init(&sv.conns, sv.loop, cfg->max_message, max_connections(cfg), &conn_events, &sv);

    ev_timer_init(&sv.shutdown_timer, shutdown_timer_cb, 0, 0);
    sv.shutdown_timer.data = &sv;
    ev_signal_init(&sv.sigterm, signal_cb, SIGTERM);
    sv.sigterm.data = &sv;
    ev_signal_init(&sv.sigint, signal_cb, SIGINT);
    sv.sigint.data = &sv;
    ev_signal_start(sv.loop, &sv.sigterm);
    ev_signal_start(sv.loop, &sv.sigint);

    log_info("asya-runtime %s starting: handler %s, %s mode, %zu worker(s)%s", ASYA_BUILD_VERSION,
             cfg->handler, config_mode_name(cfg->mode), pool_size(sv.pool),
             cfg->memory_mb ? ", memory limit set" : "");
    pool_start(sv.pool);

    ev_run(sv.loop, 0);

    remove_files(&sv);
    conn_close_all(&sv.conns);
    conn_server_done(&sv.conns);
    pool_free(sv.pool);
    ev_loop_destroy(sv.loop);
    if (sv.exit_code == 0)
        log_info("stopped");
    return sv.exit_code;
}
