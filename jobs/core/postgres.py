"""Our own SQL on PostgreSQL: a cursor that binds on the server and prepares
each statement once, and jobs built from the rows it returns."""

import json
import sys

from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.models import JSONField

from .. import conf
from ..models import Job
from ..upstream import django_cursor


class PreparingCursor(ServerBindingCursor):
    """A server-binding cursor that prepares each statement on first use.

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
    """
    if not conf.get("JOB_PREPARED_STATEMENTS") or connection.queries_logged:
        return django_cursor(connection, ServerBindingCursor)
    cursor = django_cursor(connection, PreparingCursor)
    if connection.connection.prepare_threshold is None:
        # Django turns psycopg's preparing off (None); this threshold lets
        # only statements that ask (ours) be prepared.
        connection.connection.prepare_threshold = sys.maxsize
    return cursor


def jobs_from(rows, connection):
    """Build jobs from rows of every concrete field in order, as the ORM would."""
    fields = Job._meta.concrete_fields
    attnames = [field.attname for field in fields]
    convert = [
        (i, field.from_db_value)
        for i, field in enumerate(fields)
        if hasattr(field, "from_db_value")
    ]
    jobs = []
    for row in rows:
        row = list(row)
        for i, from_db_value in convert:
            row[i] = from_db_value(row[i], None, connection)
        jobs.append(Job.from_db(connection.alias, attnames, row))
    return jobs


def is_json(field):
    return isinstance(field, JSONField)


def json_or_none(value):
    """JSON text for a jsonb column; None stays SQL NULL, as Django stores it."""
    return None if value is None else json.dumps(value)
