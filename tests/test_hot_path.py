"""The hot path's contract: enqueue, claim and record a success mean the same
in both forms (the ORM's, run on SQLite, and the SQL run on PostgreSQL).

Each case runs against every form the database can run: the ORM form on both,
the SQL form on PostgreSQL. How PostgreSQL plans it: `test_postgres_plans.py`.
"""

from dataclasses import dataclass
from datetime import timedelta
from uuid import uuid4

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import conf
from jobs.core import execution, hot_path
from jobs.models import Job, JobStatus, QueuePause

from .helpers import make_job

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Form:
    claim: object  # (queues, limit, worker_id, token, job_id, successes)
    record_successes: object  # (outcomes) -> {job id: status}
    insert: object  # (jobs)
    insert_new: object  # (unique jobs) -> ids inserted


FORMS = {
    "orm": Form(
        hot_path.claim_with_orm,
        hot_path.record_successes_with_orm,
        hot_path.insert_with_orm,
        hot_path.insert_new_with_orm,
    ),
    "sql": Form(
        hot_path.claim_with_sql,
        hot_path.record_successes_with_sql,
        hot_path.insert_with_sql,
        hot_path.insert_new_with_sql,
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


def test_claim__by_ids_takes_those_of_them_that_are_due_and_ready(form):
    low, high, taken = make_job(priority=-1), make_job(priority=3), make_job()
    delayed = make_job(run_after=timezone.now() + timedelta(hours=1))
    other = make_job()
    claim(form, job_id=taken.pk, token="w:0")
    ids = [low.pk, taken.pk, delayed.pk, high.pk]

    jobs, _ = claim(form, limit=len(ids), job_id=ids)

    assert {job.pk for job in jobs} == {high.pk, low.pk}
    assert {job.lease_token for job in jobs} == {"w:1:x:1"}
    assert Job.objects.get(pk=other.pk).status == JobStatus.READY
    assert Job.objects.get(pk=delayed.pk).status == JobStatus.READY


@pytest.mark.parametrize(
    "queues", [["default"], ["default", "other"], None], ids=["one", "many", "any"]
)
def test_claim__takes_no_job_of_a_paused_queue(form, queues):
    paused = make_job(priority=10)
    running = make_job(queue_name="other")
    QueuePause.objects.create(queue_name="default", paused_at=timezone.now())

    jobs, _ = claim(form, queues)

    assert [job.pk for job in jobs] == ([running.pk] if queues != ["default"] else [])
    assert claim(form, job_id=paused.pk)[0] == []
    assert Job.objects.get(pk=paused.pk).status == JobStatus.READY
    QueuePause.objects.all().delete()
    assert [job.pk for job in claim(form, queues, token="w:2")[0]] == [paused.pk]


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


def unique_job(key, status=JobStatus.READY):
    return new_job(unique_key=key, unique_states=3, status=status)


def test_insert_new__skips_jobs_whose_key_a_row_holds_and_returns_the_rest(form):
    held = unique_job("a")
    form.insert([held])
    finished = unique_job("b", status=JobStatus.SUCCESSFUL)  # holds nothing
    form.insert([finished])
    jobs = [unique_job("a"), unique_job("b"), unique_job("c"), unique_job("c")]

    with transaction.atomic():
        inserted = form.insert_new(jobs)

    assert inserted == {jobs[1].pk, jobs[2].pk}
    assert set(Job.objects.values_list("pk", flat=True)) == {
        held.pk,
        finished.pk,
        jobs[1].pk,
        jobs[2].pk,
    }


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
