"""On PostgreSQL, let an INSERT that rings the doorbell after commit skip
the trigger's NOTIFY.

A transaction that sent NOTIFY holds one lock of the whole server from its
commit's start to its end, WAL flush included: enqueues from many
connections would commit one at a time. Our enqueue's INSERT says whether it
NOTIFYs in its transaction (the transaction-local setting
`jobs.ring_after_commit`, set by the statement itself: `core.hot_path`);
when it does not, the enqueue NOTIFYs after commit in a transaction of its
own that waits for no flush (`notify.doorbell`). The trigger clears the
setting, so it covers that one statement; every other INSERT still notifies
from here.
"""

from django.db import migrations

from ._postgres_only import postgres_sql

TRIGGER = """
CREATE OR REPLACE FUNCTION jobs_job_notify() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""

BEFORE = """
CREATE OR REPLACE FUNCTION jobs_job_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queue text;
BEGIN
    FOR queue IN SELECT DISTINCT queue_name FROM inserted LOOP
        PERFORM pg_notify('reporadar_jobs', queue);
    END LOOP;
    RETURN NULL;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("jobs", "0018_worker_clock")]

    operations = [postgres_sql(TRIGGER, BEFORE)]
