/*
 * store_pg.c - the PostgreSQL job store (jobstore.h) over pgpool.c.
 *
 * Every operation is one parameterised statement (prepared once per
 * connection, pipelined by the pool), so one round trip: the
 * writes are data-modifying CTEs that change the job and insert its history
 * entry in the same implicit transaction.  apply() is job_apply() of job.c
 * written in SQL (the job row is locked first, so concurrent writers on any
 * replica serialise on it); keep the two in step.
 *
 * Notifications come from the trigger on job_updates (db/001_jobs.sql)
 * through the pool's LISTEN connection, for this replica's writes and every
 * other's.  They travel on another socket than the write's answer, so the
 * notify for an entry may run before or after the write's callback.  After
 * the LISTEN connection (re)starts, notify(ctx, "", 0) says "anything may
 * have changed".
 *
 * Rows are read in text format: timestamps as Unix ms, jsonb as text parsed
 * by jansson, route_steps through array_to_json.
 */
#include "jobstore.h"
#include "pgpool.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* pg_advisory_lock key held while migrating: "asyagwdb" in ASCII. */
#define MIGRATION_LOCK_KEY INT64_C(0x6173796167776462)
#define QUEUE_MAX          10000
#define NOTIFY_CHANNEL     "asya_job_updates"

/* ---- SQL ---------------------------------------------------------------- */

/* Unix ms of a timestamptz, and back (exact: no floating point). */
#define MS(col) "floor(extract(epoch FROM " col ") * 1000)::int8"
#define TS(par) "(timestamptz 'epoch' + " par "::int8 * interval '1 millisecond')"

/* The columns row_to_job reads, after one leading outcome column. */
#define JOB_COLS                                                                                   \
    "id, status, array_to_json(route_steps)::text, route_current, payload::text, "                 \
    "result::text, error, timeout_sec, " MS(                                                       \
        "deadline") ", progress_percent::float8, "                                                 \
                    "current_step, steps_completed, total_steps, " MS("created_at") ", " MS(       \
                        "updated_at")

enum job_col {
    JC_OUTCOME,
    JC_ID,
    JC_STATUS,
    JC_STEPS,
    JC_CURRENT,
    JC_PAYLOAD,
    JC_RESULT,
    JC_ERROR,
    JC_TIMEOUT,
    JC_DEADLINE,
    JC_PROGRESS,
    JC_STEP,
    JC_DONE,
    JC_TOTAL,
    JC_CREATED,
    JC_UPDATED,
};

/* $1 id, $2 steps (JSON array), $3 route_current, $4 payload, $5 timeout_sec,
 * $6 deadline ms (0 = none), $7 total_steps, $8 created ms, $9 'Running' to
 * store the job as sent (the second history entry too; see jobstore.h). */
static const char SQL_CREATE[] =
    "WITH j AS ("
    " INSERT INTO jobs (id, status, route_steps, route_current, payload, timeout_sec, deadline,"
    "  progress_percent, steps_completed, total_steps, created_at, updated_at)"
    " VALUES ($1, CASE WHEN $9::text = 'Running' THEN 'Running' ELSE 'Pending' END,"
    "  ARRAY(SELECT e FROM json_array_elements_text($2::json) WITH ORDINALITY AS t(e, n)"
    "        ORDER BY n),"
    "  $3::int, $4::jsonb, $5::int, CASE WHEN $6::int8 > 0 THEN " TS(
        "$6") " END,"
              "  0, 0, $7::int, " TS("$8") ", " TS(
                  "$8") ")"
                        " RETURNING *"
                        "), u AS ("
                        " INSERT INTO job_updates (job_id, status, message, progress_percent, "
                        "\"timestamp\")"
                        " SELECT id, 'Pending', 'Job created', 0, created_at FROM j"
                        " UNION ALL SELECT id, 'Running', 'Sending message to first actor', NULL, "
                        "created_at"
                        " FROM j WHERE status = 'Running'"
                        ") SELECT 'ok', " JOB_COLS " FROM j";

/*
 * job_apply() of job.c: $1 id, $2 kind (running, progress, succeeded,
 * failed), $3 message or NULL for the default, $4 percent (clamped),
 * $5 step, $6 step_index, $7 step status, $8 result, $9 error.  The first
 * column says 'ok' (changed) or 'terminal' (unchanged); no row: no job.
 */
static const char SQL_APPLY[] =
    "WITH cur AS (SELECT * FROM jobs WHERE id = $1 FOR UPDATE"
    "), upd AS ("
    " UPDATE jobs j SET"
    "  status = CASE $2::text WHEN 'succeeded' THEN 'Succeeded' WHEN 'failed' THEN 'Failed'"
    "           ELSE 'Running' END,"
    "  progress_percent = CASE $2::text"
    "   WHEN 'progress' THEN GREATEST(j.progress_percent, $4::float8::numeric)"
    "   WHEN 'succeeded' THEN 100 ELSE j.progress_percent END,"
    "  current_step = CASE WHEN $2::text = 'progress' AND $5::text IS NOT NULL THEN $5::text"
    "                 ELSE j.current_step END,"
    "  steps_completed = CASE WHEN $2::text = 'progress' AND $7::text = 'completed'"
    "                    THEN GREATEST(j.steps_completed, $6::int + 1)"
    "                    WHEN $2::text = 'succeeded'"
    "                    THEN GREATEST(j.steps_completed, j.total_steps)"
    "                    ELSE j.steps_completed END,"
    "  result = CASE WHEN $2::text = 'succeeded' THEN $8::jsonb ELSE j.result END,"
    "  error = CASE WHEN $2::text = 'failed' THEN $9::text ELSE j.error END"
    " FROM cur WHERE j.id = cur.id AND cur.status NOT IN ('Succeeded', 'Failed')"
    /* Progress is best effort: its commit need not wait for the disk (a crash
     * may lose the last fraction of a second of it, never a final status).
     * That also keeps NOTIFY, which serialises commits, from waiting on it. */
    " RETURNING j.*, CASE WHEN $2::text = 'progress'"
    "  THEN set_config('synchronous_commit', 'off', true) END AS commit_mode"
    "), ins AS ("
    " INSERT INTO job_updates (job_id, status, message, result, error, \"timestamp\","
    "  progress_percent, step, step_status)"
    " SELECT id, status,"
    "  COALESCE($3::text, CASE $2::text"
    "   WHEN 'running' THEN 'Sending message to first actor'"
    "   WHEN 'progress' THEN 'Step ' || COALESCE($5::text, route_steps[$6::int + 1],"
    "                        $6::int::text) || ': ' || COALESCE($7::text, 'progress')"
    "   WHEN 'succeeded' THEN 'Job completed successfully'"
    "   ELSE 'Job failed: ' || $9::text END),"
    "  CASE WHEN $2::text = 'succeeded' THEN $8::jsonb END,"
    "  CASE WHEN $2::text = 'failed' THEN $9::text END,"
    "  updated_at,"
    "  CASE WHEN $2::text IN ('progress', 'succeeded') THEN progress_percent END,"
    "  CASE WHEN $2::text = 'progress' THEN $5::text END,"
    "  CASE WHEN $2::text = 'progress' THEN $7::text END"
    " FROM upd"
    ") SELECT 'ok', " JOB_COLS " FROM upd"
    " UNION ALL SELECT 'terminal', " JOB_COLS " FROM cur WHERE NOT EXISTS (SELECT 1 FROM upd)";

static const char SQL_GET[] = "SELECT 'ok', " JOB_COLS " FROM jobs WHERE id = $1";

/* A row per entry after $2, or one row of NULLs for a job without any; no
 * row: no job. */
static const char SQL_UPDATES[] =
    "SELECT u.id, u.status, u.message, u.result::text, u.error, u.progress_percent::float8,"
    " u.step, u.step_status, " MS(
        "u.\"timestamp\"") " FROM jobs j"
                           " LEFT JOIN job_updates u ON u.job_id = j.id AND u.id > $2::int8"
                           " WHERE j.id = $1 ORDER BY u.id";

enum upd_col {
    UC_ID,
    UC_STATUS,
    UC_MESSAGE,
    UC_RESULT,
    UC_ERROR,
    UC_PROGRESS,
    UC_STEP,
    UC_STATE,
    UC_TS
};

/* job_apply's FAILED with error "job timed out", for every job due at $1.
 * Row locks make each job fail once however many replicas sweep. */
static const char SQL_EXPIRE[] =
    "WITH x AS ("
    " UPDATE jobs SET status = 'Failed', error = 'job timed out'"
    " WHERE status NOT IN ('Succeeded', 'Failed') AND deadline <= " TS(
        "$1") " RETURNING id, updated_at"
              "), u AS ("
              " INSERT INTO job_updates (job_id, status, message, error, \"timestamp\")"
              " SELECT id, 'Failed', 'Job failed: job timed out', 'job timed out', updated_at FROM "
              "x"
              ") SELECT count(*) FROM x";

static const char SQL_PURGE[] = "WITH d AS ("
                                " DELETE FROM job_updates u USING jobs j"
                                " WHERE u.job_id = j.id AND j.status IN ('Succeeded', 'Failed')"
                                " AND j.updated_at < " TS("$1") " RETURNING 1"
                                                                ") SELECT count(*) FROM d";

/* ---- the store ---------------------------------------------------------- */

/* Also the statements' indexes in the pool. */
enum op_kind { OP_CREATE, OP_APPLY, OP_GET, OP_UPDATES, OP_EXPIRE, OP_PURGE, OP_COUNT };

/* A request-path statement unanswered for 30 s fails (the connection is
 * dropped: with libpq 15 that is the only cancel that never blocks); the
 * janitor's sweeps may take as long as they need. */
static const struct pgpool_statement statements[OP_COUNT] = {
    {SQL_CREATE, 30.0},  {SQL_APPLY, 30.0}, {SQL_GET, 30.0},
    {SQL_UPDATES, 30.0}, {SQL_EXPIRE, 0.0}, {SQL_PURGE, 0.0},
};

static const char *const op_names[OP_COUNT] = {"create",  "apply",  "get",
                                               "updates", "expire", "purge"};

/* Indexed by enum store_rc. */
#define NOUTCOMES 5
static const char *const outcome_names[NOUTCOMES] = {"ok", "not_found", "terminal", "unavailable",
                                                     "error"};

#define NBUCKETS 9
static const double bucket_le[NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0};

struct op_stats {
    uint64_t outcomes[NOUTCOMES];
    uint64_t buckets[NBUCKETS]; /* not cumulative; summed when printed */
    uint64_t count;
    double sum;
};

struct pg_store {
    struct jobstore base; /* first member: the ops cast back */
    struct pgpool *pool;
    struct op_stats stats[OP_COUNT];
};

/* One operation in flight: what to call back, and when it started. */
struct req {
    struct pg_store *s; /* not touched after the user's callback */
    enum op_kind op;
    double t0;
    store_job_cb job_cb;
    store_updates_cb ups_cb;
    void *arg;
    char job_id[JOB_ID_LEN + 1]; /* updates: the entries' job */
};

static struct pg_store *pg_of(struct jobstore *s)
{
    return (struct pg_store *)s;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void count(struct pg_store *s, enum op_kind op, enum store_rc rc, double t0)
{
    struct op_stats *st = &s->stats[op];
    double dt = mono_now() - t0;
    if ((unsigned)rc < NOUTCOMES)
        st->outcomes[rc]++;
    st->count++;
    st->sum += dt;
    for (int i = 0; i < NBUCKETS; i++) {
        if (dt <= bucket_le[i]) {
            st->buckets[i]++;
            break;
        }
    }
}

static struct req *req_new(struct pg_store *s, enum op_kind op, store_job_cb jcb,
                           store_updates_cb ucb, void *arg)
{
    struct req *r = calloc(1, sizeof *r);
    if (!r) {
        if (jcb)
            jcb(arg, STORE_ERROR, NULL, "out of memory");
        else if (ucb)
            ucb(arg, STORE_ERROR, NULL, 0, "out of memory");
        return NULL;
    }
    r->s = s;
    r->op = op;
    r->t0 = mono_now();
    r->job_cb = jcb;
    r->ups_cb = ucb;
    r->arg = arg;
    return r;
}

/* Count the outcome, free r, then call back (which may free the store). */
static void finish_job(struct req *r, enum store_rc rc, const struct job *j, const char *msg)
{
    store_job_cb cb = r->job_cb;
    void *arg = r->arg;
    count(r->s, r->op, rc, r->t0);
    free(r);
    cb(arg, rc, j, msg);
}

static void finish_ups(struct req *r, enum store_rc rc, const struct job_update *u, size_t n,
                       const char *msg)
{
    store_updates_cb cb = r->ups_cb;
    void *arg = r->arg;
    count(r->s, r->op, rc, r->t0);
    free(r);
    cb(arg, rc, u, n, msg);
}

static enum store_rc rc_of(enum pgpool_rc rc)
{
    return rc == PGPOOL_UNAVAILABLE ? STORE_UNAVAILABLE : STORE_ERROR;
}

/* ---- rows --------------------------------------------------------------- */

static const char *col(const PGresult *res, int row, int c)
{
    return PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
}

static int64_t col_i64(const PGresult *res, int row, int c)
{
    const char *v = col(res, row, c);
    return v ? strtoll(v, NULL, 10) : 0;
}

static double col_f(const PGresult *res, int row, int c)
{
    const char *v = col(res, row, c);
    return v ? strtod(v, NULL) : 0.0;
}

/* A jsonb column: NULL stays NULL; *ok false when it does not parse. */
static json_t *col_json(const PGresult *res, int row, int c, bool *ok)
{
    const char *v = col(res, row, c);
    if (!v)
        return NULL;
    json_t *j = json_loads(v, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    /* jsonb prints numbers as numeric: a real like 1e20 comes back as a
     * 21-digit integer, too big for jansson's integers.  Read such a
     * document with its integers as reals rather than call the row bad. */
    if (!j)
        j = json_loads(v, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL);
    if (!j)
        *ok = false;
    return j;
}

static char *col_str(const PGresult *res, int row, int c, bool *ok)
{
    const char *v = col(res, row, c);
    if (!v)
        return NULL;
    char *d = strdup(v);
    if (!d)
        *ok = false;
    return d;
}

/* route_steps as the JSON text of array_to_json. */
static bool parse_steps(const char *text, struct job *j)
{
    if (!text)
        return true;
    json_t *a = json_loads(text, 0, NULL);
    if (!json_is_array(a)) {
        json_decref(a);
        return false;
    }
    size_t n = json_array_size(a);
    bool ok = true;
    if (n > 0) {
        j->steps = calloc(n, sizeof *j->steps);
        ok = j->steps != NULL;
        if (ok)
            j->nsteps = n;
    }
    for (size_t i = 0; ok && i < n; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        j->steps[i] = strdup(s ? s : "");
        ok = j->steps[i] != NULL;
    }
    json_decref(a);
    return ok;
}

/* Fill j (zeroed here) from row; false when a column is malformed or memory
 * ran out (j is cleared then). */
static bool row_to_job(const PGresult *res, int row, struct job *j)
{
    bool ok = true;
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", PQgetvalue(res, row, JC_ID));
    if (job_status_parse(PQgetvalue(res, row, JC_STATUS), &j->status) != 0)
        j->status = JOB_UNKNOWN;
    ok = parse_steps(col(res, row, JC_STEPS), j);
    j->route_current = (int)col_i64(res, row, JC_CURRENT);
    j->payload = col_json(res, row, JC_PAYLOAD, &ok);
    j->result = col_json(res, row, JC_RESULT, &ok);
    j->error = col_str(res, row, JC_ERROR, &ok);
    j->timeout_sec = (long)col_i64(res, row, JC_TIMEOUT);
    j->deadline_ms = col_i64(res, row, JC_DEADLINE);
    j->progress_percent = col_f(res, row, JC_PROGRESS);
    j->current_step = col_str(res, row, JC_STEP, &ok);
    j->steps_completed = (int)col_i64(res, row, JC_DONE);
    j->total_steps = (int)col_i64(res, row, JC_TOTAL);
    j->created_ms = col_i64(res, row, JC_CREATED);
    j->updated_ms = col_i64(res, row, JC_UPDATED);
    if (!ok)
        job_clear(j);
    return ok;
}

static bool row_to_update(const PGresult *res, int row, const char *job_id, struct job_update *u)
{
    bool ok = true;
    memset(u, 0, sizeof *u);
    u->id = col_i64(res, row, UC_ID);
    snprintf(u->job_id, sizeof u->job_id, "%s", job_id);
    if (job_status_parse(PQgetvalue(res, row, UC_STATUS), &u->status) != 0)
        u->status = JOB_UNKNOWN;
    u->message = col_str(res, row, UC_MESSAGE, &ok);
    u->result = col_json(res, row, UC_RESULT, &ok);
    u->error = col_str(res, row, UC_ERROR, &ok);
    u->has_progress = !PQgetisnull(res, row, UC_PROGRESS);
    u->progress_percent = col_f(res, row, UC_PROGRESS);
    u->step = col_str(res, row, UC_STEP, &ok);
    const char *st = col(res, row, UC_STATE);
    if (!st || step_status_parse(st, &u->step_status) != 0)
        u->step_status = STEP_NONE;
    u->ts_ms = col_i64(res, row, UC_TS);
    if (!ok)
        job_update_clear(u);
    return ok;
}

/* ---- callbacks from the pool -------------------------------------------- */

/* create, apply, get: at most one row, its first column the outcome. */
static void on_job_row(void *arg, enum pgpool_rc prc, const PGresult *res, const char *err)
{
    struct req *r = arg;
    if (prc == PGPOOL_CANCELLED) {
        free(r);
        return;
    }
    if (prc != PGPOOL_OK) {
        finish_job(r, rc_of(prc), NULL, err);
        return;
    }
    if (PQntuples(res) == 0) {
        finish_job(r, STORE_NOT_FOUND, NULL, NULL);
        return;
    }
    struct job j;
    if (!row_to_job(res, 0, &j)) {
        finish_job(r, STORE_ERROR, NULL, "malformed job row");
        return;
    }
    enum store_rc rc =
        strcmp(PQgetvalue(res, 0, JC_OUTCOME), "terminal") == 0 ? STORE_TERMINAL : STORE_OK;
    finish_job(r, rc, &j, NULL);
    job_clear(&j);
}

static void on_create(void *arg, enum pgpool_rc prc, const PGresult *res, const char *err)
{
    /* The unique violation on the primary key: say it as the memory store does. */
    if (prc == PGPOOL_ERROR && err && strstr(err, "jobs_pkey")) {
        finish_job(arg, STORE_ERROR, NULL, "a job with this id already exists");
        return;
    }
    on_job_row(arg, prc, res, err);
}

static void on_updates(void *arg, enum pgpool_rc prc, const PGresult *res, const char *err)
{
    struct req *r = arg;
    if (prc == PGPOOL_CANCELLED) {
        free(r);
        return;
    }
    if (prc != PGPOOL_OK) {
        finish_ups(r, rc_of(prc), NULL, 0, err);
        return;
    }
    int rows = PQntuples(res);
    if (rows == 0) {
        finish_ups(r, STORE_NOT_FOUND, NULL, 0, NULL);
        return;
    }
    if (rows == 1 && PQgetisnull(res, 0, UC_ID)) {
        finish_ups(r, STORE_OK, NULL, 0, NULL);
        return;
    }
    struct job_update *ups = calloc((size_t)rows, sizeof *ups);
    size_t n = 0;
    bool ok = ups != NULL;
    for (int i = 0; ok && i < rows; i++) {
        ok = row_to_update(res, i, r->job_id, &ups[i]);
        if (ok)
            n++;
    }
    if (ok)
        finish_ups(r, STORE_OK, ups, n, NULL);
    else
        finish_ups(r, STORE_ERROR, NULL, 0, "malformed history row");
    for (size_t i = 0; i < n; i++)
        job_update_clear(&ups[i]);
    free(ups);
}

/* expire, purge: one row with a count. */
static void on_count(void *arg, enum pgpool_rc prc, const PGresult *res, const char *err)
{
    struct req *r = arg;
    if (prc == PGPOOL_CANCELLED) {
        free(r);
        return;
    }
    if (prc != PGPOOL_OK) {
        finish_ups(r, rc_of(prc), NULL, 0, err);
        return;
    }
    int64_t n = PQntuples(res) > 0 ? col_i64(res, 0, 0) : 0;
    finish_ups(r, STORE_OK, NULL, n > 0 ? (size_t)n : 0, NULL);
}

static void on_notify(void *ctx, const char *payload)
{
    struct pg_store *s = ctx;
    if (!s->base.notify)
        return;
    if (!payload) {
        s->base.notify(s->base.notify_ctx, "", 0);
        return;
    }
    /* "job_id:update_id"; anything else is not ours and is ignored. */
    const char *colon = strrchr(payload, ':');
    if (!colon || colon == payload || (size_t)(colon - payload) > JOB_ID_LEN)
        return;
    char id[JOB_ID_LEN + 1];
    memcpy(id, payload, (size_t)(colon - payload));
    id[colon - payload] = '\0';
    char *end;
    errno = 0;
    long long uid = strtoll(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end)
        return;
    s->base.notify(s->base.notify_ctx, id, (int64_t)uid);
}

/* ---- operations --------------------------------------------------------- */

/* JSON text of v for a parameter; NULL for NULL.  *ok false on failure. */
static char *json_param(const json_t *v, bool *ok)
{
    if (!v)
        return NULL;
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!s)
        *ok = false;
    return s;
}

/* One job's changes share a connection, so a sidecar's last progress report
 * is applied before the end actor's final that came just after it. */
static unsigned job_key(const char *id)
{
    unsigned h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h | 1u; /* never 0: 0 means "any connection" */
}

static void pg_create(struct jobstore *st, const struct job *j, store_job_cb cb, void *arg)
{
    struct pg_store *s = pg_of(st);
    if (!job_id_valid(j->id)) {
        cb(arg, STORE_ERROR, NULL, "invalid job id");
        return;
    }
    struct req *r = req_new(s, OP_CREATE, cb, NULL, arg);
    if (!r)
        return;

    bool ok = true;
    json_t *steps = json_array();
    ok = steps != NULL;
    for (size_t i = 0; ok && i < j->nsteps; i++)
        ok = json_array_append_new(steps, json_string(j->steps[i] ? j->steps[i] : "")) == 0;
    char *steps_txt = ok ? json_param(steps, &ok) : NULL;
    json_decref(steps);
    char *payload = json_param(j->payload, &ok);
    if (!ok) {
        free(steps_txt);
        free(payload);
        finish_job(r, STORE_ERROR, NULL, "out of memory");
        return;
    }
    char cur[24], timeout[24], deadline[24], total[24], created[24];
    snprintf(cur, sizeof cur, "%d", j->route_current);
    snprintf(timeout, sizeof timeout, "%ld", j->timeout_sec > 0 ? j->timeout_sec : 0L);
    snprintf(deadline, sizeof deadline, "%" PRId64, j->deadline_ms);
    snprintf(total, sizeof total, "%d", j->total_steps);
    snprintf(created, sizeof created, "%" PRId64, j->created_ms > 0 ? j->created_ms : job_now_ms());
    const char *status = j->status == JOB_RUNNING ? "Running" : "Pending";
    const char *params[] = {j->id,    steps_txt, cur,     payload, timeout,
                            deadline, total,     created, status};
    pgpool_query(s->pool, OP_CREATE, 9, params, on_create, r);
    free(steps_txt);
    free(payload);
}

static const char *kind_name(enum job_change_kind k)
{
    switch (k) {
    case CHANGE_RUNNING:
        return "running";
    case CHANGE_PROGRESS:
        return "progress";
    case CHANGE_SUCCEEDED:
        return "succeeded";
    case CHANGE_FAILED:
        return "failed";
    }
    return NULL;
}

static void pg_apply(struct jobstore *st, const char *id, const struct job_change *c,
                     store_job_cb cb, void *arg)
{
    struct pg_store *s = pg_of(st);
    const char *kind = kind_name(c->kind);
    if (!kind) {
        cb(arg, STORE_ERROR, NULL, "invalid change");
        return;
    }
    struct req *r = req_new(s, OP_APPLY, cb, NULL, arg);
    if (!r)
        return;

    /* The same clamp as job.c: NaN and below 0 are 0, above 100 is 100. */
    double pct = c->percent;
    if (isnan(pct) || pct < 0.0)
        pct = 0.0;
    if (pct > 100.0)
        pct = 100.0;
    char pcts[32], idx[24];
    snprintf(pcts, sizeof pcts, "%.17g", pct);
    snprintf(idx, sizeof idx, "%d", c->step_index);
    bool ok = true;
    char *result = c->kind == CHANGE_SUCCEEDED ? json_param(c->result, &ok) : NULL;
    if (!ok) {
        finish_job(r, STORE_ERROR, NULL, "out of memory");
        return;
    }
    const char *params[] = {id,
                            kind,
                            c->message,
                            pcts,
                            c->kind == CHANGE_PROGRESS ? c->step : NULL,
                            idx,
                            c->kind == CHANGE_PROGRESS ? step_status_name(c->step_status) : NULL,
                            result,
                            c->error ? c->error : "unknown error"};
    pgpool_query_keyed(s->pool, job_key(id), OP_APPLY, 9, params, on_job_row, r);
    free(result);
}

static void pg_get(struct jobstore *st, const char *id, store_job_cb cb, void *arg)
{
    struct pg_store *s = pg_of(st);
    struct req *r = req_new(s, OP_GET, cb, NULL, arg);
    if (!r)
        return;
    const char *params[] = {id};
    pgpool_query(s->pool, OP_GET, 1, params, on_job_row, r);
}

static void pg_updates(struct jobstore *st, const char *id, int64_t after_id, store_updates_cb cb,
                       void *arg)
{
    struct pg_store *s = pg_of(st);
    if (strlen(id) > JOB_ID_LEN) {
        cb(arg, STORE_NOT_FOUND, NULL, 0, NULL); /* cannot be a stored id */
        return;
    }
    struct req *r = req_new(s, OP_UPDATES, NULL, cb, arg);
    if (!r)
        return;
    snprintf(r->job_id, sizeof r->job_id, "%s", id);
    char after[24];
    snprintf(after, sizeof after, "%" PRId64, after_id);
    const char *params[] = {id, after};
    pgpool_query(s->pool, OP_UPDATES, 2, params, on_updates, r);
}

static void count_query(struct pg_store *s, enum op_kind op, int64_t ms, store_updates_cb cb,
                        void *arg)
{
    struct req *r = req_new(s, op, NULL, cb, arg);
    if (!r)
        return;
    char t[24];
    snprintf(t, sizeof t, "%" PRId64, ms);
    const char *params[] = {t};
    pgpool_query(s->pool, (int)op, 1, params, on_count, r);
}

static void pg_expire(struct jobstore *st, int64_t now_ms, store_updates_cb cb, void *arg)
{
    count_query(pg_of(st), OP_EXPIRE, now_ms, cb, arg);
}

static void pg_purge(struct jobstore *st, int64_t older_than_ms, store_updates_cb cb, void *arg)
{
    count_query(pg_of(st), OP_PURGE, older_than_ms, cb, arg);
}

static bool pg_ready(struct jobstore *st, const char **reason)
{
    const char *why = NULL;
    bool ok = pgpool_ready(pg_of(st)->pool, &why);
    if (reason)
        *reason = ok ? NULL : why;
    return ok;
}

static void pg_metrics(struct jobstore *st, struct textbuf *out)
{
    struct pg_store *s = pg_of(st);
    textbuf_puts(out, "# HELP asya_gateway_store_operations_total Job store operations by "
                      "outcome.\n"
                      "# TYPE asya_gateway_store_operations_total counter\n");
    for (int op = 0; op < OP_COUNT; op++)
        for (int o = 0; o < NOUTCOMES; o++)
            textbuf_printf(
                out, "asya_gateway_store_operations_total{op=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
                op_names[op], outcome_names[o], s->stats[op].outcomes[o]);

    textbuf_puts(out, "# HELP asya_gateway_store_latency_seconds From an operation's call to "
                      "its callback, queueing included.\n"
                      "# TYPE asya_gateway_store_latency_seconds histogram\n");
    for (int op = 0; op < OP_COUNT; op++) {
        const struct op_stats *os = &s->stats[op];
        uint64_t cum = 0;
        for (int i = 0; i < NBUCKETS; i++) {
            cum += os->buckets[i];
            textbuf_printf(
                out, "asya_gateway_store_latency_seconds_bucket{op=\"%s\",le=\"%g\"} %" PRIu64 "\n",
                op_names[op], bucket_le[i], cum);
        }
        textbuf_printf(out,
                       "asya_gateway_store_latency_seconds_bucket{op=\"%s\",le=\"+Inf\"} %" PRIu64
                       "\n"
                       "asya_gateway_store_latency_seconds_sum{op=\"%s\"} %.6f\n"
                       "asya_gateway_store_latency_seconds_count{op=\"%s\"} %" PRIu64 "\n",
                       op_names[op], os->count, op_names[op], os->sum, op_names[op], os->count);
    }

    struct pgpool_stats ps;
    pgpool_stats(s->pool, &ps);
    textbuf_printf(out,
                   "# HELP asya_gateway_store_reconnects_total Database connection attempts after "
                   "a failure or a lost connection.\n"
                   "# TYPE asya_gateway_store_reconnects_total counter\n"
                   "asya_gateway_store_reconnects_total %" PRIu64 "\n"
                   "# HELP asya_gateway_store_connections Pool connections ready for "
                   "statements.\n"
                   "# TYPE asya_gateway_store_connections gauge\n"
                   "asya_gateway_store_connections %d\n"
                   "# HELP asya_gateway_store_listening 1 while the LISTEN connection listens.\n"
                   "# TYPE asya_gateway_store_listening gauge\n"
                   "asya_gateway_store_listening %d\n"
                   "# HELP asya_gateway_store_queued Operations waiting for a connection.\n"
                   "# TYPE asya_gateway_store_queued gauge\n"
                   "asya_gateway_store_queued %zu\n"
                   "# HELP asya_gateway_store_in_flight Operations sent, not yet answered.\n"
                   "# TYPE asya_gateway_store_in_flight gauge\n"
                   "asya_gateway_store_in_flight %zu\n",
                   ps.reconnects, ps.up, ps.listening ? 1 : 0, ps.queued, ps.in_flight);
}

static void pg_free(struct jobstore *st)
{
    struct pg_store *s = pg_of(st);
    if (!s)
        return;
    pgpool_free(s->pool); /* cancels: on_* free their reqs without calling back */
    free(s);
}

static const struct jobstore_ops pg_ops = {
    .create = pg_create,
    .apply = pg_apply,
    .get = pg_get,
    .updates = pg_updates,
    .expire = pg_expire,
    .purge = pg_purge,
    .ready = pg_ready,
    .metrics = pg_metrics,
    .free = pg_free,
};

struct jobstore *jobstore_pg_new(struct ev_loop *loop, const char *url, const char *migrations_dir,
                                 int pool_size, store_notify_cb notify, void *ctx, char *err,
                                 size_t errlen)
{
    struct pg_store *s = calloc(1, sizeof *s);
    if (!s) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->base.ops = &pg_ops;
    s->base.notify = notify;
    s->base.notify_ctx = ctx;
    struct pgpool_config cfg = {
        .conninfo = url,
        .statements = statements,
        .nstatements = OP_COUNT,
        .pool_size = pool_size > 0 ? pool_size : 4,
        .queue_max = QUEUE_MAX,
        .listen = NOTIFY_CHANNEL,
        .notify = on_notify,
        .notify_ctx = s,
        .migrations_dir = migrations_dir,
        .lock_key = MIGRATION_LOCK_KEY,
    };
    s->pool = pgpool_new(loop, &cfg, err, errlen);
    if (!s->pool) {
        free(s);
        return NULL;
    }
    return &s->base;
}

/* ---- masking ------------------------------------------------------------ */

/* Append n bytes of s to buf (size len) at *pos, truncating. */
static void put(char *buf, size_t len, size_t *pos, const char *s, size_t n)
{
    if (*pos + 1 >= len)
        return;
    if (n > len - 1 - *pos)
        n = len - 1 - *pos;
    memcpy(buf + *pos, s, n);
    *pos += n;
    buf[*pos] = '\0';
}

/* "password=..." in a URI's query string: the value up to '&' or '#'. */
static void mask_query(const char *q, char *buf, size_t len, size_t *pos)
{
    while (*q) {
        size_t n = strcspn(q, "&#");
        if (n > 9 && strncmp(q, "password=", 9) == 0) {
            put(buf, len, pos, q, 9);
            put(buf, len, pos, "***", 3);
        } else {
            put(buf, len, pos, q, n);
        }
        q += n;
        if (*q == '#') {
            put(buf, len, pos, q, strlen(q));
            return;
        }
        if (*q)
            put(buf, len, pos, q++, 1);
    }
}

static void mask_uri(const char *url, const char *scheme_end, char *buf, size_t len, size_t *pos)
{
    const char *auth = scheme_end + 3;
    size_t alen = strcspn(auth, "/?#");
    put(buf, len, pos, url, (size_t)(auth - url));
    /* userinfo ends at the last '@' of the authority (a password may hold '@'). */
    const char *at = NULL;
    for (const char *p = auth; p < auth + alen; p++)
        if (*p == '@')
            at = p;
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon) {
            put(buf, len, pos, auth, (size_t)(colon - auth) + 1);
            put(buf, len, pos, "***", 3);
            put(buf, len, pos, at, (size_t)(auth + alen - at));
        } else {
            put(buf, len, pos, auth, alen);
        }
    } else {
        put(buf, len, pos, auth, alen);
    }
    const char *rest = auth + alen;
    const char *q = strchr(rest, '?');
    if (!q) {
        put(buf, len, pos, rest, strlen(rest));
        return;
    }
    put(buf, len, pos, rest, (size_t)(q - rest) + 1);
    mask_query(q + 1, buf, len, pos);
}

/* key=value form: the value of every "password" keyword, quoted or not. */
static void mask_kv(const char *s, char *buf, size_t len, size_t *pos)
{
    while (*s) {
        const char *start = s;
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
            s++;
        const char *key = s;
        while (*s && *s != '=' && *s != ' ' && *s != '\t')
            s++;
        size_t klen = (size_t)(s - key);
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s != '=') {
            put(buf, len, pos, start, (size_t)(s - start));
            if (*s)
                put(buf, len, pos, s++, 1);
            continue;
        }
        s++; /* '=' */
        while (*s == ' ' || *s == '\t')
            s++;
        put(buf, len, pos, start, (size_t)(s - start));
        const char *val = s;
        if (*s == '\'') {
            for (s++; *s && *s != '\''; s++)
                if (*s == '\\' && s[1])
                    s++;
            if (*s == '\'')
                s++;
        } else {
            while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') {
                if (*s == '\\' && s[1])
                    s++;
                s++;
            }
        }
        if (klen == 8 && strncmp(key, "password", 8) == 0)
            put(buf, len, pos, "***", 3);
        else
            put(buf, len, pos, val, (size_t)(s - val));
    }
}

void jobstore_mask_url(const char *url, char *buf, size_t buflen)
{
    size_t pos = 0;
    if (!buf || buflen == 0)
        return;
    buf[0] = '\0';
    if (!url)
        return;
    const char *se = strstr(url, "://");
    if (se && (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0))
        mask_uri(url, se, buf, buflen, &pos);
    else
        mask_kv(url, buf, buflen, &pos);
}
