from django.db import migrations, models

from ._without_locking import AddIndexWithoutLocking, RemoveIndexWithoutLocking


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
