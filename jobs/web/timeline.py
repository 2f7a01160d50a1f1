"""The job page's timeline: each attempt of a job (when it started, on which
worker, how it ended, with its error) and where the job came from (a
schedule, a unique key, a concurrency key).

What the row keeps decides what the timeline can say: one worker id per
attempt (`worker_ids`), one error per failed attempt (`errors`, with its
attempt number and time), the first attempt's start (`started_at`), the
last attempt's start (`last_attempted_at`) and the end (`finished_at`). A
middle attempt's start is not kept.
"""

from datetime import datetime

from django.utils import timezone

from ..models import JobStatus, ScheduledRun

# How the last attempt ended, by the job's state now.
LAST_OUTCOMES = {
    JobStatus.SUCCESSFUL: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
    JobStatus.RUNNING: "running",
    JobStatus.READY: "waiting",
}


def attempts(job):
    """Return one entry per attempt of `job`, oldest first."""
    count = max(job.attempts, len(job.worker_ids))
    errors = {}
    for error in job.errors:
        errors.setdefault(error.get("attempt"), error)
    return [
        attempt(job, number, count, errors.get(number))
        for number in range(1, count + 1)
    ]


def attempt(job, number, count, error):
    """One attempt: its number, worker, start, end, outcome and error."""
    last = number == count
    started = job.started_at if number == 1 else None
    if last:
        started = job.last_attempted_at or started
    entry = {
        "number": number,
        "worker": job.worker_ids[number - 1] if number <= len(job.worker_ids) else "",
        "started_at": started,
        "ended_at": parse_time(error.get("failed_at")) if error else None,
        "error": error,
        "outcome": "failed" if error else "",
        "progress": None,
    }
    if last and not error:
        entry["outcome"] = LAST_OUTCOMES[job.status]
        entry["ended_at"] = job.finished_at
    if last and job.status == JobStatus.RUNNING:
        entry["outcome"], entry["ended_at"] = "running", None
        entry["progress"] = job.progress
    elif error and last and job.status == JobStatus.CANCELLED:
        entry["outcome"] = "cancelled"
    return entry


def next_attempt(job):
    """When a READY job that ran before runs again: (time, delayed), or None."""
    if job.status != JobStatus.READY or not job.attempts:
        return None
    return job.run_after, job.run_after > timezone.now()


def origin(job):
    """Where `job` came from: its schedule run, unique key, concurrency key."""
    run = ScheduledRun.objects.filter(job_id=job.pk).first()
    return {
        "scheduled_run": run,
        "unique_key": job.unique_key,
        "unique_until": job.unique_until,
        "concurrency_key": job.concurrency_key,
        "concurrency_limit": job.concurrency_limit,
    }


def parse_time(text):
    """Read an error's ISO time; None when it is missing or unreadable."""
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
