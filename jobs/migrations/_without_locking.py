"""Index operations that never block the job table's writers: on PostgreSQL
CREATE/DROP INDEX CONCURRENTLY (the table may hold millions of rows while
workers run; a migration using them sets `atomic = False`), elsewhere the
plain operation."""

from django.contrib.postgres.operations import (
    AddIndexConcurrently,
    RemoveIndexConcurrently,
)
from django.db.migrations.operations import AddIndex, RemoveIndex


class WithoutLocking:
    concurrent = plain = None  # the two operations, set by subclasses

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._chosen(schema_editor).database_forwards(
            self, app_label, schema_editor, from_state, to_state
        )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        self._chosen(schema_editor).database_backwards(
            self, app_label, schema_editor, from_state, to_state
        )

    def _chosen(self, schema_editor):
        postgres = schema_editor.connection.vendor == "postgresql"
        return self.concurrent if postgres else self.plain


class AddIndexWithoutLocking(WithoutLocking, AddIndexConcurrently):
    concurrent, plain = AddIndexConcurrently, AddIndex


class RemoveIndexWithoutLocking(WithoutLocking, RemoveIndexConcurrently):
    concurrent, plain = RemoveIndexConcurrently, RemoveIndex


class AddPostgresIndexWithoutLocking(AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY of an index only PostgreSQL has (a GIN index):
    nothing elsewhere. Used inside `SeparateDatabaseAndState`, so the model's
    state (shared with SQLite) never holds it."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
