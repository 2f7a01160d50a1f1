"""Drain: N jobs pre-filled, then burst workers; jobs/s is N over the time
from the first job's start to the last one's finish, in the system's store
(steady), and, as `<figure>.cold`, N over the time from spawning the worker
processes to the last finish (start-up included).
"""

import time

from tests.services import wait_for

from ..log import log
from ..report import at_least
from ..systems import RQ_CLASSES
from .base import Part

TASKS = ("noop", "sleep10ms")
# No-ops with our options (`bench.ourtasks`), one database worker, against
# plain no-ops: 5,000 unique jobs (a key each), and jobs of 50 concurrency
# keys with a limit of 2 each.
OPTION_TASKS = ("noop_unique", "noop_limited")
# `rqworker-pool --num-workers POOL_WORKERS` with our default worker class.
POOL_WORKERS = 5
POOL_FIGURE = f"drain.ours_rq.pool{POOL_WORKERS}.sleep10ms"


class Drain(Part):
    """Drain a pre-filled queue with 1 (and 2) burst workers of each kind."""

    name = "drain"

    def __init__(self, harness):
        super().__init__(harness)
        # --quick drains with one worker only: it proves the harness works.
        self.worker_counts = (1,) if self.options.quick else (1, 2)

    def define(self):
        baselines = self.harness.baselines
        for task in TASKS:
            if baselines:  # one worker process each
                self._pair(f"drain.pgqueuer.{task}.1w")
                self._pair(f"drain.procrastinate.{task}.1w")
            for workers in self.worker_counts:
                figure, targets = f"{task}.{workers}w", database_targets(task, workers)
                if baselines and (task, workers) == ("noop", 1):
                    targets.append(at_least(1.5, against="drain.pgqueuer.noop.1w"))
                self._define(f"dtdb.{figure}", f"ours_db.{figure}", targets)
        for task in OPTION_TASKS:
            self._pair(f"drain.ours_db.{task}.1w", "drain.ours_db.noop.1w")
        for kind in RQ_CLASSES:
            for task in TASKS:
                if baselines and kind == "fork":
                    self._pair(f"drain.celery.solo.{task}.1w")
                for workers in self.worker_counts:
                    figure, targets = f"{kind}.{task}.{workers}w", [at_least(0.8, True)]
                    if baselines and (kind, task, workers) == ("fork", "noop", 1):
                        celery = "drain.celery.solo.noop.1w"
                        targets.append(at_least(1.0, against=celery))
                    self._define(f"rq.{figure}", f"ours_rq.{figure}", targets)
        self._pair(POOL_FIGURE, targets=[at_least(400)])

    def _define(self, baseline, ours, targets):
        if self.harness.baselines:
            self._pair(f"drain.{baseline}")
        self._pair(f"drain.{ours}", f"drain.{baseline}", targets)

    def _pair(self, name, baseline=None, targets=()):
        """Define a steady figure and its start-up-inclusive `.cold` twin (no
        targets: issue 23's targets are on the steady rate)."""
        self.report.define(name, "jobs/s", baseline, targets)
        cold = f"{baseline}.cold" if baseline else None
        self.report.define(f"{name}.cold", "jobs/s", cold)

    def jobs_for(self, task, fork=False):
        """Count the jobs to drain: fewer where each job costs a sleep, or a
        fork (`fork`: raw RQ's forking worker)."""
        jobs = self.options.jobs
        if fork:
            return max(20, jobs // 10)
        return max(20, jobs // 4) if task == "sleep10ms" else jobs

    def run(self):
        self._run_database()
        self._run_rq()
        self._run_pool()

    def _run_database(self):
        harness = self.harness
        for task in TASKS:
            jobs = self.jobs_for(task)
            if harness.baselines:
                for system in (harness.pgqueuer, harness.procrastinate):
                    name = f"drain.{system.name}.{task}.1w"
                    self._drain(name, system, task, jobs, [system.worker()])
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
                if harness.baselines and kind == "fork":
                    celery = harness.celery
                    name = f"drain.celery.solo.{task}.1w"
                    commands = [celery.worker()]
                    self._drain(name, celery, task, self.jobs_for(task), commands)
                # Raw RQ's forking worker forks once per job: fewer jobs.
                rq_jobs = self.jobs_for(task, fork=kind == "fork")
                for workers in self.worker_counts:
                    if harness.baselines:
                        name = f"drain.rq.{kind}.{task}.{workers}w"
                        commands = [harness.rq.worker(rq_class)] * workers
                        self._drain(name, harness.rq, task, rq_jobs, commands)
                    name = f"drain.ours_rq.{kind}.{task}.{workers}w"
                    ours = harness.ours_redis
                    commands = [ours.rq_worker(ours_class)] * workers
                    self._drain(name, ours, task, self.jobs_for(task), commands)

    def _run_pool(self):
        ours = self.harness.ours_redis
        jobs, commands = self.jobs_for("sleep10ms"), [ours.rq_pool(POOL_WORKERS)]
        self._drain(POOL_FIGURE, ours, "sleep10ms", jobs, commands)

    def _drain(self, name, system, task, jobs, commands):
        self.harness.measure(
            [name, f"{name}.cold"],
            lambda: self.drain(system, task, jobs, commands, name),
        )

    def drain(self, system, task, jobs, commands, label):
        """Pre-fill `jobs` jobs, run the workers until all finished; return
        jobs/s steady and from the workers' spawn (cold)."""
        system.reset()
        system.client("prefill", jobs=jobs, task=task)
        self.harness.postgres.checkpoint()  # every system drains after one
        spawned, started = time.time(), time.monotonic()
        processes = self.harness.start_workers(system, commands, label)
        timeout = 120 + jobs / 5
        if system.bursts:
            for process in processes:
                code = process.wait(timeout=timeout)
                process.close()
                if code != 0:
                    raise RuntimeError(f"worker exited {code}; log: {process.log_path}")
        else:  # no burst mode: stop the workers once the store counts every job
            try:
                wait_for(
                    lambda: finished_all(system, jobs, processes),
                    timeout,
                    f"{label} to finish",
                    interval=0.1,
                )
            finally:
                for process in processes:
                    process.terminate()
        wall = time.monotonic() - started
        window = system.window()
        if window.count != jobs:
            raise RuntimeError(f"{window.count} of {jobs} jobs finished ({label})")
        seconds, cold = window.seconds, window.last_finished.timestamp() - spawned
        log(f"{label}: {jobs} jobs in {seconds:.2f}s, {cold:.2f}s from spawn")
        self.report.detail(label, jobs=jobs, seconds=seconds, cold=cold, wall=wall)
        return jobs / seconds, jobs / cold


def finished_all(system, jobs, processes):
    """Say whether the store counts `jobs` finished; raise if a worker died."""
    for process in processes:
        if process.popen.poll() is not None:
            code = process.popen.returncode
            raise RuntimeError(f"worker exited {code}; log: {process.log_path}")
    return system.finished() >= jobs


def database_targets(task, workers):
    """Return the targets of our database path: with one worker, against
    django-tasks-db and absolute."""
    if workers != 1:
        return []
    if task == "noop":
        return [at_least(10, True), at_least(3000)]
    return [at_least(400)]
