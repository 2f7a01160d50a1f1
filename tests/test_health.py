"""/health: each state on status code and JSON, with real databases and Redis."""

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from jobs.exceptions import JobQueueDisabled
from jobs.models import BUCKETS, Job, JobStatus, WorkerProcess, bucket_filters
from tests.testapp import tasks

from .helpers import ROOT, database_url, in_the_past, make_job

pytestmark = pytest.mark.django_db

SECRET_REDIS_URL = "redis://:hunter2secret@127.0.0.1:1/0"


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def get_health(client):
    response = client.get("/health")
    return response.status_code, response.json()


def make_worker(**fields):
    now = timezone.now()
    defaults = {"id": f"host:{os.getpid()}:w", "kind": "database", "pid": 1}
    defaults.update(hostname="host", last_heartbeat_at=now, started_at=now)
    return WorkerProcess.objects.create(**{**defaults, **fields})


def make_finished(status, count):
    for _ in range(count):
        make_job(status=status, finished_at=timezone.now())


def run_manage(*args, env):
    """Run manage.py in a subprocess without REDIS_URL unless `env` sets it."""
    base = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env={**base, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_health__healthy_with_redis(client, redis_dispatch, redis_server):
    make_worker(kind="rq")
    make_job()

    code, body = get_health(client)

    assert code == 200
    assert body["status"] == "healthy"
    assert body["checks"]["redis"]["status"] == "healthy"
    queue = body["checks"]["queue"]
    assert queue["status"] == "healthy"
    assert queue["details"]["backend"] == "redis"
    assert (queue["details"]["waiting"], queue["details"]["workers"]) == (1, 1)
    assert redis_server.url not in json.dumps(body)


def test_health__healthy_on_the_database_without_redis(client, settings):
    settings.REDIS_URL = ""

    code, body = get_health(client)

    assert code == 200
    assert body["status"] == "healthy"
    assert body["checks"]["database"]["status"] == "healthy"
    assert isinstance(body["checks"]["database"]["latency"], int)
    assert body["checks"]["redis"]["status"] == "healthy"
    assert "not configured" in body["checks"]["redis"]["message"]
    queue = body["checks"]["queue"]
    assert queue["details"]["backend"] == "database"
    assert "database queue" in queue["message"]


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


def test_health__disabled_queue_is_healthy_with_zero_counts(client, settings):
    settings.JOB_QUEUE_ENABLED = False
    make_job()
    make_finished(JobStatus.FAILED, 2)

    code, body = get_health(client)

    assert code == 200
    assert body["status"] == "healthy"
    queue = body["checks"]["queue"]
    assert queue["status"] == "healthy"
    assert queue["details"]["enabled"] is False
    assert queue["details"]["waiting"] == queue["details"]["failed"] == 0
    assert "disabled" in queue["message"]


def test_enqueue__refuses_when_the_queue_is_disabled(settings):
    settings.JOB_QUEUE_ENABLED = False

    with pytest.raises(JobQueueDisabled, match="JOB_QUEUE_ENABLED"):
        tasks.noop.enqueue()

    assert not Job.objects.exists()


def test_health__redis_down_is_degraded_not_unhealthy(
    client, redis_dispatch, redis_server
):
    make_worker(kind="rq")
    redis_server.stop()

    code, body = get_health(client)

    assert code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["redis"]["status"] == "degraded"
    assert "database queue" in body["checks"]["redis"]["message"]
    assert body["checks"]["database"]["status"] == "healthy"
    assert body["checks"]["queue"]["status"] == "healthy"
    assert str(redis_server.port) not in json.dumps(body)


def test_health__broken_redis_url_never_leaks_its_password(client, settings, caplog):
    settings.REDIS_URL = SECRET_REDIS_URL

    code, body = get_health(client)

    assert (code, body["status"]) == (200, "degraded")
    assert "hunter2secret" not in json.dumps(body)
    assert "Traceback" not in json.dumps(body)
    assert "Redis did not answer" in caplog.text
    assert "hunter2secret" not in caplog.text


def test_health__database_down_is_unhealthy_503():
    code = (
        "from django.test import Client\n"
        "r = Client().get('/health', HTTP_HOST='localhost')\n"
        "print('STATUS', r.status_code)\n"
        "print('BODY', r.content.decode())\n"
    )
    env = {"DATABASE_URL": "postgres://root:hunter2secret@127.0.0.1:1/jobs"}

    done = run_manage("shell", "-c", code, env=env)

    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    body = json.loads(lines["BODY"])
    assert lines["STATUS"] == "503"
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"]["status"] == "unhealthy"
    assert "hunter2secret" not in done.stdout + done.stderr
    assert "127.0.0.1:1" not in lines["BODY"]


@pytest.mark.django_db(transaction=True)  # the subprocess reads the test database
def test_health_check_command__runs_our_checks():
    done = run_manage(
        "health_check",
        "health_status",
        "--no-http",
        env={"DATABASE_URL": database_url()},
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Database(alias='default'): OK" in done.stdout
    assert "Redis(): OK" in done.stdout
    assert "Queue(): OK" in done.stdout


def test_health__status_page_lists_our_checks(client):
    response = client.get("/health/status/", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert b"Queue()" in response.content


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


def test_health__job_system_failing_to_initialise_is_degraded(client, settings):
    settings.TASKS = {"default": {"BACKEND": "nowhere.Backend"}}

    code, body = get_health(client)

    assert (code, body["status"]) == (200, "degraded")
    assert "failed to initialise" in body["checks"]["queue"]["message"]
    assert body["checks"]["queue"]["details"]["enabled"] is True


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
