from django.db import migrations, models

from ._without_locking import AddIndexWithoutLocking


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
