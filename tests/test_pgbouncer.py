"""Behind PgBouncer in transaction mode (Debian's 1.18: statements prepared
on one server connection are seen by every client that borrows it, and a
LISTEN lasts only as long as its transaction).

Each test starts a private `pgbouncer` in front of the test database; the
workers reach the database through it, as in production behind a pooler.
"""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from jobs import conf
from jobs.core import postgres
from jobs.models import Job, JobStatus, WorkerProcess
from tests.testapp import tasks
from tests.testapp.models import Run

from .helpers import (
    wait_for,
)

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
    assert "_pg3_" not in worker.output()


def test_prepared_statements__are_not_prepared_through_the_pooler_by_default(
    through_pooler, caplog
):
    for key in ("first", "second"):
        connection.close()  # a new connection decides again
        tasks.record_run.enqueue(key)
        assert postgres.prepares(connection) is False

    said = [r for r in caplog.records if "does not keep prepared" in r.message]
    assert len(said) <= 1  # once per process (maybe before this test)


def test_prepared_statements__are_prepared_on_a_direct_connection_by_default(
    postgres_only,
):
    connection.close()
    tasks.record_run.enqueue("direct")

    assert postgres.prepares(connection) is True


def test_prepared_statements_forced_on_through_the_pooler__one_clear_error(
    through_pooler, settings
):
    settings.JOB_PREPARED_STATEMENTS = True
    connection.close()

    with pytest.raises(ImproperlyConfigured, match="JOB_PREPARED_STATEMENTS is on"):
        tasks.record_run.enqueue("never")


def test_prepared_statements_forced_on__a_worker_behind_the_pooler_exits_saying_so(
    pgbouncer, start_worker
):
    worker = start_worker(env=pooled(pgbouncer, JOB_PREPARED_STATEMENTS="1"))

    assert worker.wait(timeout=30) == 1
    log = worker.output()
    assert "CommandError: JOB_PREPARED_STATEMENTS is on" in log, log
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("value", "read"),
    [("auto", "auto"), ("", "auto"), ("1", True), ("on", True), ("0", False)],
)
def test_prepared_statements_setting__reads_auto_on_and_off(settings, value, read):
    settings.JOB_PREPARED_STATEMENTS = value

    assert conf.prepared_statements() == read


def test_prepared_statements_setting__names_itself_when_wrong(settings):
    settings.JOB_PREPARED_STATEMENTS = "sometimes"

    with pytest.raises(ImproperlyConfigured, match="JOB_PREPARED_STATEMENTS"):
        conf.prepared_statements()
