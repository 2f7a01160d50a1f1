import django.db.models.expressions
import django.db.models.lookups
from django.db import migrations, models

# The condition of `jobs_job_unique`: `models.HOLDS_KEY` as it stood here.
HOLDS_KEY = models.Q(
    ("unique_key__isnull", False),
    django.db.models.lookups.GreaterThan(
        models.Case(
            *(
                models.When(
                    status=status,
                    then=django.db.models.expressions.CombinedExpression(
                        models.F("unique_states"), "&", models.Value(bit)
                    ),
                )
                for status, bit in (
                    ("READY", 1),
                    ("RUNNING", 2),
                    ("SUCCESSFUL", 4),
                    ("FAILED", 8),
                    ("CANCELLED", 16),
                )
            ),
            default=models.Value(0),
        ),
        0,
    ),
)


class AddUniqueIndexWithoutLocking(migrations.AddConstraint):
    """Add a partial unique constraint; on PostgreSQL build its index without
    blocking writes (CREATE UNIQUE INDEX CONCURRENTLY), as the job table may
    hold millions of rows while workers run. Elsewhere a plain CREATE."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(
                app_label, schema_editor, from_state, to_state
            )
        model = to_state.apps.get_model(app_label, self.model_name)
        statement = self.constraint.create_sql(model, schema_editor)
        statement.template = statement.template.replace(
            "CREATE UNIQUE INDEX", "CREATE UNIQUE INDEX CONCURRENTLY", 1
        )
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ("jobs", "0008_task_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="unique_key",
            field=models.CharField(blank=True, max_length=255, null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="unique_states",
            field=models.PositiveSmallIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="unique_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        AddUniqueIndexWithoutLocking(
            model_name="job",
            constraint=models.UniqueConstraint(
                condition=HOLDS_KEY,
                fields=("task_path", "unique_key"),
                name="jobs_job_unique",
            ),
        ),
    ]
