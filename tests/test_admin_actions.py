"""Retry and cancel from the console, as list actions and job page buttons:
what each does, what it reports, and the permission each needs."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job, JobStatus

from .helpers import CHANGELIST, make_failed_job, make_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_user(django_user_model):
    """A staff user who may only view jobs."""
    user = django_user_model.objects.create_user("staff", password="pw")
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_job"))
    return user


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def act(client, action, *jobs):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [str(job.pk) for job in jobs]},
        follow=True,
    )


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def test_retry_action__retries_failed_and_reports_skipped(staff_client):
    failed, done = make_failed_job(), make_job(status=JobStatus.SUCCESSFUL)

    response = act(staff_client, "retry_selected", failed, done)

    failed.refresh_from_db()
    assert failed.status == JobStatus.READY
    assert messages_of(response) == [
        "Retried 1 job. Skipped 1 job (1 successful): "
        "only failed or cancelled jobs can be retried."
    ]


def test_cancel_action__cancels_waiting_and_asks_running_to_stop(staff_client):
    waiting = make_job()
    running = make_job(status=JobStatus.RUNNING)
    done = make_job(status=JobStatus.SUCCESSFUL)

    response = act(staff_client, "cancel_selected", waiting, running, done)

    assert Job.objects.get(pk=waiting.pk).status == JobStatus.CANCELLED
    assert Job.objects.get(pk=running.pk).cancel_requested
    assert messages_of(response) == [
        "Cancelled 1 job. Asked 1 running job to stop. Skipped 1 job "
        "(1 successful): only waiting, delayed or running jobs can be cancelled, "
        "once."
    ]


def test_retry_action__staff_without_the_retry_permission_is_refused(
    client, staff_user
):
    job = make_failed_job()
    client.force_login(staff_user)

    listing = client.get(reverse(CHANGELIST))
    act(client, "retry_selected", job)
    button = client.post(reverse("admin:jobs_job_retry", args=[job.pk]))

    assert "retry_selected" not in listing.text
    assert button.status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_cancel_action__needs_the_cancel_permission_not_the_retry_one(
    client, staff_user
):
    job = make_job()
    grant(staff_user, "retry_job")
    client.force_login(staff_user)

    button = client.post(reverse("admin:jobs_job_cancel", args=[job.pk]))

    assert button.status_code == 403
    assert Job.objects.get(pk=job.pk).status == JobStatus.READY


def test_job_page_buttons__retry_with_the_permission(client, staff_user):
    job = make_failed_job()
    grant(staff_user, "retry_job")
    client.force_login(staff_user)

    response = client.post(reverse("admin:jobs_job_retry", args=[job.pk]), follow=True)

    assert Job.objects.get(pk=job.pk).status == JobStatus.READY
    assert messages_of(response) == ["Retried 1 job."]


def test_job_page_buttons__cancel_with_the_permission(client, staff_user):
    job = make_job(run_after=timezone.now() + timedelta(hours=1))
    grant(staff_user, "cancel_job")
    client.force_login(staff_user)

    client.post(reverse("admin:jobs_job_cancel", args=[job.pk]))

    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_job_page_buttons__get_changes_nothing(staff_client):
    job = make_failed_job()

    response = staff_client.get(reverse("admin:jobs_job_retry", args=[job.pk]))

    assert response.status_code == 405
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED
