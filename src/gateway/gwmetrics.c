#include "gwmetrics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const double duration_bounds[GW_DURATION_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1,   2.5,
                                                            5,    10,  30,   60,  300, 1800};
static const char *const outcome_names[TC_OUTCOMES] = {"ok", "unknown_tool", "invalid_arguments",
                                                       "store_error", "publish_error"};

int gw_metrics_init(struct gw_metrics *m, size_t ntools)
{
    memset(m, 0, sizeof *m);
    m->tool_calls = calloc((ntools + 1) * TC_OUTCOMES, sizeof *m->tool_calls);
    if (!m->tool_calls)
        return -ENOMEM;
    m->ntools = ntools;
    return 0;
}

void gw_metrics_free(struct gw_metrics *m)
{
    free(m->tool_calls);
    m->tool_calls = NULL;
}

void gw_metrics_toolcall(struct gw_metrics *m, size_t tool_index, enum toolcall_outcome o)
{
    size_t row = tool_index < m->ntools ? tool_index : m->ntools;
    m->tool_calls[row * TC_OUTCOMES + (size_t)o]++;
}

void gw_metrics_job_final(struct gw_metrics *m, bool succeeded, bool timed_out, double seconds)
{
    if (succeeded)
        m->jobs_succeeded++;
    else
        m->jobs_failed++;
    if (timed_out)
        m->jobs_timed_out++;
    if (seconds < 0)
        seconds = 0;
    for (size_t i = 0; i < GW_DURATION_BUCKETS; i++)
        if (seconds <= duration_bounds[i])
            m->duration_buckets[i]++;
    m->duration_count++;
    m->duration_sum += seconds;
}

/* Tool names come from the config file; escape them as label values. */
static void put_label(struct textbuf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            textbuf_printf(out, "\\%c", *v);
        else if (*v == '\n')
            textbuf_puts(out, "\\n");
        else
            textbuf_append(out, v, 1);
    }
}

static void help(struct textbuf *out, const char *name, const char *type, const char *text)
{
    textbuf_printf(out, "# HELP asya_gateway_%s %s\n# TYPE asya_gateway_%s %s\n", name, text, name,
                   type);
}

void gw_metrics_render(const struct gw_metrics *m, const struct routes *r, unsigned sse_subscribers,
                       unsigned connections, const unsigned long long http_errors[2],
                       struct textbuf *out)
{
    help(out, "tool_calls_total", "counter", "Tool calls by tool and outcome.");
    for (size_t t = 0; t <= m->ntools; t++) {
        for (size_t o = 0; o < TC_OUTCOMES; o++) {
            uint64_t n = m->tool_calls[t * TC_OUTCOMES + o];
            bool unknown_row = t == m->ntools;
            /* Unknown tools only have one outcome; known tools never have it. */
            if (unknown_row != (o == TC_UNKNOWN_TOOL))
                continue;
            textbuf_puts(out, "asya_gateway_tool_calls_total{tool=\"");
            put_label(out, unknown_row ? "" : r->tools[t].name);
            textbuf_printf(out, "\",outcome=\"%s\"} %llu\n", outcome_names[o],
                           (unsigned long long)n);
        }
    }
    help(out, "jobs_total", "counter", "Jobs that reached a final status here, by status.");
    textbuf_printf(out, "asya_gateway_jobs_total{status=\"Succeeded\"} %llu\n",
                   (unsigned long long)m->jobs_succeeded);
    textbuf_printf(out, "asya_gateway_jobs_total{status=\"Failed\"} %llu\n",
                   (unsigned long long)m->jobs_failed);
    help(out, "jobs_timed_out_total", "counter", "Jobs failed here because their deadline passed.");
    textbuf_printf(out, "asya_gateway_jobs_timed_out_total %llu\n",
                   (unsigned long long)m->jobs_timed_out);
    help(out, "job_duration_seconds", "histogram", "From job creation to its final status.");
    for (size_t i = 0; i < GW_DURATION_BUCKETS; i++)
        textbuf_printf(out, "asya_gateway_job_duration_seconds_bucket{le=\"%g\"} %llu\n",
                       duration_bounds[i], (unsigned long long)m->duration_buckets[i]);
    textbuf_printf(out, "asya_gateway_job_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                   (unsigned long long)m->duration_count);
    textbuf_printf(out, "asya_gateway_job_duration_seconds_sum %.6f\n", m->duration_sum);
    textbuf_printf(out, "asya_gateway_job_duration_seconds_count %llu\n",
                   (unsigned long long)m->duration_count);
    help(out, "progress_reports_total", "counter", "Progress and heartbeat reports accepted.");
    textbuf_printf(out, "asya_gateway_progress_reports_total %llu\n",
                   (unsigned long long)m->progress_reports);
    help(out, "final_reports_total", "counter", "Final status reports accepted.");
    textbuf_printf(out, "asya_gateway_final_reports_total %llu\n",
                   (unsigned long long)m->final_reports);
    help(out, "sse_subscribers", "gauge", "Open SSE streams.");
    textbuf_printf(out, "asya_gateway_sse_subscribers %u\n", sse_subscribers);
    help(out, "sse_events_total", "counter", "SSE update events sent.");
    textbuf_printf(out, "asya_gateway_sse_events_total %llu\n", (unsigned long long)m->sse_events);
    help(out, "sse_slow_closed_total", "counter",
         "SSE streams closed because the client read too slowly.");
    textbuf_printf(out, "asya_gateway_sse_slow_closed_total %llu\n",
                   (unsigned long long)m->sse_slow_closed);
    help(out, "http_connections", "gauge", "Open HTTP connections.");
    textbuf_printf(out, "asya_gateway_http_connections %u\n", connections);
    help(out, "http_errors_total", "counter", "Requests answered with an error, by class.");
    textbuf_printf(out, "asya_gateway_http_errors_total{class=\"4xx\"} %llu\n", http_errors[0]);
    textbuf_printf(out, "asya_gateway_http_errors_total{class=\"5xx\"} %llu\n", http_errors[1]);
}
