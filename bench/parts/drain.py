"""Drain: N jobs pre-filled, then burst workers; jobs/s is N over the time
from the first job's start to the last one's finish, in the system's store.
"""

import time

from ..log import log
from ..report import at_least
from ..systems import RQ_CLASSES
from .base import Part

TASKS = ("noop", "sleep10ms")
# No-ops with our options (`bench.ourtasks`), one database worker, against
# plain no-ops: 5,000 unique jobs (a key each), and jobs of 50 concurrency
# keys with a limit of 2 each.
OPTION_TASKS = ("noop_unique", "noop_limited")


class Drain(Part):
    """Drain a pre-filled queue with 1 (and 2) burst workers of each kind."""

    name = "drain"

    def __init__(self, harness):
        super().__init__(harness)
        # --quick drains with one worker only: it proves the harness works.
        self.worker_counts = (1,) if self.options.quick else (1, 2)

    def define(self):
        for task in TASKS:
            for workers in self.worker_counts:
                figure, targets = f"{task}.{workers}w", database_targets(task, workers)
                self._define(f"dtdb.{figure}", f"ours_db.{figure}", targets)
        for task in OPTION_TASKS:
            name = f"drain.ours_db.{task}.1w"
            self.report.define(name, "jobs/s", "drain.ours_db.noop.1w", [])
        for kind in RQ_CLASSES:
            for task in TASKS:
                for workers in self.worker_counts:
                    figure, targets = f"{kind}.{task}.{workers}w", [at_least(0.8, True)]
                    self._define(f"rq.{figure}", f"ours_rq.{figure}", targets)

    def _define(self, baseline, ours, targets):
        if self.harness.baselines:
            self.report.define(f"drain.{baseline}", "jobs/s")
        self.report.define(f"drain.{ours}", "jobs/s", f"drain.{baseline}", targets)

    def jobs_for(self, task, fork=False):
        """Count the jobs to drain: fewer where each job costs a sleep or a fork."""
        jobs = self.options.jobs
        if fork:
            return max(20, jobs // 10)
        return max(20, jobs // 4) if task == "sleep10ms" else jobs

    def run(self):
        self._run_database()
        self._run_rq()

    def _run_database(self):
        harness = self.harness
        for task in TASKS:
            jobs = self.jobs_for(task)
            for workers in self.worker_counts:
                if harness.baselines:
                    name = f"drain.dtdb.{task}.{workers}w"
                    commands = [harness.dtdb.worker()] * workers
                    self._drain(name, harness.dtdb, task, jobs, commands)
                name = f"drain.ours_db.{task}.{workers}w"
                commands = [harness.ours.db_worker()] * workers
                self._drain(name, harness.ours, task, jobs, commands)
        for task in OPTION_TASKS:
            name = f"drain.ours_db.{task}.1w"
            commands = [harness.ours.db_worker()]
            self._drain(name, harness.ours, task, self.options.jobs, commands)

    def _run_rq(self):
        harness = self.harness
        for kind, (ours_class, rq_class) in RQ_CLASSES.items():
            for task in TASKS:
                jobs = self.jobs_for(task, fork=kind == "fork")
                for workers in self.worker_counts:
                    if harness.baselines:
                        name = f"drain.rq.{kind}.{task}.{workers}w"
                        commands = [harness.rq.worker(rq_class)] * workers
                        self._drain(name, harness.rq, task, jobs, commands)
                    name = f"drain.ours_rq.{kind}.{task}.{workers}w"
                    ours = harness.ours_redis
                    commands = [ours.rq_worker(ours_class)] * workers
                    self._drain(name, ours, task, jobs, commands)

    def _drain(self, name, system, task, jobs, commands):
        self.harness.measure(
            [name], lambda: self.drain(system, task, jobs, commands, name)
        )

    def drain(self, system, task, jobs, commands, label):
        """Pre-fill `jobs` jobs, run the burst workers to the end, return jobs/s."""
        system.reset()
        system.client("prefill", jobs=jobs, task=task)
        started = time.monotonic()
        processes = self.harness.start_workers(system, commands, label)
        for process in processes:
            code = process.wait(timeout=120 + jobs / 5)
            process.close()
            if code != 0:
                raise RuntimeError(f"worker exited {code}; log: {process.log_path}")
        wall = time.monotonic() - started
        window = system.window()
        if window.count != jobs:
            raise RuntimeError(f"{window.count} of {jobs} jobs finished ({label})")
        log(f"{label}: {jobs} jobs in {window.seconds:.2f}s (wall {wall:.2f}s)")
        self.report.detail(label, jobs=jobs, seconds=window.seconds, wall=wall)
        return jobs / window.seconds


def database_targets(task, workers):
    """Return the targets of our database path: with one worker, against
    django-tasks-db and absolute."""
    if workers != 1:
        return []
    if task == "noop":
        return [at_least(10, True), at_least(3000)]
    return [at_least(400)]
