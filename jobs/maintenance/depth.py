"""The queue depth over time: once a minute, how many jobs wait (READY and
due, every queue), kept `KEPT` for the dashboard's chart (`web.dashboard`).

Counted as /health counts: exactly up to JOB_HEALTH_EXACT_COUNT rows, then
the planner's estimate, so a sample costs the same on any backlog.
"""

from datetime import timedelta

from .. import conf
from ..core.guard import database_now
from ..models import Job, QueueDepth

KEPT = timedelta(days=8)  # the chart's longest range is 7 days


def sample_depth():
    """Record this minute's depth unless it is recorded, and forget samples
    older than `KEPT`; say whether a sample was written."""
    now = database_now()
    minute = now.replace(second=0, microsecond=0)
    if QueueDepth.objects.filter(minute=minute).exists():
        return False
    exact = conf.get("JOB_HEALTH_EXACT_COUNT")
    waiting, _ = Job.objects.due(now).count_or_estimate(exact)
    sample = QueueDepth(minute=minute, waiting=waiting)
    QueueDepth.objects.bulk_create([sample], ignore_conflicts=True)
    QueueDepth.objects.filter(minute__lt=now - KEPT).delete()
    return True
