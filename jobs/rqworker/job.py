"""The RQ job function: claim the row an RQ job names, run it, record it.

An RQ job carries only a job id. `execute` claims that row exactly like the
database worker does, so a job pushed twice, or seen by an `rqworker` and a
`jobworker` at once, runs once.
"""

import logging
from functools import partial
from uuid import UUID

from ..core import execution, recording
from ..expressions import DatabaseNow
from ..models import Job
from ..notify import rq_push
from . import handover
from .claim_at_pop import claims
from .claiming import claim, claim_keyed
from .leases import lease_keeper
from .timeouts import time_limits
from .unrecorded import unrecorded

logger = logging.getLogger("jobs.rq")


def execute(*arguments):
    """Claim each job the RQ job's `arguments` name, run it, record it.

    Does nothing for a row that is not READY and due: another worker has
    it, it finished, or it was cancelled. Returns what happened, for RQ's log.
    """
    job_ids = job_id_list(arguments)
    if job_ids is None:
        logger.error("RQ job carries %r, which are not job ids; ignored", arguments)
        return "ignored"
    handed_over = handover.handed_over
    if handed_over is not None and handed_over.carries(job_ids):
        return handed_over.run()
    rq_push.forget_batched(job_ids)
    at_pop = {str(job.pk): job for job in claims.take_running(job_ids) or ()}
    return ", ".join(execute_one(job_id, at_pop.get(job_id)) for job_id in job_ids)


def job_id_list(arguments):
    """Return the job ids an RQ job's `arguments` name, or None if any is not
    one."""
    try:
        return [str(UUID(argument)) for argument in arguments] or None
    except (ValueError, TypeError, AttributeError):
        return None


def execute_one(job_id, claimed=None):
    """Run the job `job_id` (`claimed`: its row, claimed at the pop)."""
    job = claimed or claim(job_id) or claim_keyed(job_id)
    if job is None:
        return skip(job_id)
    with lease_keeper.holding(job):
        outcome = execution.run(job, guard=partial(time_limits, job))
    if outcome.succeeded:
        unrecorded.add(outcome)
        return "succeeded"
    unrecorded.recorded_with(lambda successes: recording.finish([*successes, outcome]))
    return "failed"


def skip(job_id):
    """Leave a job that is not claimable; push it again if it is only early.

    A job of a paused queue stays READY, and its RQ job ends: resuming the
    queue pushes it again (`core.pausing.ring_waiting`).
    A job waiting for a slot of its key stays READY, and is not pushed
    again here: a job of its key leaving RUNNING pushes the next ones
    (`recording`), and the re-dispatcher is the backstop.
    """
    early = Job.objects.delayed(DatabaseNow()).filter(pk=job_id).first()
    if early is not None:
        rq_push.push([early])
        logger.info("job %s is not due yet; scheduled again", job_id)
        return "rescheduled"
    if Job.objects.ready().paused().filter(pk=job_id).exists():
        logger.info("job %s waits: its queue is paused", job_id)
        return "paused"
    keyed = Job.objects.due(DatabaseNow()).filter(pk=job_id, concurrency_key__gt="")
    key = keyed.values_list("concurrency_key", flat=True).first()
    if key is not None:
        logger.info("job %s waits for a free slot of its key %r", job_id, key)
        return "waiting"
    logger.info("job %s is not waiting (taken, finished or cancelled)", job_id)
    return "skipped"
