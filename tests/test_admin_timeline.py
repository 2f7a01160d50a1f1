"""The job page's timeline: each attempt with its start, worker, outcome and
error, the progress of a running job, and where the job came from (its
schedule, unique key, concurrency key)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.maintenance import recurring
from jobs.models import Job, JobStatus
from tests.testapp import tasks

from .helpers import make_job, run_worker, wait_for

pytestmark = pytest.mark.django_db


def job_page(client, job):
    page = client.get(reverse("admin:jobs_job_change", args=[job.pk]))
    assert page.status_code == 200
    return page


def timeline_of(page):
    """The timeline's HTML alone (the page shows errors again below it)."""
    start = page.text.index('<div id="job-timeline">')
    return page.text[start : page.text.index("Times UTC.", start)]


def attempt_of(timeline, number):
    start = timeline.index(f'data-attempt="{number}"')
    return timeline[start : timeline.index("</li>", start)]


@pytest.mark.django_db(transaction=True)
def test_timeline__a_job_failed_once_then_succeeded_on_a_worker(staff_client):
    result = tasks.fail_times.enqueue("timeline", times=1)

    def finished():
        run_worker(concurrency=1)
        return Job.objects.get(pk=result.id).status == JobStatus.SUCCESSFUL

    wait_for(finished, timeout=60, message="the job to succeed")
    job = Job.objects.get(pk=result.id)
    timeline = timeline_of(job_page(staff_client, job))

    first, second = attempt_of(timeline, 1), attempt_of(timeline, 2)
    assert "job-attempt-failed" in timeline
    assert job.worker_ids[0] in first
    assert "builtins.ConnectionError" in first
    assert "attempt 1 fails on purpose" in first
    assert f"started {job.started_at:%Y-%m-%d %H:%M:%S}" in first
    assert job.worker_ids[1] in second
    assert "succeeded" in second
    assert f"started {job.last_attempted_at:%Y-%m-%d %H:%M:%S}" in second
    assert 'data-attempt="3"' not in timeline


def test_timeline__a_running_job_shows_its_progress(staff_client):
    job = make_job(
        status=JobStatus.RUNNING,
        attempts=1,
        worker_ids=["host:7:run"],
        started_at=timezone.now(),
        last_attempted_at=timezone.now(),
        progress=40,
        progress_message="cloning",
    )

    timeline = timeline_of(job_page(staff_client, job))

    assert "running" in attempt_of(timeline, 1)
    assert '<progress max="100" value="40">' in timeline
    assert "40%: cloning" in timeline


def test_timeline__a_retry_waiting_for_its_backoff_says_when(staff_client):
    later = timezone.now() + timedelta(minutes=5)
    job = make_job(
        status=JobStatus.READY,
        attempts=1,
        run_after=later,
        worker_ids=["host:7:run"],
        errors=[{"exception_class_path": "builtins.OSError", "attempt": 1}],
    )

    timeline = timeline_of(job_page(staff_client, job))

    assert "builtins.OSError" in attempt_of(timeline, 1)
    assert f"Next attempt</strong> at {later:%Y-%m-%d %H:%M:%S}" in timeline


def test_timeline__a_job_never_run_has_no_attempts(staff_client):
    timeline = timeline_of(job_page(staff_client, make_job()))

    assert "Enqueued" in timeline
    assert "data-attempt" not in timeline


def test_timeline__names_the_schedule_and_links_to_it(staff_client, settings):
    settings.JOB_SCHEDULES = {
        "nightly-report": {
            "task": "tests.testapp.tasks.record_run",
            "cron": "0 3 * * *",
            "kwargs": {"key": "nightly"},
        }
    }
    run = recurring.run_now("nightly-report", by="boss")

    timeline = timeline_of(job_page(staff_client, Job.objects.get(pk=run.job_id)))

    schedules = reverse("admin:jobs_job_schedules")
    assert f'href="{schedules}#schedule-nightly-report"' in timeline
    assert "<strong>nightly-report</strong>" in timeline
    assert "run now" in timeline


def test_timeline__names_the_unique_and_concurrency_keys(staff_client):
    unique = tasks.noop.using(unique_key="sync:42").enqueue()
    limited = tasks.per_customer.enqueue(customer_id=7, name="a", seconds=0)

    unique_timeline = timeline_of(job_page(staff_client, Job.objects.get(pk=unique.id)))
    limited_timeline = timeline_of(
        job_page(staff_client, Job.objects.get(pk=limited.id))
    )

    assert "Unique key <code>sync:42</code>" in unique_timeline
    assert "Concurrency key <code>customer:7</code>" in limited_timeline
    assert "at most 2 running at once" in limited_timeline
    assert "schedule" not in unique_timeline
