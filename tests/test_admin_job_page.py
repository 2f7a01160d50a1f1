"""The job page of the console: arguments, errors newest first, workers,
the RQ job's state without secrets; jobs are never added, edited or
deleted by hand."""

import pytest
from django.urls import reverse

from jobs.models import Job

from .helpers import make_failed_job, make_job

pytestmark = pytest.mark.django_db


def test_job_page__shows_arguments_errors_newest_first_and_workers(staff_client):
    job = make_failed_job(args=[1, "two"], kwargs={"key": "value"})
    Job.objects.filter(pk=job.pk).update(
        errors=[*job.errors, {**job.errors[0], "message": "newer", "attempt": 2}]
    )

    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk]))

    assert "&quot;key&quot;: &quot;value&quot;" in page.text
    assert "ValueError: boom" in page.text
    errors = page.text[page.text.index('class="job-error"') :]
    assert errors.index("newer") < errors.index("Attempt 1")
    assert "host:1:abc" in page.text
    assert "Redis is off" in page.text
    assert 'id="job-retry"' in page.text


def test_job_page__shows_redis_unreachable_without_the_url(staff_client, settings):
    settings.REDIS_URL = "redis://:secret@127.0.0.1:1/0"
    job = make_failed_job()

    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk]))

    assert page.status_code == 200
    assert "Redis unreachable" in page.text
    assert "secret" not in page.text


def test_job_page__shows_rq_job_missing_from_redis(staff_client, redis_dispatch):
    job = make_failed_job()

    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk]))

    assert f"{job.pk}-1: not in Redis" in page.text


def test_jobs_cannot_be_added_edited_or_deleted_by_hand(staff_client):
    job = make_job()

    assert staff_client.get(reverse("admin:jobs_job_add")).status_code == 403
    delete = staff_client.get(reverse("admin:jobs_job_delete", args=[job.pk]))
    assert delete.status_code == 403
    staff_client.post(reverse("admin:jobs_job_change", args=[job.pk]), {"priority": 50})
    job.refresh_from_db()
    assert job.priority == 0
