"""The tally: running totals of finished jobs per task and queue, for
/metrics (`models.TaskTally`), advanced from the rows.

Each turn counts the rows that finished after the mark (`TallyMark`) and up
to the database's clock less JOB_METRICS_LAG_SECONDS, and less how far the
registered worker whose clock is furthest behind the database's is behind it
(each heartbeat measures it: `WorkerProcess.clock_ahead`), adds them to the
totals and moves the mark, in one transaction whose first statement moves
the mark only from where this turn read it: a second maintainer counting at
the same time waits for that row, then moves nothing and adds nothing, so no
row is counted twice. A row is counted once, when it reaches a final status
(an attempt that failed and was retried is counted then too); pruning
deletes only counted rows (`Job.objects.tallied`), so totals never go down.
"""

from datetime import timedelta

from django.db import transaction
from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Min,
    Q,
    Sum,
)

from .. import conf
from ..core.guard import database_now
from ..models import (
    DURATION_BUCKETS,
    FINISHED_STATUSES,
    TALLY_MARK,
    Job,
    JobStatus,
    TallyMark,
    TaskTally,
    WorkerProcess,
)

# A run's duration is from its last attempt's start to its finish; rows that
# ended by a run (not cancelled while waiting) have one.
TIMED = Q(
    status__in=[JobStatus.SUCCESSFUL, JobStatus.FAILED],
    last_attempted_at__isnull=False,
)
FINAL = {
    "succeeded": JobStatus.SUCCESSFUL,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
}


def advance_tally():
    """Count the rows finished since the mark into the totals; return how
    many rows were counted (0 when another maintainer moved the mark first)."""
    db = TallyMark.objects.db
    now = database_now()
    lag = timedelta(seconds=conf.get("JOB_METRICS_LAG_SECONDS"))
    upto = now - lag - furthest_behind()
    mark, created = TallyMark.objects.get_or_create(
        name=TALLY_MARK, defaults={"counted_to": upto, "counted_at": now}
    )
    if created or upto <= mark.counted_to:
        return 0  # counts start from the first turn; rows before are history
    with transaction.atomic(using=db):
        moved = TallyMark.objects.filter(
            name=TALLY_MARK, counted_to=mark.counted_to
        ).update(counted_to=upto, counted_at=now)
        if not moved:
            return 0
        window = Job.objects.filter(
            status__in=FINISHED_STATUSES,
            finished_at__gt=mark.counted_to,
            finished_at__lte=upto,
        ).order_by()
        return add_to_totals(totals(window))


def furthest_behind():
    """How far behind the database's clock the registered worker whose
    clock is furthest behind it is (0: none is). A worker writes
    `finished_at` from its own clock, so the mark waits that much longer
    for its rows."""
    ahead = WorkerProcess.objects.aggregate(least=Min("clock_ahead"))["least"]
    return max(-ahead, timedelta(0)) if ahead is not None else timedelta(0)


def totals(window):
    """Return {(task path, queue): counts} of the finished rows `window`."""
    found = {}
    for row in outcome_counts(window):
        key = (row.pop("task_path"), row.pop("queue_name"))
        found[key] = row
    for task_path, queue_name, attempts, errors in window.exclude(
        errors=[]
    ).values_list("task_path", "queue_name", "attempts", "errors"):
        counts = found[(task_path, queue_name)]
        counts["retried"] += sum(1 for e in errors if e.get("attempt", 0) < attempts)
        counts["rescued"] += sum(1 for e in errors if rescued(e))
    return found


def rescued(error):
    """Say whether an attempt's error says its worker was lost (the
    rescuer's and a dead work horse's `WorkerLost`)."""
    return error.get("exception_class_path", "").endswith(".WorkerLost")


def outcome_counts(window):
    """Count final statuses and run durations per task and queue, in SQL."""
    duration = ExpressionWrapper(
        F("finished_at") - F("last_attempted_at"), output_field=DurationField()
    )
    buckets = {
        f"le_{i}": Count("pk", filter=TIMED & Q(duration__lte=timedelta(seconds=b)))
        for i, b in enumerate(DURATION_BUCKETS)
    }
    rows = (
        window.alias(duration=duration)
        .values("task_path", "queue_name")
        .annotate(
            rows=Count("pk"),
            **{name: Count("pk", filter=Q(status=s)) for name, s in FINAL.items()},
            duration_count=Count("pk", filter=TIMED),
            duration_sum=Sum("duration", filter=TIMED),
            **buckets,
        )
    )
    for row in rows:
        total = row.pop("duration_sum")
        row["duration_sum"] = total.total_seconds() if total else 0.0
        row["duration_buckets"] = [row.pop(name) for name in buckets]
        row["retried"] = row["rescued"] = 0
        yield row


def add_to_totals(found):
    """Add counts to each task's totals; return the rows counted. Called
    with the mark moved in this transaction, so tally writers are one at a
    time."""
    counted = 0
    for (task_path, queue_name), counts in found.items():
        tally, _ = TaskTally.objects.get_or_create(
            task_path=task_path,
            queue_name=queue_name,
            defaults={"duration_buckets": [0] * len(DURATION_BUCKETS)},
        )
        for name in (*FINAL, "retried", "rescued", "duration_count"):
            setattr(tally, name, getattr(tally, name) + counts[name])
        tally.duration_sum += counts["duration_sum"]
        tally.duration_buckets = [
            old + new
            for old, new in zip(
                tally.duration_buckets, counts["duration_buckets"], strict=True
            )
        ]
        tally.save()
        counted += counts["rows"]
    return counted
