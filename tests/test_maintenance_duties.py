"""When maintenance runs, and the vacuum duty: on PostgreSQL the duties run
beside a database worker's loop, and the job table is vacuumed once its
dead rows pile up, whatever autovacuum does."""

import re
import threading

import pytest
from django.db import connection

from jobs import maintenance
from jobs.core import hot_path
from jobs.dbworker.worker import Worker
from jobs.maintenance import vacuum
from jobs.models import Job, JobStatus

from .helpers import make_job, scalar, wait_for
from .test_postgres_plans import finished_jobs, rows_read


@pytest.mark.django_db(transaction=True)
def test_duties__on_postgresql_run_beside_the_loop__a_slow_one_delays_no_job(
    postgres_only, monkeypatch, settings
):
    settings.JOB_MAINTENANCE_SECONDS = 0.2
    started, release = threading.Event(), threading.Event()
    turns = []

    def slow_duty():
        turns.append(1)
        if len(turns) > 1:  # the thread's first turn is quick
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
    return scalar(
        "SELECT vacuum_count FROM pg_stat_user_tables"
        " WHERE relid = 'jobs_job'::regclass"
    )


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
    wait_for(
        lambda: vacuum.vacuum_when_dead_rows_pile_up() == "vacuum", message="a vacuum"
    )

    wait_for(lambda: vacuum_count() > before, message="the vacuum counted")


@pytest.mark.django_db(transaction=True)
def test_vacuum__never_truncates_the_job_table_under_its_claims(postgres_only):
    # Truncating the empty tail would take an ACCESS EXCLUSIVE lock, which
    # stops every claim while VACUUM checks the tail pages.
    finished_jobs(3_000)
    Job.objects.all().delete()
    before = table_bytes()

    with connection.cursor() as cursor:
        cursor.execute("VACUUM jobs_job")

    assert table_bytes() == before > 0


def table_bytes():
    return scalar("SELECT pg_relation_size('jobs_job')")


def statistics_show_dead_rows(count):
    dead = scalar(
        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'jobs_job'::regclass"
    )
    return dead >= count


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("threshold", [0, 10_000])
def test_vacuum__leaves_the_table_alone_below_the_threshold_or_when_off(
    postgres_only, settings, threshold
):
    settings.JOB_VACUUM_DEAD_ROWS = threshold
    before = vacuum_count()
    dead_rows(300)
    wait_for(lambda: statistics_show_dead_rows(300), message="the statistics")

    assert vacuum.vacuum_when_dead_rows_pile_up() == ""
    assert vacuum_count() == before


def analyze_count():
    return scalar(
        "SELECT analyze_count FROM pg_stat_user_tables"
        " WHERE relid = 'jobs_job'::regclass"
    )


@pytest.mark.django_db(transaction=True)
def test_vacuum__analyzes_a_table_that_grew_without_dead_rows(postgres_only, settings):
    settings.JOB_VACUUM_DEAD_ROWS = 100
    before = analyze_count()
    for _ in range(300):
        make_job()

    wait_for(
        lambda: vacuum.vacuum_when_dead_rows_pile_up() == "analyze",
        message="an analyze",
    )

    wait_for(lambda: analyze_count() > before, message="the analyze counted")


def claim_rows_read():
    """Rows of the job table the claim prepared on this connection reads, run
    under EXPLAIN ANALYZE with its plan as cached. It claims a job: a rollback
    would make psycopg deallocate the prepared statements."""
    sql = hot_path.claim_sql(hot_path.queue_filters(["default"])[0], None)
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    values = {"queue": "default", "limit": 1, "worker_id": "w", "token": "w:x"}
    values["lease_seconds"] = 60.0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%SKIP LOCKED%"],
        )
        (name,) = cursor.fetchone()
        placeholders = ", ".join(["%s"] * len(names))
        cursor.execute(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}({placeholders})",
            [values[n] for n in names],
        )
        plan = cursor.fetchone()[0][0]["Plan"]
    assert plan["Actual Rows"] == 1
    return rows_read(plan)


@pytest.mark.django_db(transaction=True)
def test_claim__planned_on_a_tiny_table__reads_only_its_rows_once_analyzed(
    postgres_only, settings
):
    settings.JOB_VACUUM_DEAD_ROWS = 100
    for _ in range(12):
        make_job()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    make_job(), make_job()  # for the two claims measured
    connection.close()  # a new connection: nothing prepared on it yet
    for i in range(10):  # the plan is made and kept while the table is tiny
        assert len(hot_path.claim(["default"], 1, "w", f"w:{i}")) == 1
    finished_jobs(3000)
    assert claim_rows_read() > 1000  # that plan now reads the whole table

    wait_for(
        lambda: vacuum.vacuum_when_dead_rows_pile_up() == "analyze",
        message="an analyze",
    )

    assert claim_rows_read() <= 2
