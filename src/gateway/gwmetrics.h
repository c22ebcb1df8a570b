/*
 * gwmetrics.h - the gateway's own counters (tool calls, jobs, durations,
 * SSE) and their Prometheus text, prefix asya_gateway_.  The store and the
 * publisher render their own latency and error series.
 */
#ifndef ASYA_GW_GWMETRICS_H
#define ASYA_GW_GWMETRICS_H

#include "routes.h"
#include "textbuf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum toolcall_outcome {
    TC_OK = 0,
    TC_UNKNOWN_TOOL, /* counted under tool="" */
    TC_INVALID_ARGUMENTS,
    TC_STORE_ERROR,
    TC_PUBLISH_ERROR,
    TC_OUTCOMES,
};

#define GW_DURATION_BUCKETS 12

struct gw_metrics {
    uint64_t *tool_calls; /* (ntools + 1) * TC_OUTCOMES; the last row is for unknown tools */
    size_t ntools;
    uint64_t jobs_succeeded;
    uint64_t jobs_failed;
    uint64_t jobs_timed_out;
    uint64_t duration_buckets[GW_DURATION_BUCKETS]; /* job creation to final, seconds */
    uint64_t duration_count;
    double duration_sum;
    uint64_t progress_reports;
    uint64_t final_reports;
    uint64_t sse_events;
    uint64_t sse_slow_closed;
};

/* 0 or -ENOMEM. */
int gw_metrics_init(struct gw_metrics *m, size_t ntools);
void gw_metrics_free(struct gw_metrics *m);
/* tool_index: the tool's index in routes, or (size_t)-1 for an unknown tool. */
void gw_metrics_toolcall(struct gw_metrics *m, size_t tool_index, enum toolcall_outcome o);
/* A job reached a final status here; seconds from its creation. */
void gw_metrics_job_final(struct gw_metrics *m, bool succeeded, bool timed_out, double seconds);
void gw_metrics_render(const struct gw_metrics *m, const struct routes *r, unsigned sse_subscribers,
                       unsigned connections, const unsigned long long http_errors[2],
                       struct textbuf *out);

#endif /* ASYA_GW_GWMETRICS_H */
