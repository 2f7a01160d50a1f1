"""The hand-over between a forking worker and its work horse, and how the
horse reports back."""

import json
import logging
from contextlib import suppress
from datetime import datetime

from ..core import execution, recording, transitions
from ..exceptions import TaskNotFound, WorkerLost
from ..log import log_event
from .timeouts import record_overrun, rq_timeout_as_job_timeout
from .unrecorded import unrecorded


class HandOver:
    """A job a forking worker claimed for the work horse it is about to fork.

    The worker claims, renews the lease and records a success with its own
    database connection, kept across jobs; the horse only runs the task and
    writes its return value to `report`. So a no-op job costs the horse no
    database connection (a new PostgreSQL connection is dearer than a short
    job). A failure the horse records itself, with a connection of its own.
    """

    def __init__(self, job, report):
        self.job = job
        self.report = report
        self.overran = None  # RQ's timeout, once the worker ended the horse

    def run(self):
        """In the work horse: run the job, report a success to the worker."""
        outcome = execution.run(self.job, guard=rq_timeout_as_job_timeout)
        if not outcome.succeeded:
            recording.finish([outcome])
            return "failed"
        finished_at = outcome.finished_at.isoformat()
        json.dump([outcome.value, finished_at, outcome.duration], self.report)
        self.report.flush()
        return "succeeded"

    def record(self):
        """In the worker, once the horse is gone: record what it reported."""
        self.report.seek(0)
        text = self.report.read()
        if not text:
            self.record_end("The work horse running this job died.")
            return
        try:
            value, finished_at, duration = json.loads(text)
            finished_at = datetime.fromisoformat(finished_at)
        except (ValueError, TypeError):
            self.record_end("The work horse running this job left no readable report.")
            return
        outcome = execution.Outcome(
            job=self.job, value=value, finished_at=finished_at, duration=duration
        )
        with suppress(TaskNotFound):  # it ran, so it imported in the horse
            execution.describe(outcome)
        unrecorded.add(outcome)

    def record_end(self, how):
        """Record a horse that ended without a readable report, unless it
        recorded a failure itself: timed out when the worker ended it at its
        hard limit, else lost. Retried now, not when the lease expires."""
        if not transitions.still_held(self.job):
            return
        if self.overran is not None:
            record_overrun(self.job, self.job.timeout or self.overran)
            return
        for job in transitions.put_back([self.job], WorkerLost(how), True):
            log_event("rescued", job, level=logging.WARNING)


handed_over = None  # the HandOver of the work horse being forked, if any
