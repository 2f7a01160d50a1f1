"""The job console: list, job page, actions, permissions and dashboard."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job, JobStatus, WorkerProcess
from jobs.web.admin_display import STATUS_COLOURS
from jobs.web.admin_listing import CappedPaginator

from .helpers import make_job

pytestmark = pytest.mark.django_db

TRACEBACK = "Traceback (most recent call last):\nValueError: boom\n"
CHANGELIST = "admin:jobs_job_changelist"


def failed_job(**fields):
    error = {
        "exception_class_path": "builtins.ValueError",
        "message": "boom",
        "traceback": TRACEBACK,
        "attempt": 1,
        "worker_id": "host:1:abc",
    }
    defaults = {
        "status": JobStatus.FAILED,
        "attempts": 1,
        "max_attempts": 1,
        "errors": [error],
        "worker_ids": ["host:1:abc"],
        "finished_at": timezone.now(),
    }
    return make_job(**{**defaults, **fields})


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


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("boss", "b@example.org", "pw")
    client.force_login(user)
    return client


def act(client, action, *jobs):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [str(job.pk) for job in jobs]},
        follow=True,
    )


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


# --- List ------------------------------------------------------------------


def test_list__shows_badge_attempts_and_progress_of_a_running_job(staff_client):
    job = make_job(
        status=JobStatus.RUNNING,
        attempts=1,
        max_attempts=3,
        progress=40,
        started_at=timezone.now(),
    )

    listing = staff_client.get(reverse(CHANGELIST))

    assert job.short_id in listing.text
    assert 'class="job-badge"' in listing.text
    assert "1/3" in listing.text
    assert '<progress max="100" value="40"' in listing.text


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("waiting", "due"), ("delayed", "later"), ("FAILED", "failed")],
)
def test_list__status_filter_tells_waiting_from_delayed(staff_client, choice, expected):
    jobs = {
        "due": make_job(),
        "later": make_job(run_after=timezone.now() + timedelta(hours=1)),
        "failed": failed_job(),
    }

    listing = staff_client.get(reverse(CHANGELIST), {"status": choice})

    found = set(listing.context["cl"].result_list)
    shown = {name for name, job in jobs.items() if job in found}
    assert shown == {expected}


def test_list__search_finds_a_job_by_its_short_id(staff_client):
    wanted, _ = make_job(), make_job()  # the other must not show

    listing = staff_client.get(reverse(CHANGELIST), {"q": wanted.short_id})

    assert list(listing.context["cl"].result_list) == [wanted]


def test_list__search_finds_jobs_by_task_path(staff_client):
    wanted, _ = make_job(task_path="tests.testapp.tasks.add"), make_job()

    listing = staff_client.get(reverse(CHANGELIST), {"q": "tasks.add"})

    assert list(listing.context["cl"].result_list) == [wanted]


def test_list__queue_and_task_filters_narrow_the_list(staff_client):
    mine = make_job(queue_name="other", task_path="tests.testapp.tasks.add")
    make_job(queue_name="other")
    make_job(task_path="tests.testapp.tasks.add")

    listing = staff_client.get(
        reverse(CHANGELIST), {"queue": "other", "task": "tests.testapp.tasks.add"}
    )

    assert listing.context["cl"].result_count == 1
    assert mine.short_id in listing.text


def test_list__paginator_stops_counting_at_its_cap():
    for _ in range(3):
        make_job()
    paginator = CappedPaginator(Job.objects.all(), 1)
    paginator.cap = 2

    assert (paginator.count, paginator.capped) == (3, True)


def test_every_state_has_a_badge_colour():
    assert set(STATUS_COLOURS) == set(JobStatus)


# --- Job page --------------------------------------------------------------


def test_job_page__shows_arguments_errors_newest_first_and_workers(staff_client):
    job = failed_job(args=[1, "two"], kwargs={"key": "value"})
    Job.objects.filter(pk=job.pk).update(
        errors=[*job.errors, {**job.errors[0], "message": "newer", "attempt": 2}]
    )

    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk]))

    assert "&quot;key&quot;: &quot;value&quot;" in page.text
    assert "ValueError: boom" in page.text
    assert page.text.index("newer") < page.text.index("Attempt 1")
    assert "host:1:abc" in page.text
    assert "Redis is off" in page.text
    assert 'id="job-retry"' in page.text


def test_job_page__shows_redis_unreachable_without_the_url(staff_client, settings):
    settings.REDIS_URL = "redis://:secret@127.0.0.1:1/0"
    job = failed_job()

    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk]))

    assert page.status_code == 200
    assert "Redis unreachable" in page.text
    assert "secret" not in page.text


def test_job_page__shows_rq_job_missing_from_redis(staff_client, redis_dispatch):
    job = failed_job()

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


# --- Actions ---------------------------------------------------------------


def test_retry_action__retries_failed_and_reports_skipped(staff_client):
    failed, done = failed_job(), make_job(status=JobStatus.SUCCESSFUL)

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
    job = failed_job()
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
    job = failed_job()
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
    job = failed_job()

    response = staff_client.get(reverse("admin:jobs_job_retry", args=[job.pk]))

    assert response.status_code == 405
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


# --- Dashboard -------------------------------------------------------------


def test_dashboard__counts_queues_lists_workers_and_draws_the_chart(staff_client):
    WorkerProcess.objects.create(
        id="host:42:abc", kind="database", hostname="host", pid=42
    )
    running = make_job(status=JobStatus.RUNNING, worker_ids=["host:42:abc"])
    make_job(status=JobStatus.SUCCESSFUL, finished_at=timezone.now())
    failed_job()

    page = staff_client.get(reverse("admin:jobs_job_dashboard"))

    assert page.status_code == 200
    assert page.context["queues"][0] == {
        "name": "default",
        "counts": [0, 0, 1, 1, 1, 0],
    }
    assert running.short_id in page.text
    assert "host:42:abc" in page.text
    assert '<svg id="throughput-chart"' in page.text
    assert "completed: 1" in page.text
    assert "failed: 1" in page.text


def test_dashboard__fragment_is_the_body_only(staff_client):
    fragment = staff_client.get(reverse("admin:jobs_job_dashboard"), {"fragment": 1})

    assert '<svg id="throughput-chart"' in fragment.text
    assert "<html" not in fragment.text


def test_dashboard__is_linked_from_the_admin_index(staff_client):
    index = staff_client.get(reverse("admin:index"))

    assert reverse("admin:jobs_job_dashboard") in index.text


def test_dashboard__needs_the_view_permission(client, django_user_model):
    user = django_user_model.objects.create_user("nobody", password="pw")
    user.is_staff = True
    user.save()
    client.force_login(user)

    assert client.get(reverse("admin:jobs_job_dashboard")).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_django_rq_dashboard__is_for_staff_only(
    redis_dispatch, client, django_user_model
):
    url = "/admin/django_rq/dashboard/"
    assert client.get(url).status_code == 302  # to the admin login

    client.force_login(django_user_model.objects.create_superuser("s", "", "pw"))

    page = client.get(url)
    assert page.status_code == 200
    assert "default.high" in page.text
