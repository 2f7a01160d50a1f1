"""Enqueue: jobs/s of N enqueues in one process, one at a time and in bulk."""

from ..report import at_least
from .base import Part


class Enqueue(Part):
    """Time each system's client enqueueing N jobs singly and 4N in bulk."""

    name = "enqueue"

    def define(self):
        define = self.report.define
        if self.harness.baselines:
            define("enqueue.rq.single", "jobs/s")
            define("enqueue.dtdb.single", "jobs/s")
            define("enqueue.rq.bulk", "jobs/s")
        for path in ("ours_db", "ours_redis"):
            single, bulk = f"enqueue.{path}.single", f"enqueue.{path}.bulk"
            define(single, "jobs/s", "enqueue.rq.single", [at_least(0.5, True)])
            define(bulk, "jobs/s", "enqueue.rq.bulk", [at_least(25_000)])

    def run(self):
        harness = self.harness
        jobs = self.options.jobs
        for action, count in (("single", jobs), ("bulk", jobs * 4)):
            if harness.baselines:
                self._enqueue(f"enqueue.rq.{action}", harness.rq, action, count)
                # django-tasks-db has no bulk enqueue API.
                if action == "single":
                    self._enqueue("enqueue.dtdb.single", harness.dtdb, action, count)
            self._enqueue(f"enqueue.ours_db.{action}", harness.ours, action, count)
            ours_redis = harness.ours_redis
            self._enqueue(f"enqueue.ours_redis.{action}", ours_redis, action, count)

    def _enqueue(self, name, system, action, jobs):
        def run():
            system.reset()
            return system.client(action, jobs=jobs)["rate"]

        self.harness.measure([name], run)
