"""The transitions people make: retry and cancel (admin console, job API)."""

import logging

from django.db.models import (
    F,
    QuerySet,
)

from .. import conf
from ..exceptions import TaskNotFound
from ..expressions import DatabaseNow
from ..log import log_event
from ..models import Job, JobStatus
from ..notify import doorbell
from . import uniqueness
from .tasks import (
    resolve_task,
)

logger = logging.getLogger("jobs")


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


def retry_jobs(jobs, refused=None):
    """FAILED or CANCELLED -> READY now, with a fresh budget of attempts.

    `attempts` keeps counting real runs (Django's `TaskResult.attempts` is
    the number of worker ids), so the budget is renewed by raising
    `max_attempts` to `attempts` + the task's attempts. Errors and worker ids
    stay. A unique job is not retried while another job holds its key (it
    would be a second live job of that key): `refused`, a dict, gets its id
    and the holder's (`uniqueness.KeyHeld`). `jobs` is a queryset or jobs;
    return the jobs moved.
    """
    rows = Job.objects.filter(pk__in=primary_keys(jobs), status__in=RETRYABLE)
    by_task, keyed = {}, []
    for pk, task_path, key in rows.values_list("pk", "task_path", "unique_key"):
        if key is None:
            by_task.setdefault(task_path, []).append(pk)
        else:
            keyed.append((pk, task_path, key))
    moved = []
    for task_path, ids in by_task.items():
        moved += Job.objects.filter(pk__in=ids, status__in=RETRYABLE).update_returning(
            **retried(task_path)
        )
    for pk, task_path, key in keyed:
        try:
            moved += uniqueness.update_unless_held(
                Job.objects.filter(pk=pk, status__in=RETRYABLE),
                task_path,
                key,
                **retried(task_path),
            )
        except uniqueness.KeyHeld as held:
            logger.info("Not retried: job %s: %s", pk, held)
            if refused is not None:
                refused[pk] = held.holder_id
    for job in moved:
        log_event("retried by admin", job)
    doorbell.ring(moved)
    return moved


def retried(task_path):
    """The columns a retry of a job of `task_path` writes."""
    return {
        "status": JobStatus.READY,
        "max_attempts": F("attempts") + attempt_budget(task_path),
        "run_after": DatabaseNow(),
        "finished_at": None,
        "progress": None,
        "progress_message": "",
        "cancel_requested": False,
    }


def cancel_jobs(jobs):
    """READY -> CANCELLED now; a RUNNING job is asked to stop and will end
    CANCELLED. Return (cancelled jobs, jobs asked to stop)."""
    pks = primary_keys(jobs)
    cancelled = Job.objects.filter(pk__in=pks, status=JobStatus.READY).update_returning(
        status=JobStatus.CANCELLED, finished_at=DatabaseNow()
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
