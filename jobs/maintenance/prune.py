"""Pruning: delete finished jobs past their retention, and the history of
recurring jobs as old."""

import logging
from datetime import timedelta

from django.db.models import Max, Q
from django.utils import timezone

from .. import conf
from ..models import Job, JobStatus, ScheduledRun

logger = logging.getLogger("jobs.maintenance")


def prunable(now=None):
    """Select finished jobs past their retention (failed ones are kept
    longer) that the tally has counted."""
    now = now or timezone.now()
    done_before = now - timedelta(milliseconds=conf.get("JOB_CLEANUP_AGE"))
    failed_before = now - timedelta(milliseconds=conf.get("JOB_FAILED_CLEANUP_AGE"))
    return (
        Job.objects.tallied()
        .filter(
            Q(status__in=[JobStatus.SUCCESSFUL, JobStatus.CANCELLED])
            & Q(finished_at__lt=done_before)
            | Q(status=JobStatus.FAILED, finished_at__lt=failed_before)
        )
        .order_by()
    )


def prune(batch_size=1000, max_batches=50):
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


def prune_schedule_history(batch_size=1000, max_batches=50):
    """Delete the runs of recurring jobs enqueued longer ago than the failed-job
    retention (the longest), a small batch at a time. Each schedule's newest
    scheduled run stays whatever its age: it says which time was enqueued
    last, so no worker enqueues that time again."""
    before = timezone.now() - timedelta(milliseconds=conf.get("JOB_FAILED_CLEANUP_AGE"))
    newest = (
        ScheduledRun.objects.filter(scheduled_at__isnull=False)
        .values("schedule")
        .annotate(latest=Max("scheduled_at"))
    )
    keep = Q()
    for row in newest:
        keep |= Q(schedule=row["schedule"], scheduled_at=row["latest"])
    old = ScheduledRun.objects.filter(enqueued_at__lt=before).order_by()
    if keep:
        old = old.exclude(keep)
    pruned = 0
    for _ in range(max_batches):
        ids = list(old.values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        pruned += ScheduledRun.objects.filter(pk__in=ids).delete()[0]
    if pruned:
        logger.info("pruned %d runs of recurring jobs past their retention", pruned)
    return pruned
