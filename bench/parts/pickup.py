"""Pickup: idle workers, jobs enqueued one by one at `--rate` jobs/s; the
latency of a job is its start minus its enqueue, in the system's store.
"""

import time

from tests.services import wait_for

from ..report import at_most, percentile
from ..systems import RQ_CLASSES
from .base import Part

WARMUP_JOBS = 5  # the first jobs picked up are warm-up and dropped
# Our figure, its baseline, and its p50 and p99 targets in ms. The forking
# RQ worker is the default worker class (issue 23: <= 2 / 10 ms).
PAIRS = [
    ("ours_db", "dtdb", 5, 15),
    ("ours_rq.simple", "rq.simple", 3, 15),
    ("ours_rq.fork", "rq.fork", 2, 10),
]


class Pickup(Part):
    """Time how long an idle worker of each kind takes to start a new job."""

    name = "pickup"

    def define(self):
        define = self.report.define
        for ours, base, p50, p99 in PAIRS:
            if self.harness.baselines:
                define(f"pickup.{base}.p50", "ms")
                define(f"pickup.{base}.p99", "ms")
            targets = ([at_most(p50)], [at_most(p99)])
            for quantile, target in zip(("p50", "p99"), targets, strict=True):
                baseline = f"pickup.{base}.{quantile}"
                define(f"pickup.{ours}.{quantile}", "ms", baseline, target)

    def run(self):
        harness = self.harness
        dtdb, ours = harness.dtdb, harness.ours
        if harness.baselines:
            self._pickup(
                "pickup.dtdb",
                dtdb,
                [dtdb.worker(burst=False)],
                lambda ps: dtdb.workers_ready(1, ps),
            )
        self._pickup(
            "pickup.ours_db",
            ours,
            [ours.db_worker(burst=False)],
            lambda ps: ours.workers_ready(1),
        )
        for kind, classes in RQ_CLASSES.items():
            self._run_rq(kind, *classes)

    def _run_rq(self, kind, ours_class, rq_class):
        rq, ours = self.harness.rq, self.harness.ours_redis
        if self.harness.baselines:
            self._pickup(
                f"pickup.rq.{kind}",
                rq,
                [rq.worker(rq_class, burst=False)],
                lambda ps: rq.workers_ready(1),
            )
        self._pickup(
            f"pickup.ours_rq.{kind}",
            ours,
            [ours.rq_worker(ours_class, burst=False)],
            lambda ps: ours.workers_ready(1),
        )

    def _pickup(self, prefix, system, commands, ready):
        names = [f"{prefix}.p50", f"{prefix}.p99"]
        self.harness.measure(
            names, lambda: self.pickup(system, commands, prefix, ready)
        )

    def pickup(self, system, commands, label, ready):
        """Pace jobs into idle workers; return the p50 and p99 latency in ms."""
        system.reset()
        processes = self.harness.start_workers(system, commands, label)
        try:
            wait_for(lambda: ready(processes), 60, f"{label} workers to start")
            time.sleep(0.5)  # past start-up work (LISTEN, first poll)
            sent = system.client(
                "pace", rate=self.options.rate, seconds=self.options.pace_seconds
            )
            wait_for(
                lambda: system.finished() >= sent["jobs"], 60, f"{label} to finish"
            )
        finally:
            for process in processes:
                process.terminate()
        rows = system.pickups()[WARMUP_JOBS:]
        self.report.detail(label, jobs=len(rows))
        latencies = [
            (started - enqueued).total_seconds() * 1000 for enqueued, started in rows
        ]
        return percentile(latencies, 0.5), percentile(latencies, 0.99)
