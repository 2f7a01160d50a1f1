"""The per-task table: each task's runs, failures, failure rate, duration
percentiles and last failure, for the last hour and the last day; sorted on
the server; for those who may view jobs; kept briefly in the cache."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import JobStatus

from .helpers import make_failed_job, make_job

pytestmark = pytest.mark.django_db

URL = "admin:jobs_job_tasks"
FAST = "tests.testapp.tasks.fast"
SLOW = "tests.testapp.tasks.slow"


def finished(task_path, seconds, ago, status=JobStatus.SUCCESSFUL, **fields):
    """A job of `task_path` whose last attempt took `seconds` and ended
    `ago` (a timedelta) ago."""
    end = timezone.now() - ago
    return make_job(
        task_path=task_path,
        status=status,
        started_at=end - timedelta(seconds=seconds),
        last_attempted_at=end - timedelta(seconds=seconds),
        finished_at=end,
        **fields,
    )


def failed(task_path, seconds, ago, message):
    end = timezone.now() - ago
    job = make_failed_job(
        task_path=task_path,
        last_attempted_at=end - timedelta(seconds=seconds),
        finished_at=end,
    )
    job.errors[-1]["message"] = message
    job.save(update_fields=["errors"])
    return job


@pytest.fixture
def known_jobs():
    """FAST: in the last hour 4 runs of 1, 2, 3, 4 s, one of them failed;
    3 hours ago 1 more of 10 s, failed. SLOW: 2 runs 5 hours ago (20, 40 s).
    Left out: a cancelled job, a running one, a run 2 days ago."""
    minutes = timedelta(minutes=5)
    for seconds in (1, 2, 3):
        finished(FAST, seconds, minutes)
    failed(FAST, 4, timedelta(minutes=1), "newest failure")
    old_failure = failed(FAST, 10, timedelta(hours=3), "older failure")
    finished(SLOW, 20, timedelta(hours=5))
    finished(SLOW, 40, timedelta(hours=5))
    finished(SLOW, 99, timedelta(days=2))
    finished(SLOW, 99, minutes, status=JobStatus.CANCELLED)
    make_job(task_path=SLOW, status=JobStatus.RUNNING)
    return old_failure


def rows_of(page):
    return {row["task_path"]: row for row in page.context["rows"]}


def test_task_table__counts_and_times_each_task_per_window(staff_client, known_jobs):
    page = staff_client.get(reverse(URL))

    assert page.status_code == 200
    rows = rows_of(page)
    assert set(rows) == {FAST, SLOW}
    fast, slow = rows[FAST], rows[SLOW]
    assert (fast["runs_1h"], fast["failures_1h"], fast["rate_1h"]) == (4, 1, 0.25)
    assert (fast["runs_1d"], fast["failures_1d"], fast["rate_1d"]) == (5, 2, 0.4)
    # percentile_cont: interpolated between the sorted durations.
    assert fast["p50_1h"].total_seconds() == pytest.approx(2.5)
    assert fast["p95_1h"].total_seconds() == pytest.approx(3.85)
    assert fast["max_1h"].total_seconds() == pytest.approx(4)
    assert fast["p50_1d"].total_seconds() == pytest.approx(3)
    assert fast["max_1d"].total_seconds() == pytest.approx(10)
    assert (slow["runs_1h"], slow["rate_1h"], slow["p50_1h"]) == (0, None, None)
    assert (slow["runs_1d"], slow["failures_1d"]) == (2, 0)
    assert slow["p95_1d"].total_seconds() == pytest.approx(39)
    assert slow["last_failure"] is None


def test_task_table__shows_the_last_failure_and_links_to_it(staff_client, known_jobs):
    page = staff_client.get(reverse(URL))

    failure = rows_of(page)[FAST]["last_failure"]
    assert failure["message"] == "newest failure"
    assert failure["exception"] == "builtins.ValueError"
    assert reverse("admin:jobs_job_change", args=[failure["job_id"]]) in page.text
    assert "newest failure" in page.text
    assert "25.0%" in page.text and "4.0 s" in page.text


def test_task_table__links_each_task_to_its_jobs(staff_client, known_jobs):
    page = staff_client.get(reverse(URL))

    listing = f"{reverse('admin:jobs_job_changelist')}?task={FAST}"
    assert f'href="{listing}"' in page.text
    assert staff_client.get(listing).context["cl"].result_count == 5


@pytest.mark.parametrize(
    ("order", "first"),
    [
        ("task_path", FAST),
        ("-task_path", SLOW),
        ("-runs_1d", FAST),
        ("runs_1d", SLOW),
        ("-p95_1d", SLOW),
        ("-rate_1h", FAST),
        ("rate_1h", FAST),  # SLOW has no rate this hour: last either way
        ("-last_failure_at", FAST),
        ("no-such-column", FAST),  # by task
    ],
)
def test_task_table__sorts_by_any_column(staff_client, known_jobs, order, first):
    page = staff_client.get(reverse(URL), {"o": order})

    assert page.context["rows"][0]["task_path"] == first


def test_task_table__sort_links_toggle_the_order(staff_client, known_jobs):
    page = staff_client.get(reverse(URL), {"o": "-runs_1h"})

    assert 'href="?o=runs_1h"' in page.text  # sorted descending: next ascending
    assert 'href="?o=-p95_1d"' in page.text  # numbers sort descending first


def test_task_table__needs_the_view_permission(client, django_user_model):
    user = django_user_model.objects.create_user("nobody", password="pw")
    user.is_staff = True
    user.save()
    client.force_login(user)

    assert client.get(reverse(URL)).status_code == 403


def test_task_table__is_kept_in_the_cache_briefly(staff_client, settings, fresh_cache):
    settings.JOB_TASK_TABLE_CACHE_SECONDS = 30
    finished(FAST, 1, timedelta(minutes=1))
    assert rows_of(staff_client.get(reverse(URL)))[FAST]["runs_1h"] == 1

    finished(FAST, 1, timedelta(minutes=1))
    again = staff_client.get(reverse(URL))

    assert rows_of(again)[FAST]["runs_1h"] == 1  # the cached table


def test_task_table__is_linked_from_the_dashboard_and_the_job_list(staff_client):
    url = reverse(URL)

    assert url in staff_client.get(reverse("admin:jobs_job_dashboard")).text
    assert url in staff_client.get(reverse("admin:jobs_job_changelist")).text
    assert url in staff_client.get(reverse("admin:index")).text
