/*
 * publish.c - what a message produces goes out, and the message is settled
 * once the broker confirmed all of it.
 */
#include "publish.h"

#include "log.h"
#include "reports.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- settling ------------------------------------------------------------------ */

static void message_ack(struct sidecar *sc, struct message *m)
{
    msgpool_ack(&sc->pool, m);
    ev_tstamp now = ev_time();
    if (m->published_at > 0)
        histogram_observe(&sc->stats.confirm, now - m->published_at);
    histogram_observe(&sc->stats.processing, now - m->started);
    log_debug_id(message_id(m), "done after %.2f ms", (now - m->started) * 1000.0);
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
    sc->stats.inflight_bytes = (int64_t)sc->pool.bytes;
    sidecar_bytes_freed(sc);
    sidecar_check_drained(sc);
}

/* Settle the consumed message once nothing it produced is unconfirmed. */
void publish_settle(struct sidecar *sc, struct message *m)
{
    if (m->nacked) {
        sc->stats.requeued[REQUEUE_BROKER_NACK]++;
        log_warn_id(message_id(m), "the broker refused a publish; requeueing the message");
        message_reject(sc, m);
    } else if (m->returned && !m->error_routed && envelope_valid(&m->env)) {
        /* A destination vanished between declare and publish: report it. */
        m->returned = false;
        m->error_routed = true;
        sc->stats.failed[FAILED_ROUTING]++;
        publish_error(sc, m, "routing_error", "UnroutableMessage",
                      "a result could not be routed to its destination queue");
        return; /* settled again when this publish is confirmed */
    } else if (m->returned) {
        log_error_id(message_id(m), "error-end is unroutable; requeueing the message");
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

/* What an error envelope over the size limit keeps of original_message. */
#define SHRUNK_ORIGINAL_MAX 1024

/*
 * An error envelope that would exceed the size limit loses its
 * original_payload, and keeps only a short prefix of original_message (each
 * with its size recorded): a failure report must always be deliverable.
 * Returns true when body changed.
 */
static bool shrink_error_envelope(json_t *body, size_t len)
{
    json_t *payload = json_object_get(body, "payload");
    bool changed = false;
    if (json_object_get(payload, "original_payload")) {
        json_object_set_new(payload, "original_payload_bytes", json_integer((json_int_t)len));
        json_object_set_new(payload, "original_payload_truncated", json_true());
        json_object_del(payload, "original_payload");
        changed = true;
    }
    json_t *orig = json_object_get(payload, "original_message");
    size_t olen = json_string_length(orig);
    if (json_is_string(orig) && olen > SHRUNK_ORIGINAL_MAX) {
        const char *text = json_string_value(orig);
        size_t cut = SHRUNK_ORIGINAL_MAX;
        while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80)
            cut--; /* not inside a UTF-8 sequence */
        if (!json_object_get(payload, "original_message_bytes"))
            json_object_set_new(payload, "original_message_bytes", json_integer((json_int_t)olen));
        json_object_set_new(payload, "original_message_truncated", json_true());
        json_object_set_new(payload, "original_message", json_stringn(text, cut));
        changed = true;
    }
    return changed;
}

/*
 * Serialise and check every item of plan into out[] (plan->count entries):
 * each destination must be a queue name the broker accepts, and each
 * envelope within ASYA_MAX_MESSAGE_BYTES.  Returns 0; 1 when the
 * message must go to error-end instead (why says why); -1 when the broker
 * connection failed (already reported).  out[] is filled in all cases (free
 * with outgoing_free).
 */
static int plan_prepare(struct sidecar *sc, struct route_plan *plan, struct outgoing *out,
                        char *why, size_t whylen)
{
    size_t max = (size_t)sc->cfg->max_message_bytes;
    for (size_t i = 0; i < plan->count; i++) {
        struct route_publish *p = &plan->items[i];
        out[i].kind = p->kind;
        if (routing_queue_name(sc->cfg->queue_prefix, p->actor, out[i].queue, sizeof out[i].queue,
                               why, whylen))
            return 1;
        if (p->text) {
            out[i].text = p->text; /* spliced already (splice.h): taken */
            out[i].len = p->text_len;
            p->text = NULL;
        } else {
            out[i].text = envelope_dump(p->body, &out[i].len);
        }
        if (!out[i].text) {
            sidecar_broker_fail(sc, "out of memory serialising a result");
            return -1;
        }
        if (out[i].len > max && p->kind == PUBLISH_ERROR_END &&
            shrink_error_envelope(p->body, out[i].len)) {
            free(out[i].text);
            out[i].text = envelope_dump(p->body, &out[i].len);
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
        log_debug_id(message_id(m), "published to %s (seq %llu)", out[i].queue,
                     (unsigned long long)seq);
    }
    return 0;
}

/* Every destination of plan known to the broker?  BROKER_DEST_READY, or
 * _REFUSED (a name it would refuse, or a refused declare: why says why), or
 * _PENDING (declares in flight), or -1 when the connection is lost. */
static int destinations_ready(struct sidecar *sc, const struct route_plan *plan, char *why,
                              size_t whylen)
{
    int st = BROKER_DEST_READY;
    for (size_t i = 0; i < plan->count; i++) {
        char queue[ROUTING_QUEUE_MAX + 1];
        if (routing_queue_name(sc->cfg->queue_prefix, plan->items[i].actor, queue, sizeof queue,
                               why, whylen))
            return BROKER_DEST_REFUSED;
        int rc = broker_destination(sc->broker, queue, why, whylen);
        if (rc < 0) {
            sidecar_broker_fail(sc, why);
            return -1;
        }
        if (rc == BROKER_DEST_REFUSED)
            return rc;
        if (rc == BROKER_DEST_PENDING)
            st = rc; /* ask for the others too: their declares go out together */
    }
    return st;
}

/* Outputs wait (MSG_PARKED) while the broker blocks us or does not read
 * what we send, and behind whatever already waits, so order is kept. */
static void park(struct sidecar *sc, struct message *m)
{
    if (sc->resuming)
        msgpool_park_front(&sc->pool, m); /* it was first: it stays first */
    else
        msgpool_park(&sc->pool, m);
}

static bool must_park(struct sidecar *sc)
{
    return (sc->pool.parked.head && !sc->resuming) || broker_blocked(sc->broker);
}

/* bytes more do not fit in the socket (broker_has_room): wait, and let the
 * unpark timer look again. */
static bool no_room(struct sidecar *sc, size_t bytes)
{
    if (broker_has_room(sc->broker, bytes))
        return false;
    if (!ev_is_active(&sc->unpark))
        ev_timer_start(sc->loop, &sc->unpark);
    return true;
}

/* Park m with its serialised items (out[], taken) as its plan, so that
 * resuming sends exactly these bytes without serialising again. */
static void park_prepared(struct sidecar *sc, struct message *m, struct route_plan *plan,
                          struct outgoing *out)
{
    for (size_t i = 0; i < plan->count; i++) {
        free(plan->items[i].text);
        plan->items[i].text = out[i].text;
        plan->items[i].text_len = out[i].len;
        out[i].text = NULL;
    }
    m->parked_plan = *plan;
    memset(plan, 0, sizeof *plan);
    park(sc, m);
}

/* Publish plan for message m (any slot already released; plan is freed) and
 * wait for its confirms.  A plan the broker cannot take sends the message to
 * error-end as routing_error instead; an error plan that cannot go out
 * either (error-end itself refused) requeues the message. */
void publish_plan(struct sidecar *sc, struct message *m, struct route_plan *plan)
{
    struct outgoing stack[4], *out = stack;
    char why[512];
    /* Nothing may go out (not even a declare) while the broker blocks us or
     * others wait; and a declare in flight is waited for (everything behind
     * waits too, so order is kept) without holding the loop. */
    int ready = must_park(sc) ? BROKER_DEST_PENDING : destinations_ready(sc, plan, why, sizeof why);
    if (ready == BROKER_DEST_PENDING) {
        m->parked_plan = *plan;
        memset(plan, 0, sizeof *plan);
        park(sc, m);
        return;
    }
    if (ready < 0) {
        route_plan_free(plan);
        return; /* the connection is lost: the broker redelivers */
    }
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
    int rc = ready == BROKER_DEST_REFUSED ? 1 : plan_prepare(sc, plan, out, why, sizeof why);
    size_t bytes = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        bytes += out[i].len;
    if (rc == 0 && no_room(sc, bytes)) {
        park_prepared(sc, m, plan, out);
        rc = 2; /* parked */
    }
    route_plan_free(plan);
    if (rc == 0)
        rc = publish_prepared(sc, m, out, n);
    outgoing_free(out, n);
    if (out != stack)
        free(out);
    if (rc == 2)
        return;
    if (rc == 1 && !error_plan) {
        sc->stats.failed[FAILED_ROUTING]++;
        publish_error(sc, m, "routing_error", "RoutingError", why);
        return;
    }
    if (rc == 1) {
        log_error_id(message_id(m), "cannot report a failure to error-end (%s); requeueing", why);
        m->returned = true; /* settles as "error-end is unroutable": requeued */
        m->error_routed = true;
        rc = 0;
    }
    if (rc == 0 && m->unconfirmed == 0)
        publish_settle(sc, m);
}

void publish_error(struct sidecar *sc, struct message *m, const char *code, const char *type,
                   const char *text)
{
    struct route_plan plan;
    log_warn_id(message_id(m), "%s: %s", code, text);
    if (!envelope_json(&m->env) ||
        routing_plan_error(&sc->names, &m->env, code, type, text, &plan)) {
        sidecar_broker_fail(sc, "out of memory building an error envelope");
        return;
    }
    publish_plan(sc, m, &plan);
}

/* error-end for a body that is no valid envelope (or must not be parsed:
 * parse_max 0); routing keeps a bounded prefix of it. */
void publish_malformed(struct sidecar *sc, struct message *m, size_t parse_max, const char *code,
                       const char *type, const char *text)
{
    struct route_plan plan;
    if (routing_plan_malformed(&sc->names, m->body, m->len, parse_max, code, type, text, &plan)) {
        sidecar_broker_fail(sc, "out of memory");
        return;
    }
    publish_plan(sc, m, &plan);
}

/*
 * Hand the message back to its queue as a fresh copy carrying attempts in
 * x-asya-attempts, and ack the original once the copy is confirmed.  Unlike
 * basic.reject this neither sets the redelivered flag nor bumps a quorum
 * queue's delivery count, so only real failures count as attempts; another
 * replica of the actor may take the copy.
 */
void publish_requeue(struct sidecar *sc, struct message *m, long attempts, enum requeue_reason why)
{
    char err[256];
    uint64_t seq;
    if (must_park(sc) || no_room(sc, m->len)) {
        m->parked_attempts = attempts;
        m->parked_why = (int)why;
        park(sc, m);
        return;
    }
    sc->stats.requeued[why]++;
    m->state = MSG_CONFIRMING;
    m->published_at = ev_time();
    if (broker_publish_queue(sc->broker, sc->cfg->queue_name, m->body, m->len, attempts, &seq, err,
                             sizeof err)) {
        sidecar_broker_fail(sc, err);
        return;
    }
    if (confirm_track(&sc->confirms, seq, m->index)) {
        sidecar_broker_fail(sc, "out of memory tracking confirms");
        return;
    }
    m->unconfirmed++;
}

void publish_on_confirm(void *ctx, uint64_t seq, bool multiple, bool ack)
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
            publish_settle(sc, m);
    }
}

void publish_on_returned(void *ctx, uint64_t seq, const char *routing_key)
{
    struct sidecar *sc = ctx;
    log_warn("publish to %s was unroutable (returned by the broker)", routing_key);
    long msg = confirm_lookup(&sc->confirms, seq);
    if (msg >= 0)
        sc->pool.msgs[msg].returned = true;
}

/* ---- the broker blocking publishers ------------------------------------------------ */

void publish_on_blocked(void *ctx, const char *reason)
{
    struct sidecar *sc = ctx;
    snprintf(sc->blocked_reason, sizeof sc->blocked_reason, "%s", reason);
    log_warn("the broker blocked publishing (%s): results wait until it unblocks", reason);
    sidecar_update_ready(sc);
}

/* Send what waited, in arrival order, while the broker takes it. */
static void publish_resume(struct sidecar *sc)
{
    while (sc->pool.parked.head && broker_connected(sc->broker) && !broker_blocked(sc->broker)) {
        struct message *m = msgpool_unpark(&sc->pool);
        sc->resuming = true;
        if (m->parked_plan.count > 0) {
            struct route_plan plan = m->parked_plan;
            memset(&m->parked_plan, 0, sizeof m->parked_plan);
            publish_plan(sc, m, &plan);
        } else {
            publish_requeue(sc, m, m->parked_attempts, (enum requeue_reason)m->parked_why);
        }
        sc->resuming = false;
        if (sc->pool.parked.head == m)
            return; /* parked again (the timer is armed) */
    }
}

void publish_on_unblocked(void *ctx)
{
    struct sidecar *sc = ctx;
    log_info("the broker unblocked publishing: sending what waited");
    sc->blocked_reason[0] = '\0';
    publish_resume(sc);
    sidecar_update_ready(sc);
}

void publish_on_declared(void *ctx)
{
    publish_resume(ctx);
}

void publish_unpark_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    publish_resume(sc); /* when blocked, connection.unblocked resumes instead */
}

/* ---- acks and the end of the grace period ------------------------------------------ */

static int ack_single(void *ctx, uint64_t tag)
{
    return broker_ack(ctx, tag, false);
}

void publish_flush_acks(struct sidecar *sc)
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

bool publish_grace_over(struct sidecar *sc)
{
    publish_flush_acks(sc);
    rtclient_abort_all(sc->rt);
    reports_abort_all(sc); /* final statuses not taken yet: redelivered */
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
    sc->pool.waiting.head = sc->pool.waiting.tail = NULL;
    sc->pool.parked.head = sc->pool.parked.tail = NULL;
    sc->stats.active = sc->pool.active;
    sc->stats.inflight_bytes = (int64_t)sc->pool.bytes;
    return confirming == 0;
}
