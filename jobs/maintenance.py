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
from .models import Job, JobStatus, Lease

logger = logging.getLogger("jobs.maintenance")

LEASE_NAME = "maintenance"


def acquire_lease(name, holder, seconds):
    """Take or renew the named lease for `seconds`; True if `holder` has it."""
    now = timezone.now()
    expires_at = now + timedelta(seconds=seconds)
    taken = Lease.objects.filter(
        Q(expires_at__lt=now) | Q(holder=holder), name=name
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


def redispatch(limit=500):
    """Push again the due jobs Redis lost (flushed, restarted, down at enqueue).

    Only rows due for longer than JOB_REDISPATCH_GRACE_SECONDS are looked at,
    and only those whose RQ job Redis no longer holds, or holds ended, are
    pushed.
    """
    if not dispatch.redis_enabled():
        return []
    grace = timedelta(seconds=conf.get("JOB_REDISPATCH_GRACE_SECONDS"))
    waiting = list(
        Job.objects.due(timezone.now() - grace).order_by("run_after")[:limit]
    )
    lost = dispatch.missing_from_redis(waiting) if waiting else []
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
    )


def prune(batch_size=500, max_batches=20):
    """Delete finished jobs past their retention, a small batch at a time.

    Each batch is one short DELETE by primary key, so the table is never
    locked for long; what is left over waits for the next run.
    """
    pruned = 0
    for _ in range(max_batches):
        ids = list(prunable().values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        pruned += Job.objects.filter(pk__in=ids).delete()[0]
    if pruned:
        logger.info("pruned %d finished jobs past their retention", pruned)
    return pruned


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
