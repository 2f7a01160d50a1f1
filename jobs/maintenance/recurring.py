"""Recurring jobs: enqueue each schedule's due time once, from any worker.

Every worker runs `enqueue_due` each maintenance turn, without the leader
lock: the unique (schedule, scheduled_at) of `ScheduledRun` decides. The
worker whose INSERT of that row wins enqueues the job in the same
transaction; every other worker's INSERT fails and it does nothing. So each
scheduled time gets at most one job however many workers of either kind
run, and a lost leader lock never costs a run.

A time is due once it has come on the database's clock; the job is an
ordinary job, due at once (`run_after` = when it was enqueued). Only the
latest due time is looked at, so workers back after an outage enqueue one
missed time, not all of them; `catch_up: False` skips it unless it is within
JOB_SCHEDULE_GRACE_SECONDS. Times before `ScheduleState.counts_from` (the
schedule's first sighting, or its last resume) never count.
"""

import logging
from datetime import timedelta
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import Max

from .. import conf
from ..core import cron
from ..core.guard import database_now
from ..expressions import DatabaseNow
from ..models import ScheduledRun, ScheduleState

logger = logging.getLogger("jobs.schedules")


def enqueue_due(holder="", now=None):
    """Enqueue each schedule's due time that no worker enqueued yet; return
    the ScheduledRuns this process created."""
    schedules = cron.runnable()
    if not schedules or not conf.get("JOB_QUEUE_ENABLED"):
        return []
    now = now or database_now()
    states = states_of([schedule.name for schedule in schedules], now)
    latest = latest_scheduled([schedule.name for schedule in schedules])
    created = []
    for schedule in schedules:
        due = due_time(schedule, states[schedule.name], latest.get(schedule.name), now)
        if due is None:
            continue
        try:
            run = enqueue_once(schedule, due, holder)
        except Exception as e:  # one broken schedule must not stop the others
            logger.error("schedule %s: enqueue failed: %s", schedule.name, e)
            continue
        if run is not None:
            created.append(run)
    return created


def due_time(schedule, state, latest, now):
    """Return the scheduled time to enqueue as of `now`, or None.

    That is the latest time at or before `now`, unless the schedule is
    paused, the time is before `state.counts_from`, a run at that time or
    later exists (`latest`), or it was missed by more than the grace and the
    schedule does not catch up.
    """
    if state.paused:
        return None
    due = schedule.latest_at_or_before(now)
    if due is None or due < state.counts_from or (latest and due <= latest):
        return None
    grace = timedelta(seconds=conf.get("JOB_SCHEDULE_GRACE_SECONDS"))
    if not schedule.catch_up and now - due > grace:
        return None
    return due


def enqueue_once(schedule, scheduled_at, holder):
    """Enqueue the job of `scheduled_at` unless a worker did: return its
    ScheduledRun, or None when another worker's row won."""
    db = ScheduledRun.objects.db
    with transaction.atomic(using=db):
        try:
            with transaction.atomic(using=db):  # a savepoint: the loser goes on
                run = ScheduledRun.objects.create(
                    schedule=schedule.name,
                    scheduled_at=scheduled_at,
                    enqueued_by=holder,
                )
        except IntegrityError:
            return None  # another worker enqueued this time
        run.job_id = UUID(schedule.enqueue().id)
        ScheduledRun.objects.filter(pk=run.pk).update(job_id=run.job_id)
    logger.info(
        "schedule %s: enqueued job %s for %s",
        schedule.name,
        run.job_id,
        scheduled_at.isoformat(),
    )
    return run


def states_of(names, now):
    """Return the ScheduleState of each name, creating those first seen now."""
    states = ScheduleState.objects.in_bulk(names)
    missing = [name for name in names if name not in states]
    if missing:
        ScheduleState.objects.bulk_create(
            [ScheduleState(name=name, counts_from=now) for name in missing],
            ignore_conflicts=True,  # another worker saw it first: its row holds
        )
        states = ScheduleState.objects.in_bulk(names)
    return states


def latest_scheduled(names):
    """Return the latest scheduled time enqueued per schedule name."""
    rows = (
        ScheduledRun.objects.filter(schedule__in=names, scheduled_at__isnull=False)
        .values("schedule")
        .annotate(latest=Max("scheduled_at"))
        .order_by()
    )
    return {row["schedule"]: row["latest"] for row in rows}


# --- What a person does from the console ----------------------------------


def declared(name):
    """Return the valid schedule `name`, or raise LookupError."""
    for schedule in cron.runnable():
        if schedule.name == name:
            return schedule
    raise LookupError(f"No valid schedule {name!r} in JOB_SCHEDULES.")


def pause(name):
    """Pause the schedule `name`; return False if it was paused already."""
    declared(name)
    states_of([name], database_now())
    paused = ScheduleState.objects.filter(name=name, paused=False).update(paused=True)
    return bool(paused)


def resume(name):
    """Resume the schedule `name` from now: times missed while it was paused
    are not caught up. Return False if it was not paused."""
    declared(name)
    return bool(
        ScheduleState.objects.filter(name=name, paused=True).update(
            paused=False, counts_from=DatabaseNow()
        )
    )


def run_now(name, by=""):
    """Enqueue one job of the schedule `name` now, paused or not; it is no
    scheduled time, so it changes nothing of what the schedule enqueues."""
    schedule = declared(name)
    with transaction.atomic(using=ScheduledRun.objects.db):
        result = schedule.enqueue()
        return ScheduledRun.objects.create(
            schedule=name, scheduled_at=None, enqueued_by=by, job_id=UUID(result.id)
        )
