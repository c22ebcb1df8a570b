-- A tool call's own history entries ("Job created" and "Sending message to
-- first actor") are not notified: nobody can follow a job before its tool
-- call answered, since only that answer tells the job id, and a subscriber
-- reads the stored history first anyway.  NOTIFY serialises commits
-- (PostgreSQL takes one lock for the notification queue at commit), so two
-- notifying transactions per tool call capped tool calls near 400/s.
DROP TRIGGER job_updates_notify ON job_updates;
CREATE TRIGGER job_updates_notify AFTER INSERT ON job_updates
    FOR EACH ROW
    WHEN (NEW.status <> 'Pending' AND NOT (NEW.status = 'Running' AND NEW.step_status IS NULL))
    EXECUTE FUNCTION asya_job_updates_notify();
