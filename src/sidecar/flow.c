/*
 * flow.c - each consumed message's way in: delivery, admission, the runtime
 * call and routing its answer; publish.c sends what comes out.
 */
#include "flow.h"

#include "admission.h"
#include "publish.h"
#include "duration.h"
#include "log.h"
#include "prefetch.h"
#include "protocol.h"
#include "reports.h"
#include "splice.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKLOG_RETRY_S 0.01 /* the runtime's accept backlog was full: try again after */

static void message_begin(struct sidecar *sc, struct message *m);

/* The id of a body that is not (yet) a parsed envelope, for log lines about
 * it; NULL when there is none.  Only used off the hot path. */
static const char *peek_id(const struct message *m, char *buf, size_t len)
{
    json_t *root = json_loadb(m->body, m->len, 0, NULL);
    const char *id = json_string_value(json_object_get(root, "id"));
    if (id)
        snprintf(buf, len, "%s", id);
    json_decref(root);
    return id ? buf : NULL;
}

void flow_requeue_waiting(struct sidecar *sc, enum requeue_reason why)
{
    struct message *m;
    while ((m = msgpool_wait_pop(&sc->pool)))
        publish_requeue(sc, m, m->attempts, why);
}

/* ---- the runtime call ------------------------------------------------------------- */

/* Give m to the runtime (a slot is free).  Returns false when the runtime's
 * accept backlog is full: m is back at the head of the waiting FIFO. */
static bool message_run(struct sidecar *sc, struct message *m)
{
    m->state = MSG_RUNTIME;
    const char *body;
    size_t len;
    bool progress = reports_runtime_body(sc, m, &body, &len);
    int err = rtclient_start(sc->rt, m, body, len, progress);
    if (err == 0) {
        /* Unless an event for m came at once (the write failed). */
        if (m->state == MSG_RUNTIME)
            reports_progress(sc, m, JOBREPORT_PROCESSING, -1);
        return true;
    }
    if (err == -EAGAIN) {
        /* Busy, not down: wait a moment and try again, nothing requeued. */
        msgpool_wait_push_front(&sc->pool, m);
        sc->backlog_full = true;
        sc->stats.runtime_backlog_waits++;
        ev_timer_stop(sc->loop, &sc->backlog_retry);
        ev_timer_set(&sc->backlog_retry, BACKLOG_RETRY_S, 0.);
        ev_timer_start(sc->loop, &sc->backlog_retry);
        return false;
    }
    log_info_id(message_id(m), "runtime unreachable (%s): message requeued", strerror(-err));
    sidecar_runtime_down(sc, strerror(-err));
    publish_requeue(sc, m, m->attempts, REQUEUE_RUNTIME_UNAVAILABLE);
    return true;
}

void flow_run_waiting(struct sidecar *sc)
{
    while (!sc->runtime_down && !sc->shutting_down && !sc->backlog_full && sc->pool.waiting.head &&
           rtclient_has_free_slot(sc->rt))
        if (!message_run(sc, msgpool_wait_pop(&sc->pool)))
            break;
}

void flow_backlog_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    sc->backlog_full = false;
    flow_run_waiting(sc);
}

/* The handler's own progress, ahead of its answer (asked for by reports_runtime_body). */
static void on_progress(void *ctx, void *msg, const char *frame, size_t len)
{
    struct message *m = msg;
    double fraction;
    char text[PROTO_PROGRESS_MESSAGE_MAX + 1];
    if (protocol_parse_progress(frame, len, &fraction, text, sizeof text) != 0) {
        log_debug_id(message_id(m), "ignoring a malformed progress frame from the runtime");
        return;
    }
    reports_handler_progress(ctx, m, fraction, text);
}

static void on_answer(void *ctx, void *msg, char *answer, size_t len, double exec)
{
    struct sidecar *sc = ctx;
    struct message *m = msg;
    char err[256];
    histogram_observe(&sc->stats.runtime_exec, exec);
    sc->ewma_exec = prefetch_ewma(sc->ewma_exec, exec);
    flow_run_waiting(sc); /* the next request goes out while this answer is routed */
    struct route_plan plan;
    if (!sc->cfg->is_end_actor) {
        /* Canonical envelope and answer: spliced, no JSON tree (splice.h). */
        int fast = splice_plan_response(&sc->names, &m->env, answer, len, &plan);
        if (fast) {
            free(answer);
            if (fast < 0) {
                sidecar_broker_fail(sc, "out of memory routing a result");
                return;
            }
            sc->stats
                .processed[plan.outcome == OUTCOME_SUCCESS ? PROCESSED_SUCCESS : PROCESSED_EMPTY]++;
            reports_progress(sc, m, JOBREPORT_COMPLETED, exec);
            publish_plan(sc, m, &plan);
            return;
        }
    }
    struct runtime_response resp;
    int rc = protocol_parse_response(answer, len, &resp, err, sizeof err);
    free(answer);

    if (sc->cfg->is_end_actor) {
        if (rc == 0 && resp.kind == RESPONSE_ERROR)
            log_warn_id(message_id(m), "end actor handler answered %s", resp.error);
        protocol_response_free(&resp);
        sc->stats.processed[PROCESSED_END_CONSUMED]++;
        /* With a gateway, the final status goes first; it settles m. */
        if (reports_final(sc, m))
            return;
        m->state = MSG_CONFIRMING;
        publish_settle(sc, m);
        return;
    }
    if (rc) {
        sc->stats.failed[FAILED_RUNTIME_RESPONSE]++;
        publish_error(sc, m, PROTO_PROCESSING_ERROR, "InvalidRuntimeResponse", err);
        return;
    }
    if (!envelope_json(&m->env) || routing_plan_response(&sc->names, &m->env, &resp, &plan)) {
        protocol_response_free(&resp);
        sidecar_broker_fail(sc, "out of memory routing a result");
        return;
    }
    switch (plan.outcome) {
    case OUTCOME_SUCCESS:
        sc->stats.processed[PROCESSED_SUCCESS]++;
        reports_progress(sc, m, JOBREPORT_COMPLETED, exec); /* once, whatever the fan-out */
        break;
    case OUTCOME_EMPTY_RESPONSE:
        sc->stats.processed[PROCESSED_EMPTY]++;
        reports_progress(sc, m, JOBREPORT_COMPLETED, exec);
        break;
    case OUTCOME_RUNTIME_ERROR:
        sc->stats.failed[FAILED_RUNTIME]++;
        metrics_runtime_error(&sc->stats, resp.error);
        log_info_id(message_id(m), "runtime answered %s", resp.error);
        break;
    default:
        sc->stats.failed[FAILED_RUNTIME_RESPONSE]++;
        break;
    }
    protocol_response_free(&resp);
    publish_plan(sc, m, &plan);
}

/*
 * The runtime connection broke after the request went out (the runtime
 * process died).  Republish the message to the own queue with one more
 * attempt counted, or give up as a poison message after
 * ASYA_MAX_DELIVERY_ATTEMPTS.
 */
static void on_broken(void *ctx, void *msg, const char *why)
{
    struct sidecar *sc = ctx;
    struct message *m = msg;
    flow_run_waiting(sc);
    long attempts = m->attempts + 1;
    if (attempts >= sc->cfg->max_delivery_attempts) {
        char text[256];
        snprintf(text, sizeof text,
                 "the runtime connection broke during %ld attempts (last: %s); giving up", attempts,
                 why);
        sc->stats.failed[FAILED_POISON]++;
        publish_error(sc, m, "poison_message", "PoisonMessage", text);
        return;
    }
    log_warn_id(message_id(m),
                "runtime connection broke mid-request (%s): retrying (attempt %ld of %ld)", why,
                attempts + 1, sc->cfg->max_delivery_attempts);
    publish_requeue(sc, m, attempts, REQUEUE_RUNTIME_BROKEN);
}

static void on_too_large(void *ctx, void *msg, uint32_t announced)
{
    struct sidecar *sc = ctx;
    struct message *m = msg;
    char text[160];
    flow_run_waiting(sc);
    snprintf(text, sizeof text, "runtime answer of %u bytes exceeds ASYA_MAX_MESSAGE_BYTES (%ld)",
             announced, sc->cfg->max_message_bytes);
    sc->stats.failed[FAILED_RUNTIME_RESPONSE]++;
    publish_error(sc, m, PROTO_PROCESSING_ERROR, "ResponseTooLarge", text);
}

static void on_timeout(void *ctx, void *msg)
{
    struct sidecar *sc = ctx;
    struct message *m = msg;
    char d[32], text[160];
    flow_run_waiting(sc);
    duration_format(sc->cfg->runtime_timeout_ns, d, sizeof d);
    snprintf(text, sizeof text, "the runtime did not answer within %s (ASYA_RUNTIME_TIMEOUT)", d);
    sc->stats.failed[FAILED_TIMEOUT]++;
    metrics_runtime_error(&sc->stats, PROTO_TIMEOUT_ERROR);
    if (sc->cfg->is_end_actor) {
        log_warn_id(message_id(m), "%s", text);
        if (reports_final(sc, m))
            return;
        m->state = MSG_CONFIRMING;
        publish_settle(sc, m);
        return;
    }
    publish_error(sc, m, PROTO_TIMEOUT_ERROR, "TimeoutError", text);
}

static void on_unreachable(void *ctx, void *msg, int err)
{
    struct sidecar *sc = ctx;
    struct message *m = msg;
    log_info_id(message_id(m), "runtime unreachable (%s): message requeued", strerror(-err));
    sidecar_runtime_down(sc, strerror(-err));
    publish_requeue(sc, m, m->attempts, REQUEUE_RUNTIME_UNAVAILABLE);
}

const struct rtclient_events flow_runtime_events = {
    .progress = on_progress,
    .answer = on_answer,
    .broken = on_broken,
    .too_large = on_too_large,
    .timeout = on_timeout,
    .unreachable = on_unreachable,
};

/* ---- admission ------------------------------------------------------------------- */

static void message_poison_raw(struct sidecar *sc, struct message *m, long attempts)
{
    char err[256], idbuf[128];
    snprintf(err, sizeof err, "delivered %ld times without completing; giving up", attempts);
    sc->stats.failed[FAILED_POISON]++;
    log_warn_id(peek_id(m, idbuf, sizeof idbuf), "poison_message: %s", err);
    if (envelope_parse(m->body, m->len, 0, &m->env, NULL, 0) == 0)
        publish_error(sc, m, "poison_message", "PoisonMessage", err);
    else
        publish_malformed(sc, m, m->len, "poison_message", "PoisonMessage", err);
}

/* Decide what to do with a message that has just been consumed. */
static void message_begin(struct sidecar *sc, struct message *m)
{
    char err[256], idbuf[128];
    m->started = ev_time();
    m->published_at = 0;
    sc->stats.received++;
    histogram_observe(&sc->stats.size_in, (double)m->len);
    const struct admission_input in = {
        .len = m->len,
        .max_bytes = sc->cfg->max_message_bytes,
        .redelivered = m->redelivered,
        .counted = m->counted,
        .attempts = m->attempts,
        .max_attempts = sc->cfg->max_delivery_attempts,
        .end_actor = sc->cfg->is_end_actor,
    };
    long attempts;
    switch (admission_precheck(&in, &attempts)) {
    case ADMIT_REQUEUE:
        log_info_id(peek_id(m, idbuf, sizeof idbuf),
                    "redelivered message: requeued as attempt %ld of %ld", attempts + 1,
                    sc->cfg->max_delivery_attempts);
        publish_requeue(sc, m, attempts, REQUEUE_REDELIVERED);
        return;
    case ADMIT_POISON_RAW:
        message_poison_raw(sc, m, attempts);
        return;
    case ADMIT_TOO_LARGE:
        snprintf(err, sizeof err, "message of %zu bytes exceeds ASYA_MAX_MESSAGE_BYTES (%ld)",
                 m->len, sc->cfg->max_message_bytes);
        sc->stats.failed[FAILED_TOO_LARGE]++;
        log_warn("%s", err);
        if (sc->cfg->is_end_actor) {
            publish_settle(sc, m);
            return;
        }
        /* Not parsed: the whole of it is what was refused. */
        publish_malformed(sc, m, 0, "msg_parsing_error", "MessageTooLarge", err);
        return;
    default:
        break;
    }

    int flags = sc->cfg->is_end_actor ? ENVELOPE_ALLOW_FINISHED : 0;
    bool parsed =
        envelope_parse(m->body, m->len, flags | ENVELOPE_SCAN, &m->env, err, sizeof err) == 0;
    switch (admission_after_parse(&in, parsed)) {
    case ADMIT_MALFORMED:
        sc->stats
            .failed[strncmp(err, "invalid JSON", 12) == 0 ? FAILED_PARSE : FAILED_VALIDATION]++;
        log_warn_id(peek_id(m, idbuf, sizeof idbuf), "invalid envelope: %s", err);
        if (sc->cfg->is_end_actor) {
            /* error-end: a failure report without a route may still name its job. */
            if (!reports_final_raw(sc, m))
                publish_settle(sc, m);
            return;
        }
        publish_malformed(sc, m, m->len, NULL, NULL, err);
        return;
    case ADMIT_POISON:
        snprintf(err, sizeof err, "delivered %ld times without completing; giving up", m->attempts);
        sc->stats.failed[FAILED_POISON]++;
        publish_error(sc, m, "poison_message", "PoisonMessage", err);
        return;
    default:
        break;
    }
    if (!sc->cfg->is_end_actor) {
        const char *me = envelope_actor(&m->env, m->env.current);
        if (me && strcmp(me, sc->cfg->actor_name) != 0)
            log_warn_id(message_id(m),
                        "route.actors[%zu] is %s, not this actor (%s); processing anyway",
                        m->env.current, me, sc->cfg->actor_name);
    }
    reports_progress(sc, m, JOBREPORT_RECEIVED, -1);
    msgpool_wait_push(&sc->pool, m);
    flow_run_waiting(sc);
}

/* ---- broker events ------------------------------------------------------------ */

/* Holding d would pass ASYA_MAX_INFLIGHT_BYTES (one message is always held):
 * hand it back to the broker, remembered so its redelivery costs no attempt,
 * and pause consuming until half the budget is free (sidecar_bytes_freed).
 * Lowering the prefetch alone is not enough: RabbitMQ applies it to a new
 * consumer, whose window the held messages do not fill, so it would send
 * each rejected message straight back, a loop that starves everything else. */
static bool over_inflight_bytes(struct sidecar *sc, const struct broker_delivery *d)
{
    if (sc->pool.active == 0 || sc->pool.bytes + d->len <= (size_t)sc->cfg->max_inflight_bytes)
        return false;
    memreject_add(&sc->memrej, memreject_hash(d->body, d->len));
    sc->stats.requeued[REQUEUE_INFLIGHT_BYTES]++;
    sc->bytes_capped = true;
    if (!sc->bytes_paused) {
        char err[256];
        sc->bytes_paused = true;
        log_debug("holding %zu bytes: pausing consumption until half of ASYA_MAX_INFLIGHT_BYTES "
                  "is free",
                  sc->pool.bytes);
        if (broker_consuming(sc->broker) && broker_cancel(sc->broker, err, sizeof err))
            sidecar_broker_fail(sc, err);
    }
    sidecar_prefetch_adapt(sc);
    if (broker_reject(sc->broker, d->tag, true))
        sidecar_broker_fail(sc, "reject failed");
    return true;
}

static void on_delivery(void *ctx, const struct broker_delivery *d)
{
    struct sidecar *sc = ctx;
    bool redelivered = d->redelivered;
    long attempts = d->attempts;
    if ((redelivered || d->counted) && sc->memrej.used) {
        /* Marks our own over_inflight_bytes left are no failed attempts. */
        unsigned own = memreject_take(&sc->memrej, memreject_hash(d->body, d->len));
        if (own && d->counted)
            attempts = attempts > (long)own ? attempts - (long)own : 0;
        else if (own)
            redelivered = false;
    }
    sc->ewma_len = prefetch_ewma(sc->ewma_len, (double)d->len);
    if (over_inflight_bytes(sc, d))
        return;
    bool nomem;
    struct message *m = msgpool_take(&sc->pool, d->body, d->len, &nomem);
    if (!m) {
        /* More deliveries than the pool holds: never expected. */
        if (!nomem)
            log_warn("more deliveries than ASYA_RABBITMQ_PREFETCH allows; requeueing one");
        if (broker_reject(sc->broker, d->tag, true))
            sidecar_broker_fail(sc, "reject failed");
        return;
    }
    m->tag = d->tag;
    m->attempts = attempts;
    m->redelivered = redelivered;
    m->counted = d->counted;
    m->started = ev_time();
    sc->stats.active = sc->pool.active;
    sc->stats.inflight_bytes = (int64_t)sc->pool.bytes;
    if (sc->shutting_down || sc->runtime_down) {
        /* Arrived after the consumer was cancelled: not ours to run now. */
        publish_requeue(sc, m, m->attempts,
                        sc->shutting_down ? REQUEUE_SHUTDOWN : REQUEUE_RUNTIME_UNAVAILABLE);
        return;
    }
    message_begin(sc, m);
}

const struct broker_events flow_broker_events = {
    .delivery = on_delivery,
    .confirm = publish_on_confirm,
    .returned = publish_on_returned,
    .blocked = publish_on_blocked,
    .unblocked = publish_on_unblocked,
    .declared = publish_on_declared,
};
