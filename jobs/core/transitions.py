"""Transitions: every change of a job's state, each one guarded statement.

Every transition out of RUNNING is guarded on the lease token the run was
claimed with (`held`); one that updates nothing means someone else moved the
job first (a rescuer, an admin): it is logged and never overwritten. Leases
and due times are on the database's clock (`DatabaseNow`).
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import (
    Case,
    DateTimeField,
    ExpressionWrapper,
    F,
    Q,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import conf
from ..exceptions import JobCancelled
from ..log import log_event
from ..models import (
    DatabaseNow,
    Job,
    JobStatus,
    JSONAppend,
    JSONPopLast,
    on_postgresql,
)
from ..notify import doorbell
from ..retry import RetryPolicy, decide
from . import postgres

logger = logging.getLogger("jobs")


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


def claim(queues, limit, worker_id, token, job_id=None):
    """Claim up to `limit` due jobs of `queues` (None: any): READY -> RUNNING.

    Each claimed row counts one more attempt, records `worker_id` and carries
    `token` and a fresh lease. Returns the claimed jobs, highest priority first.
    """
    return claim_recording(queues, limit, worker_id, token, job_id)[0]


def claim_recording(queues, limit, worker_id, token, job_id=None, successes=()):
    """`claim`, recording `successes` (finished runs not recorded yet) in the
    same statement on PostgreSQL; return (jobs, {job id: status recorded})."""
    if on_postgresql():
        jobs, recorded = postgres.claim(
            queues, limit, worker_id, token, lease_seconds(), job_id, successes
        )
    else:
        recorded = record_successes_with_orm(successes) if successes else {}
        jobs = claim_with_orm(queues, limit, worker_id, token, job_id)
    jobs.sort(key=lambda job: (-job.priority, job.run_after))
    return jobs, recorded


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


def still_held(job):
    """Say whether `job` is still RUNNING under the lease it was claimed with."""
    return held([job]).exists()


def record_successes(outcomes):
    """RUNNING -> SUCCESSFUL (CANCELLED if asked to) for many jobs in one UPDATE.

    Return {job id: status recorded} of the rows this worker still held.
    """
    if not outcomes:
        return {}
    if on_postgresql():
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
