"""/health: each check's state (healthy, degraded, unhealthy) on status code
and JSON, with real databases and Redis, and never a secret in what it says.

What the queue check counts and when it turns degraded:
`test_health_queue.py`.
"""

import json
import os
import subprocess
import sys

import pytest

from jobs.models import JobStatus

from .helpers import (
    ROOT,
    database_url,
    get_health,
    make_finished,
    make_job,
    make_worker,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]

SECRET_REDIS_URL = "redis://:hunter2secret@127.0.0.1:1/0"


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


def test_health__job_system_failing_to_initialise_is_degraded(client, settings):
    settings.TASKS = {"default": {"BACKEND": "nowhere.Backend"}}

    code, body = get_health(client)

    assert (code, body["status"]) == (200, "degraded")
    assert "failed to initialise" in body["checks"]["queue"]["message"]
    assert body["checks"]["queue"]["details"]["enabled"] is True
