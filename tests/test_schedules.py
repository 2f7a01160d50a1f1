"""Recurring jobs: when a schedule's times fall (cron, time zones, DST), which
time a worker enqueues (once, the latest, not while paused), and the
`manage.py check` errors of a schedule that cannot run."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from jobs.core import cron
from jobs.maintenance import recurring, run_due_duties
from jobs.models import Job, JobStatus, ScheduledRun, ScheduleState

NIGHTLY = {
    "task": "tests.testapp.tasks.record_run",
    "cron": "0 3 * * *",
    "timezone": "Europe/Berlin",
    "kwargs": {"key": "nightly"},
    "queue": "other",
    "priority": 5,
}


def utc(*parts):
    return datetime(*parts, tzinfo=UTC)


def schedule(**spec):
    return cron.parse("s", {"task": "tests.testapp.tasks.noop", **spec})


# --- When the times fall (pure logic, fixed datetimes) ----------------------


def test_times__a_daily_cron_falls_at_that_wall_time_of_its_time_zone():
    nightly = schedule(cron="0 3 * * *", timezone="Europe/Berlin")

    # 03:00 in Berlin is 02:00 UTC in winter, 01:00 UTC in summer.
    assert nightly.next_after(utc(2025, 1, 10, 12)) == utc(2025, 1, 11, 2)
    assert nightly.next_after(utc(2025, 7, 10, 12)) == utc(2025, 7, 11, 1)
    assert nightly.latest_at_or_before(utc(2025, 1, 10, 12)) == utc(2025, 1, 10, 2)


def test_times__a_time_is_due_from_its_own_instant_on():
    nightly = schedule(cron="0 3 * * *", timezone="Europe/Berlin")

    assert nightly.latest_at_or_before(utc(2025, 1, 10, 2)) == utc(2025, 1, 10, 2)
    just_before = utc(2025, 1, 10, 2) - timedelta(microseconds=1)
    assert nightly.latest_at_or_before(just_before) == utc(2025, 1, 9, 2)
    assert nightly.next_after(utc(2025, 1, 10, 2)) == utc(2025, 1, 11, 2)


def test_times__the_time_zone_defaults_to_settings_time_zone(settings):
    settings.TIME_ZONE = "America/New_York"

    assert schedule(cron="0 3 * * *").next_after(utc(2025, 1, 10, 12)) == utc(
        2025, 1, 11, 8
    )


def test_dst__a_time_in_the_skipped_hour_runs_once_right_after_the_jump():
    # Berlin, 2025-03-30: clocks jump from 02:00 to 03:00 (01:00 UTC).
    at_0230 = schedule(cron="30 2 * * *", timezone="Europe/Berlin")

    assert at_0230.next_after(utc(2025, 3, 29, 12)) == utc(2025, 3, 30, 1)
    assert at_0230.next_after(utc(2025, 3, 30, 1)) == utc(2025, 3, 31, 0, 30)
    assert at_0230.latest_at_or_before(utc(2025, 3, 30, 9)) == utc(2025, 3, 30, 1)


def test_dst__a_time_in_the_repeated_hour_runs_once_at_its_first_pass():
    # Berlin, 2025-10-26: 02:00-03:00 happens twice (00:00-01:00, 01:00-02:00 UTC).
    at_0230 = schedule(cron="30 2 * * *", timezone="Europe/Berlin")

    assert at_0230.next_after(utc(2025, 10, 25, 12)) == utc(2025, 10, 26, 0, 30)
    assert at_0230.next_after(utc(2025, 10, 26, 0, 30)) == utc(2025, 10, 27, 1, 30)
    assert at_0230.latest_at_or_before(utc(2025, 10, 26, 9)) == utc(2025, 10, 26, 0, 30)


def test_dst__a_wildcard_hour_runs_at_every_real_instant_it_names():
    half_hourly = schedule(cron="*/30 * * * *", timezone="Europe/Berlin")

    def times_after(start, count):
        times, now = [], start
        for _ in range(count):
            now = half_hourly.next_after(now)
            times.append(now)
        return times

    # The repeated hour is run in both passes: every 30 minutes of real time.
    assert times_after(utc(2025, 10, 25, 23, 45), 5) == [
        utc(2025, 10, 26, 0, 0),
        utc(2025, 10, 26, 0, 30),
        utc(2025, 10, 26, 1, 0),
        utc(2025, 10, 26, 1, 30),
        utc(2025, 10, 26, 2, 0),
    ]
    # The skipped hour has no instants: still every 30 minutes of real time.
    assert times_after(utc(2025, 3, 30, 0, 15), 3) == [
        utc(2025, 3, 30, 0, 30),
        utc(2025, 3, 30, 1, 0),
        utc(2025, 3, 30, 1, 30),
    ]


def test_describe__says_the_cron_and_time_zone_in_words():
    assert schedule(**NIGHTLY).describe() == "At 03:00 every day, Europe/Berlin"


# --- Which time a worker enqueues --------------------------------------------


@pytest.fixture
def nightly(settings):
    settings.JOB_SCHEDULES = {"nightly-report": NIGHTLY}
    return "nightly-report"


def seen_since(name, moment):
    """Say the schedule `name` was first seen by a worker at `moment`."""
    ScheduleState.objects.create(name=name, counts_from=moment)


def jobs_of(task="tests.testapp.tasks.record_run"):
    return list(Job.objects.filter(task_path=task).order_by("enqueued_at"))


def scheduled_times(name):
    return list(
        ScheduledRun.objects.filter(schedule=name, scheduled_at__isnull=False)
        .order_by("scheduled_at")
        .values_list("scheduled_at", flat=True)
    )


@pytest.mark.django_db
def test_enqueue__a_due_time_becomes_one_ordinary_job_with_the_schedules_options(
    nightly,
):
    seen_since(nightly, utc(2025, 1, 1))

    (run,) = recurring.enqueue_due("worker-a", now=utc(2025, 1, 10, 2, 0, 5))

    (job,) = jobs_of()
    assert (job.status, job.queue_name, job.priority) == (JobStatus.READY, "other", 5)
    assert job.kwargs == {"key": "nightly"}
    assert job.run_after == job.enqueued_at  # due at once, as any job
    assert (run.job_id, run.scheduled_at) == (job.pk, utc(2025, 1, 10, 2))
    assert run.enqueued_by == "worker-a"


@pytest.mark.django_db
def test_enqueue__a_time_already_enqueued_is_not_enqueued_again(nightly):
    seen_since(nightly, utc(2025, 1, 1))
    recurring.enqueue_due(now=utc(2025, 1, 10, 2, 0, 5))

    assert recurring.enqueue_due(now=utc(2025, 1, 10, 2, 0, 15)) == []
    assert recurring.enqueue_due(now=utc(2025, 1, 10, 23)) == []
    assert len(jobs_of()) == 1
    recurring.enqueue_due(now=utc(2025, 1, 11, 2, 0, 1))
    assert len(jobs_of()) == 2


@pytest.mark.django_db
def test_enqueue__a_new_schedule_starts_with_its_next_time_not_a_past_one(nightly):
    assert recurring.enqueue_due(now=utc(2025, 1, 10, 12)) == []
    assert ScheduleState.objects.get(name=nightly).counts_from == utc(2025, 1, 10, 12)

    recurring.enqueue_due(now=utc(2025, 1, 11, 2, 0, 1))

    assert scheduled_times(nightly) == [utc(2025, 1, 11, 2)]


@pytest.mark.django_db
def test_catch_up__workers_back_after_days_enqueue_only_the_latest_missed_time(
    nightly,
):
    seen_since(nightly, utc(2025, 1, 1))
    recurring.enqueue_due(now=utc(2025, 1, 2, 2, 0, 1))

    # No worker ran from Jan 2 to Jan 6, 10:00: four nightly times were missed.
    recurring.enqueue_due(now=utc(2025, 1, 6, 10))

    assert scheduled_times(nightly) == [utc(2025, 1, 2, 2), utc(2025, 1, 6, 2)]
    assert len(jobs_of()) == 2


@pytest.mark.django_db
def test_skip_missed__catch_up_false_enqueues_only_a_time_within_the_grace(
    settings,
):
    settings.JOB_SCHEDULE_GRACE_SECONDS = 60
    settings.JOB_SCHEDULES = {"nightly-report": {**NIGHTLY, "catch_up": False}}
    seen_since("nightly-report", utc(2025, 1, 1))

    assert recurring.enqueue_due(now=utc(2025, 1, 6, 10)) == []
    assert recurring.enqueue_due(now=utc(2025, 1, 7, 2, 1, 1)) == []  # 61 s late
    recurring.enqueue_due(now=utc(2025, 1, 8, 2, 1))  # 60 s late

    assert scheduled_times("nightly-report") == [utc(2025, 1, 8, 2)]


@pytest.mark.django_db
def test_pause__enqueues_nothing_and_is_kept_in_the_database(nightly):
    seen_since(nightly, utc(2025, 1, 1))

    assert recurring.pause(nightly) is True
    assert recurring.pause(nightly) is False  # paused already

    assert ScheduleState.objects.get(name=nightly).paused is True
    assert recurring.enqueue_due(now=utc(2025, 1, 10, 2, 0, 1)) == []
    assert jobs_of() == []


@pytest.mark.django_db
def test_resume__times_missed_while_paused_are_not_caught_up(nightly, monkeypatch):
    seen_since(nightly, utc(2025, 1, 1))
    recurring.pause(nightly)
    monkeypatch.setattr(recurring, "DatabaseNow", lambda: utc(2025, 1, 10, 12))

    assert recurring.resume(nightly) is True
    assert recurring.resume(nightly) is False  # not paused

    assert recurring.enqueue_due(now=utc(2025, 1, 10, 13)) == []
    recurring.enqueue_due(now=utc(2025, 1, 11, 2, 0, 1))
    assert scheduled_times(nightly) == [utc(2025, 1, 11, 2)]


@pytest.mark.django_db
def test_run_now__enqueues_one_job_at_once_and_is_no_scheduled_time(nightly):
    seen_since(nightly, utc(2025, 1, 1))
    recurring.pause(nightly)

    run = recurring.run_now(nightly, by="boss")

    (job,) = jobs_of()
    assert (run.job_id, run.scheduled_at, run.enqueued_by) == (job.pk, None, "boss")
    assert job.kwargs == {"key": "nightly"}
    recurring.resume(nightly)
    ScheduleState.objects.filter(name=nightly).update(counts_from=utc(2025, 1, 1))
    recurring.enqueue_due(now=utc(2025, 1, 10, 2, 0, 1))
    assert scheduled_times(nightly) == [utc(2025, 1, 10, 2)]


@pytest.mark.django_db
def test_console_writes__name_only_declared_schedules(nightly):
    with pytest.raises(LookupError, match="gone"):
        recurring.run_now("gone")
    with pytest.raises(LookupError, match="gone"):
        recurring.pause("gone")


@pytest.mark.django_db
def test_removal__a_schedule_gone_from_settings_stops_and_its_jobs_stay(
    nightly, settings
):
    seen_since(nightly, utc(2025, 1, 1))
    recurring.enqueue_due(now=utc(2025, 1, 10, 2, 0, 1))

    settings.JOB_SCHEDULES = {}

    assert recurring.enqueue_due(now=utc(2025, 1, 11, 2, 0, 1)) == []
    assert len(jobs_of()) == 1


@pytest.mark.django_db
def test_every_worker_enqueues__without_holding_the_maintenance_lock(nightly):
    seen_since(nightly, utc(2000, 1, 1))
    run_due_duties("leader")

    assert run_due_duties("another-worker") is False  # the leader holds the lock
    # Both looked; the one that saw today's time first enqueued it.
    assert len(jobs_of()) == 1
    assert ScheduledRun.objects.get().enqueued_by == "leader"


@pytest.mark.django_db(transaction=True)
def test_race__threads_enqueueing_the_same_time_make_exactly_one_job(nightly):
    seen_since(nightly, utc(2025, 1, 1))
    now = utc(2025, 1, 10, 2, 0, 1)
    start = threading.Barrier(8)
    created, errors = [], []

    def enqueue(name):
        try:
            start.wait()
            created.extend(recurring.enqueue_due(name, now=now))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=enqueue, args=[f"w{i}"]) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(created) == 1
    assert [job.pk for job in jobs_of()] == [created[0].job_id]
    assert scheduled_times(nightly) == [utc(2025, 1, 10, 2)]


# --- manage.py check ---------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "check_id", "words"),
    [
        ({**NIGHTLY, "crom": "x"}, "jobs.E022", "'crom' (did you mean 'cron'?)"),
        ({"task": NIGHTLY["task"]}, "jobs.E023", "needs cron"),
        ({**NIGHTLY, "cron": "0 3 * *"}, "jobs.E024", "'0 3 * *' does not parse"),
        ({**NIGHTLY, "cron": "61 * * * *"}, "jobs.E024", "Bad minute"),
        ({**NIGHTLY, "timezone": "Mars/Olympus"}, "jobs.E025", "'Mars/Olympus'"),
        ({**NIGHTLY, "task": "tests.testapp.tasks.nope"}, "jobs.E026", "imported"),
        ({**NIGHTLY, "task": "tests.testapp.tasks.record"}, "jobs.E026", "not a task"),
        ({**NIGHTLY, "queue": "nope"}, "jobs.E027", "'nope'"),
        ({**NIGHTLY, "priority": 500}, "jobs.E027", "priority"),
        ({**NIGHTLY, "kwargs": {"at": object()}}, "jobs.E027", "JSON"),
        ({**NIGHTLY, "catch_up": "no"}, "jobs.E027", "catch_up"),
    ],
)
@pytest.mark.django_db  # `check` runs the database checks too
def test_check__a_schedule_that_cannot_run_is_an_error_naming_it(
    settings, spec, check_id, words
):
    settings.JOB_SCHEDULES = {"nightly-report": spec, "fine": NIGHTLY}

    with pytest.raises(SystemCheckError) as raised:
        call_command("check")

    message = str(raised.value)
    assert f"({check_id}) JOB_SCHEDULES['nightly-report']" in message
    assert words in message
    assert "'fine'" not in message


@pytest.mark.django_db
def test_check__passes_for_valid_schedules(settings):
    settings.JOB_SCHEDULES = {"nightly-report": NIGHTLY, "tick": {**NIGHTLY}}

    call_command("check")
