"""Our system, django-tasks-db and raw RQ, seen from the harness (the other
baselines are in `bench.baselines`).

Each knows how to reset its queue, run its client, start its workers, and
read back when its jobs started and finished, from its own store:
our `jobs_job` rows, django-tasks-db's rows, raw RQ's job hashes.
"""

import os
import sys
from dataclasses import dataclass
from datetime import datetime

from .services import BASELINE_VENV, ROOT, baseline_python, run_json

# Our RQ worker classes and the raw RQ classes they are measured against.
RQ_CLASSES = {
    "fork": ("JobsWorker", "Worker"),
    "simple": ("JobsSimpleWorker", "SimpleWorker"),
}


@dataclass
class Window:
    """When the first job of a drain started and the last one finished."""

    count: int
    first_started: datetime | None
    last_finished: datetime | None

    @property
    def seconds(self):
        return (self.last_finished - self.first_started).total_seconds()


class System:
    name = ""
    settings = ""
    bursts = True  # its workers stop by themselves once the queue is empty

    def __init__(self, harness):
        self.harness = harness

    def env(self, **extra):
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
        env.pop("VIRTUAL_ENV", None)
        return env

    def client(self, action, **options):
        command = [self.python, "-m", "bench.client", self.name, action]
        for key, value in options.items():
            command += [f"--{key}", str(value)]
        log = self.harness.log_path(f"client-{self.name}-{action}")
        return run_json(command, self.client_env(), log)


class ResultTable(System):
    """A system that keeps one row per job with status and timestamps."""

    table = None  # subclasses name their result table

    def _query(self, sql):
        with self.harness.postgres.connect(self.database) as conn:
            return conn.execute(sql).fetchall()

    def window(self):
        (row,) = self._query(
            f"SELECT count(*), min(started_at), max(finished_at) FROM {self.table} "
            "WHERE status = 'SUCCESSFUL'"
        )
        return Window(*row)

    def finished(self):
        return self.window().count

    def pickups(self):
        """(enqueued_at, started_at) of every started job, oldest first."""
        return self._query(
            f"SELECT enqueued_at, started_at FROM {self.table} "
            "WHERE started_at IS NOT NULL ORDER BY enqueued_at"
        )


class Ours(ResultTable):
    """Our job system: `jobworker` (database path) and `rqworker` (RQ path)."""

    name = "ours"
    python = sys.executable
    table = "jobs_job"
    tables = ("jobs_job", "jobs_workerprocess", "jobs_leaderlock")

    def __init__(self, harness, database, redis_on=False):
        super().__init__(harness)
        self.database = database
        self.redis_on = redis_on

    def with_redis(self, on):
        return Ours(self.harness, self.database, redis_on=on)

    def client_env(self):
        env = self.env(
            DJANGO_SETTINGS_MODULE="bench.settings",
            DATABASE_URL=self.harness.postgres.database_url(self.database),
            REDIS_URL=self.harness.redis.url if self.redis_on else "",
            LOG_LEVEL=self.harness.log_level,
        )
        return env

    worker_env = client_env

    def setup(self):
        self.harness.postgres.create(self.database)
        manage = [self.python, ROOT / "manage.py", "migrate", "-v0"]
        run_json_free(manage, self.client_env(), self.harness.log_path("migrate-ours"))

    def reset(self):
        with self.harness.postgres.connect(self.database) as conn:
            conn.execute(f"TRUNCATE {', '.join(self.tables)}")
        self.harness.redis.flush()

    def db_worker(self, burst=True, concurrency=None):
        command = [self.python, ROOT / "manage.py", "jobworker"]
        if burst:
            command.append("--burst")
        if concurrency:
            command += ["--concurrency", concurrency]
        return command

    def rq_worker(self, worker_class, burst=True):
        # `--skip-checks`, as `bin/rqworker-service` starts it.
        command = [self.python, ROOT / "manage.py", "rqworker", "default"]
        command.append("--skip-checks")
        command += ["--worker-class", f"jobs.rqworker.workers.{worker_class}"]
        return [*command, "--burst"] if burst else command

    def rq_pool(self, workers, burst=True):
        """`rqworker-pool` with the default worker class (`settings.RQ`)."""
        command = [self.python, ROOT / "manage.py", "rqworker-pool", "default"]
        command.append("--skip-checks")
        command += ["--num-workers", workers]
        return [*command, "--burst"] if burst else command

    def workers_ready(self, count):
        if self.redis_on:
            return self.harness.redis.client().scard("rq:workers") >= count
        (row,) = self._query("SELECT count(*) FROM jobs_workerprocess")
        return row[0] >= count


class DjangoTasksDB(ResultTable):
    """django-tasks-db's `db_worker`, a minimal project in the baselines' venv."""

    name = "dtdb"
    table = "django_tasks_database_dbtaskresult"

    def __init__(self, harness, database):
        super().__init__(harness)
        self.database = database
        self.python = baseline_python()

    def client_env(self):
        return self.env(
            DJANGO_SETTINGS_MODULE="bench.dtdb_settings",
            DATABASE_URL=self.harness.postgres.database_url(self.database),
        )

    worker_env = client_env

    def setup(self):
        self.harness.postgres.create(self.database)
        command = [self.python, "-m", "django", "migrate", "-v0"]
        run_json_free(command, self.client_env(), self.harness.log_path("migrate-dtdb"))

    def reset(self):
        with self.harness.postgres.connect(self.database) as conn:
            conn.execute(f"TRUNCATE {self.table}")

    def worker(self, burst=True):
        command = [self.python, "-m", "django", "db_worker", "--no-startup-delay"]
        command.append("--no-reload")
        return [*command, "--batch"] if burst else command

    def workers_ready(self, count, processes):
        return all("Starting worker" in p.output() for p in processes)


class RawRQ(System):
    """Plain RQ: `Queue.enqueue` and `rq worker` with RQ's own worker classes."""

    name = "rq"

    def __init__(self, harness):
        super().__init__(harness)
        self.python = baseline_python()

    def client_env(self):
        return self.env(REDIS_URL=self.harness.redis.url)

    worker_env = client_env

    def setup(self):
        pass

    def reset(self):
        self.harness.redis.flush()

    def worker(self, worker_class, burst=True):
        command = [BASELINE_VENV / "bin" / "rq", "worker", "-w", f"rq.{worker_class}"]
        command += ["--url", self.harness.redis.url, "default"]
        return [*command, "--burst"] if burst else command

    def _jobs(self):
        client = self.harness.redis.client()
        keys = [
            key
            for key in client.scan_iter("rq:job:*", count=1000)
            if key.count(b":") == 2  # the job hashes, not their sub-keys
        ]
        fields = ("status", "enqueued_at", "started_at", "ended_at")
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, *fields)
            rows = pipe.execute()
        return [
            [value.decode() if value else None for value in row]
            for row in rows
            if row[0] is not None
        ]

    def window(self):
        done = [row for row in self._jobs() if row[0] == "finished"]
        if not done:
            return Window(0, None, None)
        return Window(
            len(done),
            min(parse_rq_time(row[2]) for row in done),
            max(parse_rq_time(row[3]) for row in done),
        )

    def finished(self):
        return sum(1 for row in self._jobs() if row[0] == "finished")

    def pickups(self):
        rows = [
            (parse_rq_time(row[1]), parse_rq_time(row[2]))
            for row in self._jobs()
            if row[2]
        ]
        return sorted(rows)

    def workers_ready(self, count):
        return self.harness.redis.client().scard("rq:workers") >= count


def parse_rq_time(value):
    return datetime.fromisoformat(value)


def run_json_free(command, env, log_path):
    """Run a setup command (no JSON answer); raise with its log if it fails."""
    import subprocess

    with open(log_path, "w") as log:
        done = subprocess.run(
            [str(part) for part in command], env=env, cwd=ROOT, stdout=log, stderr=log
        )
    if done.returncode != 0:
        raise RuntimeError(f"{command[1:4]} exited {done.returncode}; see {log_path}")
