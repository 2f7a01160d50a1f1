"""The backend contract on the database queue (`jobworker`, no Redis)."""

import threading
from contextlib import contextmanager

import pytest
from django.db import connections

from jobs.dbworker.worker import Worker
from jobs.models import Job, JobStatus

from .contract import BackendContract
from .helpers import make_job, run_worker, wait_for


@pytest.mark.django_db(transaction=True)
class TestDatabaseQueue(BackendContract):
    def drain(self, queues=None):
        run_worker(queues=queues, concurrency=1)

    @contextmanager
    def background_worker(self):
        worker = Worker(concurrency=2, install_signals=False)

        def run():
            try:
                worker.run()
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        try:
            yield worker
        finally:
            worker.stop()
            thread.join(timeout=20)
            assert not thread.is_alive(), "worker did not stop"


@pytest.mark.django_db(transaction=True)
def test_max_jobs__runs_that_many_and_leaves_the_rest_claimable():
    for _ in range(5):
        make_job()

    # One thread, so most of the claimed batch waits in the worker's buffer.
    run_worker(max_jobs=3, concurrency=1, burst=False)

    statuses = sorted(Job.objects.values_list("status", "attempts"))
    assert statuses == [("READY", 0)] * 2 + [("SUCCESSFUL", 1)] * 3


@pytest.mark.django_db(transaction=True)
def test_idle_loop__is_woken_to_record_a_run_at_once(settings):
    # A loop that polls every hour and renews leases every 20 minutes must
    # still record a finished run within JOB_ACK_SECONDS: the job thread
    # wakes it.
    settings.JOB_POLL_SECONDS = 3600
    settings.JOB_LEASE_SECONDS = 3600
    job = make_job(task_path="tests.testapp.tasks.sleep_then_record", args=["k", 0.3])
    worker = Worker(concurrency=2, install_signals=False)
    thread = threading.Thread(target=run_and_close, args=(worker,))
    thread.start()
    try:
        wait_for(
            lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCESSFUL,
            timeout=60,  # far below the next poll or lease renewal
            message="the finished run to be recorded",
        )
    finally:
        worker.stop()
        thread.join(timeout=20)
    assert not thread.is_alive(), "worker did not stop"


def run_and_close(worker):
    try:
        worker.run()
    finally:
        connections.close_all()
