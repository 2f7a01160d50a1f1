"""SQL that only PostgreSQL runs (a trigger and its function); other
databases have no LISTEN, and their migrations do nothing."""

from django.db import migrations


def postgres_sql(forwards, backwards):
    """A RunPython operation that runs the SQL `forwards` (`backwards` when
    unapplied) on PostgreSQL only."""
    return migrations.RunPython(_on_postgresql(forwards), _on_postgresql(backwards))


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run
