"""Behind PgBouncer in transaction mode (Debian's 1.18: statements prepared
on one server connection are seen by every client that borrows it, and a
LISTEN lasts only as long as its transaction).

Each test starts a private `pgbouncer` in front of the test database; the
workers reach the database through it, as in production behind a pooler.
"""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction

from jobs import conf
from jobs.core import postgres
from jobs.models import Job, JobStatus, WorkerProcess
from tests.testapp import tasks
from tests.testapp.models import Run

from .helpers import (
    claimed_since,
    database_url,
    get_health,
    listening_since,
    status_of,
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


def test_two_workers_drain_2000_jobs_through_the_pooler__each_runs_exactly_once(
    through_pooler, start_worker
):
    backend = tasks.record_run.get_backend()
    with transaction.atomic():
        for i in range(2000):
            backend.enqueue(tasks.record_run, [f"job-{i}"], {})

    workers = [start_worker("--burst", env=pooled(through_pooler)) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=180) == 0, worker.output()

    # Run.key is unique: a second run of any job would have failed that job.
    assert Run.objects.count() == 2000
    assert Job.objects.filter(status=JobStatus.SUCCESSFUL, attempts=1).count() == 2000
    assert set(Run.objects.values_list("pid", flat=True)) <= {w.pid for w in workers}


def test_without_a_listen_url__the_worker_polls_and_says_so_once(
    pgbouncer, start_worker, client
):
    worker = start_worker(env=pooled(pgbouncer, JOB_POLL_SECONDS="0.2"))
    wait_for(
        lambda: WorkerProcess.objects.filter(hears_notify=False).exists(),
        message="the worker to find that notifications do not reach it",
    )

    result = tasks.record_run.enqueue("polled")

    wait_for(lambda: status_of(result) == JobStatus.SUCCESSFUL, message="a poll")
    log = worker.output()
    assert log.count("notifications do not reach this worker") == 1, log
    assert "set JOB_LISTEN_DATABASE_URL" in log
    assert "listening for new jobs" not in log
    _, body = get_health(client)
    queue = body["checks"]["queue"]
    assert (body["status"], queue["details"]["workers_polling"]) == ("healthy", 1)
    assert "JOB_LISTEN_DATABASE_URL" in queue["message"]


def test_with_a_listen_url__notify_wakes_a_worker_behind_the_pooler(
    pgbouncer, start_worker, client
):
    # Polling once an hour: only a NOTIFY can wake it in time.
    env = pooled(
        pgbouncer,
        JOB_LISTEN_DATABASE_URL=database_url(),  # PostgreSQL itself
        JOB_POLL_SECONDS="3600",
        JOB_MAINTENANCE_SECONDS="3600",
    )
    worker = start_worker(env=env)
    wait_for(
        lambda: WorkerProcess.objects.filter(hears_notify=True).exists(),
        message="the worker to hear its own NOTIFY",
    )
    # Hearing it woke the worker for one more claim; after that it waits.
    listening = listening_since()
    wait_for(lambda: claimed_since(listening), message="its claim after LISTEN")

    result = tasks.record_run.enqueue("woken")

    wait_for(
        lambda: status_of(result) == JobStatus.SUCCESSFUL,
        timeout=60,
        message="the worker to wake",
    )
    log = worker.output()
    assert "listening for new jobs (LISTEN on JOB_LISTEN_DATABASE_URL)" in log
    assert "notifications do not reach" not in log
    _, body = get_health(client)
    assert body["checks"]["queue"]["details"]["workers_polling"] == 0


def test_listen_url__its_password_never_reaches_the_log(pgbouncer, start_worker):
    # Not a URL libpq knows: its error quotes the whole text it was given.
    url = "pgsql://root:s3cret-pw@127.0.0.1/nowhere"
    worker = start_worker(env=pooled(pgbouncer, JOB_LISTEN_DATABASE_URL=url))

    wait_for(lambda: "LISTEN connection lost" in worker.output(), message="a try")

    assert "s3cret-pw" not in worker.output()


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
