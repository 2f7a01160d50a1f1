"""How PostgreSQL runs the hot path's SQL form: prepared once per connection,
planned once, reading only the rows it claims or records, and flushing the WAL
for claims only.

The cases here need PostgreSQL; what both forms must do is in
`test_hot_path.py`.
"""

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from jobs.core import execution, hot_path, postgres, recording
from jobs.models import Job, JobStatus, QueuePause
from jobs.web.admin_listing import task_paths

from .helpers import CHANGELIST, make_job
from .testapp import tasks

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("setting", [True, "auto", False])
def test_claim__is_prepared_once_per_connection_unless_turned_off(
    postgres_only, settings, setting
):
    # "auto" prepares: this is a direct connection (`test_pgbouncer.py` has
    # the pooler's side).
    prepared = setting is not False
    settings.JOB_PREPARED_STATEMENTS = setting
    connection.close()  # a new connection: nothing prepared on it yet
    for _ in range(4):
        make_job()

    claimed = [hot_path.claim(["default"], 1, "w", f"w:{i}") for i in range(4)]

    assert all(len(jobs) == 1 for jobs in claimed)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%FOR UPDATE SKIP LOCKED%"],
        )
        assert cursor.fetchone()[0] == (1 if prepared else 0)
    assert Job.objects.filter(status=JobStatus.RUNNING).count() == 4


@pytest.mark.django_db(transaction=True)
def test_statements__share_one_psycopg_cursor_per_connection(
    postgres_only, monkeypatch
):
    made = []
    original = postgres.PreparingCursor.__init__

    def counted(self, *args, **kwargs):
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(postgres.PreparingCursor, "__init__", counted)
    connection.close()

    results = [tasks.noop.enqueue() for _ in range(3)]
    claimed = hot_path.claim(["default"], 3, "w", "w:1")
    connection.close()  # a new connection gets a cursor of its own
    results.append(tasks.noop.enqueue())

    assert len(made) == 2
    assert made[0].connection is not made[1].connection
    assert len(claimed) == 3
    assert Job.objects.filter(pk__in=[r.id for r in results]).count() == 4


@pytest.mark.django_db(transaction=True)
def test_statements__run_on_after_one_of_them_failed(postgres_only):
    job = tasks.noop.enqueue()
    duplicate = Job.objects.get(pk=job.id)
    duplicate._state.adding = True

    with pytest.raises(IntegrityError), transaction.atomic():
        hot_path.insert_with_sql([duplicate])
    again = tasks.noop.enqueue()

    assert Job.objects.filter(pk__in=[job.id, again.id]).count() == 2
    assert len(hot_path.claim(["default"], 5, "w", "w:1")) == 2


def rows_read(plan, table="jobs_job"):
    """Rows of `table` an EXPLAIN ANALYZE plan read, kept or thrown away."""
    own = 0
    if plan.get("Relation Name") == table and plan["Node Type"] != "ModifyTable":
        kept = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
        own = kept * plan["Actual Loops"]
    return own + sum(rows_read(child, table) for child in plan.get("Plans", []))


def finished_jobs(count):
    """Insert `count` SUCCESSFUL rows in one statement."""
    now = timezone.now()
    Job.objects.bulk_create(
        Job(
            task_path="tests.testapp.tasks.noop",
            status=JobStatus.SUCCESSFUL,
            enqueued_at=now,
            run_after=now,
            finished_at=now,
        )
        for _ in range(count)
    )


def explain_analyze(sql, params):
    """Run `sql` under EXPLAIN ANALYZE, roll back what it wrote, return its plan."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
        transaction.set_rollback(True)
        return cursor.fetchone()[0][0]["Plan"]


@pytest.mark.parametrize("by_id", [False, True])
def test_claim__reads_only_the_rows_it_claims_when_statistics_are_stale(
    postgres_only, by_id
):
    # Statistics taken while no row was READY, then 300 rows become due: the
    # planner believes READY rows are rare, as after a queue fills up.
    finished_jobs(300)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    Job.objects.update(status=JobStatus.READY, finished_at=None)
    wanted = Job.objects.order_by("?").first().pk if by_id else None

    plan = explain_claim(None if by_id else ["default"], wanted)

    limit = 1 if by_id else 10
    assert plan["Actual Rows"] == limit
    # The pick reads the rows it locks, the UPDATE each of them once more.
    assert rows_read(plan) <= 2 * limit
    if not by_id:
        assert "jobs_job_claim_by_key" in indexes_used(plan)


def explain_claim(queues, job_id=None):
    """EXPLAIN ANALYZE the claim of up to 10 jobs (or `job_id`) of `queues`."""
    filters, params = hot_path.queue_filters(queues)
    params |= {"worker_id": "w", "token": "w:1", "lease_seconds": 60.0}
    params |= {"limit": 1 if job_id else 10, "job_id": job_id}
    return explain_analyze(hot_path.claim_sql(filters, job_id and "id"), params)


def indexes_used(plan):
    """The names of the indexes a plan scans."""
    own = {plan["Index Name"]} if "Index Name" in plan else set()
    return own.union(*(indexes_used(child) for child in plan.get("Plans", [])))


def test_claim__of_a_paused_queue_reads_no_job_row(postgres_only):
    for _ in range(300):
        make_job()
    QueuePause.objects.create(queue_name="default", paused_at=timezone.now())

    plan = explain_claim(["default"])

    assert plan["Actual Rows"] == 0
    assert rows_read(plan) == 0


def test_record_successes__reads_only_the_rows_it_records(postgres_only):
    finished_jobs(3000)
    jobs = [
        make_job(status=JobStatus.RUNNING, lease_token=f"w:{i}", attempts=1)
        for i in range(100)
    ]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    now = timezone.now()
    for count in (5, 1):
        done = [execution.Outcome(job=job, finished_at=now) for job in jobs[:count]]
        params = hot_path.success_params(done)
        for flush in (True, False):
            plan = explain_analyze(
                hot_path.succeed_sql(hot_path.done_kind(done), flush), params
            )

            assert plan["Actual Rows"] == count
            assert rows_read(plan) == count


def test_record_successes__reads_each_run_once_when_statistics_see_none_running(
    postgres_only,
):
    # Statistics taken while every row was READY, as when a queue fills up:
    # the planner expects one RUNNING row per batch. Joined with the runs as
    # a set, it then read all the runs again for each row it recorded.
    now = timezone.now()
    Job.objects.bulk_create(
        Job(task_path="tests.testapp.tasks.noop", enqueued_at=now, run_after=now)
        for _ in range(20_000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    jobs = hot_path.claim(["default"], 200, "w", "w:1")
    done = [execution.Outcome(job=job, finished_at=now) for job in jobs]

    sql, params = hot_path.succeed_sql("many"), hot_path.success_params(done)
    plan = explain_analyze(sql, params)

    assert plan["Actual Rows"] == 200
    assert rows_of_runs(plan) <= 5 * 200


def rows_of_runs(plan):
    """Rows every node of a plan, other than the scans of jobs_job and its
    indexes, produced or threw away in joins, over all its loops."""
    own = 0
    scans_jobs = plan.get("Relation Name") == "jobs_job" or "Index Name" in plan
    if not scans_jobs or plan["Node Type"] == "ModifyTable":
        kept = plan["Actual Rows"] + plan.get("Rows Removed by Join Filter", 0)
        own = kept * plan["Actual Loops"]
    return own + sum(rows_of_runs(child) for child in plan.get("Plans", []))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_claim", [False, True])
def test_recording_one_run__is_planned_once_per_connection(postgres_only, with_claim):
    # PostgreSQL plans a prepared statement for each execution (a custom
    # plan) until its one generic plan looks no dearer. The RQ path records
    # one run per statement, with its next claim or alone.
    finished_jobs(3000)  # a table where ten lookups cost more than one
    running = [
        make_job(status=JobStatus.RUNNING, lease_token=f"w:{i}", attempts=1)
        for i in range(8)
    ]
    ready = [make_job() for _ in range(8)]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    connection.close()  # a new connection: nothing prepared on it yet

    for i, job in enumerate(running):
        done = [execution.Outcome(job=job, finished_at=timezone.now())]
        if with_claim:
            token = f"w:c{i}"
            claimed = recording.claim_after(done, None, 1, "w", token, ready[i].pk)
            assert [claimed_job.pk for claimed_job in claimed] == [ready[i].pk]
        else:
            assert hot_path.record_successes(done) == {job.pk: JobStatus.SUCCESSFUL}

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE %s",
            ["%'SUCCESSFUL'%"],
        )
        ((generic, custom),) = cursor.fetchall()
    # Five custom plans to compare with, then the generic one every time.
    assert (generic, custom) == (3, 5)
    recorded = Job.objects.filter(pk__in=[job.pk for job in running])
    assert set(recorded.values_list("status", flat=True)) == {JobStatus.SUCCESSFUL}


@pytest.mark.django_db(transaction=True)
def test_record_successes__skips_the_wal_flush_of_its_own_transaction_only(
    postgres_only,
):
    job = make_job(status=JobStatus.RUNNING, lease_token="w:1", attempts=1)
    outcome = execution.Outcome(job=job, finished_at=timezone.now())

    def synchronous_commit():
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    with transaction.atomic():
        assert synchronous_commit() == "on"
        recorded = hot_path.record_successes_with_sql([outcome])
        assert synchronous_commit() == "off"

    assert recorded == {job.pk: JobStatus.SUCCESSFUL}
    assert synchronous_commit() == "on"  # the next transaction flushes again
    # A claim is never relaxed: it must survive a crash.
    make_job()
    with transaction.atomic():
        assert len(hot_path.claim(["default"], 1, "w", "w:2")) == 1
        assert synchronous_commit() == "on"


@pytest.mark.parametrize(("term", "found"), [("rare", 3), ("no.such.task", 0)])
def test_admin_search_by_task__reads_only_the_rows_it_shows(
    postgres_only, staff_client, term, found
):
    # A substring search of task_path would read every row; the search finds
    # the matching paths (few) and then their rows by the task index.
    finished_jobs(20_000)
    make_job(task_path="tests.testapp.tasks.rare")  # one waiting
    for _ in range(found - 1):
        make_job(task_path="tests.testapp.tasks.rare", status=JobStatus.FAILED)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")

    with CaptureQueriesContext(connection) as queries:
        listing = staff_client.get(reverse(CHANGELIST), {"q": term})

    assert len(listing.context["cl"].result_list) == found
    on_jobs = [q["sql"] for q in queries.captured_queries if "jobs_job" in q["sql"]]
    assert on_jobs  # the list, its count and the tasks it offers
    for sql in on_jobs:
        # The shown rows; or two index probes per finished task, one past
        # the last, and the waiting rows.
        assert rows_read(explain_analyze(sql, None)) <= max(found, 2 * 2 + 1 + 1), sql


def test_task_paths__reads_one_row_per_task(postgres_only):
    finished_jobs(20_000)
    make_job(task_path="tests.testapp.tasks.rare")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")

    with CaptureQueriesContext(connection) as queries:
        assert task_paths() == ["tests.testapp.tasks.noop", "tests.testapp.tasks.rare"]
    (query,) = queries.captured_queries
    plan = explain_analyze(query["sql"], None)
    # Two probes per task (its own, and the one that finds the next), and
    # the last that finds none: never the table.
    assert rows_read(plan) <= 2 * 2 + 1


def scans(plan):
    """Every (node type, relation) of a plan."""
    yield plan["Node Type"], plan.get("Relation Name")
    for child in plan.get("Plans", []):
        yield from scans(child)


@pytest.mark.parametrize("kind", ["id", "task", "args", "kwargs"])
def test_admin_search__of_each_kind_reads_no_sequential_scan_of_the_jobs(
    postgres_only, staff_client, kind
):
    # 20,000 finished jobs, each with its own arguments; one to find.
    now = timezone.now()
    Job.objects.bulk_create(
        Job(
            task_path="tests.testapp.tasks.noop",
            status=JobStatus.SUCCESSFUL,
            args=[f"https://example.org/r{i}.git"],
            kwargs={"n": i},
            enqueued_at=now,
            run_after=now,
            finished_at=now,
        )
        for i in range(20_000)
    )
    job = make_job(
        task_path="tests.testapp.tasks.rare",
        args=["https://example.org/needle.git"],
        kwargs={"customer": "acme-needle"},
        status=JobStatus.FAILED,
        finished_at=now,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    term = {
        "id": str(job.pk)[:8],
        "task": "rare",
        "args": "NEEDLE.git",
        "kwargs": "acme-needle",
    }[kind]

    with CaptureQueriesContext(connection) as queries:
        listing = staff_client.get(reverse(CHANGELIST), {"q": term})

    assert [j.pk for j in listing.context["cl"].result_list] == [job.pk]
    on_jobs = [q["sql"] for q in queries.captured_queries if "jobs_job" in q["sql"]]
    for sql in on_jobs:
        plan = explain_analyze(sql, None)
        assert ("Seq Scan", "jobs_job") not in set(scans(plan)), sql
        assert rows_read(plan) <= 10, sql
