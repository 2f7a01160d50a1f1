"""Ring the doorbell: tell workers a row is waiting.

The row is the truth; nothing here is needed for a job to run eventually
(workers also poll). On PostgreSQL the doorbell is NOTIFY, which is
transactional: listeners hear it only when the caller's transaction commits.
"""

from django.db import connections

from .models import Job

CHANNEL = "reporadar_jobs"


def job_enqueued(job):
    """Tell listening workers that `job` is waiting (once committed)."""
    connection = connections[Job.objects.db]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, job.queue_name])
