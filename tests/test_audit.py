"""The audit log: every retry, cancel, pause, resume and schedule change made
in the console or the job API is a `LogEntry` with who, when and what, shown
on the job's history page and in the admin's "Recent actions"."""

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs.models import JobStatus, QueuePause, ScheduleState

from .helpers import CHANGELIST, make_failed_job, make_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss(django_user_model):
    return django_user_model.objects.create_superuser("boss", "b@example.org", "pw")


@pytest.fixture
def console(client, boss):
    client.force_login(boss)
    return client


def entries():
    """(user, object id, object type, message) of every entry, oldest first."""
    return [
        (e.user.username, e.object_id, e.content_type.model, e.change_message)
        for e in LogEntry.objects.order_by("pk")
    ]


def test_console_retry_and_cancel__record_who_and_what_per_job(console):
    failed, waiting = make_failed_job(), make_job()
    running = make_job(status=JobStatus.RUNNING)
    started = timezone.now()

    console.post(
        reverse(CHANGELIST),
        {"action": "retry_selected", "_selected_action": [str(failed.pk)]},
    )
    console.post(reverse("admin:jobs_job_cancel", args=[waiting.pk]))
    console.post(reverse("admin:jobs_job_cancel", args=[running.pk]))

    assert entries() == [
        ("boss", str(failed.pk), "job", "Retried in the console."),
        ("boss", str(waiting.pk), "job", "Cancelled in the console."),
        ("boss", str(running.pk), "job", "Asked to stop in the console."),
    ]
    assert all(e.action_time >= started for e in LogEntry.objects.all())
    assert {e.action_flag for e in LogEntry.objects.all()} == {CHANGE}


def test_console_action_that_changed_nothing__records_nothing(console):
    done = make_job(status=JobStatus.SUCCESSFUL)

    console.post(reverse("admin:jobs_job_retry", args=[done.pk]))

    assert entries() == []


def test_job_history_page_and_recent_actions__show_the_entry(console):
    job = make_failed_job()
    console.post(reverse("admin:jobs_job_retry", args=[job.pk]))

    history = console.get(reverse("admin:jobs_job_history", args=[job.pk]))
    index = console.get(reverse("admin:index"))

    assert "Retried in the console." in history.text
    assert "boss" in history.text
    assert f"noop {job.short_id} (READY)" in index.text  # "Recent actions"


def test_api_retry_and_cancel__record_the_api_user(boss):
    failed, waiting = make_failed_job(), make_job()
    client = Client()
    client.force_login(boss)

    client.post(f"/api/jobs/{failed.pk}/retry")
    client.post(f"/api/jobs/{waiting.pk}/cancel")

    assert entries() == [
        ("boss", str(failed.pk), "job", "Retried through the job API."),
        ("boss", str(waiting.pk), "job", "Cancelled through the job API."),
    ]


def test_queue_pause_and_resume__are_recorded_by_queue_name(console):
    console.post(reverse("admin:jobs_job_pause_queue", args=["default"]))
    console.post(reverse("admin:jobs_job_pause_queue", args=["default"]))  # no-op
    console.post(reverse("admin:jobs_job_resume_queue", args=["default"]))

    queue = QueuePause._meta.model_name
    assert entries() == [
        ("boss", "default", queue, "Paused."),
        ("boss", "default", queue, "Resumed."),
    ]


def test_schedule_pause_resume_and_run_now__are_recorded_by_schedule_name(
    console, settings
):
    settings.JOB_SCHEDULES = {
        "nightly": {"task": "tests.testapp.tasks.noop", "cron": "0 3 * * *"}
    }

    for action in ("pause", "resume", "run"):
        url = reverse("admin:jobs_job_schedule_action", args=["nightly", action])
        console.post(url)

    schedule = ScheduleState._meta.model_name
    (*changes, run) = entries()
    assert changes == [
        ("boss", "nightly", schedule, "Paused nightly."),
        (
            "boss",
            "nightly",
            schedule,
            "Resumed nightly: times missed while paused are not caught up.",
        ),
    ]
    assert run[:3] == ("boss", "nightly", schedule)
    assert run[3].startswith("Enqueued a job of nightly now. Job ")
