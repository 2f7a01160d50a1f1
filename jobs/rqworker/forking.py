"""The forking RQ worker: claims in the worker, runs in a work horse."""

import time
from contextlib import contextmanager
from functools import partial

from django.db import connections
from rq import Worker
from rq.worker import WorkerStatus

from .. import conf
from ..core import transitions
from ..notify import rq_push
from ..notify.pusher import pusher
from . import handover
from .base import JobsWorkerMixin
from .claim_at_pop import claims
from .claiming import claim_all
from .handover import HandOver
from .horse import Horse, leave_the_worker
from .job import job_id_list, skip
from .leases import database_in_use, lease_keeper


class JobsWorker(JobsWorkerMixin, Worker):
    """RQ's forking worker: jobs run in a work horse process, kept for many
    RQ jobs (`horse`), so a task that crashes its process cannot take the
    worker down.

    The worker claims an RQ job's rows (the first as it pops the RQ job,
    `claim_at_pop`), hands them to the horse, does RQ's bookkeeping while
    the horse runs them, and records their successes (see `HandOver`); the
    horse never uses the worker's database connections.
    An RQ job whose rows it could not claim (or not ours) goes to a horse of
    RQ's own, forked for it, which decides about each.
    """

    horse = None  # the kept work horse, once forked

    def execute_job(self, job, queue):
        job_ids = rq_job_arguments(job)
        # Busy before the claim, as RQ marks itself before a fork: a SIGTERM
        # now waits for these jobs instead of stopping with them claimed.
        # RQ reads its own field for that; Redis is told after the claim, so
        # the jobs do not wait for a round trip to start.
        self._state = WorkerStatus.BUSY
        at_pop = claims.take(job.id, job_ids)
        claimed = self.claim(job_ids, at_pop) if job_ids else []
        self.set_state(WorkerStatus.BUSY)
        if not claimed:  # not claimable, or not ours: the horse decides
            return super().execute_job(job, queue)
        with lease_keeper.holding(*claimed):
            timeout = job.timeout if job.timeout and job.timeout > 0 else -1
            hand_over = HandOver(job_ids, claimed, timeout)
            self.prepare_execution(job)
            try:
                hand_over.horse = horse = self.kept_horse()
            except OSError as e:  # out of memory or processes: no horse runs it
                self.fork_failed(job, queue, claimed, e)
                return
            hand_over.stop_flag = horse.stop_flag
            every = self.job_monitoring_interval
            hand_over.monitor = (partial(self.heartbeat_while, job), every)
            handover.handed_over, self._horse_pid = hand_over, horse.pid
            with self.redis_lost_around(job):
                try:
                    self.perform_job(job, queue)  # the horse runs the function
                finally:
                    handover.handed_over, self._horse_pid = None, 0
                    if not horse.alive or horse.spent():
                        self.retire_horse()
                self.set_state(WorkerStatus.IDLE)
            hand_over.record()  # successes wait in `unrecorded`, still held

    def kept_horse(self):
        """Return the work horse, forked now if there is none (OSError: the
        fork failed)."""
        if self.horse is not None and not self.horse.fit():
            self.retire_horse()
        if self.horse is None:
            self.horse = Horse()
        return self.horse

    def retire_horse(self):
        if self.horse is not None:
            self.horse.retire()
            self.horse = None

    def heartbeat_while(self, job):
        """Keep RQ's worker, execution and job alive while a long job runs."""
        with self.redis_may_fail("heartbeat"):
            self.maintain_heartbeats(job)

    def work(self, *args, **kwargs):
        try:
            return super().work(*args, **kwargs)
        finally:
            self.retire_horse()

    def claim(self, job_ids, at_pop=None):
        """Claim the RQ job's rows (`at_pop`: its first row's claim at the
        pop, `claim_at_pop`); leave those of them not claimable as `skip`
        says."""
        rq_push.forget_batched(job_ids)
        rest = job_ids if at_pop is None else job_ids[1:]
        claimed = [*(at_pop or []), *(claim_all(rest) if rest else [])]
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
        leave_the_worker()
        return super().main_work_horse(job, queue)

    def perform_job(self, job, queue):
        if not self.is_horse:  # the worker: its kept horse runs the tasks
            with no_alarm(self):  # the horse has the soft limit, we the hard
                return super().perform_job(job, queue)
        try:
            return super().perform_job(job, queue)
        finally:
            # The horse exits without running atexit: push what its job
            # enqueued now, not after the re-dispatch grace.
            pusher.flush(timeout=5)
            connections.close_all()  # the work horse's own; it exits now


@contextmanager
def no_alarm(worker):
    """Run RQ's `perform_job` in the worker without RQ's alarm."""
    worker.death_penalty_class = NoAlarm
    try:
        yield
    finally:
        del worker.death_penalty_class


class NoAlarm:
    """A death penalty class (as RQ calls one) that sets no alarm."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        pass

    def __exit__(self, *exc_info):
        return False


class ForkFailed(Exception):  # noqa: N818 (it names what happened)
    """No work horse was forked for the job (the OSError is its cause)."""


def rq_job_arguments(job):
    """Return the job ids an RQ job of ours carries, or None."""
    try:
        return job_id_list(job.args) if job.func_name == rq_push.RQ_FUNCTION else None
    except Exception:  # not ours, or unreadable: the horse reports it as RQ does
        return None
