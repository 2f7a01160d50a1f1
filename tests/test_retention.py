"""Retention: finished jobs are pruned in batches, failed ones kept longer."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.core import interventions
from jobs.maintenance import prune as pruning
from jobs.maintenance.tally import advance_tally
from jobs.models import Job, JobStatus, ScheduledRun

from .helpers import make_job

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def finished(status, age):
    return make_job(status=status, finished_at=timezone.now() - age)


@pytest.fixture
def rows(settings):
    settings.JOB_CLEANUP_AGE = 86_400_000  # one day
    settings.JOB_FAILED_CLEANUP_AGE = 7 * 86_400_000  # one week
    return {
        "old_success": finished(JobStatus.SUCCESSFUL, 2 * DAY),
        "old_cancelled": finished(JobStatus.CANCELLED, 2 * DAY),
        "fresh_success": finished(JobStatus.SUCCESSFUL, DAY / 2),
        "failed_this_week": finished(JobStatus.FAILED, 3 * DAY),
        "failed_long_ago": finished(JobStatus.FAILED, 8 * DAY),
        "old_but_ready": make_job(enqueued_at=timezone.now() - 30 * DAY),
        "running": make_job(status=JobStatus.RUNNING),
        "mark": advance_tally(),  # its first turn: rows before are counted
    }


def remaining():
    return set(Job.objects.values_list("pk", flat=True))


def test_prune__deletes_old_finished_and_keeps_failed_for_their_retention(rows):
    assert pruning.prune() == 3

    kept = {rows[name].pk for name in ("fresh_success", "failed_this_week")}
    kept |= {rows[name].pk for name in ("old_but_ready", "running")}
    assert remaining() == kept


def test_prune__works_in_small_batches(rows):
    for _ in range(7):
        finished(JobStatus.SUCCESSFUL, 3 * DAY)

    with CaptureQueriesContext(connection) as queries:
        assert pruning.prune(batch_size=4) == 10

    deletes = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")
    ]
    assert len(deletes) == 3  # 4 + 4 + 2 rows


def test_prunejobs__dry_run_counts_and_deletes_nothing(rows, capsys):
    before = remaining()

    call_command("prunejobs", "--dry-run")

    assert "3 finished jobs would be pruned" in capsys.readouterr().out
    assert remaining() == before


def test_prunejobs__prunes(rows, capsys):
    call_command("prunejobs")

    assert "pruned 3 finished jobs" in capsys.readouterr().out
    assert rows["failed_long_ago"].pk not in remaining()


def test_prune__keeps_a_job_an_admin_retried_after_the_ids_were_read(rows, monkeypatch):
    old = rows["old_success"]
    old.status = JobStatus.FAILED  # failed long enough ago to be pruned
    old.finished_at = timezone.now() - 8 * DAY
    old.save()
    delete_prunable = pruning.delete_prunable

    def retried_meanwhile(ids):
        interventions.retry_jobs([old])  # lands between the select and the DELETE
        return delete_prunable(ids)

    monkeypatch.setattr(pruning, "delete_prunable", retried_meanwhile)

    pruning.prune()

    old.refresh_from_db()
    assert old.status == JobStatus.READY


def test_schedule_history__pruned_past_the_failed_retention_but_each_newest_run(
    settings,
):
    settings.JOB_FAILED_CLEANUP_AGE = 7 * 86_400_000  # one week
    now = timezone.now()

    def run(schedule, age):
        return ScheduledRun.objects.create(
            schedule=schedule, scheduled_at=now - age, enqueued_at=now - age
        )

    old = [run("hourly", 9 * DAY), run("hourly", 8 * DAY)]
    recent = run("hourly", DAY)
    newest_of_stopped = run("stopped", 30 * DAY)  # nothing newer: stays
    older_of_stopped = run("stopped", 31 * DAY)
    run_now = ScheduledRun.objects.create(
        schedule="hourly", scheduled_at=None, enqueued_at=now - 10 * DAY
    )

    assert pruning.prune_schedule_history(batch_size=2) == 4

    kept = set(ScheduledRun.objects.values_list("pk", flat=True))
    assert kept == {recent.pk, newest_of_stopped.pk}
    assert not kept & {r.pk for r in [*old, older_of_stopped, run_now]}
