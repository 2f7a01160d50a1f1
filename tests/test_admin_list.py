"""The job list of the console: what a row shows, the filters, search, and
a count that stops at its cap."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.web.admin_display import STATUS_COLOURS
from jobs.web.admin_listing import CappedPaginator

from .helpers import CHANGELIST, make_failed_job, make_job

pytestmark = pytest.mark.django_db


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
        "failed": make_failed_job(),
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
