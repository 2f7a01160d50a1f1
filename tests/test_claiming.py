"""Claiming and recording: a claimed job runs promptly or goes back, and only
what was recorded is announced."""

import pytest
from django.db import DatabaseError, transaction
from django.tasks.signals import task_finished

from jobs import conf
from jobs.core import execution, hot_path, recording, transitions
from jobs.maintenance import redispatch
from jobs.models import Job, JobStatus
from jobs.notify import pusher
from tests.testapp import tasks
from tests.testapp.models import Run

from .helpers import job_of, make_job, wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def announced():
    """The ids of the jobs Django's task_finished signal was sent for."""
    ids = []

    def receiver(sender, task_result, **kwargs):
        ids.append(task_result.id)

    task_finished.connect(receiver)
    yield ids
    task_finished.disconnect(receiver)


def claim_all():
    return hot_path.claim(None, 100, "w:1:x", "w:1:x:1")


def test_finish__announces_only_the_successes_it_recorded(announced):
    kept, rescued = (make_job(), make_job())
    claimed = claim_all()
    Job.objects.filter(pk=rescued.pk).update(status=JobStatus.READY)  # moved

    recording.finish([execution.run(job) for job in claimed])

    assert announced == [str(kept.pk)]
    assert job_of(rescued).status == JobStatus.READY


def test_finish__called_again_after_a_database_error__announces_nothing_twice(
    announced, monkeypatch
):
    make_job(), make_job(task_path="tests.testapp.tasks.always_fail")
    claimed = claim_all()
    outcomes = [execution.run(job) for job in claimed]
    record_failure = transitions.record_failure
    calls = []

    def fails_once(outcome):
        calls.append(outcome)
        if len(calls) == 1:
            raise DatabaseError("connection lost")
        return record_failure(outcome)

    monkeypatch.setattr(recording, "record_failure", fails_once)
    with pytest.raises(DatabaseError):
        recording.finish(outcomes)  # the success is recorded, the failure not

    recording.finish(outcomes)  # the worker's loop tries again

    assert sorted(announced) == sorted(str(job.pk) for job in claimed)
    statuses = {job_of(job).status for job in claimed}
    assert statuses == {JobStatus.SUCCESSFUL, JobStatus.READY}


@pytest.mark.django_db(transaction=True)
def test_release__pushes_the_rq_job_of_the_attempt_it_goes_back_to(
    redis_dispatch, redis_server
):
    job = make_job()  # not pushed: made directly
    (claimed,) = claim_all()
    assert claimed.attempts == 1

    assert transitions.release([claimed]) == 1

    assert pusher.pusher.flush(timeout=10)
    assert redis_server.client().lrange("rq:queue:default", 0, -1) == [
        f"{job.pk}-0".encode()
    ]


@pytest.mark.django_db(transaction=True)
def test_redispatch__finds_a_lost_job_behind_any_number_of_queued_ones(
    redis_dispatch, redis_server, settings
):
    with transaction.atomic():
        queued = tasks.noop.enqueue_many([((), {})] * 600)
        lost = tasks.noop.enqueue()
    assert pusher.pusher.flush(timeout=10)
    client = redis_server.client()
    assert client.rpop("rq:queue:default") == f"{lost.id}-0".encode()
    client.delete(f"rq:job:{lost.id}-0")  # as a flush loses it
    settings.JOB_REDISPATCH_GRACE_SECONDS = 0

    found = redispatch.redispatch()

    assert [str(job.pk) for job in found] == [lost.id]
    batches = len(queued) // conf.get("JOB_RQ_BATCH")  # 600: whole batches
    assert client.llen("rq:queue:default") == batches + 1


@pytest.mark.django_db(transaction=True)
def test_busy_worker__gives_back_the_jobs_it_claimed_ahead(start_worker):
    with transaction.atomic():
        # The quick job runs first: its pace says the thread starts the short
        # jobs at once, so the worker claims them ahead of the long job.
        tasks.record_run.using(priority=10).enqueue("quick")
        long = tasks.sleep_then_record.using(priority=5).enqueue("long", 60)
        short = [tasks.record_run.enqueue(f"short-{i}") for i in range(5)]
    busy = start_worker("--concurrency", "1")
    wait_for(lambda: job_of(long).status == JobStatus.RUNNING, message="long job")
    wait_for(
        lambda: "released 5 claimed jobs" in busy.output(),
        message="the busy worker to give back the short jobs",
    )
    idle = start_worker("--concurrency", "1")

    wait_for(
        lambda: all(job_of(r).status == JobStatus.SUCCESSFUL for r in short),
        message="the short jobs to run",
    )

    # They ran on the idle worker, each once, while the long job still ran:
    # the busy worker did not claim them again while its thread was stuck.
    assert set(
        Run.objects.filter(key__startswith="short").values_list("pid", flat=True)
    ) == {idle.pid}
    assert job_of(long).status == JobStatus.RUNNING
    assert all(job_of(r).attempts == 1 for r in short)
    assert busy.output().count("released") == 1


@pytest.mark.django_db(transaction=True)
def test_worker_running_long_jobs__claims_none_ahead_to_give_back(start_worker):
    # Each run outlasts JOB_PREFETCH_HOLD_SECONDS (1): a job claimed ahead
    # of one would go back unstarted.
    results = [tasks.sleep_then_record.enqueue(f"long-{i}", 1.2) for i in range(3)]
    worker = start_worker("--concurrency", "1")

    wait_for(
        lambda: all(job_of(r).status == JobStatus.SUCCESSFUL for r in results),
        message="the long jobs to run",
    )

    assert all(job_of(r).attempts == 1 for r in results)
    assert "released" not in worker.output()
