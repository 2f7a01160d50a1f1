"""Concurrency keys: what a key is, what is refused, and the keyed claim's
contract in both forms (the ORM's, run on SQLite, and the SQL run on
PostgreSQL). Workers draining keyed jobs: `test_concurrency_workers.py`."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.tasks import task
from django.tasks.exceptions import InvalidTask
from django.utils import timezone

from jobs.core import hot_path, transitions
from jobs.exceptions import InvalidTaskArguments, WorkerLost
from jobs.maintenance import rescue
from jobs.models import Job, JobStatus, QueuePause

from .helpers import make_job, sessions_waiting_for_a_lock, wait_for
from .testapp import tasks

pytestmark = pytest.mark.django_db

FORMS = {
    "orm": hot_path.claim_keyed_with_orm,
    "sql": hot_path.claim_keyed_with_sql,
}
RUNNABLE = ["orm", "sql"] if connection.vendor == "postgresql" else ["orm"]


@pytest.fixture(params=RUNNABLE)
def claim_keyed(request):
    form = FORMS[request.param]

    def claim(queues=None, limit=10, token="w:1:x:1", job_id=None):  # noqa: S107 (a lease token)
        jobs = form(queues, limit, "w:1:x", token, job_id)
        return sorted(jobs, key=lambda job: (-job.priority, job.run_after))

    return claim


def keyed(key="customer:1", limit=2, **fields):
    return make_job(concurrency_key=key, concurrency_limit=limit, **fields)


def running(key):
    return Job.objects.filter(status=JobStatus.RUNNING, concurrency_key=key).count()


# -- Enqueue: the key of a call ------------------------------------------------


def test_enqueue__formats_the_key_from_the_calls_keyword_arguments():
    result = tasks.per_customer.enqueue(customer_id=42, name="a", seconds=0)

    job = Job.objects.get(pk=result.id)
    assert (job.concurrency_key, job.concurrency_limit) == ("customer:42", 2)


def test_enqueue_many__formats_each_calls_key():
    calls = [((), {"customer_id": i, "name": f"n{i}", "seconds": 0}) for i in (1, 2)]

    results = tasks.per_customer.enqueue_many(calls)

    keys = [Job.objects.get(pk=r.id).concurrency_key for r in results]
    assert keys == ["customer:1", "customer:2"]


def test_limit_without_a_key__is_one_key_for_the_task():
    result = tasks.one_at_a_time.enqueue(name="x", seconds=0)

    job = Job.objects.get(pk=result.id)
    assert job.concurrency_key == "tests.testapp.tasks.one_at_a_time"
    assert job.concurrency_limit == 1


def test_using__sets_the_key_and_limit_of_one_call():
    result = tasks.record_run.using(
        concurrency_key="repo:{key}", concurrency_limit=3
    ).enqueue(key="r1")

    job = Job.objects.get(pk=result.id)
    assert (job.concurrency_key, job.concurrency_limit) == ("repo:r1", 3)


def test_jobs_without_the_options__have_no_key():
    job = Job.objects.get(pk=tasks.record_run.enqueue("plain").id)

    assert (job.concurrency_key, job.concurrency_limit) == ("", None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency_key": "k", "concurrency_limit": 0}, "at least 1, not 0"),
        ({"concurrency_key": "k", "concurrency_limit": 1.5}, "whole number"),
        ({"concurrency_key": "k", "concurrency_limit": True}, "whole number"),
        ({"concurrency_key": "k", "concurrency_limit": "2"}, "whole number"),
        ({"concurrency_key": "k"}, "needs a concurrency_limit"),
        ({"concurrency_key": 7, "concurrency_limit": 1}, "non-empty string, not 7"),
        ({"concurrency_key": "", "concurrency_limit": 1}, "non-empty string"),
        ({"concurrency_key": "c:{", "concurrency_limit": 1}, "not a format string"),
        ({"concurrency_key": "c:{0}", "concurrency_limit": 1}, "keyword arguments"),
        ({"concurrency_key": "c:{nope}", "concurrency_limit": 1}, "'nope'"),
    ],
)
def test_bad_options__are_refused_when_the_task_is_defined(options, message):
    with pytest.raises(InvalidTask, match=message):
        task(**options)(tasks.per_customer.func)
    with pytest.raises(InvalidTask, match=message):
        tasks.record_run.using(**options)


def test_a_call_without_the_keys_argument__is_refused_and_nothing_is_stored():
    with pytest.raises(InvalidTaskArguments, match="'customer_id'"):
        tasks.per_customer.enqueue(name="no customer", seconds=0)
    with pytest.raises(InvalidTaskArguments, match="'customer_id'"):
        tasks.per_customer.enqueue_many(
            [((), {"customer_id": 1, "name": "a", "seconds": 0}), ((), {"name": "b"})]
        )

    assert not Job.objects.exists()


def test_a_key_that_formats_empty__is_refused():
    with pytest.raises(InvalidTaskArguments, match="formats to ''"):
        tasks.record_run.using(concurrency_key="{key}", concurrency_limit=1).enqueue(
            key=""
        )

    assert not Job.objects.exists()


# -- The keyed claim: both forms -------------------------------------------------


def test_claim_keyed__takes_at_most_the_free_slots_of_each_key_in_order(claim_keyed):
    now = timezone.now()
    keyed(status=JobStatus.RUNNING)  # one of customer:1's two slots is taken
    first = keyed(priority=5, run_after=now - timedelta(seconds=1))
    keyed(run_after=now - timedelta(seconds=2))  # lower priority: waits
    other = [keyed("customer:2", run_after=now - timedelta(seconds=i)) for i in (3, 2)]
    keyed("customer:3", limit=1, status=JobStatus.RUNNING)
    keyed("customer:3", limit=1)  # customer:3 is full
    make_job()  # no key: not this claim's

    jobs = claim_keyed(["default"])

    assert [job.pk for job in jobs] == [first.pk, other[0].pk, other[1].pk]
    assert [running(f"customer:{i}") for i in (1, 2, 3)] == [2, 2, 1]
    assert claim_keyed(["default"]) == []


def test_claim_keyed__takes_no_more_than_asked_best_jobs_first(claim_keyed):
    now = timezone.now()
    low = keyed("a", limit=5, run_after=now - timedelta(seconds=9))
    high = keyed("b", limit=5, priority=10)
    keyed("a", limit=5)

    jobs = claim_keyed(None, limit=2)

    assert [job.pk for job in jobs] == [high.pk, low.pk]


def test_claim_keyed__honours_queues_and_due_times(claim_keyed):
    keyed(queue_name="other")
    keyed(run_after=timezone.now() + timedelta(hours=1))

    assert claim_keyed(["default"]) == []
    assert len(claim_keyed(["other"])) == 1


@pytest.mark.parametrize("queues", [["default"], ["default", "other"], None])
def test_claim_keyed__takes_no_job_of_a_paused_queue(claim_keyed, queues):
    paused = keyed()
    QueuePause.objects.create(queue_name="default", paused_at=timezone.now())

    assert claim_keyed(queues) == []
    assert claim_keyed(job_id=paused.pk) == []
    assert Job.objects.get(pk=paused.pk).status == JobStatus.READY

    QueuePause.objects.all().delete()  # resumed
    assert [job.pk for job in claim_keyed(queues)] == [paused.pk]


def test_claim_keyed__by_id_takes_the_job_only_while_its_key_has_a_slot(claim_keyed):
    keyed(limit=1, status=JobStatus.RUNNING)
    waiting = keyed(limit=1)

    assert claim_keyed(job_id=waiting.pk) == []

    Job.objects.filter(status=JobStatus.RUNNING).update(status=JobStatus.SUCCESSFUL)
    (job,) = claim_keyed(job_id=waiting.pk)
    assert (job.pk, job.status, job.attempts) == (waiting.pk, JobStatus.RUNNING, 1)


def test_claim__without_a_key_never_takes_keyed_jobs(claim_keyed):
    waiting = keyed()
    plain = make_job()

    jobs = hot_path.claim(None, 10, "w", "w:1")
    by_id = hot_path.claim(None, 1, "w", "w:2", job_id=waiting.pk)

    assert [job.pk for job in jobs] == [plain.pk] and by_id == []
    assert claim_keyed(job_id=plain.pk) == []


def test_a_rescued_job__frees_its_slot(claim_keyed):
    (held,) = [keyed(limit=1)]
    waiting = keyed(limit=1, run_after=timezone.now() + timedelta(milliseconds=1))
    (claimed,) = claim_keyed()
    assert claimed.pk == held.pk and claim_keyed() == []

    Job.objects.filter(pk=held.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    rescued = rescue.rescue_stalled()

    assert [job.pk for job in rescued] == [held.pk]
    assert [job.pk for job in claim_keyed(limit=1)] in ([held.pk], [waiting.pk])


def test_a_released_or_put_back_job__frees_its_slot(claim_keyed):
    keyed(limit=1)
    keyed(limit=1)
    (first,) = claim_keyed()
    transitions.release([first])
    (second,) = claim_keyed()
    transitions.put_back([second], WorkerLost("gone"), give_up_when_exhausted=True)

    assert len(claim_keyed()) == 1


@pytest.mark.django_db(transaction=True)
def test_claim_keyed__a_second_claimer_waits_for_the_first_then_counts_its_claims(
    postgres_only,
):
    # The first claimer took both slots and has not committed yet. The
    # second must wait for it and count afterwards, in a new snapshot: a
    # count taken before that commit would see two free slots.
    for _ in range(4):
        keyed("hot", limit=2)
    second = {}

    def second_claimer():
        try:
            second["jobs"] = hot_path.claim_keyed(None, 2, "w2", "w2:1")
        finally:
            connections.close_all()

    with transaction.atomic():
        assert len(hot_path.claim_keyed(None, 2, "w1", "w1:1")) == 2
        thread = threading.Thread(target=second_claimer)
        thread.start()
        wait_for(
            lambda: sessions_waiting_for_a_lock("advisory") == 1,
            message="the second claimer to wait for the key",
        )
    thread.join()

    assert second["jobs"] == []
    assert running("hot") == 2


@pytest.mark.django_db(transaction=True)
def test_claim_keyed__claimers_racing_never_share_a_slot(postgres_only):
    # Eight claimers at once, each in its own session, over and over: the
    # slots are counted after each claimer locked the key, so however the
    # claims interleave no more than two jobs of the key are ever RUNNING.
    for _ in range(40):
        keyed("hot", limit=2)
    seen, errors = [], []
    start = threading.Barrier(8)

    def claimer(n):
        try:
            start.wait()
            for i in range(15):
                jobs = hot_path.claim_keyed(None, 2, f"w{n}", f"w{n}:{i}")
                seen.append(running("hot"))
                transitions.release(jobs[:1])  # some slots free again
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert max(seen) <= 2 and running("hot") <= 2
