"""Rescue, the maintenance lease, and the fences that keep transitions honest."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import heartbeat, maintenance
from jobs.core import execution, postgres, recording, transitions
from jobs.maintenance import leader, registry, rescue
from jobs.models import Job, JobStatus, Lease, WorkerProcess

from .helpers import in_the_past, make_job

pytestmark = pytest.mark.django_db


def running_job(**fields):
    defaults = {
        "status": JobStatus.RUNNING,
        "attempts": 1,
        "worker_ids": ["gone:1:abc"],
        "lease_token": "gone:1:abc:1",
        "lease_expires_at": in_the_past(),
    }
    return make_job(**{**defaults, **fields})


def test_rescue__puts_a_stalled_job_back_with_a_worker_lost_error():
    job = running_job()

    rescue.rescue_stalled()

    job.refresh_from_db()
    assert job.status == JobStatus.READY
    assert job.run_after <= timezone.now()
    assert job.lease_expires_at is None
    assert job.errors[0]["exception_class_path"] == "jobs.exceptions.WorkerLost"
    assert job.errors[0]["attempt"] == 1
    assert job.errors[0]["worker_id"] == "gone:1:abc"


def test_rescue__fails_a_stalled_job_with_no_attempts_left():
    job = running_job(attempts=3, max_attempts=3)

    rescue.rescue_stalled()

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.finished_at is not None


def test_rescue__leaves_jobs_with_a_live_lease_alone():
    job = running_job(lease_expires_at=timezone.now() + timedelta(seconds=30))

    assert rescue.rescue_stalled() == []

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


def test_fence__a_worker_that_lost_its_claim_cannot_record_success():
    job = running_job(lease_expires_at=timezone.now() + timedelta(seconds=30))
    stale = Job.objects.get(pk=job.pk)
    Job.objects.filter(pk=job.pk).update(lease_token="new-owner:1")
    outcome = execution.Outcome(job=stale, finished_at=timezone.now(), value=1)

    assert transitions.record_successes([outcome]) == {}

    job.refresh_from_db()
    assert (job.status, job.lease_token) == (JobStatus.RUNNING, "new-owner:1")


def test_claim__takes_only_due_ready_jobs_of_its_queues():
    due = make_job()
    make_job(run_after=timezone.now() + timedelta(hours=1))
    make_job(queue_name="other")
    make_job(status=JobStatus.FAILED)

    claimed = transitions.claim(["default"], 10, "w:1:x", "w:1:x:1")

    assert [job.pk for job in claimed] == [due.pk]
    due.refresh_from_db()
    assert due.status == JobStatus.RUNNING
    assert due.attempts == 1 and due.worker_ids == ["w:1:x"]
    assert due.lease_token == "w:1:x:1" and due.lease_expires_at > timezone.now()


def test_claim__respects_the_limit():
    for _ in range(5):
        make_job()

    assert len(transitions.claim(["default"], 3, "w", "w:1")) == 3
    assert Job.objects.filter(status=JobStatus.READY).count() == 2


def statements(captured):
    """The data statements run, without transaction control."""
    verbs = [q["sql"].split()[0] for q in captured.captured_queries]
    return [v for v in verbs if v not in {"BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"}]


def test_claim_and_finish__use_a_fixed_number_of_queries_per_batch():
    for _ in range(20):
        make_job()

    with CaptureQueriesContext(connection) as claiming:
        jobs = transitions.claim(["default"], 20, "w", "w:1")
    outcomes = [
        execution.Outcome(job=job, finished_at=timezone.now(), value=None)
        for job in jobs
    ]
    with CaptureQueriesContext(connection) as finishing:
        transitions.record_successes(outcomes)

    assert len(jobs) == 20
    if connection.vendor == "postgresql":
        # WITH (SELECT ... FOR UPDATE SKIP LOCKED) UPDATE ... RETURNING.
        assert statements(claiming) == ["WITH"]
    else:
        assert statements(claiming) == ["SELECT", "UPDATE"]
    assert statements(finishing) == ["UPDATE"]
    assert Job.objects.filter(status=JobStatus.SUCCESSFUL).count() == 20


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prepared", [True, False])
def test_claim__is_prepared_once_per_connection_unless_turned_off(
    postgres_only, settings, prepared
):
    settings.JOB_PREPARED_STATEMENTS = prepared
    connection.close()  # a new connection: nothing prepared on it yet
    for _ in range(4):
        make_job()

    claimed = [transitions.claim(["default"], 1, "w", f"w:{i}") for i in range(4)]

    assert all(len(jobs) == 1 for jobs in claimed)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%FOR UPDATE SKIP LOCKED%"],
        )
        assert cursor.fetchone()[0] == (1 if prepared else 0)
    assert Job.objects.filter(status=JobStatus.RUNNING).count() == 4


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
    params = {
        "limit": 1 if by_id else 10,
        "worker_id": "w",
        "token": "w:1",
        "lease_seconds": 60.0,
        "queue": "default",
        "job_id": wanted,
    }
    filters = "" if by_id else " AND queue_name = %(queue)s"

    plan = explain_analyze(postgres.claim_sql(filters, by_id), params)

    assert plan["Actual Rows"] == params["limit"]
    # The pick reads the rows it locks, the UPDATE each of them once more.
    assert rows_read(plan) <= 2 * params["limit"]


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
        params = postgres.success_params(done)
        for flush in (True, False):
            plan = explain_analyze(
                postgres.succeed_sql(postgres.done_kind(done), flush), params
            )

            assert plan["Actual Rows"] == count
            assert rows_read(plan) == count


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
            assert transitions.record_successes(done) == {job.pk: JobStatus.SUCCESSFUL}

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
        recorded = postgres.record_successes([outcome])
        assert synchronous_commit() == "off"

    assert recorded == {job.pk: JobStatus.SUCCESSFUL}
    assert synchronous_commit() == "on"  # the next transaction flushes again
    # A claim is never relaxed: it must survive a crash.
    make_job()
    with transaction.atomic():
        assert len(transitions.claim(["default"], 1, "w", "w:2")) == 1
        assert synchronous_commit() == "on"


def test_lease__one_holder_at_a_time_until_it_expires():
    assert leader.acquire_lease("duty", "a", 60)
    assert not leader.acquire_lease("duty", "b", 60)
    assert leader.acquire_lease("duty", "a", 60)  # renewing is fine

    Lease.objects.filter(name="duty").update(expires_at=in_the_past())

    assert leader.acquire_lease("duty", "b", 60)
    assert Lease.objects.get(name="duty").holder == "b"


def test_run_due_duties__only_the_lease_holder_rescues():
    job = running_job()
    assert leader.acquire_lease(leader.MAINTENANCE, "other-worker", 60)

    assert not maintenance.run_due_duties("this-worker")
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--queue", "nope"], "Unknown queue"),
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--max-jobs", "0"], "--max-jobs must be at least 1"),
    ],
)
def test_jobworker__refuses_bad_options(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("jobworker", *args)


def test_worker_registry__register_beat_forget():
    heartbeat.register("w:1:a", WorkerProcess.Kind.DATABASE, ["default"], 5)
    heartbeat.register("w:2:b", WorkerProcess.Kind.RQ, ["default"], 1)
    WorkerProcess.objects.filter(id="w:2:b").update(last_heartbeat_at=in_the_past(600))

    assert heartbeat.beat("w:1:a") == 1
    assert list(WorkerProcess.objects.alive().values_list("id", flat=True)) == ["w:1:a"]
    registry.forget_dead_workers()
    assert list(WorkerProcess.objects.values_list("id", flat=True)) == ["w:1:a"]
    heartbeat.unregister("w:1:a")
    assert heartbeat.beat("w:1:a") == 0
