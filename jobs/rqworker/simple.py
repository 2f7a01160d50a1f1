"""The non-forking RQ worker: jobs run in the worker's own process."""

import time

from django.db import close_old_connections, connections
from rq import SimpleWorker

from .base import JobsWorkerMixin, ours
from .claim_at_pop import claims
from .timeouts import watchdog


class JobsSimpleWorker(JobsWorkerMixin, SimpleWorker):
    """RQ's non-forking worker: faster, jobs share the worker's process.

    A job that outlives its timeout and grace ends the process (`Watchdog`).
    """

    connections_checked = 0.0

    def work(self, *args, **kwargs):
        watchdog.worker = self
        try:
            return super().work(*args, **kwargs)
        finally:
            watchdog.worker = None

    def execute_job(self, job, queue):
        # The row claimed at its pop runs in `job.execute`; an RQ job not
        # ours gives it back before it runs, not after.
        if not ours(job):
            claims.give_back()
        return super().execute_job(job, queue)

    def perform_job(self, job, queue):
        try:
            return super().perform_job(job, queue)
        finally:
            self.tidy_connections()

    def tidy_connections(self):
        """Drop broken or expired database connections between jobs.

        At once after a database error; otherwise at most once a second, as
        with CONN_HEALTH_CHECKS every `close_old_connections()` makes the
        next query ask the server `SELECT 1` first, a round trip per job.
        """
        now = time.monotonic()
        failed = any(c.errors_occurred for c in connections.all(initialized_only=True))
        if failed or now - self.connections_checked >= 1.0:
            close_old_connections()
            self.connections_checked = now
