"""Rescue: put back the jobs whose worker is gone, so they run again.

Two ways to know a worker is gone: it stopped renewing its jobs' leases
(`rescue_stalled`, run by the maintenance leader), or a worker starting on
the same host sees that its process no longer exists
(`rescue_from_dead_neighbours`, at once). Either way the lost attempt is
counted (`WorkerLost`), and a job with none left ends FAILED. (A work
horse that dies under a live `rqworker` is put back by that worker itself,
at once: `rqworker.handover`.)
"""

import logging

from .. import worker_registry
from ..core.transitions import put_back
from ..exceptions import WorkerLost
from ..expressions import DatabaseNow
from ..log import log_event
from ..models import Job, JobStatus


def rescue_stalled(limit=100):
    """Put back RUNNING jobs whose lease expired: their worker is gone.

    The select only finds candidates; each is moved by a statement that
    checks again that its lease (same token) has expired, on the database's
    clock, so a renewal landing in between keeps the job with its worker.
    """
    stalled = list(Job.objects.stalled(DatabaseNow()).order_by()[:limit])
    error = WorkerLost("The worker running this job stopped renewing its lease.")
    rescued = put_back(stalled, error, give_up_when_exhausted=True, expired_only=True)
    for job in rescued:
        log_event("rescued", job, level=logging.WARNING, outcome=job.status)
    return rescued


def rescue_held_by(worker_id):
    """Put back the RUNNING jobs of `worker_id`, whose process is gone."""
    mine = Job.objects.filter(
        status=JobStatus.RUNNING, lease_token__startswith=f"{worker_id}:"
    )
    error = WorkerLost("The worker running this job died: its process is gone.")
    rescued = put_back(list(mine), error, give_up_when_exhausted=True)
    for job in rescued:
        log_event("rescued", job, level=logging.WARNING, outcome=job.status)
    return rescued


def rescue_from_dead_neighbours(worker_id):
    """Put back, at once, the jobs of workers on this host whose process is
    gone (killed, crashed), instead of waiting for their leases to expire.

    Run by a worker as it starts. Only workers whose process ids this one
    can see are judged (`worker_registry.pid_space`); any other waits for its
    lease. The attempt is counted, as a lost worker's is.
    """
    rescued = []
    for dead in worker_registry.dead_neighbours(worker_id):
        rescued += rescue_held_by(dead.id)
        worker_registry.unregister(dead.id)
    return rescued
