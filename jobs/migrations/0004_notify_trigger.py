"""On PostgreSQL, NOTIFY listening workers from the INSERT of a job itself.

A statement-level trigger sends one NOTIFY per queue per INSERT statement, so
enqueueing costs no separate `pg_notify` round trip. NOTIFY is transactional:
listeners hear it when the enqueuing transaction commits. Other databases
have no LISTEN; their workers poll.
"""

from django.db import migrations

from ._postgres_only import postgres_sql

CREATE = """
CREATE FUNCTION jobs_job_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queue text;
BEGIN
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

DROP = """
DROP TRIGGER IF EXISTS jobs_job_notify ON jobs_job;
DROP FUNCTION IF EXISTS jobs_job_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("jobs", "0003_cancel_requested")]

    operations = [postgres_sql(CREATE, DROP)]
