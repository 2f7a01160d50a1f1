"""Retry or cancel every job the job list's filters and search select: the
confirmation page's count, the permissions, batches, jobs that changed
meanwhile, unique keys held, and the background job for many."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.urls import reverse

from jobs.core import bulk as core_bulk
from jobs.models import STATE_BITS, Job, JobStatus

from .helpers import make_failed_job, make_job, run_worker

pytestmark = pytest.mark.django_db

ADD = "tests.testapp.tasks.add"
NOOP = "tests.testapp.tasks.noop"
FAILED_ADDS = {"status": "FAILED", "task": ADD}


def bulk_url(action, **params):
    from urllib.parse import urlencode

    return reverse("admin:jobs_job_bulk", args=[action]) + "?" + urlencode(params)


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


@pytest.fixture(autouse=True)
def small_batches(settings):
    settings.JOB_BULK_BATCH = 2  # five jobs take three batches


@pytest.fixture
def failed_adds():
    """Five failed jobs of `add`, and the jobs the filter must leave out."""
    make_failed_job(task_path=NOOP)  # another task
    make_job(task_path=ADD, status=JobStatus.SUCCESSFUL)  # another state
    return [make_failed_job(task_path=ADD, args=[i, 1]) for i in range(5)]


def test_confirmation__shows_the_exact_count_and_the_filter_in_words(
    staff_client, failed_adds
):
    page = staff_client.get(bulk_url("retry", **FAILED_ADDS))

    assert page.status_code == 200
    assert page.context["count"] == 5
    assert page.context["in_words"] == f"status Failed, task {ADD}"
    assert 'id="job-bulk-count">5<' in page.text
    assert 'name="csrfmiddlewaretoken"' in page.text
    assert Job.objects.filter(status=JobStatus.FAILED).count() == 6  # a GET acts not


def test_job_list__links_its_filters_to_the_filter_wide_actions(
    staff_client, failed_adds
):
    listing = staff_client.get(reverse("admin:jobs_job_changelist"), FAILED_ADDS)

    assert bulk_url("retry", **FAILED_ADDS).replace("&", "&amp;") in listing.text
    assert bulk_url("cancel", **FAILED_ADDS).replace("&", "&amp;") in listing.text


def test_retry_all__retries_every_matching_job_across_batches_and_audits_each(
    staff_client, failed_adds
):
    response = staff_client.post(bulk_url("retry", **FAILED_ADDS), follow=True)

    assert messages_of(response) == [
        f"Retried 5 of 5 jobs (status Failed, task {ADD})."
    ]
    assert set(
        Job.objects.filter(status=JobStatus.READY).values_list("pk", flat=True)
    ) == {job.pk for job in failed_adds}
    assert Job.objects.filter(status=JobStatus.FAILED, task_path=NOOP).count() == 1
    entries = LogEntry.objects.filter(user__username="boss")
    assert sorted(e.object_id for e in entries) == sorted(
        str(job.pk) for job in failed_adds
    )


def test_retry_all__skips_a_job_that_changed_state_meanwhile(monkeypatch, failed_adds):
    def racing(queryset, size):
        for number, ids in enumerate(original(queryset, size)):
            if number == 1:  # someone else retried it after it was selected
                Job.objects.filter(pk=ids[0]).update(status=JobStatus.RUNNING)
            yield ids

    original = core_bulk.batches
    monkeypatch.setattr(core_bulk, "batches", racing)

    tally = core_bulk.retry_all(Job.objects.filter(task_path=ADD), 2)

    assert (tally.seen, tally.changed, tally.skipped) == (5, 4, 1)
    assert Job.objects.filter(task_path=ADD, status=JobStatus.RUNNING).count() == 1
    assert Job.objects.filter(task_path=ADD, status=JobStatus.READY).count() == 4


def test_retry_all__counts_and_reports_jobs_whose_unique_key_is_held(staff_client):
    holds = STATE_BITS[JobStatus.READY] | STATE_BITS[JobStatus.RUNNING]
    for key in ("a", "b"):
        make_failed_job(task_path=ADD, unique_key=key, unique_states=holds)
    make_job(task_path=ADD, unique_key="a", unique_states=holds)  # holds "a"

    response = staff_client.post(bulk_url("retry", task=ADD), follow=True)

    assert messages_of(response) == [
        f"Retried 1 of 2 jobs (task {ADD}). "
        "Not retried 1: another job holds its unique key."
    ]
    assert Job.objects.filter(task_path=ADD, status=JobStatus.FAILED).count() == 1


def test_cancel_all__cancels_waiting_asks_running_and_leaves_finished(staff_client):
    waiting = [make_job() for _ in range(3)]
    running = make_job(status=JobStatus.RUNNING)
    done = make_job(status=JobStatus.SUCCESSFUL)

    page = staff_client.get(bulk_url("cancel"))
    response = staff_client.post(bulk_url("cancel"), follow=True)

    assert page.context["count"] == 4
    assert messages_of(response) == [
        "Cancelled 3 of 4 jobs (no filter: every job). Asked 1 running jobs to stop."
    ]
    assert all(Job.objects.get(pk=j.pk).status == JobStatus.CANCELLED for j in waiting)
    assert Job.objects.get(pk=running.pk).cancel_requested
    assert Job.objects.get(pk=done.pk).status == JobStatus.SUCCESSFUL


@pytest.mark.parametrize("action", ["retry", "cancel"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_bulk__without_the_permission_is_403_and_changes_nothing(
    client, django_user_model, failed_adds, action, method
):
    user = django_user_model.objects.create_user("staff", password="pw")
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(user)

    response = getattr(client, method)(bulk_url(action))
    listing = client.get(reverse("admin:jobs_job_changelist"))

    assert response.status_code == 403
    assert Job.objects.filter(status=JobStatus.FAILED).count() == 6
    assert "job-retry-all" not in listing.text
    assert "job-cancel-all" not in listing.text


@pytest.mark.django_db(transaction=True)
def test_retry_all__of_many_runs_in_a_background_job_and_the_jobs_run(
    staff_client, settings, failed_adds
):
    settings.JOB_BULK_INLINE_MAX = 4

    response = staff_client.post(bulk_url("retry", **FAILED_ADDS), follow=True)
    run_worker()  # the bulk job, then the jobs it retried

    bulk_job = response.context["original"]
    assert bulk_job.task_path == "jobs.web.bulk.change_all_matching"
    assert messages_of(response)[0].startswith("Retrying 5 jobs in the background: ")
    bulk_job.refresh_from_db()
    assert bulk_job.status == JobStatus.SUCCESSFUL
    assert bulk_job.progress == 100
    assert bulk_job.progress_message == (
        f"Retried 5 of 5 jobs (status Failed, task {ADD})."
    )
    assert [Job.objects.get(pk=j.pk).return_value for j in failed_adds] == [
        1,
        2,
        3,
        4,
        5,
    ]
    # One entry per job, and one for the bulk job itself.
    assert LogEntry.objects.count() == 6
    assert LogEntry.objects.filter(object_id=str(bulk_job.pk)).get().change_message == (
        f"Started: retry all 5 matching jobs (status Failed, task {ADD})."
    )
