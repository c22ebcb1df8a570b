#include "metrics.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double duration_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,    1,     2.5,    5,     10,   30,    60,   300};
static const double size_bounds[] = {256,    1024,    4096,    16384,    65536,
                                     262144, 1048576, 4194304, 16777216, 67108864};

static const char *const processed_names[PROCESSED_N] = {"success", "empty_response",
                                                         "end_consumed"};
static const char *const failed_names[FAILED_N] = {
    "parse_error",   "validation_error",  "runtime_error",  "timeout",
    "routing_error", "message_too_large", "poison_message", "invalid_runtime_response"};
static const char *const sent_names[SENT_N] = {"routing", "happy_end", "error_end"};
static const char *const requeue_names[REQUEUE_N] = {
    "runtime_unavailable", "runtime_broken", "broker_nack",   "shutdown",
    "redelivered",         "gateway",        "inflight_bytes"};
static const char *const runtime_error_names[7] = {
    "processing_error",  "oom_error",        "cuda_oom_error", "timeout_error",
    "msg_parsing_error", "connection_error", "other"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void histogram_init(struct histogram *h, const double *bounds, size_t n)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->nbounds = n;
}

void metrics_init(struct metrics *m, const char *ns, const char *queue)
{
    memset(m, 0, sizeof *m);
    snprintf(m->ns, sizeof m->ns, "%s", ns);
    snprintf(m->queue, sizeof m->queue, "%s", queue);
    histogram_init(&m->processing, duration_bounds, COUNT(duration_bounds));
    histogram_init(&m->runtime_exec, duration_bounds, COUNT(duration_bounds));
    histogram_init(&m->queue_send, duration_bounds, COUNT(duration_bounds));
    histogram_init(&m->confirm, duration_bounds, COUNT(duration_bounds));
    histogram_init(&m->size_in, size_bounds, COUNT(size_bounds));
    histogram_init(&m->size_out, size_bounds, COUNT(size_bounds));
}

void metrics_free(struct metrics *m)
{
    for (size_t i = 0; i < m->nsent; i++)
        free(m->sent[i].queue);
    free(m->sent);
    m->sent = NULL;
    m->nsent = 0;
}

void histogram_observe(struct histogram *h, double value)
{
    size_t i = 0;
    while (i < h->nbounds && value > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += value;
}

const char *const metrics_restart_causes[METRICS_RESTART_CAUSES] = {
    "crash", "oom_kill", "timeout_kill", "protocol_kill", "exit"};

void metrics_sent(struct metrics *m, const char *queue, enum sent_type type, size_t bytes)
{
    histogram_observe(&m->size_out, (double)bytes);
    /* Destination names come from envelopes: past METRICS_MAX_QUEUES label
     * values, the rest share one "other" series. */
    if (m->nsent >= METRICS_MAX_QUEUES - 1) {
        for (size_t i = 0; i < m->nsent; i++)
            if (strcmp(m->sent[i].queue, queue) == 0) {
                m->sent[i].counts[type]++;
                return;
            }
        queue = METRICS_OTHER_QUEUE;
    }
    for (size_t i = 0; i < m->nsent; i++) {
        if (strcmp(m->sent[i].queue, queue) == 0) {
            m->sent[i].counts[type]++;
            return;
        }
    }
    struct sent_counter *s = realloc(m->sent, (m->nsent + 1) * sizeof *s);
    if (!s)
        return;
    m->sent = s;
    char *name = strdup(queue);
    if (!name)
        return;
    memset(&s[m->nsent], 0, sizeof s[m->nsent]);
    s[m->nsent].queue = name;
    s[m->nsent].counts[type] = 1;
    m->nsent++;
}

void metrics_runtime_error(struct metrics *m, const char *code)
{
    size_t i;
    for (i = 0; i < COUNT(runtime_error_names) - 1; i++)
        if (strcmp(code, runtime_error_names[i]) == 0)
            break;
    m->runtime_errors[i]++;
}

/* Write a label value with Prometheus escaping (\\, \", \n). */
static void put_label(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fputc('\\', f), fputc(*v, f);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

static void header(FILE *f, const struct metrics *m, const char *name, const char *type,
                   const char *help)
{
    fprintf(f, "# HELP %s_%s %s\n# TYPE %s_%s %s\n", m->ns, name, help, m->ns, name, type);
}

static void counter_q(FILE *f, const struct metrics *m, const char *name, const char *label,
                      const char *value, uint64_t n)
{
    fprintf(f, "%s_%s{queue=\"", m->ns, name);
    put_label(f, m->queue);
    if (label)
        fprintf(f, "\",%s=\"%s", label, value);
    fprintf(f, "\"} %llu\n", (unsigned long long)n);
}

static void histogram_q(FILE *f, const struct metrics *m, const char *name, const char *help,
                        const struct histogram *h, const char *label, const char *value)
{
    if (help)
        header(f, m, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->nbounds; i++) {
        cum += h->counts[i];
        fprintf(f, "%s_%s_bucket{queue=\"", m->ns, name);
        put_label(f, m->queue);
        if (label)
            fprintf(f, "\",%s=\"%s", label, value);
        if (i < h->nbounds)
            fprintf(f, "\",le=\"%g\"} %llu\n", h->bounds[i], (unsigned long long)cum);
        else
            fprintf(f, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    const char *suffix[2] = {"sum", "count"};
    for (int k = 0; k < 2; k++) {
        fprintf(f, "%s_%s_%s{queue=\"", m->ns, name, suffix[k]);
        put_label(f, m->queue);
        if (label)
            fprintf(f, "\",%s=\"%s", label, value);
        if (k == 0)
            fprintf(f, "\"} %.9g\n", h->sum);
        else
            fprintf(f, "\"} %llu\n", (unsigned long long)h->count);
    }
}

char *metrics_render(const struct metrics *m, size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return NULL;

    header(f, m, "messages_received_total", "counter", "Messages consumed from the actor's queue.");
    counter_q(f, m, "messages_received_total", "transport", "rabbitmq", m->received);

    header(f, m, "messages_processed_total", "counter", "Messages processed, by outcome.");
    for (size_t i = 0; i < PROCESSED_N; i++)
        counter_q(f, m, "messages_processed_total", "status", processed_names[i], m->processed[i]);

    header(f, m, "messages_sent_total", "counter", "Messages published, by destination and type.");
    for (size_t i = 0; i < m->nsent; i++) {
        for (size_t t = 0; t < SENT_N; t++) {
            if (!m->sent[i].counts[t])
                continue;
            fprintf(f, "%s_messages_sent_total{destination_queue=\"", m->ns);
            put_label(f, m->sent[i].queue);
            fprintf(f, "\",message_type=\"%s\"} %llu\n", sent_names[t],
                    (unsigned long long)m->sent[i].counts[t]);
        }
    }

    header(f, m, "messages_failed_total", "counter",
           "Messages that ended in error-end, by reason.");
    for (size_t i = 0; i < FAILED_N; i++)
        counter_q(f, m, "messages_failed_total", "reason", failed_names[i], m->failed[i]);

    header(f, m, "runtime_errors_total", "counter", "Error answers from the runtime, by code.");
    for (size_t i = 0; i < COUNT(runtime_error_names); i++)
        counter_q(f, m, "runtime_errors_total", "error_type", runtime_error_names[i],
                  m->runtime_errors[i]);

    header(f, m, "messages_requeued_total", "counter",
           "Messages handed back to the broker without a result, by reason.");
    for (size_t i = 0; i < REQUEUE_N; i++)
        counter_q(f, m, "messages_requeued_total", "reason", requeue_names[i], m->requeued[i]);

    header(f, m, "broker_reconnects_total", "counter", "Successful reconnections to the broker.");
    counter_q(f, m, "broker_reconnects_total", NULL, NULL, m->broker_reconnects);
    header(f, m, "runtime_unavailable_pauses_total", "counter",
           "Times consumption paused because the runtime was unreachable.");
    counter_q(f, m, "runtime_unavailable_pauses_total", NULL, NULL, m->runtime_pauses);
    header(f, m, "runtime_backlog_waits_total", "counter",
           "Times the runtime's accept backlog was full, so a call waited (back-pressure).");
    counter_q(f, m, "runtime_backlog_waits_total", NULL, NULL, m->runtime_backlog_waits);

    if (m->gateway) {
        static const struct {
            const char *name, *help;
            size_t off;
        } gw[] = {
            {"progress_reports_sent_total", "Progress reports the gateway answered with 2xx.",
             offsetof(struct gateway_counters, progress_sent)},
            {"progress_reports_failed_total",
             "Progress reports the gateway answered otherwise, or not in time.",
             offsetof(struct gateway_counters, progress_failed)},
            {"progress_reports_dropped_total",
             "Progress reports never sent: too many waiting, stale, or the gateway down.",
             offsetof(struct gateway_counters, progress_dropped)},
            {"final_reports_sent_total", "Final statuses the gateway answered with 2xx.",
             offsetof(struct gateway_counters, final_sent)},
            {"final_reports_retried_total",
             "Final statuses the gateway did not take: the message went back to its queue.",
             offsetof(struct gateway_counters, final_retried)},
            {"final_reports_unknown_job_total",
             "Final statuses for a job the gateway does not know.",
             offsetof(struct gateway_counters, final_unknown)},
            {"final_reports_rejected_total",
             "Final statuses the gateway refused with a 4xx other than 404 (dropped).",
             offsetof(struct gateway_counters, final_rejected)},
        };
        for (size_t i = 0; i < COUNT(gw); i++) {
            uint64_t n;
            memcpy(&n, (const char *)&m->gw + gw[i].off, sizeof n);
            header(f, m, gw[i].name, "counter", gw[i].help);
            counter_q(f, m, gw[i].name, NULL, NULL, n);
        }
    }

    if (m->have_runtime_stats) {
        header(f, m, "runtime_worker_restarts_total", "counter",
               "Runtime worker processes replaced, by cause (from asya-runtime).");
        for (size_t i = 0; i < METRICS_RESTART_CAUSES; i++)
            counter_q(f, m, "runtime_worker_restarts_total", "cause", metrics_restart_causes[i],
                      m->runtime_restarts[i]);
        header(f, m, "runtime_workers", "gauge", "Runtime worker processes, by state.");
        fprintf(f, "%s_runtime_workers{queue=\"", m->ns);
        put_label(f, m->queue);
        fprintf(f, "\",state=\"busy\"} %lld\n", (long long)m->runtime_busy);
        fprintf(f, "%s_runtime_workers{queue=\"", m->ns);
        put_label(f, m->queue);
        fprintf(f, "\",state=\"total\"} %lld\n", (long long)m->runtime_workers);
    }

    header(f, m, "active_messages", "gauge", "Messages in flight in this sidecar.");
    fprintf(f, "%s_active_messages{queue=\"", m->ns);
    put_label(f, m->queue);
    fprintf(f, "\"} %lld\n", (long long)m->active);
    header(f, m, "inflight_bytes", "gauge",
           "Body bytes of the messages held (bounded by ASYA_MAX_INFLIGHT_BYTES).");
    fprintf(f, "%s_inflight_bytes{queue=\"", m->ns);
    put_label(f, m->queue);
    fprintf(f, "\"} %lld\n", (long long)m->inflight_bytes);
    header(f, m, "ready", "gauge", "1 when connected, consuming and the runtime answers.");
    fprintf(f, "%s_ready{queue=\"", m->ns);
    put_label(f, m->queue);
    fprintf(f, "\"} %d\n", m->ready ? 1 : 0);

    histogram_q(f, m, "processing_duration_seconds", "Time from consuming a message to acking it.",
                &m->processing, NULL, NULL);
    histogram_q(f, m, "runtime_execution_duration_seconds",
                "Time from sending a request to the runtime to reading its answer.",
                &m->runtime_exec, NULL, NULL);
    histogram_q(f, m, "queue_send_duration_seconds", "Time spent in one publish call.",
                &m->queue_send, NULL, NULL);
    histogram_q(f, m, "publish_confirm_duration_seconds",
                "Time from publishing a message's results to the broker confirming all of them.",
                &m->confirm, NULL, NULL);
    histogram_q(f, m, "envelope_size_bytes", "Envelope sizes, received and sent.", &m->size_in,
                "direction", "received");
    histogram_q(f, m, "envelope_size_bytes", NULL, &m->size_out, "direction", "sent");

    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    if (len)
        *len = size;
    return buf;
}
