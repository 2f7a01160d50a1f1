"""Retry and cancel: the transitions people make, `jobs.core.interventions`."""

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.core import execution, hot_path, interventions, recording
from jobs.maintenance import rescue
from jobs.models import Job, JobStatus

from .helpers import make_job, run_worker

pytestmark = pytest.mark.django_db

ERROR = {
    "exception_class_path": "builtins.ValueError",
    "message": "boom",
    "traceback": "Traceback (most recent call last):\nValueError: boom\n",
    "attempt": 2,
    "worker_id": "w:1:a",
}


def failed_job(**fields):
    defaults = {
        "status": JobStatus.FAILED,
        "attempts": 2,
        "max_attempts": 2,
        "errors": [ERROR, ERROR],
        "worker_ids": ["w:1:a", "w:1:a"],
        "finished_at": timezone.now(),
    }
    return make_job(**{**defaults, **fields})


def claimed(job):
    """Claim `job` as a worker would and return the claimed row."""
    return hot_path.claim(None, 1, "w:1:x", f"w:1:x:{job.pk}", job_id=job.pk)[0]


def test_retry__failed_job_is_ready_now_with_fresh_attempts_and_old_errors():
    job = failed_job(task_path="tests.testapp.tasks.always_fail")

    moved = interventions.retry_jobs([job])

    job.refresh_from_db()
    assert [j.pk for j in moved] == [job.pk]
    assert job.status == JobStatus.READY
    assert (job.attempts, job.max_attempts) == (2, 4)  # always_fail allows 2 more
    assert job.errors == [ERROR, ERROR]
    assert job.worker_ids == ["w:1:a", "w:1:a"]
    assert job.finished_at is None
    assert job.run_after <= timezone.now()


def test_retry__cancelled_job_is_ready_again():
    job = make_job(status=JobStatus.CANCELLED, finished_at=timezone.now())

    interventions.retry_jobs(Job.objects.filter(pk=job.pk))

    job.refresh_from_db()
    assert job.status == JobStatus.READY


@pytest.mark.parametrize(
    "status", [JobStatus.READY, JobStatus.RUNNING, JobStatus.SUCCESSFUL]
)
def test_retry__leaves_jobs_that_did_not_fail_alone(status):
    job = make_job(status=status)

    assert interventions.retry_jobs([job]) == []

    job.refresh_from_db()
    assert job.status == status


@pytest.mark.django_db(transaction=True)
def test_retry__retried_job_runs_again_to_success():
    job = failed_job(task_path="tests.testapp.tasks.add", args=[2, 3])

    interventions.retry_jobs([job])
    run_worker(concurrency=1)

    job.refresh_from_db()
    assert (job.status, job.return_value, job.attempts) == (JobStatus.SUCCESSFUL, 5, 3)
    assert len(job.errors) == 2


def test_cancel__ready_and_delayed_jobs_are_cancelled():
    waiting = make_job()
    delayed = make_job(run_after=timezone.now() + timedelta(hours=1))

    cancelled, asked = interventions.cancel_jobs(Job.objects.all())

    assert {j.pk for j in cancelled} == {waiting.pk, delayed.pk}
    assert asked == []
    statuses = set(Job.objects.values_list("status", flat=True))
    assert statuses == {JobStatus.CANCELLED}
    assert not Job.objects.filter(finished_at=None).exists()


@pytest.mark.django_db(transaction=True)
def test_cancel__cancelled_job_never_runs():
    job = make_job(task_path="tests.testapp.tasks.record_run", args=["never"])

    interventions.cancel_jobs([job])
    run_worker(concurrency=1)

    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.CANCELLED, 0)


@pytest.mark.parametrize("status", [JobStatus.SUCCESSFUL, JobStatus.FAILED])
def test_cancel__leaves_finished_jobs_alone(status):
    job = make_job(status=status)

    assert interventions.cancel_jobs([job]) == ([], [])

    job.refresh_from_db()
    assert job.status == status


def test_cancel__running_job_is_asked_to_stop_and_ends_cancelled_when_it_succeeds():
    job = claimed(make_job(task_path="tests.testapp.tasks.add", args=[1, 1]))

    cancelled, asked = interventions.cancel_jobs([job])
    outcome = execution.run(job)
    recording.finish([outcome])

    row = Job.objects.get(pk=job.pk)
    assert ([j.pk for j in asked], cancelled) == ([job.pk], [])
    assert row.status == JobStatus.CANCELLED
    assert row.finished_at is not None
    assert job.status == JobStatus.CANCELLED


def test_cancel__running_task_sees_the_request_and_stops():
    job = claimed(
        make_job(task_path="tests.testapp.tasks.stop_when_cancelled", args=[20])
    )

    interventions.cancel_jobs([job])
    outcome = execution.run(job)
    recording.finish([outcome])

    row = Job.objects.get(pk=job.pk)
    assert outcome.duration < 10
    assert row.status == JobStatus.CANCELLED
    assert row.errors[-1]["exception_class_path"] == "jobs.exceptions.JobCancelled"


def test_cancel__running_job_that_fails_is_not_retried():
    job = claimed(make_job(task_path="tests.testapp.tasks.always_fail"))

    interventions.cancel_jobs([job])
    recording.finish([execution.run(job)])

    row = Job.objects.get(pk=job.pk)
    assert (row.status, len(row.errors)) == (JobStatus.CANCELLED, 1)


def test_cancel__rescued_job_that_was_asked_to_stop_ends_cancelled():
    job = claimed(make_job())
    interventions.cancel_jobs([job])
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now())

    rescue.rescue_stalled()

    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_retry__clears_a_cancel_request():
    job = claimed(make_job(task_path="tests.testapp.tasks.add", args=[1, 1]))
    interventions.cancel_jobs([job])
    recording.finish([execution.run(job)])

    interventions.retry_jobs([job])

    row = Job.objects.get(pk=job.pk)
    assert (row.status, row.cancel_requested) == (JobStatus.READY, False)
