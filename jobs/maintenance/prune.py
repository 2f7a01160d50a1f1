"""Pruning: delete finished jobs past their retention."""

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from .. import conf
from ..models import Job, JobStatus

logger = logging.getLogger("jobs.maintenance")


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
