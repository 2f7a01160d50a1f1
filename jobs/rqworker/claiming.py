"""How an RQ worker claims rows: in one statement, exactly like the
database worker, with this process's unrecorded successes recorded in it."""

from ..core import execution, hot_path, recording
from .unrecorded import unrecorded

_worker_id = None


def worker_id():
    """Name this worker once; its forked work horses keep the name."""
    global _worker_id
    if _worker_id is None:
        _worker_id = execution.new_worker_id()
    return _worker_id


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
