"""Redis trouble loses nothing: each test has a redis-server of its own."""

import logging
import os
import signal
import threading
from datetime import timedelta

import pytest
import redis.connection
from django.db import transaction
from django.utils import timezone
from rq import Queue
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer

from jobs.maintenance import redispatch
from jobs.models import Job, JobStatus
from jobs.notify import pusher, rq_push
from tests.testapp import tasks
from tests.testapp.models import Run

from .helpers import FORKING, SIMPLE, drain_rq, status_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def all_succeeded(results):
    ids = [result.id for result in results]
    return Job.objects.filter(pk__in=ids, status=JobStatus.SUCCESSFUL).count() == len(
        ids
    )


def test_redis_down_at_enqueue__jobs_are_kept_and_run_when_it_is_back(
    redis_server, start_rqworker, caplog, monkeypatch
):
    redis_server.stop()
    connecting = []  # the threads that tried to reach Redis
    connect = redis.connection.AbstractConnection.connect

    def record_connect(self):
        connecting.append(threading.current_thread())
        return connect(self)

    monkeypatch.setattr(redis.connection.AbstractConnection, "connect", record_connect)

    with caplog.at_level(logging.WARNING, logger="jobs.notify"):
        results = [tasks.record_run.enqueue(f"down-{i}") for i in range(20)]
        assert pusher.pusher.flush(timeout=10)

    assert Job.objects.filter(status=JobStatus.READY).count() == 20
    warnings = [r for r in caplog.records if r.name == "jobs.notify"]
    assert len(warnings) == 1
    assert "Redis is unreachable" in warnings[0].getMessage()
    assert "redis://" not in warnings[0].getMessage()
    # A dead Redis cannot hang an enqueue: the caller never waits for Redis.
    assert connecting, "the push should have tried Redis"
    assert threading.current_thread() not in connecting
    monkeypatch.undo()

    redis_server.start()
    start_rqworker()

    wait_for(lambda: all_succeeded(results), timeout=60, message="re-dispatch")
    assert Run.objects.count() == 20


def test_flushall_after_enqueue__jobs_are_pushed_again(redis_server, start_rqworker):
    with transaction.atomic():
        results = [tasks.record_run.enqueue(f"flushed-{i}") for i in range(20)]
    assert pusher.pusher.flush(timeout=10)
    rows = list(Job.objects.filter(pk__in=[result.id for result in results]))
    assert rq_push.missing_from_redis(rows) == []

    redis_server.flush()  # FLUSHALL
    worker = start_rqworker()

    wait_for(lambda: all_succeeded(results), timeout=60, message="re-dispatch")
    assert Run.objects.count() == 20
    assert "re-dispatched" in worker.output()


def test_rows_of_a_batch__missing_from_redis_only_once_their_batch_ended(
    redis_dispatch, redis_server
):
    with transaction.atomic():
        results = tasks.record_run.enqueue_many([((f"b-{i}",), {}) for i in range(3)])
    assert pusher.pusher.flush(timeout=10)
    rows = list(Job.objects.filter(pk__in=[result.id for result in results]))
    client = redis_server.client()
    assert client.llen("rq:queue:default") == 1
    assert rq_push.missing_from_redis(rows) == []

    RQJob.fetch(f"{results[0].id}-0", connection=client).set_status("failed")

    assert {str(job.pk) for job in rq_push.missing_from_redis(rows)} == {
        result.id for result in results
    }


def test_rq_job_ended_without_running_its_row__row_is_pushed_again(
    redis_dispatch, redis_server, settings
):
    ended = tasks.record_run.enqueue("rq-job-failed")
    assert pusher.pusher.flush(timeout=10)  # pushed apart: an RQ job each
    queued = tasks.record_run.enqueue("still-queued")
    assert pusher.pusher.flush(timeout=10)
    client = redis_server.client()
    assert client.lpop("rq:queue:default") == f"{ended.id}-0".encode()
    # A worker took it and its claim failed: RQ keeps the failed job a day.
    RQJob.fetch(f"{ended.id}-0", connection=client).set_status("failed")
    settings.JOB_REDISPATCH_GRACE_SECONDS = 0

    lost = redispatch.redispatch()

    assert [str(job.pk) for job in lost] == [ended.id]
    queue = client.lrange("rq:queue:default", 0, -1)
    assert queue == [f"{queued.id}-0".encode(), f"{ended.id}-0".encode()]
    drain_rq("default")
    assert all_succeeded([ended, queued])
    assert Run.objects.filter(key="rq-job-failed").count() == 1


def drain_given_back(worker_class):
    """Drain, and again once what the worker gave back is pushed (it may be
    pushed after the first drain ended)."""
    drain_rq("default", worker_class=worker_class)
    assert pusher.pusher.flush(timeout=10)
    drain_rq("default", worker_class=worker_class)


def runs_and_attempts(result, key):
    """The job's status and attempts, and how many times its task ran."""
    job = Job.objects.get(pk=result.id)
    return job.status, job.attempts, Run.objects.filter(key=key).count()


@pytest.mark.parametrize("worker_class", [FORKING, SIMPLE])
def test_rq_job_whose_hash_is_gone__the_row_claimed_at_its_pop_is_given_back(
    redis_dispatch, redis_server, worker_class
):
    gone = tasks.record_run.enqueue("hash-gone")
    assert pusher.pusher.flush(timeout=10)
    client = redis_server.client()
    # Evicted, say: the RQ job's id is queued, its hash is not there.
    client.delete(RQJob.key_for(f"{gone.id}-0"))

    drain_given_back(worker_class)

    # The worker claimed the row as it popped the id; RQ found no
    # hash and popped again, and the row went back uncharged and was pushed
    # again: it ran once, on its first attempt.
    assert runs_and_attempts(gone, "hash-gone") == (JobStatus.SUCCESSFUL, 1, 1)


@pytest.mark.parametrize("worker_class", [FORKING, SIMPLE])
def test_rq_job_not_ours_named_like_a_row__that_row_is_given_back_uncharged(
    redis_dispatch, redis_server, worker_class
):
    row = tasks.record_run.enqueue("named-after")
    assert pusher.pusher.flush(timeout=10)
    client = redis_server.client()
    client.delete("rq:queue:default")  # only the stranger below is queued
    # Somebody else's RQ job, whose id reads like ours for that row.
    stranger = Queue("default", connection=client, serializer=JSONSerializer)
    stranger.enqueue_call("os.getcwd", job_id=f"{row.id}-7")

    drain_given_back(worker_class)

    # The worker claimed the row as it popped the stranger's id, found the RQ
    # job not ours, and gave the row back uncharged, pushed again: the
    # stranger ran as RQ runs it, and the row once, on its first attempt.
    assert RQJob.fetch(f"{row.id}-7", connection=client).get_status() == "finished"
    assert runs_and_attempts(row, "named-after") == (JobStatus.SUCCESSFUL, 1, 1)


def test_kill_9_of_worker_and_work_horse__job_rescued_on_another_worker(
    start_rqworker,
):
    result = tasks.sleep_then_record.enqueue("survivor", 1.5)
    doomed = start_rqworker()
    wait_for(lambda: status_of(result) == JobStatus.RUNNING, message="claim")
    horses = doomed.children()
    assert horses, "the forking worker should have a work horse"

    doomed.stop()  # SIGKILL to the work horse, the scheduler and the worker
    rescuer = start_rqworker()

    wait_for(lambda: status_of(result) == JobStatus.SUCCESSFUL, message="rescue")
    job = Job.objects.get(pk=result.id)
    assert job.attempts == 2
    assert job.errors[0]["exception_class_path"] == "jobs.exceptions.WorkerLost"
    assert Run.objects.get(key="survivor").pid not in [doomed.pid, *horses]
    assert rescuer.process.poll() is None


def test_work_horse_killed__its_worker_retries_the_job_at_once(start_rqworker):
    # A long lease and no maintenance: only the worker itself can retry it.
    worker = start_rqworker(
        "--worker-class",
        "jobs.rqworker.workers.JobsWorker",
        env={"JOB_LEASE_SECONDS": "300", "JOB_MAINTENANCE_SECONDS": "300"},
    )
    result = tasks.die_on_first_attempt.enqueue("second life")

    wait_for(lambda: status_of(result) == JobStatus.SUCCESSFUL, message="retry")
    job = Job.objects.get(pk=result.id)
    assert job.attempts == 2
    assert job.errors[0]["exception_class_path"] == "jobs.exceptions.WorkerLost"
    assert "work horse" in job.errors[0]["message"]
    assert Run.objects.get(key="second life").attempt == 2
    assert worker.process.poll() is None


def test_redis_outage_while_worker_runs__worker_reconnects(
    redis_server, start_rqworker
):
    worker = start_rqworker()
    wait_for(lambda: "Listening on" in worker.output(), message="listening")

    redis_server.stop()
    wait_for(
        lambda: "could not connect to Redis" in worker.output(),
        timeout=60,
        message="the worker to notice the outage",
    )
    redis_server.start()
    result = tasks.record_run.enqueue("after-outage")

    wait_for(lambda: status_of(result) == JobStatus.SUCCESSFUL, timeout=60)
    assert worker.process.poll() is None
    worker.signal(signal.SIGTERM)


def test_redis_down_during_rq_housekeeping__worker_carries_on(redis_server, caplog):
    from rq import Queue

    from jobs.rqworker.workers import JobsWorker

    connection = redis_server.client()
    worker = JobsWorker(
        [Queue("default", connection=connection)], connection=connection
    )
    redis_server.stop()

    with caplog.at_level(logging.WARNING, logger="rq.worker"):
        worker.check_for_suspension(burst=False)  # stock RQ quits on these
        worker.run_maintenance_tasks()
        worker.heartbeat()

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3
    assert all("could not connect to Redis" in m for m in messages)


def test_rq_scheduler_killed__worker_starts_it_again(start_rqworker):
    worker = start_rqworker()
    wait_for(lambda: "Scheduler for" in worker.output(), message="scheduler")
    (scheduler,) = worker.children()  # idle: no work horse yet
    os.kill(scheduler, signal.SIGKILL)

    later = timezone.now() + timedelta(seconds=0.5)
    result = tasks.record_run.using(run_after=later).enqueue("late")

    wait_for(lambda: status_of(result) == JobStatus.SUCCESSFUL, timeout=60)
    assert "scheduler process died" in worker.output()
    assert scheduler not in worker.children()


@pytest.mark.parametrize("worker_class", ["JobsWorker", "JobsSimpleWorker"])
def test_redis_outage_mid_job__job_recorded_and_worker_carries_on(
    redis_server, start_rqworker, worker_class
):
    worker = start_rqworker("--worker-class", f"jobs.rqworker.workers.{worker_class}")
    first = tasks.sleep_then_record.enqueue("mid-outage", 1.5)
    wait_for(lambda: status_of(first) == JobStatus.RUNNING, message="claim")

    redis_server.stop()  # RQ's bookkeeping after the job fails
    wait_for(
        lambda: f"lost Redis around RQ job {first.id}" in worker.output(),
        timeout=60,
        message="the worker to meet the outage after the job",
    )
    redis_server.start()
    second = tasks.record_run.enqueue("after-mid-outage")

    wait_for(lambda: all_succeeded([first, second]), timeout=60)
    assert worker.process.poll() is None, worker.output()[-3000:]
    assert Run.objects.filter(key="mid-outage").count() == 1
