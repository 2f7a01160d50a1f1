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
from django.db.models import (
    Case,
    DateTimeField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.tasks import TaskContext, task_backends
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.json import normalize_json

from . import conf, postgres
from .core.tasks import (
    bind_task,
    resolve_task,
    task_result,
    update_task_result,
)
from .exceptions import JobCancelled, JobTimeout, TaskNotFound
from .log import log_event
from .models import DatabaseNow, Job, JobStatus, JSONAppend, JSONPopLast
from .notify import doorbell
from .retry import RetryPolicy, decide

logger = logging.getLogger("jobs")


def new_worker_id():
    """Name this process: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{get_random_string(6)}"


def lease_seconds():
    return conf.get("JOB_LEASE_SECONDS")


def db_now_plus(seconds):
    """The database's clock plus `seconds`, as an expression for a statement.

    Leases, due times and their expiry are read and written on the database's
    clock only, so hosts whose clocks disagree still agree on who holds a job.
    """
    return ExpressionWrapper(
        DatabaseNow() + Value(timedelta(seconds=seconds)), output_field=DateTimeField()
    )


def lease_expiry():
    """When a lease taken or renewed now expires, on the database's clock."""
    return db_now_plus(lease_seconds())


# --- Transitions ----------------------------------------------------------


def claim(queues, limit, worker_id, token, job_id=None, successes=()):
    """Claim up to `limit` due jobs of `queues` (None: any): READY -> RUNNING.

    Each claimed row counts one more attempt, records `worker_id` and carries
    `token` and a fresh lease. Returns the claimed jobs, highest priority first.
    `successes`, finished runs not recorded yet, are recorded and announced
    as `finish` would, in the same statement on PostgreSQL.
    """
    if postgres.on_postgresql():
        jobs, recorded = postgres.claim(
            queues, limit, worker_id, token, lease_seconds(), job_id, successes
        )
    else:
        recorded = record_successes_with_orm(successes) if successes else {}
        jobs = claim_with_orm(queues, limit, worker_id, token, job_id)
    if successes:
        settle(successes, recorded)
    jobs.sort(key=lambda job: (-job.priority, job.run_after))
    return jobs


def claim_with_orm(queues, limit, worker_id, token, job_id=None):
    """The claim on databases other than PostgreSQL (`postgres.claim`)."""
    candidates = Job.objects.claimable(queues, DatabaseNow())
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
            started_at=Coalesce(F("started_at"), DatabaseNow()),
            last_attempted_at=DatabaseNow(),
            lease_token=token,
            lease_expires_at=lease_expiry(),
        )
    return jobs


def release(jobs):
    """RUNNING -> READY for claimed jobs that never started: undo the claim.

    The attempt and worker id the claim recorded are taken back, so
    `attempts` keeps counting real runs only.
    """
    if not jobs:
        return 0
    released = held(jobs).update_returning(
        status=unless_cancel_requested(JobStatus.READY),
        finished_at=finished_at_unless_cancel_requested(None, timezone.now()),
        attempts=F("attempts") - 1,
        worker_ids=JSONPopLast(F("worker_ids")),
        started_at=Case(When(attempts=1, then=None), default=F("started_at")),
        last_attempted_at=Case(
            When(attempts=1, then=None), default=F("last_attempted_at")
        ),
        lease_token="",
        lease_expires_at=None,
    )
    # The rows as released: their RQ job is named for the attempt they are
    # back at, not the one the claim had counted.
    doorbell.ring(job for job in released if job.status == JobStatus.READY)
    return len(released)


def held(jobs):
    """Select `jobs` that are still RUNNING under the lease token each was
    claimed with: the guard of every transition out of RUNNING."""
    jobs = list(jobs)
    if len(jobs) == 1:
        (job,) = jobs
        return Job.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, lease_token=job.lease_token
        )
    by_token = Q()
    for token, pks in group_by_token(jobs).items():
        by_token |= Q(lease_token=token, pk__in=pks)
    return Job.objects.filter(by_token, status=JobStatus.RUNNING)


def group_by_token(jobs):
    groups = {}
    for job in jobs:
        groups.setdefault(job.lease_token, []).append(job.pk)
    return groups


def renew_leases(jobs):
    """Extend the lease of jobs this worker still runs: the heartbeat."""
    if not jobs:
        return 0
    return held(jobs).update(lease_expires_at=lease_expiry())


def report_progress(job, percent, message=""):
    """Store the progress of a running job (0-100 and a short message)."""
    percent = max(0, min(100, int(percent)))
    updated = held([job]).update(progress=percent, progress_message=str(message)[:255])
    if updated:
        log_event("progress", job, percent=percent, message=message)
    return bool(updated)


def record_successes(outcomes):
    """RUNNING -> SUCCESSFUL (CANCELLED if asked to) for many jobs in one UPDATE.

    Return {job id: status recorded} of the rows this worker still held.
    """
    if not outcomes:
        return {}
    if postgres.on_postgresql():
        return postgres.record_successes(outcomes)
    return record_successes_with_orm(outcomes)


def record_successes_with_orm(outcomes):
    return_value = Job._meta.get_field("return_value")
    values = {
        "status": unless_cancel_requested(JobStatus.SUCCESSFUL),
        "lease_expires_at": None,
    }
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
    recorded = held(o.job for o in outcomes).update_returning(**values)
    return {job.pk: job.status for job in recorded}


def record_failure(outcome):
    """RUNNING -> READY (retry after a backoff) or FAILED, keeping the error.

    A job asked to cancel, or whose task raised JobCancelled, ends CANCELLED.
    Return the status recorded, or None when someone else moved the job.
    """
    job = outcome.job
    policy = retry_policy(job, outcome.task)
    decision = decide(policy, job.attempts, outcome.error)
    now = outcome.finished_at
    if isinstance(outcome.error, JobCancelled):
        status = JobStatus.CANCELLED
    else:
        status = JobStatus.FAILED if decision.gives_up else JobStatus.READY
    values = {
        "errors": [*job.errors, error_entry(job, outcome.error, outcome.traceback)],
        "lease_expires_at": None,
        "status": unless_cancel_requested(status),
        "finished_at": finished_at_unless_cancel_requested(
            None if status == JobStatus.READY else now, now
        ),
    }
    if status == JobStatus.READY:
        values["run_after"] = db_now_plus(decision.retry_in.total_seconds())
    return adopt(job, transition(held([job]), values), ring=True)


def put_back(jobs, exception, give_up_when_exhausted, expired_only=False):
    """RUNNING -> READY now (or FAILED), recording why the attempt was lost.

    Used by the rescuer (`WorkerLost`, attempts are counted; only rows whose
    lease has expired, `expired_only`) and by a worker stopped at once
    (`WorkerInterrupted`, the job always gets another try). A job asked to
    cancel ends CANCELLED. Each row moves in one statement whose WHERE holds
    the whole condition, so a lease renewed meanwhile keeps its job.
    """
    now = timezone.now()
    moved = []
    for job in jobs:
        exhausted = give_up_when_exhausted and job.attempts >= job.max_attempts
        status = JobStatus.FAILED if exhausted else JobStatus.READY
        values = {
            "errors": [*job.errors, error_entry(job, exception, "")],
            "lease_expires_at": None,
            "status": unless_cancel_requested(status),
            "finished_at": finished_at_unless_cancel_requested(
                now if exhausted else None, now
            ),
            "run_after": DatabaseNow(),
        }
        rows = held([job])
        if expired_only:
            rows = rows.filter(lease_expires_at__lt=DatabaseNow())
        if adopt(job, transition(rows, values), quiet=expired_only):
            moved.append(job)
    doorbell.ring(job for job in moved if job.status == JobStatus.READY)
    return moved


def transition(rows, values):
    """Write `values` to the guarded `rows` (one job); return the new row."""
    rows = rows.update_returning(**values)
    return rows[0] if rows else None


def adopt(job, row, ring=False, quiet=False):
    """Copy a recorded row's state onto `job`; return its status (None: lost)."""
    if row is None:
        if not quiet:  # a rescuer that finds the lease renewed is not news
            log_event("lost", job, level=logging.WARNING)
        return None
    for name in ("status", "errors", "finished_at", "run_after", "lease_expires_at"):
        setattr(job, name, getattr(row, name))
    if ring and job.status == JobStatus.READY:
        doorbell.ring([job])
    return job.status


def unless_cancel_requested(status):
    """Return `status` as an expression that is CANCELLED when the row's
    cancel was requested, so a cancel and the end of a run never race."""
    return Case(
        When(cancel_requested=True, then=Value(JobStatus.CANCELLED)),
        default=Value(status),
        output_field=Job._meta.get_field("status"),
    )


def finished_at_unless_cancel_requested(finished_at, now):
    """Return `finished_at`, or `now` when the row's cancel was requested."""
    return Case(
        When(cancel_requested=True, then=Value(now)),
        default=Value(finished_at),
        output_field=DateTimeField(),
    )


# --- Admin transitions ----------------------------------------------------

RETRYABLE = (JobStatus.FAILED, JobStatus.CANCELLED)
CANCELLABLE = (JobStatus.READY, JobStatus.RUNNING)


def attempt_budget(task_path):
    """Return how many attempts a run of `task_path` gets: its task's, or the
    setting when the path no longer imports."""
    try:
        task = resolve_task(task_path)
    except TaskNotFound:
        task = None
    return getattr(task, "max_attempts", None) or conf.get("JOB_MAX_ATTEMPTS")


def primary_keys(jobs):
    """Return the ids of `jobs`, a queryset (not loaded) or jobs."""
    if isinstance(jobs, QuerySet):
        return list(jobs.values_list("pk", flat=True))
    return [job.pk for job in jobs]


def retry_jobs(jobs):
    """FAILED or CANCELLED -> READY now, with a fresh budget of attempts.

    `attempts` keeps counting real runs (Django's `TaskResult.attempts` is
    the number of worker ids), so the budget is renewed by raising
    `max_attempts` to `attempts` + the task's attempts. Errors and worker ids
    stay. `jobs` is a queryset or jobs; return the jobs moved.
    """
    rows = Job.objects.filter(pk__in=primary_keys(jobs), status__in=RETRYABLE)
    by_task = {}
    for pk, task_path in rows.values_list("pk", "task_path"):
        by_task.setdefault(task_path, []).append(pk)
    moved = []
    for task_path, ids in by_task.items():
        moved += Job.objects.filter(pk__in=ids, status__in=RETRYABLE).update_returning(
            status=JobStatus.READY,
            max_attempts=F("attempts") + attempt_budget(task_path),
            run_after=DatabaseNow(),
            finished_at=None,
            progress=None,
            progress_message="",
            cancel_requested=False,
        )
    for job in moved:
        log_event("retried by admin", job)
    doorbell.ring(moved)
    return moved


def cancel_jobs(jobs):
    """READY -> CANCELLED now; a RUNNING job is asked to stop and will end
    CANCELLED. Return (cancelled jobs, jobs asked to stop)."""
    pks = primary_keys(jobs)
    cancelled = Job.objects.filter(pk__in=pks, status=JobStatus.READY).update_returning(
        status=JobStatus.CANCELLED, finished_at=timezone.now()
    )
    asked = Job.objects.filter(
        pk__in=pks, status=JobStatus.RUNNING, cancel_requested=False
    ).update_returning(cancel_requested=True)
    for job in cancelled:
        log_event("cancelled by admin", job)
    for job in asked:
        log_event("cancel requested by admin", job)
    return cancelled, asked


def cancel_is_requested(job):
    """Say whether an admin asked the running `job` to stop."""
    return Job.objects.filter(
        pk=job.pk, lease_token=job.lease_token, cancel_requested=True
    ).exists()


# --- Running --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext(TaskContext):
    """The context of `takes_context=True` tasks, able to report progress."""

    job: Job

    def report_progress(self, percent, message=""):
        """Show `percent` (0-100) and `message` on the job while it runs."""
        return report_progress(self.job, percent, message)

    def cancel_requested(self):
        """Say whether an admin asked this job to stop (then raise JobCancelled)."""
        return cancel_is_requested(self.job)


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
    settled: bool = False  # recorded, or found moved by someone else

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
        backoff_base=job.backoff_base
        or getattr(task, "backoff_base", None)
        or conf.get("JOB_BACKOFF_BASE_SECONDS"),
        backoff_max=conf.get("JOB_BACKOFF_MAX_SECONDS"),
    )


def describe(outcome, backend_alias="default"):
    """Fill in the task and TaskResult of `outcome`'s job; raise TaskNotFound
    when its task path no longer imports."""
    job = outcome.job
    outcome.task = bind_task(resolve_task(job.task_path), job, backend_alias)
    outcome.result = task_result(job, backend_alias, task=outcome.task)


def still_held(job):
    """Say whether `job` is still RUNNING under the lease it was claimed with."""
    return held([job]).exists()


# What a run records as the job's failure: the task's exceptions, and the
# BaseExceptions a task may end with that are not the process's own to
# handle (a timeout, `sys.exit()` in a task, a cancelled coroutine).
RUN_ENDING_ERRORS = (Exception, JobTimeout, SystemExit, asyncio.CancelledError)


def run(job, backend_alias="default", guard=None):
    """Run a claimed job's task and return what happened. Changes no row.

    `guard(task)`, if given, is a context manager around the task's call
    (the database worker enforces timeouts with it).
    """
    outcome = Outcome(job=job)
    try:
        describe(outcome, backend_alias)
        task_started.send(sender=sender(outcome.result), task_result=outcome.result)
        log_event("started", job, level=logging.DEBUG)
        with guard(outcome.task) if guard else nullcontext():
            value = call_task(outcome.task, outcome.result, job)
        outcome.value = json_return_value(value)
    except RUN_ENDING_ERRORS as e:  # the job failed; the worker goes on
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
    """Record finished runs (successes in one batch) and announce them.

    Each run is recorded and announced at most once: called again with the
    same runs after a DatabaseError part way, it does only what is left.
    """
    pending = [o for o in outcomes if not o.settled]
    successes = [o for o in pending if o.succeeded]
    if successes:
        settle(successes, record_successes(successes))
    for outcome in pending:
        if outcome.succeeded:
            continue
        status = record_failure(outcome)
        outcome.settled = True
        if status is not None:
            announce(outcome, EVENTS[status])


def settle(successes, recorded):
    """Announce the successes recorded; `recorded` is {job id: status}.

    A run whose row someone else had moved (a rescuer, an admin) was not
    recorded, and is not announced: its job did not end here.
    """
    for outcome in successes:
        outcome.settled = True
        status = recorded.get(outcome.job.pk)
        if status is None:
            log_event("lost", outcome.job, level=logging.WARNING)
            continue
        outcome.job.status = status
        outcome.job.finished_at = outcome.finished_at
        outcome.job.return_value = outcome.value
        announce(outcome, EVENTS[status])


# The event logged when a run ends with the job in each state.
EVENTS = {
    JobStatus.READY: "retry scheduled",
    JobStatus.SUCCESSFUL: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


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
        result = update_task_result(outcome.result, job)
        task_finished.send(sender=sender(result), task_result=result)


# --- Helpers ---


def sender(result):
    """The backend class Django's task signals name as their sender, as the
    backend itself does (`type(self)`), found by the result's alias."""
    return type(task_backends[result.backend])


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
