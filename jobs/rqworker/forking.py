"""The forking RQ worker: claims in the worker, runs in a work horse."""

import tempfile
import time

from django.db import connections
from rq import Worker
from rq.worker import WorkerStatus

from .. import conf
from ..core import transitions
from ..notify import rq_push
from ..notify.pusher import pusher
from . import handover
from .base import JobsWorkerMixin
from .handover import HandOver
from .job import claim_all, job_id_list, skip
from .leases import database_in_use, lease_keeper
from .unrecorded import unrecorded


class JobsWorker(JobsWorkerMixin, Worker):
    """RQ's forking worker: each job runs in a new work horse process.

    The worker claims the job before forking and records its success after
    the horse exits (see `HandOver`); the horse never uses the worker's
    database connections.
    """

    def execute_job(self, job, queue):
        job_ids = rq_job_arguments(job)
        # Busy before the claim, as RQ marks itself before a fork: a SIGTERM
        # now waits for these jobs instead of stopping with them claimed.
        # RQ reads its own field for that; Redis is told after the claim, so
        # the jobs do not wait for a round trip to start.
        self._state = WorkerStatus.BUSY
        claimed = self.claim(job_ids) if job_ids else []
        self.set_state(WorkerStatus.BUSY)
        if not claimed:  # not claimable, or not ours: the horse decides
            return super().execute_job(job, queue)
        with tempfile.TemporaryFile("w+") as report, lease_keeper.holding(*claimed):
            handover.handed_over = hand_over = HandOver(job_ids, claimed, report)
            try:
                super().execute_job(job, queue)
            except ForkFailed as e:  # no work horse: not the jobs' fault
                self.fork_failed(job, queue, claimed, e.__cause__)
                return
            finally:
                handover.handed_over = None
            hand_over.record()  # successes wait in `unrecorded`, still held

    def claim(self, job_ids):
        """Claim the RQ job's rows; leave those of them not claimable as
        `skip` says."""
        rq_push.forget_batched(job_ids)
        claimed = claim_all(job_ids)
        # None claimed: the horse decides about each, as for a single job.
        if claimed and len(claimed) < len(job_ids):
            taken = {str(job.pk) for job in claimed}
            for job_id in job_ids:
                if job_id not in taken:
                    skip(job_id)
        return claimed

    def handle_warm_shutdown_request(self):
        # The horse ends the job it runs and starts no other of its batch;
        # the others go back to the queue.
        if handover.handed_over is not None:
            handover.handed_over.stop_after_current()
        super().handle_warm_shutdown_request()

    def fork_failed(self, job, queue, claimed, error):
        """Give the claimed jobs back at once, their attempts not counted."""
        first = claimed[0].pk
        self.log.error("could not fork a work horse for job %s: %s", first, error)
        with self.redis_may_fail("failing RQ job"):
            self.handle_job_failure(job, queue, exc_string=f"fork failed: {error}")
        transitions.release(claimed)  # pushes them again
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
            hand_over.jobs[0].pk,
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


def rq_job_arguments(job):
    """Return the job ids an RQ job of ours carries, or None."""
    try:
        return job_id_list(job.args) if job.func_name == rq_push.RQ_FUNCTION else None
    except Exception:  # not ours, or unreadable: the horse reports it as RQ does
        return None
