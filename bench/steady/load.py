"""Our system on the private cluster: a database migrated there, its
capacity, the worker under soak and the producer feeding it.

`bench.systems.Ours` does the work (migrate, client, worker commands,
reading rows back); `Site` is the little of a harness it needs.
"""

import json
from pathlib import Path

import psycopg

from tests.services import wait_for

from ..services import ROOT, Postgres, Process
from ..systems import Ours

WORKER_READY_SECONDS = 60
# `bench.client steady --record-commits` writes here (`sample.PICKUP_SQL`).
COMMITS_TABLE = """CREATE TABLE IF NOT EXISTS bench_commit (
    stamp timestamptz PRIMARY KEY, committed_at timestamptz NOT NULL)"""


class Site:
    """The cluster, the private Redis (or None) and the log directory, where
    this site's logs start with `prefix` (each cluster has its own site)."""

    def __init__(self, url, workdir, redis, log_level, prefix):
        self.postgres = Postgres(url)
        self.workdir = Path(workdir)
        self.redis = redis
        self.log_level = log_level
        self.prefix = prefix
        self._logs = 0

    def log_path(self, label):
        """Name the next log file in the work directory, numbered in order."""
        self._logs += 1
        return self.workdir / f"{self.prefix}{self._logs:04d}-{label}.log"


class Load:
    """One kind of worker (`db`: jobworker, `rq`: rqworker-pool) with its
    settings, on one database of the site."""

    def __init__(self, site, database, kind, concurrency, retention_ms):
        self.site = site
        self.kind = kind
        self.concurrency = concurrency
        self.retention_ms = retention_ms
        self.ours = Ours(site, database, redis_on=kind == "rq")

    @property
    def database_url(self):
        return self.site.postgres.database_url(self.ours.database)

    def migrate(self):
        """Create the database and migrate our schema into it, with the
        producer's record of when each enqueue committed."""
        self.ours.setup()
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            connection.execute(COMMITS_TABLE)

    def drop(self):
        self.site.postgres.drop(self.ours.database)

    def worker_command(self, burst):
        if self.kind == "db":
            return self.ours.db_worker(burst=burst)
        command = [self.ours.python, ROOT / "manage.py", "rqworker-pool", "default"]
        command += ["--num-workers", self.concurrency]
        return [*command, "--burst"] if burst else command

    def worker_env(self):
        """The worker's settings: ours and the environment's, else the defaults."""
        return {
            **self.ours.worker_env(),
            "JOB_CONCURRENCY": str(self.concurrency),
            "JOB_CLEANUP_AGE": str(self.retention_ms),
        }

    def start_worker(self, burst=False):
        """Start the worker; unless burst, wait until it has registered."""
        log_path = self.site.log_path(f"worker-{self.kind}")
        process = Process(self.worker_command(burst), self.worker_env(), log_path)
        if not burst:
            registered = 1 if self.kind == "db" else self.concurrency
            wait_for(
                lambda: (
                    process.popen.poll() is not None
                    or self.ours.workers_ready(registered)
                ),
                WORKER_READY_SECONDS,
                f"the {self.kind} worker to start",
            )
            if process.popen.poll() is not None:
                raise RuntimeError(f"the worker exited at start; log: {log_path}")
        return process

    def capacity(self, jobs):
        """Drain `jobs` pre-filled no-ops with one burst worker; return the
        jobs/s from the first start to the last finish, read from our rows."""
        self.ours.client("prefill", jobs=jobs)
        process = self.start_worker(burst=True)
        code = process.wait(timeout=120 + jobs / 100)
        process.close()
        if code != 0:
            raise RuntimeError(f"worker exited {code}; log: {process.log_path}")
        window = self.ours.window()
        if window.count != jobs:
            raise RuntimeError(f"{window.count} of {jobs} capacity jobs finished")
        seconds = window.seconds
        return {"jobs": jobs, "seconds": seconds, "rate": jobs / seconds}

    def start_producer(self, rate, seconds):
        """Start `bench.client ours steady`: `enqueue_many` every 100 ms."""
        command = [self.ours.python, "-m", "bench.client", "ours", "steady"]
        command += ["--rate", rate, "--seconds", seconds, "--record-commits"]
        log_path = self.site.log_path("producer")
        return Process(command, self.ours.client_env(), log_path)


def producer_result(process):
    """The JSON the producer printed last, or None if it printed none."""
    for line in reversed(process.output().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None
