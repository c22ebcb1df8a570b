/*
 * job.h - the gateway's job model: statuses, the job record, the history of
 * updates, and the pure rules that turn a report (progress, final, timeout)
 * into a change of the job.  No I/O here: both stores and the HTTP layer use
 * these, so the in-memory store and PostgreSQL give the same answers.
 */
#ifndef ASYA_GW_JOB_H
#define ASYA_GW_JOB_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A v4 UUID in text: 36 characters. */
#define JOB_ID_LEN 36

enum job_status {
    JOB_PENDING = 0,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_UNKNOWN, /* exists for the reference's API; never set */
};

/* "Pending", "Running", ... (the reference's capitalised names). */
const char *job_status_name(enum job_status s);
/* Parse a capitalised name; 0 or -EINVAL. */
int job_status_parse(const char *text, enum job_status *out);
bool job_status_terminal(enum job_status s);

/* The step status a sidecar reports. */
enum step_status {
    STEP_NONE = 0,
    STEP_RECEIVED,
    STEP_PROCESSING,
    STEP_COMPLETED,
};
/* "received", "processing", "completed"; NULL for STEP_NONE. */
const char *step_status_name(enum step_status s);
/* 0 or -EINVAL (STEP_NONE is never parsed). */
int step_status_parse(const char *text, enum step_status *out);

/*
 * One job.  Strings and json_t values are owned by the record (free with
 * job_clear); a job handed to a callback is borrowed for the call only.
 */
struct job {
    char id[JOB_ID_LEN + 1];
    enum job_status status;
    char **steps; /* route steps, nsteps of them */
    size_t nsteps;
    int route_current;
    json_t *payload;         /* the tool's arguments, defaults applied */
    json_t *result;          /* NULL until Succeeded */
    char *error;             /* NULL unless Failed */
    long timeout_sec;        /* 0 = no deadline */
    int64_t deadline_ms;     /* Unix ms; 0 = none */
    double progress_percent; /* 0..100, never goes down */
    char *current_step;      /* NULL until a sidecar reported */
    int steps_completed;
    int total_steps;
    int64_t created_ms;
    int64_t updated_ms;
};

/* Free what a job owns and zero it.  NULL is fine. */
void job_clear(struct job *j);
/* Deep copy src into dst (dst is overwritten, not freed).  0 or -ENOMEM. */
int job_copy(struct job *dst, const struct job *src);

/* One entry of a job's history: what an SSE subscriber receives. */
struct job_update {
    int64_t id; /* store-assigned, increasing; the SSE event id */
    char job_id[JOB_ID_LEN + 1];
    enum job_status status;
    char *message;  /* may be NULL */
    json_t *result; /* may be NULL */
    char *error;    /* may be NULL */
    bool has_progress;
    double progress_percent;
    char *step; /* may be NULL */
    enum step_status step_status;
    int64_t ts_ms;
};

void job_update_clear(struct job_update *u);
int job_update_copy(struct job_update *dst, const struct job_update *src);

/* What a report asks of a job. */
enum job_change_kind {
    CHANGE_RUNNING,   /* published: Pending -> Running, with a message */
    CHANGE_PROGRESS,  /* a sidecar's progress (or a legacy heartbeat) */
    CHANGE_SUCCEEDED, /* a final "succeeded" */
    CHANGE_FAILED,    /* a final "failed", a heartbeat "error", a timeout, a failed publish */
};

/* Borrowed pointers; a store copies what it keeps. */
struct job_change {
    enum job_change_kind kind;
    const char *message;          /* update message; NULL = the default for the kind */
    double percent;               /* CHANGE_PROGRESS: from progress_percent() */
    const char *step;             /* CHANGE_PROGRESS: the step name, may be NULL */
    int step_index;               /* CHANGE_PROGRESS */
    enum step_status step_status; /* CHANGE_PROGRESS */
    const json_t *result;         /* CHANGE_SUCCEEDED, may be NULL */
    const char *error;            /* CHANGE_FAILED */
};

/*
 * percent = (step_index * 100 + w) / total_steps with w = 10, 50, 100 for
 * received, processing, completed; clamped to 0..100; total_steps <= 0 gives 0.
 */
double progress_percent(int step_index, int total_steps, enum step_status st);

/* The percent of the checkpoint before (step_index, st) on its route: the
 * previous step's completed for received (0 for the first step), received
 * for processing (a handler's own progress included), processing for
 * completed.  A report applied before that one arrived would hide it. */
double progress_after(int step_index, int total_steps, enum step_status st);

/* A handler's own progress within a step that is processing (a report with
 * "progress": fraction, 0..1): w = 50 + 49 * fraction in the formula above,
 * between "processing" (50) and "completed" (100) of the step. */
double progress_percent_within(int step_index, int total_steps, double fraction);

/*
 * Apply a change to a job at time now_ms, filling *update (owned by the
 * caller: job_update_clear) with the history entry it makes (id 0: the store
 * assigns it).  Rules: a terminal job never changes (returns 1, *update
 * untouched); progress never goes down; PROGRESS sets Running, current_step
 * and, on completed, steps_completed = max(old, step_index + 1); SUCCEEDED
 * stores the result and sets 100 %; FAILED stores the error.  Default
 * messages: "Job completed successfully", "Job failed: <error>",
 * "Step <step>: <status>".  Returns 0 (changed), 1 (terminal: ignored) or
 * -ENOMEM.
 */
int job_apply(struct job *j, const struct job_change *c, int64_t now_ms, struct job_update *update);

/* The job JSON of GATEWAY.md (new reference). */
json_t *job_to_json(const struct job *j);
/* The SSE update object: {"job_id","status","message"?,...,"timestamp"} (new reference). */
json_t *job_update_to_json(const struct job_update *u);

/* RFC 3339 UTC with milliseconds, "2026-12-02T10:00:00.123Z", into buf (>= 32 bytes). */
void job_format_time(int64_t ms, char *buf, size_t len);

/* Current wall-clock time in Unix ms. */
int64_t job_now_ms(void);

/* True when text is a canonical lowercase 8-4-4-4-12 hex UUID. */
bool job_id_valid(const char *text);
/* A new random v4 UUID (getrandom) into buf (>= JOB_ID_LEN + 1). 0 or -errno. */
int job_id_new(char *buf);

#endif /* ASYA_GW_JOB_H */
