"""What we use of other projects beyond their documented API, in one place.

Each use names the version it was checked against; `tests/test_upstream.py`
fails loudly, naming the use, when an upgrade changes what it relies on.
The RQ methods our worker classes override are listed beside them, in
`jobs/rqworker/upstream.py`.
"""

import ctypes

from django.db.models.base import ModelState

# CPython 3.13: PyThreadState_SetAsyncExc(unsigned long thread id, exception)
# raises `exception` in that thread at its next bytecode; None withdraws one
# not yet delivered. The C API is documented; ctypes reaches it.
_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc


def raise_in_thread(thread_id, exception_class):
    """Raise `exception_class` in thread `thread_id` at its next bytecode
    (None: withdraw one raised but not delivered yet)."""
    _set_async_exc(
        ctypes.c_ulong(thread_id),
        ctypes.py_object(exception_class) if exception_class else None,
    )


def django_cursor(connection, raw_cursor):
    """Return a Django cursor of `connection` around the raw DB-API cursor
    `raw_cursor(connection)` gives once connected, as `connection.cursor()`
    builds its own.

    Django 6.1: `BaseDatabaseWrapper._cursor` runs these steps around
    `create_cursor`; errors, query logging and execute wrappers stay Django's.
    """
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    cursor = raw_cursor(connection)
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


def database_errors(connection):
    """Return a context manager that turns the driver's errors into Django's
    (`django.db.DatabaseError` and its kin), as Django's cursors do.

    Django 6.1: `BaseDatabaseWrapper.wrap_database_errors` (undocumented), for
    queries sent on the raw psycopg connection.
    """
    return connection.wrap_database_errors


# Django 6.1: `TaskResult` is a frozen dataclass that keeps the task's return
# value in the field `_return_value`, read through `return_value`.
RETURN_VALUE_FIELD = "_return_value"


def model_instance(model, values, alias=None):
    """Return an instance of `model` whose `__dict__` is `values` (every
    concrete field's value by attname), built as the ORM builds a row it
    reads but without `Model.__init__` and its pre_init and post_init
    signals: loaded from `alias`, or new (unsaved) when `alias` is None.

    Django 6.1: `Model.__init__` sets each attname and a fresh `_state`
    (`ModelState`, undocumented), and `Model.from_db` marks it loaded; its
    per-field work is most of what a job's instance costs an enqueue or a
    claim.
    """
    instance = model.__new__(model)
    values["_state"] = state = ModelState()
    if alias is not None:
        state.adding = False
        state.db = alias
    instance.__dict__ = values
    return instance
