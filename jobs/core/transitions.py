"""Transitions: every change of a running job's state but the hot path's
(claim and success, in `hot_path`), each one guarded statement.

Every transition out of RUNNING is guarded on the lease token the run was
claimed with (`guard.held`); one that updates nothing means someone else
moved the job first (a rescuer, an admin): it is logged and never
overwritten. Leases and due times are on the database's clock.
"""

import logging

from django.db.models import Case, F, When
from django.utils import timezone

from .. import conf
from ..exceptions import JobCancelled
from ..expressions import DatabaseNow, JSONPopLast
from ..log import log_event
from ..models import JobStatus
from ..notify import doorbell
from ..retry import RetryPolicy, decide
from .guard import (
    db_now_plus,
    finished_at_unless_cancel_requested,
    held,
    lease_expiry,
    unless_cancel_requested,
)

logger = logging.getLogger("jobs")


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


def renew_leases(jobs):
    """Extend the lease of jobs this worker still runs, so no rescuer takes them."""
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


def still_held(job):
    """Say whether `job` is still RUNNING under the lease it was claimed with."""
    return held([job]).exists()


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


def retry_policy(job, task=None):
    """Return the retry policy of a job: its row, its task, then settings."""
    return RetryPolicy(
        max_attempts=job.max_attempts,
        backoff_base=job.backoff_base
        or getattr(task, "backoff_base", None)
        or conf.get("JOB_BACKOFF_BASE_SECONDS"),
        backoff_max=conf.get("JOB_BACKOFF_MAX_SECONDS"),
    )


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
