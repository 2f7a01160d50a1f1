"""What we use of other projects beyond their documented API (`jobs.upstream`)
still works as it did in the versions each use names."""

import inspect
import threading
from dataclasses import fields

import pytest
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.tasks import TaskResult
from django.test.utils import CaptureQueriesContext

from jobs import upstream
from jobs.core import hot_path, postgres
from jobs.models import Job

from .helpers import make_job


class Interrupted(BaseException):
    pass


def blocked_thread():
    """A thread blocked in C (a lock) until released; it records how it ended."""
    release, ended = threading.Event(), []

    def body():
        try:
            release.wait()
            for _ in range(10_000_000):  # bytecode: a pending exception lands
                pass
            ended.append("returned")
        except Interrupted:
            ended.append("interrupted")

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, release, ended


def test_raise_in_thread__raises_in_that_thread_at_its_next_bytecode():
    thread, release, ended = blocked_thread()

    upstream.raise_in_thread(thread.ident, Interrupted)
    release.set()
    thread.join(timeout=60)

    assert ended == ["interrupted"]


def test_raise_in_thread__none_withdraws_one_not_yet_delivered():
    thread, release, ended = blocked_thread()

    upstream.raise_in_thread(thread.ident, Interrupted)
    upstream.raise_in_thread(thread.ident, None)
    release.set()
    thread.join(timeout=60)

    assert ended == ["returned"]


def test_task_result__keeps_its_return_value_in_the_field_we_set():
    assert upstream.RETURN_VALUE_FIELD in {field.name for field in fields(TaskResult)}
    result = object.__new__(TaskResult)
    object.__setattr__(result, upstream.RETURN_VALUE_FIELD, 42)
    object.__setattr__(result, "status", "SUCCESSFUL")
    assert result.return_value == 42


def test_django_connection__builds_its_cursor_with_the_steps_we_repeat():
    wrapper = BaseDatabaseWrapper
    steps = inspect.getsource(wrapper._cursor) + inspect.getsource(wrapper.cursor)
    for step in ("close_if_health_check_failed", "ensure_connection"):
        assert step in steps, f"Django's cursor() no longer calls {step}"
    for method in ("make_cursor", "make_debug_cursor"):
        params = list(inspect.signature(getattr(wrapper, method)).parameters)
        assert params == ["self", "cursor"], f"{method} takes {params}"
    assert isinstance(wrapper.queries_logged, property)
    assert callable(wrapper.validate_thread_sharing)


@pytest.mark.django_db
def test_django_cursor__logs_our_statements_with_their_sql(postgres_only):
    make_job()

    with CaptureQueriesContext(connection) as captured:
        jobs = hot_path.claim(None, 1, "w", "w:1")

    assert len(jobs) == 1
    assert any("FOR UPDATE SKIP LOCKED" in q["sql"] for q in captured)


@pytest.mark.django_db
def test_psycopg__prepares_a_statement_that_asks(postgres_only):
    import psycopg

    assert "prepare" in inspect.signature(psycopg.Cursor.execute).parameters
    assert issubclass(postgres.PreparingCursor, psycopg.Cursor)
    connection.ensure_connection()
    assert hasattr(connection.connection, "prepare_threshold")


@pytest.mark.django_db
def test_django__wraps_errors_of_the_raw_connection(postgres_only):
    from django.db import DatabaseError

    connection.ensure_connection()
    with pytest.raises(DatabaseError), upstream.database_errors(connection):
        connection.connection.execute("SELECT no_such_column FROM jobs_job")


@pytest.mark.django_db
def test_model_instance__loaded_is_the_instance_from_db_makes(
    django_assert_num_queries,
):
    job = make_job(args=[1, "a"], kwargs={"k": None}, worker_ids=["w"])
    attnames = [field.attname for field in Job._meta.concrete_fields]
    row = [getattr(job, name) for name in attnames]
    values = dict(zip(attnames, row, strict=True))

    ours = upstream.model_instance(Job, values, "default")
    django = Job.from_db("default", attnames, row)

    state = {k: v for k, v in vars(django).items() if k != "_state"}
    assert {k: v for k, v in vars(ours).items() if k != "_state"} == state
    loaded = {"adding": False, "db": "default"}
    assert vars(ours._state) == vars(django._state) == loaded
    with django_assert_num_queries(0):  # every field loaded, none deferred
        assert ours.get_deferred_fields() == set()
        assert (ours.pk, ours.args, ours.worker_ids) == (job.pk, [1, "a"], ["w"])


def test_model_instance__new_is_the_instance_the_constructor_makes():
    values = {field.attname: None for field in Job._meta.concrete_fields}
    values |= {"task_path": "t", "args": [], "kwargs": {}}

    ours = upstream.model_instance(Job, dict(values))
    django = Job(**values)

    state = {k: v for k, v in vars(django).items() if k != "_state"}
    assert {k: v for k, v in vars(ours).items() if k != "_state"} == state
    assert ours._state.adding and django._state.adding
    assert ours._state.db is None and django._state.db is None
