"""The dashboards: ours counts queues, lists workers and draws the chart for
those who may view jobs; django_rq's is for staff only."""

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import JobStatus, WorkerProcess

from .helpers import make_failed_job, make_job

pytestmark = pytest.mark.django_db


def test_dashboard__counts_queues_lists_workers_and_draws_the_chart(staff_client):
    WorkerProcess.objects.create(
        id="host:42:abc", kind="database", hostname="host", pid=42
    )
    running = make_job(status=JobStatus.RUNNING, worker_ids=["host:42:abc"])
    make_job(status=JobStatus.SUCCESSFUL, finished_at=timezone.now())
    make_failed_job()

    page = staff_client.get(reverse("admin:jobs_job_dashboard"))

    assert page.status_code == 200
    assert page.context["queues"][0] == {
        "name": "default",
        "counts": [0, 0, 1, 1, 1, 0],
        "paused": None,
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
