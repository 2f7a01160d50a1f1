"""The queue check of /health: what it counts (every state in exactly one
bucket, estimated past a cap on PostgreSQL, cached for a while) and when it
turns degraded (too many waiting, too many failures, too long a wait, no
live worker).
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from jobs.models import BUCKETS, Job, JobStatus, bucket_filters

from .helpers import get_health, in_the_past, make_finished, make_job, make_worker

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]


def test_health__counts_each_bucket(client):
    make_worker()
    make_job()  # waiting
    make_job(run_after=timezone.now() + timedelta(hours=1))  # delayed
    make_job(status=JobStatus.RUNNING)
    make_finished(JobStatus.SUCCESSFUL, 3)
    make_finished(JobStatus.FAILED, 1)
    make_finished(JobStatus.CANCELLED, 1)

    _, body = get_health(client)

    details = body["checks"]["queue"]["details"]
    counts = {k: details[k] for k in ("waiting", "delayed", "active")}
    assert counts == {"waiting": 1, "delayed": 1, "active": 1}
    assert (details["completed"], details["failed"], details["cancelled"]) == (3, 1, 1)


def test_health__too_many_waiting_is_degraded(client, settings):
    settings.JOB_HEALTH_MAX_WAITING = 2
    make_worker()
    for _ in range(3):
        make_job()

    code, body = get_health(client)

    assert (code, body["status"]) == (200, "degraded")
    assert body["checks"]["queue"]["status"] == "degraded"
    assert "3 jobs waiting (limit 2)" in body["checks"]["queue"]["message"]


def test_health__high_failure_rate_is_degraded(client, settings):
    settings.JOB_HEALTH_MIN_FAILURE_SAMPLE = 4
    settings.JOB_HEALTH_MAX_FAILURE_RATE = 0.5
    make_finished(JobStatus.FAILED, 3)
    make_finished(JobStatus.SUCCESSFUL, 1)

    code, body = get_health(client)

    assert (code, body["status"]) == (200, "degraded")
    assert "75% of jobs failed" in body["checks"]["queue"]["message"]
    assert body["checks"]["queue"]["details"]["failure_rate"] == 0.75


def test_health__failures_below_the_minimum_sample_are_healthy(client, settings):
    settings.JOB_HEALTH_MIN_FAILURE_SAMPLE = 4
    make_finished(JobStatus.FAILED, 3)

    code, body = get_health(client)

    assert (code, body["status"]) == (200, "healthy")
    assert body["checks"]["queue"]["details"]["failure_rate"] is None


def test_health__failures_outside_the_window_do_not_count(client, settings):
    settings.JOB_HEALTH_MIN_FAILURE_SAMPLE = 1
    for _ in range(2):
        make_job(status=JobStatus.FAILED, finished_at=in_the_past(3600))

    _, body = get_health(client)

    assert body["status"] == "healthy"
    assert body["checks"]["queue"]["details"]["failed"] == 2


def test_health__long_wait_is_degraded(client, settings):
    settings.JOB_HEALTH_MAX_WAIT_SECONDS = 60
    make_worker()
    make_job(run_after=in_the_past(600))

    code, body = get_health(client)

    assert (code, body["status"]) == (200, "degraded")
    assert "the oldest waiting job has waited" in body["checks"]["queue"]["message"]


def test_health__waiting_without_a_live_worker_is_degraded(client):
    make_worker(last_heartbeat_at=in_the_past(600))
    make_job()

    code, body = get_health(client)

    assert (code, body["status"]) == (200, "degraded")
    assert "no worker has sent a heartbeat" in body["checks"]["queue"]["message"]
    assert body["checks"]["queue"]["details"]["workers"] == 0


def test_health__statistics_are_cached_and_say_so(client, settings):
    settings.JOB_HEALTH_CACHE_SECONDS = 60
    make_worker()
    _, first = get_health(client)
    make_job()

    _, second = get_health(client)

    assert first["checks"]["queue"]["details"]["cached"] is False
    assert second["checks"]["queue"]["details"]["cached"] is True
    assert second["checks"]["queue"]["details"]["waiting"] == 0


@pytest.mark.django_db
def test_stats__finished_counts_past_the_cap_are_estimated_on_postgresql():
    for _ in range(30):
        make_job(status=JobStatus.SUCCESSFUL, finished_at=timezone.now())

    counts = Job.objects.stats(exact_up_to=10)
    exact = Job.objects.stats(exact_up_to=100)

    assert exact["completed"] == 30 and exact["estimated"] == []
    if connection.vendor == "postgresql":
        assert counts["estimated"] == ["completed"]
        assert counts["completed"] >= 10  # the planner's guess, never below the cap
    else:  # SQLite has no estimate to offer: it counts
        assert (counts["completed"], counts["estimated"]) == (30, [])


def test_buckets__every_state_lands_in_exactly_one():
    now = timezone.now()
    jobs = [make_job(status=status) for status in JobStatus.values]
    jobs.append(make_job(run_after=now + timedelta(hours=1)))  # delayed

    for job in jobs:
        matching = [
            name
            for name, condition in bucket_filters(now).items()
            if Job.objects.filter(condition, pk=job.pk).exists()
        ]
        assert len(matching) == 1, (job.status, matching)
    assert set(Job.objects.stats(now)) == {*BUCKETS, "estimated"}
