import os

import pytest
from django.db import connection

from .helpers import FAST_SETTINGS, ROOT, WorkerProcess


def pytest_sessionfinish(session, exitstatus):
    """With JOBS_FORBID_SKIPS=1 (CI), a skipped test fails the run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("JOBS_FORBID_SKIPS") == "1" and skipped:
        reporter.write_line(f"{len(skipped)} tests skipped: skips are failures here")
        session.exitstatus = 1


@pytest.fixture(autouse=True)
def fast_job_settings(settings):
    for name, value in FAST_SETTINGS.items():
        setattr(settings, name, value)


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")


@pytest.fixture
def start_worker():
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    workers = []

    def start(*args, env=None):
        worker = WorkerProcess(*args, env=env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
