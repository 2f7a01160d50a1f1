"""Our own SQL on PostgreSQL: a cursor that binds on the server and prepares
each statement once where that is safe, and jobs built from the rows it
returns."""

import json
import logging
import sys
import uuid
import weakref
from functools import cache

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.models import JSONField

from .. import conf
from ..models import Job
from ..upstream import database_errors, django_cursor, model_instance

logger = logging.getLogger("jobs.postgres")


class KeptCursor(ServerBindingCursor):
    """A server-binding cursor kept for the life of its connection.

    Our statements reuse one cursor per connection: a new psycopg cursor
    builds its dumpers and loaders afresh, a fifth of an enqueue's time.
    Closing it (Django's cursor does on leaving `with`) leaves it open; its
    last result goes at its next statement.
    """

    def close(self):
        pass

    @classmethod
    def of(cls, connection):
        """Return the Django `connection`'s kept cursor of this class, made
        on first use and afresh on a new psycopg connection.

        The cursors hang on the Django connection with the psycopg
        connection they were made on. (Kept in a module-level map keyed
        weakly by the psycopg connection, they would keep it alive: a
        cursor holds its connection.)
        """
        raw = connection.connection
        made_on, cursors = getattr(connection, KEPT, (None, None))
        if made_on is not raw:
            cursors = {}
            setattr(connection, KEPT, (raw, cursors))
        cursor = cursors.get(cls)
        if cursor is None:
            cursor = cursors[cls] = cls(raw)
        return cursor


KEPT = "jobs_kept_cursors"  # the attribute of the Django connection


class PreparingCursor(KeptCursor):
    """A kept cursor that prepares each statement on first use.

    The hot statements are the same text every time, and PostgreSQL spent
    longer planning them than running them. A prepared statement is planned
    once per connection.
    """

    def execute(self, query, params=None, *, prepare=None, binary=None):
        prepare = True if prepare is None else prepare
        return super().execute(query, params, prepare=prepare, binary=binary)


def bound_cursor(connection):
    """Return a Django cursor that sends parameters apart from the SQL.

    Django's default psycopg cursor binds them on the client, quoting every
    value into the SQL text: for the hot statements that cost more than the
    server's work. The statements are prepared (`JOB_PREPARED_STATEMENTS`),
    except while Django logs queries (DEBUG, tests that count queries):
    psycopg does not keep the text of a prepared statement for the log.
    Django's own cursors prepare nothing unless the database's OPTIONS ask.
    The psycopg cursor under it is the connection's kept one (`KeptCursor`).
    """
    if connection.queries_logged or not prepares(connection):
        return django_cursor(connection, KeptCursor.of)
    cursor = django_cursor(connection, PreparingCursor.of)
    if connection.connection.prepare_threshold is None:
        # Django turns psycopg's preparing off (None); this threshold lets
        # only statements that ask (ours) be prepared.
        connection.connection.prepare_threshold = sys.maxsize
    return cursor


# Whether our statements are prepared, decided once per psycopg connection.
_prepares = weakref.WeakKeyDictionary()
_said_unprepared = False


def prepares(connection):
    """Say whether our statements may be prepared on `connection` (a Django
    PostgreSQL connection): `JOB_PREPARED_STATEMENTS`, and where it is
    "auto", whether prepared statements are safe on it.

    psycopg names them `_pg3_0`, `_pg3_1`... on every connection. A pooler
    in transaction mode that passes those names to PostgreSQL as they are
    (PgBouncer before 1.21, or with `max_prepared_statements = 0`) lets
    clients that share a server connection run, replace or miss each
    other's statements. A pooler that renames them per client is safe.
    """
    wanted = conf.prepared_statements()
    if wanted is False:
        return False
    connection.ensure_connection()
    raw = connection.connection
    if raw not in _prepares:
        with database_errors(connection):
            _prepares[raw] = prepared_statements_safe(raw, wanted)
    return _prepares[raw]


def check_prepared_statements(alias):
    """Raise ImproperlyConfigured now if `JOB_PREPARED_STATEMENTS` cannot be
    honoured on database `alias` (workers call this at start)."""
    connection = connections[alias]
    if connection.vendor == "postgresql":
        prepares(connection)


def prepared_statements_safe(raw, wanted):
    """Decide for the psycopg connection `raw`; raise ImproperlyConfigured
    when `wanted` is True and they are not safe."""
    global _said_unprepared
    if not through_pooler(raw) or pooler_renames_statements(raw):
        return True
    if wanted is True:
        raise ImproperlyConfigured(
            "JOB_PREPARED_STATEMENTS is on, but the database is reached through "
            "a connection pooler that passes prepared statements from client to "
            "client (PgBouncer in transaction mode before 1.21, or with "
            "max_prepared_statements = 0). Set JOB_PREPARED_STATEMENTS=auto "
            "(or 0), or let the pooler keep prepared statements."
        )
    if not _said_unprepared:
        _said_unprepared = True
        logger.info(
            "the database is reached through a connection pooler that does not "
            "keep prepared statements per client: the job statements are not "
            "prepared (JOB_PREPARED_STATEMENTS=auto)"
        )
    return False


def through_pooler(raw):
    """Say whether something stands between us and PostgreSQL: the server
    process we talk to is not the one the connection was opened with (a
    pooler hands out its own process ids)."""
    server_pid = raw.execute("SELECT pg_backend_pid()").fetchone()[0]
    return server_pid != raw.info.backend_pid


def pooler_renames_statements(raw):
    """Prepare a statement under a name of our own and look for that name on
    the server, in one transaction (one server connection); True when the
    pooler renamed it, as PgBouncer 1.21+ does with `max_prepared_statements`."""
    name = f"jobs_probe_{uuid.uuid4().hex}"
    found = None
    with raw.transaction():
        if raw.pgconn.prepare(name.encode(), b"SELECT 1").error_message:
            raise psycopg.Rollback  # the pooler refuses named statements
        found = raw.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE name = %s", [name]
        ).fetchone()[0]
        if found:
            raw.execute(f"DEALLOCATE {name}")
    return found == 0


def jobs_from(rows, connection):
    """Build jobs from rows of every concrete field in order, as the ORM would
    (`model_instance`).

    jsonb arrives as text, and most jobs' arguments, errors and results are
    empty: those are built without the JSON parser.
    """
    attnames, json_columns, converted = row_plan()
    alias = connection.alias
    jobs = []
    for row in rows:
        row = list(row)
        for i in json_columns:
            row[i] = json_value(row[i])
        for i, from_db_value in converted:
            row[i] = from_db_value(row[i], None, connection)
        values = dict(zip(attnames, row, strict=True))
        jobs.append(model_instance(Job, values, alias))
    return jobs


@cache
def row_plan():
    """The job's attribute names, the columns holding plain JSON, and the
    other columns that convert their values (with what), in row order."""
    fields = Job._meta.concrete_fields
    attnames = [field.attname for field in fields]
    plain = [i for i, field in enumerate(fields) if plain_json(field)]
    converted = [
        (i, field.from_db_value)
        for i, field in enumerate(fields)
        if hasattr(field, "from_db_value") and i not in plain
    ]
    return attnames, plain, converted


def json_value(text):
    """The value of a jsonb column's text (None: SQL NULL)."""
    if text is None:
        return None
    if text == "[]":
        return []
    if text == "{}":
        return {}
    return json.loads(text)


def plain_json(field):
    """Say whether `field` is a JSONField whose value is its text, parsed."""
    return is_json(field) and field.decoder is None


def is_json(field):
    return isinstance(field, JSONField)


def json_or_none(value):
    """JSON text for a jsonb column; None stays SQL NULL, as Django stores it."""
    if value is None:
        return None
    if not value and (text := EMPTY_JSON.get(type(value))):
        return text  # most jobs' arguments, errors and workers
    return json.dumps(value)


EMPTY_JSON = {list: "[]", dict: "{}"}
