"""Carry on where stock RQ quits when Redis fails."""

import os
import time
from contextlib import contextmanager, suppress

import redis
from rq.worker import WorkerStatus


class RedisOutageMixin:
    """Ride out a Redis outage: the row in `jobs_job` keeps every outcome.

    Stock RQ waits for Redis only inside the dequeue; anywhere else a lost
    connection ends the worker.
    """

    @contextmanager
    def redis_may_fail(self, what):
        """Stock RQ quits when Redis fails outside the dequeue that waits for
        it to come back. Log and carry on instead: the dequeue that follows
        waits (with RQ's backoff), and the step runs again on the next turn."""
        try:
            yield
        except redis.ConnectionError as e:
            self.log.warning("could not connect to Redis (%s): %s", what, e)

    def run_maintenance_tasks(self):
        with self.redis_may_fail("RQ maintenance"):
            super().run_maintenance_tasks()

    def execute_job(self, job, queue):
        with self.redis_lost_around(job):
            return super().execute_job(job, queue)

    @contextmanager
    def redis_lost_around(self, job):
        # Stock RQ quits when Redis fails around a job (its bookkeeping, the
        # horse's heartbeats). The row holds the outcome, or the horse is
        # waited for and its report recorded: carry on with the next job.
        try:
            yield
        except redis.ConnectionError as e:
            self.log.warning(
                "lost Redis around RQ job %s: %s; its row keeps the outcome", job.id, e
            )
            horse = getattr(self, "_horse_pid", 0)
            if horse:
                with suppress(ChildProcessError):
                    os.waitpid(horse, 0)
                self._horse_pid = 0
            self._state = WorkerStatus.IDLE  # set_state would need Redis

    def dequeue_job_and_maintain_ttl(self, *args, **kwargs):
        # RQ waits for Redis inside, but not when marking itself idle first.
        wait = 1.0
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(*args, **kwargs)
            except redis.ConnectionError as e:
                self.log.warning(
                    "could not connect to Redis: %s; retrying in %d seconds", e, wait
                )
                time.sleep(wait)
                wait = min(
                    wait * self.exponential_backoff_factor,
                    self.max_connection_wait_time,
                )
