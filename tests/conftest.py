import os

import pytest
from django.core.cache import cache
from django.db import connection

from jobs.conf import rq_queues

from .helpers import FAST_SETTINGS, ROOT, CommandProcess
from .services import PrivatePgBouncer, PrivateRedis


def pytest_sessionfinish(session, exitstatus):
    """With JOBS_FORBID_SKIPS=1 (CI), a skipped test fails the run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("JOBS_FORBID_SKIPS") == "1" and skipped:
        reporter.write_line(f"{len(skipped)} tests skipped: skips are failures here")
        session.exitstatus = 1


@pytest.fixture(scope="session", autouse=True)
def close_stray_sessions(django_db_setup, django_db_blocker):
    """Before the test database is dropped, end sessions that outlived their
    test (a killed worker's, a live server thread's), so the drop succeeds."""
    yield
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(autouse=True)
def fast_job_settings(settings):
    for name, value in FAST_SETTINGS.items():
        setattr(settings, name, value)


@pytest.fixture
def fresh_cache():
    """An empty cache before and after the test (the /health statistics)."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")


@pytest.fixture
def start_worker():
    """Start `manage.py jobworker` (or `command=...`) in a subprocess."""
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    workers = []

    def start(*args, env=None, command="jobworker", faketime=None):
        worker = CommandProcess(*args, env=env, command=command, faketime=faketime)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        # pytest shows this only for a test that failed: the worker's side.
        print(f"--- output of {worker.command} (pid {worker.pid}) ---")
        print(worker.output()[-20_000:])
        worker.stop()


@pytest.fixture
def redis_server(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_dispatch(settings, redis_server):
    """Turn Redis dispatch on, in this process and in worker subprocesses."""
    settings.REDIS_URL = redis_server.url
    settings.RQ_QUEUES = rq_queues(redis_server.url, ["default", "other"])
    return {"REDIS_URL": redis_server.url}


@pytest.fixture
def start_rqworker(start_worker, redis_dispatch):
    """Start the stock `manage.py rqworker` on our queues in a subprocess."""

    def start(*args, env=None):
        return start_worker(
            "default",
            "other",
            *args,
            env={**redis_dispatch, **(env or {})},
            command="rqworker",
        )

    return start


@pytest.fixture
def staff_client(client, django_user_model):
    """A test client signed in as a superuser."""
    user = django_user_model.objects.create_superuser("boss", "b@example.org", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def pgbouncer(postgres_only, tmp_path):
    """A private pgbouncer in transaction mode in front of the test database."""
    db = connection.settings_dict
    bouncer = PrivatePgBouncer(
        tmp_path,
        db["HOST"] or "127.0.0.1",
        int(db["PORT"] or 5432),
        db["USER"],
        db["PASSWORD"],
    )
    bouncer.start()
    yield bouncer
    bouncer.stop()


@pytest.fixture
def through_pooler(pgbouncer):
    """Send this process's queries through the pgbouncer too (web requests,
    enqueues); the test database is reached directly again afterwards."""
    db = connection.settings_dict
    direct = db["HOST"], db["PORT"]
    connection.close()
    db["HOST"], db["PORT"] = "127.0.0.1", str(pgbouncer.port)
    yield pgbouncer
    connection.close()
    db["HOST"], db["PORT"] = direct
