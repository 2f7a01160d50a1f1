"""Expressions the ORM lacks: the database's clock, and JSON array edits
made inside an UPDATE."""

from django.db import models
from django.db.models.expressions import Func
from django.db.models.functions import Now
from django.utils import timezone


class DatabaseNow(Now):
    """The database's clock, for every time that decides who holds a job.

    PostgreSQL reads its own clock (`statement_timestamp()`), so workers on
    hosts whose clocks disagree still agree on leases and due times. SQLite
    lives in a file on one host, whose clock is the database's; its own
    clock counts milliseconds only, so the host's, with microseconds, is
    sent instead (a job enqueued this millisecond is due this millisecond).
    """

    def as_sqlite(self, compiler, connection, **extra_context):
        return "%s", (connection.ops.adapt_datetimefield_value(timezone.now()),)


class JSONAppend(Func):
    """Append one string to a JSON array column, inside the UPDATE itself."""

    arity = 2
    output_field = models.JSONField()

    def as_sql(self, compiler, connection, **extra_context):
        raise NotImplementedError(f"JSONAppend does not support {connection.vendor}.")

    def _compile(self, compiler):
        (array, array_params), (value, value_params) = (
            compiler.compile(expression) for expression in self.source_expressions
        )
        return array, value, (*array_params, *value_params)

    def as_postgresql(self, compiler, connection, **extra_context):
        array, value, params = self._compile(compiler)
        return f"({array} || jsonb_build_array(({value})::text))", params

    def as_sqlite(self, compiler, connection, **extra_context):
        array, value, params = self._compile(compiler)
        return f"json_insert({array}, '$[#]', {value})", params


class JSONPopLast(Func):
    """Drop the last element of a JSON array column, inside the UPDATE itself."""

    arity = 1
    output_field = models.JSONField()

    def as_sql(self, compiler, connection, **extra_context):
        raise NotImplementedError(f"JSONPopLast does not support {connection.vendor}.")

    def as_postgresql(self, compiler, connection, **extra_context):
        array, params = compiler.compile(self.source_expressions[0])
        return f"({array} - -1)", params

    def as_sqlite(self, compiler, connection, **extra_context):
        array, params = compiler.compile(self.source_expressions[0])
        return f"json_remove({array}, '$[#-1]')", params
