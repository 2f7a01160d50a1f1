"""What we use of other projects beyond their documented API, in one place.

Each use names the version it was checked against; `tests/test_upstream.py`
fails loudly, naming the use, when an upgrade changes what it relies on.
The RQ methods our worker classes override are listed beside them, in
`jobs/rqworker/upstream.py`.
"""

import ctypes

from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

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


def django_cursor(connection, raw_cursor_class):
    """Return a Django cursor of `connection` around a raw DB-API cursor of
    `raw_cursor_class`, as `connection.cursor()` builds its own.

    Django 6.1: `BaseDatabaseWrapper._cursor` runs these steps around
    `create_cursor`; errors, query logging and execute wrappers stay Django's.
    """
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    cursor = raw_cursor_class(connection.connection)
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


def loaded_instance(model, alias, attnames, values):
    """Return `model`'s instance of a row as `Model.from_db` makes it from
    every concrete field's value in order, or None if another app listens
    to that model's `pre_init` or `post_init` (then only `from_db` will do).

    Django 6.1: for such values `Model.__init__` sets each attname and a
    fresh `_state` (`ModelState`, undocumented), and `from_db` marks it
    loaded from `alias`; the per-field work of `__init__` is most of what a
    claimed job's instance costs the worker.
    """
    if pre_init.has_listeners(model) or post_init.has_listeners(model):
        return None
    instance = model.__new__(model)
    instance.__dict__.update(zip(attnames, values, strict=True))
    instance._state = state = ModelState()
    state.adding = False
    state.db = alias
    return instance
