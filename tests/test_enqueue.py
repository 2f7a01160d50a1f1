"""Enqueue and enqueue_many, as callers of the django.tasks API see them: the
rows they write, in one statement, with the task's options; what they refuse,
storing nothing; and listeners told only on commit.

What get_result reads back: `test_get_result.py`.
"""

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.tasks import TaskResultStatus, task
from django.tasks.exceptions import (
    InvalidTask,
)
from django.tasks.signals import task_enqueued
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.exceptions import InvalidTaskArguments, JobQueueDisabled
from jobs.models import Job, JobStatus
from tests.testapp import tasks

from .helpers import make_job, notify_lock_held, scalar

pytestmark = pytest.mark.django_db


def test_enqueue__writes_a_ready_row_with_the_task_options():
    result = tasks.fail_times.using(priority=7).enqueue("k", times=1)

    job = Job.objects.get(pk=result.id)
    assert job.status == JobStatus.READY
    assert job.task_path == "tests.testapp.tasks.fail_times"
    assert (job.args, job.kwargs) == (["k"], {"times": 1})
    assert (job.priority, job.queue_name, job.max_attempts) == (7, "default", 5)
    assert job.run_after == job.enqueued_at == result.enqueued_at
    assert result.status == TaskResultStatus.READY
    assert result.attempts == 0


def test_enqueue__max_attempts_defaults_to_the_setting(settings):
    settings.JOB_MAX_ATTEMPTS = 4

    result = tasks.add.enqueue(1, 2)

    assert Job.objects.get(pk=result.id).max_attempts == 4


def test_enqueue__sends_task_enqueued():
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)

    assert seen == [result.id]


def test_enqueue__rolled_back_transaction_leaves_no_job():
    class RollbackError(Exception):
        pass

    with pytest.raises(RollbackError), transaction.atomic():
        tasks.add.enqueue(1, 2)
        raise RollbackError

    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ((object(),), {}, "argument 0"),
        ((1, datetime.now(UTC)), {}, "argument 1"),
        ((), {"a": 1, "b": {1, 2}}, "keyword argument 'b'"),
        ((math.nan, 1), {}, "argument 0"),
    ],
)
def test_enqueue__non_json_argument_is_named_and_nothing_is_stored(args, kwargs, named):
    with pytest.raises(InvalidTaskArguments, match=f"{named} is not JSON") as error:
        tasks.add.enqueue(*args, **kwargs)

    assert "tests.testapp.tasks.add" in str(error.value)
    assert isinstance(error.value, TypeError)
    assert not Job.objects.exists()


def test_enqueue__refuses_when_the_queue_is_disabled(settings):
    settings.JOB_QUEUE_ENABLED = False

    with pytest.raises(JobQueueDisabled, match="JOB_QUEUE_ENABLED"):
        tasks.noop.enqueue()

    assert not Job.objects.exists()


def test_enqueue__unknown_queue_is_refused():
    with pytest.raises(InvalidTask, match="Queue 'nope' is not valid"):
        tasks.add.using(queue_name="nope").enqueue(1, 2)
    assert not Job.objects.exists()


@pytest.mark.parametrize("priority", [-101, 101, 1.5])
def test_enqueue__priority_out_of_range_is_refused(priority):
    with pytest.raises(InvalidTask, match="priority must be a whole number"):
        tasks.add.using(priority=priority).enqueue(1, 2)
    assert not Job.objects.exists()


def test_enqueue__naive_run_after_is_refused():
    with pytest.raises(InvalidTask, match="aware datetime"):
        tasks.add.using(run_after=datetime(2030, 1, 1)).enqueue(1, 2)  # noqa: DTZ001


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be a whole number"),
        ({"backoff_base": -1}, "backoff_base must be a number"),
        ({"timeout": "soon"}, "timeout must be a number"),
    ],
)
def test_task_options__invalid_values_are_refused_at_definition(options, message):
    with pytest.raises(InvalidTask, match=message):
        task(tasks.not_a_task, **options)


def test_task_options__using_changes_them():
    changed = tasks.add.using(max_attempts=9, timeout=2, priority=3)

    assert (changed.max_attempts, changed.timeout, changed.priority) == (9, 2, 3)
    assert tasks.add.max_attempts is None


def test_enqueue__run_after_makes_the_job_delayed():
    run_after = timezone.now() + timedelta(hours=1)

    result = tasks.add.using(run_after=run_after).enqueue(1, 2)

    assert Job.objects.delayed().get().pk == uuid.UUID(result.id)
    assert not Job.objects.due().exists()
    assert tasks.add.get_result(result.id).task.run_after == run_after


def test_enqueue_many__one_insert_for_all_rows():
    calls = [((i, i), {}) for i in range(50)]

    with CaptureQueriesContext(connection) as queries:
        results = tasks.add.enqueue_many(calls)

    verbs = [query["sql"].split()[0] for query in queries.captured_queries]
    # One INSERT; on PostgreSQL its trigger sends the NOTIFY.
    assert verbs == ["INSERT"]

    assert [r.args for r in results] == [[i, i] for i in range(50)]
    assert Job.objects.filter(status=JobStatus.READY).count() == 50
    assert {str(pk) for pk in Job.objects.values_list("pk", flat=True)} == {
        r.id for r in results
    }


def test_enqueue__one_statement():
    with CaptureQueriesContext(connection) as queries:
        tasks.add.enqueue(1, 2)

    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]


def row_fields(job):
    ignored = {"id", "args", "kwargs", "enqueued_at", "run_after"}
    return {
        field.attname: getattr(job, field.attname)
        for field in Job._meta.concrete_fields
        if field.attname not in ignored
    }


def test_enqueue_many__writes_the_rows_enqueue_writes():
    when = timezone.now() + timedelta(hours=1)
    options = {"priority": 5, "run_after": when, "max_attempts": 7}
    single = tasks.fail_times.using(**options).enqueue("one", times=2)
    many = tasks.fail_times.using(**options).enqueue_many(
        [(("a",), {"times": 1}), (("b",), {"times": None, "note": {"x": [1, 2.5]}})]
    )

    one = Job.objects.get(pk=single.id)
    rows = [Job.objects.get(pk=result.id) for result in many]
    assert [(r.args, r.kwargs) for r in rows] == [
        (["a"], {"times": 1}),
        (["b"], {"times": None, "note": {"x": [1, 2.5]}}),
    ]
    assert [row_fields(r) for r in rows] == [row_fields(one)] * 2
    assert {r.run_after for r in rows} == {one.run_after} == {when}
    assert rows[0].enqueued_at == rows[1].enqueued_at
    assert (one.priority, one.max_attempts, one.return_value) == (5, 7, None)


def heard_until_marker(listener, other, marker, flush=True):
    """What the listener hears up to a NOTIFY that `other` commits now:
    PostgreSQL delivers notifications in commit order. What this process
    notifies after commits is sent first (`notifier.flush`), unless not
    `flush`."""
    from jobs.notify.listen import CHANNEL
    from jobs.notify.notifier import notifier

    if flush:
        assert notifier.flush(timeout=60)
    other.execute("SELECT pg_notify(%s, %s)", [CHANNEL, marker])
    heard = []
    for notify in listener.notifies(timeout=60):
        if notify.payload == marker:
            return heard
        heard.append(notify.payload)
    raise AssertionError(f"the marker {marker} never arrived")


@pytest.fixture
def listening(postgres_only):
    """A connection that LISTENs on the channel, and another to send markers."""
    import psycopg

    from jobs.notify.listen import CHANNEL

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with (
        psycopg.connect(**params, autocommit=True) as listener,
        psycopg.connect(**params, autocommit=True) as other,
    ):
        listener.execute(f"LISTEN {CHANNEL}")
        yield listener, other


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_background", [True, False])
def test_enqueue__notifies_listeners_on_commit_only(listening, in_background, settings):
    settings.JOB_NOTIFY_IN_BACKGROUND = in_background
    listener, other = listening
    with transaction.atomic():
        tasks.add.enqueue(1, 2)
        tasks.add.using(queue_name="other").enqueue_many([((1, 2), {})] * 3)
        assert heard_until_marker(listener, other, "marker-1") == []
    heard = heard_until_marker(listener, other, "marker-2")

    assert sorted(set(heard)) == ["default", "other"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_background", [True, False])
def test_enqueue__in_autocommit__notifies_its_queue(listening, in_background, settings):
    settings.JOB_NOTIFY_IN_BACKGROUND = in_background
    listener, other = listening

    tasks.add.using(queue_name="other").enqueue(1, 2)

    assert heard_until_marker(listener, other, "marker") == ["other"]


@pytest.fixture
def another_enqueue_notifying(postgres_only):
    """Another connection's open transaction holding the lock of the enqueue
    that NOTIFYs in its own transaction (`hot_path.RING_IF_ALONE`)."""
    with notify_lock_held():
        yield


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_background", [True, False])
def test_enqueue__while_another_notifies__notifies_after_its_commit(
    listening, another_enqueue_notifying, in_background, settings
):
    settings.JOB_NOTIFY_IN_BACKGROUND = in_background
    listener, other = listening
    with transaction.atomic():
        tasks.add.using(queue_name="other").enqueue(1, 2)
        assert heard_until_marker(listener, other, "marker-1") == []

    assert heard_until_marker(listener, other, "marker-2") == ["other"]


@pytest.mark.django_db(transaction=True)
def test_unique_enqueue__notifies_only_when_it_stores_a_job(listening):
    listener, other = listening
    unique = tasks.add.using(queue_name="other", unique_key="k")

    unique.enqueue(1, 2)
    first = heard_until_marker(listener, other, "marker-1")
    unique.enqueue(1, 2)  # the key is held: nothing stored

    assert first == ["other"]
    assert heard_until_marker(listener, other, "marker-2") == []


@pytest.mark.django_db(transaction=True)
def test_insert_by_other_code__after_an_enqueue__still_notifies_from_the_trigger(
    listening,
):
    # The enqueue's INSERT tells the trigger to skip it; the mark covers that
    # statement only, so a row inserted by other means in the same
    # transaction is notified by the trigger on commit.
    listener, other = listening
    with transaction.atomic():
        tasks.add.enqueue(1, 2)
        make_job(queue_name="other")

    assert sorted(heard_until_marker(listener, other, "marker")) == [
        "default",
        "other",
    ]


def trigger_calls():
    """Calls of the NOTIFY trigger's function in this transaction so far."""
    return scalar(
        "SELECT coalesce(pg_stat_get_xact_function_calls("
        "'jobs_job_notify'::regproc), 0)"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_background", [True, False])
def test_enqueue__runs_no_trigger_but_rows_inserted_otherwise_do(
    postgres_only, in_background, settings
):
    # The trigger costs the server a tenth of an enqueue's INSERT; ours
    # NOTIFYs by itself or after commit, so it marks itself to skip it.
    settings.JOB_NOTIFY_IN_BACKGROUND = in_background
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL track_functions = 'pl'")
        tasks.add.enqueue(1, 2)
        tasks.add.enqueue_many([((3, 4), {}), ((5, 6), {})])
        tasks.add.using(queue_name="other", unique_key="k").enqueue(7, 8)
        by_our_inserts = trigger_calls()
        make_job(queue_name="other")
        make_job(queue_name="other")

        assert by_our_inserts == 0
        assert trigger_calls() == 2
    assert Job.objects.count() == 6


@pytest.mark.django_db(transaction=True)
def test_notifier__a_failed_notify_is_logged_and_later_ones_still_go_out(
    listening, caplog
):
    from jobs.notify.notifier import notifier

    listener, other = listening
    notifier.submit({"default"}, "no-such-database")
    assert notifier.flush(timeout=60)

    tasks.add.enqueue(1, 2)

    assert heard_until_marker(listener, other, "marker") == ["default"]
    assert "NOTIFY after commit failed" in caplog.text


@pytest.fixture
def slow_bucket(monkeypatch):
    """A notifier whose bucket holds 3 NOTIFYs, all there, and gets one back
    an hour after each it spends."""
    from jobs.notify import notifier as notifier_module
    from jobs.notify.notifier import notifier

    monkeypatch.setattr(notifier_module, "COOLDOWN", 3600)
    monkeypatch.setattr(notifier_module, "BURST", 3)
    monkeypatch.setattr(notifier, "tokens", 3)
    yield notifier_module
    monkeypatch.undo()
    with notifier.changed:  # a nap of the thread's ends
        notifier.changed.notify_all()


@pytest.mark.django_db(transaction=True)
def test_enqueues_past_the_burst__are_announced_by_one_notify_once_it_refills(
    listening, slow_bucket
):
    listener, other = listening
    for i in range(3):
        tasks.add.enqueue(i, i)
    burst = heard_until_marker(listener, other, "marker-1")

    tasks.add.enqueue(3, 4)
    tasks.add.using(queue_name="other").enqueue(5, 6)
    tasks.add.enqueue(7, 8)
    past_it = heard_until_marker(listener, other, "marker-2", flush=False)
    slow_bucket.COOLDOWN = 1e-9  # the bucket refills at once
    with slow_bucket.notifier.changed:
        slow_bucket.notifier.changed.notify_all()

    assert burst == ["default"] * 3
    assert past_it == []
    assert sorted(heard_until_marker(listener, other, "marker-3")) == [
        "default",
        "other",
    ]


@pytest.mark.django_db(transaction=True)
def test_an_enqueue_with_a_token_again__its_notify_stands_for_those_before_it(
    listening, slow_bucket
):
    # With one token the notifier's thread would wait another hour: only the
    # last enqueue's own NOTIFY can announce the job enqueued before it.
    notifier = slow_bucket.notifier
    listener, other = listening
    notifier.tokens = 1
    tasks.add.enqueue(1, 2)
    assert heard_until_marker(listener, other, "marker-1") == ["default"]
    tasks.add.enqueue(3, 4)
    notifier.tokens += 1

    tasks.add.enqueue(5, 6)

    assert notifier.flush(timeout=60)
    assert heard_until_marker(listener, other, "marker-2") == ["default"]


def test_enqueue_many__a_bad_argument_stores_nothing():
    with pytest.raises(InvalidTaskArguments, match="argument 1"):
        tasks.add.enqueue_many([((1, 2), {}), ((1, object()), {})])

    assert not Job.objects.exists()
