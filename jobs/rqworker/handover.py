"""The hand-over between a forking worker and its work horse, and how the
horse reports back."""

import json
import logging
import os
import time
from contextlib import suppress
from datetime import datetime

from .. import conf
from ..core import execution, recording, transitions
from ..exceptions import TaskNotFound, WorkerLost
from ..log import log_event
from .timeouts import record_overrun, rq_timeout_as_job_timeout
from .unrecorded import unrecorded


class HandOver:
    """The jobs a forking worker claimed for its work horse: one RQ job's
    rows, run one after the other.

    The worker claims, renews the leases and records successes with its own
    database connection, kept across jobs; the horse (`horse.Horse`) only
    runs the tasks and writes a line to `report` as each starts and ends. So
    a no-op job costs the horse no database connection. A failure the horse
    records itself, with a connection of its own.
    """

    def __init__(self, job_ids, jobs, timeout=-1):
        self.job_ids = job_ids  # what the RQ job carries
        self.jobs = jobs  # those of them the worker claimed, in that order
        self.timeout = timeout  # RQ's, in whole seconds; -1: none
        self.report = []  # the horse's lines, as it wrote them
        self.overran = None  # RQ's timeout, once the worker ended the horse
        self.horse = None  # the worker's Horse that runs them
        self.sent = False  # handed to the horse (else none of them started)
        self.monitor = (lambda: None, 30)  # heartbeat() while waiting, every s
        self.stop_flag = None  # shared with the horse: set, it starts no other
        self.worker_pid = os.getpid()
        self.claimed_at = time.monotonic()  # one clock for both processes

    @classmethod
    def in_horse(cls, jobs, timeout, claimed_at, report, stop_flag, worker_pid):
        """The hand-over as the horse receives it."""
        hand_over = cls([str(job.pk) for job in jobs], jobs, timeout)
        hand_over.claimed_at, hand_over.report = claimed_at, report
        hand_over.stop_flag, hand_over.worker_pid = stop_flag, worker_pid
        return hand_over

    clock = staticmethod(time.monotonic)

    def carries(self, job_ids):
        return self.job_ids == job_ids

    def stop_after_current(self):
        """Ask the horse to start no further job (the worker stops): it runs
        the job in hand, or the first if it has not begun."""
        if self.stop_flag is not None:
            self.stop_flag[0] = 1

    def hard_limit(self):
        """When the worker ends the horse (`clock`), if the job has a timeout."""
        if self.timeout <= 0:
            return None
        return self.clock() + self.timeout + conf.get("JOB_TIMEOUT_GRACE_SECONDS")

    def run(self):
        """In the worker (RQ's job function): have the horse run the jobs."""
        return self.horse.run(self, *self.monitor)

    def run_jobs(self):
        """In the work horse: run the jobs in order, report each to the worker."""
        outcomes = []
        for job in self.jobs:
            if outcomes and self.stopping():  # the first is in hand already
                break
            self.write(["started", str(job.pk)])
            outcome = execution.run(job, guard=rq_timeout_as_job_timeout)
            if outcome.succeeded:
                finished_at = outcome.finished_at.isoformat()
                line = ["ok", str(job.pk), outcome.value, finished_at, outcome.duration]
                self.write(line)
                outcomes.append("succeeded")
                continue
            recording.finish([outcome])
            self.write(["failed", str(job.pk)])
            outcomes.append("failed")
        return ", ".join(outcomes)

    def stopping(self):
        """In the work horse: say whether to start no further job. Its
        worker stops, or died (the worker renews the leases: without it the
        rescuer may give the rest to another worker), or the batch was
        claimed JOB_PREFETCH_HOLD_SECONDS ago (as the database worker's jobs
        claimed ahead, the rest go back, for an idle worker to take)."""
        held = time.monotonic() - self.claimed_at
        return (
            bool(self.stop_flag[0])
            or os.getppid() != self.worker_pid
            or held >= conf.get("JOB_PREFETCH_HOLD_SECONDS")
        )

    def write(self, line):
        self.report.write(json.dumps(line) + "\n")
        self.report.flush()

    def record(self):
        """In the worker, once the horse is gone: record what it reported.

        A job it started and did not end was lost with the horse: charged an
        attempt now, not when its lease expires. Jobs it never started go
        back uncharged. A horse that reported nothing lost the first job.
        """
        if not self.sent:  # RQ's bookkeeping failed before: none started
            transitions.release(self.jobs)
            return
        started, ended, readable = self.read()
        by_pk = {str(job.pk): job for job in self.jobs}
        lost = [by_pk[pk] for pk in started if pk not in ended]
        if not started:
            lost = self.jobs[:1]
        for pk, line in ended.items():
            if line[0] == "ok":
                self.record_success(by_pk[pk], line)
        how = "died" if readable else "left no readable report"
        for job in lost:
            self.record_end(job, f"The work horse running this job {how}.")
        done = {*started, *(str(job.pk) for job in lost)}
        transitions.release([job for job in self.jobs if str(job.pk) not in done])

    def read(self):
        """Return the pks the horse started, {pk: line} of those it ended,
        and whether every line read."""
        started, ended = [], {}
        for text in "".join(self.report).splitlines():
            try:
                kind, pk, *_ = line = json.loads(text)
            except (ValueError, TypeError):  # cut short, or spoiled
                return started, ended, False
            if kind == "started":
                started.append(pk)
            else:
                ended[pk] = line
        return started, ended, True

    def record_success(self, job, line):
        _, _, value, finished_at, duration = line
        finished_at = datetime.fromisoformat(finished_at)
        outcome = execution.Outcome(
            job=job, value=value, finished_at=finished_at, duration=duration
        )
        with suppress(TaskNotFound):  # it ran, so it imported in the horse
            execution.describe(outcome)
        unrecorded.add(outcome)

    def record_end(self, job, how):
        """Record a job whose horse ended before it did, unless it recorded
        a failure itself: timed out when the worker ended it at its hard
        limit, else lost. Retried now, not when the lease expires."""
        if not transitions.still_held(job):
            return
        if self.overran is not None:
            record_overrun(job, job.timeout or self.overran)
            return
        for lost in transitions.put_back([job], WorkerLost(how), True):
            log_event("rescued", lost, level=logging.WARNING)


handed_over = None  # the HandOver of the work horse being forked, if any
