"""The job list of the console: what a row shows, the filters, search, and
a count that stops at its cap."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.web.admin_display import STATUS_COLOURS
from jobs.web.admin_listing import CappedPaginator, task_paths

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


@pytest.mark.parametrize(
    ("term", "found"),
    [
        ("ADD", {"add"}),
        ("testapp add", {"add"}),
        ("tasks", {"add", "noop"}),
        ("x y", set()),
    ],
)
def test_list__search_by_task_matches_every_word_in_any_case(staff_client, term, found):
    jobs = {
        "add": make_job(task_path="tests.testapp.tasks.add"),
        "noop": make_job(task_path="tests.testapp.tasks.noop"),
    }

    listing = staff_client.get(reverse(CHANGELIST), {"q": term})

    shown = set(listing.context["cl"].result_list)
    assert {name for name, job in jobs.items() if job in shown} == found


def test_task_paths__lists_every_task_in_the_table_once_sorted():
    for path in ["b.task", "a.task", "b.task", "c.task"]:
        make_job(task_path=path)

    assert task_paths() == ["a.task", "b.task", "c.task"]


def test_list__task_filter_offers_a_task_behind_many_newer_jobs(staff_client):
    # An old failure of a rare task stays findable under a busy task's rows.
    make_failed_job(task_path="tests.testapp.tasks.rare")
    later = timezone.now() + timedelta(seconds=1)
    Job.objects.bulk_create(
        Job(task_path="tests.testapp.tasks.noop", enqueued_at=later, run_after=later)
        for _ in range(1100)
    )

    listing = staff_client.get(reverse(CHANGELIST))

    (task_filter,) = [
        f for f in listing.context["cl"].filter_specs if f.title == "task"
    ]
    offered = [value for value, _ in task_filter.lookup_choices]
    assert offered == ["tests.testapp.tasks.noop", "tests.testapp.tasks.rare"]


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
