"""The dashboards: ours counts queues, lists workers and draws the chart for
those who may view jobs; django_rq's is for staff only."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs import maintenance
from jobs.maintenance import depth
from jobs.models import Job, JobStatus, QueueDepth, WorkerProcess
from jobs.web import dashboard

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


def finished_at(moment, status=JobStatus.SUCCESSFUL, attempts=1):
    return make_job(status=status, finished_at=moment, attempts=attempts)


@pytest.mark.parametrize(
    ("range_name", "bars", "bar_minutes"),
    [("1h", 60, 1), ("24h", 60, 24), ("7d", 56, 180)],
)
def test_dashboard_chart__each_range_has_about_sixty_bars(
    staff_client, range_name, bars, bar_minutes
):
    page = staff_client.get(reverse("admin:jobs_job_dashboard"), {"range": range_name})

    chart = page.context["chart"]
    assert (chart["range"], len(chart["bars"])) == (range_name, bars)
    assert chart["bar_minutes"] == bar_minutes
    assert f"bars of {bar_minutes} min" in page.text


def test_dashboard_chart__counts_completed_failed_and_retried_per_bar(staff_client):
    now = timezone.now()
    finished_at(now - timedelta(hours=3), attempts=3)  # 2 retried, then done
    finished_at(now - timedelta(hours=3), status=JobStatus.FAILED, attempts=2)
    finished_at(now - timedelta(minutes=1))
    finished_at(now - timedelta(days=2))  # outside 24 h
    make_job(status=JobStatus.READY)  # waiting now

    day = staff_client.get(reverse("admin:jobs_job_dashboard"), {"range": "24h"})
    hour = staff_client.get(reverse("admin:jobs_job_dashboard"), {"range": "1h"})
    week = staff_client.get(reverse("admin:jobs_job_dashboard"), {"range": "7d"})

    chart = day.context["chart"]
    assert (chart["completed"], chart["failed"], chart["retried"]) == (2, 1, 3)
    three_hours_ago = [b for b in chart["bars"] if "1 failed, 3 retried" in b["label"]]
    assert len(three_hours_ago) == 1
    assert "1 completed" in three_hours_ago[0]["label"]
    labels = [bar["label"] for bar in chart["bars"][-2:]]  # the last 48 min
    assert any("1 completed, 0 failed, 0 retried" in label for label in labels)
    assert (hour.context["chart"]["completed"], hour.context["chart"]["failed"]) == (
        1,
        0,
    )
    assert week.context["chart"]["completed"] == 3
    assert chart["waiting"] == 1
    assert '<strong id="queue-depth">1</strong>' in day.text


def test_dashboard_chart__draws_the_queue_depth_the_maintenance_sampled(
    staff_client,
):
    # Three jobs wait (one more is delayed): the maintenance's sample says 3.
    for _ in range(3):
        make_job(status=JobStatus.READY)
    make_job(status=JobStatus.READY, run_after=timezone.now() + timedelta(hours=1))
    assert depth.sample_depth() is True
    assert depth.sample_depth() is False  # one sample a minute
    (sample,) = QueueDepth.objects.all()
    assert sample.waiting == 3
    # Earlier samples: 12 waiting 3 hours ago (a 24-minute bar of its own).
    earlier = sample.minute - timedelta(hours=3)
    QueueDepth.objects.create(minute=earlier, waiting=12)

    day = staff_client.get(reverse("admin:jobs_job_dashboard"), {"range": "24h"})

    chart = day.context["chart"]
    assert chart["depth_peak"] == 12
    assert len(chart["depth_points"].split()) == 2  # bars without a sample: none
    labels = [bar["label"] for bar in chart["bars"]]
    assert sum("up to 12 waiting" in label for label in labels) == 1
    assert "up to 3 waiting" in labels[-1]
    assert 'id="depth-line"' in day.text


def test_queue_depth__is_sampled_by_the_maintenance():
    make_job(status=JobStatus.READY)

    assert maintenance.run_due_duties("w:1") is True  # it held the leader lock

    assert list(QueueDepth.objects.values_list("waiting", flat=True)) == [1]


def test_queue_depth__samples_older_than_the_longest_range_are_forgotten():
    old = QueueDepth.objects.create(
        minute=timezone.now() - depth.KEPT - timedelta(minutes=5), waiting=1
    )

    depth.sample_depth()

    assert not QueueDepth.objects.filter(minute=old.minute).exists()
    assert QueueDepth.objects.count() == 1


def test_dashboard_chart__range_picker_links_and_keeps_the_range_on_refresh(
    staff_client,
):
    page = staff_client.get(reverse("admin:jobs_job_dashboard"), {"range": "7d"})

    assert 'href="?range=1h"' in page.text and 'href="?range=24h"' in page.text
    assert 'href="?range=7d"' not in page.text  # the current one is no link
    assert "fragment=1&amp;range=7d" in page.text


def test_dashboard_chart__an_unknown_range_is_the_last_hour(staff_client):
    page = staff_client.get(reverse("admin:jobs_job_dashboard"), {"range": "1y"})

    assert page.context["chart"]["range"] == "1h"


def test_dashboard_chart__reads_at_most_its_row_bound(staff_client, monkeypatch):
    monkeypatch.setattr(dashboard, "MAX_CHART_ROWS", 2)
    now = timezone.now()
    for minutes in (50, 30, 10):
        finished_at(now - timedelta(minutes=minutes))

    page = staff_client.get(reverse("admin:jobs_job_dashboard"), {"range": "1h"})

    chart = page.context["chart"]
    assert chart["completed"] == 2  # the newest two
    assert chart["cutoff"] == Job.objects.order_by("-finished_at")[1].finished_at
    assert "bars before" in page.text
