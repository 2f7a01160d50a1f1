"""Unique jobs (`jobs.core.uniqueness`): a second enqueue of a key that a job
holds creates nothing and returns that job; in which states a key is held,
for how long with `unique_for`, what the key is; bulk enqueues; bad options;
admin retry; the race, settled by the database on PostgreSQL.
"""

import threading
from contextlib import nullcontext
from datetime import timedelta
from uuid import uuid4

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_enqueued
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from redis import Redis

from jobs.core import hot_path, interventions
from jobs.models import STATE_BITS, Job, JobStatus
from jobs.notify import pusher
from tests.testapp import tasks
from tests.testapp.models import Run

from .helpers import (
    CHANGELIST,
    drain_rq,
    scalar,
    sessions_waiting_for_a_lock,
    wait_for,
)

pytestmark = pytest.mark.django_db

UNIQUE_ADD = tasks.add.using(unique=True)


def move(result, status, **fields):
    """Put the job of `result` in `status`, as its transitions would."""
    Job.objects.filter(pk=result.id).update(status=status, **fields)


def enqueued_ids():
    return {str(pk) for pk in Job.objects.values_list("pk", flat=True)}


# -- The key -----------------------------------------------------------------


def test_enqueue__same_arguments_again_returns_the_waiting_job():
    first = UNIQUE_ADD.enqueue(1, 2)

    again = UNIQUE_ADD.enqueue(1, 2)

    assert again.id == first.id
    assert again.status == "READY" and (again.args, again.kwargs) == ([1, 2], {})
    assert Job.objects.count() == 1


def test_enqueue__default_key_is_the_arguments_whatever_the_keyword_order():
    first = tasks.fail_times.using(unique=True).enqueue(key="k", times=1)

    again = tasks.fail_times.using(unique=True).enqueue(times=1, key="k")
    other = tasks.fail_times.using(unique=True).enqueue(key="k", times=2)

    assert again.id == first.id != other.id
    assert Job.objects.count() == 2


def test_enqueue__default_key_is_per_task():
    tasks.add.using(unique=True).enqueue(1, 2)

    tasks.noop.using(unique=True).enqueue()
    other_task = tasks.async_add.using(unique=True).enqueue(1, 2)

    assert Job.objects.count() == 3
    assert Job.objects.get(pk=other_task.id).task_path.endswith("async_add")


def test_enqueue__explicit_key_dedupes_calls_with_other_arguments():
    sync = tasks.record_run.using(unique_key="sync:42")

    first = sync.enqueue("a")
    again = sync.enqueue("b")
    other = tasks.record_run.using(unique_key="sync:43").enqueue("b")

    assert again.id == first.id != other.id
    assert again.args == ["a"]  # the existing job's arguments
    assert Job.objects.get(pk=first.id).unique_key == "sync:42"


def test_enqueue__plain_task_is_not_unique():
    tasks.add.enqueue(1, 2)
    tasks.add.enqueue(1, 2)

    assert Job.objects.count() == 2
    assert set(Job.objects.values_list("unique_key", flat=True)) == {None}


def test_using__unique_false_makes_a_unique_task_plain_again():
    plain = tasks.record_run.using(unique_key="k", unique_for=5).using(unique=False)

    plain.enqueue("a")
    plain.enqueue("a")

    assert Job.objects.count() == 2


def test_enqueue__deduplicated_call_sends_no_task_enqueued():
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        first = UNIQUE_ADD.enqueue(1, 2)
        UNIQUE_ADD.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)

    assert seen == [first.id]


# -- The states a key is held in ---------------------------------------------


@pytest.mark.parametrize(
    ("status", "held"),
    [
        (JobStatus.READY, True),
        (JobStatus.RUNNING, True),
        (JobStatus.SUCCESSFUL, False),
        (JobStatus.FAILED, False),
        (JobStatus.CANCELLED, False),
    ],
)
def test_enqueue__by_default_a_key_is_held_while_waiting_or_running(status, held):
    first = UNIQUE_ADD.enqueue(1, 2)
    move(first, status)

    again = UNIQUE_ADD.enqueue(1, 2)

    assert (again.id == first.id) is held
    assert Job.objects.count() == (1 if held else 2)


def test_enqueue__a_delayed_job_holds_its_key():
    later = timezone.now() + timedelta(hours=1)
    first = UNIQUE_ADD.using(run_after=later).enqueue(1, 2)

    again = UNIQUE_ADD.enqueue(1, 2)

    assert again.id == first.id
    assert Job.objects.get().run_after == later


def test_enqueue__a_claimed_job_holds_its_key():
    first = UNIQUE_ADD.enqueue(1, 2)
    hot_path.claim(None, 1, "w:1:x", "w:1:x:1")

    again = UNIQUE_ADD.enqueue(1, 2)

    assert again.id == first.id and again.status == "RUNNING"


@pytest.mark.parametrize(
    ("status", "held"),
    [
        (JobStatus.SUCCESSFUL, True),
        (JobStatus.FAILED, False),
        (JobStatus.CANCELLED, True),
    ],
)
def test_enqueue__chosen_states_hold_the_key(status, held):
    chosen = tasks.add.using(
        unique_states=["READY", "RUNNING", "SUCCESSFUL", "CANCELLED"]
    )
    first = chosen.enqueue(1, 2)
    move(first, status)

    again = chosen.enqueue(1, 2)

    assert (again.id == first.id) is held


def test_enqueue__a_job_that_left_its_states_lets_the_next_one_hold_the_key():
    first = UNIQUE_ADD.enqueue(1, 2)
    move(first, JobStatus.SUCCESSFUL)
    second = UNIQUE_ADD.enqueue(1, 2)

    third = UNIQUE_ADD.enqueue(1, 2)

    assert first.id != second.id == third.id


# -- The period ----------------------------------------------------------------


def test_enqueue__with_unique_for_a_successful_job_holds_the_key_for_the_period():
    hourly = tasks.add.using(unique_for=3600)
    first = hourly.enqueue(1, 2)
    move(first, JobStatus.SUCCESSFUL)

    again = hourly.enqueue(1, 2)

    assert again.id == first.id and again.status == "SUCCESSFUL"
    job = Job.objects.get()
    assert job.unique_until == job.enqueued_at + timedelta(seconds=3600)


def test_enqueue__with_unique_for_a_failed_job_does_not_hold_the_key():
    hourly = tasks.add.using(unique_for=3600)
    first = hourly.enqueue(1, 2)
    move(first, JobStatus.FAILED)

    assert hourly.enqueue(1, 2).id != first.id


def test_enqueue__after_the_period_a_finished_job_lets_go_of_its_key():
    hourly = tasks.add.using(unique_for=3600)
    first = hourly.enqueue(1, 2)
    past = timezone.now() - timedelta(seconds=1)
    move(first, JobStatus.SUCCESSFUL, unique_until=past)

    second = hourly.enqueue(1, 2)

    assert second.id != first.id
    assert hourly.enqueue(1, 2).id == second.id
    assert Job.objects.get(pk=first.id).unique_states == 3  # READY and RUNNING


def test_enqueue__after_the_period_a_live_job_still_holds_its_key():
    hourly = tasks.add.using(unique_for=60)
    first = hourly.enqueue(1, 2)
    move(first, JobStatus.RUNNING, unique_until=timezone.now() - timedelta(hours=1))

    assert hourly.enqueue(1, 2).id == first.id


# -- Bulk ------------------------------------------------------------------


def test_enqueue_many__one_job_per_key_and_the_existing_job_for_held_keys():
    existing = UNIQUE_ADD.enqueue(3, 3)

    results = UNIQUE_ADD.enqueue_many(
        [((1, 1), {}), ((2, 2), {}), ((1, 1), {}), ((3, 3), {}), ((2, 2), {})]
    )

    ids = [result.id for result in results]
    assert ids[0] == ids[2] and ids[1] == ids[4] and ids[3] == existing.id
    assert len(set(ids)) == 3
    assert Job.objects.count() == 3


def test_enqueue_many__with_one_key_creates_one_job():
    results = tasks.record_run.using(unique_key="batch").enqueue_many(
        [(("a",), {}), (("b",), {})]
    )

    assert results[0].id == results[1].id
    assert Job.objects.get().args == ["a"]


# -- Bad options -------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"unique_for": -1}, "unique_for"),
        ({"unique_for": "soon"}, "unique_for"),
        ({"unique_for": True}, "unique_for"),
        ({"unique_for": float("nan")}, "unique_for"),
        ({"unique_key": ""}, "unique_key"),
        ({"unique_key": 42}, "unique_key"),
        ({"unique_key": "k" * 256}, "unique_key"),
        ({"unique_states": ["READY", "RUNNING", "DONE"]}, "'DONE'"),
        ({"unique_states": ["SUCCESSFUL"]}, "must include READY and RUNNING"),
        ({"unique_states": "READY"}, "list of state names"),
        ({"unique": "yes"}, "unique must be True or False"),
    ],
)
def test_using__bad_unique_option_is_refused_naming_it(options, named):
    with pytest.raises(InvalidTask, match=named):
        tasks.add.using(**options)

    assert not Job.objects.exists()


def test_task__bad_unique_option_is_refused_at_definition():
    from django.tasks import task

    with pytest.raises(InvalidTask, match="unique_for"):
        task(unique_for=-5)(tasks.add.func)


# -- Transactions ------------------------------------------------------------


def test_enqueue__a_deduplicated_call_keeps_the_callers_transaction_usable():
    with transaction.atomic():
        first = UNIQUE_ADD.enqueue(1, 2)
        again = UNIQUE_ADD.enqueue(1, 2)
        Run.objects.create(key="after", attempt=0, pid=0)  # still usable

    assert again.id == first.id
    assert Run.objects.filter(key="after").exists()


def test_enqueue__a_rolled_back_job_lets_go_of_its_key():
    with pytest.raises(RuntimeError), transaction.atomic():
        UNIQUE_ADD.enqueue(1, 2)
        raise RuntimeError

    assert UNIQUE_ADD.enqueue(1, 2).id in enqueued_ids()
    assert Job.objects.count() == 1


def test_enqueue__plain_jobs_take_the_one_insert_of_the_hot_path():
    with CaptureQueriesContext(connection) as captured:
        tasks.add.enqueue_many([((i, i), {}) for i in range(3)])

    sql = [q["sql"] for q in captured.captured_queries]
    assert len(sql) == 1 and sql[0].startswith("INSERT")
    assert "CONFLICT" not in sql[0] and "IGNORE" not in sql[0]


def test_unique_index__rejects_a_second_holder_of_a_key():
    first = UNIQUE_ADD.enqueue(1, 2)
    row = Job.objects.get(pk=first.id)
    row.id = uuid4()

    with pytest.raises(IntegrityError), transaction.atomic():
        row.save(force_insert=True)


# -- Admin retry ---------------------------------------------------------------


def test_retry__is_refused_while_another_job_holds_the_key():
    failed = UNIQUE_ADD.enqueue(1, 2)
    move(failed, JobStatus.FAILED, finished_at=timezone.now())
    live = UNIQUE_ADD.enqueue(1, 2)
    refused = {}

    moved = interventions.retry_jobs([Job.objects.get(pk=failed.id)], refused)

    assert moved == []
    assert {str(job): str(holder) for job, holder in refused.items()} == {
        failed.id: live.id
    }
    assert Job.objects.get(pk=failed.id).status == JobStatus.FAILED
    assert Job.objects.filter(status=JobStatus.READY).count() == 1


def test_retry__of_a_unique_job_whose_key_is_free_makes_it_hold_the_key():
    failed = UNIQUE_ADD.enqueue(1, 2)
    move(failed, JobStatus.FAILED, finished_at=timezone.now())

    moved = interventions.retry_jobs(Job.objects.filter(pk=failed.id))

    assert [str(job.pk) for job in moved] == [failed.id]
    assert UNIQUE_ADD.enqueue(1, 2).id == failed.id


def test_retry__of_two_jobs_of_one_key_retries_one():
    first = UNIQUE_ADD.enqueue(1, 2)
    move(first, JobStatus.CANCELLED, finished_at=timezone.now())
    second = UNIQUE_ADD.enqueue(1, 2)
    move(second, JobStatus.FAILED, finished_at=timezone.now())
    refused = {}

    moved = interventions.retry_jobs(Job.objects.all(), refused)

    assert len(moved) == 1 and len(refused) == 1
    assert Job.objects.filter(status=JobStatus.READY).count() == 1


def test_retry__admin_says_which_job_holds_the_key(staff_client):
    failed = UNIQUE_ADD.enqueue(1, 2)
    move(failed, JobStatus.FAILED, finished_at=timezone.now())
    live = UNIQUE_ADD.enqueue(1, 2)

    response = staff_client.post(
        reverse(CHANGELIST),
        {"action": "retry_selected", "_selected_action": [failed.id]},
        follow=True,
    )

    text = " ".join(str(m) for m in response.context["messages"])
    assert "Retried 0 jobs." in text
    assert f"another job holds its unique key ({live.id[:8]})" in text
    assert "only failed or cancelled" not in text


def test_retry__api_answers_409_naming_the_holder(staff_client):
    failed = UNIQUE_ADD.enqueue(1, 2)
    move(failed, JobStatus.FAILED, finished_at=timezone.now())
    live = UNIQUE_ADD.enqueue(1, 2)

    response = staff_client.post(f"/api/jobs/{failed.id}/retry")

    assert response.status_code == 409
    assert live.id in response.json()["error"]


# -- Races, on PostgreSQL ----------------------------------------------------


def enqueue_in_threads(task, count, *args):
    """Enqueue `task(*args)` from `count` threads at once; return the ids."""
    barrier = threading.Barrier(count)
    ids, errors = [], []

    def enqueue():
        try:
            barrier.wait()
            ids.append(task.enqueue(*args).id)
        except Exception as e:  # noqa: BLE001 (reported by the test)
            errors.append(e)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=enqueue) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(ids) == count
    return ids


@pytest.mark.django_db(transaction=True)
def test_race__eight_threads_enqueue_one_key_and_all_get_the_one_job(postgres_only):
    ids = enqueue_in_threads(tasks.record_run.using(unique_key="race"), 8, "t")

    assert Job.objects.count() == 1
    assert set(ids) == {str(Job.objects.get().pk)}


ENQUEUE_IN_PROCESS = (
    "from tests.testapp import tasks; "
    "print('ID', tasks.record_run.using(unique_key='race').enqueue('p').id)"
)


def printed_ids(process):
    assert process.wait(timeout=120) == 0, process.output()
    return [line.split()[1] for line in process.output().splitlines() if "ID " in line]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_race__two_processes_wait_for_an_uncommitted_holder_of_the_key(
    postgres_only, start_worker, outcome
):
    with pytest.raises(RuntimeError) if outcome == "rollback" else nullcontext():
        with transaction.atomic():
            mine = tasks.record_run.using(unique_key="race").enqueue("me")
            processes = [
                start_worker("-c", ENQUEUE_IN_PROCESS, command="shell")
                for _ in range(2)
            ]
            # The unique index makes both INSERTs wait for this transaction.
            wait_for(lambda: sessions_waiting_for_a_lock() == 2, message="both to wait")
            if outcome == "rollback":
                raise RuntimeError

    ids = printed_ids(processes[0]) + printed_ids(processes[1])
    assert Job.objects.count() == 1
    job_id = str(Job.objects.get().pk)
    assert ids == [job_id, job_id]
    assert (job_id == mine.id) is (outcome == "commit")


# -- The Redis path ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_redis__a_deduplicated_enqueue_pushes_no_second_rq_job(redis_dispatch):
    sync = tasks.record_run.using(unique_key="sync:1")
    first = sync.enqueue("once")

    again = sync.enqueue("twice")
    sync.enqueue_many([(("thrice",), {}), (("more",), {})])

    assert again.id == first.id
    assert pusher.pusher.flush(timeout=10)
    client = Redis.from_url(redis_dispatch["REDIS_URL"])
    assert client.lrange("rq:queue:default", 0, -1) == [f"{first.id}-0".encode()]
    drain_rq()
    assert list(Run.objects.values_list("key", flat=True)) == ["once"]
    assert Job.objects.get().status == JobStatus.SUCCESSFUL


def unique_index_pages():
    return scalar("SELECT pg_relation_size('jobs_job_unique') / 8192")


def test_unique_index__plain_jobs_write_no_entry_to_it(postgres_only):
    before = unique_index_pages()

    tasks.add.enqueue_many([((i, i), {}) for i in range(2000)])
    assert unique_index_pages() == before

    UNIQUE_ADD.enqueue_many([((i, i), {}) for i in range(2000)])
    assert unique_index_pages() > before + 10  # ~25 pages of 2,000 entries


def test_state_bits__every_state_has_its_own_bit():
    assert set(STATE_BITS) == set(JobStatus)
    assert sorted(STATE_BITS.values()) == [1 << i for i in range(len(JobStatus))]
