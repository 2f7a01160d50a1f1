from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations import AddIndex


class AddIndexWithoutLocking(AddIndexConcurrently):
    """On PostgreSQL build the index without blocking writes (CREATE INDEX
    CONCURRENTLY): the job table may hold millions of rows while workers
    run. Elsewhere a plain CREATE INDEX."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_forwards(
                self, app_label, schema_editor, from_state, to_state
            )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_backwards(
                self, app_label, schema_editor, from_state, to_state
            )


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ("jobs", "0007_worker_hears_notify"),
    ]

    operations = [
        AddIndexWithoutLocking(
            model_name="job",
            index=models.Index(
                models.F("task_path"),
                models.OrderBy(models.F("enqueued_at"), descending=True),
                condition=models.Q(
                    ("status__in", ("SUCCESSFUL", "FAILED", "CANCELLED"))
                ),
                name="jobs_job_task",
            ),
        ),
    ]
