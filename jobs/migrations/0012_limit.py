from django.contrib.postgres.operations import (
    AddIndexConcurrently,
    RemoveIndexConcurrently,
)
from django.db import migrations, models
from django.db.migrations.operations import AddIndex, RemoveIndex


class WithoutLocking:
    """On PostgreSQL change an index without blocking writes (CONCURRENTLY):
    the job table may hold millions of rows while workers run. Elsewhere
    the plain operation."""

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


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY run outside a transaction

    dependencies = [
        ("jobs", "0011_sched"),
    ]

    operations = [
        # Both columns are added without rewriting the table (PostgreSQL
        # 11+ keeps a constant default in the catalog); no CHECK constraint,
        # which would read every row under an exclusive lock.
        migrations.AddField(
            model_name="job",
            name="concurrency_key",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
        migrations.AddField(
            model_name="job",
            name="concurrency_limit",
            field=models.IntegerField(blank=True, null=True),
        ),
        # The new claim index is built before the old one goes, so claims
        # always have one.
        AddIndexWithoutLocking(
            model_name="job",
            index=models.Index(
                models.F("concurrency_key"),
                models.F("queue_name"),
                models.OrderBy(models.F("priority"), descending=True),
                models.F("run_after"),
                condition=models.Q(("status", "READY")),
                name="jobs_job_claim_by_key",
            ),
        ),
        RemoveIndexWithoutLocking(model_name="job", name="jobs_job_claim"),
        AddIndexWithoutLocking(
            model_name="job",
            index=models.Index(
                models.F("concurrency_key"),
                condition=models.Q(("concurrency_key__gt", ""), ("status", "RUNNING")),
                name="jobs_job_running_key",
            ),
        ),
    ]
