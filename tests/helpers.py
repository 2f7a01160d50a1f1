"""Helpers the tests share: factories, waiting, worker processes."""

import os
import signal
import subprocess
import sys
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path

from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from jobs.dbworker.worker import Worker
from jobs.models import Job, JobStatus, WorkerProcess
from jobs.notify import pusher

from . import services

ROOT = Path(__file__).resolve().parent.parent

# Short timings so tests wait for fractions of a second, not minutes.
FAST_SETTINGS = {
    "JOB_POLL_SECONDS": 0.05,
    "JOB_LEASE_SECONDS": 1.5,
    "JOB_MAINTENANCE_SECONDS": 0.2,
    "JOB_BACKOFF_BASE_SECONDS": 0.2,
    "JOB_REDISPATCH_GRACE_SECONDS": 0.3,
    "JOB_REDIS_RETRY_SECONDS": 0.2,
    "JOB_HEALTH_CACHE_SECONDS": 0,  # each /health in a test counts afresh
    "JOB_TASK_TABLE_CACHE_SECONDS": 0,  # each per-task table too
}


SIMPLE = "jobs.rqworker.workers.JobsSimpleWorker"
FORKING = "jobs.rqworker.workers.JobsWorker"  # the default (settings.RQ)

# The console's job list, for `reverse()`.
CHANGELIST = "admin:jobs_job_changelist"


def drain_rq(*queues, worker_class=None):
    """Run an rqworker (non-forking unless `worker_class` says) in this
    process until its queues are empty."""
    pusher.pusher.flush(timeout=10)  # what this process enqueued is in Redis
    call_command(
        "rqworker",
        *(queues or ("default", "other")),
        "--burst",
        "--worker-class",
        worker_class or SIMPLE,
        verbosity=0,
    )


def calls(client, *commands):
    """How many times Redis ran each of `commands` so far (INFO commandstats)."""
    stats = client.info("commandstats")
    return [stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in commands]


def make_job(**fields):
    """Create a job row directly, for tests of the state machine."""
    now = timezone.now()
    defaults = {
        "task_path": "tests.testapp.tasks.noop",
        "enqueued_at": now,
        "run_after": now,
    }
    return Job.objects.create(**{**defaults, **fields})


def make_failed_job(**fields):
    """Create a job that failed its one attempt with ValueError("boom")."""
    error = {
        "exception_class_path": "builtins.ValueError",
        "message": "boom",
        "traceback": "Traceback (most recent call last):\nValueError: boom\n",
        "attempt": 1,
        "worker_id": "host:1:abc",
    }
    defaults = {
        "status": JobStatus.FAILED,
        "attempts": 1,
        "max_attempts": 1,
        "errors": [error],
        "worker_ids": ["host:1:abc"],
        "finished_at": timezone.now(),
    }
    return make_job(**{**defaults, **fields})


def make_worker(**fields):
    """Create a worker registry row, alive now unless told otherwise."""
    now = timezone.now()
    defaults = {"id": f"host:{os.getpid()}:w", "kind": "database", "pid": 1}
    defaults.update(hostname="host", last_heartbeat_at=now, started_at=now)
    return WorkerProcess.objects.create(**{**defaults, **fields})


def make_finished(status, count):
    """Create `count` jobs that finished now in `status`."""
    for _ in range(count):
        make_job(status=status, finished_at=timezone.now())


def get_health(client):
    """GET /health: its status code and JSON body."""
    response = client.get("/health")
    return response.status_code, response.json()


def run_worker(**options):
    """Run the database worker in this process until it drains."""
    options.setdefault("burst", True)
    options.setdefault("install_signals", False)
    return Worker(**options).run()


def wait_for(predicate, timeout=60.0, interval=0.05, message="condition"):
    """Poll `predicate` until it is true; fail the test after `timeout`."""
    try:
        return services.wait_for(predicate, timeout, message, interval)
    except TimeoutError as e:
        raise AssertionError(str(e)) from None


def scalar(sql, params=None):
    """The one value the query `sql` answers, on the test database."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def database_clock():
    """The database's clock now (PostgreSQL), to order events by it."""
    return scalar("SELECT clock_timestamp()")


def claimed_since(moment):
    """Say whether another session of the test database (a worker) ran a
    claim that started after `moment` (database clock) and has ended
    (PostgreSQL): after it, the worker waits until something wakes it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # fresh in a transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'idle' AND query LIKE %s AND query_start > %s",
            ["%FOR UPDATE SKIP LOCKED%", moment],
        )
        return cursor.fetchone()[0] > 0


def listening_since():
    """When a worker's LISTEN connection finished its LISTEN, or None."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # fresh in a transaction
        cursor.execute(
            "SELECT max(state_change) FROM pg_stat_activity "
            "WHERE datname = current_database() AND state = 'idle' "
            "AND query LIKE 'LISTEN %%'"
        )
        return cursor.fetchone()[0]


def database_url():
    """A URL of the test database, for worker subprocesses."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def command_environment(env=None):
    """The environment of a `manage.py` subprocess of a test: its database,
    the fast settings, then `env`."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
        **{name: str(value) for name, value in FAST_SETTINGS.items()},
        **(env or {}),
    }


class CommandProcess:
    """A worker command in a subprocess, killed at the end of the test."""

    def __init__(self, *args, env=None, command="jobworker", faketime=None):
        self.args = args
        self.command = command
        full_env = command_environment(env)
        self.log = open(  # noqa: SIM115 (closed in stop)
            ROOT / f".pytest_cache/worker-{os.getpid()}-{id(self)}.log", "w+"
        )
        # `faketime`: run with a wall clock that much off (Debian's faketime,
        # e.g. "+30s"), as on a host whose clock is wrong; its monotonic
        # clock, which measures intervals, stays true.
        skew = ["faketime", "-f", faketime] if faketime else []
        if faketime:
            full_env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        self.process = subprocess.Popen(
            [*skew, sys.executable, str(ROOT / "manage.py"), command, *args],
            env=full_env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self):
        return self.process.pid

    def signal(self, signum):
        self.process.send_signal(signum)

    def wait(self, timeout=30):
        return self.process.wait(timeout=timeout)

    def output(self):
        if self.log.closed:
            return self.final_output
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def children(self):
        """Pids of this worker's child processes (RQ's work horse, scheduler)."""
        found = subprocess.run(
            ["pgrep", "-P", str(self.pid)], capture_output=True, text=True
        )
        return [int(pid) for pid in found.stdout.split()]

    def stop(self):
        if self.process.poll() is None:
            for pid in self.children():
                with suppress(ProcessLookupError):  # it may just have exited
                    os.kill(pid, signal.SIGKILL)
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        if not self.log.closed:
            self.final_output = self.output()
            self.log.close()


def job_of(result):
    return Job.objects.get(pk=result.id)


def status_of(result):
    return job_of(result).status


def in_the_past(seconds=60):
    return timezone.now() - timedelta(seconds=seconds)


def sessions_waiting_for_a_lock(wait_event=None):
    """How many other sessions of this database wait for a lock (PostgreSQL),
    of the kind `wait_event` names (`advisory`, `transactionid`, ...; None:
    any)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        " AND pid <> pg_backend_pid()"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        if wait_event is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql + " AND wait_event = %s", [wait_event])
        return cursor.fetchone()[0]


@contextmanager
def notify_lock_held():
    """Hold, from another connection's open transaction, the lock of the
    enqueue that NOTIFYs in its own transaction (`hot_path.RING_IF_ALONE`):
    enqueues meanwhile NOTIFY after their commit."""
    import psycopg

    from jobs.core.hot_path import RING_LOCK

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as other:  # one open transaction
        assert other.execute(
            f"SELECT pg_try_advisory_xact_lock({RING_LOCK})"
        ).fetchone()[0]
        yield
        other.rollback()
