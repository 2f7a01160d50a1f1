"""The hot path's contract: enqueue, claim and record a success mean the same
in both forms (the ORM's, run on SQLite, and the SQL run on PostgreSQL).

Every case runs against each form the database can run: the ORM form on
both databases, the SQL form on PostgreSQL.
"""

from dataclasses import dataclass
from datetime import timedelta
from uuid import uuid4

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import conf
from jobs.core import execution, hot_path, recording
from jobs.models import Job, JobStatus

from .helpers import make_job

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Form:
    claim: object  # (queues, limit, worker_id, token, job_id, successes)
    record_successes: object  # (outcomes) -> {job id: status}
    insert: object  # (jobs)


FORMS = {
    "orm": Form(
        hot_path.claim_with_orm,
        hot_path.record_successes_with_orm,
        hot_path.insert_with_orm,
    ),
    "sql": Form(
        hot_path.claim_with_sql,
        hot_path.record_successes_with_sql,
        hot_path.insert_with_sql,
    ),
}
RUNNABLE = ["orm", "sql"] if connection.vendor == "postgresql" else ["orm"]


@pytest.fixture(params=RUNNABLE)
def form(request):
    return FORMS[request.param]


def claim(form, queues=None, limit=10, token="w:1:x:1", job_id=None, successes=()):  # noqa: S107 (a lease token)
    jobs, recorded = form.claim(queues, limit, "w:1:x", token, job_id, successes)
    return jobs, recorded


def succeeded(job, value=None):
    return execution.Outcome(job=job, finished_at=timezone.now(), value=value)


def test_claim__takes_only_due_ready_jobs_of_its_queues(form):
    due = make_job()
    make_job(run_after=timezone.now() + timedelta(hours=1))
    make_job(queue_name="other")
    make_job(status=JobStatus.FAILED)

    jobs, recorded = claim(form, ["default"])

    assert [job.pk for job in jobs] == [due.pk] and recorded == {}
    row = Job.objects.get(pk=due.pk)
    assert (row.status, row.attempts, row.worker_ids) == (
        JobStatus.RUNNING,
        1,
        ["w:1:x"],
    )
    assert row.lease_token == "w:1:x:1"
    lease = row.lease_expires_at - row.last_attempted_at
    assert abs(lease.total_seconds() - conf.get("JOB_LEASE_SECONDS")) < 0.5
    assert row.started_at is not None and row.last_attempted_at is not None
    # The claimed jobs come back as the rows now read.
    assert [job.status for job in jobs] == [JobStatus.RUNNING]
    assert jobs[0].lease_token == "w:1:x:1" and jobs[0].attempts == 1


def test_claim__takes_jobs_of_any_of_its_queues(form):
    ours = {make_job(queue_name="a").pk, make_job(queue_name="b").pk}
    make_job(queue_name="c")

    jobs, _ = claim(form, ["a", "b"])

    assert {job.pk for job in jobs} == ours


def test_claim__respects_the_limit(form):
    for _ in range(5):
        make_job()

    jobs, _ = claim(form, limit=3)

    assert len(jobs) == 3
    assert Job.objects.filter(status=JobStatus.READY).count() == 2


def test_claim__takes_the_highest_priority_then_the_longest_due(form):
    now = timezone.now()
    make_job(priority=0, run_after=now - timedelta(minutes=5))
    later = make_job(priority=5, run_after=now - timedelta(minutes=1))
    first = make_job(priority=5, run_after=now - timedelta(minutes=2))

    taken = [claim(form, limit=1, token=f"w:{i}")[0][0].pk for i in range(2)]

    assert taken == [first.pk, later.pk]


def test_claim__by_id_takes_that_job_only_when_due_and_ready(form):
    wanted, other = make_job(), make_job()
    delayed = make_job(run_after=timezone.now() + timedelta(hours=1))

    jobs, _ = claim(form, job_id=wanted.pk)

    assert [job.pk for job in jobs] == [wanted.pk]
    assert claim(form, job_id=delayed.pk)[0] == []
    assert claim(form, job_id=wanted.pk, token="w:2")[0] == []  # claimed already
    assert Job.objects.get(pk=other.pk).status == JobStatus.READY


def test_claim__of_a_retried_job_counts_the_attempt_and_keeps_its_first_start(
    form,
):
    started = timezone.now() - timedelta(hours=1)
    job = make_job(attempts=1, worker_ids=["w:0:old"], started_at=started)

    claim(form)

    row = Job.objects.get(pk=job.pk)
    assert (row.attempts, row.worker_ids) == (2, ["w:0:old", "w:1:x"])
    assert row.started_at == started


@pytest.mark.parametrize("count", [1, 3])
def test_record_successes__records_each_held_run_with_its_value(form, count):
    for _ in range(count):
        make_job()
    jobs, _ = claim(form)
    outcomes = [succeeded(job, value={"n": i}) for i, job in enumerate(jobs)]

    recorded = form.record_successes(outcomes)

    assert recorded == {job.pk: JobStatus.SUCCESSFUL for job in jobs}
    for outcome in outcomes:
        row = Job.objects.get(pk=outcome.job.pk)
        assert (row.status, row.return_value) == (JobStatus.SUCCESSFUL, outcome.value)
        assert row.finished_at == outcome.finished_at
        assert row.lease_expires_at is None


@pytest.mark.parametrize("count", [1, 3])
def test_record_successes__records_nothing_for_a_run_whose_lease_was_taken(form, count):
    for _ in range(count):
        make_job()
    jobs, _ = claim(form)
    stale = jobs[0]
    Job.objects.filter(pk=stale.pk).update(lease_token="new-owner:1")

    recorded = form.record_successes([succeeded(job, 1) for job in jobs])

    assert stale.pk not in recorded and len(recorded) == count - 1
    row = Job.objects.get(pk=stale.pk)
    assert (row.status, row.lease_token) == (JobStatus.RUNNING, "new-owner:1")
    assert row.return_value is None


def test_record_successes__ends_a_run_whose_cancel_was_requested_cancelled(form):
    make_job(), make_job()
    jobs, _ = claim(form)
    Job.objects.filter(pk=jobs[0].pk).update(cancel_requested=True)

    recorded = form.record_successes([succeeded(job) for job in jobs])

    assert recorded == {
        jobs[0].pk: JobStatus.CANCELLED,
        jobs[1].pk: JobStatus.SUCCESSFUL,
    }
    assert Job.objects.get(pk=jobs[0].pk).finished_at is not None


@pytest.mark.parametrize("count", [1, 2])
def test_claim__with_successes_records_them_and_claims_the_next(form, count):
    for _ in range(count):
        make_job()
    done, _ = claim(form)
    following = make_job()

    jobs, recorded = claim(form, token="w:2", successes=[succeeded(j) for j in done])

    assert recorded == {job.pk: JobStatus.SUCCESSFUL for job in done}
    assert [job.pk for job in jobs] == [following.pk]
    assert Job.objects.filter(status=JobStatus.SUCCESSFUL).count() == count


def test_claim__with_successes_records_them_when_nothing_is_due(form):
    make_job()
    done, _ = claim(form)

    jobs, recorded = claim(form, token="w:2", successes=[succeeded(done[0], 7)])

    assert jobs == [] and recorded == {done[0].pk: JobStatus.SUCCESSFUL}
    assert Job.objects.get(pk=done[0].pk).return_value == 7


def new_job(**fields):
    now = timezone.now()
    defaults = {
        "id": uuid4(),
        "task_path": "tests.testapp.tasks.noop",
        "enqueued_at": now,
        "run_after": now,
    }
    return Job(**{**defaults, **fields})


STORED = ["task_path", "queue_name", "priority", "args", "kwargs", "run_after"]
STORED += ["status", "max_attempts", "timeout", "backoff_base", "enqueued_at"]


def test_insert__stores_every_field_as_given(form):
    later = timezone.now() + timedelta(minutes=3)
    jobs = [
        new_job(args=[1, "two", None], kwargs={"k": [True]}, priority=3),
        new_job(queue_name="mail", run_after=later, max_attempts=7, timeout=1.5),
        new_job(args=[], kwargs={}, backoff_base=2.0),
    ]

    with transaction.atomic():
        form.insert(jobs)

    for job in jobs:
        row = Job.objects.get(pk=job.pk)
        assert [getattr(row, name) for name in STORED] == [
            getattr(job, name) for name in STORED
        ]
        assert not job._state.adding  # saved, as `bulk_create` leaves it


def test_insert__of_jobs_alike_but_their_ids_stores_each(form):
    now = timezone.now()
    jobs = [new_job(enqueued_at=now, run_after=now, args=[1]) for _ in range(4)]

    form.insert(jobs)

    assert Job.objects.filter(args=[1]).count() == 4


def test_hot_path__uses_the_sql_form_on_postgresql_only(monkeypatch):
    used = []
    for name in RUNNABLE:
        form = FORMS[name]
        for role in ("claim", "record_successes", "insert"):
            fn = getattr(form, role)
            monkeypatch.setattr(
                hot_path,
                fn.__name__,
                lambda *a, _n=name, _fn=fn, **k: used.append(_n) or _fn(*a, **k),
            )
    expected = "sql" if connection.vendor == "postgresql" else "orm"

    hot_path.insert([new_job()])
    jobs = hot_path.claim(None, 1, "w", "w:1")
    hot_path.record_successes([succeeded(jobs[0])])

    assert used == [expected] * 3


def statements(captured):
    """The data statements run, without transaction control."""
    verbs = [q["sql"].split()[0] for q in captured.captured_queries]
    return [v for v in verbs if v not in {"BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"}]


def test_claim_and_finish__use_a_fixed_number_of_queries_per_batch():
    for _ in range(20):
        make_job()

    with CaptureQueriesContext(connection) as claiming:
        jobs = hot_path.claim(["default"], 20, "w", "w:1")
    outcomes = [
        execution.Outcome(job=job, finished_at=timezone.now(), value=None)
        for job in jobs
    ]
    with CaptureQueriesContext(connection) as finishing:
        hot_path.record_successes(outcomes)

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

    claimed = [hot_path.claim(["default"], 1, "w", f"w:{i}") for i in range(4)]

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

    plan = explain_analyze(hot_path.claim_sql(filters, by_id), params)

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
        params = hot_path.success_params(done)
        for flush in (True, False):
            plan = explain_analyze(
                hot_path.succeed_sql(hot_path.done_kind(done), flush), params
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
