/*
 * store_mem.c - the in-memory job store (ASYA_DATABASE_URL empty): a chained
 * hash table of jobs by id, each with its history in id order.
 *
 * Order of calls: every operation calls its callback exactly once before it
 * returns.  A write that added history entries (create, apply, expire) then
 * calls the store's notify callback, once per entry, AFTER its own callback
 * has returned, so the writer sees its result before subscribers are woken
 * (as with PostgreSQL, where NOTIFY arrives later from the loop).
 *
 * Callbacks may call other operations of the store (new writes, reads); they
 * must not free the store.  The job a callback receives is pinned for the
 * call (purge skips it), and the history handed to an updates callback is a
 * snapshot, so neither moves under the callback.
 */
#include "jobstore.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct mem_entry {
    struct mem_entry *next; /* hash chain */
    struct job job;
    struct job_update *hist; /* ids increasing */
    size_t nhist;
    size_t caphist;
    unsigned pins; /* > 0 while a callback holds &job */
};

/* A chain head (a struct, so that the table is an array of aggregates). */
struct mem_bucket {
    struct mem_entry *head;
};

struct mem_store {
    struct jobstore base; /* first: the ops cast back */
    struct mem_bucket *buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    int64_t next_update_id; /* global, from 1 */
};

/* A pending notify: job id and entry id, copied so callbacks may write. */
struct mem_note {
    char job_id[JOB_ID_LEN + 1];
    int64_t update_id;
};

#define INITIAL_BUCKETS 64

static struct mem_store *mem_of(struct jobstore *s)
{
    return (struct mem_store *)s;
}

static size_t hash_id(const char *id)
{
    uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= UINT64_C(1099511628211);
    }
    return (size_t)h;
}

static struct mem_entry *find(struct mem_store *m, const char *id)
{
    if (!id)
        return NULL;
    for (struct mem_entry *e = m->buckets[hash_id(id) & (m->nbuckets - 1)].head; e; e = e->next)
        if (strcmp(e->job.id, id) == 0)
            return e;
    return NULL;
}

/* Doubles the table when it is full; 0 or -ENOMEM (the table stays usable). */
static int grow_table(struct mem_store *m)
{
    if (m->count < m->nbuckets)
        return 0;
    size_t n = m->nbuckets * 2;
    struct mem_bucket *b = calloc(n, sizeof *b);
    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct mem_entry *e = m->buckets[i].head;
        while (e) {
            struct mem_entry *next = e->next;
            size_t k = hash_id(e->job.id) & (n - 1);
            e->next = b[k].head;
            b[k].head = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
    return 0;
}

/* Room for one more history entry; 0 or -ENOMEM. */
static int reserve_hist(struct mem_entry *e)
{
    if (e->nhist < e->caphist)
        return 0;
    size_t cap = e->caphist ? e->caphist * 2 : 8;
    struct job_update *h = realloc(e->hist, cap * sizeof *h);
    if (!h)
        return -ENOMEM;
    e->hist = h;
    e->caphist = cap;
    return 0;
}

static void entry_free(struct mem_entry *e)
{
    for (size_t i = 0; i < e->nhist; i++)
        job_update_clear(&e->hist[i]);
    free(e->hist);
    job_clear(&e->job);
    free(e);
}

/* Records u (takes ownership) as e's next entry with a new id; the slot must
 * be reserved.  Returns the id. */
static int64_t record(struct mem_store *m, struct mem_entry *e, struct job_update *u)
{
    u->id = m->next_update_id++;
    e->hist[e->nhist++] = *u;
    return u->id;
}

static void notify(struct mem_store *m, const char *job_id, int64_t update_id)
{
    if (m->base.notify)
        m->base.notify(m->base.notify_ctx, job_id, update_id);
}

/* Calls cb with e's job, pinned for the call. */
static void reply_job(struct mem_entry *e, enum store_rc rc, store_job_cb cb, void *arg)
{
    e->pins++;
    cb(arg, rc, &e->job, NULL);
    e->pins--;
}

/* ---- operations --------------------------------------------------------- */

static void mem_create(struct jobstore *s, const struct job *j, store_job_cb cb, void *arg)
{
    struct mem_store *m = mem_of(s);
    if (!job_id_valid(j->id)) {
        cb(arg, STORE_ERROR, NULL, "invalid job id");
        return;
    }
    if (find(m, j->id)) {
        cb(arg, STORE_ERROR, NULL, "a job with this id already exists");
        return;
    }
    struct mem_entry *e = calloc(1, sizeof *e);
    if (!e || grow_table(m) != 0 || job_copy(&e->job, j) != 0) {
        free(e);
        cb(arg, STORE_ERROR, NULL, "out of memory");
        return;
    }
    struct job_update u;
    memset(&u, 0, sizeof u);
    u.message = strdup("Job created");
    if (!u.message || reserve_hist(e) != 0) {
        free(u.message);
        entry_free(e);
        cb(arg, STORE_ERROR, NULL, "out of memory");
        return;
    }
    if (e->job.created_ms == 0)
        e->job.created_ms = job_now_ms();
    if (e->job.updated_ms == 0)
        e->job.updated_ms = e->job.created_ms;
    bool running = j->status == JOB_RUNNING;
    e->job.status = JOB_PENDING;
    memcpy(u.job_id, e->job.id, sizeof u.job_id);
    u.status = JOB_PENDING;
    u.has_progress = true;
    u.progress_percent = 0.0;
    u.ts_ms = e->job.created_ms;

    struct mem_note note;
    memcpy(note.job_id, e->job.id, sizeof note.job_id);
    note.update_id = record(m, e, &u);
    if (running) {
        /* Stored as already sent (see jobstore.h): the second entry now. */
        struct job_update u2;
        const struct job_change c = {.kind = CHANGE_RUNNING};
        if (reserve_hist(e) != 0 || job_apply(&e->job, &c, e->job.created_ms, &u2) != 0) {
            entry_free(e);
            cb(arg, STORE_ERROR, NULL, "out of memory");
            return;
        }
        note.update_id = record(m, e, &u2);
    }
    size_t k = hash_id(e->job.id) & (m->nbuckets - 1);
    e->next = m->buckets[k].head;
    m->buckets[k].head = e;
    m->count++;

    reply_job(e, STORE_OK, cb, arg);
    notify(m, note.job_id, note.update_id);
}

static void mem_apply(struct jobstore *s, const char *id, const struct job_change *c,
                      store_job_cb cb, void *arg)
{
    struct mem_store *m = mem_of(s);
    struct mem_entry *e = find(m, id);
    if (!e) {
        cb(arg, STORE_NOT_FOUND, NULL, NULL);
        return;
    }
    if (job_status_terminal(e->job.status)) {
        reply_job(e, STORE_TERMINAL, cb, arg);
        return;
    }
    if (reserve_hist(e) != 0) {
        cb(arg, STORE_ERROR, NULL, "out of memory");
        return;
    }
    struct job_update u;
    int rc = job_apply(&e->job, c, job_now_ms(), &u);
    if (rc == 1) {
        reply_job(e, STORE_TERMINAL, cb, arg);
        return;
    }
    if (rc < 0) {
        cb(arg, STORE_ERROR, NULL, rc == -ENOMEM ? "out of memory" : "invalid change");
        return;
    }
    struct mem_note note;
    memcpy(note.job_id, e->job.id, sizeof note.job_id);
    note.update_id = record(m, e, &u);
    reply_job(e, STORE_OK, cb, arg);
    notify(m, note.job_id, note.update_id);
}

static void mem_get(struct jobstore *s, const char *id, store_job_cb cb, void *arg)
{
    struct mem_entry *e = find(mem_of(s), id);
    if (!e) {
        cb(arg, STORE_NOT_FOUND, NULL, NULL);
        return;
    }
    reply_job(e, STORE_OK, cb, arg);
}

static void mem_updates(struct jobstore *s, const char *id, int64_t after_id, store_updates_cb cb,
                        void *arg)
{
    struct mem_entry *e = find(mem_of(s), id);
    if (!e) {
        cb(arg, STORE_NOT_FOUND, NULL, 0, NULL);
        return;
    }
    /* First entry with id > after_id (ids increase along the history). */
    size_t lo = 0, hi = e->nhist;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (e->hist[mid].id <= after_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t n = e->nhist - lo;
    if (n == 0) {
        cb(arg, STORE_OK, NULL, 0, NULL);
        return;
    }
    /* A shallow snapshot: the strings stay put while e is pinned, the array
     * may move if the callback writes to this job. */
    struct job_update *snap = malloc(n * sizeof *snap);
    if (!snap) {
        cb(arg, STORE_ERROR, NULL, 0, "out of memory");
        return;
    }
    memcpy(snap, e->hist + lo, n * sizeof *snap);
    e->pins++;
    cb(arg, STORE_OK, snap, n, NULL);
    e->pins--;
    free(snap);
}

static void mem_expire(struct jobstore *s, int64_t now_ms, store_updates_cb cb, void *arg)
{
    struct mem_store *m = mem_of(s);
    size_t due = 0;
    for (size_t i = 0; i < m->nbuckets; i++)
        for (struct mem_entry *e = m->buckets[i].head; e; e = e->next)
            if (!job_status_terminal(e->job.status) && e->job.deadline_ms > 0 &&
                e->job.deadline_ms <= now_ms)
                due++;
    if (due == 0) {
        cb(arg, STORE_OK, NULL, 0, NULL);
        return;
    }
    struct mem_note *notes = malloc(due * sizeof *notes);
    if (!notes) {
        cb(arg, STORE_ERROR, NULL, 0, "out of memory");
        return;
    }
    const struct job_change c = {.kind = CHANGE_FAILED, .error = "job timed out"};
    size_t n = 0;
    bool failed = false;
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (struct mem_entry *e = m->buckets[i].head; e; e = e->next) {
            if (job_status_terminal(e->job.status) || e->job.deadline_ms <= 0 ||
                e->job.deadline_ms > now_ms)
                continue;
            struct job_update u;
            if (reserve_hist(e) != 0 || job_apply(&e->job, &c, now_ms, &u) != 0) {
                failed = true; /* left for the next round */
                continue;
            }
            memcpy(notes[n].job_id, e->job.id, sizeof notes[n].job_id);
            notes[n].update_id = record(m, e, &u);
            n++;
        }
    }
    if (failed)
        cb(arg, STORE_ERROR, NULL, n, "out of memory");
    else
        cb(arg, STORE_OK, NULL, n, NULL);
    for (size_t i = 0; i < n; i++)
        notify(m, notes[i].job_id, notes[i].update_id);
    free(notes);
}

static void mem_purge(struct jobstore *s, int64_t older_than_ms, store_updates_cb cb, void *arg)
{
    struct mem_store *m = mem_of(s);
    size_t n = 0;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct mem_entry **pp = &m->buckets[i].head;
        while (*pp) {
            struct mem_entry *e = *pp;
            if (e->pins == 0 && job_status_terminal(e->job.status) &&
                e->job.updated_ms < older_than_ms) {
                *pp = e->next;
                n += e->nhist;
                m->count--;
                entry_free(e);
            } else {
                pp = &e->next;
            }
        }
    }
    cb(arg, STORE_OK, NULL, n, NULL);
}

static bool mem_ready(struct jobstore *s, const char **reason)
{
    (void)s;
    if (reason)
        *reason = NULL;
    return true;
}

static void mem_metrics(struct jobstore *s, struct textbuf *out)
{
    textbuf_printf(out,
                   "# HELP asya_gateway_store_jobs Jobs held by the in-memory store.\n"
                   "# TYPE asya_gateway_store_jobs gauge\n"
                   "asya_gateway_store_jobs %zu\n",
                   mem_of(s)->count);
}

static void mem_free(struct jobstore *s)
{
    struct mem_store *m = mem_of(s);
    if (!m)
        return;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct mem_entry *e = m->buckets[i].head;
        while (e) {
            struct mem_entry *next = e->next;
            entry_free(e);
            e = next;
        }
    }
    free(m->buckets);
    free(m);
}

static const struct jobstore_ops mem_ops = {
    .create = mem_create,
    .apply = mem_apply,
    .get = mem_get,
    .updates = mem_updates,
    .expire = mem_expire,
    .purge = mem_purge,
    .ready = mem_ready,
    .metrics = mem_metrics,
    .free = mem_free,
};

struct jobstore *jobstore_mem_new(store_notify_cb notify_cb, void *ctx)
{
    struct mem_store *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->buckets = calloc(INITIAL_BUCKETS, sizeof *m->buckets);
    if (!m->buckets) {
        free(m);
        return NULL;
    }
    m->nbuckets = INITIAL_BUCKETS;
    m->next_update_id = 1;
    m->base.ops = &mem_ops;
    m->base.notify = notify_cb;
    m->base.notify_ctx = ctx;
    return &m->base;
}
