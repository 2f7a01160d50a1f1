"""Start-up: seconds from spawning one worker process, with one job already
waiting, to that job's start in the system's store (the interpreter, imports,
connections and the first claim).
"""

import time

from tests.services import wait_for

from ..report import at_most
from .base import Part
from .drain import finished_all

TARGET = 0.35  # seconds, for our two workers
BASELINES = ("dtdb", "rq", "pgqueuer", "procrastinate", "celery")


class Startup(Part):
    """Spawn each kind of worker on a queue holding one no-op."""

    name = "startup"

    def define(self):
        define = self.report.define
        if self.harness.baselines:
            for name in BASELINES:
                define(f"startup.{name}", "s")
        define("startup.ours_db", "s", "startup.dtdb", [at_most(TARGET)])
        define("startup.ours_rq", "s", "startup.rq", [at_most(TARGET)])

    def run(self):
        harness = self.harness
        if harness.baselines:
            self._startup(harness.dtdb, harness.dtdb.worker(burst=False))
            self._startup(harness.rq, harness.rq.worker("Worker", burst=False))
            for system in (harness.pgqueuer, harness.procrastinate, harness.celery):
                self._startup(system, system.worker(burst=False))
        ours, ours_redis = harness.ours, harness.ours_redis
        self._startup(ours, ours.db_worker(burst=False), "startup.ours_db")
        # The class `manage.py rqworker` runs by default (`settings.RQ`).
        command = ours_redis.rq_worker("JobsWorker", burst=False)
        self._startup(ours_redis, command, "startup.ours_rq")

    def _startup(self, system, command, name=None):
        name = name or f"startup.{system.name}"
        self.harness.measure([name], lambda: self.startup(system, command, name))

    def startup(self, system, command, label):
        """Pre-fill one job, spawn the worker; return seconds to the job's start."""
        system.reset()
        system.client("prefill", jobs=1, task="noop")
        spawned = time.time()
        (process,) = self.harness.start_workers(system, [command], label)
        try:
            finished = lambda: finished_all(system, 1, [process])  # noqa: E731
            wait_for(finished, 60, f"{label}: the first job", interval=0.1)
        finally:
            process.terminate()
        seconds = system.window().first_started.timestamp() - spawned
        self.report.detail(label, seconds=seconds)
        return seconds
