"""Our RQ worker classes, which `manage.py rqworker` runs (settings `RQ`).

They add what RQ does not know about: the priority bands, the scheduler
(for delays and retries) and our maintenance (rescue, re-dispatch).
"""

import os
import tempfile
import time
from contextlib import contextmanager, suppress
from uuid import UUID

import redis
from django.db import DatabaseError, close_old_connections, connections
from rq import SimpleWorker, Worker
from rq.exceptions import DeserializationError
from rq.job import JobStatus as RQJobStatus
from rq.serializers import JSONSerializer
from rq.utils import now as rq_now
from rq.worker import WorkerStatus

from .. import conf, heartbeat
from ..core import transitions
from ..notify import link, rq_push
from ..notify.pusher import pusher
from . import handover
from .handover import HandOver
from .job import claim, worker_id
from .leases import database_in_use, lease_keeper
from .maintainer import Maintainer
from .queues import recording, with_bands
from .timeouts import JobsDeathPenalty, watchdog
from .unrecorded import record_unrecorded, unrecorded


class JobsWorkerMixin:
    # RQ renews its worker key three times per job, two round trips each:
    # a fifth of a no-op job's time. The key lives `worker_ttl` + 60 s
    # (8 minutes), so once a second is plenty.
    heartbeat_every = 1.0
    heartbeat_sent = float("-inf")
    death_penalty_class = JobsDeathPenalty

    def __init__(self, queues, *args, **kwargs):
        # JSON, never pickle, whatever `--serializer` says (see `json_queue`).
        kwargs["serializer"] = JSONSerializer
        super().__init__(with_bands(queues), *args, **kwargs)
        self.queue_class = recording(self.queue_class)
        # A work horse connects to Redis anew (RQ's clients are per process).
        for client in {self.connection, *(queue.connection for queue in self.queues)}:
            link.share_driver_info(client)

    # A scheduler process that died (Redis went away under it) is started
    # again within this many seconds.
    scheduler_check_every = 5.0
    scheduler_checked = float("-inf")

    def heartbeat(self, timeout=None, pipeline=None):
        if timeout is None and pipeline is None:
            if not self.time_for("heartbeat_sent", self.heartbeat_every):
                return
            with self.redis_may_fail("heartbeat"):  # the next dequeue waits
                super().heartbeat()
            return
        super().heartbeat(timeout, pipeline)

    def revive_scheduler(self):
        """Start RQ's scheduler process again if it died (its maintainer
        calls this); stock RQ waits for its next maintenance, 10 minutes."""
        if not self.time_for("scheduler_checked", self.scheduler_check_every):
            return
        process = getattr(self.scheduler, "_process", None)
        if process is not None and not process.is_alive():
            self.log.warning("RQ scheduler process died; starting it again")
            self.scheduler.acquire_locks(auto_start=True)

    def time_for(self, last, every):
        """True, and now is the time of `last`, if `every` seconds passed since."""
        now = time.monotonic()
        if now - getattr(self, last) < every:
            return False
        setattr(self, last, now)
        return True

    @contextmanager
    def redis_may_fail(self, what):
        """Stock RQ quits when Redis fails outside the dequeue that waits for
        it to come back. Log and carry on instead: the dequeue that follows
        waits (with RQ's backoff), and the step runs again on the next turn."""
        try:
            yield
        except redis.ConnectionError as e:
            self.log.warning("could not connect to Redis (%s): %s", what, e)

    # RQ asks Redis whether `rq suspend` was run before every job, a round
    # trip each: once a second is soon enough.
    suspension_check_every = 1.0
    suspension_checked = float("-inf")

    def check_for_suspension(self, burst):
        if not self.time_for("suspension_checked", self.suspension_check_every):
            return
        with self.redis_may_fail("suspension check"):
            super().check_for_suspension(burst)

    def set_state(self, state, pipeline=None):
        # RQ marks the worker idle after each job and again before it takes
        # the next: the second write, a round trip, changes nothing.
        if pipeline is None and state == WorkerStatus.IDLE == self._state:
            return
        super().set_state(state, pipeline)

    def run_maintenance_tasks(self):
        with self.redis_may_fail("RQ maintenance"):
            super().run_maintenance_tasks()

    def abandon(self):
        """Tidy up before the process ends at once (`Watchdog.expire`):
        stop RQ's scheduler process and leave the worker registry."""
        with suppress(Exception):  # best effort: the process ends anyway
            if self.scheduler is not None:
                self.stop_scheduler()
        with suppress(DatabaseError):
            heartbeat.unregister(worker_id())

    def execute_job(self, job, queue):
        # Stock RQ quits when Redis fails around a job (its bookkeeping, the
        # horse's heartbeats). The row holds the outcome, or the horse is
        # waited for and its report recorded: carry on with the next job.
        try:
            return super().execute_job(job, queue)
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

    def handle_execution_ended(self, job, queue, heartbeat_ttl):
        # RQ writes a job's heartbeat once more as it ends, a round trip of
        # its own. After a success of ours, the job hash RQ saves next
        # carries it.
        if not ours(job) or job.get_status(refresh=False) == RQJobStatus.FAILED:
            return super().handle_execution_ended(job, queue, heartbeat_ttl)
        job.ended_at = job.last_heartbeat = rq_now()

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

    def work(self, *args, **kwargs):
        conf.check_database()
        connections.close_all()  # never share a connection with a work horse
        worker_id()  # named before the work horses fork, so they share it
        # Delayed jobs and retries are pushed with `enqueue_at`: RQ's scheduler
        # moves them to their queue when due.
        kwargs["with_scheduler"] = True
        maintainer = None if kwargs.get("burst") else Maintainer(self)
        if maintainer:
            maintainer.start()
        unrecorded.deferring = True
        try:
            return super().work(*args, **kwargs)
        finally:
            record_unrecorded()
            unrecorded.deferring = False
            if maintainer:
                maintainer.stop()


class JobsWorker(JobsWorkerMixin, Worker):
    """RQ's forking worker: each job runs in a new work horse process.

    The worker claims the job before forking and records its success after
    the horse exits (see `HandOver`); the horse never uses the worker's
    database connections.
    """

    def execute_job(self, job, queue):
        job_id = rq_job_argument(job)
        # Busy before the claim, as RQ marks itself before a fork: a SIGTERM
        # now waits for this job instead of stopping with it claimed.
        self.set_state(WorkerStatus.BUSY)
        claimed = claim(job_id) if job_id else None
        if claimed is None:  # not claimable, or not ours: the horse decides
            return super().execute_job(job, queue)
        with tempfile.TemporaryFile("w+") as report:
            with lease_keeper.holding(claimed):
                handover.handed_over = hand_over = HandOver(claimed, report)
                try:
                    super().execute_job(job, queue)
                except ForkFailed as e:  # no work horse: not the job's fault
                    self.fork_failed(job, queue, claimed, e.__cause__)
                    return
                finally:
                    handover.handed_over = None
            hand_over.record()  # a success waits in `unrecorded`, still held

    def fork_failed(self, job, queue, claimed, error):
        """Give the claimed job back at once, its attempt not counted."""
        self.log.error("could not fork a work horse for job %s: %s", claimed.pk, error)
        with self.redis_may_fail("failing RQ job"):
            self.handle_job_failure(job, queue, exc_string=f"fork failed: {error}")
        transitions.release([claimed])  # pushes it again
        self.set_state(WorkerStatus.IDLE)
        time.sleep(1)  # forks that keep failing do not spin

    # RQ looks at its work horse every `job_monitoring_interval` (30 s) and
    # kills it 60 s after its timeout. While one of our jobs with a timeout
    # runs it looks every second, so that `maintain_heartbeats` ends a horse
    # that outlived its timeout by JOB_TIMEOUT_GRACE_SECONDS: the hard limit.
    def monitor_work_horse(self, job, queue):
        interval = self.job_monitoring_interval
        if handover.handed_over is not None and job.timeout and job.timeout > 0:
            self.job_monitoring_interval = 1
        try:
            super().monitor_work_horse(job, queue)
        finally:
            self.job_monitoring_interval = interval

    def maintain_heartbeats(self, job):
        hand_over = handover.handed_over
        grace = conf.get("JOB_TIMEOUT_GRACE_SECONDS")
        timeout = job.timeout if job.timeout and job.timeout > 0 else None
        overran = timeout and self.current_job_working_time > timeout + grace
        if hand_over is None or not overran or hand_over.overran is not None:
            return super().maintain_heartbeats(job)
        self.log.warning(
            "job %s ran %g s past its timeout of %d s; ending its work horse",
            hand_over.job.pk,
            grace,
            timeout,
        )
        hand_over.overran = job.timeout  # recorded timed out once it is gone
        self.kill_horse()

    def fork_work_horse(self, job, queue):
        with database_in_use:  # the horse releases its copy at once
            try:
                super().fork_work_horse(job, queue)
            except OSError as e:  # out of memory or processes: no horse runs it
                raise ForkFailed from e

    def main_work_horse(self, job, queue):
        database_in_use.release()
        # The worker's connections are its sockets: closing or using them
        # here would break them for the worker. psycopg does not close a
        # connection collected in another process than the one that made it.
        for alias in connections:
            connections[alias] = connections.create_connection(alias)
        # The worker's unrecorded successes are the worker's to record; the
        # horse records its own at once, as it exits after this job.
        unrecorded.outcomes = []
        unrecorded.deferring = False
        return super().main_work_horse(job, queue)

    def perform_job(self, job, queue):
        try:
            return super().perform_job(job, queue)
        finally:
            # The horse exits without running atexit: push what its job
            # enqueued now, not after the re-dispatch grace.
            pusher.flush(timeout=5)
            connections.close_all()  # the work horse's own; it exits now


class ForkFailed(Exception):  # noqa: N818 (it names what happened)
    """No work horse was forked for the job (the OSError is its cause)."""


def ours(job):
    """Say whether `job` is an RQ job of ours (False: not, or unreadable)."""
    try:
        return job.func_name == rq_push.RQ_FUNCTION
    except DeserializationError:  # not JSON: never unpickled, see `json_queue`
        return False


def rq_job_argument(job):
    """Return the job id an RQ job of ours carries, or None."""
    try:
        args = job.args if job.func_name == rq_push.RQ_FUNCTION else ()
        UUID(args[0])
    except Exception:  # not ours, or unreadable: the horse reports it as RQ does
        return None
    return args[0] if len(args) == 1 else None


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
