"""Retry or cancel every job a selection matches, however many: in batches by
primary key, each batch in its own short transaction.

Each batch is the transitions of `interventions` on that batch's ids, whose
UPDATEs hold the same condition as a single job's retry or cancel: a job that
changed state since it was selected is skipped, never overwritten. The
batches walk the primary key upwards (keyset), so no job is taken twice,
even one that failed again after its retry, and a batch holds its row locks
only for its own UPDATE.
"""

from dataclasses import dataclass

from django.db import transaction

from ..models import Job, JobStatus
from . import interventions


@dataclass
class Tally:
    """What a bulk action did so far, by job."""

    seen: int = 0  # selected ids handled
    changed: int = 0  # retried, or cancelled
    asked: int = 0  # running jobs asked to stop (cancel)
    refused: int = 0  # retries refused: another job holds the unique key
    skipped: int = 0  # changed state since they were selected

    def add(self, ids, changed, asked=(), refused=()):
        self.seen += len(ids)
        self.changed += len(changed)
        self.asked += len(asked)
        self.refused += len(refused)
        self.skipped += len(ids) - len(changed) - len(asked) - len(refused)


def retryable(queryset):
    """Select the jobs of `queryset` a retry applies to."""
    return queryset.filter(status__in=interventions.RETRYABLE)


def cancellable(queryset):
    """Select the jobs of `queryset` a cancel applies to (a running job once)."""
    return queryset.filter(status__in=interventions.CANCELLABLE).exclude(
        status=JobStatus.RUNNING, cancel_requested=True
    )


def batches(queryset, size):
    """Yield the ids of `queryset` in lists of up to `size`, by primary key."""
    last = None
    while True:
        page = queryset if last is None else queryset.filter(pk__gt=last)
        ids = list(page.order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return
        yield ids
        last = ids[-1]


def retry_all(queryset, size, each_batch=None):
    """Retry every retryable job of `queryset`, `size` at a time. After each
    batch, in its transaction, call `each_batch(moved jobs, tally)`."""
    tally = Tally()
    for ids in batches(retryable(queryset), size):
        with transaction.atomic():
            refused = {}
            moved = interventions.retry_jobs(Job.objects.filter(pk__in=ids), refused)
            tally.add(ids, moved, refused=refused)
            if each_batch:
                each_batch(moved, tally)
    return tally


def cancel_all(queryset, size, each_batch=None):
    """Cancel every cancellable job of `queryset`, `size` at a time; after each
    batch, in its transaction, call `each_batch((cancelled, asked), tally)`."""
    tally = Tally()
    for ids in batches(cancellable(queryset), size):
        with transaction.atomic():
            cancelled, asked = interventions.cancel_jobs(Job.objects.filter(pk__in=ids))
            tally.add(ids, cancelled, asked=asked)
            if each_batch:
                each_batch((cancelled, asked), tally)
    return tally
