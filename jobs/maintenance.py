"""Maintenance duties, run by the workers themselves, one process at a time.

Each duty is a small named function; `run_due_duties` runs them under a
shared lease so that with many workers only one does the work at a time.
"""

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from . import conf, dispatch, execution, heartbeat
from .models import DatabaseNow, Job, JobStatus, Lease

logger = logging.getLogger("jobs.maintenance")

LEASE_NAME = "maintenance"


def acquire_lease(name, holder, seconds):
    """Take or renew the named lease for `seconds`; True if `holder` has it.

    Expiry is read and written on the database's clock, as job leases are.
    """
    expires_at = execution.db_now_plus(seconds)
    taken = Lease.objects.filter(
        Q(expires_at__lt=DatabaseNow()) | Q(holder=holder), name=name
    ).update(holder=holder, expires_at=expires_at)
    if taken:
        return True
    try:
        with transaction.atomic(using=Lease.objects.db):
            Lease.objects.create(name=name, holder=holder, expires_at=expires_at)
    except IntegrityError:
        return False  # someone else holds it
    return True


def rescue():
    """Put back jobs whose worker stopped heartbeating."""
    return execution.rescue_stalled()


def rescue_from_dead_neighbours(worker_id):
    """Put back, at once, the jobs of workers on this host whose process is
    gone (killed, crashed), instead of waiting for their leases to expire.

    Run by a worker as it starts. Only workers whose process ids this one
    can see are judged (`heartbeat.pid_space`); any other waits for its
    lease. The attempt is counted, as a lost worker's is.
    """
    rescued = []
    for dead in heartbeat.dead_neighbours(worker_id):
        rescued += execution.rescue_held_by(dead.id)
        heartbeat.unregister(dead.id)
    return rescued


class RedispatchCursor:
    """Where the re-dispatcher's walk through the due rows has got to.

    Each run looks at up to `batches` pages of due rows in (run_after, id)
    order, starting after the last row the previous run looked at, and
    starts over from the oldest once it reaches the end: every due row is
    looked at in turn, however many older ones Redis still holds.
    """

    def __init__(self):
        self.after = None  # (run_after, id) of the last row looked at

    def page(self, due, size):
        rows = due.order_by("run_after", "id")
        if self.after is not None:
            run_after, pk = self.after
            rows = rows.filter(
                Q(run_after__gt=run_after) | Q(run_after=run_after, id__gt=pk)
            )
        page = list(rows[:size])
        self.after = (page[-1].run_after, page[-1].pk) if len(page) == size else None
        return page


redispatch_cursor = RedispatchCursor()


def redispatch(page_size=500, batches=10):
    """Push again the due jobs Redis lost (flushed, restarted, down at enqueue).

    Only rows due for longer than JOB_REDISPATCH_GRACE_SECONDS are looked at,
    and only those whose RQ job Redis no longer holds, or holds ended, are
    pushed.
    """
    if not dispatch.redis_enabled():
        return []
    grace = timedelta(seconds=conf.get("JOB_REDISPATCH_GRACE_SECONDS"))
    due = Job.objects.due(timezone.now() - grace)
    lost = []
    for _ in range(batches):
        waiting = redispatch_cursor.page(due, page_size)
        lost += dispatch.missing_from_redis(waiting) if waiting else []
        if redispatch_cursor.after is None:
            break  # the walk reached the newest due row
    if lost and dispatch.push(lost):
        logger.warning("re-dispatched %d jobs that Redis did not hold", len(lost))
    return lost


def forget_dead_workers():
    """Drop registry rows of workers silent for ten leases (killed, lost)."""
    lease = conf.get("JOB_LEASE_SECONDS")
    return heartbeat.forget_dead(timedelta(seconds=10 * lease))


def prunable(now=None):
    """Select finished jobs past their retention: failed ones are kept longer."""
    now = now or timezone.now()
    done_before = now - timedelta(milliseconds=conf.get("JOB_CLEANUP_AGE"))
    failed_before = now - timedelta(milliseconds=conf.get("JOB_FAILED_CLEANUP_AGE"))
    return Job.objects.filter(
        Q(status__in=[JobStatus.SUCCESSFUL, JobStatus.CANCELLED])
        & Q(finished_at__lt=done_before)
        | Q(status=JobStatus.FAILED, finished_at__lt=failed_before)
    ).order_by()


def prune(batch_size=500, max_batches=20):
    """Delete finished jobs past their retention, a small batch at a time.

    Each batch is one short DELETE by primary key that checks the retention
    rule again, so a job an admin retried after the ids were read stays.
    What is left over waits for the next run.
    """
    pruned = 0
    for _ in range(max_batches):
        ids = list(prunable().values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        pruned += delete_prunable(ids)
    if pruned:
        logger.info("pruned %d finished jobs past their retention", pruned)
    return pruned


def delete_prunable(ids):
    """Delete the jobs `ids` that are still past their retention."""
    return prunable().filter(pk__in=ids).delete()[0]


DUTIES = [rescue, redispatch, forget_dead_workers, prune]


def run_due_duties(holder):
    """Run every duty if this process holds the maintenance lease."""
    seconds = conf.get("JOB_MAINTENANCE_SECONDS") * 2
    if not acquire_lease(LEASE_NAME, holder, seconds):
        return False
    for duty in DUTIES:
        try:
            duty()
        except Exception as e:  # one failing duty must not stop the others
            logger.error("maintenance duty %s failed: %s", duty.__name__, e)
    return True
