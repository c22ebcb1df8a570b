-- 001_jobs.sql - the gateway's jobs and their history (GATEWAY.md, "Store (PostgreSQL)").
--
-- Applied by asya-gateway itself at start, inside one transaction, under an
-- advisory lock, and recorded in schema_migrations (src/gateway/pgpool.c).
-- A migration file must not contain BEGIN/COMMIT of its own.

CREATE TABLE jobs (
    id               text PRIMARY KEY,
    status           text NOT NULL DEFAULT 'Pending'
                     CHECK (status IN ('Pending', 'Running', 'Succeeded', 'Failed', 'Unknown')),
    route_steps      text[] NOT NULL DEFAULT '{}',
    route_current    integer NOT NULL DEFAULT 0,
    payload          jsonb,
    result           jsonb,
    error            text,
    timeout_sec      integer NOT NULL DEFAULT 0,
    deadline         timestamptz,
    progress_percent numeric(5, 2) NOT NULL DEFAULT 0
                     CHECK (progress_percent >= 0 AND progress_percent <= 100),
    current_step     text,
    steps_completed  integer NOT NULL DEFAULT 0,
    total_steps      integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX jobs_status_idx ON jobs (status);
CREATE INDEX jobs_created_at_idx ON jobs (created_at);
-- The janitor's expire scans only jobs that can still time out.
CREATE INDEX jobs_deadline_idx ON jobs (deadline) WHERE status NOT IN ('Succeeded', 'Failed');

-- updated_at follows every change, whoever makes it.
CREATE FUNCTION asya_jobs_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_touch BEFORE UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION asya_jobs_touch();

CREATE TABLE job_updates (
    id               bigserial PRIMARY KEY,
    job_id           text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    status           text NOT NULL
                     CHECK (status IN ('Pending', 'Running', 'Succeeded', 'Failed', 'Unknown')),
    message          text,
    result           jsonb,
    error            text,
    "timestamp"      timestamptz NOT NULL DEFAULT now(),
    progress_percent numeric(5, 2)
                     CHECK (progress_percent >= 0 AND progress_percent <= 100),
    step             text,
    step_status      text
                     CHECK (step_status IS NULL
                            OR step_status IN ('received', 'processing', 'completed'))
);

-- A subscriber reads one job's history after the last id it has seen.
CREATE INDEX job_updates_job_id_idx ON job_updates (job_id, id);

-- Every history entry is announced at commit as "job_id:update_id", so SSE
-- streams on every gateway replica see writes made by any of them.
CREATE FUNCTION asya_job_updates_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('asya_job_updates', NEW.job_id || ':' || NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER job_updates_notify AFTER INSERT ON job_updates
    FOR EACH ROW EXECUTE FUNCTION asya_job_updates_notify();
