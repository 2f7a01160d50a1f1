"""The console's schedules page: each schedule in words with its next and
last times and last job; pause, resume and run now need jobs.manage_schedule."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from jobs.maintenance import recurring
from jobs.models import Job, JobStatus, ScheduledRun, ScheduleState

pytestmark = pytest.mark.django_db

PAGE = "admin:jobs_job_schedules"


@pytest.fixture(autouse=True)
def nightly(settings):
    settings.JOB_SCHEDULES = {
        "nightly-report": {
            "task": "tests.testapp.tasks.record_run",
            "cron": "0 3 * * *",
            "timezone": "Europe/Berlin",
            "kwargs": {"key": "nightly"},
        }
    }


@pytest.fixture
def viewer(client, django_user_model):
    """A signed-in staff user who may only view jobs."""
    user = django_user_model.objects.create_user("staff", password="pw")
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(user)
    return user


def press(client, button, name="nightly-report"):
    url = reverse("admin:jobs_job_schedule_action", args=[name, button])
    return client.post(url, follow=True)


def test_page__shows_each_schedule_in_words_with_its_times_and_last_job(
    staff_client,
):
    ScheduleState.objects.create(
        name="nightly-report", counts_from=datetime(2025, 1, 1, tzinfo=UTC)
    )
    (run,) = recurring.enqueue_due(now=datetime(2025, 1, 10, 2, 0, 1, tzinfo=UTC))
    job = Job.objects.get(pk=run.job_id)

    page = staff_client.get(reverse(PAGE))

    assert page.status_code == 200
    (row,) = page.context["schedules"]
    assert row["described"] == "At 03:00 every day, Europe/Berlin"
    assert row["last_at"] == datetime(2025, 1, 10, 2, tzinfo=UTC)
    assert row["next_at"].hour in (1, 2)  # 03:00 Berlin, summer or winter
    assert "At 03:00 every day, Europe/Berlin" in page.text
    assert "2025-01-10 02:00:00" in page.text
    assert reverse("admin:jobs_job_change", args=[job.pk]) in page.text
    assert ">Ready<" in page.text
    assert 'value="Pause"' in page.text


def test_page__lists_schedules_that_cannot_run_with_their_error(staff_client, settings):
    settings.JOB_SCHEDULES = {"broken": {"task": "x.y", "cron": "nope"}}

    page = staff_client.get(reverse(PAGE))

    assert "JOB_SCHEDULES[&#x27;broken&#x27;]" in page.text


def test_page__is_linked_from_the_admin_index(staff_client):
    assert reverse(PAGE) in staff_client.get(reverse("admin:index")).text


def test_page__a_viewer_sees_no_buttons(client, viewer):
    page = client.get(reverse(PAGE))

    assert page.status_code == 200
    assert "At 03:00 every day" in page.text
    assert 'value="Pause"' not in page.text


def test_buttons__without_the_permission_are_refused_and_change_nothing(client, viewer):
    for button in ("pause", "resume", "run"):
        assert press(client, button).status_code == 403

    assert not ScheduleState.objects.filter(paused=True).exists()
    assert not Job.objects.exists()


def test_buttons__pause_resume_and_run_now_with_the_permission(client, viewer):
    viewer.user_permissions.add(Permission.objects.get(codename="manage_schedule"))

    paused = press(client, "pause")
    assert ScheduleState.objects.get(name="nightly-report").paused is True
    assert [str(m) for m in paused.context["messages"]] == ["Paused nightly-report."]
    assert 'value="Resume"' in paused.text

    ran = press(client, "run")
    (run,) = ScheduledRun.objects.all()
    assert (run.scheduled_at, run.enqueued_by) == (None, "staff")
    assert Job.objects.get(pk=run.job_id).status == JobStatus.READY
    assert "(run now)" in ran.text

    press(client, "resume")
    assert ScheduleState.objects.get(name="nightly-report").paused is False


def test_buttons__get_changes_nothing_and_unknown_names_are_404(staff_client):
    url = reverse("admin:jobs_job_schedule_action", args=["nightly-report", "pause"])

    assert staff_client.get(url).status_code == 405
    assert press(staff_client, "pause", name="gone").status_code == 404
    assert press(staff_client, "explode").status_code == 404
    assert not ScheduleState.objects.filter(paused=True).exists()
