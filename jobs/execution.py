"""Claim, run, record: the only place a job's state changes while it runs.

Every transition is one conditional UPDATE guarded on the state it leaves and,
for a claimed job, on the lease token it was claimed with. A transition that
updates nothing means someone else moved the job first (a rescuer, an admin):
it is logged and never overwritten.
"""

import asyncio
import json
import logging
import os
import socket
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from inspect import iscoroutinefunction
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce
from django.tasks import TaskContext
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.json import normalize_json

from . import conf, dispatch
from .backend import JobsBackend, bind_task, resolve_task, task_result
from .exceptions import JobTimeout, WorkerLost
from .log import log_event
from .models import Job, JobStatus, JSONAppend, JSONPopLast
from .retry import RetryPolicy, decide

logger = logging.getLogger("jobs")


def new_worker_id():
    """Name this process: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{get_random_string(6)}"


def lease_expiry(now):
    return now + timedelta(seconds=conf.get("JOB_LEASE_SECONDS"))


# --- Transitions ----------------------------------------------------------


def claim(queues, limit, worker_id, token, job_id=None):
    """Claim up to `limit` due jobs of `queues` (None: any): READY -> RUNNING.

    Each claimed row counts one more attempt, records `worker_id` and carries
    `token` and a fresh lease. Returns the claimed jobs, highest priority first.
    """
    now = timezone.now()
    candidates = Job.objects.claimable(queues, now)
    if job_id is not None:
        candidates = candidates.filter(pk=job_id)
    # The selected rows stay locked until this short transaction commits;
    # other claimers skip them. The ids are fetched first on purpose: inside
    # `UPDATE ... WHERE id IN (SELECT ... LIMIT n SKIP LOCKED)` PostgreSQL may
    # run the subquery more than once and claim more than `limit` rows.
    with transaction.atomic(using=Job.objects.db):
        ids = list(
            candidates.select_for_update(skip_locked=True).values_list("pk", flat=True)[
                :limit
            ]
        )
        if not ids:
            return []
        jobs = Job.objects.filter(pk__in=ids, status=JobStatus.READY).update_returning(
            status=JobStatus.RUNNING,
            attempts=F("attempts") + 1,
            worker_ids=JSONAppend(F("worker_ids"), Value(worker_id)),
            started_at=Coalesce(F("started_at"), Value(now)),
            last_attempted_at=now,
            lease_token=token,
            lease_expires_at=lease_expiry(now),
        )
    jobs.sort(key=lambda job: (-job.priority, job.run_after))
    return jobs


def release(jobs):
    """RUNNING -> READY for claimed jobs that never started: undo the claim.

    The attempt and worker id the claim recorded are taken back, so
    `attempts` keeps counting real runs only.
    """
    if not jobs:
        return 0
    released = Job.objects.filter(
        pk__in=[job.pk for job in jobs],
        status=JobStatus.RUNNING,
        lease_token__in={job.lease_token for job in jobs},
    ).update(
        status=JobStatus.READY,
        attempts=F("attempts") - 1,
        worker_ids=JSONPopLast(F("worker_ids")),
        started_at=Case(When(attempts=1, then=None), default=F("started_at")),
        last_attempted_at=Case(
            When(attempts=1, then=None), default=F("last_attempted_at")
        ),
        lease_token="",
        lease_expires_at=None,
    )
    dispatch.ring(jobs)
    return released


def renew_leases(jobs):
    """Extend the lease of jobs this worker still runs: the heartbeat."""
    if not jobs:
        return 0
    return Job.objects.filter(
        pk__in=[job.pk for job in jobs],
        status=JobStatus.RUNNING,
        lease_token__in={job.lease_token for job in jobs},
    ).update(lease_expires_at=lease_expiry(timezone.now()))


def report_progress(job, percent, message=""):
    """Store the progress of a running job (0-100 and a short message)."""
    percent = max(0, min(100, int(percent)))
    updated = Job.objects.filter(
        pk=job.pk, status=JobStatus.RUNNING, lease_token=job.lease_token
    ).update(progress=percent, progress_message=str(message)[:255])
    if updated:
        log_event("progress", job, percent=percent, message=message)
    return bool(updated)


def record_successes(outcomes):
    """RUNNING -> SUCCESSFUL for many jobs in one UPDATE."""
    if not outcomes:
        return 0
    return_value = Job._meta.get_field("return_value")
    values = {"status": JobStatus.SUCCESSFUL, "lease_expires_at": None}
    values["finished_at"] = Case(
        *(When(pk=o.job.pk, then=Value(o.finished_at)) for o in outcomes)
    )
    if any(o.value is not None for o in outcomes):
        values["return_value"] = Case(
            *(
                When(pk=o.job.pk, then=Value(o.value, output_field=return_value))
                for o in outcomes
            ),
            output_field=return_value,
        )
    updated = Job.objects.filter(
        pk__in=[o.job.pk for o in outcomes],
        status=JobStatus.RUNNING,
        lease_token__in={o.job.lease_token for o in outcomes},
    ).update(**values)
    if updated < len(outcomes):
        logger.warning(
            "%d of %d finished jobs had been moved by someone else; "
            "their results were not recorded",
            len(outcomes) - updated,
            len(outcomes),
        )
    return updated


def record_failure(outcome):
    """RUNNING -> READY (retry after a backoff) or FAILED, keeping the error."""
    job = outcome.job
    policy = retry_policy(job, outcome.task)
    decision = decide(policy, job.attempts, outcome.error)
    now = outcome.finished_at
    values = {
        "errors": [*job.errors, error_entry(job, outcome.error, outcome.traceback)],
        "lease_expires_at": None,
    }
    if decision.gives_up:
        values.update(status=JobStatus.FAILED, finished_at=now)
    else:
        values.update(status=JobStatus.READY, run_after=now + decision.retry_in)
    updated = Job.objects.filter(
        pk=job.pk, status=JobStatus.RUNNING, lease_token=job.lease_token
    ).update(**values)
    if not updated:
        log_event("lost", job, level=logging.WARNING)
        return None
    job.__dict__.update(values)
    if not decision.gives_up:
        dispatch.ring([job])
    return decision


def put_back(jobs, exception, give_up_when_exhausted):
    """RUNNING -> READY now (or FAILED), recording why the attempt was lost.

    Used by the rescuer (`WorkerLost`, attempts are counted) and by a worker
    stopped at once (`WorkerInterrupted`, the job always gets another try).
    """
    now = timezone.now()
    moved = []
    for job in jobs:
        exhausted = give_up_when_exhausted and job.attempts >= job.max_attempts
        values = {
            "errors": [*job.errors, error_entry(job, exception, "")],
            "lease_expires_at": None,
        }
        if exhausted:
            values.update(status=JobStatus.FAILED, finished_at=now)
        else:
            values.update(status=JobStatus.READY, run_after=now)
        if Job.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, lease_token=job.lease_token
        ).update(**values):
            job.__dict__.update(values)
            moved.append(job)
    dispatch.ring(job for job in moved if job.status == JobStatus.READY)
    return moved


def rescue_stalled(limit=100):
    """Put back RUNNING jobs whose lease expired: their worker is gone."""
    stalled = list(Job.objects.stalled()[:limit])
    error = WorkerLost("The worker running this job stopped renewing its lease.")
    rescued = put_back(stalled, error, give_up_when_exhausted=True)
    for job in rescued:
        log_event("rescued", job, level=logging.WARNING, outcome=job.status)
    return rescued


# --- Running --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext(TaskContext):
    """The context of `takes_context=True` tasks, able to report progress."""

    job: Job

    def report_progress(self, percent, message=""):
        """Show `percent` (0-100) and `message` on the job while it runs."""
        return report_progress(self.job, percent, message)


@dataclass
class Outcome:
    """What one run of a job did; recorded by `finish`."""

    job: Job
    task: Any = None  # None when the task path did not import
    result: Any = None  # Django's TaskResult, as signals receive it
    value: Any = None
    error: BaseException | None = None
    traceback: str = ""
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0
    finished_at: Any = None

    @property
    def succeeded(self):
        return self.error is None

    @property
    def finished(self):
        """When the run ended, on the monotonic clock."""
        return self.started + self.duration


def retry_policy(job, task=None):
    """Return the retry policy of a job: its row, its task, then settings."""
    return RetryPolicy(
        max_attempts=job.max_attempts,
        backoff_base=getattr(task, "backoff_base", None)
        or conf.get("JOB_BACKOFF_BASE_SECONDS"),
        backoff_max=conf.get("JOB_BACKOFF_MAX_SECONDS"),
    )


def run(job, backend_alias="default", guard=None):
    """Run a claimed job's task and return what happened. Changes no row.

    `guard(task)`, if given, is a context manager around the task's call
    (the database worker enforces timeouts with it).
    """
    outcome = Outcome(job=job)
    try:
        outcome.task = bind_task(resolve_task(job.task_path), job, backend_alias)
        outcome.result = task_result(job, backend_alias, task=outcome.task)
        task_started.send(sender=JobsBackend, task_result=outcome.result)
        log_event("started", job)
        with guard(outcome.task) if guard else nullcontext():
            value = call_task(outcome.task, outcome.result, job)
        outcome.value = json_return_value(value)
    except Exception as e:  # the job failed; the worker goes on
        outcome.error = e
        outcome.traceback = "".join(traceback.format_exception(e))
    outcome.duration = time.monotonic() - outcome.started
    outcome.finished_at = timezone.now()
    return outcome


def call_task(task, result, job):
    """Call the task function with the job's arguments (and context)."""
    args = job.args
    if task.takes_context:
        args = [JobContext(task_result=result, job=job), *args]
    timeout = getattr(task, "timeout", None)
    if timeout and iscoroutinefunction(task.func):
        return async_to_sync(call_with_timeout)(task.func, timeout, args, job.kwargs)
    return task.call(*args, **job.kwargs)


async def call_with_timeout(func, timeout, args, kwargs):
    """Await a coroutine task, cancelling it after `timeout` seconds."""
    try:
        return await asyncio.wait_for(func(*args, **kwargs), timeout)
    except TimeoutError:
        raise JobTimeout(timeout_message(timeout)) from None


def timeout_message(timeout):
    return f"The job timed out: it ran longer than its timeout of {timeout:g} s."


def json_return_value(value):
    try:
        value = normalize_json(value)
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"The task's return value is not JSON-serializable: {e}") from e
    return value


def finish(outcomes):
    """Record finished runs (successes in one batch) and announce them."""
    successes = [o for o in outcomes if o.succeeded]
    record_successes(successes)
    for outcome in successes:
        outcome.job.status = JobStatus.SUCCESSFUL
        outcome.job.finished_at = outcome.finished_at
        outcome.job.return_value = outcome.value
        announce(outcome, "succeeded")
    for outcome in outcomes:
        if not outcome.succeeded:
            decision = record_failure(outcome)
            if decision is not None:
                announce(outcome, "failed" if decision.gives_up else "retry scheduled")


def announce(outcome, event):
    """Log the end of a run and send Django's task_finished signal."""
    job = outcome.job
    extra = {"duration_ms": round(outcome.duration * 1000, 1)}
    if outcome.error is not None:
        extra["error"] = f"{type(outcome.error).__name__}: {outcome.error}"
        if job.status == JobStatus.READY:
            extra["retry_at"] = job.run_after.isoformat()
    level = logging.INFO if outcome.succeeded else logging.WARNING
    log_event(event, job, level=level, **extra)
    if outcome.result is not None:
        result = task_result(job, outcome.result.backend, task=outcome.task)
        task_finished.send(sender=JobsBackend, task_result=result)


# --- Helpers --------------------------------------------------------------


def error_entry(job, exception, tb):
    exception_type = type(exception)
    return {
        "exception_class_path": (
            f"{exception_type.__module__}.{exception_type.__qualname__}"
        ),
        "message": str(exception)[:2000],
        "traceback": tb or f"{exception_type.__qualname__}: {exception}\n",
        "attempt": job.attempts,
        "worker_id": job.worker_ids[-1] if job.worker_ids else "",
        "failed_at": timezone.now().isoformat(),
    }
