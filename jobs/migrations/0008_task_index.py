from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations import AddIndex


class AddIndexWithoutLocking(AddIndexConcurrently):
    """On PostgreSQL build the index without blocking writes (CREATE INDEX
    CONCURRENTLY): the job table may hold millions of rows while workers
    run. Elsewhere a plain CREATE INDEX."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._plain_or_concurrent(schema_editor).database_forwards(
            self, app_label, schema_editor, from_state, to_state
        )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        self._plain_or_concurrent(schema_editor).database_backwards(
            self, app_label, schema_editor, from_state, to_state
        )

    @staticmethod
    def _plain_or_concurrent(schema_editor):
        postgres = schema_editor.connection.vendor == "postgresql"
        return AddIndexConcurrently if postgres else AddIndex


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
