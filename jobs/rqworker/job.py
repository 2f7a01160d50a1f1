"""The RQ job function: claim the row an RQ job names, run it, record it.

An RQ job carries only a job id. `execute` claims that row exactly like the
database worker does, so a job pushed twice, or seen by an `rqworker` and a
`jobworker` at once, runs once.
"""

import logging
from functools import partial
from uuid import UUID

from ..core import execution, hot_path, recording
from ..expressions import DatabaseNow
from ..models import Job
from ..notify import rq_push
from . import handover
from .leases import lease_keeper
from .timeouts import time_limits
from .unrecorded import unrecorded

logger = logging.getLogger("jobs.rq")


_worker_id = None


def worker_id():
    """Name this worker once; its forked work horses keep the name."""
    global _worker_id
    if _worker_id is None:
        _worker_id = execution.new_worker_id()
    return _worker_id


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
    return ", ".join(execute_one(job_id) for job_id in job_ids)


def job_id_list(arguments):
    """Return the job ids an RQ job's `arguments` name, or None if any is not
    one."""
    try:
        return [str(UUID(argument)) for argument in arguments] or None
    except (ValueError, TypeError, AttributeError):
        return None


def execute_one(job_id):
    job = claim(job_id) or claim_keyed(job_id)
    if job is None:
        return skip(job_id)
    with lease_keeper.holding(job):
        outcome = execution.run(job, guard=partial(time_limits, job))
    if outcome.succeeded:
        unrecorded.add(outcome)
        return "succeeded"
    unrecorded.recorded_with(lambda successes: recording.finish([*successes, outcome]))
    return "failed"


def claim(job_id):
    """Claim the job `job_id` for this worker; return it, or None.

    The successes this process has not recorded yet are recorded with it.
    """
    claimed = claim_all([job_id])
    return claimed[0] if claimed else None


def claim_all(job_ids):
    """Claim those of the jobs `job_ids` that are due, in one statement, in
    the order given; return them. Records this process's unrecorded
    successes with it."""
    me = worker_id()
    token = f"{me}:{job_ids[0]}"
    one = job_ids[0] if len(job_ids) == 1 else list(job_ids)
    claimed = unrecorded.recorded_with(
        lambda successes: recording.claim_after(
            successes, None, len(job_ids), me, token, job_id=one
        )
    )
    order = {job_id: i for i, job_id in enumerate(job_ids)}
    return sorted(claimed, key=lambda job: order[str(job.pk)])


def claim_keyed(job_id):
    """Claim the job `job_id` if it has a concurrency key with a free slot;
    return it, or None (no key, not waiting, or its key is full)."""
    me = worker_id()
    claimed = hot_path.claim_keyed(None, 1, me, f"{me}:{job_id}", job_id=job_id)
    return claimed[0] if claimed else None


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
