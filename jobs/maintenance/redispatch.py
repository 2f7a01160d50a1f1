"""Re-dispatch: push again the READY jobs that Redis lost."""

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from .. import conf
from ..core import concurrency
from ..models import Job

logger = logging.getLogger("jobs.maintenance")


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
    pushed. Jobs of paused queues are not: an `rqworker` would only end
    their RQ job again (resuming pushes them).
    """
    if not conf.redis_enabled():
        return []
    from ..notify import rq_push  # Redis's modules load only with REDIS_URL

    grace = timedelta(seconds=conf.get("JOB_REDISPATCH_GRACE_SECONDS"))
    due = Job.objects.due(timezone.now() - grace).unpaused()
    lost = []
    for _ in range(batches):
        waiting = redispatch_cursor.page(due, page_size)
        lost += rq_push.missing_from_redis(waiting) if waiting else []
        if redispatch_cursor.after is None:
            break  # the walk reached the newest due row
    lost = without_full_keys(lost)
    if lost and rq_push.push(lost):
        logger.warning("re-dispatched %d jobs that Redis did not hold", len(lost))
    return lost


def without_full_keys(jobs):
    """Leave out the jobs with a concurrency key that its free slots do not
    let run next: their rqworker left them READY on purpose, and a job of
    their key leaving RUNNING pushes them (`core.recording`)."""
    keys = {job.concurrency_key for job in jobs if job.concurrency_key}
    if not keys:
        return jobs
    runnable = {job.pk for job in concurrency.waiting_for(keys)}
    return [job for job in jobs if not job.concurrency_key or job.pk in runnable]
