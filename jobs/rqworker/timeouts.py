"""Time limits on the RQ path: RQ's alarm raises our JobTimeout (the soft
limit); the watchdog of a non-forking worker is its hard limit."""

import logging
import math
import os
import sys
import threading
import time
from contextlib import contextmanager

from django.db import DatabaseError
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty

from .. import conf
from ..core import execution, recording
from ..exceptions import JobTimeout

logger = logging.getLogger("jobs.rq")


@contextmanager
def rq_timeout_as_job_timeout(task):
    """Report RQ's timeout like ours: a JobTimeout naming the job's timeout
    (RQ's alarm counts whole seconds)."""
    try:
        yield
    except (JobTimeoutException, JobTimeout):
        raise JobTimeout(execution.timeout_message(task.timeout)) from None


@contextmanager
def time_limits(job, task):
    """The soft limit is RQ's alarm (`JobsDeathPenalty`); where the task runs
    in the worker's own main thread, `watchdog` is the hard limit."""
    with rq_timeout_as_job_timeout(task), watchdog.watching(job, task):
        yield


class JobsDeathPenalty(UnixSignalDeathPenalty):
    """RQ's alarm, raising our JobTimeout when a job's time is up.

    RQ raises its JobTimeoutException, an Exception: the common `except
    Exception:` in a task swallowed it and the job ran on. JobTimeout is a
    BaseException. The alarm of the forking worker's horse monitor
    (HorseMonitorTimeoutException) stays RQ's own.
    """

    def handle_death_penalty(self, signum, frame):
        if issubclass(self._exception, JobTimeoutException):
            raise JobTimeout(execution.timeout_message(self._timeout))
        super().handle_death_penalty(signum, frame)

    def __exit__(self, *exc_info):
        try:
            return super().__exit__(*exc_info)
        except JobTimeout:  # the alarm rang as the body ended: it is done
            return False


def record_overrun(job, timeout, started=None):
    """Record `job`, which its worker ended at the hard limit, as timed out."""
    duration = 0.0 if started is None else time.monotonic() - started
    recording.record_hard_timeout(job, timeout, "it was ended", duration=duration)


class Watchdog:
    """The hard limit of a worker that runs tasks in its own main thread.

    A task that swallows even JobTimeout (a bare `except:`), or is blocked in
    C (a long sleep, a socket read), cannot be stopped in its thread. At its
    deadline plus JOB_TIMEOUT_GRACE_SECONDS the watchdog records the job as
    timed out and ends the process with status 1, for its supervisor
    (rqworker-pool, systemd) to start a fresh one. A task holding the GIL in
    C stops the watchdog too; the rescuer takes the job once its lease ends.
    """

    def __init__(self):
        self.worker = None  # the JobsSimpleWorker watched; None: off

    @contextmanager
    def watching(self, job, task):
        timeout = getattr(task, "timeout", None)
        if self.worker is None or not timeout:
            yield
            return
        started = time.monotonic()
        # RQ's alarm rings at the timeout rounded up to a whole second.
        limit = math.ceil(timeout) + conf.get("JOB_TIMEOUT_GRACE_SECONDS")
        timer = threading.Timer(limit, self.expire, (job, timeout, started))
        timer.name, timer.daemon = "job-watchdog", True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def expire(self, job, timeout, started):
        logger.error(
            "job %s ran %g s past its timeout of %g s and could not be stopped; "
            "recording it timed out and exiting 1",
            job.pk,
            conf.get("JOB_TIMEOUT_GRACE_SECONDS"),
            timeout,
        )
        try:
            record_overrun(job, timeout, started)
        except DatabaseError as e:
            logger.error("could not record job %s timed out: %s", job.pk, e)
        finally:
            self.worker.abandon()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)


watchdog = Watchdog()
