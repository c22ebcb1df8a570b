/*
 * job.c - the job model of job.h: status names, deep copies, the rules of
 * job_apply(), the job and update JSON of GATEWAY.md, times and ids.
 */
#include "job.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- statuses ----------------------------------------------------------- */

static const char *const status_names[] = {
    [JOB_PENDING] = "Pending", [JOB_RUNNING] = "Running", [JOB_SUCCEEDED] = "Succeeded",
    [JOB_FAILED] = "Failed",   [JOB_UNKNOWN] = "Unknown",
};

#define NSTATUS (sizeof status_names / sizeof status_names[0])

const char *job_status_name(enum job_status s)
{
    if ((unsigned)s >= NSTATUS)
        return "Unknown";
    return status_names[s];
}

int job_status_parse(const char *text, enum job_status *out)
{
    if (!text)
        return -EINVAL;
    for (size_t i = 0; i < NSTATUS; i++) {
        if (strcmp(text, status_names[i]) == 0) {
            *out = (enum job_status)i;
            return 0;
        }
    }
    return -EINVAL;
}

bool job_status_terminal(enum job_status s)
{
    return s == JOB_SUCCEEDED || s == JOB_FAILED;
}

static const char *const step_names[] = {
    [STEP_NONE] = NULL,
    [STEP_RECEIVED] = "received",
    [STEP_PROCESSING] = "processing",
    [STEP_COMPLETED] = "completed",
};

#define NSTEPSTATUS (sizeof step_names / sizeof step_names[0])

const char *step_status_name(enum step_status s)
{
    if ((unsigned)s >= NSTEPSTATUS)
        return NULL;
    return step_names[s];
}

int step_status_parse(const char *text, enum step_status *out)
{
    if (!text)
        return -EINVAL;
    for (size_t i = STEP_RECEIVED; i < NSTEPSTATUS; i++) {
        if (strcmp(text, step_names[i]) == 0) {
            *out = (enum step_status)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- records ------------------------------------------------------------ */

/* strdup that keeps NULL as NULL; *ok becomes false when a copy failed. */
static char *dup_or_null(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

/* json_deep_copy that keeps NULL as NULL; *ok becomes false when it failed. */
static json_t *json_copy_or_null(const json_t *v, bool *ok)
{
    if (!v)
        return NULL;
    json_t *d = json_deep_copy(v);
    if (!d)
        *ok = false;
    return d;
}

void job_clear(struct job *j)
{
    if (!j)
        return;
    if (j->steps) {
        for (size_t i = 0; i < j->nsteps; i++)
            free(j->steps[i]);
        free(j->steps);
    }
    json_decref(j->payload);
    json_decref(j->result);
    free(j->error);
    free(j->current_step);
    memset(j, 0, sizeof *j);
}

int job_copy(struct job *dst, const struct job *src)
{
    bool ok = true;
    *dst = *src;
    dst->steps = NULL;
    dst->nsteps = 0;
    dst->payload = NULL;
    dst->result = NULL;
    dst->error = NULL;
    dst->current_step = NULL;

    if (src->nsteps > 0 && src->steps) {
        dst->steps = calloc(src->nsteps, sizeof *dst->steps);
        if (!dst->steps)
            ok = false;
        else
            dst->nsteps = src->nsteps;
        for (size_t i = 0; ok && i < src->nsteps; i++)
            dst->steps[i] = dup_or_null(src->steps[i], &ok);
    }
    dst->payload = json_copy_or_null(src->payload, &ok);
    dst->result = json_copy_or_null(src->result, &ok);
    dst->error = dup_or_null(src->error, &ok);
    dst->current_step = dup_or_null(src->current_step, &ok);
    if (!ok) {
        job_clear(dst);
        return -ENOMEM;
    }
    return 0;
}

void job_update_clear(struct job_update *u)
{
    if (!u)
        return;
    free(u->message);
    json_decref(u->result);
    free(u->error);
    free(u->step);
    memset(u, 0, sizeof *u);
}

int job_update_copy(struct job_update *dst, const struct job_update *src)
{
    bool ok = true;
    *dst = *src;
    dst->message = dup_or_null(src->message, &ok);
    dst->result = json_copy_or_null(src->result, &ok);
    dst->error = dup_or_null(src->error, &ok);
    dst->step = dup_or_null(src->step, &ok);
    if (!ok) {
        job_update_clear(dst);
        return -ENOMEM;
    }
    return 0;
}

/* ---- rules -------------------------------------------------------------- */

static double clamp_percent(double p)
{
    if (isnan(p) || p < 0.0)
        return 0.0;
    if (p > 100.0)
        return 100.0;
    return p;
}

double progress_percent(int step_index, int total_steps, enum step_status st)
{
    if (total_steps <= 0)
        return 0.0;
    double w = 0.0;
    switch (st) {
    case STEP_RECEIVED:
        w = 10.0;
        break;
    case STEP_PROCESSING:
        w = 50.0;
        break;
    case STEP_COMPLETED:
        w = 100.0;
        break;
    case STEP_NONE:
        break;
    }
    return clamp_percent(((double)step_index * 100.0 + w) / (double)total_steps);
}

double progress_after(int step_index, int total_steps, enum step_status st)
{
    switch (st) {
    case STEP_RECEIVED:
        return step_index <= 0 ? 0.0
                               : progress_percent(step_index - 1, total_steps, STEP_COMPLETED);
    case STEP_PROCESSING:
        return progress_percent(step_index, total_steps, STEP_RECEIVED);
    case STEP_COMPLETED:
        return progress_percent(step_index, total_steps, STEP_PROCESSING);
    case STEP_NONE:
        break;
    }
    return 0.0;
}

double progress_percent_within(int step_index, int total_steps, double fraction)
{
    if (total_steps <= 0)
        return 0.0;
    if (isnan(fraction) || fraction < 0.0)
        fraction = 0.0;
    if (fraction > 1.0)
        fraction = 1.0;
    return clamp_percent(((double)step_index * 100.0 + 50.0 + 49.0 * fraction) /
                         (double)total_steps);
}

/* A malloc'd printf; NULL when out of memory. */
__attribute__((format(printf, 1, 2))) static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* The default message of a PROGRESS change: "Step <step>: <status>".  Without
 * a step name it uses the route's step at step_index, else the index. */
static char *progress_message(const struct job *j, const struct job_change *c)
{
    const char *st = step_status_name(c->step_status);
    if (!st)
        st = "progress";
    if (c->step)
        return str_printf("Step %s: %s", c->step, st);
    if (c->step_index >= 0 && (size_t)c->step_index < j->nsteps && j->steps &&
        j->steps[c->step_index])
        return str_printf("Step %s: %s", j->steps[c->step_index], st);
    return str_printf("Step %d: %s", c->step_index, st);
}

/*
 * Everything is allocated before the job is touched, so on -ENOMEM the job is
 * unchanged and *update untouched.
 */
int job_apply(struct job *j, const struct job_change *c, int64_t now_ms, struct job_update *update)
{
    if (job_status_terminal(j->status))
        return 1;

    bool ok = true;
    struct job_update u;
    memset(&u, 0, sizeof u);
    memcpy(u.job_id, j->id, sizeof u.job_id);
    u.job_id[JOB_ID_LEN] = '\0';
    u.ts_ms = now_ms;

    char *job_step = NULL;     /* PROGRESS: the new current_step */
    json_t *job_result = NULL; /* SUCCEEDED */
    char *job_error = NULL;    /* FAILED */
    const char *error = c->error ? c->error : "unknown error";
    double pct = j->progress_percent;
    enum job_status status;

    switch (c->kind) {
    case CHANGE_RUNNING:
        status = JOB_RUNNING;
        u.message = dup_or_null(c->message ? c->message : "Sending message to first actor", &ok);
        break;
    case CHANGE_PROGRESS: {
        status = JOB_RUNNING;
        double p = clamp_percent(c->percent);
        if (p > pct)
            pct = p;
        u.has_progress = true;
        u.progress_percent = pct;
        u.step = dup_or_null(c->step, &ok);
        u.step_status = c->step_status;
        job_step = dup_or_null(c->step, &ok);
        if (c->message) {
            u.message = dup_or_null(c->message, &ok);
        } else {
            u.message = progress_message(j, c);
            if (!u.message)
                ok = false;
        }
        break;
    }
    case CHANGE_SUCCEEDED:
        status = JOB_SUCCEEDED;
        pct = 100.0;
        u.has_progress = true;
        u.progress_percent = pct;
        u.result = json_copy_or_null(c->result, &ok);
        job_result = json_copy_or_null(c->result, &ok);
        u.message = dup_or_null(c->message ? c->message : "Job completed successfully", &ok);
        break;
    case CHANGE_FAILED:
        status = JOB_FAILED;
        u.error = dup_or_null(error, &ok);
        job_error = dup_or_null(error, &ok);
        if (c->message) {
            u.message = dup_or_null(c->message, &ok);
        } else {
            u.message = str_printf("Job failed: %s", error);
            if (!u.message)
                ok = false;
        }
        break;
    default:
        return -EINVAL;
    }
    if (!ok) {
        free(job_step);
        json_decref(job_result);
        free(job_error);
        job_update_clear(&u);
        return -ENOMEM;
    }

    j->status = status;
    j->progress_percent = pct;
    j->updated_ms = now_ms;
    if (c->kind == CHANGE_PROGRESS) {
        if (job_step) {
            free(j->current_step);
            j->current_step = job_step;
        }
        if (c->step_status == STEP_COMPLETED && c->step_index + 1 > j->steps_completed)
            j->steps_completed = c->step_index + 1;
    } else if (c->kind == CHANGE_SUCCEEDED) {
        json_decref(j->result);
        j->result = job_result;
        /* Every step ran, whatever progress reports the final overtook. */
        if (j->total_steps > j->steps_completed)
            j->steps_completed = j->total_steps;
    } else if (c->kind == CHANGE_FAILED) {
        free(j->error);
        j->error = job_error;
    }
    u.status = status;
    *update = u;
    return 0;
}

/* ---- JSON --------------------------------------------------------------- */

/* json_object_set_new that records a failure (a NULL value included). */
static void put(json_t *o, const char *key, json_t *v, bool *ok)
{
    if (!v || json_object_set_new(o, key, v) != 0)
        *ok = false;
}

static json_t *time_json(int64_t ms)
{
    char buf[40];
    job_format_time(ms, buf, sizeof buf);
    return json_string(buf);
}

json_t *job_to_json(const struct job *j)
{
    bool ok = true;
    json_t *o = json_object();
    json_t *route = json_object();
    json_t *steps = json_array();
    json_t *meta = json_object();
    if (!o || !route || !steps || !meta) {
        json_decref(o);
        json_decref(route);
        json_decref(steps);
        json_decref(meta);
        return NULL;
    }
    for (size_t i = 0; i < j->nsteps; i++) {
        json_t *s = json_string(j->steps && j->steps[i] ? j->steps[i] : "");
        if (!s || json_array_append_new(steps, s) != 0)
            ok = false;
    }
    put(meta, "job_id", json_string(j->id), &ok);

    put(o, "id", json_string(j->id), &ok);
    put(o, "status", json_string(job_status_name(j->status)), &ok);
    put(route, "steps", steps, &ok);
    put(route, "current", json_integer(j->route_current), &ok);
    put(route, "metadata", meta, &ok);
    put(o, "route", route, &ok);
    put(o, "payload", j->payload ? json_deep_copy(j->payload) : json_null(), &ok);
    if (j->result)
        put(o, "result", json_deep_copy(j->result), &ok);
    if (j->error)
        put(o, "error", json_string(j->error), &ok);
    if (j->timeout_sec > 0)
        put(o, "timeout_seconds", json_integer(j->timeout_sec), &ok);
    put(o, "deadline", j->deadline_ms > 0 ? time_json(j->deadline_ms) : json_null(), &ok);
    put(o, "progress_percent", json_real(j->progress_percent), &ok);
    if (j->current_step)
        put(o, "current_step", json_string(j->current_step), &ok);
    put(o, "steps_completed", json_integer(j->steps_completed), &ok);
    put(o, "total_steps", json_integer(j->total_steps), &ok);
    put(o, "created_at", time_json(j->created_ms), &ok);
    put(o, "updated_at", time_json(j->updated_ms), &ok);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *job_update_to_json(const struct job_update *u)
{
    bool ok = true;
    json_t *o = json_object();
    if (!o)
        return NULL;
    put(o, "job_id", json_string(u->job_id), &ok);
    put(o, "status", json_string(job_status_name(u->status)), &ok);
    if (u->message)
        put(o, "message", json_string(u->message), &ok);
    if (u->result)
        put(o, "result", json_deep_copy(u->result), &ok);
    if (u->error)
        put(o, "error", json_string(u->error), &ok);
    if (u->has_progress)
        put(o, "progress_percent", json_real(u->progress_percent), &ok);
    if (u->step)
        put(o, "step", json_string(u->step), &ok);
    if (step_status_name(u->step_status))
        put(o, "step_status", json_string(step_status_name(u->step_status)), &ok);
    put(o, "timestamp", time_json(u->ts_ms), &ok);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- time and ids ------------------------------------------------------- */

void job_format_time(int64_t ms, char *buf, size_t len)
{
    if (!buf || len == 0)
        return;
    int64_t sec = ms / 1000;
    int64_t frac = ms % 1000;
    if (frac < 0) { /* floor for times before 1970 */
        frac += 1000;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(buf, len, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

int64_t job_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool job_id_valid(const char *text)
{
    if (!text)
        return false;
    for (size_t i = 0; i < JOB_ID_LEN; i++) {
        char c = text[i]; /* a short string stops at its NUL, which fails both tests */
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!is_lower_hex(c)) {
            return false;
        }
    }
    return text[JOB_ID_LEN] == '\0';
}

int job_id_new(char *buf)
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10xx (RFC 4122) */

    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < sizeof b; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            buf[o++] = '-';
        buf[o++] = hex[b[i] >> 4];
        buf[o++] = hex[b[i] & 0x0f];
    }
    buf[o] = '\0';
    return 0;
}
