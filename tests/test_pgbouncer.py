"""Behind PgBouncer in transaction mode (Debian's 1.18: statements prepared
on one server connection are seen by every client that borrows it, and a
LISTEN lasts only as long as its transaction).

Each test starts a private `pgbouncer` in front of the test database; the
workers reach the database through it, as in production behind a pooler.
"""

import pytest
from django.db import connection

from jobs.models import Job, JobStatus, WorkerProcess
from tests.testapp.models import Run

from .helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def pooled(pgbouncer, **env):
    """The environment of a worker whose database is behind `pgbouncer`."""
    return {"DATABASE_URL": pgbouncer.url(connection.settings_dict["NAME"]), **env}


@pytest.mark.urls("tests.testapp.urls")
def test_enqueue_from_web_requests__works_while_a_worker_runs(
    through_pooler, start_worker, client
):
    worker = start_worker(env=pooled(through_pooler))
    wait_for(WorkerProcess.objects.exists, message="the worker to start")

    responses = [client.post(f"/enqueue/web-{i}") for i in range(20)]

    assert [r.status_code for r in responses] == [201] * 20
    ids = [r.json()["id"] for r in responses]
    wait_for(
        lambda: (
            Job.objects.filter(pk__in=ids, status=JobStatus.SUCCESSFUL).count() == 20
        ),
        message="the worker to run them",
    )
    assert sorted(Run.objects.values_list("key", flat=True)) == sorted(
        f"web-{i}" for i in range(20)
    )
    assert worker.process.poll() is None
    assert "prepared statement" not in worker.output()
