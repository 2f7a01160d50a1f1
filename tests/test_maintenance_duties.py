"""When maintenance runs, and the vacuum duty: on PostgreSQL the duties run
beside a database worker's loop, and the job table is vacuumed once its
dead rows pile up, whatever autovacuum does."""

import threading

import pytest
from django.db import connection

from jobs import maintenance
from jobs.dbworker.worker import Worker
from jobs.maintenance import vacuum
from jobs.models import Job, JobStatus

from .helpers import make_job, wait_for


@pytest.mark.django_db(transaction=True)
def test_duties__on_postgresql_run_beside_the_loop__a_slow_one_delays_no_job(
    postgres_only, monkeypatch
):
    started, release = threading.Event(), threading.Event()

    def slow_duty():
        started.set()
        release.wait(120)

    monkeypatch.setattr(maintenance, "DUTIES", [slow_duty])
    worker = Worker(burst=False, install_signals=False)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_for(started.is_set, message="the duty to start")
        job = make_job()

        wait_for(
            lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCESSFUL,
            message="the job to run while the duty still works",
        )
        assert not release.is_set()
    finally:
        release.set()
        worker.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()


def vacuum_count():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT vacuum_count FROM pg_stat_user_tables"
            " WHERE relid = 'jobs_job'::regclass"
        )
        return cursor.fetchone()[0]


def dead_rows(count):
    """Leave `count` dead row versions in the job table."""
    for _ in range(count):
        make_job()
    Job.objects.all().delete()


@pytest.mark.django_db(transaction=True)
def test_vacuum__cleans_the_job_table_once_dead_rows_pass_the_threshold(
    postgres_only, settings
):
    settings.JOB_VACUUM_DEAD_ROWS = 100
    before = vacuum_count()
    dead_rows(300)

    # The statistics reach pg_stat_user_tables shortly after the commit.
    wait_for(vacuum.vacuum_when_dead_rows_pile_up, message="a vacuum")

    wait_for(lambda: vacuum_count() > before, message="the vacuum counted")


def statistics_show_dead_rows(count):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_dead_tup FROM pg_stat_user_tables"
            " WHERE relid = 'jobs_job'::regclass"
        )
        return cursor.fetchone()[0] >= count


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("threshold", [0, 10_000])
def test_vacuum__leaves_the_table_alone_below_the_threshold_or_when_off(
    postgres_only, settings, threshold
):
    settings.JOB_VACUUM_DEAD_ROWS = threshold
    before = vacuum_count()
    dead_rows(300)
    wait_for(lambda: statistics_show_dead_rows(300), message="the statistics")

    assert vacuum.vacuum_when_dead_rows_pile_up() == 0
    assert vacuum_count() == before
