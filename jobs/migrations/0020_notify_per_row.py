"""On PostgreSQL, NOTIFY from a row trigger that our own INSERTs skip.

The statement-level trigger of migrations 0004 and 0019 ran a PL/pgSQL
function and kept a table of the inserted rows for every INSERT, our
enqueue's included, which NOTIFYs by itself or has it sent after commit:
about a tenth of the server's work for one job's INSERT. Now our INSERT
marks itself (the transaction-local setting `jobs.notified_by` holds its
`statement_timestamp()`, which no other statement of the transaction has),
and the trigger fires only for rows of statements not so marked: a row
inserted any other way (SQL, the ORM) still NOTIFYs its queue on commit.
PostgreSQL sends one notification per queue however many rows name it.
"""

from django.db import migrations

from ._postgres_only import postgres_sql

TRIGGER = """
DROP TRIGGER IF EXISTS jobs_job_notify ON jobs_job;
DROP FUNCTION IF EXISTS jobs_job_notify();
CREATE FUNCTION jobs_job_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('reporadar_jobs', NEW.queue_name);
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_job_notify AFTER INSERT ON jobs_job FOR EACH ROW
    WHEN (current_setting('jobs.notified_by', true)
          IS DISTINCT FROM statement_timestamp()::text)
    EXECUTE FUNCTION jobs_job_notify();
"""

BEFORE = """
DROP TRIGGER IF EXISTS jobs_job_notify ON jobs_job;
DROP FUNCTION IF EXISTS jobs_job_notify();
CREATE FUNCTION jobs_job_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queue text;
BEGIN
    IF current_setting('jobs.ring_after_commit', true) = 'on' THEN
        PERFORM set_config('jobs.ring_after_commit', '', true);
        RETURN NULL;
    END IF;
    FOR queue IN SELECT DISTINCT queue_name FROM inserted LOOP
        PERFORM pg_notify('reporadar_jobs', queue);
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_job_notify AFTER INSERT ON jobs_job
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_job_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("jobs", "0019_notify_after_commit")]

    operations = [postgres_sql(TRIGGER, BEFORE)]
