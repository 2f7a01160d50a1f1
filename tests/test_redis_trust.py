"""The RQ path keeps the promises of the database worker: per-call options,
timeouts a task cannot swallow, no pickle, and jobs given back at once when
their work horse fails."""

import os
import signal

import pytest
from django.core.management import call_command
from rq import Queue
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer

from jobs.models import JobStatus
from jobs.notify import pusher, rq_push
from tests.testapp import tasks
from tests.testapp.models import Run

from .helpers import SIMPLE, drain_rq, job_of, status_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FORKING = "jobs.rqworker.workers.JobsWorker"
BOTH = pytest.mark.parametrize("worker_class", [FORKING, SIMPLE])
TIMEOUT = "jobs.exceptions.JobTimeout"


def test_per_call_timeout__bounds_the_run_on_rqworker(start_rqworker, redis_server):
    result = tasks.busy_python.using(timeout=2, max_attempts=1).enqueue(120)
    assert pusher.pusher.flush(timeout=10)
    rq_job = RQJob.fetch(
        f"{result.id}-0", connection=redis_server.client(), serializer=JSONSerializer
    )
    assert rq_job.timeout == 2

    start_rqworker()

    wait_for(lambda: status_of(result) == JobStatus.FAILED, timeout=60)
    (error,) = job_of(result).errors
    assert error["exception_class_path"] == TIMEOUT
    assert "timeout of 2 s" in error["message"]


@BOTH
def test_timeout__is_not_swallowed_by_except_exception(start_rqworker, worker_class):
    stuck = tasks.loop_catching.using(timeout=1, max_attempts=1).enqueue("caught", 120)
    behind = tasks.record_run.enqueue("behind the loop")

    start_rqworker("--worker-class", worker_class)

    wait_for(lambda: status_of(behind) == JobStatus.SUCCESSFUL, timeout=60)
    job = job_of(stuck)
    assert job.status == JobStatus.FAILED
    assert [e["exception_class_path"] for e in job.errors] == [TIMEOUT]
    assert "timeout of 1 s" in job.errors[0]["message"]


def test_forking_worker__ends_a_horse_that_swallows_its_timeout(start_rqworker):
    stuck = tasks.loop_catching.using(timeout=1, max_attempts=1).enqueue(
        "swallowed", 120, "BaseException"
    )
    behind = tasks.record_run.enqueue("behind the sleeper")
    # A long lease and no maintenance: only the hard limit can end it.
    worker = start_rqworker(
        "--worker-class",
        FORKING,
        env={
            "JOB_TIMEOUT_GRACE_SECONDS": "1",
            "JOB_LEASE_SECONDS": "300",
            "JOB_MAINTENANCE_SECONDS": "300",
        },
    )

    wait_for(lambda: status_of(behind) == JobStatus.SUCCESSFUL, timeout=60)
    job = job_of(stuck)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert [e["exception_class_path"] for e in job.errors] == [TIMEOUT]
    assert "did not stop within the grace" in job.errors[0]["message"]
    assert worker.process.poll() is None  # the worker carries on
    assert "ending its work horse" in worker.output()


def test_simple_worker__ends_its_process_at_the_hard_limit(start_rqworker):
    stuck = tasks.loop_catching.using(timeout=1, max_attempts=1).enqueue(
        "swallowed", 120, "BaseException"
    )
    behind = tasks.record_run.enqueue("behind the sleeper")
    env = {
        "JOB_TIMEOUT_GRACE_SECONDS": "1",
        "JOB_LEASE_SECONDS": "300",
        "JOB_MAINTENANCE_SECONDS": "300",
    }
    first = start_rqworker("--worker-class", SIMPLE, env=env)

    assert first.wait(timeout=60) == 1, first.output()[-3000:]
    job = job_of(stuck)
    assert (job.status, job.lease_expires_at) == (JobStatus.FAILED, None)
    assert [e["exception_class_path"] for e in job.errors] == [TIMEOUT]
    assert "did not stop within the grace" in job.errors[0]["message"]
    assert status_of(behind) == JobStatus.READY
    assert first.children() == []  # its scheduler went with it

    start_rqworker("--worker-class", SIMPLE, env=env)  # as a supervisor would

    wait_for(lambda: status_of(behind) == JobStatus.SUCCESSFUL, timeout=60)
    assert Run.objects.filter(key="behind the sleeper").count() == 1


class Planted:
    """Creates `path` when unpickled: what an attacker's payload would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@BOTH
def test_pickled_rq_job_planted_in_redis__is_never_unpickled(
    start_rqworker, redis_server, tmp_path, worker_class
):
    client = redis_server.client()
    pickled = Queue("default", connection=client)  # RQ's default: pickle
    pickled.enqueue_call(
        rq_push.RQ_FUNCTION,
        args=(Planted(tmp_path / "from-args"),),
        meta={"payload": Planted(tmp_path / "from-meta")},
    )
    assert not list(tmp_path.iterdir())  # pickling it ran nothing
    result = tasks.record_run.enqueue("after the plant")
    assert pusher.pusher.flush(timeout=10)
    assert client.llen("rq:queue:default") == 2

    worker = start_rqworker("--burst", "--worker-class", worker_class)

    assert worker.wait(timeout=60) == 0, worker.output()[-3000:]
    assert status_of(result) == JobStatus.SUCCESSFUL
    assert list(tmp_path.iterdir()) == []
    assert client.llen("rq:queue:default") == 0  # the plant was taken, and failed


def test_work_horse_fork_fails__job_is_given_back_at_once_uncounted(
    redis_dispatch, settings, monkeypatch
):
    settings.JOB_LEASE_SECONDS = 300  # only the worker itself can give it back
    result = tasks.record_run.enqueue("fork failed")
    assert pusher.pusher.flush(timeout=10)

    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    call_command(
        "rqworker",
        "default",
        "--burst",
        "--max-jobs",
        "1",
        "--worker-class",
        FORKING,
        verbosity=0,
    )

    job = job_of(result)
    assert (job.status, job.attempts, job.lease_expires_at) == (
        JobStatus.READY,
        0,
        None,
    )
    assert not Run.objects.exists()
    drain_rq("default")  # pushed again: the next pass runs it
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.SUCCESSFUL, 1)


def test_work_horse_leaves_a_corrupt_report__job_retried_at_once(start_rqworker):
    # A long lease and no maintenance: only the worker itself can retry it.
    worker = start_rqworker(
        "--worker-class",
        FORKING,
        env={"JOB_LEASE_SECONDS": "300", "JOB_MAINTENANCE_SECONDS": "300"},
    )
    result = tasks.corrupt_report_on_first_attempt.enqueue("spoiled")

    wait_for(lambda: status_of(result) == JobStatus.SUCCESSFUL, timeout=60)
    job = job_of(result)
    assert job.attempts == 2
    assert [e["exception_class_path"] for e in job.errors] == [
        "jobs.exceptions.WorkerLost"
    ]
    assert "no readable report" in job.errors[0]["message"]
    assert Run.objects.get(key="spoiled").attempt == 2
    assert worker.process.poll() is None
    worker.signal(signal.SIGTERM)
