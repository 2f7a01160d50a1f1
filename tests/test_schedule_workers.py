"""Recurring jobs enqueued by real worker processes of both kinds: each
scheduled time once between them, with no leader; a pause stored in the
database holds for a worker that starts later."""

import json

import pytest
from django.utils import timezone

from jobs.models import Job, ScheduledRun, ScheduleState, WorkerProcess

from .helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

NOOP = "tests.testapp.tasks.noop"
EVERY_SECOND = {"task": NOOP, "cron": "* * * * * *"}  # cronsim: seconds first


def schedules_env(**schedules):
    return {"JOB_SCHEDULES": json.dumps(schedules)}


def winner_kinds():
    """The kinds of worker whose row won some scheduled time."""
    winners = ScheduledRun.objects.values("enqueued_by")
    return set(
        WorkerProcess.objects.filter(id__in=winners).values_list("kind", flat=True)
    )


def test_a_jobworker_and_an_rqworker__enqueue_each_scheduled_time_once(
    start_worker, start_rqworker
):
    env = schedules_env(tick=EVERY_SECOND)
    start_worker(env=env)
    start_rqworker(env=env)

    # Both race for every second; each kind wins some of them.
    wait_for(
        lambda: (
            ScheduledRun.objects.count() >= 8 and winner_kinds() == {"database", "rq"}
        ),
        timeout=240,
        message="both workers to enqueue scheduled times",
    )

    # The workers go on; each query below is one statement, one snapshot.
    runs = ScheduledRun.objects.filter(schedule="tick")
    times = list(runs.values_list("scheduled_at", flat=True))
    assert len(times) == len(set(times))
    assert all(time.microsecond == 0 for time in times)
    assert not runs.exclude(job_id__in=Job.objects.values("pk")).exists()
    enqueued = runs.filter(job_id__isnull=False).values("job_id")
    assert not Job.objects.filter(task_path=NOOP).exclude(pk__in=enqueued).exists()


def test_a_pause_stored_in_the_database_holds_for_a_worker_started_later(
    start_worker,
):
    ScheduleState.objects.create(name="paused", paused=True, counts_from=timezone.now())
    env = schedules_env(paused=EVERY_SECOND, running=EVERY_SECOND)
    start_worker(env=env)

    wait_for(
        lambda: ScheduledRun.objects.filter(schedule="running").count() >= 3,
        timeout=240,
        message="the unpaused schedule to run three times",
    )
    assert not ScheduledRun.objects.filter(schedule="paused").exists()
    assert ScheduleState.objects.get(name="paused").paused is True
