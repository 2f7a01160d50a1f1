"""Recording finished runs and announcing them (log line, Django's
task_finished signal): each run at most once."""

import logging
from contextlib import suppress

from django.tasks.signals import task_finished
from django.utils import timezone

from .. import conf
from ..exceptions import JobTimeout, TaskNotFound
from ..log import batched, log_event
from ..models import JobStatus
from ..notify import doorbell
from . import concurrency, execution
from .hot_path import claim_recording, record_successes
from .tasks import (
    sender,
    update_task_result,
)
from .transitions import record_failure

logger = logging.getLogger("jobs")


def claim_after(successes, queues, limit, worker_id, token, job_id=None):
    """Record and announce `successes` (as `finish` would) and claim, in one
    statement on PostgreSQL; return the claimed jobs (`hot_path.claim`)."""
    jobs, recorded = claim_recording(queues, limit, worker_id, token, job_id, successes)
    if successes:
        with batched():
            settle(successes, recorded)
        ring_for_freed_slots(successes)
    return jobs


def finish(outcomes):
    """Record finished runs (successes in one batch) and announce them.

    Each run is recorded and announced at most once: called again with the
    same runs after a DatabaseError part way, it does only what is left.
    """
    pending = [o for o in outcomes if not o.settled]
    successes = [o for o in pending if o.succeeded]
    if successes:
        with batched():
            settle(successes, record_successes(successes))
    for outcome in pending:
        if outcome.succeeded:
            continue
        status = record_failure(outcome)
        outcome.settled = True
        if status is not None:
            announce(outcome, EVENTS[status])
    ring_for_freed_slots(pending)


def ring_for_freed_slots(outcomes):
    """Push to RQ the jobs that the slots these runs freed let run next.

    An `rqworker` leaves a job whose key is full READY and does not push it
    again; only jobs with a concurrency key pay this statement.
    """
    keys = {o.job.concurrency_key for o in outcomes if o.job.concurrency_key}
    if keys and conf.redis_enabled():
        doorbell.ring(concurrency.waiting_for(keys))


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


def record_hard_timeout(job, timeout, how, duration=0.0, backend_alias="default"):
    """Record a run its worker ended at the hard limit (its timeout and the
    grace) as timed out: retried or FAILED by the job's retry policy, under
    the run's lease token, so the run itself can record nothing after."""
    error = JobTimeout(
        f"{execution.timeout_message(timeout)} It did not stop within the grace; {how}."
    )
    outcome = execution.Outcome(
        job=job, error=error, finished_at=timezone.now(), duration=duration
    )
    with suppress(TaskNotFound):
        execution.describe(outcome, backend_alias)
    finish([outcome])
