/*
 * flow.c - each consumed message's way through the sidecar: admission, the
 * runtime call, routing what comes back, publishing, and settling once the
 * broker confirmed everything the message produced.
 */
#include "flow.h"

#include "admission.h"
#include "duration.h"
#include "log.h"
#include "prefetch.h"
#include "protocol.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void message_begin(struct sidecar *sc, struct message *m);

static const char *msg_id(const struct message *m)
{
    return m->env.id;
}

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

/* ---- settling ------------------------------------------------------------------ */

static void message_ack(struct sidecar *sc, struct message *m)
{
    msgpool_ack(&sc->pool, m);
    ev_tstamp now = ev_time();
    if (m->published_at > 0)
        histogram_observe(&sc->stats.confirm, now - m->published_at);
    histogram_observe(&sc->stats.processing, now - m->started);
    log_debug_id(msg_id(m), "done after %.2f ms", (now - m->started) * 1000.0);
}

static void message_reject(struct sidecar *sc, struct message *m)
{
    if (broker_reject(sc->broker, m->tag, true))
        sidecar_broker_fail(sc, "reject failed");
}

static void message_done(struct sidecar *sc, struct message *m)
{
    msgpool_release(&sc->pool, m);
    sc->stats.active = sc->pool.active;
    sidecar_check_drained(sc);
}

static void message_publish(struct sidecar *sc, struct message *m, struct route_plan *plan);
static void message_route_error(struct sidecar *sc, struct message *m, const char *code,
                                const char *type, const char *text);

/* Settle the consumed message once nothing it produced is unconfirmed. */
static void message_settle(struct sidecar *sc, struct message *m)
{
    if (m->nacked) {
        sc->stats.requeued[REQUEUE_BROKER_NACK]++;
        log_warn_id(msg_id(m), "the broker refused a publish; requeueing the message");
        message_reject(sc, m);
    } else if (m->returned && !m->error_routed && m->env.root) {
        /* A destination vanished between declare and publish: report it. */
        m->returned = false;
        m->error_routed = true;
        sc->stats.failed[FAILED_ROUTING]++;
        message_route_error(sc, m, "routing_error", "UnroutableMessage",
                            "a result could not be routed to its destination queue");
        return; /* settled again when this publish is confirmed */
    } else if (m->returned) {
        log_error_id(msg_id(m), "error-end is unroutable; requeueing the message");
        message_reject(sc, m);
    } else {
        message_ack(sc, m);
    }
    message_done(sc, m);
}

/* ---- publishing ----------------------------------------------------------------- */

/* One item of a plan, serialised and checked before anything goes out. */
struct outgoing {
    char *text; /* free() */
    size_t len;
    char queue[ROUTING_QUEUE_MAX + 1];
    enum publish_kind kind;
};

/* An error envelope that would exceed the size limit loses its
 * original_payload (its size is recorded instead): a failure report must
 * always be deliverable. */
static char *shrink_error_envelope(json_t *body, size_t *len)
{
    json_t *payload = json_object_get(body, "payload");
    json_t *orig = json_object_get(payload, "original_payload");
    if (!orig)
        return NULL;
    json_object_set_new(payload, "original_payload_bytes", json_integer((json_int_t)*len));
    json_object_set_new(payload, "original_payload_truncated", json_true());
    json_object_del(payload, "original_payload");
    return envelope_dump(body, len);
}

/*
 * Serialise and check every item of plan into out[] (plan->count entries):
 * each destination must be a queue name the broker accepts and declares,
 * and each envelope within ASYA_MAX_MESSAGE_BYTES.  Returns 0; 1 when the
 * message must go to error-end instead (why says why); -1 when the broker
 * connection failed (already reported).  out[] is filled in all cases (free
 * with outgoing_free).
 */
static int plan_prepare(struct sidecar *sc, const struct route_plan *plan, struct outgoing *out,
                        char *why, size_t whylen)
{
    size_t max = (size_t)sc->cfg->max_message_bytes;
    for (size_t i = 0; i < plan->count; i++) {
        const struct route_publish *p = &plan->items[i];
        out[i].kind = p->kind;
        if (routing_queue_name(sc->cfg->queue_prefix, p->actor, out[i].queue, sizeof out[i].queue,
                               why, whylen))
            return 1;
        out[i].text = envelope_dump(p->body, &out[i].len);
        if (!out[i].text) {
            sidecar_broker_fail(sc, "out of memory serialising a result");
            return -1;
        }
        if (out[i].len > max && p->kind == PUBLISH_ERROR_END) {
            free(out[i].text);
            out[i].text = shrink_error_envelope(p->body, &out[i].len);
            if (!out[i].text) {
                sidecar_broker_fail(sc, "out of memory serialising an error envelope");
                return -1;
            }
        }
        if (out[i].len > max) {
            snprintf(why, whylen,
                     "a result of %zu bytes for %s exceeds ASYA_MAX_MESSAGE_BYTES (%zu)",
                     out[i].len, p->actor, max);
            return 1;
        }
    }
    /* Declare every destination before publishing any, so a refused one
     * costs only this message and nothing of it is half sent. */
    for (size_t i = 0; i < plan->count; i++) {
        int rc = broker_declare(sc->broker, out[i].queue, why, whylen);
        if (rc < 0)
            sidecar_broker_fail(sc, why);
        if (rc)
            return rc;
    }
    return 0;
}

static void outgoing_free(struct outgoing *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(out[i].text);
}

/* Publish the prepared items for message m.  Returns 0, or -1 when the
 * broker connection failed (already reported). */
static int publish_prepared(struct sidecar *sc, struct message *m, const struct outgoing *out,
                            size_t n)
{
    char err[256];
    for (size_t i = 0; i < n; i++) {
        uint64_t seq;
        ev_tstamp t0 = ev_time();
        if (broker_publish_queue(sc->broker, out[i].queue, out[i].text, out[i].len, 0, &seq, err,
                                 sizeof err)) {
            sidecar_broker_fail(sc, err);
            return -1;
        }
        if (confirm_track(&sc->confirms, seq, m->index)) {
            sidecar_broker_fail(sc, "out of memory tracking confirms");
            return -1;
        }
        m->unconfirmed++;
        metrics_sent(&sc->stats, out[i].queue, (enum sent_type)out[i].kind, out[i].len);
        histogram_observe(&sc->stats.queue_send, ev_time() - t0);
        log_debug_id(msg_id(m), "published to %s (seq %llu)", out[i].queue,
                     (unsigned long long)seq);
    }
    return 0;
}

/* Publish plan for message m (any slot already released; plan is freed) and
 * wait for its confirms.  A plan the broker cannot take sends the message to
 * error-end as routing_error instead; an error plan that cannot go out
 * either (error-end itself refused) requeues the message. */
static void message_publish(struct sidecar *sc, struct message *m, struct route_plan *plan)
{
    struct outgoing stack[4], *out = stack;
    char why[512];
    m->state = MSG_CONFIRMING;
    m->published_at = ev_time();
    size_t n = plan->count;
    bool error_plan = n > 0 && plan->items[0].kind == PUBLISH_ERROR_END;
    if (n > sizeof stack / sizeof stack[0])
        out = calloc(n, sizeof *out);
    else
        memset(stack, 0, sizeof stack);
    if (!out) {
        route_plan_free(plan);
        sidecar_broker_fail(sc, "out of memory");
        return;
    }
    int rc = plan_prepare(sc, plan, out, why, sizeof why);
    route_plan_free(plan);
    if (rc == 0)
        rc = publish_prepared(sc, m, out, n);
    outgoing_free(out, n);
    if (out != stack)
        free(out);
    if (rc == 1 && !error_plan) {
        sc->stats.failed[FAILED_ROUTING]++;
        message_route_error(sc, m, "routing_error", "RoutingError", why);
        return;
    }
    if (rc == 1) {
        log_error_id(msg_id(m), "cannot report a failure to error-end (%s); requeueing", why);
        m->returned = true; /* settles as "error-end is unroutable": requeued */
        m->error_routed = true;
        rc = 0;
    }
    if (rc == 0 && m->unconfirmed == 0)
        message_settle(sc, m);
}

static void message_route_error(struct sidecar *sc, struct message *m, const char *code,
                                const char *type, const char *text)
{
    struct route_plan plan;
    log_warn_id(msg_id(m), "%s: %s", code, text);
    if (routing_plan_error(&sc->names, &m->env, code, type, text, &plan)) {
        sidecar_broker_fail(sc, "out of memory building an error envelope");
        return;
    }
    message_publish(sc, m, &plan);
}

/* error-end for a body that is no valid envelope (or must not be parsed:
 * parse_max 0); routing keeps a bounded prefix of it. */
static void message_route_malformed(struct sidecar *sc, struct message *m, size_t parse_max,
                                    const char *code, const char *type, const char *text)
{
    struct route_plan plan;
    if (routing_plan_malformed(&sc->names, m->body, m->len, parse_max, code, type, text, &plan)) {
        sidecar_broker_fail(sc, "out of memory");
        return;
    }
    message_publish(sc, m, &plan);
}

/*
 * Hand the message back to its queue as a fresh copy carrying attempts in
 * x-asya-attempts, and ack the original once the copy is confirmed.  Unlike
 * basic.reject this neither sets the redelivered flag nor bumps a quorum
 * queue's delivery count, so only real failures count as attempts; another
 * replica of the actor may take the copy.
 */
static void message_requeue(struct sidecar *sc, struct message *m, long attempts,
                            enum requeue_reason why)
{
    char err[256];
    uint64_t seq;
    sc->stats.requeued[why]++;
    m->state = MSG_CONFIRMING;
    m->published_at = ev_time();
    if (broker_publish_queue(sc->broker, sc->cfg->queue_name, m->body, m->len, attempts, &seq, err,
                             sizeof err)) {
        sidecar_broker_fail(sc, err);
        return;
    }
    m->copy_published = true;
    if (confirm_track(&sc->confirms, seq, m->index)) {
        sidecar_broker_fail(sc, "out of memory tracking confirms");
        return;
    }
    m->unconfirmed++;
}

void flow_requeue_waiting(struct sidecar *sc, enum requeue_reason why)
{
    struct message *m;
    while ((m = msgpool_wait_pop(&sc->pool)))
        message_requeue(sc, m, m->attempts, why);
}

/* ---- the runtime call ------------------------------------------------------------- */

/* Give m to the runtime (a slot is free). */
static void message_run(struct sidecar *sc, struct message *m)
{
    m->state = MSG_RUNTIME;
    int err = rtclient_start(sc->rt, m, m->body, m->len);
    if (err == 0)
        return;
    log_info_id(msg_id(m), "runtime unreachable (%s): message requeued", strerror(-err));
    sidecar_runtime_down(sc, strerror(-err));
    message_requeue(sc, m, m->attempts, REQUEUE_RUNTIME_UNAVAILABLE);
}

void flow_run_waiting(struct sidecar *sc)
{
    while (!sc->runtime_down && !sc->shutting_down && sc->pool.wait_head &&
           rtclient_has_free_slot(sc->rt))
        message_run(sc, msgpool_wait_pop(&sc->pool));
}

static void on_answer(void *ctx, void *msg, char *answer, size_t len, double exec)
{
    struct sidecar *sc = ctx;
    struct message *m = msg;
    char err[256];
    histogram_observe(&sc->stats.runtime_exec, exec);
    sc->ewma_exec = prefetch_ewma(sc->ewma_exec, exec);
    flow_run_waiting(sc); /* the next request goes out while this answer is routed */
    struct runtime_response resp;
    int rc = protocol_parse_response(answer, len, &resp, err, sizeof err);
    free(answer);

    if (sc->cfg->is_end_actor) {
        if (rc == 0 && resp.kind == RESPONSE_ERROR)
            log_warn_id(msg_id(m), "end actor handler answered %s", resp.error);
        protocol_response_free(&resp);
        sc->stats.processed[PROCESSED_END_CONSUMED]++;
        m->state = MSG_CONFIRMING;
        message_settle(sc, m);
        return;
    }
    if (rc) {
        sc->stats.failed[FAILED_RUNTIME_RESPONSE]++;
        message_route_error(sc, m, PROTO_PROCESSING_ERROR, "InvalidRuntimeResponse", err);
        return;
    }
    struct route_plan plan;
    if (routing_plan_response(&sc->names, &m->env, &resp, &plan)) {
        protocol_response_free(&resp);
        sidecar_broker_fail(sc, "out of memory routing a result");
        return;
    }
    switch (plan.outcome) {
    case OUTCOME_SUCCESS:
        sc->stats.processed[PROCESSED_SUCCESS]++;
        break;
    case OUTCOME_EMPTY_RESPONSE:
        sc->stats.processed[PROCESSED_EMPTY]++;
        break;
    case OUTCOME_RUNTIME_ERROR:
        sc->stats.failed[FAILED_RUNTIME]++;
        metrics_runtime_error(&sc->stats, resp.error);
        log_info_id(msg_id(m), "runtime answered %s", resp.error);
        break;
    default:
        sc->stats.failed[FAILED_RUNTIME_RESPONSE]++;
        break;
    }
    protocol_response_free(&resp);
    message_publish(sc, m, &plan);
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
        message_route_error(sc, m, "poison_message", "PoisonMessage", text);
        return;
    }
    log_warn_id(msg_id(m),
                "runtime connection broke mid-request (%s): retrying (attempt %ld of %ld)", why,
                attempts + 1, sc->cfg->max_delivery_attempts);
    message_requeue(sc, m, attempts, REQUEUE_RUNTIME_BROKEN);
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
    message_route_error(sc, m, PROTO_PROCESSING_ERROR, "ResponseTooLarge", text);
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
        log_warn_id(msg_id(m), "%s", text);
        m->state = MSG_CONFIRMING;
        message_settle(sc, m);
        return;
    }
    message_route_error(sc, m, PROTO_TIMEOUT_ERROR, "TimeoutError", text);
}

static void on_unreachable(void *ctx, void *msg, int err)
{
    struct sidecar *sc = ctx;
    struct message *m = msg;
    log_info_id(msg_id(m), "runtime unreachable (%s): message requeued", strerror(-err));
    sidecar_runtime_down(sc, strerror(-err));
    message_requeue(sc, m, m->attempts, REQUEUE_RUNTIME_UNAVAILABLE);
}

const struct rtclient_events flow_runtime_events = {
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
        message_route_error(sc, m, "poison_message", "PoisonMessage", err);
    else
        message_route_malformed(sc, m, m->len, "poison_message", "PoisonMessage", err);
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
        message_requeue(sc, m, attempts, REQUEUE_REDELIVERED);
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
            message_settle(sc, m);
            return;
        }
        /* Not parsed: the whole of it is what was refused. */
        message_route_malformed(sc, m, 0, "msg_parsing_error", "MessageTooLarge", err);
        return;
    default:
        break;
    }

    int flags = sc->cfg->is_end_actor ? ENVELOPE_ALLOW_FINISHED : 0;
    bool parsed = envelope_parse(m->body, m->len, flags, &m->env, err, sizeof err) == 0;
    switch (admission_after_parse(&in, parsed)) {
    case ADMIT_MALFORMED:
        sc->stats
            .failed[strncmp(err, "invalid JSON", 12) == 0 ? FAILED_PARSE : FAILED_VALIDATION]++;
        log_warn_id(peek_id(m, idbuf, sizeof idbuf), "invalid envelope: %s", err);
        if (sc->cfg->is_end_actor) {
            message_settle(sc, m);
            return;
        }
        message_route_malformed(sc, m, m->len, NULL, NULL, err);
        return;
    case ADMIT_POISON:
        snprintf(err, sizeof err, "delivered %ld times without completing; giving up", m->attempts);
        sc->stats.failed[FAILED_POISON]++;
        message_route_error(sc, m, "poison_message", "PoisonMessage", err);
        return;
    default:
        break;
    }
    if (!sc->cfg->is_end_actor) {
        const char *me = envelope_actor(&m->env, m->env.current);
        if (me && strcmp(me, sc->cfg->actor_name) != 0)
            log_warn_id(msg_id(m),
                        "route.actors[%zu] is %s, not this actor (%s); processing anyway",
                        m->env.current, me, sc->cfg->actor_name);
    }
    msgpool_wait_push(&sc->pool, m);
    flow_run_waiting(sc);
}

/* ---- broker events ------------------------------------------------------------ */

static void on_delivery(void *ctx, const struct broker_delivery *d)
{
    struct sidecar *sc = ctx;
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
    m->attempts = d->attempts;
    m->redelivered = d->redelivered;
    m->counted = d->counted;
    m->started = ev_time();
    sc->stats.active = sc->pool.active;
    if (sc->shutting_down || sc->runtime_down) {
        /* Arrived after the consumer was cancelled: not ours to run now. */
        message_requeue(sc, m, m->attempts,
                        sc->shutting_down ? REQUEUE_SHUTDOWN : REQUEUE_RUNTIME_UNAVAILABLE);
        return;
    }
    message_begin(sc, m);
}

static void on_confirm(void *ctx, uint64_t seq, bool multiple, bool ack)
{
    struct sidecar *sc = ctx;
    const struct confirm_done *done;
    long n = confirm_settle(&sc->confirms, seq, multiple, ack, &done);
    if (n < 0) {
        sidecar_broker_fail(sc, "out of memory settling confirms");
        return;
    }
    /* Settling may publish (a returned message's routing_error), which tracks
     * new confirms; the list stays valid meanwhile. */
    for (long i = 0; i < n; i++) {
        struct message *m = &sc->pool.msgs[done[i].msg];
        if (!done[i].ack)
            m->nacked = true;
        if (m->unconfirmed > 0 && --m->unconfirmed == 0 && m->state == MSG_CONFIRMING)
            message_settle(sc, m);
    }
}

static void on_returned(void *ctx, uint64_t seq, const char *routing_key)
{
    struct sidecar *sc = ctx;
    log_warn("publish to %s was unroutable (returned by the broker)", routing_key);
    long msg = confirm_lookup(&sc->confirms, seq);
    if (msg >= 0)
        sc->pool.msgs[msg].returned = true;
}

const struct broker_events flow_broker_events = {
    .delivery = on_delivery,
    .confirm = on_confirm,
    .returned = on_returned,
};

/* ---- acks and the end of the grace period ------------------------------------------ */

static int ack_single(void *ctx, uint64_t tag)
{
    return broker_ack(ctx, tag, false);
}

void flow_flush_acks(struct sidecar *sc)
{
    if (!broker_connected(sc->broker)) {
        sc->pool.nacks = 0;
        return;
    }
    uint64_t upto;
    int rc = msgpool_flush_acks(&sc->pool, &upto, ack_single, sc->broker);
    if (upto)
        rc |= broker_ack(sc->broker, upto, true);
    if (rc)
        sidecar_broker_fail(sc, "ack failed");
}

bool flow_grace_over(struct sidecar *sc)
{
    flow_flush_acks(sc);
    rtclient_abort_all(sc->rt);
    unsigned confirming = 0;
    for (unsigned i = 0; i < sc->pool.n; i++) {
        struct message *m = &sc->pool.msgs[i];
        if (m->state == MSG_FREE)
            continue;
        if (m->state == MSG_CONFIRMING) {
            /* Its results or its requeue copy are out: rejecting it too would
             * leave two live copies.  It settles when they are confirmed. */
            confirming++;
            continue;
        }
        message_reject(sc, m);
        sc->stats.requeued[REQUEUE_SHUTDOWN]++;
        msgpool_release(&sc->pool, m);
    }
    sc->pool.wait_head = sc->pool.wait_tail = NULL;
    sc->stats.active = sc->pool.active;
    return confirming == 0;
}
